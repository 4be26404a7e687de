use std::fs::{self, File};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::base::write_json;
use crate::error::IoContext;
use crate::fsutil::{create_dirs_like, remove_tree};
use crate::overlay::{self, Mounted, OverlayRoute};
use crate::stager::{ShareMode, Shared};
use crate::{ChangeSet, Entry, RepoPath, SkipReason, Snapshot, StagerKind, StagingError};

/// An isolated directory tree holding a snapshot, where one agent works.
///
/// Made by a [`crate::Stager`]. Reads and writes inside it never reach the base snapshot, the
/// user's repository or another workspace. [`Workspace::changes`] reports what was done to it
/// relative to its snapshot. [`Workspace::dispose`] removes it with everything it holds (mounts,
/// its git repository, files); dropping it does the same, ignoring errors; after a crash,
/// [`crate::gc`] does.
///
/// Every workspace is a git repository at its start state (see the crate documentation): its
/// `.git` is the workspace's own and is never part of [`Workspace::changes`].
///
/// While it exists, `<run_root>/workspaces/<name>/lock` is held locked, which tells `gc` the
/// workspace is alive.
#[derive(Debug)]
pub struct Workspace {
    pub(crate) name: String,
    pub(crate) kind: StagerKind,
    pub(crate) dir: PathBuf,
    pub(crate) path: PathBuf,
    pub(crate) host_path: PathBuf,
    pub(crate) snapshot: Snapshot,
    pub(crate) shared: Arc<Shared>,
    pub(crate) backend: Backend,
    pub(crate) lock: Option<File>,
}

#[derive(Debug)]
pub(crate) enum Backend {
    Overlay(Mounted),
    /// Copy and reflink: a plain tree; files whose mtime and ctime are older than `stamp` (the
    /// file system's time when staging finished) and whose size matches are unchanged.
    Tree {
        stamp: (i64, i64),
    },
    /// A git checkout with a private repository: a plain tree, changes from `git status`
    /// against the start state, whatever the agent did to the workspace's own repository.
    Worktree {
        /// A copy of the workspace's index as staged, outside the workspace.
        start_index: PathBuf,
        /// The snapshot's repository (its git layer's `.git`), which the agent cannot reach.
        start_git: PathBuf,
    },
    /// Already torn down.
    Gone,
}

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

impl Workspace {
    /// The workspace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The strategy that made it.
    pub fn kind(&self) -> StagerKind {
        self.kind
    }

    /// The directory the agent works in (its current directory once [`Workspace::prepare_command`]
    /// has run). For an overlay in a user namespace this path shows the workspace only inside
    /// the namespace; read it from this process through [`Workspace::host_path`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where this process sees the workspace's files: the same as [`Workspace::path`], except
    /// for an overlay mounted in a user namespace (`/proc/<holder>/root/<path>`).
    pub fn host_path(&self) -> &Path {
        &self.host_path
    }

    /// The snapshot the workspace started from; [`Workspace::changes`] is relative to it.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The overlay route, for an overlay workspace.
    pub fn overlay_route(&self) -> Option<OverlayRoute> {
        match &self.backend {
            Backend::Overlay(m) => Some(m.route),
            _ => None,
        }
    }

    /// Sets `cmd` up to run in the workspace: its current directory, `FORGE_WORKSPACE`, and for
    /// an overlay in a user namespace, entering that namespace before `exec` (which makes the
    /// spawn use `fork` rather than `posix_spawn`). For tokio, pass `cmd.as_std_mut()`.
    pub fn prepare_command(&self, cmd: &mut Command) -> Result<(), StagingError> {
        cmd.current_dir(&self.path)
            .env("FORGE_WORKSPACE", &self.path);
        if let Backend::Overlay(m) = &self.backend {
            m.enter(cmd)?;
        }
        Ok(())
    }

    /// Every change made in the workspace relative to its snapshot, with the new content
    /// written to the store. Excludes `.git/`, `.forge/`, shared dirs, copied-in files and
    /// ignored files; reports (rather than drops) what cannot be captured.
    ///
    /// Ignore rules are those of the workspace's start state: a `.gitignore` the task edited
    /// does not hide its files from the capture. Writes inside a submodule (or nested
    /// repository) of the base are reported as skipped, not captured.
    pub fn changes(&self) -> Result<ChangeSet, StagingError> {
        let mut set = match &self.backend {
            Backend::Overlay(m) => overlay::changes(self, m),
            Backend::Tree { stamp } => crate::tree::changes(self, *stamp),
            Backend::Worktree {
                start_index,
                start_git,
            } => crate::worktree::changes(self, start_git, start_index),
            Backend::Gone => Err(StagingError::io(
                "read",
                &self.path,
                io::Error::other("the workspace was disposed of"),
            )),
        }?;
        let nested: Vec<&str> = self
            .snapshot
            .base()
            .skipped()
            .iter()
            .filter(|s| s.reason == SkipReason::NestedRepository)
            .map(|s| s.path.as_str())
            .collect();
        if !nested.is_empty() {
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
        Ok(set)
    }

    /// Removes the workspace: unmounts, deletes its files (its git repository with them).
    pub fn dispose(mut self) -> Result<(), StagingError> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<(), StagingError> {
        let backend = std::mem::replace(&mut self.backend, Backend::Gone);
        let result = match backend {
            Backend::Overlay(m) => m.unmount(),
            Backend::Tree { .. } | Backend::Worktree { .. } | Backend::Gone => Ok(()),
        };
        // Removing the directory never crosses into a file system still mounted below it, so
        // a failed unmount leaves the workspace's files alone (for `gc` to retry).
        let removed = remove_tree(&self.dir);
        self.lock = None;
        result.and(removed)
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if self.lock.is_some() {
            let _ = self.teardown();
        }
    }
}

/// A new workspace directory `<workspaces>/<name>`, locked, with its record written.
pub(crate) struct Slot {
    pub(crate) dir: PathBuf,
    pub(crate) lock: File,
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
    Ok(Slot { dir, lock })
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
        Entry::Symlink { target, .. } => {
            std::os::unix::fs::symlink(target.as_path(), &dest).ctx("create symlink", &dest)
        }
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
        return std::os::unix::fs::symlink(target, dest).ctx("create symlink", dest);
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
