//! Consul's rule language, for the resources strait has:
//!
//! ```hcl
//! service "web"     { policy = "write"  intentions = "read" }
//! service_prefix "" { policy = "read" }
//! node "n1"         { policy = "write" }     # also node_prefix
//! agent_prefix ""   { policy = "read" }      # also agent
//! key_prefix "app/" { policy = "list" }      # also key; parsed now, for a future KV store
//! operator = "read"
//! mesh     = "write"
//! acl      = "read"
//! ```
//!
//! or the same in JSON (`{"service": {"web": {"policy": "write"}}, "operator": "read"}`,
//! blocks may also be lists of such maps, as HCL's JSON form allows). Levels are `read`,
//! `write`, `deny`, and `list` for keys only. One serde visitor defines the language for
//! both syntaxes; HCL goes through hcl-rs's parser (with spans, so errors name the line of
//! the offending key), JSON through serde_json (its errors carry line and column).

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;

/// The disposition a rule gives. When several policies give one (same resource, same name),
/// the strongest wins: `deny` over `write` over `list` over `read` (Consul's merge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Read,
    List,
    Write,
    Deny,
}

/// What a request needs. `List` exists for keys only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    Read,
    List,
    Write,
}

impl Access {
    fn rank(self) -> u8 {
        match self {
            Access::Read => 0,
            Access::List => 1,
            Access::Write => 2,
            Access::Deny => 3,
        }
    }

    /// The one that wins when two policies give a rule for the same thing.
    pub fn strongest(self, other: Access) -> Access {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }

    /// Whether a rule at this level allows `need` (write implies list and read; list
    /// implies read).
    pub fn grants(self, need: Level) -> bool {
        match self {
            Access::Write => true,
            Access::List => need != Level::Write,
            Access::Read => need == Level::Read,
            Access::Deny => false,
        }
    }

    fn parse(text: &str, list_ok: bool) -> Option<Access> {
        match text {
            "read" => Some(Access::Read),
            "write" => Some(Access::Write),
            "deny" => Some(Access::Deny),
            "list" if list_ok => Some(Access::List),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::List => "list",
            Access::Write => "write",
            Access::Deny => "deny",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Read => "read",
            Level::List => "list",
            Level::Write => "write",
        })
    }
}

/// Rules for named things: exact names and name prefixes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Segments<T> {
    pub exact: BTreeMap<String, T>,
    pub prefix: BTreeMap<String, T>,
}

impl<T> Default for Segments<T> {
    fn default() -> Self {
        Segments {
            exact: BTreeMap::new(),
            prefix: BTreeMap::new(),
        }
    }
}

impl<T: Copy> Segments<T> {
    /// The rule for `name`: an exact rule if there is one, else the longest prefix rule
    /// (the empty prefix matches everything).
    pub fn lookup(&self, name: &str) -> Option<T> {
        if let Some(rule) = self.exact.get(name) {
            return Some(*rule);
        }
        (0..=name.len())
            .rev()
            .filter(|&i| name.is_char_boundary(i))
            .find_map(|i| self.prefix.get(&name[..i]).copied())
    }

    fn merge(&mut self, other: &Segments<T>, combine: impl Fn(T, T) -> T) {
        for (mine, theirs) in [
            (&mut self.exact, &other.exact),
            (&mut self.prefix, &other.prefix),
        ] {
            for (name, rule) in theirs {
                let merged = match mine.get(name) {
                    Some(have) => combine(*have, *rule),
                    None => *rule,
                };
                mine.insert(name.clone(), merged);
            }
        }
    }
}

/// A `service` / `service_prefix` rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceRule {
    pub policy: Access,
    /// `None`: derived from `policy` as Consul does (read or write give read, deny denies).
    pub intentions: Option<Access>,
}

impl ServiceRule {
    /// The intentions level this rule gives, explicit or derived.
    pub fn intentions(self) -> Access {
        self.intentions.unwrap_or(match self.policy {
            Access::Deny => Access::Deny,
            _ => Access::Read,
        })
    }

    fn strongest(self, other: ServiceRule) -> ServiceRule {
        let intentions = match (self.intentions, other.intentions) {
            (Some(a), Some(b)) => Some(a.strongest(b)),
            (a, b) => a.or(b),
        };
        ServiceRule {
            policy: self.policy.strongest(other.policy),
            intentions,
        }
    }
}

/// One policy's rules, or several merged. Serde gives the compiled form servers send agents
/// with a resolved token (an [`crate::Authorizer`]), not the rule language ([`Rules::parse`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Rules {
    pub acl: Option<Access>,
    pub operator: Option<Access>,
    pub mesh: Option<Access>,
    pub service: Segments<ServiceRule>,
    pub node: Segments<Access>,
    pub agent: Segments<Access>,
    pub key: Segments<Access>,
}

/// Rules that do not parse; the message names the rule, the key and (HCL) the line or
/// (JSON) the line and column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RulesError(String);

impl Rules {
    /// Parses policy rules in either syntax, as Consul's `Rules` field takes them: text whose
    /// first non-blank character is `{` is JSON, anything else HCL.
    pub fn parse(text: &str) -> Result<Rules, RulesError> {
        if text.trim_start().starts_with('{') {
            Rules::parse_json(text)
        } else {
            Rules::parse_hcl(text)
        }
    }

    pub fn parse_json(text: &str) -> Result<Rules, RulesError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let mut rules = Rules::default();
        RulesSeed(&mut rules)
            .deserialize(&mut de)
            .and_then(|()| de.end())
            .map_err(|e| RulesError(e.to_string()))?;
        Ok(rules)
    }

    /// Each top-level rule is decoded on its own, so an error names the line of the rule
    /// (or of the key inside it that is wrong).
    pub fn parse_hcl(text: &str) -> Result<Rules, RulesError> {
        use hcl::edit::structure::{Body, Structure};
        use hcl::edit::Span;
        let body: Body = text
            .parse()
            .map_err(|e: hcl::edit::parser::Error| RulesError(syntax_error(&e)))?;
        let mut rules = Rules::default();
        for structure in body {
            let start = structure.span().map_or(0, |s| s.start);
            if let Structure::Block(block) = &structure {
                if BlockKind::of(block.ident.as_str()).is_some() && block.labels.len() != 1 {
                    let name = block.ident.as_str();
                    return Err(RulesError(format!(
                        "line {}: `{name}` takes one name: {name} \"<name>\" {{ policy = \"read\" }}",
                        line_of(text, start)
                    )));
                }
            }
            // The byte where the key the error names is set, if it is inside this block.
            let key_at = |msg: &str| match &structure {
                Structure::Block(block) => {
                    let key = msg.split('`').nth(1)?;
                    block.body.get_attribute(key)?.span().map(|s| s.start)
                }
                Structure::Attribute(_) => None,
            };
            let one = hcl::Body::from_iter([hcl::Structure::from(structure.clone())]);
            RulesSeed(&mut rules)
                .deserialize(hcl::de::Deserializer::from_body(one))
                .map_err(|e| {
                    let msg = e.to_string();
                    let at = key_at(&msg).unwrap_or(start);
                    RulesError(format!("line {}: {msg}", line_of(text, at)))
                })?;
        }
        Ok(rules)
    }

    /// Adds `other`'s rules; where both give one for the same thing, the strongest wins.
    pub fn merge(&mut self, other: &Rules) {
        for (mine, theirs) in [
            (&mut self.acl, other.acl),
            (&mut self.operator, other.operator),
            (&mut self.mesh, other.mesh),
        ] {
            *mine = match (*mine, theirs) {
                (Some(a), Some(b)) => Some(a.strongest(b)),
                (a, b) => a.or(b),
            };
        }
        self.service.merge(&other.service, ServiceRule::strongest);
        self.node.merge(&other.node, Access::strongest);
        self.agent.merge(&other.agent, Access::strongest);
        self.key.merge(&other.key, Access::strongest);
    }
}

/// hcl-rs's message, plus a hint where Consul's HCL 1 habit of several attributes on one
/// line (`{ policy = "write" intentions = "read" }`) is the likely cause.
fn syntax_error(e: &hcl::edit::parser::Error) -> String {
    match e.line().matches('=').count() > 1 {
        true => format!(
            "{e}\n  = HCL 2 takes one attribute per line: `{{ policy = \"write\" intentions = \"read\" }}` (Consul's HCL 1) is written over several lines"
        ),
        false => e.to_string(),
    }
}

fn line_of(text: &str, byte: usize) -> usize {
    text[..byte.min(text.len())].matches('\n').count() + 1
}

/// The top-level names of the language.
const RULES: &[&str] = &[
    "acl",
    "agent",
    "agent_prefix",
    "key",
    "key_prefix",
    "mesh",
    "node",
    "node_prefix",
    "operator",
    "service",
    "service_prefix",
];

/// The rules that name things (`service "web" { ... }`).
#[derive(Clone, Copy)]
enum BlockKind {
    Service,
    ServicePrefix,
    Node,
    NodePrefix,
    Agent,
    AgentPrefix,
    Key,
    KeyPrefix,
}

impl BlockKind {
    fn of(name: &str) -> Option<BlockKind> {
        Some(match name {
            "service" => BlockKind::Service,
            "service_prefix" => BlockKind::ServicePrefix,
            "node" => BlockKind::Node,
            "node_prefix" => BlockKind::NodePrefix,
            "agent" => BlockKind::Agent,
            "agent_prefix" => BlockKind::AgentPrefix,
            "key" => BlockKind::Key,
            "key_prefix" => BlockKind::KeyPrefix,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            BlockKind::Service => "service",
            BlockKind::ServicePrefix => "service_prefix",
            BlockKind::Node => "node",
            BlockKind::NodePrefix => "node_prefix",
            BlockKind::Agent => "agent",
            BlockKind::AgentPrefix => "agent_prefix",
            BlockKind::Key => "key",
            BlockKind::KeyPrefix => "key_prefix",
        }
    }

    fn is_service(self) -> bool {
        matches!(self, BlockKind::Service | BlockKind::ServicePrefix)
    }

    fn is_key(self) -> bool {
        matches!(self, BlockKind::Key | BlockKind::KeyPrefix)
    }

    fn is_prefix(self) -> bool {
        matches!(
            self,
            BlockKind::ServicePrefix
                | BlockKind::NodePrefix
                | BlockKind::AgentPrefix
                | BlockKind::KeyPrefix
        )
    }

    /// Records `label`'s rule; a name given twice in one policy is an error (it is a typo,
    /// and which one wins would be a guess).
    fn insert(self, rules: &mut Rules, label: String, body: RuleBody) -> Result<(), String> {
        let twice = || format!("{} \"{label}\" is given twice", self.name());
        let prefix = self.is_prefix();
        let fresh = match self {
            BlockKind::Service | BlockKind::ServicePrefix => {
                let segs = &mut rules.service;
                let map = if prefix {
                    &mut segs.prefix
                } else {
                    &mut segs.exact
                };
                let rule = ServiceRule {
                    policy: body.policy,
                    intentions: body.intentions,
                };
                map.insert(label.clone(), rule).is_none()
            }
            _ => {
                let segs = match self {
                    BlockKind::Node | BlockKind::NodePrefix => &mut rules.node,
                    BlockKind::Agent | BlockKind::AgentPrefix => &mut rules.agent,
                    _ => &mut rules.key,
                };
                let map = if prefix {
                    &mut segs.prefix
                } else {
                    &mut segs.exact
                };
                map.insert(label.clone(), body.policy).is_none()
            }
        };
        if fresh {
            Ok(())
        } else {
            Err(twice())
        }
    }
}

/// Decodes a whole document into the `Rules` it points at (several HCL structures decode
/// into one `Rules`, so duplicates across them are caught).
struct RulesSeed<'a>(&'a mut Rules);

impl<'de> DeserializeSeed<'de> for RulesSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RulesSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ACL rules")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if let Some(kind) = BlockKind::of(&key) {
                map.next_value_seed(LabelsSeed {
                    kind,
                    rules: self.0,
                })?;
                continue;
            }
            let slot = match key.as_str() {
                "acl" => &mut self.0.acl,
                "operator" => &mut self.0.operator,
                "mesh" => &mut self.0.mesh,
                _ => return Err(de::Error::unknown_field(&key, RULES)),
            };
            read_level(&mut map, &key, false, slot)?;
        }
        Ok(())
    }
}

/// Reads the value of `key` (an access level, `list` only where `list_ok`) into `slot`.
fn read_level<'de, A: MapAccess<'de>>(
    map: &mut A,
    key: &str,
    list_ok: bool,
    slot: &mut Option<Access>,
) -> Result<(), A::Error> {
    let text: String = map
        .next_value()
        .map_err(|e| de::Error::custom(format!("`{key}`: {e}")))?;
    let access = Access::parse(&text, list_ok).ok_or_else(|| {
        let expected = match list_ok {
            true => "\"read\", \"write\", \"list\" or \"deny\"",
            false => "\"read\", \"write\" or \"deny\"",
        };
        de::Error::custom(format!("`{key}` = {text:?}: expected {expected}"))
    })?;
    match slot.replace(access) {
        Some(_) => Err(de::Error::custom(format!("`{key}` is given twice"))),
        None => Ok(()),
    }
}

/// `{"<name>": {<body>}, ...}` (or a list of such maps) under one block kind.
struct LabelsSeed<'a> {
    kind: BlockKind,
    rules: &'a mut Rules,
}

impl<'de> DeserializeSeed<'de> for LabelsSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for LabelsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.kind.name();
        write!(
            f,
            "`{name}` rules by name: {name} \"<name>\" {{ policy = ... }}"
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let name = self.kind.name();
        while let Some(label) = map.next_key::<String>()? {
            let body = map
                .next_value_seed(BodySeed(self.kind))
                .map_err(|e| de::Error::custom(format!("{name} \"{label}\": {e}")))?;
            self.kind
                .insert(self.rules, label, body)
                .map_err(de::Error::custom)?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let kind = self.kind;
        while seq
            .next_element_seed(LabelsSeed {
                kind,
                rules: &mut *self.rules,
            })?
            .is_some()
        {}
        Ok(())
    }
}

/// The inside of one named rule.
struct RuleBody {
    policy: Access,
    intentions: Option<Access>,
}

struct BodySeed(BlockKind);

impl<'de> DeserializeSeed<'de> for BodySeed {
    type Value = RuleBody;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RuleBody, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BodySeed {
    type Value = RuleBody;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a block with `policy`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RuleBody, A::Error> {
        let kind = self.0;
        let keys: &[&str] = if kind.is_service() {
            &["policy", "intentions"]
        } else {
            &["policy"]
        };
        let (mut policy, mut intentions) = (None, None);
        while let Some(key) = map.next_key::<String>()? {
            let slot = match key.as_str() {
                "policy" => &mut policy,
                "intentions" if kind.is_service() => &mut intentions,
                _ => return Err(de::Error::unknown_field(&key, keys)),
            };
            let list_ok = kind.is_key() && key == "policy";
            read_level(&mut map, &key, list_ok, slot)?;
        }
        let policy = policy.ok_or_else(|| de::Error::custom("`policy` is missing"))?;
        Ok(RuleBody { policy, intentions })
    }
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
