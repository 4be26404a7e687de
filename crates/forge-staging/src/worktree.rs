//! The git worktree strategy: a checkout made by git itself, with a repository of the
//! workspace's own (the snapshot's git layer copied in, objects shared through `alternates`, so
//! nothing the agent does in git reaches the user's repository), then the snapshot's exact
//! content written over the paths where it may differ from its commit (uncommitted work in
//! `Worktree` mode, the delta). Changes come from `git status` plus those paths, hashed.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::IoContext;
use crate::fsutil::{RealDirs, clear_path, make_parents, remove_tree};
use crate::git::{git, run, status_paths};
use crate::rules::IgnoreRules;
use crate::scan::Capture;
use crate::slot::{Slot, WorkspaceRecord, create_slot, install_setup, skip_nested, write_entry};
use crate::stager::Shared;
use crate::{
    BaseSnapshot, ChangeSet, RepoPath, SkipReason, Snapshot, Stager, StagerConfig, StagerKind,
    StagingError, Workspace,
};

/// Stages workspaces as git checkouts of the snapshot, each with its own repository whose
/// objects are shared read-only with the user's (see the module documentation).
#[derive(Debug)]
pub struct WorktreeStager {
    shared: Arc<Shared>,
}

impl WorktreeStager {
    /// A worktree stager for snapshots of `base`, which must come from a git repository with a
    /// commit (and git must be installed).
    pub fn new(config: &StagerConfig, base: &BaseSnapshot) -> Result<Self, StagingError> {
        let unsupported = |reason: String| StagingError::Unsupported {
            strategy: "worktree",
            reason,
        };
        if base.commit().is_none() {
            return Err(unsupported(format!(
                "the base snapshot of `{}` has no git commit",
                base.repo().display()
            )));
        }
        run(git(base.repo()).args(["rev-parse", "--git-dir"]))
            .map_err(|e| unsupported(format!("git cannot read the repository: {e}")))?;
        Ok(Self {
            shared: Shared::new(config)?,
        })
    }
}

impl Stager for WorktreeStager {
    fn strategy(&self) -> &str {
        StagerKind::Worktree.name()
    }

    fn stage(&self, snapshot: &Snapshot, name: &str) -> Result<Box<dyn Workspace>, StagingError> {
        let base = snapshot.base();
        let Some(layer) = snapshot.git_layer() else {
            return Err(StagingError::Unsupported {
                strategy: "worktree",
                reason: format!(
                    "the base snapshot `{}` has no git layer (it was taken by an older Forge); \
                     start a new run",
                    base.dir().display()
                ),
            });
        };
        let slot_dir = self.shared.workspaces.join(name);
        let tree = slot_dir.join(name);
        let record = WorkspaceRecord {
            strategy: StagerKind::Worktree,
            ..WorkspaceRecord::default()
        };
        let mut slot = create_slot(&self.shared, name, &record)?;
        let start_index = slot.dir.join("start-index");
        let result = (|| {
            fs::create_dir(&tree).ctx("create directory", &tree)?;
            crate::gitdir::install(&layer.join(".git"), &tree.join(".git"))?;
            crate::gitdir::checkout(&tree)?;
            // git's checkout of a path may differ from the snapshot's bytes (filters, line
            // endings) where the content did not come from the commit: those are written as
            // the snapshot holds them.
            let mut placed = false;
            for path in snapshot.paths_off_commit() {
                place(snapshot, &tree, path)?;
                placed = true;
            }
            if placed {
                crate::gitdir::refresh(&tree)?;
            }
            install_setup(&self.shared, snapshot, &tree)?;
            fs::copy(tree.join(".git/index"), &start_index).ctx("copy into", &start_index)?;
            Ok(())
        })();
        if let Err(e) = result {
            let _ = slot.release();
            return Err(e);
        }
        Ok(Box::new(WorktreeWorkspace {
            slot,
            path: tree,
            snapshot: snapshot.clone(),
            shared: Arc::clone(&self.shared),
            start_index,
            start_git: layer.join(".git"),
        }))
    }
}

/// A workspace of the worktree strategy: a git checkout with a private repository; changes
/// from `git status` against the start state, whatever the agent did to the workspace's own
/// repository.
#[derive(Debug)]
struct WorktreeWorkspace {
    slot: Slot,
    path: PathBuf,
    snapshot: Snapshot,
    shared: Arc<Shared>,
    /// A copy of the workspace's index as staged, outside the workspace.
    start_index: PathBuf,
    /// The snapshot's repository (its git layer's `.git`), which the agent cannot reach.
    start_git: PathBuf,
}

impl Workspace for WorktreeWorkspace {
    fn name(&self) -> &str {
        &self.slot.name
    }

    fn strategy(&self) -> &str {
        StagerKind::Worktree.name()
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    fn changes(&self) -> Result<ChangeSet, StagingError> {
        let mut set = changes(self)?;
        skip_nested(&self.snapshot, &mut set);
        Ok(set)
    }

    fn dispose(mut self: Box<Self>) -> Result<(), StagingError> {
        self.slot.release()
    }
}

/// Makes `path` in the worktree hold what the snapshot holds (or nothing).
fn place(snapshot: &Snapshot, tree: &Path, path: &RepoPath) -> Result<(), StagingError> {
    // Whatever is there now (file, symlink or directory) goes; so does a file standing where
    // a parent directory must be. Below a file or a symlink nothing is there (and a symlink
    // is never followed).
    clear_path(tree, path.as_str())?;
    let Some(entry) = snapshot.get(path.as_str()) else {
        return Ok(());
    };
    make_parents(tree, path.as_str())?;
    write_entry(
        tree,
        path.as_str(),
        entry,
        &snapshot.source(path.as_str()),
        false,
    )
}

/// Serializes worktree operations on one repository, across threads and processes: git does
/// not guard `worktree add` against a concurrent `add` or `prune` (one can read the other's
/// half-written record). The lock is an advisory `flock` on the repository's directory itself,
/// so nothing is written into the repository for it.
fn lock_repo(repo: &Path) -> Result<fs::File, StagingError> {
    let dir = fs::File::open(repo).ctx("open", repo)?;
    rustix::fs::flock(&dir, rustix::fs::FlockOperation::LockExclusive).ctx("lock", repo)?;
    Ok(dir)
}

/// Removes the git worktree at `tree` from `repo` (forcibly, even if locked or dirty), then
/// prunes worktree records whose directory is gone: for workspaces of older Forge versions,
/// which were linked worktrees of the user's repository. Errors are ignored: the directory is
/// removed by the caller either way, and `prune` forgets it.
pub(crate) fn remove(repo: &Path, tree: &Path) {
    let _lock = lock_repo(repo);
    if tree.exists() {
        let _ = run(git(repo)
            .args(["worktree", "remove", "--force", "--force"])
            .arg(tree));
    }
    let _ = remove_tree(tree);
    let _ = run(git(repo).args(["worktree", "prune"]));
}

/// Changes: the paths `git status` lists plus those where the snapshot differs from the commit,
/// each compared with the snapshot.
fn changes(ws: &WorktreeWorkspace) -> Result<ChangeSet, StagingError> {
    let (start_git, start_index) = (&ws.start_git, &ws.start_index);
    let config = &ws.shared.config;
    let tree = &ws.path;
    // git as it was when staged: the snapshot's repository and the index the workspace started
    // with, so the agent's commits, resets or a removed `.git` change nothing here.
    let status = || {
        let mut cmd = git(tree);
        cmd.env("GIT_DIR", start_git)
            .env("GIT_WORK_TREE", tree)
            .env("GIT_INDEX_FILE", start_index)
            .env("GIT_OPTIONAL_LOCKS", "0")
            .args(crate::gitdir::READ_ONLY_USER);
        cmd
    };
    let out = run(status().args([
        "status",
        "--porcelain=v1",
        "-z",
        "--untracked-files=all",
        "--no-renames",
        "--ignore-submodules=all",
    ]))?;
    let mut cap = Capture::new(&config.store, config.max_file_size);
    let mut rules = IgnoreRules::at_start(&ws.snapshot, &config.store);
    let mut candidates = BTreeSet::new();
    for raw in status_paths(&out) {
        match std::str::from_utf8(raw) {
            Ok(p) => {
                candidates.insert(p.to_owned());
            }
            Err(_) => cap.out.skip(
                String::from_utf8_lossy(raw).into_owned(),
                SkipReason::InvalidName {
                    detail: "the name is not valid UTF-8".to_owned(),
                },
            ),
        }
    }
    // git lists what the task's own `.gitignore` edit hides only when asked; the start state's
    // rules (`rules`) decide below.
    if candidates
        .iter()
        .any(|c| c == ".gitignore" || c.ends_with("/.gitignore"))
    {
        ignored_now(status(), &mut rules, &mut cap, &mut candidates)?;
    }
    candidates.extend(
        ws.snapshot
            .paths_off_commit()
            .map(|p| p.as_str().to_owned()),
    );
    let mut dirs = RealDirs::new(tree);
    for candidate in candidates {
        // git lists a nested repository as `dir/`.
        if let Some(dir) = candidate.strip_suffix('/') {
            if !ws.shared.excluded.contains(dir) {
                cap.out.skip(dir, SkipReason::NestedRepository);
            }
            continue;
        }
        if ws.shared.excluded.contains(&candidate) {
            continue;
        }
        let path = match RepoPath::new(&candidate) {
            Ok(p) => p,
            Err(e) => {
                cap.out.skip(
                    candidate,
                    SkipReason::InvalidName {
                        detail: e.to_string(),
                    },
                );
                continue;
            }
        };
        let before = ws.snapshot.get(path.as_str());
        let abs = tree.join(path.as_str());
        match dirs.lstat(path.as_str()) {
            Ok(Some(meta)) if !meta.is_dir() => {
                if before.is_none() && rules.is_ignored(path.as_str(), false) {
                    continue;
                }
                cap.record(path, &abs, &meta, before)?;
            }
            // A directory now stands where the snapshot had a file (its files are listed by
            // git one by one), or nothing does.
            Ok(_) => {
                if let Some(before) = before {
                    cap.deleted(&path, before);
                }
            }
            Err(e) => return Err(StagingError::io("stat", abs, e)),
        }
    }
    Ok(cap.finish())
}

/// Adds every file git ignores now (after the task's `.gitignore` edits) to `candidates`; names
/// that are not UTF-8 and that the start state does not ignore are reported as skipped.
fn ignored_now(
    mut status: std::process::Command,
    rules: &mut IgnoreRules<'_>,
    cap: &mut Capture<'_>,
    candidates: &mut BTreeSet<String>,
) -> Result<(), StagingError> {
    let ignored = run(status.args([
        "status",
        "--porcelain=v1",
        "-z",
        "--untracked-files=all",
        "--ignored=traditional",
        "--no-renames",
        "--ignore-submodules=all",
    ]))?;
    for raw in crate::git::nul_records(&ignored).filter(|r| r.starts_with(b"!! ")) {
        match std::str::from_utf8(&raw[3..]) {
            Ok(p) if !p.ends_with('/') => {
                candidates.insert(p.to_owned());
            }
            Ok(_) => {}
            Err(_) => {
                let name = String::from_utf8_lossy(&raw[3..]).into_owned();
                if !rules.is_ignored(&name, false) {
                    cap.out.skip(
                        name,
                        SkipReason::InvalidName {
                            detail: "the name is not valid UTF-8".to_owned(),
                        },
                    );
                }
            }
        }
    }
    Ok(())
}
