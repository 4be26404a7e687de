//! What the built-in strategies share: the workspace's directory and lock (its slot), the
//! record `gc` reads after a crash, writing snapshot entries and the shared directories.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::base::write_json;
use crate::error::IoContext;
use crate::fsutil::{create_dirs_like, remove_tree};
use crate::stager::{ShareMode, Shared};
use crate::{
    ChangeSet, Entry, OverlayRoute, RepoPath, SkipReason, Snapshot, StagerKind, StagingError,
};

/// `<run_root>/workspaces/<name>/workspace.json`: what `gc` needs to tear a workspace down
/// after a crash.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct WorkspaceRecord {
    pub(crate) version: u32,
    pub(crate) strategy: StagerKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) route: Option<OverlayRoute>,
    /// The repository of a git worktree (workspaces made by Forge 0.x before workspaces had
    /// their own repository: `gc` still removes them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) repo: Option<PathBuf>,
    /// The git worktree's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) worktree: Option<PathBuf>,
    /// The user-namespace holder process: pid and start time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) holder: Option<(u32, u64)>,
}

/// Moves what `set` holds inside a nested repository of the snapshot's base (a submodule)
/// to [`ChangeSet::skipped`]: such writes belong to another repository.
pub(crate) fn skip_nested(snapshot: &Snapshot, set: &mut ChangeSet) {
    let nested: Vec<&str> = snapshot
        .base()
        .skipped()
        .iter()
        .filter(|s| s.reason == SkipReason::NestedRepository)
        .map(|s| s.path.as_str())
        .collect();
    if nested.is_empty() {
        return;
    }
    let inside: Vec<(RepoPath, &str)> = set
        .paths()
        .filter_map(|p| {
            nested
                .iter()
                .find(|n| {
                    p.as_str()
                        .strip_prefix(**n)
                        .is_some_and(|rest| rest.starts_with('/'))
                })
                .map(|n| (p.clone(), *n))
        })
        .collect();
    for (path, repository) in inside {
        set.remove(&path);
        set.skip(
            path.as_str(),
            SkipReason::InsideNestedRepository {
                repository: repository.to_owned(),
            },
        );
    }
}

/// A new workspace directory `<workspaces>/<name>`, locked, with its record written. While it
/// is held, `<run_root>/workspaces/<name>/lock` is locked, which tells `gc` the workspace is
/// alive.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) name: String,
    pub(crate) dir: PathBuf,
    lock: Option<File>,
}

impl Slot {
    /// Whether the directory is still there (not yet released).
    pub(crate) fn is_held(&self) -> bool {
        self.lock.is_some()
    }

    /// Deletes the directory, then unlocks. Removing it never crosses into a file system still
    /// mounted below it, so after a failed unmount the files stay (for `gc` to retry).
    pub(crate) fn release(&mut self) -> Result<(), StagingError> {
        let removed = remove_tree(&self.dir);
        self.lock = None;
        removed
    }
}

/// A workspace dropped without `dispose` (a panic, an early return) still loses its directory.
/// A strategy with more to undo first (the overlay's mount) does that in its own `Drop`, which
/// runs before its fields' and releases the slot itself.
impl Drop for Slot {
    fn drop(&mut self) {
        if self.is_held() {
            let _ = self.release();
        }
    }
}

pub(crate) fn create_slot(
    shared: &Shared,
    name: &str,
    record: &WorkspaceRecord,
) -> Result<Slot, StagingError> {
    validate_name(name)?;
    let dir = shared.workspaces.join(name);
    match fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(StagingError::AlreadyExists(dir));
        }
        Err(e) => return Err(StagingError::io("create directory", dir, e)),
    }
    let lock_path = dir.join("lock");
    let lock = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&lock_path)
        .ctx("create", &lock_path)?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .ctx("lock", &lock_path)?;
    write_record(&dir, record)?;
    Ok(Slot {
        name: name.to_owned(),
        dir,
        lock: Some(lock),
    })
}

pub(crate) fn write_record(dir: &Path, record: &WorkspaceRecord) -> Result<(), StagingError> {
    let mut record = record.clone();
    record.version = 1;
    write_json(&dir.join("workspace.json"), &record)
}

fn validate_name(name: &str) -> Result<(), StagingError> {
    let invalid = |reason| StagingError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() || name.len() > 100 {
        return Err(invalid("it must be 1 to 100 characters long"));
    }
    if name.starts_with('.') {
        return Err(invalid("it must not start with `.`"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+' | b'@'))
    {
        return Err(invalid(
            "only ASCII letters, digits and `-_.+@` are allowed",
        ));
    }
    Ok(())
}

/// Writes one snapshot entry at `root/path`, copying (or cloning) a file from `source`.
pub(crate) fn write_entry(
    root: &Path,
    path: &str,
    entry: &Entry,
    source: &Path,
    clone: bool,
) -> Result<(), StagingError> {
    let dest = root.join(path);
    match entry {
        Entry::Symlink { target, .. } => std::os::unix::fs::symlink(target.as_path(), &dest)
            .ctx("create symlink", &dest)
            .map_err(Into::into),
        Entry::File { executable, .. } => {
            let src = crate::store::open_nofollow(source)?;
            let mut out = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(if *executable { 0o755 } else { 0o644 })
                .open(&dest)
                .ctx("create", &dest)?;
            let modified = src
                .metadata()
                .and_then(|m| m.modified())
                .ctx("stat", source)?;
            if clone {
                reflink_copy::reflink_file(&src, &out).ctx("clone (reflink) into", &dest)?;
            } else {
                let mut src = src;
                io::copy(&mut src, &mut out).ctx("copy into", &dest)?;
            }
            // The snapshot's modification time, which the workspace repository's prebuilt
            // index records (see `gitdir`): `git status` then finds the file unchanged
            // without reading it.
            out.set_modified(modified)
                .ctx("set the modification time of", &dest)
                .map_err(Into::into)
        }
    }
}

/// Makes the shared dirs and copied-in files available under `root` (a workspace tree, or an
/// overlay's upper directory), with new parent directories given the base's modes.
pub(crate) fn install_setup(
    shared: &Shared,
    snapshot: &Snapshot,
    root: &Path,
) -> Result<(), StagingError> {
    let repo = snapshot.base().repo();
    let like = snapshot.base().tree_dir();
    for share in &shared.config.share {
        let src = repo.join(share.path.as_str());
        if !src.is_dir() {
            continue;
        }
        create_dirs_like(root, share.path.parent().unwrap_or(""), &like)?;
        let dest = root.join(share.path.as_str());
        remove_tree(&dest)?;
        if share.mode == ShareMode::Clone && clone_tree(&src, &dest).is_ok() {
            continue;
        }
        remove_tree(&dest)?;
        std::os::unix::fs::symlink(&src, &dest).ctx("create symlink", &dest)?;
    }
    for file in &shared.config.copy_in {
        let src = repo.join(file.as_str());
        let Ok(meta) = fs::symlink_metadata(&src) else {
            continue;
        };
        create_dirs_like(root, file.parent().unwrap_or(""), &like)?;
        let dest = root.join(file.as_str());
        remove_tree(&dest)?;
        copy_tree(&src, &meta, &dest)?;
    }
    Ok(())
}

/// A reflink clone of the directory tree `src` at `dest`; fails as soon as one file cannot be
/// cloned.
fn clone_tree(src: &Path, dest: &Path) -> io::Result<()> {
    fs::create_dir(dest)?;
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let (from, to) = (entry.path(), dest.join(entry.file_name()));
        let ft = entry.file_type()?;
        if ft.is_dir() {
            clone_tree(&from, &to)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&from)?, &to)?;
        } else if ft.is_file() {
            reflink_copy::reflink(&from, &to)?;
        }
    }
    Ok(())
}

/// A plain copy of `src` (file, symlink or directory tree) at `dest`.
fn copy_tree(src: &Path, meta: &fs::Metadata, dest: &Path) -> Result<(), StagingError> {
    if meta.file_type().is_symlink() {
        let target = fs::read_link(src).ctx("read link", src)?;
        return std::os::unix::fs::symlink(target, dest)
            .ctx("create symlink", dest)
            .map_err(Into::into);
    }
    if meta.is_dir() {
        fs::create_dir(dest).ctx("create directory", dest)?;
        for entry in fs::read_dir(src).ctx("list", src)? {
            let entry = entry.ctx("list", src)?;
            let m = fs::symlink_metadata(entry.path()).ctx("stat", &entry.path())?;
            copy_tree(&entry.path(), &m, &dest.join(entry.file_name()))?;
        }
        return Ok(());
    }
    if meta.is_file() {
        fs::copy(src, dest).ctx("copy into", dest)?;
    }
    Ok(())
}
