//! Consul's filter expressions (`?filter=`, the language of hashicorp/go-bexpr), parsed once
//! and evaluated against the JSON of each result item. The server's and the agent's list
//! endpoints apply them; nothing here does I/O.
//!
//! ```text
//! Service.Tags contains "v1" and Service.Meta.version != `2` or not (Node.Node matches "^web-")
//! ```
//!
//! Selectors are paths of field names (`Service.Meta.version`, `Service.Meta["a.b"]`,
//! `Service.Tags.0`) or quoted JSON pointers (`"/Service/Port"`). A selector that steps
//! through a list by field name (`Checks.Status`) matches when any element does, as Consul's
//! documented health selectors do. A field absent from the item is "not present": `==`,
//! `in`, `contains`, `matches` and `is not empty` are false, their negations true.

mod eval;
mod parse;

pub use eval::EvalError;
pub use parse::ParseError;

/// A parsed filter expression.
#[derive(Debug, Clone)]
pub struct Filter {
    expr: Expr,
    source: String,
}

/// The expression tree (go-bexpr's precedence: `not` binds tightest, then `and`, then `or`).
#[derive(Debug, Clone)]
enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Match(Match),
}

/// One matching expression: `<selector> <op> [<value>]` or `<value> [not] in <selector>`.
#[derive(Debug, Clone)]
struct Match {
    selector: Vec<String>,
    op: Op,
    /// The value as written (unquoted); coerced to the selected field's type at evaluation,
    /// as go-bexpr does (`Service.Port == 8080`, `Service.Port == "8080"` alike).
    value: String,
    /// For `matches`: the compiled pattern.
    regex: Option<regex::Regex>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Equal,
    NotEqual,
    /// `<value> in <selector>`: a list element, a map key, or a substring.
    In,
    NotIn,
    /// `<selector> contains <value>`: the same test as `in`.
    Contains,
    NotContains,
    IsEmpty,
    IsNotEmpty,
    Matches,
    NotMatches,
}

impl Filter {
    /// Parses an expression; the error names the position (1-based) where it went wrong.
    pub fn parse(source: &str) -> Result<Filter, ParseError> {
        Ok(Filter {
            expr: parse::expression(source)?,
            source: source.to_string(),
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether `item` (one result, as JSON) satisfies the expression. An error is an
    /// operation the selected field's type does not support (`Service.Port matches "8"`).
    pub fn matches(&self, item: &serde_json::Value) -> Result<bool, EvalError> {
        eval::expr(&self.expr, item)
    }

    /// Keeps the items that satisfy the expression, in order.
    pub fn retain<T>(
        &self,
        items: Vec<T>,
        json: impl Fn(&T) -> serde_json::Value,
    ) -> Result<Vec<T>, EvalError> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if self.matches(&json(&item))? {
                out.push(item);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
