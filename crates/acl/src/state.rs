//! The ACL part of the servers' replicated state: tokens (with an index by secret hash),
//! policies and roles, changed only by [`AclCommand`]s. Applying is deterministic — every
//! random or timed value (IDs, secrets, `CreateTime`) is filled in before a command is
//! proposed ([`prepare_bootstrap`], [`StoredToken::create`], [`prepare_policy`],
//! [`prepare_role`]) — so every server that applies the same log holds the same state.
//! Links by name are resolved to IDs when applied, as Consul does on write.
//!
//! Replication: the primary DC is the authority for global (non-`Local`) tokens, policies
//! and roles. A secondary copies them with one [`AclCommand::Replicate`] carrying the
//! primary's [`AclState::replica`]: it replaces every global object and keeps the
//! secondary's own `Local` tokens.

use crate::authorizer::{Authorizer, Context, Store};
use crate::rules::Rules;
use crate::secret::{new_uuid, SecretHash, SecretId};
use crate::token::{
    Grants, InvalidAcl, Link, Policy, Role, StoredToken, Token, ANONYMOUS_TOKEN_ID,
    GLOBAL_MANAGEMENT_POLICY_ID,
};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// A change to the ACL state, as the Raft log records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum AclCommand {
    /// Once per cluster: the `global-management` policy, the anonymous token and this
    /// management token.
    Bootstrap(StoredToken),
    /// A new token ([`StoredToken::create`]).
    CreateToken(StoredToken),
    /// Replaces what an existing token grants (found by `AccessorID`); its secret, `Local`
    /// and `CreateTime` stay.
    UpdateToken(Token),
    DeleteToken {
        accessor_id: String,
    },
    /// Creates or replaces a policy (by `ID`, see [`prepare_policy`]).
    SetPolicy(Policy),
    /// Replaces an existing policy: refused if none has its `ID` (deleted meanwhile), so an
    /// update racing a delete never brings the policy back.
    UpdatePolicy(Policy),
    DeletePolicy {
        id: String,
    },
    /// Creates or replaces a role (by `ID`, see [`prepare_role`]).
    SetRole(Role),
    /// Replaces an existing role, as [`AclCommand::UpdatePolicy`].
    UpdateRole(Role),
    DeleteRole {
        id: String,
    },
    /// A secondary DC's copy of the primary's global objects ([`AclState::replica`]):
    /// replaces every global token, every policy and every role; this DC's `Local` tokens
    /// stay.
    Replicate(Replica),
}

/// What a secondary DC copies from the primary: the global (non-`Local`) tokens with their
/// secret hashes (never secrets), every policy and every role, as of the primary's ACL
/// `Index` ([`AclState::index`]). Objects keep the primary's `CreateIndex`/`ModifyIndex`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Replica {
    pub index: u64,
    pub tokens: Vec<StoredToken>,
    pub policies: Vec<Policy>,
    pub roles: Vec<Role>,
}

/// Why a command was refused: the same on every server. Names the field or the object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclRefused {
    #[error(transparent)]
    Invalid(#[from] InvalidAcl),
    #[error("{0}")]
    Conflict(String),
}

/// Why a secret did not resolve to an authorizer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// Unknown or expired secret; Consul's words (answered with 403).
    #[error("ACL not found")]
    NotFound,
    /// A stored policy that no longer parses (a corrupt state, not the caller's fault).
    #[error(transparent)]
    Invalid(#[from] InvalidAcl),
}

/// Tokens, policies and roles. Serialized for Raft snapshots without the secret index,
/// which is rebuilt on load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "Image", into = "Image")]
pub struct AclState {
    image: Image,
    /// Secret hash -> `AccessorID`.
    by_secret: BTreeMap<SecretHash, String>,
    /// Policy ID -> its rules, parsed when the policy is written.
    rules: BTreeMap<String, Rules>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Image {
    tokens: BTreeMap<String, StoredToken>,
    policies: BTreeMap<String, Policy>,
    roles: BTreeMap<String, Role>,
    /// The log index of the bootstrap, once done (a second one is refused).
    bootstrap_index: Option<u64>,
    /// The log index of the last ACL command applied (what replication's blocking query on
    /// the primary waits on); 0 in images from before replication.
    #[serde(default)]
    index: u64,
    /// On a secondary: the primary's ACL index its global objects are a copy of (0: none
    /// yet), where replication resumes after a restart or a change of leader.
    #[serde(default)]
    replicated_index: u64,
}

impl From<Image> for AclState {
    fn from(image: Image) -> Self {
        let by_secret = image
            .tokens
            .values()
            .map(|t| (t.secret_hash, t.token.accessor_id.clone()))
            .collect();
        // A policy that no longer parses is left out here and refused when a token using
        // it resolves (`Store::policy_rules` parses it again and names it).
        let rules = image
            .policies
            .values()
            .filter_map(|p| Some((p.id.clone(), p.parsed_rules().ok()?)))
            .collect();
        AclState {
            image,
            by_secret,
            rules,
        }
    }
}

impl From<AclState> for Image {
    fn from(state: AclState) -> Self {
        state.image
    }
}

/// The bootstrap command and the management token's secret (the answer to
/// `PUT /v1/acl/bootstrap`): `secret` is `acl.tokens.initial_management` when set.
pub fn prepare_bootstrap(secret: Option<SecretId>, now: OffsetDateTime) -> (AclCommand, SecretId) {
    let token = Token {
        secret_id: secret,
        description: "Bootstrap Token (Global Management)".into(),
        grants: Grants {
            policies: vec![Link {
                id: GLOBAL_MANAGEMENT_POLICY_ID.into(),
                name: "global-management".into(),
            }],
            ..Grants::default()
        },
        ..Token::default()
    };
    let (stored, secret) = StoredToken::create(token, now);
    (AclCommand::Bootstrap(stored), secret)
}

/// A new policy gets its ID before it is proposed.
pub fn prepare_policy(mut policy: Policy) -> AclCommand {
    if policy.id.is_empty() {
        policy.id = new_uuid();
    }
    AclCommand::SetPolicy(policy)
}

/// A new role gets its ID before it is proposed.
pub fn prepare_role(mut role: Role) -> AclCommand {
    if role.id.is_empty() {
        role.id = new_uuid();
    }
    AclCommand::SetRole(role)
}

fn conflict(msg: impl Into<String>) -> AclRefused {
    AclRefused::Conflict(msg.into())
}

impl AclState {
    /// Applies a command at log `index` (the `CreateIndex`/`ModifyIndex` it records). The
    /// ACL index moves to `index` even when the command is refused (a refused bootstrap may
    /// have created the built-in policy first), so a replica is never older than the state.
    pub fn apply(&mut self, index: u64, command: AclCommand) -> Result<(), AclRefused> {
        let applied = self.apply_command(index, command);
        self.image.index = index;
        applied
    }

    fn apply_command(&mut self, index: u64, command: AclCommand) -> Result<(), AclRefused> {
        match command {
            AclCommand::Bootstrap(management) => self.bootstrap(index, management),
            AclCommand::CreateToken(token) => self.create_token(index, token),
            AclCommand::UpdateToken(token) => self.update_token(index, token),
            AclCommand::DeleteToken { accessor_id } => {
                if accessor_id == ANONYMOUS_TOKEN_ID {
                    return Err(conflict("the anonymous token cannot be deleted"));
                }
                if let Some(gone) = self.image.tokens.remove(&accessor_id) {
                    self.by_secret.remove(&gone.secret_hash);
                }
                Ok(())
            }
            AclCommand::SetPolicy(policy) => self.set_policy(index, policy),
            AclCommand::UpdatePolicy(policy) => {
                match self.image.policies.contains_key(&policy.id) {
                    true => self.set_policy(index, policy),
                    false => Err(conflict(format!("no policy with ID {}", policy.id))),
                }
            }
            AclCommand::DeletePolicy { id } => {
                if id == GLOBAL_MANAGEMENT_POLICY_ID {
                    return Err(conflict("the global-management policy cannot be deleted"));
                }
                self.image.policies.remove(&id);
                self.rules.remove(&id);
                Ok(())
            }
            AclCommand::SetRole(role) => self.set_role(index, role),
            AclCommand::UpdateRole(role) => match self.image.roles.contains_key(&role.id) {
                true => self.set_role(index, role),
                false => Err(conflict(format!("no role with ID {}", role.id))),
            },
            AclCommand::DeleteRole { id } => {
                self.image.roles.remove(&id);
                Ok(())
            }
            AclCommand::Replicate(replica) => {
                self.replicate(replica);
                Ok(())
            }
        }
    }

    /// Installs the primary's global objects. A `Local` token of this DC whose `AccessorID`
    /// or secret a global token also has is dropped: the primary's is the authority. The
    /// replica's `Local` tokens (there should be none) are left out.
    fn replicate(&mut self, replica: Replica) {
        let mut tokens: BTreeMap<String, StoredToken> = replica
            .tokens
            .into_iter()
            .filter(|t| !t.token.local)
            .map(|mut t| {
                t.token.secret_id = None;
                (t.token.accessor_id.clone(), t)
            })
            .collect();
        let global_secrets: std::collections::BTreeSet<SecretHash> =
            tokens.values().map(|t| t.secret_hash).collect();
        for (accessor, local) in std::mem::take(&mut self.image.tokens) {
            if local.token.local && !global_secrets.contains(&local.secret_hash) {
                tokens.entry(accessor).or_insert(local);
            }
        }
        let image = Image {
            tokens,
            policies: replica
                .policies
                .into_iter()
                .map(|p| (p.id.clone(), p))
                .collect(),
            roles: replica
                .roles
                .into_iter()
                .map(|r| (r.id.clone(), r))
                .collect(),
            bootstrap_index: self.image.bootstrap_index,
            index: self.image.index,
            replicated_index: replica.index,
        };
        *self = AclState::from(image);
    }

    fn bootstrap(&mut self, index: u64, management: StoredToken) -> Result<(), AclRefused> {
        if let Some(done) = self.image.bootstrap_index {
            return Err(conflict(format!(
                "ACL bootstrap no longer allowed (reset index: {done})"
            )));
        }
        if !self
            .image
            .policies
            .contains_key(GLOBAL_MANAGEMENT_POLICY_ID)
        {
            self.set_policy(index, Policy::global_management())?;
        }
        if !self.image.tokens.contains_key(ANONYMOUS_TOKEN_ID) {
            let anonymous = StoredToken {
                token: Token {
                    accessor_id: ANONYMOUS_TOKEN_ID.into(),
                    description: "Anonymous Token".into(),
                    create_time: management.token.create_time,
                    ..Token::default()
                },
                // Consul's anonymous token answers to the secret "anonymous" too.
                secret_hash: SecretHash::of(crate::token::ANONYMOUS_SECRET),
            };
            self.create_token(index, anonymous)?;
        }
        self.create_token(index, management)?;
        self.image.bootstrap_index = Some(index);
        Ok(())
    }

    fn create_token(&mut self, index: u64, mut stored: StoredToken) -> Result<(), AclRefused> {
        let token = &mut stored.token;
        token.validate()?;
        if token.secret_id.is_some() {
            return Err(conflict("a stored token carries no SecretID (a bug)"));
        }
        if self.image.tokens.contains_key(&token.accessor_id) {
            return Err(conflict(format!(
                "AccessorID {} is already in use",
                token.accessor_id
            )));
        }
        if self.by_secret.contains_key(&stored.secret_hash) {
            return Err(conflict("SecretID is already in use"));
        }
        self.resolve_links(&mut token.grants, &mut token.roles)?;
        token.revision.hash = token.content_hash();
        token.revision.create_index = index;
        token.revision.modify_index = index;
        let accessor = token.accessor_id.clone();
        self.by_secret.insert(stored.secret_hash, accessor.clone());
        self.image.tokens.insert(accessor, stored);
        Ok(())
    }

    fn update_token(&mut self, index: u64, mut token: Token) -> Result<(), AclRefused> {
        token.validate()?;
        let Some(existing) = self.image.tokens.get(&token.accessor_id) else {
            return Err(conflict(format!(
                "no token with AccessorID {}",
                token.accessor_id
            )));
        };
        if let Some(secret) = token.secret_id.take() {
            if !existing.secret_hash.matches(secret.expose()) {
                return Err(conflict("SecretID cannot be changed"));
            }
        }
        if token.local != existing.token.local {
            return Err(conflict("cannot toggle Local on an existing token"));
        }
        match token.expiration_time {
            None => token.expiration_time = existing.token.expiration_time,
            Some(t) if Some(t) != existing.token.expiration_time => {
                return Err(conflict(
                    "cannot change ExpirationTime of an existing token",
                ));
            }
            Some(_) => {}
        }
        token.create_time = existing.token.create_time;
        token.revision.create_index = existing.token.revision.create_index;
        let secret_hash = existing.secret_hash;
        self.resolve_links(&mut token.grants, &mut token.roles)?;
        token.revision.hash = token.content_hash();
        token.revision.modify_index = index;
        let accessor = token.accessor_id.clone();
        self.image
            .tokens
            .insert(accessor, StoredToken { token, secret_hash });
        Ok(())
    }

    fn set_policy(&mut self, index: u64, mut policy: Policy) -> Result<(), AclRefused> {
        let rules = policy.validate()?;
        if policy.id.is_empty() {
            return Err(conflict("a policy is proposed with its ID (a bug)"));
        }
        if let Some(other) = self.policy_named(&policy.name) {
            if other.id != policy.id {
                return Err(conflict(format!(
                    "a policy named {:?} already exists",
                    policy.name
                )));
            }
        }
        let existing = self.image.policies.get(&policy.id);
        if policy.id == GLOBAL_MANAGEMENT_POLICY_ID
            && existing
                .is_some_and(|p| p.rules != policy.rules || p.datacenters != policy.datacenters)
        {
            return Err(conflict(
                "the rules of the global-management policy cannot be changed",
            ));
        }
        policy.revision.create_index = existing.map_or(index, |p| p.revision.create_index);
        policy.revision.modify_index = index;
        policy.revision.hash = policy.content_hash();
        self.rules.insert(policy.id.clone(), rules);
        self.image.policies.insert(policy.id.clone(), policy);
        Ok(())
    }

    fn set_role(&mut self, index: u64, mut role: Role) -> Result<(), AclRefused> {
        role.validate()?;
        if role.id.is_empty() {
            return Err(conflict("a role is proposed with its ID (a bug)"));
        }
        if let Some(other) = self.image.roles.values().find(|r| r.name == role.name) {
            if other.id != role.id {
                return Err(conflict(format!(
                    "a role named {:?} already exists",
                    role.name
                )));
            }
        }
        self.resolve_links(&mut role.grants, &mut Vec::new())?;
        let existing = self.image.roles.get(&role.id);
        role.revision.create_index = existing.map_or(index, |r| r.revision.create_index);
        role.revision.modify_index = index;
        role.revision.hash = role.content_hash();
        self.image.roles.insert(role.id.clone(), role);
        Ok(())
    }

    /// Fills in the ID and name of every link; a link to nothing is refused (it names the
    /// field), as Consul refuses a token naming a policy that does not exist.
    fn resolve_links(&self, grants: &mut Grants, roles: &mut [Link]) -> Result<(), AclRefused> {
        for (i, link) in grants.policies.iter_mut().enumerate() {
            let policy = self
                .policy(link)
                .ok_or_else(|| conflict(format!("Policies[{i}]: no policy {}", describe(link))))?;
            *link = Link {
                id: policy.id.clone(),
                name: policy.name.clone(),
            };
        }
        for (i, link) in roles.iter_mut().enumerate() {
            let role = self
                .role(link)
                .ok_or_else(|| conflict(format!("Roles[{i}]: no role {}", describe(link))))?;
            *link = Link {
                id: role.id.clone(),
                name: role.name.clone(),
            };
        }
        Ok(())
    }

    /// What the holder of `secret` may do; no secret is the anonymous token. Unknown and
    /// expired secrets are [`ResolveError::NotFound`].
    pub fn resolve(
        &self,
        secret: Option<&str>,
        now: OffsetDateTime,
        ctx: &Context<'_>,
    ) -> Result<Authorizer, ResolveError> {
        let token = match secret {
            None => self.image.tokens.get(ANONYMOUS_TOKEN_ID).map(|t| &t.token),
            Some(secret) => self
                .by_secret
                .get(&SecretHash::of(secret))
                .and_then(|accessor| self.image.tokens.get(accessor))
                .map(|t| &t.token),
        };
        match token {
            Some(token) if !token.is_expired(now) => Ok(Authorizer::for_token(token, self, ctx)?),
            Some(_) => Err(ResolveError::NotFound),
            // Before bootstrap there is no anonymous token: it grants nothing.
            None if secret.is_none() => Ok(Authorizer::for_token(
                &Token {
                    accessor_id: ANONYMOUS_TOKEN_ID.into(),
                    ..Token::default()
                },
                self,
                ctx,
            )?),
            None => Err(ResolveError::NotFound),
        }
    }

    /// The log index of the last ACL command applied here.
    pub fn index(&self) -> u64 {
        self.image.index
    }

    /// On a secondary: the primary's ACL index of the last replica applied (0: none).
    pub fn replicated_index(&self) -> u64 {
        self.image.replicated_index
    }

    /// The global objects, for a secondary to copy ([`AclCommand::Replicate`]).
    pub fn replica(&self) -> Replica {
        Replica {
            index: self.image.index,
            tokens: self.tokens().filter(|t| !t.token.local).cloned().collect(),
            policies: self.policies().cloned().collect(),
            roles: self.roles().cloned().collect(),
        }
    }

    pub fn is_bootstrapped(&self) -> bool {
        self.image.bootstrap_index.is_some()
    }

    pub fn token(&self, accessor_id: &str) -> Option<&StoredToken> {
        self.image.tokens.get(accessor_id)
    }

    pub fn tokens(&self) -> impl Iterator<Item = &StoredToken> {
        self.image.tokens.values()
    }

    pub fn policies(&self) -> impl Iterator<Item = &Policy> {
        self.image.policies.values()
    }

    pub fn roles(&self) -> impl Iterator<Item = &Role> {
        self.image.roles.values()
    }

    fn policy_named(&self, name: &str) -> Option<&Policy> {
        self.image.policies.values().find(|p| p.name == name)
    }
}

fn describe(link: &Link) -> String {
    match link.id.is_empty() {
        true => format!("named {:?}", link.name),
        false => format!("with ID {}", link.id),
    }
}

impl Store for AclState {
    fn policy(&self, link: &Link) -> Option<&Policy> {
        match link.id.is_empty() {
            false => self.image.policies.get(&link.id),
            true => self.policy_named(&link.name),
        }
    }

    fn role(&self, link: &Link) -> Option<&Role> {
        match link.id.is_empty() {
            false => self.image.roles.get(&link.id),
            true => self.image.roles.values().find(|r| r.name == link.name),
        }
    }

    fn policy_rules<'a>(&'a self, policy: &'a Policy) -> Result<Cow<'a, Rules>, InvalidAcl> {
        match self.rules.get(&policy.id) {
            Some(rules) => Ok(Cow::Borrowed(rules)),
            None => policy.parsed_rules().map(Cow::Owned),
        }
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
