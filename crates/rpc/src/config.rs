//! TOML config files (server, agent): parse errors say where and why, but never quote the
//! offending line, because config files hold join and federation tokens and a typo on a
//! token's line must not print the token to stderr (journald) or to systemd's STATUS=.

use serde::de::DeserializeOwned;

/// Parses `text`; errors read ``line L, column C, field `key`: <what is wrong>`` (the key
/// only, read from the line, never its value).
pub fn parse_toml<T: DeserializeOwned>(text: &str) -> anyhow::Result<T> {
    toml::from_str(text).map_err(|e| {
        let at = e.span().map(|span| {
            let start = span.start.min(text.len());
            let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
            let line = text[..start].matches('\n').count() + 1;
            let column = start - line_start + 1;
            let line_text = text[line_start..].lines().next().unwrap_or("");
            match line_text.split_once('=') {
                Some((key, _)) if !key.trim().is_empty() && !key.contains('[') => {
                    format!("line {line}, column {column}, field `{}`: ", key.trim())
                }
                _ => format!("line {line}, column {column}: "),
            }
        });
        anyhow::anyhow!("{}{}", at.unwrap_or_default(), e.message().trim_end())
    })
}

/// The shortest token a config may hold (join and federation tokens, server and agent alike).
pub const MIN_TOKEN_LEN: usize = 16;

/// Checks a token field: at least [`MIN_TOKEN_LEN`] characters. The error names the field,
/// never the value.
pub fn check_token(field: &str, value: &str) -> anyhow::Result<()> {
    if value.len() < MIN_TOKEN_LEN {
        anyhow::bail!(
            "field `{field}` must be at least {MIN_TOKEN_LEN} characters (a random secret)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_toml;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Cfg {
        name: String,
        token: String,
    }

    #[test]
    fn wrong_types_name_the_field() {
        let err = parse_toml::<Cfg>("name = 7\ntoken = \"t\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 1") && err.contains("field `name`"),
            "{err}"
        );
    }

    #[test]
    fn errors_say_where_without_quoting_the_line() {
        let typo = "name = \"a\"\ntoken = \"SuperSecretToken1234\" x\n";
        let err = parse_toml::<Cfg>(typo).unwrap_err().to_string();
        assert!(err.starts_with("line 2, column "), "{err}");
        assert!(err.contains("field `token`"), "{err}");
        assert!(!err.contains("SuperSecret"), "{err}");
        let unquoted = "name = \"a\"\ntoken = SuperSecretToken1234\n";
        let err = parse_toml::<Cfg>(unquoted).unwrap_err().to_string();
        assert!(!err.contains("SuperSecret"), "{err}");
        let unknown = "name = \"a\"\ntoken = \"t\"\ncolour = 1\n";
        let err = parse_toml::<Cfg>(unknown).unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("colour"), "{err}");
        let missing = parse_toml::<Cfg>("name = \"a\"\n").unwrap_err().to_string();
        assert!(missing.contains("token"), "{missing}");
    }
}
