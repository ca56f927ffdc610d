//! The `[acl]` table that server and agent configs embed (TOML, strait's config format):
//!
//! ```toml
//! [acl]
//! enabled        = true
//! default_policy = "deny"          # "allow" (default) | "deny"
//! down_policy    = "extend-cache"  # (default) | "deny" | "allow"
//! token_ttl      = "30s"           # agents: how long a resolved token is trusted (default 30s)
//!
//! [acl.tokens]
//! initial_management = "…"   # servers: the management token bootstrap creates
//! agent              = "…"   # the agent's own requests (registration sync, its leaf)
//! default            = "…"   # requests that carry no token
//! replication        = "…"   # secondary servers: reading ACLs from the primary
//! ```
//!
//! Tokens are [`SecretId`]s: `Debug` never prints them, and errors name the field only.

use crate::secret::SecretId;
use serde::{Deserialize, Serialize};

/// What decides where no rule applies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultPolicy {
    /// Consul's default: a closed system has to say so.
    #[default]
    Allow,
    Deny,
}

/// What an agent or secondary server does with a token when it cannot reach the servers
/// that own the ACLs (the primary DC's, for global tokens).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DownPolicy {
    /// Keep using what it last resolved (tokens it never saw: denied).
    #[default]
    ExtendCache,
    Deny,
    Allow,
}

/// The `[acl]` table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclConfig {
    /// Off (the default): no token is asked for and everything is allowed, as before ACLs.
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub default_policy: DefaultPolicy,
    #[serde(default)]
    pub down_policy: DownPolicy,
    /// Agents: how long a token resolved through the servers is used before it is resolved
    /// again (Consul's `token_ttl`, default 30 s): a revoked token stops working within it.
    /// `"0s"` resolves on every request. A duration (`500ms`, `30s`, `5m`).
    #[serde(default)]
    pub token_ttl: Option<String>,
    #[serde(default)]
    pub tokens: AclTokens,
}

/// Consul's default `token_ttl`.
const DEFAULT_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// `[acl.tokens]`: secrets this process uses or creates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclTokens {
    /// Servers only: the `SecretID` of the management token that bootstrap creates (so an
    /// operator can choose it, and every server of the primary DC agrees on it).
    #[serde(default)]
    pub initial_management: Option<SecretId>,
    /// The agent's own requests to its servers: node registration, anti-entropy, leaves.
    #[serde(default)]
    pub agent: Option<SecretId>,
    /// Used for requests that carry no token, instead of the anonymous token.
    #[serde(default)]
    pub default: Option<SecretId>,
    /// Secondary DCs' servers only: the token they replicate ACLs from the primary with.
    #[serde(default)]
    pub replication: Option<SecretId>,
}

/// Which process reads the config: some tokens only mean something to servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Server,
    Agent,
}

/// An `[acl]` table that may not be used; the message names the field, never a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AclConfigError(String);

impl AclConfig {
    /// Checks the table for a server or an agent: tokens at least
    /// [`strait_rpc::config::MIN_TOKEN_LEN`] characters; server-only tokens not on agents.
    pub fn validate(&self, side: Side) -> Result<(), AclConfigError> {
        self.try_token_ttl()?;
        let t = &self.tokens;
        let fields = [
            ("initial_management", &t.initial_management, true),
            ("agent", &t.agent, false),
            ("default", &t.default, false),
            ("replication", &t.replication, true),
        ];
        for (name, token, server_only) in fields {
            let Some(token) = token else { continue };
            let field = format!("acl.tokens.{name}");
            if server_only && side == Side::Agent {
                return Err(AclConfigError(format!(
                    "field `{field}` is read by servers only; remove it from the agent's config"
                )));
            }
            strait_rpc::config::check_token(&field, token.expose())
                .map_err(|e| AclConfigError(e.to_string()))?;
        }
        Ok(())
    }

    /// `token_ttl`, or its default; a value [`AclConfig::validate`] refused counts as the
    /// default.
    pub fn token_ttl(&self) -> std::time::Duration {
        self.try_token_ttl().unwrap_or(DEFAULT_TOKEN_TTL)
    }

    fn try_token_ttl(&self) -> Result<std::time::Duration, AclConfigError> {
        match &self.token_ttl {
            None => Ok(DEFAULT_TOKEN_TTL),
            Some(text) => strait_rpc::duration::parse(text)
                .map_err(|e| AclConfigError(format!("field `acl.token_ttl` = {e}"))),
        }
    }

    /// Whether a connection no intention matches is allowed: with ACLs on and
    /// `default_policy = "deny"`, intentions default to deny as well (Consul's rule), so the
    /// mesh is closed unless an intention allows.
    pub fn intentions_default_allow(&self) -> bool {
        !self.enabled || self.default_policy == DefaultPolicy::Allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strait_rpc::config::parse_toml;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        acl: AclConfig,
    }

    fn acl(text: &str) -> AclConfig {
        parse_toml::<File>(text).unwrap().acl
    }

    #[test]
    fn defaults_are_consuls() {
        let a = acl("");
        assert!(!a.enabled);
        assert_eq!(a.default_policy, DefaultPolicy::Allow);
        assert_eq!(a.down_policy, DownPolicy::ExtendCache);
        assert!(a.intentions_default_allow());
        assert_eq!(a.token_ttl(), DEFAULT_TOKEN_TTL);
        a.validate(Side::Agent).unwrap();
    }

    #[test]
    fn token_ttl_is_a_duration() {
        let a = acl("[acl]\ntoken_ttl = \"500ms\"\n");
        assert_eq!(a.token_ttl(), std::time::Duration::from_millis(500));
        a.validate(Side::Agent).unwrap();
        let e = acl("[acl]\ntoken_ttl = \"soon\"\n")
            .validate(Side::Agent)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("field `acl.token_ttl` = \"soon\""), "{e}");
    }

    #[test]
    fn full_table() {
        let a = acl(r#"
[acl]
enabled = true
default_policy = "deny"
down_policy = "deny"
[acl.tokens]
initial_management = "0b4c1f7e-5d8a-4c0e-9a52-1f0d7b9e3c21"
agent = "6f3a2c1d-0e9b-4a8c-b7d6-5e4f3a2b1c0d"
default = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
replication = "9e8d7c6b-5a4f-4e3d-a2c1-b0a9f8e7d6c5"
"#);
        assert!(a.enabled);
        assert_eq!(a.down_policy, DownPolicy::Deny);
        assert!(
            !a.intentions_default_allow(),
            "default deny closes the mesh"
        );
        assert_eq!(
            a.tokens.agent.as_ref().unwrap().expose(),
            "6f3a2c1d-0e9b-4a8c-b7d6-5e4f3a2b1c0d"
        );
        a.validate(Side::Server).unwrap();
        let debug = format!("{a:?}");
        for secret in ["0b4c1f7e", "6f3a2c1d", "1a2b3c4d", "9e8d7c6b"] {
            assert!(!debug.contains(secret), "{debug}");
        }
        let e = a.validate(Side::Agent).unwrap_err().to_string();
        assert_eq!(
            e,
            "field `acl.tokens.initial_management` is read by servers only; remove it from the agent's config"
        );
    }

    #[test]
    fn disabled_acls_leave_intentions_open() {
        let a = acl("[acl]\ndefault_policy = \"deny\"\n");
        assert!(a.intentions_default_allow());
    }

    #[test]
    fn errors_name_the_field_never_the_token() {
        let a = acl("[acl.tokens]\nagent = \"short-secret\"\n");
        let e = a.validate(Side::Agent).unwrap_err().to_string();
        assert!(e.contains("`acl.tokens.agent`") && e.contains("16"), "{e}");
        assert!(!e.contains("short-secret"), "{e}");

        let e = parse_toml::<File>("[acl]\ndefault_policy = \"closed\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("default_policy") && e.contains("closed"), "{e}");
        let e = parse_toml::<File>("[acl]\ndown_policy = \"async-cache\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("down_policy"), "{e}");
        let e = parse_toml::<File>("[acl.tokens]\nmaster = \"0b4c1f7e-5d8a-4c0e-9a52\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("master") && !e.contains("0b4c1f7e"), "{e}");
        let e = parse_toml::<File>("[acl]\nenable = true\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("enable"), "{e}");
    }
}
