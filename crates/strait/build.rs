//! Embeds the git commit of the checkout into the binary as `STRAIT_GIT_COMMIT`, for
//! `strait version`: `git rev-parse --short HEAD`, with `-dirty` when tracked files differ from
//! it, and `unknown` outside a git checkout (a source tarball, a registry build).

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        // Never take the index lock: builds run while others use the checkout.
        .arg("--no-optional-locks")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = match git(&manifest, &["rev-parse", "--short", "HEAD"]) {
        Some(hash) if !hash.is_empty() => {
            let dirty = git(
                &manifest,
                &["status", "--porcelain", "--untracked-files=no"],
            )
            .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{hash}-dirty")
            } else {
                hash
            }
        }
        _ => "unknown".to_owned(),
    };
    println!("cargo:rustc-env=STRAIT_GIT_COMMIT={commit}");

    // Rebuild when HEAD moves (checkout, commit), when the index changes (staging, commit) and
    // when the workspace's sources change (the dirty flag).
    let git_path = |what: &str| {
        git(
            &manifest,
            &["rev-parse", "--path-format=absolute", "--git-path", what],
        )
        .map(PathBuf::from)
    };
    for file in ["HEAD", "index", "packed-refs"] {
        if let Some(p) = git_path(file) {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }
    if let Some(reference) = git(&manifest, &["symbolic-ref", "-q", "HEAD"]) {
        if let Some(p) = git_path(&reference) {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }
    if let Some(workspace) = manifest.parent() {
        println!("cargo:rerun-if-changed={}", workspace.display());
    }
    println!("cargo:rerun-if-changed=build.rs");
}
