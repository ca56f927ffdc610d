//! The authorizer: a token's policies, its roles' policies and its service and node
//! identities compiled into one set of rules, asked before an endpoint acts.
//!
//! Precedence, as Consul's: for one resource and name, an exact rule beats every prefix rule
//! and the longest prefix beats shorter ones; where several policies give a rule for the
//! same resource and name, `deny` beats `write` beats `list` beats `read`; where no rule
//! applies, the default policy decides, except for `acl` (and snapshots), which only a rule
//! or a management token allows. `mesh` falls back to the `operator` rule. A token linked to
//! the `global-management` policy may do anything.

use crate::config::DefaultPolicy;
use crate::rules::{Access, Level, Rules, Segments, ServiceRule};
use crate::token::{
    Grants, InvalidAcl, Link, Policy, Role, Token, ANONYMOUS_TOKEN_ID, GLOBAL_MANAGEMENT_POLICY_ID,
};
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

/// Where the policies and roles a token links to are found (the replicated state).
pub trait Store {
    /// The policy a link names (by `ID`, else by `Name`); `None` if it no longer exists
    /// (a dangling link grants nothing, as in Consul).
    fn policy(&self, link: &Link) -> Option<&Policy>;
    /// The role a link names, likewise.
    fn role(&self, link: &Link) -> Option<&Role>;
    /// A policy's rules, parsed. A store that keeps them parsed (as [`crate::AclState`]
    /// does) lends them, so resolving a token parses no HCL.
    fn policy_rules<'a>(&'a self, policy: &'a Policy) -> Result<Cow<'a, Rules>, InvalidAcl> {
        policy.parsed_rules().map(Cow::Owned)
    }
}

/// Where the token is being used.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Policies and identities limited to other datacenters do not apply.
    pub datacenter: &'a str,
    /// What decides where no rule applies (`acl.default_policy`).
    pub default_policy: DefaultPolicy,
}

/// What a token may do. It travels from a server to an agent (which resolves its callers'
/// tokens through its servers) as JSON: `AccessorID`, `Management`, `DefaultAllow` and the
/// compiled `Rules`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(into = "Wire", from = "Wire")]
pub struct Authorizer {
    accessor_id: String,
    management: bool,
    default_allow: bool,
    rules: Rules,
    /// `service` rules' intentions levels, explicit or derived from their policy.
    intentions: Segments<Access>,
}

/// [`Authorizer`]'s serialized form (the intentions levels are derived again on arrival).
#[derive(serde::Serialize, serde::Deserialize)]
struct Wire {
    #[serde(rename = "AccessorID")]
    accessor_id: String,
    #[serde(rename = "Management")]
    management: bool,
    #[serde(rename = "DefaultAllow")]
    default_allow: bool,
    #[serde(rename = "Rules")]
    rules: Rules,
}

impl From<Authorizer> for Wire {
    fn from(a: Authorizer) -> Wire {
        Wire {
            accessor_id: a.accessor_id,
            management: a.management,
            default_allow: a.default_allow,
            rules: a.rules,
        }
    }
}

impl From<Wire> for Authorizer {
    fn from(w: Wire) -> Authorizer {
        let policy = match w.default_allow {
            true => DefaultPolicy::Allow,
            false => DefaultPolicy::Deny,
        };
        let mut auth = Authorizer::from_rules(&w.accessor_id, w.rules, policy);
        auth.management = w.management;
        auth
    }
}

/// The resources of the rule language; `Display` is Consul's name for them in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Acl,
    Agent,
    Intention,
    Key,
    Mesh,
    Node,
    Operator,
    Service,
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Resource::Acl => "acl",
            Resource::Agent => "agent",
            Resource::Intention => "intention",
            Resource::Key => "key",
            Resource::Mesh => "mesh",
            Resource::Node => "node",
            Resource::Operator => "operator",
            Resource::Service => "service",
        })
    }
}

/// A refusal; `Display` is Consul's message word for word (clients and scripts match on
/// it), and the HTTP layer answers it with 403. Names the token by its `AccessorID` only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub accessor_id: String,
    pub resource: Resource,
    pub level: Level,
    /// The service, node, key… asked for; `None` for `acl`, `operator`, `mesh`.
    pub name: Option<String>,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let anonymous = self.accessor_id == ANONYMOUS_TOKEN_ID;
        match anonymous {
            true => f.write_str("Permission denied: anonymous token")?,
            false => write!(
                f,
                "Permission denied: token with AccessorID '{}'",
                self.accessor_id
            )?,
        }
        write!(f, " lacks permission '{}:{}'", self.resource, self.level)?;
        if let Some(name) = &self.name {
            write!(f, " on \"{name}\"")?;
        }
        if anonymous {
            f.write_str(
                ". The anonymous token is used implicitly when a request does not specify a token.",
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Denied {}

impl Authorizer {
    /// Compiles what `token` may do in `ctx.datacenter`. Fails only if a linked policy's
    /// rules do not parse (they were checked when written, so this means a corrupt store);
    /// the error names the policy.
    pub fn for_token(
        token: &Token,
        store: &impl Store,
        ctx: &Context<'_>,
    ) -> Result<Authorizer, InvalidAcl> {
        let roles = token.roles.iter().filter_map(|link| store.role(link));
        let grants: Vec<&Grants> = std::iter::once(&token.grants)
            .chain(roles.map(|role| &role.grants))
            .collect();

        let mut rules = Rules::default();
        let mut seen = BTreeSet::new();
        let mut management = false;
        let links = grants.iter().flat_map(|g| &g.policies);
        for policy in links.filter_map(|link| store.policy(link)) {
            if !seen.insert(policy.id.as_str()) || !policy.applies_in(ctx.datacenter) {
                continue;
            }
            management |= policy.id == GLOBAL_MANAGEMENT_POLICY_ID;
            rules.merge(&*store.policy_rules(policy)?);
        }
        for s in grants.iter().flat_map(|g| &g.service_identities) {
            if s.datacenters.is_empty() || s.datacenters.iter().any(|d| d == ctx.datacenter) {
                rules.merge(&service_identity_rules(&s.service_name));
            }
        }
        for n in grants.iter().flat_map(|g| &g.node_identities) {
            if n.datacenter == ctx.datacenter {
                rules.merge(&node_identity_rules(&n.node_name));
            }
        }
        let mut auth = Authorizer::from_rules(&token.accessor_id, rules, ctx.default_policy);
        auth.management = management;
        Ok(auth)
    }

    /// An authorizer for one set of rules (what [`Authorizer::for_token`] builds on).
    pub fn from_rules(accessor_id: &str, rules: Rules, default_policy: DefaultPolicy) -> Self {
        let intentions = Segments {
            exact: derive_intentions(&rules.service.exact),
            prefix: derive_intentions(&rules.service.prefix),
        };
        Authorizer {
            accessor_id: accessor_id.to_string(),
            management: false,
            default_allow: default_policy == DefaultPolicy::Allow,
            rules,
            intentions,
        }
    }

    /// One that may do anything (the initial management token, the servers' own work).
    pub fn management(accessor_id: &str) -> Self {
        let mut auth = Authorizer::from_rules(accessor_id, Rules::default(), DefaultPolicy::Allow);
        auth.management = true;
        auth
    }

    /// For logs: the token's public half.
    pub fn accessor_id(&self) -> &str {
        &self.accessor_id
    }

    pub fn is_management(&self) -> bool {
        self.management
    }

    /// Whether, with no intention matching, connections are allowed: follows the default
    /// policy (Consul's rule: default deny closes the mesh too).
    pub fn intention_default_allow(&self) -> bool {
        self.default_allow
    }

    fn check(
        &self,
        rule: Option<Access>,
        resource: Resource,
        level: Level,
        name: Option<&str>,
    ) -> Result<(), Denied> {
        let default = self.default_allow && resource != Resource::Acl;
        let allowed = self.management || rule.map_or(default, |r| r.grants(level));
        match allowed {
            true => Ok(()),
            false => Err(Denied {
                accessor_id: self.accessor_id.clone(),
                resource,
                level,
                name: name.map(str::to_string),
            }),
        }
    }

    /// Reading ACL tokens, policies and roles.
    pub fn acl_read(&self) -> Result<(), Denied> {
        self.check(self.rules.acl, Resource::Acl, Level::Read, None)
    }

    /// Writing them.
    pub fn acl_write(&self) -> Result<(), Denied> {
        self.check(self.rules.acl, Resource::Acl, Level::Write, None)
    }

    /// Saving or restoring a snapshot of the servers' state (it holds every token's hash):
    /// `acl = "write"`, as Consul.
    pub fn snapshot(&self) -> Result<(), Denied> {
        self.acl_write()
    }

    pub fn operator_read(&self) -> Result<(), Denied> {
        self.check(self.rules.operator, Resource::Operator, Level::Read, None)
    }

    pub fn operator_write(&self) -> Result<(), Denied> {
        self.check(self.rules.operator, Resource::Operator, Level::Write, None)
    }

    /// Mesh-wide config entries (proxy-defaults, mesh); falls back to the `operator` rule.
    pub fn mesh_read(&self) -> Result<(), Denied> {
        let rule = self.rules.mesh.or(self.rules.operator);
        self.check(rule, Resource::Mesh, Level::Read, None)
    }

    pub fn mesh_write(&self) -> Result<(), Denied> {
        let rule = self.rules.mesh.or(self.rules.operator);
        self.check(rule, Resource::Mesh, Level::Write, None)
    }

    /// Discovering a service (catalog and health reads, its config entries).
    pub fn service_read(&self, service: &str) -> Result<(), Denied> {
        self.service(service, Level::Read)
    }

    /// Registering, deregistering, its checks, its leaf certificate, its proxy's ADS stream.
    pub fn service_write(&self, service: &str) -> Result<(), Denied> {
        self.service(service, Level::Write)
    }

    fn service(&self, service: &str, level: Level) -> Result<(), Denied> {
        let rule = self.rules.service.lookup(service).map(|r| r.policy);
        self.check(rule, Resource::Service, level, Some(service))
    }

    /// Reading the intentions whose destination is `service`.
    pub fn intention_read(&self, service: &str) -> Result<(), Denied> {
        self.named(&self.intentions, Resource::Intention, Level::Read, service)
    }

    /// Writing an intention whose destination is `service`.
    pub fn intention_write(&self, service: &str) -> Result<(), Denied> {
        self.named(&self.intentions, Resource::Intention, Level::Write, service)
    }

    pub fn node_read(&self, node: &str) -> Result<(), Denied> {
        self.named(&self.rules.node, Resource::Node, Level::Read, node)
    }

    /// Registering a node (an agent's own registration and its sync).
    pub fn node_write(&self, node: &str) -> Result<(), Denied> {
        self.named(&self.rules.node, Resource::Node, Level::Write, node)
    }

    /// An agent's own endpoints (`/v1/agent/self`, members, metrics) on `node`.
    pub fn agent_read(&self, node: &str) -> Result<(), Denied> {
        self.named(&self.rules.agent, Resource::Agent, Level::Read, node)
    }

    /// Changing an agent (reload, maintenance, leave) on `node`.
    pub fn agent_write(&self, node: &str) -> Result<(), Denied> {
        self.named(&self.rules.agent, Resource::Agent, Level::Write, node)
    }

    pub fn key_read(&self, key: &str) -> Result<(), Denied> {
        self.named(&self.rules.key, Resource::Key, Level::Read, key)
    }

    pub fn key_list(&self, key: &str) -> Result<(), Denied> {
        self.named(&self.rules.key, Resource::Key, Level::List, key)
    }

    pub fn key_write(&self, key: &str) -> Result<(), Denied> {
        self.named(&self.rules.key, Resource::Key, Level::Write, key)
    }

    fn named(
        &self,
        rules: &Segments<Access>,
        resource: Resource,
        level: Level,
        name: &str,
    ) -> Result<(), Denied> {
        self.check(rules.lookup(name), resource, level, Some(name))
    }
}

fn derive_intentions(
    rules: &std::collections::BTreeMap<String, ServiceRule>,
) -> std::collections::BTreeMap<String, Access> {
    rules
        .iter()
        .map(|(name, rule)| (name.clone(), rule.intentions()))
        .collect()
}

/// Consul's templated policy for a service identity: write on the service and on its
/// sidecar (`<name>-sidecar-proxy`), read on every service and node (for discovery).
fn service_identity_rules(name: &str) -> Rules {
    let write = ServiceRule {
        policy: Access::Write,
        intentions: None,
    };
    let mut rules = Rules::default();
    rules.service.exact.insert(name.to_string(), write);
    rules
        .service
        .exact
        .insert(format!("{name}-sidecar-proxy"), write);
    rules.service.prefix.insert(String::new(), read_service());
    rules.node.prefix.insert(String::new(), Access::Read);
    rules
}

/// Consul's templated policy for a node identity: write on the node, read on every service.
fn node_identity_rules(name: &str) -> Rules {
    let mut rules = Rules::default();
    rules.node.exact.insert(name.to_string(), Access::Write);
    rules.service.prefix.insert(String::new(), read_service());
    rules
}

fn read_service() -> ServiceRule {
    ServiceRule {
        policy: Access::Read,
        intentions: None,
    }
}

#[cfg(test)]
#[path = "authorizer_tests.rs"]
mod tests;
