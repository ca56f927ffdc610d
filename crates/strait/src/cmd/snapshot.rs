//! `strait snapshot save FILE | restore FILE`: backups of a datacenter's servers, as Consul's
//! `consul snapshot` (`/v1/snapshot` on a server's loopback API). The file is the server's
//! envelope as it came (see `crates/server/src/api/operator/envelope.rs`); the server checks
//! it on restore.

use super::operator::ServerAddr;
use anyhow::{Context, Result};
use http::Method;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    cmd: SnapshotCommand,
    #[command(flatten)]
    server: ServerAddr,
}

#[derive(Debug, clap::Subcommand)]
enum SnapshotCommand {
    /// Save a point-in-time copy of the catalog, config entries and CA (with its private key)
    /// to FILE (mode 0600). The leader takes it (the server asked forwards the request).
    Save {
        file: PathBuf,
        /// Copy the state of the server asked, even a follower with no leader (Consul's
        /// `-stale`): what it has applied, possibly behind the leader.
        #[arg(long)]
        stale: bool,
    },
    /// Replace the datacenter's catalog, config entries and CA with the snapshot in FILE.
    Restore { file: PathBuf },
}

/// A snapshot can be large and the server confirms its leadership first.
const TIMEOUT: Duration = Duration::from_secs(120);

/// `PUT /v1/snapshot`'s answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Restored {
    datacenter: String,
    raft_index: u64,
    trust_domain: Option<String>,
    /// The snapshot's CA replaced the one the cluster had.
    #[serde(default)]
    ca_replaced: bool,
}

pub async fn run(args: SnapshotArgs) -> Result<()> {
    let server = args.server.api()?;
    match args.cmd {
        SnapshotCommand::Save { file, stale } => {
            let path = if stale {
                "/v1/snapshot?stale"
            } else {
                "/v1/snapshot"
            };
            let resp = server.call(Method::GET, path, None, TIMEOUT).await?;
            let size = resp.body.len();
            write_private(file.clone(), resp.body.to_vec()).await?;
            println!(
                "saved a snapshot at Raft index {} to {} ({size} bytes)",
                resp.index(),
                file.display()
            );
        }
        SnapshotCommand::Restore { file } => {
            let body = tokio::fs::read(&file)
                .await
                .with_context(|| format!("cannot read {}", file.display()))?;
            let resp = server
                .call(Method::PUT, "/v1/snapshot", Some(body), TIMEOUT)
                .await
                .with_context(|| format!("restoring {}", file.display()))?;
            let done: Restored = resp.json()?;
            println!(
                "restored the snapshot of datacenter {} taken at Raft index {} from {}",
                done.datacenter,
                done.raft_index,
                file.display()
            );
            if done.ca_replaced {
                println!(
                    "the snapshot's CA (trust domain {}) replaced the cluster's: the servers of datacenter {} sign and serve with it from now on",
                    done.trust_domain.unwrap_or_default(),
                    done.datacenter
                );
            }
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` readable by its owner only, through a temporary file beside it,
/// so a failed save never leaves a partial snapshot under the name asked for.
async fn write_private(path: PathBuf, bytes: Vec<u8>) -> Result<()> {
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = temporary(&path);
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        // A `.part` left by an interrupted save is replaced (created anew, so 0600 holds).
        let _ = std::fs::remove_file(&tmp);
        write()
            .inspect_err(|_| {
                let _ = std::fs::remove_file(&tmp);
            })
            .with_context(|| format!("cannot write the snapshot to {}", path.display()))
    })
    .await?
}

fn temporary(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    path.with_file_name(name)
}
