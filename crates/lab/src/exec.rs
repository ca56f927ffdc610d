//! `strait lab exec <vm> -- <command>`: run a command "on" a VM, like `vagrant ssh <vm> -c`.
//!
//! - netns driver: inside the VM's network namespace (`ip netns exec`), so `127.0.0.1` is
//!   the VM's loopback, its LAN is the only network (gateways: and the WAN), and `strait
//!   members` asks the VM's own agent on 127.0.0.1:8500 as on a real VM.
//! - local driver: on the host (every local VM shares it), with the VM's environment:
//!   `STRAIT_HTTP_ADDR` and `STRAIT_SERVER_HTTP_ADDR` name the VM's agent or server
//!   (`<vm address>:8500`), `BIND_ADDR` the VM's address.
//!
//! Both set `STRAIT_HOSTNAME` to the VM's name and, in a lab with ACLs, give the command the
//! lab's management token as the lab's operator (`STRAIT_HTTP_TOKEN_FILE`, unless the caller
//! set a token variable of its own); a command named `strait` runs the lab's own
//! binary (the one `strait lab` runs, or `$STRAIT_BIN`), as a VM has it on its `PATH`. The command's standard streams are the
//! caller's; a command that fails makes `lab exec` fail with its status.

use std::process::Command;

use anyhow::{bail, Context};

use crate::netns::setup::Network;
use crate::paths::LabPaths;
use crate::topology::HTTP_API_PORT;

/// The command to run, ready to spawn.
pub fn command(paths: &LabPaths, vm: &str, argv: &[String]) -> anyhow::Result<Command> {
    let Some(network) = Network::load(paths)? else {
        bail!(
            "no lab in {} (no network.json); start one with `strait lab up`",
            paths.root().display()
        );
    };
    let Some(net) = network.layout.vm(vm) else {
        let names: Vec<&str> = network.layout.vms.iter().map(|v| v.vm.as_str()).collect();
        bail!("no VM {vm:?} in the lab (VMs: {})", names.join(", "));
    };
    let Some((program, args)) = argv.split_first() else {
        bail!("no command given: `strait lab exec {vm} -- <command> [args...]`");
    };
    // `strait` is the lab's own binary (what a VM has as /usr/local/bin/strait).
    let program = if program == "strait" {
        crate::supervisor::strait_bin()?.into_os_string()
    } else {
        program.into()
    };
    let (mut cmd, api) = match &net.netns {
        Some(ns) => {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", ns]).arg(program);
            (cmd, format!("127.0.0.1:{HTTP_API_PORT}"))
        }
        None => {
            let mut cmd = Command::new(program);
            cmd.env("BIND_ADDR", net.lan.to_string());
            (cmd, format!("{}:{HTTP_API_PORT}", net.lan))
        }
    };
    cmd.args(args)
        .env("STRAIT_HTTP_ADDR", &api)
        .env("STRAIT_SERVER_HTTP_ADDR", &api)
        .env("STRAIT_HOSTNAME", vm);
    let token = paths.management_token();
    let own_token = [
        strait_rpc::token::TOKEN_ENV,
        strait_rpc::token::TOKEN_FILE_ENV,
        strait_rpc::token::CONSUL_TOKEN_ENV,
        strait_rpc::token::CONSUL_TOKEN_FILE_ENV,
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()));
    if token.exists() && !own_token {
        cmd.env(strait_rpc::token::TOKEN_FILE_ENV, &token);
    }
    Ok(cmd)
}

pub fn exec(paths: &LabPaths, vm: &str, argv: &[String]) -> anyhow::Result<()> {
    let mut cmd = command(paths, vm, argv)?;
    let status = cmd
        .status()
        .with_context(|| format!("{vm}: cannot run {}", argv.join(" ")))?;
    if !status.success() {
        bail!("{vm}: `{}` failed ({status})", argv.join(" "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netns::{setup, Layout};
    use crate::topology::Topology;

    #[test]
    fn local_vm_gets_its_environment_and_unknown_vm_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = LabPaths::new(dir.path()).expect("paths");
        let err = command(&paths, "primary-services", &["true".into()]).expect_err("no lab");
        assert!(err.to_string().contains("strait lab up"), "{err}");

        let topology = Topology::builtin().expect("default");
        setup::create(&paths, &Layout::local(&topology), &topology).expect("local network");
        let out = command(
            &paths,
            "primary-services",
            &[
                "sh".into(),
                "-c".into(),
                "echo $STRAIT_HTTP_ADDR $BIND_ADDR".into(),
            ],
        )
        .expect("command")
        .output()
        .expect("run");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "127.20.1.12:8500 127.20.1.12"
        );
        let err = command(&paths, "nope", &["true".into()]).expect_err("unknown");
        assert!(
            err.to_string().contains("no VM \"nope\"")
                && err.to_string().contains("primary-services"),
            "{err}"
        );
        let err = exec(&paths, "primary-services", &["false".into()]).expect_err("fails");
        assert!(err.to_string().contains("failed"), "{err}");
    }
}
