use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use crate::StagingError;
use crate::base::read_json;
use crate::error::IoContext;
use crate::fsutil::{mounts_of_process_under, mounts_under, process_start_time, remove_tree};
use crate::overlay::unmount_path;
use crate::slot::WorkspaceRecord;

/// What [`gc`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Workspace directories removed.
    pub workspaces: Vec<PathBuf>,
    /// Mount points unmounted.
    pub unmounted: Vec<PathBuf>,
    /// Git worktrees removed (their paths).
    pub worktrees: Vec<PathBuf>,
    /// User-namespace holder processes ended.
    pub holders: Vec<u32>,
    /// Workspaces left alone because a live process still holds them.
    pub live: Vec<PathBuf>,
}

/// Removes every workspace under `run_root` that no live process holds (after a crash, a kill,
/// or a dispose that failed): unmounts its overlay (or ends its namespace holder), removes the
/// git worktree a workspace of an older Forge registered in the user's repository (`git
/// worktree remove --force` and `prune`), deletes its directory; then
/// unmounts anything else still mounted under `run_root`.
///
/// Safe to run at any time: a workspace whose lock file is still locked by a live process (in
/// this process or another) is left alone.
pub fn gc(run_root: &Path) -> Result<GcReport, StagingError> {
    let mut report = GcReport::default();
    let workspaces = run_root.join("workspaces");
    let workspaces = match fs::canonicalize(&workspaces) {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(report),
        Err(e) => return Err(StagingError::io("resolve", workspaces, e)),
    };
    let mut entries: Vec<PathBuf> = fs::read_dir(&workspaces)
        .ctx("list", &workspaces)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    let mut live = Vec::new();
    for dir in entries {
        if !fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            // A probe's leftover file.
            let _ = fs::remove_file(&dir);
            continue;
        }
        // Keep the lock (if we get it) until the directory is gone.
        let Some(_lock) = try_lock(&dir)? else {
            live.push(dir);
            continue;
        };
        collect(&dir, &mut report)?;
    }
    // Anything still mounted under the run root and not inside a live workspace.
    for m in mounts_under(&workspaces) {
        if live.iter().any(|l| m.path.starts_with(l)) {
            continue;
        }
        unmount_path(&m.path, m.fs_type.starts_with("fuse"))?;
        report.unmounted.push(m.path);
    }
    report.live = live;
    Ok(report)
}

/// `Some(lock)` if no live process holds the workspace at `dir`.
fn try_lock(dir: &Path) -> Result<Option<File>, StagingError> {
    let path = dir.join("lock");
    let file = match File::options().write(true).open(&path) {
        Ok(f) => f,
        // Never locked: it crashed while being created.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Some(File::open(dir).ctx("open", dir)?));
        }
        Err(e) => return Err(StagingError::io("open", path, e)),
    };
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(file)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(StagingError::io("lock", path, e.into())),
    }
}

fn collect(dir: &Path, report: &mut GcReport) -> Result<(), StagingError> {
    let record: Option<WorkspaceRecord> =
        read_json(&dir.join("workspace.json"), "workspace record").ok();
    if let Some((pid, start)) = record.as_ref().and_then(|r| r.holder)
        && process_start_time(pid) == Some(start)
        && is_holder_of(pid, dir)
    {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(i32::try_from(pid).unwrap_or(0)).ok_or_else(|| {
                StagingError::io("end", dir, io::Error::other("invalid holder pid"))
            })?,
            rustix::process::Signal::KILL,
        );
        report.holders.push(pid);
    }
    for m in mounts_under(dir) {
        unmount_path(&m.path, m.fs_type.starts_with("fuse"))?;
        report.unmounted.push(m.path);
    }
    if let Some(record) = &record
        && let (Some(repo), Some(tree)) = (&record.repo, &record.worktree)
    {
        crate::worktree::remove(repo, tree);
        report.worktrees.push(tree.clone());
    }
    remove_tree(dir)?;
    report.workspaces.push(dir.to_path_buf());
    Ok(())
}

/// Whether process `pid` is the namespace holder of the workspace at `dir` (an overlay is
/// mounted on the workspace's mount point in its mount namespace), so a reused pid is never
/// killed.
fn is_holder_of(pid: u32, dir: &Path) -> bool {
    let merged = dir.join("merged");
    mounts_of_process_under(&pid.to_string(), &merged)
        .iter()
        .any(|m| m.path == merged)
}
