//! The ACL token the CLI sends with every request to an agent's or a server's API (as
//! `X-Consul-Token`, see [`super::api`]), first found wins, as Consul's CLI:
//!
//! 1. `--token` or `STRAIT_HTTP_TOKEN`;
//! 2. `--token-file` or `STRAIT_HTTP_TOKEN_FILE`;
//! 3. Consul's `CONSUL_HTTP_TOKEN`, then `CONSUL_HTTP_TOKEN_FILE`;
//! 4. the API was found in a running lab with ACLs: the lab's management token file;
//! 5. none: the agent's `default` token or the anonymous token answers.
//!
//! A token file must exist, hold the token (surrounding whitespace is dropped) and be
//! readable by its owner only: a secret others can read is refused, naming the file.

use anyhow::Result;
use std::fmt;
use std::path::{Path, PathBuf};

pub(crate) use strait_rpc::token::TOKEN_FILE_ENV;
use strait_rpc::token::{CONSUL_TOKEN_ENV, CONSUL_TOKEN_FILE_ENV, TOKEN_ENV};

/// `--token` and `--token-file`, on every command that talks to an API.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TokenArgs {
    /// The ACL token (SecretID) sent as `X-Consul-Token` (else `--token-file`, then Consul's
    /// CONSUL_HTTP_TOKEN and CONSUL_HTTP_TOKEN_FILE).
    #[arg(long, env = TOKEN_ENV, global = true, hide_env_values = true, value_name = "SECRET")]
    token: Option<String>,
    /// A file holding the ACL token; it must be readable by its owner only (chmod 600).
    #[arg(long = "token-file", env = TOKEN_FILE_ENV, global = true, value_name = "PATH")]
    token_file: Option<PathBuf>,
}

/// A token to send, and where it came from (for messages; the secret is never printed:
/// `Debug` and `Display` show only its origin).
#[derive(Clone)]
pub(crate) struct Token {
    secret: String,
    from: String,
}

impl Token {
    /// The secret, for the one place that sends it (the `X-Consul-Token` header).
    pub(crate) fn expose(&self) -> &str {
        &self.secret
    }

    /// Where it came from: `--token or STRAIT_HTTP_TOKEN`, `the token file /etc/...`.
    pub(crate) fn from(&self) -> &str {
        &self.from
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token(<redacted>, from {})", self.from)
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the token from {}", self.from)
    }
}

/// Whether a token variable is set (strait's or Consul's).
pub(crate) fn in_environment() -> bool {
    [
        TOKEN_ENV,
        TOKEN_FILE_ENV,
        CONSUL_TOKEN_ENV,
        CONSUL_TOKEN_FILE_ENV,
    ]
    .iter()
    .any(|name| env(name).is_some())
}

fn env(name: &str) -> Option<std::ffi::OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

impl TokenArgs {
    /// The token to send, if any (see the module's order), without a lab's.
    pub(crate) fn resolve(&self) -> Result<Option<Token>> {
        self.resolve_with(None)
    }

    /// [`TokenArgs::resolve`]; `lab`: the management token file of the lab the API was
    /// found in.
    pub(crate) fn resolve_with(&self, lab: Option<&Path>) -> Result<Option<Token>> {
        if let Some(secret) = self.token.as_deref().filter(|t| !t.trim().is_empty()) {
            return Ok(Some(Token {
                secret: secret.trim().to_owned(),
                from: format!("--token or {TOKEN_ENV}"),
            }));
        }
        if let Some(path) = &self.token_file {
            return read_file(path, &format!("--token-file or {TOKEN_FILE_ENV}")).map(Some);
        }
        if let Some(secret) = env(CONSUL_TOKEN_ENV) {
            let secret = secret.to_string_lossy().trim().to_owned();
            return Ok(Some(Token {
                secret,
                from: CONSUL_TOKEN_ENV.to_owned(),
            }));
        }
        if let Some(path) = env(CONSUL_TOKEN_FILE_ENV) {
            return read_file(Path::new(&path), CONSUL_TOKEN_FILE_ENV).map(Some);
        }
        lab.map(|path| read_file(path, "the lab's management token"))
            .transpose()
    }
}

/// Reads a token file given by `flag` (`strait_rpc::token`'s checks: it exists, holds one
/// token, and only its owner may read it; errors name the flag and the file).
pub(crate) fn read_file(path: &Path, flag: &str) -> Result<Token> {
    Ok(Token {
        secret: strait_rpc::token::read_file(path, flag)?,
        from: format!("the token file {} ({flag})", path.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// `secret` in a file of `mode` under `dir`.
    fn secret_in(dir: &Path, name: &str, secret: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("{secret}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    /// (Which files are refused: strait_rpc::token's tests; the CLI end to end: tests/acl.rs.)
    #[test]
    fn a_token_says_where_it_came_from_never_what_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let good = secret_in(dir.path(), "good", "6a1f0c2e-9d4b", 0o600);
        let token = read_file(&good, "--token-file").unwrap();
        assert_eq!(token.expose(), "6a1f0c2e-9d4b");
        let shown = format!("{token:?} {token}");
        assert!(
            !shown.contains("6a1f") && shown.contains(&good.display().to_string()),
            "{shown}"
        );
        let shared = secret_in(dir.path(), "shared", "6a1f0c2e-9d4b", 0o640);
        let err = format!("{:#}", read_file(&shared, "--token-file").unwrap_err());
        assert!(
            err.contains("--token-file") && err.contains("mode 0640"),
            "{err}"
        );
        assert!(!err.contains("6a1f"), "{err}");
    }

    #[test]
    fn the_flag_comes_before_the_file_and_the_lab_last() {
        let dir = tempfile::tempdir().unwrap();
        let path = secret_in(dir.path(), "t", "from-file", 0o600);
        let args = TokenArgs {
            token: Some("from-flag".into()),
            token_file: Some(path.clone()),
        };
        assert_eq!(args.resolve().unwrap().unwrap().expose(), "from-flag");
        let args = TokenArgs {
            token: None,
            token_file: Some(path),
        };
        assert_eq!(args.resolve().unwrap().unwrap().expose(), "from-file");
        let lab = secret_in(dir.path(), "management.token", "from-lab", 0o600);
        let got = args.resolve_with(Some(&lab)).unwrap().unwrap();
        assert_eq!(got.expose(), "from-file");
        if !in_environment() {
            let got = TokenArgs::default()
                .resolve_with(Some(&lab))
                .unwrap()
                .unwrap();
            assert_eq!(got.expose(), "from-lab");
            assert!(got.from().contains("the lab's management token"), "{got}");
            assert!(TokenArgs::default().resolve().unwrap().is_none());
        }
    }
}
