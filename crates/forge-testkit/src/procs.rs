//! Which processes are alive, read from `/proc`: tests of containment and of process-group
//! kills assert that nothing of an attempt is left, not how long it took.

use std::path::Path;

/// A process's state letter and process group, from `/proc/<pid>/stat` (`pid (comm) state ppid
/// pgrp …`; `comm` may hold spaces and parentheses, so fields are counted after the last `)`).
fn state_and_group(proc_dir: &Path) -> Option<(String, i32)> {
    let stat = std::fs::read_to_string(proc_dir.join("stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.to_owned();
    let pgrp = fields.nth(1)?.parse().ok()?;
    Some((state, pgrp))
}

/// The live (not zombie, not dead) processes for which `keep(proc_dir, pgrp)` holds.
fn live(mut keep: impl FnMut(&Path, i32) -> bool) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_string_lossy().parse::<i32>().ok()?;
            let dir = entry.path();
            let (state, pgrp) = state_and_group(&dir)?;
            (state != "Z" && state != "X" && keep(&dir, pgrp)).then_some(pid)
        })
        .collect()
}

/// Live processes whose environment holds `FORGE_TEST_MARK=<mark>`.
pub fn marked_processes(mark: &str) -> Vec<i32> {
    let needle = format!("FORGE_TEST_MARK={mark}");
    live(|dir, _| {
        std::fs::read(dir.join("environ"))
            .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == needle.as_bytes()))
    })
}

/// Whether a live process is in process group `pgid`.
pub fn group_has_live_process(pgid: i32) -> bool {
    !live(|_, pgrp| pgrp == pgid).is_empty()
}

/// Whether no live process is left in group `pgid`, waiting up to 5 s for processes killed with
/// SIGKILL to die (a group that was not killed keeps its processes, and this says `false`).
pub fn group_is_gone(pgid: i32) -> bool {
    for _ in 0..200 {
        if !group_has_live_process(pgid) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    false
}
