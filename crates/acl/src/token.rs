//! Tokens, policies and roles in the JSON shapes of Consul's `/v1/acl/` API (PascalCase keys,
//! RFC 3339 times, `Hash` as base64), and the stored form of a token, which keeps the hash
//! of its secret instead of the secret.

use crate::rules::{Rules, RulesError};
use crate::secret::{is_uuid, new_uuid, SecretHash, SecretId};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Consul's built-in `global-management` policy: a token linked to it may do anything.
pub const GLOBAL_MANAGEMENT_POLICY_ID: &str = "00000000-0000-0000-0000-000000000001";
/// Consul's anonymous token: the one a request without a token is resolved to.
pub const ANONYMOUS_TOKEN_ID: &str = "00000000-0000-0000-0000-000000000002";

/// Consul's `SecretID` of the anonymous token: sending it is sending no token. A request
/// relayed for a caller without a token carries it (agents to servers, servers to the leader
/// and to other DCs), so the server it reaches never takes it for the relaying process's own
/// request (which sends none and is authorised by its certificate).
pub const ANONYMOUS_SECRET: &str = "anonymous";

/// A token's or role's link to a policy or role: `ID` and/or `Name`, as Consul's
/// `PolicyLink` / `RoleLink`. A link by name is resolved to an ID when the token is written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Link {
    #[serde(rename = "ID", default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// A service identity: write on the service (its registration, its sidecar's, its leaf) and
/// read on all services and nodes, as Consul's templated policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceIdentity {
    pub service_name: String,
    /// Where it applies; empty: every datacenter.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datacenters: Vec<String>,
}

/// A node identity: write on the node (an agent's own registration) and read on all services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeIdentity {
    pub node_name: String,
    /// The one datacenter where it applies (node names are per datacenter).
    pub datacenter: String,
}

/// Consul's `ACLToken`. `SecretID` is present only where the secret itself travels: the
/// request that chooses one and the answer to the request that created the token. Reads
/// of a stored token never have it (see [`StoredToken`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Token {
    #[serde(rename = "AccessorID", default)]
    pub accessor_id: String,
    /// An empty string is no secret (clients send `""` for "generate one").
    #[serde(
        rename = "SecretID",
        default,
        deserialize_with = "empty_is_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub secret_id: Option<SecretId>,
    #[serde(default)]
    pub description: String,
    #[serde(flatten)]
    pub grants: Grants,
    #[serde(default)]
    pub roles: Vec<Link>,
    /// Stays in the datacenter that created it (not replicated from the primary).
    #[serde(default)]
    pub local: bool,
    #[serde(default, with = "rfc3339", skip_serializing_if = "Option::is_none")]
    pub expiration_time: Option<OffsetDateTime>,
    #[serde(default, with = "rfc3339", skip_serializing_if = "Option::is_none")]
    pub create_time: Option<OffsetDateTime>,
    #[serde(flatten)]
    pub revision: Revision,
}

/// What a token or a role grants directly: `Policies`, `ServiceIdentities`, `NodeIdentities`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Grants {
    #[serde(default)]
    pub policies: Vec<Link>,
    #[serde(default)]
    pub service_identities: Vec<ServiceIdentity>,
    #[serde(default)]
    pub node_identities: Vec<NodeIdentity>,
}

/// What the servers fill in when they write a token, policy or role: `Hash`, `CreateIndex`,
/// `ModifyIndex`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Revision {
    /// Base64 SHA-256 of the content (`content_hash`); replication compares it to see what
    /// changed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hash: String,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}

/// Consul's `ACLPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Policy {
    #[serde(rename = "ID", default)]
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// HCL or JSON in the rule language ([`Rules::parse`]).
    #[serde(default)]
    pub rules: String,
    /// Where it applies; empty: every datacenter.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datacenters: Vec<String>,
    #[serde(flatten)]
    pub revision: Revision,
}

/// Consul's `ACLRole`: policies and identities under one name, linked from tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Role {
    #[serde(rename = "ID", default)]
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(flatten)]
    pub grants: Grants,
    #[serde(flatten)]
    pub revision: Revision,
}

/// A token as the replicated state keeps it: no secret, only its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StoredToken {
    /// `secret_id` is always `None` here.
    pub token: Token,
    pub secret_hash: SecretHash,
}

/// A token, policy or role that may not be written; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidAcl {
    #[error("{field}: {reason}")]
    Field { field: String, reason: String },
    #[error("policy {name:?}: invalid Rules: {source}")]
    Rules { name: String, source: RulesError },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> InvalidAcl {
    InvalidAcl::Field {
        field: field.into(),
        reason: reason.into(),
    }
}

impl Token {
    /// Checks what a client sent before the token is stored: IDs are UUIDs when given,
    /// links name something, identities are well-formed.
    pub fn validate(&self) -> Result<(), InvalidAcl> {
        if !self.accessor_id.is_empty() && !is_uuid(&self.accessor_id) {
            return Err(invalid("AccessorID", "must be a UUID"));
        }
        if let Some(secret) = &self.secret_id {
            if !is_uuid(secret.expose()) {
                return Err(invalid("SecretID", "must be a UUID"));
            }
        }
        validate_links("Roles", &self.roles)?;
        self.grants.validate()
    }

    /// Whether it has expired at `now` (an expired token resolves as "ACL not found").
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.expiration_time.is_some_and(|t| t <= now)
    }

    /// Base64 SHA-256 over what the token grants and how it is described; changes whenever
    /// an update changes anything but the indexes.
    pub fn content_hash(&self) -> String {
        content_hash(&(
            &self.description,
            &self.grants,
            &self.roles,
            self.local,
            self.expiration_time
                .map(OffsetDateTime::unix_timestamp_nanos),
        ))
    }
}

impl StoredToken {
    /// The stored form of `token`: its secret (or a new random one if it has none) goes
    /// into the hash and is handed back once, for the answer to the create request; a
    /// missing `AccessorID` is generated; `create_time` (if unset) is `now`, `Hash` is filled.
    pub fn create(mut token: Token, now: OffsetDateTime) -> (StoredToken, SecretId) {
        let secret = token.secret_id.take().unwrap_or_else(SecretId::generate);
        if token.accessor_id.is_empty() {
            token.accessor_id = new_uuid();
        }
        token.create_time.get_or_insert(now);
        token.revision.hash = token.content_hash();
        let stored = StoredToken {
            token,
            secret_hash: secret.hash(),
        };
        (stored, secret)
    }
}

impl Policy {
    /// Checks a policy before it is stored: a name, parseable rules.
    pub fn validate(&self) -> Result<Rules, InvalidAcl> {
        if self.name.is_empty() {
            return Err(invalid("Name", "is required"));
        }
        if !self.id.is_empty() && !is_uuid(&self.id) {
            return Err(invalid("ID", "must be a UUID"));
        }
        self.parsed_rules()
    }

    /// The rules, parsed; the error names the policy.
    pub fn parsed_rules(&self) -> Result<Rules, InvalidAcl> {
        Rules::parse(&self.rules).map_err(|source| InvalidAcl::Rules {
            name: self.name.clone(),
            source,
        })
    }

    /// Whether it applies in `datacenter`.
    pub fn applies_in(&self, datacenter: &str) -> bool {
        self.datacenters.is_empty() || self.datacenters.iter().any(|d| d == datacenter)
    }

    pub fn content_hash(&self) -> String {
        content_hash(&(
            &self.name,
            &self.description,
            &self.rules,
            &self.datacenters,
        ))
    }

    /// Consul's built-in `global-management` policy, created at bootstrap (its rules, for
    /// what strait has; the authorizer treats a link to its ID as "may do anything").
    pub fn global_management() -> Policy {
        let mut p = Policy {
            id: GLOBAL_MANAGEMENT_POLICY_ID.into(),
            name: "global-management".into(),
            description: "Builtin Policy that grants unlimited access".into(),
            rules: GLOBAL_MANAGEMENT_RULES.into(),
            ..Policy::default()
        };
        p.revision.hash = p.content_hash();
        p
    }
}

const GLOBAL_MANAGEMENT_RULES: &str = r#"acl      = "write"
operator = "write"
mesh     = "write"
agent_prefix "" {
  policy = "write"
}
node_prefix "" {
  policy = "write"
}
service_prefix "" {
  policy     = "write"
  intentions = "write"
}
key_prefix "" {
  policy = "write"
}
"#;

impl Role {
    pub fn validate(&self) -> Result<(), InvalidAcl> {
        if self.name.is_empty() {
            return Err(invalid("Name", "is required"));
        }
        if !self.id.is_empty() && !is_uuid(&self.id) {
            return Err(invalid("ID", "must be a UUID"));
        }
        self.grants.validate()
    }

    pub fn content_hash(&self) -> String {
        content_hash(&(&self.name, &self.description, &self.grants))
    }
}

fn validate_links(field: &str, links: &[Link]) -> Result<(), InvalidAcl> {
    for (i, link) in links.iter().enumerate() {
        if link.id.is_empty() && link.name.is_empty() {
            return Err(invalid(format!("{field}[{i}]"), "needs an ID or a Name"));
        }
    }
    Ok(())
}

impl Grants {
    /// Links name something; identities are well-formed.
    fn validate(&self) -> Result<(), InvalidAcl> {
        validate_links("Policies", &self.policies)?;
        validate_identities(&self.service_identities, &self.node_identities)
    }
}

fn validate_identities(
    services: &[ServiceIdentity],
    nodes: &[NodeIdentity],
) -> Result<(), InvalidAcl> {
    for (i, s) in services.iter().enumerate() {
        if !valid_identity_name(&s.service_name) {
            return Err(invalid(
                format!("ServiceIdentities[{i}].ServiceName"),
                format!("{:?} is not a valid service name (lowercase letters, digits, '-' and '_', starting and ending with a letter or digit)", s.service_name),
            ));
        }
    }
    for (i, n) in nodes.iter().enumerate() {
        if !valid_identity_name(&n.node_name) {
            return Err(invalid(
                format!("NodeIdentities[{i}].NodeName"),
                format!("{:?} is not a valid node name (lowercase letters, digits, '-' and '_', starting and ending with a letter or digit)", n.node_name),
            ));
        }
        if n.datacenter.is_empty() {
            return Err(invalid(
                format!("NodeIdentities[{i}].Datacenter"),
                "is required",
            ));
        }
    }
    Ok(())
}

/// Consul's rule for identity names: `^[a-z0-9]([a-z0-9\-_]*[a-z0-9])?$`, at most 256.
fn valid_identity_name(name: &str) -> bool {
    let b = name.as_bytes();
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= 256
        && b.first().is_some_and(edge)
        && b.last().is_some_and(edge)
        && b.iter().all(|c| edge(c) || *c == b'-' || *c == b'_')
}

fn empty_is_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SecretId>, D::Error> {
    let secret = Option::<SecretId>::deserialize(d)?;
    Ok(secret.filter(|s| !s.expose().is_empty()))
}

fn content_hash(value: &impl Serialize) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// `Option<OffsetDateTime>` as an RFC 3339 string, Consul's time format.
mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::format_description::well_known::Rfc3339;
    use time::OffsetDateTime;

    pub fn serialize<S: Serializer>(t: &Option<OffsetDateTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => {
                let text = t.format(&Rfc3339).map_err(serde::ser::Error::custom)?;
                s.serialize_str(&text)
            }
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<OffsetDateTime>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => OffsetDateTime::parse(&text, &Rfc3339)
                .map(Some)
                .map_err(|e| {
                    serde::de::Error::custom(format!("{text:?} is not an RFC 3339 time: {e}"))
                }),
        }
    }
}

#[cfg(test)]
#[path = "token_tests.rs"]
mod tests;
