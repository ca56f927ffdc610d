//! `strait lab logs <vm> [--process P] [--follow]`: prints a VM's log files
//! (`DIR/vms/<vm>/logs/<process>.log`); `--follow` keeps printing what is
//! appended, prefixing lines with the process when several logs are shown.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::paths::LabPaths;

fn names_in(dir: &Path, want_dirs: bool) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().is_dir() == want_dirs)
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The log files to show, as (process, path), or an error listing what exists.
pub fn select(
    paths: &LabPaths,
    vm: &str,
    process: Option<&str>,
) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let dir = paths.logs(vm);
    if !dir.is_dir() {
        let vms = names_in(&paths.vms(), true);
        if vms.is_empty() {
            bail!(
                "no lab files in {}; start a lab with `strait lab up`",
                paths.root().display()
            );
        }
        bail!("no VM {vm:?} in this lab (VMs: {})", vms.join(", "));
    }
    let mut logs: Vec<(String, PathBuf)> = names_in(&dir, false)
        .into_iter()
        .filter_map(|f| Some((f.strip_suffix(".log")?.to_owned(), dir.join(&f))))
        .collect();
    logs.sort();
    if let Some(p) = process {
        let available: Vec<String> = logs.iter().map(|(n, _)| n.clone()).collect();
        logs.retain(|(n, _)| n == p);
        if logs.is_empty() {
            bail!(
                "no process {p:?} on {vm} (processes: {})",
                available.join(", ")
            );
        }
    }
    Ok(logs)
}

/// Reads what was appended since `offset`; starts over if the file shrank.
fn read_from(path: &Path, offset: &mut u64) -> std::io::Result<Vec<u8>> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    if file.metadata()?.len() < *offset {
        *offset = 0;
    }
    file.seek(SeekFrom::Start(*offset))?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)?;
    *offset += buf.len() as u64;
    Ok(buf)
}

/// Writes complete lines of `pending` (prefixed when `prefix` is set), keeping
/// a trailing partial line for the next read.
fn emit(out: &mut impl Write, prefix: Option<&str>, pending: &mut Vec<u8>) -> std::io::Result<()> {
    while let Some(end) = pending.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = pending.drain(..=end).collect();
        if let Some(p) = prefix {
            write!(out, "[{p}] ")?;
        }
        out.write_all(&line)?;
    }
    Ok(())
}

pub async fn logs(
    paths: &LabPaths,
    vm: &str,
    process: Option<&str>,
    follow: bool,
) -> anyhow::Result<()> {
    let logs = select(paths, vm, process)?;
    let several = logs.len() > 1;
    let mut offsets = vec![0u64; logs.len()];
    let mut pending: Vec<Vec<u8>> = vec![Vec::new(); logs.len()];
    let stdout = std::io::stdout();
    for (i, (name, path)) in logs.iter().enumerate() {
        let mut out = stdout.lock();
        let mut bytes = read_from(path, &mut offsets[i])
            .with_context(|| format!("cannot read {}", path.display()))?;
        if follow {
            pending[i].append(&mut bytes);
            emit(&mut out, several.then_some(name.as_str()), &mut pending[i])?;
        } else {
            if several {
                writeln!(out, "==> {} <==", path.display())?;
            }
            out.write_all(&bytes)?;
        }
    }
    if !follow {
        return Ok(());
    }
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        let mut out = stdout.lock();
        for (i, (name, path)) in logs.iter().enumerate() {
            let mut bytes = read_from(path, &mut offsets[i])
                .with_context(|| format!("cannot read {}", path.display()))?;
            pending[i].append(&mut bytes);
            emit(&mut out, several.then_some(name.as_str()), &mut pending[i])?;
        }
        out.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_logs_and_explains_unknown_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = LabPaths::new(dir.path()).expect("paths");
        assert!(select(&paths, "vm1", None)
            .expect_err("empty")
            .to_string()
            .contains("strait lab up"));
        std::fs::create_dir_all(paths.logs("vm1")).expect("mkdir");
        std::fs::write(paths.log("vm1", "agent"), "a\n").expect("write");
        std::fs::write(paths.log("vm1", "counting"), "c\n").expect("write");
        let all = select(&paths, "vm1", None).expect("logs");
        assert_eq!(
            all.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["agent", "counting"]
        );
        let err = select(&paths, "vm2", None)
            .expect_err("unknown vm")
            .to_string();
        assert!(err.contains("VMs: vm1"), "{err}");
        let err = select(&paths, "vm1", Some("gateway"))
            .expect_err("unknown process")
            .to_string();
        assert!(err.contains("agent, counting"), "{err}");
        assert_eq!(select(&paths, "vm1", Some("agent")).expect("one").len(), 1);
    }

    #[test]
    fn follow_reads_only_new_complete_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("x.log");
        std::fs::write(&log, "one\ntw").expect("write");
        let (mut offset, mut pending, mut out) = (0u64, Vec::new(), Vec::new());
        pending.extend(read_from(&log, &mut offset).expect("read"));
        emit(&mut out, Some("x"), &mut pending).expect("emit");
        assert_eq!(out, b"[x] one\n");
        std::fs::write(&log, "one\ntwo\n").expect("append");
        pending.extend(read_from(&log, &mut offset).expect("read"));
        emit(&mut out, Some("x"), &mut pending).expect("emit");
        assert_eq!(out, b"[x] one\n[x] two\n");
        std::fs::write(&log, "new\n").expect("truncate");
        pending.clear();
        pending.extend(read_from(&log, &mut offset).expect("read"));
        emit(&mut out, None, &mut pending).expect("emit");
        assert!(out.ends_with(b"new\n"));
    }
}
