//! `strait`: one binary, several roles. Parse, validate, build, run, map to an exit code.
#![forbid(unsafe_code)]

mod cli;
mod cmd;

use clap::Parser;
use std::process::ExitCode;
use strait_systemd::lifecycle::Exit;

/// The process's exit status, from the one [`Exit`] enum: 0 clean, 1 runtime failure, 64 usage
/// error, 78 bad configuration (docs/operations.md).
fn exit(status: Exit) -> ExitCode {
    ExitCode::from(status.code())
}

fn main() -> ExitCode {
    let args = match cli::Cli::try_parse_from(cli::consul_style(std::env::args_os())) {
        Ok(args) => args,
        Err(e) => {
            // `--help` and `--version` print to stdout and succeed; the rest is a usage error.
            let status = if e.use_stderr() {
                Exit::Usage
            } else {
                Exit::Clean
            };
            let _ = e.print();
            return exit(status);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRAIT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: log files (the lab's, journald's) stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    // Proxies run one worker: this thread (no cross-thread wake-ups; one thread and one
    // malloc arena fewer, 0.3-0.5 MiB less RSS, see bench/README.md).
    let proxy = matches!(args.cmd, cli::Command::Proxy(_) | cli::Command::Gateway(_));
    let mut builder = match args.worker_threads() {
        1 if proxy => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit(Exit::Failure);
        }
    };
    match rt.block_on(cmd::run(args)) {
        Ok(status) => exit(status),
        Err(e) => {
            eprintln!("error: {e:#}");
            exit(Exit::of(&e))
        }
    }
}
