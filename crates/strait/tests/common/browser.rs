//! A real browser for end-to-end tests: headless Chromium (scripts/test installs it) loads
//! a page, saves a screenshot under `target/test-artifacts/` and dumps the DOM after the
//! page's script ran.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Loads the dashboard in headless Chromium, saves a screenshot under `target/`, and returns
/// the DOM after the page's script ran.
pub fn chromium_dump(url: &str, screenshot: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=900,700",
        "--virtual-time-budget=5000",
    ];
    let run = |extra: &str| {
        let out = Command::new("chromium")
            .args(common)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(extra)
            .arg(url)
            .output()
            .expect("chromium is installed (scripts/test installs it)");
        assert!(
            out.status.success(),
            "chromium {extra} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    std::fs::create_dir_all(screenshot.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(screenshot);
    run(&format!("--screenshot={}", screenshot.display()));
    assert!(
        std::fs::metadata(screenshot).is_ok_and(|m| m.len() > 1000),
        "no screenshot at {}",
        screenshot.display()
    );
    run("--dump-dom")
}

/// The text of the element with `id` in a DOM dump.
pub fn element_text<'a>(dom: &'a str, id: &str) -> &'a str {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the page:\n{dom}"));
    let rest = &dom[at..];
    let start = rest.find('>').unwrap() + 1;
    let end = rest[start..].find('<').unwrap() + start;
    rest[start..end].trim()
}

pub fn artifact(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/test-artifacts")
        .join(name)
}
