//! `strait intention`: who may call whom, as `service-intentions` config entries kept by the
//! destination's DC. Talks to a server's loopback HTTP API (writes are accepted there only;
//! in a lab directory the primary DC's server, see `locate.rs`); `--dc` forwards through the
//! mesh gateways.

use anyhow::{Context, Result};
use http::Method;
use strait_catalog::{config_kind, intention_action, ConfigEntry, SourceIntention};

#[derive(Debug, clap::Args)]
pub struct IntentionArgs {
    #[command(subcommand)]
    cmd: IntentionCommand,
    #[command(flatten)]
    server: super::operator::ServerAddr,
    /// The destination's datacenter (forwarded through the mesh gateways).
    #[arg(long, global = true)]
    dc: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
enum IntentionCommand {
    /// Allow SOURCE (a service or *) to call DESTINATION (a service or *).
    Allow(Pair),
    /// Deny SOURCE (a service or *) calls to DESTINATION (a service or *).
    Deny(Pair),
    /// Remove the intention SOURCE -> DESTINATION.
    Delete(Pair),
    /// Every intention of the datacenter.
    List,
    /// Would SOURCE be allowed to call DESTINATION? Exit code 0: allowed, 1: denied.
    Check(Pair),
}

#[derive(Debug, clap::Args)]
struct Pair {
    source: String,
    destination: String,
    /// Free text kept with the intention.
    #[arg(long, default_value = "")]
    description: String,
}

pub(crate) const SERVER_ENV: &str = "STRAIT_SERVER_HTTP_ADDR";

pub(crate) fn server_help() -> String {
    format!(
        "A server's loopback HTTP API (`http_addr` in its config). {}",
        super::locate::help("server")
    )
}

/// Runs the subcommand; `Ok(false)` means "denied" for `check`.
pub async fn run(args: IntentionArgs) -> Result<bool> {
    let api = Api {
        server: args.server.api()?,
        dc: args.dc,
    };
    match args.cmd {
        IntentionCommand::Allow(p) => upsert(&api, p, intention_action::ALLOW).await?,
        IntentionCommand::Deny(p) => upsert(&api, p, intention_action::DENY).await?,
        IntentionCommand::Delete(p) => delete(&api, p).await?,
        IntentionCommand::List => list(&api).await?,
        IntentionCommand::Check(p) => return check(&api, p).await,
    }
    Ok(true)
}

struct Api {
    server: super::api::Api,
    dc: Option<String>,
}

impl Api {
    fn path(&self, path: &str) -> String {
        match &self.dc {
            Some(dc) => format!("{path}?dc={dc}"),
            None => path.to_string(),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Vec<u8>> {
        let timeout = strait_rpc::http::DEFAULT_TIMEOUT;
        let resp = self
            .server
            .call(method, &self.path(path), body, timeout)
            .await?;
        Ok(resp.body.to_vec())
    }

    async fn entries(&self) -> Result<Vec<ConfigEntry>> {
        let path = format!("/v1/config/{}", config_kind::SERVICE_INTENTIONS);
        let body = self.call(Method::GET, &path, None).await?;
        serde_json::from_slice(&body).context("the server's config entries")
    }

    async fn entry(&self, destination: &str) -> Result<Option<ConfigEntry>> {
        Ok(self
            .entries()
            .await?
            .into_iter()
            .find(|e| e.name == destination))
    }

    async fn put(&self, entry: &ConfigEntry) -> Result<()> {
        let body = serde_json::to_vec(entry)?;
        self.call(Method::PUT, "/v1/config", Some(body)).await?;
        Ok(())
    }
}

async fn upsert(api: &Api, p: Pair, action: &str) -> Result<()> {
    let mut entry = api.entry(&p.destination).await?.unwrap_or(ConfigEntry {
        kind: config_kind::SERVICE_INTENTIONS.into(),
        name: p.destination.clone(),
        ..Default::default()
    });
    entry.modify_index = 0;
    let source = SourceIntention {
        name: p.source.clone(),
        action: action.to_string(),
        description: p.description,
    };
    match entry.sources.iter_mut().find(|s| s.name == p.source) {
        Some(existing) => *existing = source,
        None => entry.sources.push(source),
    }
    api.put(&entry).await?;
    println!("{} -> {}: {action}", p.source, p.destination);
    Ok(())
}

async fn delete(api: &Api, p: Pair) -> Result<()> {
    let not_found = || anyhow::anyhow!("no intention {} -> {}", p.source, p.destination);
    let mut entry = api.entry(&p.destination).await?.ok_or_else(not_found)?;
    let before = entry.sources.len();
    entry.sources.retain(|s| s.name != p.source);
    if entry.sources.len() == before {
        return Err(not_found());
    }
    if entry.sources.is_empty() {
        let path = format!(
            "/v1/config/{}/{}",
            config_kind::SERVICE_INTENTIONS,
            p.destination
        );
        api.call(Method::DELETE, &path, None).await?;
    } else {
        entry.modify_index = 0;
        api.put(&entry).await?;
    }
    println!("removed {} -> {}", p.source, p.destination);
    Ok(())
}

async fn list(api: &Api) -> Result<()> {
    let mut entries = api.entries().await?;
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let rows: Vec<Vec<String>> = entries
        .iter()
        .flat_map(|e| {
            e.sources.iter().map(|s| {
                vec![
                    s.name.clone(),
                    s.action.clone(),
                    e.name.clone(),
                    s.description.clone(),
                ]
            })
        })
        .collect();
    if rows.is_empty() {
        println!("no intentions: every service may call every other");
        return Ok(());
    }
    super::human::table(&["SOURCE", "ACTION", "DESTINATION", "DESCRIPTION"], rows);
    Ok(())
}

/// Asks the server (`/v1/connect/intentions/check`), which decides as the destination's
/// sidecars do: the matching intention of highest precedence, else the default (allowed;
/// denied when ACLs are on with `default_policy = "deny"`).
async fn check(api: &Api, p: Pair) -> Result<bool> {
    let mut path = format!(
        "/v1/connect/intentions/check?source={}&destination={}",
        p.source, p.destination
    );
    if let Some(dc) = &api.dc {
        path.push_str(&format!("&dc={dc}"));
    }
    let answer: serde_json::Value = api.server.get(&path).await?;
    let allowed = answer["Allowed"]
        .as_bool()
        .with_context(|| format!("the server's answer to {path} has no Allowed: {answer}"))?;
    println!(
        "{} -> {}: {}",
        p.source,
        p.destination,
        if allowed { "allowed" } else { "denied" }
    );
    Ok(allowed)
}
