//! The grammar of go-bexpr (`grammar/grammar.peg`) in winnow combinators. Once a matching
//! expression has its first operand, the parser commits (`cut_err`), so an error points at
//! the token that is wrong rather than at the start of the expression.

use crate::{Expr, Match, Op};
use winnow::ascii::{digit1, multispace0, multispace1};
use winnow::combinator::{alt, cut_err, delimited, eof, opt, preceded, repeat, terminated};
use winnow::error::{ContextError, ErrMode, StrContext, StrContextValue};
use winnow::prelude::*;
use winnow::token::{one_of, take_till, take_while};

type In<'i> = &'i str;

/// An expression that does not parse: where (1-based character position) and what was
/// expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid filter expression at position {position}: {reason}")]
pub struct ParseError {
    /// 1-based position of the character where parsing failed (one past the end for an
    /// expression that ends too early).
    pub position: usize,
    pub reason: String,
}

pub(crate) fn expression(source: &str) -> Result<Expr, ParseError> {
    let full = source;
    terminated(
        delimited(multispace0, or_expr, multispace0),
        cut_err(eof).context(expected("`and`, `or` or the end of the expression")),
    )
    .parse(source)
    .map_err(|e| {
        let position = full[..e.offset()].chars().count() + 1;
        let reason = describe(e.inner(), &full[e.offset()..]);
        ParseError { position, reason }
    })
}

fn describe(err: &ContextError, rest: &str) -> String {
    let expected: Vec<String> = err
        .context()
        .filter_map(|c| match c {
            StrContext::Expected(StrContextValue::Description(d)) => Some(d.to_string()),
            StrContext::Label(l) => Some(l.to_string()),
            _ => None,
        })
        .collect();
    let found = match rest.chars().next() {
        None => "the end of the expression".to_string(),
        Some(_) => format!("{:?}", rest.chars().take(16).collect::<String>()),
    };
    let mut reason = match expected.first() {
        Some(e) => format!("expected {e}, found {found}"),
        None => format!("unexpected {found}"),
    };
    if let Some(cause) = err.cause() {
        reason.push_str(&format!(" ({cause})"));
    }
    reason
}

fn expected(what: &'static str) -> StrContext {
    StrContext::Expected(StrContextValue::Description(what))
}

/// ` and ` / ` or `: once the word is there, whitespace and an operand must follow.
fn keyword<'i>(word: &'static str) -> impl Parser<In<'i>, (), ErrMode<ContextError>> {
    (
        multispace1,
        word,
        cut_err(multispace1).context(expected("whitespace")),
    )
        .void()
}

fn or_expr(input: &mut In<'_>) -> ModalResult<Expr> {
    let first = and_expr.parse_next(input)?;
    let rest: Vec<Expr> =
        repeat(0.., preceded(keyword("or"), cut_err(and_expr))).parse_next(input)?;
    Ok(fold_right(first, rest, Expr::Or))
}

fn and_expr(input: &mut In<'_>) -> ModalResult<Expr> {
    let first = not_expr.parse_next(input)?;
    let rest: Vec<Expr> =
        repeat(0.., preceded(keyword("and"), cut_err(not_expr))).parse_next(input)?;
    Ok(fold_right(first, rest, Expr::And))
}

/// `a or b or c` as `a or (b or c)`, as go-bexpr builds it (the same truth either way).
fn fold_right(first: Expr, rest: Vec<Expr>, op: fn(Box<Expr>, Box<Expr>) -> Expr) -> Expr {
    let mut all = rest;
    all.insert(0, first);
    let mut acc = all.pop().expect("one operand at least");
    while let Some(left) = all.pop() {
        acc = op(Box::new(left), Box::new(acc));
    }
    acc
}

fn not_expr(input: &mut In<'_>) -> ModalResult<Expr> {
    alt((
        preceded(("not", multispace1), cut_err(not_expr)).map(|e| Expr::Not(Box::new(e))),
        paren_expr,
        match_expr,
    ))
    .context(expected("a matching expression, `not` or `(`"))
    .parse_next(input)
}

fn paren_expr(input: &mut In<'_>) -> ModalResult<Expr> {
    preceded(
        ('(', multispace0),
        cut_err(terminated(
            or_expr,
            (multispace0, ')'.context(expected("`)`"))),
        )),
    )
    .parse_next(input)
}

/// A first operand: a selector, a number or a string (which, left of an operator other than
/// `in`, is a JSON pointer selector).
#[derive(Debug)]
enum Operand {
    Selector(Vec<String>),
    Number(String),
    Str(String),
}

fn match_expr(input: &mut In<'_>) -> ModalResult<Expr> {
    let start = *input;
    let left = operand.parse_next(input)?;
    let op = cut_err(operator)
        .context(expected(
            "an operator (==, !=, in, not in, contains, not contains, matches, not matches, is empty, is not empty)",
        ))
        .parse_next(input)?;
    let (selector, value, regex) = match op {
        Op::In | Op::NotIn => {
            let value = match left {
                Operand::Selector(path) => path.join("."),
                Operand::Number(n) | Operand::Str(n) => n,
            };
            let sel = cut_err(selector)
                .context(expected("a selector"))
                .parse_next(input)?;
            (sel, value, None)
        }
        Op::IsEmpty | Op::IsNotEmpty => (as_selector(left, start, input)?, String::new(), None),
        Op::Matches | Op::NotMatches => {
            let sel = as_selector(left, start, input)?;
            let (value, re) = cut_err(value.try_map(|v| regex::Regex::new(&v).map(|re| (v, re))))
                .context(expected("a valid regular expression"))
                .parse_next(input)?;
            (sel, value, Some(re))
        }
        Op::Equal | Op::NotEqual | Op::Contains | Op::NotContains => {
            let sel = as_selector(left, start, input)?;
            let value = cut_err(value)
                .context(expected("a value"))
                .parse_next(input)?;
            (sel, value, None)
        }
    };
    Ok(Expr::Match(Match {
        selector,
        op,
        value,
        regex,
    }))
}

/// The left operand of an operator that needs a selector there: a field path, or a string
/// that is a JSON pointer (`"/Service/Port"`). Anything else fails at the operand.
fn as_selector<'i>(left: Operand, start: In<'i>, input: &mut In<'i>) -> ModalResult<Vec<String>> {
    match left {
        Operand::Selector(path) => Ok(path),
        Operand::Str(ptr) if ptr.starts_with('/') => Ok(ptr[1..]
            .split('/')
            .map(|s| s.replace("~1", "/").replace("~0", "~"))
            .collect()),
        _ => {
            *input = start;
            let mut err = ContextError::new();
            err.push(expected(
                "a selector (a field path or a \"/json/pointer\") left of the operator",
            ));
            Err(ErrMode::Cut(err))
        }
    }
}

fn operand(input: &mut In<'_>) -> ModalResult<Operand> {
    alt((
        selector.map(Operand::Selector),
        number.map(Operand::Number),
        string.map(Operand::Str),
    ))
    .parse_next(input)
}

fn operator(input: &mut In<'_>) -> ModalResult<Op> {
    alt((
        delimited(multispace0, "==", multispace0).value(Op::Equal),
        delimited(multispace0, "!=", multispace0).value(Op::NotEqual),
        (multispace1, "is", multispace1, "not", multispace1, "empty").value(Op::IsNotEmpty),
        (multispace1, "is", multispace1, "empty").value(Op::IsEmpty),
        (multispace1, "not", multispace1, "in", multispace1).value(Op::NotIn),
        (multispace1, "not", multispace1, "contains", multispace1).value(Op::NotContains),
        (multispace1, "not", multispace1, "matches", multispace1).value(Op::NotMatches),
        (multispace1, "in", multispace1).value(Op::In),
        (multispace1, "contains", multispace1).value(Op::Contains),
        (multispace1, "matches", multispace1).value(Op::Matches),
    ))
    .parse_next(input)
}

fn value(input: &mut In<'_>) -> ModalResult<String> {
    alt((selector.map(|p| p.join(".")), number, string)).parse_next(input)
}

fn identifier(input: &mut In<'_>) -> ModalResult<String> {
    (
        one_of(|c: char| c.is_ascii_alphabetic()),
        take_while(0.., |c: char| {
            c.is_ascii_alphanumeric() || c == '_' || c == '/'
        }),
    )
        .take()
        .map(str::to_string)
        .parse_next(input)
}

fn selector(input: &mut In<'_>) -> ModalResult<Vec<String>> {
    let first = identifier.parse_next(input)?;
    let rest: Vec<String> = repeat(
        0..,
        alt((
            preceded('.', identifier),
            preceded('.', digit1.map(str::to_string)),
            delimited(
                ('[', multispace0),
                cut_err(string).context(expected("a quoted index")),
                cut_err((multispace0, ']')).context(expected("`]`")),
            ),
        )),
    )
    .parse_next(input)?;
    let mut path = vec![first];
    path.extend(rest);
    Ok(path)
}

fn number(input: &mut In<'_>) -> ModalResult<String> {
    terminated(
        (
            opt('-'),
            alt((
                "0",
                (
                    one_of('1'..='9'),
                    take_while(0.., |c: char| c.is_ascii_digit()),
                )
                    .take(),
            )),
            opt(('.', digit1)),
        )
            .take()
            .map(str::to_string),
        // go-bexpr: a number is followed by whitespace, `)` or the end.
        winnow::combinator::peek(alt((multispace1, ")", eof))),
    )
    .parse_next(input)
}

fn string(input: &mut In<'_>) -> ModalResult<String> {
    alt((
        delimited(
            '`',
            take_till(0.., '`'),
            cut_err('`').context(expected("the closing ` of the string")),
        )
        .map(str::to_string),
        delimited(
            '"',
            take_till(0.., '"'),
            cut_err('"').context(expected("the closing \" of the string")),
        )
        .try_map(unescape),
    ))
    .parse_next(input)
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BadEscape(String);

/// Go's escapes in a double-quoted string (strconv.Unquote; go-bexpr's grammar ends the
/// string at the first `"`, so `\"` cannot occur).
fn unescape(s: &str) -> Result<String, BadEscape> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some('\'') => out.push('\''),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let c = u32::from_str_radix(&hex, 16)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or_else(|| BadEscape(format!("invalid escape \\u{hex}")))?;
                out.push(c);
            }
            Some(other) => return Err(BadEscape(format!("invalid escape \\{other}"))),
            None => return Err(BadEscape("a string ends with \\".into())),
        }
    }
    Ok(out)
}
