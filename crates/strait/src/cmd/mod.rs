//! Running each command.

pub(crate) mod acl;
pub(crate) mod api;
pub(crate) mod envoy;
mod human;
pub(crate) mod install;
pub(crate) mod intention;
pub(crate) mod locate;
pub(crate) mod operator;
pub(crate) mod snapshot;
pub(crate) mod token;

use crate::cli::{Cli, Command, ConfigCommand};
use anyhow::Result;
use std::future::Future;
use std::time::Duration;
use strait_systemd::lifecycle::{Exit, ExitContext, Lifecycle, Role, DEFAULT_GRACE};

/// Runs a long-running role through the one lifecycle: signals, readiness, named tasks and
/// the stop under `grace` (see `strait_systemd::lifecycle`).
async fn role<F, Fut>(name: &'static str, grace: Duration, start: F) -> Result<Exit>
where
    F: FnOnce(Role) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let life = Lifecycle::new(name)?.with_grace(grace);
    let main = start(life.role());
    life.run(main).await?;
    Ok(Exit::Clean)
}

/// Runs the command; `Ok` carries the exit status of a command that ended as it should
/// (`strait intention check` answering "denied" is `Exit::Failure` with nothing more to say).
pub async fn run(cli: Cli) -> Result<Exit> {
    // Roles validate their whole configuration before the lifecycle starts anything.
    match cli.cmd {
        Command::Server { config } => {
            let cfg = strait_server::ServerConfig::load(&config).bad_config()?;
            role("server", DEFAULT_GRACE, |r| {
                strait_server::run(cfg, config, r)
            })
            .await
        }
        Command::Agent { config } => {
            let cfg = strait_agent::AgentConfig::load(&config).bad_config()?;
            role("agent", DEFAULT_GRACE, |r| {
                strait_agent::run(cfg, config, r)
            })
            .await
        }
        Command::Proxy(args) => {
            let grace = args.common.grace + strait_proxy::STOP_MARGIN;
            role("sidecar", grace, |r| strait_proxy::run_sidecar(args, r)).await
        }
        Command::Gateway(args) => {
            let grace = args.common.grace + strait_proxy::STOP_MARGIN;
            role("gateway", grace, |r| strait_proxy::run_gateway(args, r)).await
        }
        Command::Envoy { cmd } => role("envoy", DEFAULT_GRACE, |r| envoy::run(cmd, r)).await,
        Command::Lab(args) => done(strait_lab::run_lab(args).await),
        Command::Demo(args) => role("demo", DEFAULT_GRACE, |r| strait_lab::run_demo(args, r)).await,
        Command::Doctor { args, token } => doctor(args, token).await,
        Command::Members { agent } => done(human::members(agent).await),
        Command::Catalog { cmd, agent } => done(human::catalog(agent, cmd).await),
        Command::Config {
            cmd: ConfigCommand::Check { file },
        } => done(config_check(&file)),
        Command::Intention(args) => Ok(if intention::run(args).await? {
            Exit::Clean
        } else {
            // `check` answered "denied" (already printed): exit status 1, no error text.
            Exit::Failure
        }),
        Command::Operator(args) => done(operator::run(args).await),
        Command::Acl(args) => done(acl::run(args).await),
        Command::Snapshot(args) => done(snapshot::run(args).await),
        Command::Install(args) => done(install::install(args)),
        Command::Version => {
            println!("strait {}", crate::cli::VERSION);
            Ok(Exit::Clean)
        }
    }
}

/// A command that either succeeds (exit 0) or fails with an error.
fn done(r: Result<()>) -> Result<Exit> {
    r.map(|()| Exit::Clean)
}

/// `strait doctor`: the checks print themselves; the exit code says whether all passed.
async fn doctor(args: strait_doctor::DoctorArgs, token: token::TokenArgs) -> Result<Exit> {
    let found = locate::doctor_agent(&args)?;
    let token = token.resolve_with(found.lab_token.as_deref())?;
    let agent = strait_doctor::Agent {
        addr: found.addr,
        found: found.how,
        token: token.map(|t| strait_doctor::SentToken {
            secret: t.expose().to_owned(),
            from: t.from().to_owned(),
        }),
    };
    let report = strait_doctor::run(args, agent).await?;
    let failed = report.failed();
    if failed > 0 {
        anyhow::bail!("{failed} of {} checks failed", report.checks.len());
    }
    println!("all {} checks passed", report.checks.len());
    Ok(Exit::Clean)
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
    Err(anyhow::anyhow!("{} is neither a valid server nor agent configuration\n  as a server config: {se:#}\n  as an agent config: {ae:#}", file.display())).bad_config()
}
