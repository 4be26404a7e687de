//! The git worktree strategy: `git worktree add --detach` at the base commit, then the
//! snapshot's differences from that commit (uncommitted work in `Worktree` mode, the delta)
//! written over it. Changes come from `git status` plus those paths, hashed.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::Path;
use std::sync::Arc;

use crate::error::IoContext;
use crate::fsutil::remove_tree;
use crate::git::{git, run, status_paths};
use crate::rules::IgnoreRules;
use crate::scan::Capture;
use crate::stager::Shared;
use crate::workspace::{Backend, WorkspaceRecord, create_slot, install_setup, write_entry};
use crate::{
    BaseSnapshot, ChangeSet, RepoPath, SkipReason, Snapshot, Stager, StagerConfig, StagerKind,
    StagingError, Workspace,
};

/// Stages workspaces as detached git worktrees of the user's repository.
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
        run(git(base.repo()).args(["worktree", "list"]))
            .map_err(|e| unsupported(format!("git cannot list worktrees: {e}")))?;
        Ok(Self {
            shared: Shared::new(config)?,
        })
    }
}

impl Stager for WorktreeStager {
    fn kind(&self) -> StagerKind {
        StagerKind::Worktree
    }

    fn stage(&self, snapshot: &Snapshot, name: &str) -> Result<Workspace, StagingError> {
        let base = snapshot.base();
        let Some(commit) = base.commit() else {
            return Err(StagingError::Unsupported {
                strategy: "worktree",
                reason: format!(
                    "the base snapshot of `{}` has no git commit",
                    base.repo().display()
                ),
            });
        };
        let repo = base.repo().to_path_buf();
        // git names a worktree's record after the last component of its path: a unique one
        // (the workspace's name) keeps records of concurrent workspaces apart.
        let slot_dir = self.shared.workspaces.join(name);
        let tree = slot_dir.join(name);
        // The record names the repository and worktree before the worktree exists, so that
        // `gc` can remove it whenever a crash happens.
        let record = WorkspaceRecord {
            strategy: StagerKind::Worktree,
            repo: Some(repo.clone()),
            worktree: Some(tree.clone()),
            ..WorkspaceRecord::default()
        };
        let slot = create_slot(&self.shared, name, &record)?;
        let result = (|| {
            let _lock = lock_repo(&repo)?;
            run(git(&repo)
                .args([
                    "-c",
                    "core.hooksPath=/dev/null",
                    "worktree",
                    "add",
                    "--detach",
                    "--quiet",
                ])
                .arg(&tree)
                .arg(commit))?;
            for path in snapshot.paths_off_commit() {
                place(snapshot, &tree, path)?;
            }
            install_setup(&self.shared, snapshot, &tree)
        })();
        if let Err(e) = result {
            remove(&repo, &tree);
            let _ = remove_tree(&slot.dir);
            return Err(e);
        }
        Ok(Workspace {
            name: name.to_owned(),
            kind: StagerKind::Worktree,
            dir: slot.dir,
            host_path: tree.clone(),
            path: tree,
            snapshot: snapshot.clone(),
            shared: Arc::clone(&self.shared),
            backend: Backend::Worktree { repo },
            lock: Some(slot.lock),
        })
    }
}

/// Makes `path` in the worktree hold what the snapshot holds (or nothing).
fn place(snapshot: &Snapshot, tree: &Path, path: &RepoPath) -> Result<(), StagingError> {
    let dest = tree.join(path.as_str());
    // Whatever is there now (file, symlink or directory) goes; so does a file standing where
    // a parent directory must be.
    remove_tree(&dest)?;
    let Some(entry) = snapshot.get(path.as_str()) else {
        return Ok(());
    };
    let mut dir = tree.to_path_buf();
    if let Some(parent) = path.parent() {
        for seg in parent.split('/') {
            dir.push(seg);
            match fs::symlink_metadata(&dir) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    fs::remove_file(&dir).ctx("remove", &dir)?;
                    fs::create_dir(&dir).ctx("create directory", &dir)?;
                }
                Err(_) => fs::create_dir(&dir).ctx("create directory", &dir)?,
            }
        }
    }
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

/// Removes the worktree at `tree` from `repo` (forcibly, even if locked or dirty), then prunes
/// worktree records whose directory is gone. Errors are ignored: the directory is removed by
/// the caller either way, and `prune` forgets it.
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
pub(crate) fn changes(ws: &Workspace, _repo: &Path) -> Result<ChangeSet, StagingError> {
    let config = &ws.shared.config;
    let tree = &ws.path;
    let out = run(git(tree).env("GIT_OPTIONAL_LOCKS", "0").args([
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
        ignored_now(tree, &mut rules, &mut cap, &mut candidates)?;
    }
    candidates.extend(
        ws.snapshot
            .paths_off_commit()
            .map(|p| p.as_str().to_owned()),
    );
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
        match fs::symlink_metadata(&abs) {
            Ok(meta) if !meta.is_dir() => {
                if before.is_none() && rules.is_ignored(path.as_str(), false) {
                    continue;
                }
                cap.record(path, &abs, &meta, before)?;
            }
            Ok(_) => {
                // A directory now stands where the snapshot had a file; its files are listed
                // by git one by one.
                if let Some(before) = before {
                    cap.deleted(&path, before);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
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
    tree: &Path,
    rules: &mut IgnoreRules<'_>,
    cap: &mut Capture<'_>,
    candidates: &mut BTreeSet<String>,
) -> Result<(), StagingError> {
    let ignored = run(git(tree).env("GIT_OPTIONAL_LOCKS", "0").args([
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
