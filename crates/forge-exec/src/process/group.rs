//! Ending a process group: what is left after its leader exited, checked in `/proc`.

use std::time::Duration;

/// Terminates what is left of a process group: SIGTERM, up to `grace` for it to go, then
/// SIGKILL until no member is left. Returns whether the group is empty.
pub(super) async fn end_group(pgid: rustix::process::Pid, grace: Duration) -> bool {
    if !group_alive(pgid) {
        return true;
    }
    if !grace.is_zero() {
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::TERM);
        let until = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < until && group_alive(pgid) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    for _ in 0..500 {
        if !group_alive(pgid) {
            return true;
        }
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    !group_alive(pgid)
}

/// Whether any live (non-zombie) process is in group `pgid`. `kill(-pgid, 0)` answers first;
/// when it finds members, `/proc` tells live ones from zombies waiting for their reaper.
pub fn group_alive(pgid: rustix::process::Pid) -> bool {
    // The common case costs one system call: no member at all, not even a zombie.
    if rustix::process::test_kill_process_group(pgid) == Err(rustix::io::Errno::SRCH) {
        return false;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    let want = pgid.as_raw_nonzero().get();
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...: comm may contain spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|f| f.parse::<i32>().ok());
        if pgrp == Some(want) && state != Some("Z") && state != Some("X") {
            return true;
        }
    }
    false
}
