//! `strait acl bootstrap | token … | policy … | role …`: Consul's ACL commands, on a server's
//! loopback HTTP API (found like `strait operator`'s, [`ServerAddr`]); the token sent is the
//! one every command sends (`--token`, `--token-file`, ..., see [`super::token`]).
//!
//! `update` commands read the object, replace what their flags give (a list flag replaces
//! that whole list, `--append-*` adds to it; what no flag names stays) and write it back, as
//! Consul's.

use super::api::Api;
use super::operator::ServerAddr;
use anyhow::{bail, Context, Result};
use http::Method;
use serde_json::{json, Value};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct AclArgs {
    #[command(subcommand)]
    cmd: AclCommand,
    #[command(flatten)]
    server: ServerAddr,
}

#[derive(Debug, clap::Subcommand)]
enum AclCommand {
    /// Once per cluster: creates the management token and prints it (its SecretID is shown
    /// only this once).
    Bootstrap,
    /// Tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Roles: named sets of policies and identities that tokens link to.
    #[command(subcommand)]
    Role(RoleCommand),
}

/// What a token or a role grants: policies and identities (each flag repeatable).
#[derive(Debug, clap::Args)]
struct GrantArgs {
    /// A policy by name.
    #[arg(long = "policy-name", value_name = "NAME")]
    policy_names: Vec<String>,
    /// A policy by ID.
    #[arg(long = "policy-id", value_name = "ID")]
    policy_ids: Vec<String>,
    /// A service identity: `NAME` or `NAME:dc1,dc2` (write on NAME, read on all services).
    #[arg(long = "service-identity", value_name = "NAME[:DCS]")]
    service_identities: Vec<String>,
    /// A node identity: `NODE:DC` (write on the node, read on all services).
    #[arg(long = "node-identity", value_name = "NODE:DC")]
    node_identities: Vec<String>,
}

/// A token's roles (each flag repeatable).
#[derive(Debug, clap::Args)]
struct RoleLinks {
    /// A role by name.
    #[arg(long = "role-name", value_name = "NAME")]
    role_names: Vec<String>,
    /// A role by ID.
    #[arg(long = "role-id", value_name = "ID")]
    role_ids: Vec<String>,
}

/// `token update`: links and identities added to the token's instead of replacing them
/// (Consul's `-append-*`; each flag repeatable).
#[derive(Debug, clap::Args)]
struct AppendArgs {
    #[arg(long = "append-policy-name", value_name = "NAME")]
    append_policy_names: Vec<String>,
    #[arg(long = "append-policy-id", value_name = "ID")]
    append_policy_ids: Vec<String>,
    #[arg(long = "append-role-name", value_name = "NAME")]
    append_role_names: Vec<String>,
    #[arg(long = "append-role-id", value_name = "ID")]
    append_role_ids: Vec<String>,
    #[arg(long = "append-service-identity", value_name = "NAME[:DCS]")]
    append_service_identities: Vec<String>,
    #[arg(long = "append-node-identity", value_name = "NODE:DC")]
    append_node_identities: Vec<String>,
}

#[derive(Debug, clap::Subcommand)]
enum TokenCommand {
    /// Create a token; prints its SecretID (shown only this once: servers store a hash).
    Create {
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        grants: GrantArgs,
        #[command(flatten)]
        roles: RoleLinks,
        /// The token stays in this datacenter.
        #[arg(long)]
        local: bool,
    },
    /// Change a token's description, policies, roles or identities (its secret stays).
    Update {
        #[command(flatten)]
        which: Id,
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        grants: GrantArgs,
        #[command(flatten)]
        roles: RoleLinks,
        #[command(flatten)]
        append: AppendArgs,
    },
    /// List the tokens (no SecretIDs).
    List,
    /// Show one token by AccessorID (`self` or `--self`: the one sent).
    Read {
        #[arg(value_name = "ACCESSOR_ID", required_unless_present_any = ["id_flag", "me"])]
        id: Option<String>,
        /// The AccessorID, as Consul's `-id`.
        #[arg(long = "id", value_name = "ACCESSOR_ID", conflicts_with = "id")]
        id_flag: Option<String>,
        /// The token sent.
        #[arg(long = "self", conflicts_with_all = ["id", "id_flag"])]
        me: bool,
    },
    /// Show the token sent (as `read --self`).
    #[command(name = "self")]
    Me,
    /// Delete a token by AccessorID.
    Delete {
        #[command(flatten)]
        which: Id,
    },
}

#[derive(Debug, clap::Subcommand)]
enum PolicyCommand {
    /// Create a policy from rules in HCL or JSON.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// The rules, or `@FILE` to read them from a file.
        #[arg(long)]
        rules: String,
        /// Datacenters where it applies (repeatable; none: all).
        #[arg(long = "valid-datacenter")]
        datacenters: Vec<String>,
    },
    /// Change a policy's name, description, rules or datacenters (by ID).
    Update {
        #[command(flatten)]
        which: Id,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// The new rules, or `@FILE` to read them from a file.
        #[arg(long)]
        rules: Option<String>,
        /// Datacenters where it applies (repeatable; replaces the list).
        #[arg(long = "valid-datacenter")]
        datacenters: Vec<String>,
    },
    /// List the policies.
    List,
    /// Show one policy (with its rules) by ID or name.
    Read {
        #[command(flatten)]
        which: IdOrName,
    },
    /// Delete a policy by ID or name.
    Delete {
        #[command(flatten)]
        which: IdOrName,
    },
}

#[derive(Debug, clap::Subcommand)]
enum RoleCommand {
    /// Create a role.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        grants: GrantArgs,
    },
    /// Change a role's name, description, policies or identities (by ID).
    Update {
        #[command(flatten)]
        which: Id,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        grants: GrantArgs,
    },
    /// List the roles.
    List,
    /// Show one role by ID or name.
    Read {
        #[command(flatten)]
        which: IdOrName,
    },
    /// Delete a role by ID or name.
    Delete {
        #[command(flatten)]
        which: IdOrName,
    },
}

/// Which object: its ID (a token's AccessorID) as the argument or as Consul's `--id`.
#[derive(Debug, clap::Args)]
struct Id {
    #[arg(value_name = "ID", required_unless_present = "id_flag")]
    id: Option<String>,
    /// The ID, as Consul's `-id`.
    #[arg(long = "id", value_name = "ID", conflicts_with = "id")]
    id_flag: Option<String>,
}

impl Id {
    fn get(self) -> String {
        self.id.or(self.id_flag).unwrap_or_default()
    }
}

/// [`Id`], or a policy's or role's name (`--name`, looked up in the list).
#[derive(Debug, clap::Args)]
struct IdOrName {
    #[arg(value_name = "ID", required_unless_present_any = ["id_flag", "by_name"])]
    id: Option<String>,
    /// The ID, as Consul's `-id`.
    #[arg(long = "id", value_name = "ID", conflicts_with = "id")]
    id_flag: Option<String>,
    /// The name instead of the ID.
    #[arg(long = "name", value_name = "NAME", conflicts_with_all = ["id", "id_flag"])]
    by_name: Option<String>,
}

/// The argument `--rules`: the text, or `@FILE`'s content.
fn rules_text(rules: &str) -> Result<String> {
    match rules.strip_prefix('@') {
        Some(path) => {
            let path = PathBuf::from(path);
            std::fs::read_to_string(&path)
                .with_context(|| format!("--rules: cannot read {}", path.display()))
        }
        None => Ok(rules.to_owned()),
    }
}

fn service_identity(arg: &str) -> Result<Value> {
    let (name, dcs) = match arg.split_once(':') {
        Some((name, dcs)) => (name, dcs.split(',').filter(|d| !d.is_empty()).collect()),
        None => (arg, Vec::new()),
    };
    if name.is_empty() {
        bail!("--service-identity {arg:?}: give the service's name (NAME or NAME:dc1,dc2)");
    }
    Ok(json!({"ServiceName": name, "Datacenters": dcs}))
}

fn node_identity(arg: &str) -> Result<Value> {
    match arg.split_once(':') {
        Some((node, dc)) if !node.is_empty() && !dc.is_empty() && !dc.contains(',') => {
            Ok(json!({"NodeName": node, "Datacenter": dc}))
        }
        _ => bail!("--node-identity {arg:?}: give the node and its one datacenter (NODE:DC)"),
    }
}

fn links(names: &[String], ids: &[String]) -> Vec<Value> {
    let by_name = names.iter().map(|n| json!({ "Name": n }));
    by_name
        .chain(ids.iter().map(|id| json!({ "ID": id })))
        .collect()
}

/// How grant flags change an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A new object: every list, empty ones too.
    Create,
    /// An update: each list a flag gives replaces the object's.
    Replace,
    /// An update: each list a flag gives is added to the object's.
    Append,
}

/// A field of a token or role and the entries some flags give it.
type Lists = Vec<(&'static str, Vec<Value>)>;

/// Applies `lists` to `object` as `mode` says.
fn apply(object: &mut Value, lists: Lists, mode: Mode) {
    for (field, entries) in lists {
        match mode {
            Mode::Create => object[field] = entries.into(),
            _ if entries.is_empty() => {}
            Mode::Replace => object[field] = entries.into(),
            Mode::Append => {
                let mut all = list(&object[field]);
                all.extend(entries);
                object[field] = all.into();
            }
        }
    }
}

/// The `Policies`, `ServiceIdentities` and `NodeIdentities` some flags give.
fn grant_lists(
    policy_names: &[String],
    policy_ids: &[String],
    services: &[String],
    nodes: &[String],
) -> Result<Lists> {
    let services = services.iter().map(|s| service_identity(s));
    let nodes = nodes.iter().map(|n| node_identity(n));
    Ok(vec![
        ("Policies", links(policy_names, policy_ids)),
        ("ServiceIdentities", services.collect::<Result<_>>()?),
        ("NodeIdentities", nodes.collect::<Result<_>>()?),
    ])
}

impl GrantArgs {
    fn lists(&self) -> Result<Lists> {
        grant_lists(
            &self.policy_names,
            &self.policy_ids,
            &self.service_identities,
            &self.node_identities,
        )
    }
}

impl RoleLinks {
    fn lists(&self) -> Lists {
        vec![("Roles", links(&self.role_names, &self.role_ids))]
    }
}

impl AppendArgs {
    fn lists(&self) -> Result<Lists> {
        let mut lists = grant_lists(
            &self.append_policy_names,
            &self.append_policy_ids,
            &self.append_service_identities,
            &self.append_node_identities,
        )?;
        lists.push((
            "Roles",
            links(&self.append_role_names, &self.append_role_ids),
        ));
        Ok(lists)
    }
}

/// Sets `field` to `value` when a flag gave it.
fn replace(object: &mut Value, field: &str, value: Option<String>) {
    if let Some(v) = value {
        object[field] = v.into();
    }
}

/// One exchange with JSON in and out.
async fn call(api: &Api, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
    let body = body.map(|b| b.to_string().into_bytes());
    let timeout = strait_rpc::http::DEFAULT_TIMEOUT;
    Ok(api.call(method, path, body, timeout).await?.json()?)
}

/// One kind of ACL object: where the API keeps it and how it is printed.
struct Object {
    /// `/v1/acl/token`: `PUT` creates, `/<ID>` reads, updates and deletes.
    path: &'static str,
    /// `/v1/acl/tokens`: every one.
    list: &'static str,
    /// `Token`, as the deletion message names it.
    noun: &'static str,
    print: fn(&Value),
}

const TOKEN: Object = Object {
    path: "/v1/acl/token",
    list: "/v1/acl/tokens",
    noun: "Token",
    print: print_token,
};
const POLICY: Object = Object {
    path: "/v1/acl/policy",
    list: "/v1/acl/policies",
    noun: "Policy",
    print: print_policy,
};
const ROLE: Object = Object {
    path: "/v1/acl/role",
    list: "/v1/acl/roles",
    noun: "Role",
    print: print_role,
};

impl Object {
    /// Creates one from `body` and prints it.
    async fn create(&self, api: &Api, body: Value) -> Result<()> {
        (self.print)(&call(api, Method::PUT, self.path, Some(body)).await?);
        Ok(())
    }

    /// Reads it, changes it with `edit`, writes it back and prints the answer.
    async fn update(
        &self,
        api: &Api,
        id: &str,
        edit: impl FnOnce(&mut Value) -> Result<()>,
    ) -> Result<()> {
        let path = format!("{}/{id}", self.path);
        let mut object = call(api, Method::GET, &path, None).await?;
        edit(&mut object)?;
        (self.print)(&call(api, Method::PUT, &path, Some(object)).await?);
        Ok(())
    }

    async fn read(&self, api: &Api, id: &str) -> Result<()> {
        let path = format!("{}/{id}", self.path);
        (self.print)(&call(api, Method::GET, &path, None).await?);
        Ok(())
    }

    async fn delete(&self, api: &Api, id: &str) -> Result<()> {
        let path = format!("{}/{id}", self.path);
        call(api, Method::DELETE, &path, None).await?;
        println!("{} \"{id}\" deleted successfully", self.noun);
        Ok(())
    }

    /// The ID `which` names (a name is looked up in the list).
    async fn id(&self, api: &Api, which: IdOrName) -> Result<String> {
        let Some(name) = which.by_name else {
            return Ok(Id {
                id: which.id,
                id_flag: which.id_flag,
            }
            .get());
        };
        let all = call(api, Method::GET, self.list, None).await?;
        let found = list(&all).into_iter().find(|o| o["Name"] == name.as_str());
        match found {
            Some(o) => Ok(text(&o, "ID")),
            None => bail!(
                "--name {name:?}: no {} has that name (`strait acl {} list` lists them)",
                self.noun.to_lowercase(),
                self.noun.to_lowercase()
            ),
        }
    }

    /// Prints the list as a table of `columns`.
    async fn table(&self, api: &Api, columns: &[Column]) -> Result<()> {
        let objects = call(api, Method::GET, self.list, None).await?;
        let rows = list(&objects)
            .iter()
            .map(|o| columns.iter().map(|(_, cell)| cell(o)).collect())
            .collect();
        let header: Vec<&str> = columns.iter().map(|(h, _)| *h).collect();
        super::human::table(&header, rows);
        Ok(())
    }
}

/// A list's column: its header and how a row's cell reads.
type Column = (&'static str, fn(&Value) -> String);

fn id(o: &Value) -> String {
    text(o, "ID")
}

fn name(o: &Value) -> String {
    text(o, "Name")
}

fn description(o: &Value) -> String {
    text(o, "Description")
}

pub async fn run(args: AclArgs) -> Result<()> {
    let api = args.server.api()?;
    match args.cmd {
        AclCommand::Bootstrap => {
            print_token(&call(&api, Method::PUT, "/v1/acl/bootstrap", None).await?);
            Ok(())
        }
        AclCommand::Token(cmd) => token(&api, cmd).await,
        AclCommand::Policy(cmd) => policy(&api, cmd).await,
        AclCommand::Role(cmd) => role(&api, cmd).await,
    }
}

async fn token(api: &Api, cmd: TokenCommand) -> Result<()> {
    match cmd {
        TokenCommand::Create {
            description,
            grants,
            roles,
            local,
        } => {
            let mut body = json!({ "Description": description, "Local": local });
            apply(&mut body, grants.lists()?, Mode::Create);
            apply(&mut body, roles.lists(), Mode::Create);
            TOKEN.create(api, body).await
        }
        TokenCommand::Update {
            which,
            description,
            grants,
            roles,
            append,
        } => {
            let (grants, append) = (grants.lists()?, append.lists()?);
            TOKEN
                .update(api, &which.get(), |t| {
                    replace(t, "Description", description);
                    apply(t, grants, Mode::Replace);
                    apply(t, roles.lists(), Mode::Replace);
                    apply(t, append, Mode::Append);
                    Ok(())
                })
                .await
        }
        TokenCommand::List => {
            let local = |t: &Value| t["Local"].as_bool().unwrap_or(false).to_string();
            let columns: [Column; 4] = [
                ("AccessorID", |t| text(t, "AccessorID")),
                ("Description", description),
                ("Grants", grants_summary),
                ("Local", local),
            ];
            TOKEN.table(api, &columns).await
        }
        TokenCommand::Read { id, id_flag, me } => {
            let id = if me { None } else { id.or(id_flag) };
            TOKEN.read(api, id.as_deref().unwrap_or("self")).await
        }
        TokenCommand::Me => TOKEN.read(api, "self").await,
        TokenCommand::Delete { which } => TOKEN.delete(api, &which.get()).await,
    }
}

async fn policy(api: &Api, cmd: PolicyCommand) -> Result<()> {
    match cmd {
        PolicyCommand::Create {
            name,
            description,
            rules,
            datacenters,
        } => {
            let body = json!({
                "Name": name,
                "Description": description,
                "Rules": rules_text(&rules)?,
                "Datacenters": datacenters,
            });
            POLICY.create(api, body).await
        }
        PolicyCommand::Update {
            which,
            name,
            description,
            rules,
            datacenters,
        } => {
            let rules = rules.as_deref().map(rules_text).transpose()?;
            POLICY
                .update(api, &which.get(), |p| {
                    replace(p, "Name", name);
                    replace(p, "Description", description);
                    replace(p, "Rules", rules);
                    if !datacenters.is_empty() {
                        p["Datacenters"] = datacenters.into();
                    }
                    Ok(())
                })
                .await
        }
        PolicyCommand::List => {
            let columns: [Column; 3] = [("ID", id), ("Name", name), ("Description", description)];
            POLICY.table(api, &columns).await
        }
        PolicyCommand::Read { which } => POLICY.read(api, &POLICY.id(api, which).await?).await,
        PolicyCommand::Delete { which } => POLICY.delete(api, &POLICY.id(api, which).await?).await,
    }
}

async fn role(api: &Api, cmd: RoleCommand) -> Result<()> {
    match cmd {
        RoleCommand::Create {
            name,
            description,
            grants,
        } => {
            let mut body = json!({ "Name": name, "Description": description });
            apply(&mut body, grants.lists()?, Mode::Create);
            ROLE.create(api, body).await
        }
        RoleCommand::Update {
            which,
            name,
            description,
            grants,
        } => {
            let grants = grants.lists()?;
            ROLE.update(api, &which.get(), |r| {
                replace(r, "Name", name);
                replace(r, "Description", description);
                apply(r, grants, Mode::Replace);
                Ok(())
            })
            .await
        }
        RoleCommand::List => {
            let columns: [Column; 4] = [
                ("ID", id),
                ("Name", name),
                ("Description", description),
                ("Grants", grants_summary),
            ];
            ROLE.table(api, &columns).await
        }
        RoleCommand::Read { which } => ROLE.read(api, &ROLE.id(api, which).await?).await,
        RoleCommand::Delete { which } => ROLE.delete(api, &ROLE.id(api, which).await?).await,
    }
}

fn list(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_owned()
}

/// A token's or role's grants on one line: `readers, role:ops, service-identity:web,
/// node-identity:n1`.
fn grants_summary(object: &Value) -> String {
    let named = |field: &str, prefix: &str, key: &str| {
        list(&object[field])
            .into_iter()
            .map(|o| format!("{prefix}{}", text(&o, key)))
            .collect::<Vec<_>>()
    };
    [
        named("Policies", "", "Name"),
        named("Roles", "role:", "Name"),
        named("ServiceIdentities", "service-identity:", "ServiceName"),
        named("NodeIdentities", "node-identity:", "NodeName"),
    ]
    .concat()
    .join(", ")
}

/// A token as Consul's CLI prints it; the SecretID line only when the answer carries one
/// (the answers to bootstrap and create: nothing else shows a secret).
fn print_token(token: &Value) {
    println!("AccessorID:       {}", text(token, "AccessorID"));
    if let Some(secret) = token["SecretID"].as_str() {
        println!("SecretID:         {secret}");
    }
    println!("Description:      {}", text(token, "Description"));
    println!(
        "Local:            {}",
        token["Local"].as_bool().unwrap_or(false)
    );
    println!("Create Time:      {}", text(token, "CreateTime"));
    print_grants(token);
    print_links(token, "Roles");
}

/// The policies and identities of a token or role, as Consul's CLI lists them.
fn print_grants(object: &Value) {
    print_links(object, "Policies");
    let services = list(&object["ServiceIdentities"]);
    if !services.is_empty() {
        println!("Service Identities:");
        for s in services {
            let dcs: Vec<String> = list(&s["Datacenters"])
                .iter()
                .filter_map(|d| d.as_str().map(str::to_owned))
                .collect();
            let dcs = if dcs.is_empty() {
                "all".to_owned()
            } else {
                dcs.join(", ")
            };
            println!("   {} (Datacenters: {dcs})", text(&s, "ServiceName"));
        }
    }
    let nodes = list(&object["NodeIdentities"]);
    if !nodes.is_empty() {
        println!("Node Identities:");
        for n in nodes {
            println!(
                "   {} (Datacenter: {})",
                text(&n, "NodeName"),
                text(&n, "Datacenter")
            );
        }
    }
}

/// `Policies:` / `Roles:` and their `ID - Name` lines (the heading only when there are some
/// roles; policies always, as Consul's CLI).
fn print_links(object: &Value, field: &str) {
    let links = list(&object[field]);
    if field == "Roles" && links.is_empty() {
        return;
    }
    println!("{field}:");
    for l in links {
        println!("   {} - {}", text(&l, "ID"), text(&l, "Name"));
    }
}

fn print_policy(policy: &Value) {
    println!("ID:           {}", text(policy, "ID"));
    println!("Name:         {}", text(policy, "Name"));
    println!("Description:  {}", text(policy, "Description"));
    println!("Rules:\n{}", text(policy, "Rules"));
}

fn print_role(role: &Value) {
    println!("ID:           {}", text(role, "ID"));
    println!("Name:         {}", text(role, "Name"));
    println!("Description:  {}", text(role, "Description"));
    print_grants(role);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_parsed_or_refused_naming_the_flag() {
        assert_eq!(
            service_identity("web:dc1,dc2").unwrap(),
            json!({"ServiceName": "web", "Datacenters": ["dc1", "dc2"]})
        );
        assert_eq!(
            node_identity("n1:dc1").unwrap(),
            json!({"NodeName": "n1", "Datacenter": "dc1"})
        );
        for bad in ["n1", ":dc1", "n1:", "n1:dc1,dc2"] {
            let err = node_identity(bad).unwrap_err().to_string();
            assert!(
                err.contains("--node-identity") && err.contains("NODE:DC"),
                "{err}"
            );
        }
        assert!(service_identity(":dc1")
            .unwrap_err()
            .to_string()
            .contains("--service-identity"));
    }

    /// An update replaces (or appends to) the lists its flags give and keeps the others.
    #[test]
    fn updates_replace_or_append_only_what_is_given() {
        let grants = GrantArgs {
            policy_names: vec!["writers".into()],
            policy_ids: vec![],
            service_identities: vec![],
            node_identities: vec![],
        };
        let mut token = json!({
            "Policies": [{"ID": "1", "Name": "readers"}],
            "ServiceIdentities": [{"ServiceName": "web"}],
        });
        apply(&mut token, grants.lists().unwrap(), Mode::Replace);
        assert_eq!(token["Policies"], json!([{"Name": "writers"}]));
        assert_eq!(token["ServiceIdentities"], json!([{"ServiceName": "web"}]));
        assert!(token.get("NodeIdentities").is_none());
        let append = grant_lists(&[], &["2".into()], &["db".into()], &[]).unwrap();
        apply(&mut token, append, Mode::Append);
        assert_eq!(token["Policies"], json!([{"Name": "writers"}, {"ID": "2"}]));
        assert_eq!(
            token["ServiceIdentities"],
            json!([{"ServiceName": "web"}, {"ServiceName": "db", "Datacenters": []}])
        );
        assert!(token.get("NodeIdentities").is_none());
        let mut created = json!({});
        apply(&mut created, grants.lists().unwrap(), Mode::Create);
        assert_eq!(created["NodeIdentities"], json!([]));
    }
}
