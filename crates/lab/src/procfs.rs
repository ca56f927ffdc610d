//! Process liveness from /proc (Linux), robust against the two traps of plain
//! `kill(pid, 0)`: zombies count as dead, and a recycled pid is told apart
//! from ours by its start time. Elsewhere we fall back to `kill(pid, 0)`.

use crate::signal;

/// The fields of `/proc/<pid>/stat` the lab needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// `R`, `S`, `Z`...
    pub state: char,
    /// Process group id.
    pub pgrp: u32,
    /// Start time in clock ticks since boot: with the pid, identifies a process.
    pub start_time: u64,
}

/// Parses a `/proc/<pid>/stat` line. The command name (field 2) may contain
/// spaces and parentheses, so fields are counted after its last `)`.
pub fn parse_stat(line: &str) -> Option<Stat> {
    let rest = &line[line.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 (index 0), pgrp field 5 (index 2),
    // starttime field 22 (index 19).
    Some(Stat {
        state: fields.first()?.chars().next()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

pub fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn have_procfs() -> bool {
    std::path::Path::new("/proc/self/stat").exists()
}

fn running(s: &Stat) -> bool {
    !matches!(s.state, 'Z' | 'X' | 'x')
}

/// This process's effective uid (the second field of `Uid:` in /proc/self/status).
pub fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The start time of a live process, recorded at spawn.
pub fn start_time(pid: u32) -> Option<u64> {
    stat(pid).map(|s| s.start_time)
}

/// Whether `pid` is still the process we started (`start_time` as recorded).
pub fn is_alive(pid: u32, start_time: Option<u64>) -> bool {
    if !have_procfs() {
        return signal::pid_exists(pid);
    }
    match stat(pid) {
        Some(s) => running(&s) && start_time.is_none_or(|t| t == s.start_time),
        None => false,
    }
}

/// Whether `pid` now belongs to a different process than the one recorded.
pub fn is_recycled(pid: u32, start_time: Option<u64>) -> bool {
    match (stat(pid), start_time) {
        (Some(s), Some(t)) => s.start_time != t,
        _ => false,
    }
}

/// Live (non-zombie) members of process group `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    if !have_procfs() {
        return if signal::group_exists(pgid) {
            vec![pgid]
        } else {
            Vec::new()
        };
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| stat(pid).is_some_and(|s| s.pgrp == pgid && running(&s)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_spaces_and_parens() {
        let line = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                state: 'S',
                pgrp: 4242,
                start_time: 987654
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn own_process_is_alive_and_start_time_identifies_it() {
        let me = std::process::id();
        let t = start_time(me);
        assert!(is_alive(me, t));
        if let Some(t) = t {
            assert!(!is_alive(me, Some(t + 1)));
            assert!(is_recycled(me, Some(t + 1)));
        }
    }
}
