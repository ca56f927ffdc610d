//! ACL tokens that strait processes send to an API as `X-Consul-Token`: read from a token
//! file or the environment, as Consul's tools do (`STRAIT_HTTP_TOKEN`,
//! `STRAIT_HTTP_TOKEN_FILE`, then Consul's `CONSUL_HTTP_TOKEN`, `CONSUL_HTTP_TOKEN_FILE`).
//!
//! A token file must exist, hold one token (surrounding whitespace dropped) and be readable
//! by its owner only: a secret other users can read is refused, naming the file.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

pub const TOKEN_ENV: &str = "STRAIT_HTTP_TOKEN";
pub const TOKEN_FILE_ENV: &str = "STRAIT_HTTP_TOKEN_FILE";
pub const CONSUL_TOKEN_ENV: &str = "CONSUL_HTTP_TOKEN";
pub const CONSUL_TOKEN_FILE_ENV: &str = "CONSUL_HTTP_TOKEN_FILE";

/// A token file that cannot be used; the message names the file and says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TokenFileError(String);

/// The token in the file at `path`; `given_by` names what pointed at it (a flag or a
/// variable), for the error.
pub fn read_file(path: &Path, given_by: &str) -> Result<String, TokenFileError> {
    let fail = |why: String| {
        TokenFileError(format!(
            "{given_by}: the token file {}{why}",
            path.display()
        ))
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(format!(" cannot be read: {e}")))?;
    if !meta.is_file() {
        return Err(fail(" is not a regular file".into()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(fail(format!(
            " is readable by group or others (mode {mode:04o}): strait refuses a secret that other users can read; make it private with `chmod 600 {}`",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!(" cannot be read: {e}")))?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(fail(" is empty (put the token's SecretID in it)".into()));
    }
    if secret.lines().count() > 1 {
        return Err(fail(
            " has more than one line (it holds one SecretID)".into(),
        ));
    }
    Ok(secret.to_owned())
}

/// The token the environment gives a process that has no flag for one (proxies): the first
/// of `STRAIT_HTTP_TOKEN`, `STRAIT_HTTP_TOKEN_FILE`, `CONSUL_HTTP_TOKEN`,
/// `CONSUL_HTTP_TOKEN_FILE` that is set; `None` if none is.
pub fn from_env() -> Result<Option<String>, TokenFileError> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    for (variable, file) in [
        (TOKEN_ENV, TOKEN_FILE_ENV),
        (CONSUL_TOKEN_ENV, CONSUL_TOKEN_FILE_ENV),
    ] {
        if let Some(secret) = env(variable) {
            return Ok(Some(secret.trim().to_owned()));
        }
        if let Some(path) = env(file) {
            return read_file(Path::new(&path), file).map(Some);
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn token_files_must_be_private_non_empty_and_exist() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let good = file(d, "good", "  6a1f0c2e-9d4b\n", 0o600);
        assert_eq!(read_file(&good, "--token-file").unwrap(), "6a1f0c2e-9d4b");
        let cases = [
            (
                file(d, "shared", "x\n", 0o644),
                "readable by group or others (mode 0644)",
            ),
            (file(d, "empty", " \n", 0o600), "is empty"),
            (file(d, "two", "a\nb\n", 0o600), "more than one line"),
            (d.join("missing"), "cannot be read"),
            (d.to_path_buf(), "not a regular file"),
        ];
        for (path, why) in cases {
            let e = read_file(&path, "STRAIT_HTTP_TOKEN_FILE")
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(why) && e.contains(&path.display().to_string()),
                "{e}"
            );
            assert!(e.starts_with("STRAIT_HTTP_TOKEN_FILE: "), "{e}");
        }
    }
}
