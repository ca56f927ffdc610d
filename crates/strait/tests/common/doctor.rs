//! Runs `strait doctor` and reads its output (tests/doctor.rs, tests/envoy.rs).

use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub struct Doctor {
    pub ok: bool,
    pub out: String,
}

/// `strait doctor <args>` (without `$STRAIT_HTTP_ADDR` or `$STRAIT_LAB_DIR`): exit status
/// and stdout+stderr.
pub fn doctor(args: &[&str]) -> Doctor {
    doctor_env(args, &[])
}

/// [`doctor`] with these environment variables set. In a test that started a lab with ACLs,
/// the doctor runs as the lab's operator: with its management token
/// ([`super::lab::LAB_TOKEN_FILE`]).
pub fn doctor_env(args: &[&str], env: &[(&str, &str)]) -> Doctor {
    let mut cmd = Command::new(super::strait_bin());
    if let Some(token) = super::lab::LAB_TOKEN_FILE.get() {
        cmd.env("STRAIT_HTTP_TOKEN_FILE", token);
    }
    let out: Output = cmd
        .arg("doctor")
        .args(args)
        .env_remove("STRAIT_HTTP_ADDR")
        .env_remove("STRAIT_LAB_DIR")
        .envs(env.iter().copied())
        .output()
        .expect("run strait doctor");
    Doctor {
        ok: out.status.success(),
        out: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// Polls `run` until `pred` holds (health checks and federation states take seconds to move);
/// on timeout, panics with the last output.
pub fn until(what: &str, run: impl Fn() -> Doctor, pred: impl Fn(&Doctor) -> bool) -> Doctor {
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let d = run();
        if pred(&d) {
            return d;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out waiting for: {what}\nlast doctor output:\n{}",
                d.out
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Exit status 0 and no ✗ line.
pub fn healthy(d: &Doctor) -> bool {
    d.ok && !d.out.contains('✗')
}

/// The failure line of check `name` (`✗ name: ...`), if any.
pub fn failed_line<'a>(d: &'a Doctor, name: &str) -> Option<&'a str> {
    let prefix = format!("✗ {name}:");
    d.out.lines().find(|l| l.starts_with(&prefix))
}
