//! `strait acl bootstrap | token … | policy …`: Consul's ACL commands, on a server's loopback
//! HTTP API (found like `strait operator`'s, [`Server::locate`]). The token sent is
//! `--token`, else `STRAIT_HTTP_TOKEN`, else Consul's `CONSUL_HTTP_TOKEN`.

use super::operator::{Server, ServerAddr};
use anyhow::{bail, Context, Result};
use http::Method;
use serde_json::{json, Value};
use std::path::PathBuf;

/// strait's variable for the token the CLI sends; Consul's is also read.
const TOKEN_ENV: &str = "STRAIT_HTTP_TOKEN";
const CONSUL_TOKEN_ENV: &str = "CONSUL_HTTP_TOKEN";

#[derive(Debug, clap::Args)]
pub struct AclArgs {
    #[command(subcommand)]
    cmd: AclCommand,
    #[command(flatten)]
    server: ServerAddr,
    /// The ACL token (SecretID) to send as `X-Consul-Token` (else `CONSUL_HTTP_TOKEN`).
    #[arg(long, env = TOKEN_ENV, global = true, hide_env_values = true)]
    token: Option<String>,
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
}

#[derive(Debug, clap::Subcommand)]
enum TokenCommand {
    /// Create a token; prints its SecretID (shown only this once: servers store a hash).
    Create {
        #[arg(long, default_value = "")]
        description: String,
        /// A policy by name (repeatable).
        #[arg(long = "policy-name")]
        policy_names: Vec<String>,
        /// A policy by ID (repeatable).
        #[arg(long = "policy-id")]
        policy_ids: Vec<String>,
        /// A service identity: `NAME` or `NAME:dc1,dc2` (repeatable).
        #[arg(long = "service-identity")]
        service_identities: Vec<String>,
        /// The token stays in this datacenter.
        #[arg(long)]
        local: bool,
    },
    /// List the tokens (no SecretIDs).
    List,
    /// Show one token by AccessorID (`self`: the one sent).
    Read { accessor_id: String },
    /// Delete a token by AccessorID.
    Delete { accessor_id: String },
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
    /// List the policies.
    List,
    /// Show one policy (with its rules) by ID.
    Read { id: String },
    /// Delete a policy by ID.
    Delete { id: String },
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

pub async fn run(args: AclArgs) -> Result<()> {
    let server = Server::locate(&args.server)?;
    let token = args
        .token
        .or_else(|| std::env::var(CONSUL_TOKEN_ENV).ok())
        .filter(|t| !t.is_empty());
    let call = |method: Method, path: String, body: Option<Value>| {
        let server = &server;
        let token = token.as_deref();
        async move {
            let body = body.map(|b| b.to_string().into_bytes());
            let timeout = strait_rpc::http::DEFAULT_TIMEOUT;
            let resp = server.call_as(method, &path, body, timeout, token).await?;
            let value: Value = resp.json()?;
            anyhow::Ok(value)
        }
    };
    match args.cmd {
        AclCommand::Bootstrap => {
            print_token(&call(Method::PUT, "/v1/acl/bootstrap".into(), None).await?)
        }
        AclCommand::Token(cmd) => match cmd {
            TokenCommand::Create {
                description,
                policy_names,
                policy_ids,
                service_identities,
                local,
            } => {
                let policies: Vec<Value> = policy_names
                    .iter()
                    .map(|n| json!({ "Name": n }))
                    .chain(policy_ids.iter().map(|id| json!({ "ID": id })))
                    .collect();
                let identities = service_identities
                    .iter()
                    .map(|s| service_identity(s))
                    .collect::<Result<Vec<_>>>()?;
                let body = json!({
                    "Description": description,
                    "Policies": policies,
                    "ServiceIdentities": identities,
                    "Local": local,
                });
                print_token(&call(Method::PUT, "/v1/acl/token".into(), Some(body)).await?);
            }
            TokenCommand::List => {
                let tokens = call(Method::GET, "/v1/acl/tokens".into(), None).await?;
                let rows = list(&tokens)
                    .iter()
                    .map(|t| {
                        vec![
                            text(t, "AccessorID"),
                            text(t, "Description"),
                            links(t),
                            t["Local"].as_bool().unwrap_or(false).to_string(),
                        ]
                    })
                    .collect();
                super::human::table(&["AccessorID", "Description", "Policies", "Local"], rows);
            }
            TokenCommand::Read { accessor_id } => {
                let path = match accessor_id.as_str() {
                    "self" => "/v1/acl/token/self".to_owned(),
                    id => format!("/v1/acl/token/{id}"),
                };
                print_token(&call(Method::GET, path, None).await?);
            }
            TokenCommand::Delete { accessor_id } => {
                let path = format!("/v1/acl/token/{accessor_id}");
                call(Method::DELETE, path, None).await?;
                println!("Token \"{accessor_id}\" deleted successfully");
            }
        },
        AclCommand::Policy(cmd) => match cmd {
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
                print_policy(&call(Method::PUT, "/v1/acl/policy".into(), Some(body)).await?);
            }
            PolicyCommand::List => {
                let policies = call(Method::GET, "/v1/acl/policies".into(), None).await?;
                let rows = list(&policies)
                    .iter()
                    .map(|p| vec![text(p, "ID"), text(p, "Name"), text(p, "Description")])
                    .collect();
                super::human::table(&["ID", "Name", "Description"], rows);
            }
            PolicyCommand::Read { id } => {
                print_policy(&call(Method::GET, format!("/v1/acl/policy/{id}"), None).await?);
            }
            PolicyCommand::Delete { id } => {
                call(Method::DELETE, format!("/v1/acl/policy/{id}"), None).await?;
                println!("Policy \"{id}\" deleted successfully");
            }
        },
    }
    Ok(())
}

fn list(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_owned()
}

/// A token's policies and service identities, as `name, name, service-identity:web`.
fn links(token: &Value) -> String {
    let policies = list(&token["Policies"])
        .into_iter()
        .map(|p| text(&p, "Name"));
    let identities = list(&token["ServiceIdentities"])
        .into_iter()
        .map(|s| format!("service-identity:{}", text(&s, "ServiceName")));
    policies.chain(identities).collect::<Vec<_>>().join(", ")
}

/// A token as Consul's CLI prints it; the SecretID line only when the answer carries one.
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
    println!("Policies:");
    for p in list(&token["Policies"]) {
        println!("   {} - {}", text(&p, "ID"), text(&p, "Name"));
    }
    let identities = list(&token["ServiceIdentities"]);
    if !identities.is_empty() {
        println!("Service Identities:");
        for s in identities {
            println!("   {}", text(&s, "ServiceName"));
        }
    }
}

fn print_policy(policy: &Value) {
    println!("ID:           {}", text(policy, "ID"));
    println!("Name:         {}", text(policy, "Name"));
    println!("Description:  {}", text(policy, "Description"));
    println!("Rules:\n{}", text(policy, "Rules"));
}
