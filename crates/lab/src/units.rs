//! The systemd units of every VM, written at provisioning time beside its configs, so that
//! what the lab runs is what a VM would run.
//!
//! Each server, agent, gateway and sidecar of the plan gets the unit `strait install` writes
//! on a real VM (rendered by `strait-systemd` with the lab's paths instead of
//! `/usr/local/bin/strait`, `/etc/strait.d` and `/var/lib/strait`) in `DIR/vms/<vm>/systemd/`,
//! and the proxies' per-VM arguments go into the environment files the units read
//! (`DIR/vms/<vm>/gateway.env`, `DIR/vms/<vm>/proxy-<service>.env`). The split is checked: a
//! process whose command line the unit cannot reproduce is an error, so a unit never
//! silently differs from what the supervisor starts. Demo apps get no unit (on a real VM they
//! are the user's own services).

use std::path::Path;

use anyhow::Context;
use strait_systemd::unit::{Layout, Role as UnitRole, USER};

use crate::paths::LabPaths;
use crate::plan::{FileSpec, ProcessSpec, Program, Role};

/// The unit role of a planned process, if it has one.
fn unit_role(spec: &ProcessSpec) -> Option<UnitRole> {
    // Envoy-backed proxies (`strait envoy run`) have no unit of their own yet.
    if spec.program != Program::Strait || spec.args.first().is_some_and(|a| a == "envoy") {
        return None;
    }
    match spec.role {
        Role::Server => Some(UnitRole::Server),
        Role::Agent => Some(UnitRole::Agent),
        Role::Gateway => Some(UnitRole::Gateway),
        Role::Sidecar => Some(UnitRole::Sidecar),
        Role::App(_) => None,
    }
}

/// The layout of a lab VM: the lab's binary, the VM directory as config directory, its
/// `data/` as state directory.
pub fn layout(paths: &LabPaths, vm: &str, strait: &Path) -> Layout {
    Layout {
        binary: strait.to_owned(),
        config_dir: paths.vm(vm),
        state_dir: paths.vm(vm).join("data"),
        user: USER.to_owned(),
    }
}

/// The unit and environment files of every process of `plan` (pure).
pub fn files(
    plan: &[ProcessSpec],
    paths: &LabPaths,
    strait: &Path,
) -> anyhow::Result<Vec<FileSpec>> {
    let mut out: Vec<FileSpec> = Vec::new();
    for spec in plan {
        let Some(role) = unit_role(spec) else {
            continue;
        };
        let layout = layout(paths, &spec.vm, strait);
        let instance = spec.service.as_deref().unwrap_or_default();
        let rest = role
            .variable_args(&layout, instance, &spec.args)
            .with_context(|| {
                format!("{} on {}: cannot express it as a unit", spec.name, spec.vm)
            })?;
        let unit = FileSpec {
            path: paths.vm(&spec.vm).join("systemd").join(role.unit_name()),
            contents: role.render(&layout),
            secret: false,
        };
        // One sidecar template per VM, however many sidecars it runs.
        if !out.contains(&unit) {
            out.push(unit);
        }
        if let Some(env) = role.env_file(&layout, instance) {
            out.push(FileSpec {
                path: env,
                contents: role.env_file_text(&rest),
                secret: false,
            });
        }
    }
    Ok(out)
}

/// Writes the files of [`files`].
pub fn write(plan: &[ProcessSpec], paths: &LabPaths, strait: &Path) -> anyhow::Result<()> {
    for file in files(plan, paths, strait)? {
        if let Some(parent) = file.path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        crate::state::write_file(&file.path, file.contents.as_bytes(), file.secret)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{plan, Tokens};
    use crate::topology::Topology;

    #[test]
    fn every_control_and_proxy_process_of_the_demo_gets_its_unit() {
        let topology = Topology::builtin().expect("default");
        let paths = LabPaths::new(Path::new("/lab")).expect("paths");
        let plan = plan(&topology, &paths, &Tokens::generate(&topology));
        let files = files(&plan, &paths, Path::new("/opt/strait")).expect("units");
        let names: Vec<String> = files
            .iter()
            .map(|f| {
                f.path
                    .strip_prefix("/lab/vms")
                    .unwrap()
                    .display()
                    .to_string()
            })
            .collect();
        for expected in [
            "primary-server/systemd/strait-server.service",
            "primary-gateway/systemd/strait-agent.service",
            "primary-gateway/systemd/strait-gateway.service",
            "primary-gateway/gateway.env",
            "secondary-services/systemd/strait-proxy@.service",
            "secondary-services/proxy-counting.env",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} in {names:?}"
            );
        }
        let gateway_env = files
            .iter()
            .find(|f| f.path.ends_with("primary-gateway/gateway.env"))
            .expect("gateway.env");
        assert!(
            gateway_env.contents.contains(
                "STRAIT_GATEWAY_ARGS=\"--agent 127.20.1.11:8500 --address 127.20.1.11:8443"
            ),
            "{}",
            gateway_env.contents
        );
        let agent = files
            .iter()
            .find(|f| {
                f.path
                    .ends_with("primary-services/systemd/strait-agent.service")
            })
            .expect("agent unit");
        assert!(agent.contents.contains(
            "ExecStart=/opt/strait agent --config /lab/vms/primary-services/agent.toml\n"
        ));
    }
}
