//! Running each command.

pub(crate) mod envoy;
mod human;
pub(crate) mod install;
pub(crate) mod intention;

use crate::cli::{Cli, Command, ConfigCommand};
use anyhow::Result;
use tokio_util::sync::CancellationToken;

/// Cancels the token on SIGTERM or SIGINT, so every role drains and exits cleanly.
fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutting down");
        strait_systemd::notify::stopping();
        t.cancel();
    });
    token
}

pub async fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Command::Server { config } => {
            strait_server::run_from_file(&config, shutdown_on_signals()).await
        }
        Command::Agent { config } => {
            strait_agent::run_from_file(&config, shutdown_on_signals()).await
        }
        Command::Proxy(args) => strait_proxy::run_sidecar(args, shutdown_on_signals()).await,
        Command::Gateway(args) => strait_proxy::run_gateway(args, shutdown_on_signals()).await,
        Command::Envoy { cmd } => envoy::run(cmd).await,
        Command::Lab(args) => strait_lab::run_lab(args).await,
        Command::Demo(args) => strait_lab::run_demo(args).await,
        Command::Doctor(args) => doctor(args).await,
        Command::Members { agent } => human::members(agent.http_addr).await,
        Command::Catalog { cmd, agent } => human::catalog(agent.http_addr, cmd).await,
        Command::Config {
            cmd: ConfigCommand::Check { file },
        } => config_check(&file),
        Command::Intention(args) => {
            if !intention::run(args).await? {
                // `check` answered "denied" (already printed): exit code 1, no error text.
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Install(args) => install::install(args),
        Command::Version => {
            println!("strait {}", crate::cli::VERSION);
            Ok(())
        }
    }
}

/// `strait doctor`: the checks print themselves; the exit code says whether all passed.
async fn doctor(args: strait_doctor::DoctorArgs) -> Result<()> {
    let report = strait_doctor::run(args).await?;
    let failed = report.failed();
    if failed > 0 {
        anyhow::bail!("{failed} of {} checks failed", report.checks.len());
    }
    println!("all {} checks passed", report.checks.len());
    Ok(())
}

/// Tries the file as a server config, then as an agent config; reports both when neither fits.
fn config_check(file: &std::path::Path) -> Result<()> {
    let server = strait_server::ServerConfig::load(file);
    if server.is_ok() {
        println!("{}: valid server configuration", file.display());
        return Ok(());
    }
    let agent = strait_agent::AgentConfig::load(file);
    if agent.is_ok() {
        println!("{}: valid agent configuration", file.display());
        return Ok(());
    }
    let (se, ae) = (server.unwrap_err(), agent.unwrap_err());
    anyhow::bail!("{} is neither a valid server nor agent configuration\n  as a server config: {se:#}\n  as an agent config: {ae:#}", file.display())
}
