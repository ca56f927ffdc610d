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

    // Rerun (and so relink the binary) only when the answer can change: HEAD moves (its
    // file, the branch's loose ref, packed-refs when there is one) or a tracked file changes.
    // Never on a path that does not exist (cargo treats it as always changed, so every
    // build would relink), nor on `.git/index` (any `git status` rewrites it) or whole
    // directories (any new file in them).
    println!("cargo:rerun-if-changed=build.rs");
    let git_path = |what: &str| {
        git(
            &manifest,
            &["rev-parse", "--path-format=absolute", "--git-path", what],
        )
        .map(PathBuf::from)
    };
    let mut watched: Vec<PathBuf> = ["HEAD", "packed-refs"]
        .into_iter()
        .filter_map(git_path)
        .collect();
    if let Some(reference) =
        git(&manifest, &["symbolic-ref", "-q", "HEAD"]).and_then(|r| git_path(&r))
    {
        // A branch whose ref is only in packed-refs gets a loose file at the next commit:
        // watch the directory it will appear in until then.
        match (reference.exists(), reference.parent()) {
            (false, Some(dir)) => watched.push(dir.to_owned()),
            _ => watched.push(reference),
        }
    }
    if let Some(top) = git(&manifest, &["rev-parse", "--show-toplevel"]) {
        let top = PathBuf::from(top);
        if let Some(files) = git(&top, &["ls-files"]) {
            watched.extend(files.lines().map(|f| top.join(f)));
        }
    }
    for path in watched.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
