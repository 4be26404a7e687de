//! Isolated workspaces for agents, made in O(1), and exact capture of what they changed.
//!
//! Each attempt of a Forge task runs its agent in a workspace of its own, so agents never see
//! each other's half-written files and never touch the user's repository. A full git worktree
//! per agent costs seconds and gigabytes on a large repository; an overlay costs one mount.
//!
//! # The pieces
//!
//! - [`BaseSnapshot`]: the repository as a run starts from it (git `HEAD`, or the working tree
//!   with untracked, not-ignored files), taken once into the run store: a plain tree of files
//!   plus a [`Manifest`] mapping each [`RepoPath`] to an [`Entry`] (content hash, size, exec
//!   bit, symlink target). Every content goes into the [`BlobStore`], content-addressed by
//!   BLAKE3 and verified on every read.
//! - [`Snapshot`]: what one workspace starts from, the base plus a delta (the [`ChangeSet`]s
//!   integrated so far, composed with [`ChangeSet::compose`]). The delta is materialized as a
//!   short stack of layers, each holding files plus overlayfs whiteouts for deletions:
//!   [`Snapshot::stack`] puts the next integrated step on top as one more layer, so building
//!   the next snapshot costs what that step changed, not what the run integrated so far or what
//!   the repository holds. Layers merge like the digits of a binary counter (hard links, no
//!   copies), so the stack is `popcount(steps)` deep.
//! - [`Stager`]: makes a [`Workspace`] from a snapshot. [`StagerKind::Auto`] picks the first
//!   strategy that works on this machine, in this order:
//!   1. [`OverlayStager`]: overlayfs with the snapshot's layers as read-only lower directories
//!      and a per-workspace upper directory; mounted directly when privileged, else inside an
//!      unprivileged user + mount namespace (which [`Workspace::prepare_command`] enters), else
//!      with `fuse-overlayfs`. Staging is one mount; [`Workspace::changes`] walks only the upper
//!      directory (whiteouts are deletions, opaque directories hide the layers below), so its
//!      cost grows with what changed, not with the repository.
//!   2. [`ReflinkStager`]: copy-on-write clones of every file (XFS, btrfs); changes by
//!      comparing with the manifest (size and mtime first, hashing when in doubt).
//!   3. [`WorktreeStager`]: a checkout made by git (`checkout-index`) from the workspace's own
//!      repository (below); changes from `git status` against the start state, and hashes.
//!   4. [`CopyStager`]: a plain copy; always works.
//!
//!   [`Stager`] and [`Workspace`] are traits: each strategy module implements both, and a
//!   strategy of your own (a container, a remote machine) does the same — `stage` returns a
//!   `Box<dyn Workspace>`, and only `name`, `strategy`, `path`, `snapshot`, `changes` and
//!   `dispose` are required ([`IoContext`] names the path of a failed file operation).
//! - [`ChangeSet`]: what an agent did, path by path ([`Change::Added`], [`Change::Modified`],
//!   [`Change::Deleted`]), in sorted order, serde round-trippable, with the new contents in the
//!   blob store. A symlink is recorded as a symlink with its target text, never followed. Paths
//!   in `.git/` and `.forge/`, shared directories, copied-in files and ignored files are never
//!   in a changeset; files over the size limit, special files and bad names are reported in
//!   [`ChangeSet::skipped`].
//! - **A git repository in every workspace**, at the workspace's start state, on every
//!   strategy: `git status` is clean at the start and then lists exactly the agent's changes,
//!   `git diff` shows them, `git log` shows the user's history with `HEAD` at the base commit
//!   on the user's branch. When the snapshot holds more than that commit (a `worktree` base's
//!   uncommitted work, or changes integrated earlier in the run), `HEAD` is one Forge commit on
//!   top of the base commit holding exactly the snapshot, so the start is still clean. Objects
//!   are shared read-only with the user's repository (`alternates`); commits, branches,
//!   stashes, config and hooks the agent makes stay in the workspace, and the workspace's
//!   `.git` is never part of a changeset. Each snapshot carries one prebuilt index for it
//!   (stat checks with `core.checkStat=minimal`, which ignores the inode, device and ctime
//!   values an overlay or a copy changes), so a fresh workspace's `git status` reads no file.
//! - [`gc`]: removes workspaces, mounts and worktrees left behind by a crashed or killed run.
//!
//! Every operation blocks: call them from `spawn_blocking` in async code.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use forge_staging::{BaseMode, BaseSnapshot, BlobStore, Change, Snapshot, StagerConfig, StagerKind};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let tmp = tempfile::tempdir()?;
//! # let (repo, run) = (tmp.path().join("repo"), tmp.path().join("run"));
//! # std::fs::create_dir_all(repo.join("src"))?;
//! # std::fs::write(repo.join("src/lib.rs"), "pub fn f() {}\n")?;
//! // Once per run: the base snapshot and the object store.
//! let store = BlobStore::open(run.join("objects"))?;
//! let base = Arc::new(BaseSnapshot::capture(&repo, BaseMode::Worktree, &run.join("base"), &store)?);
//!
//! // The best strategy this machine offers.
//! let stager = StagerKind::Auto.build(&StagerConfig::new(&run, store.clone()), &base)?;
//! let ws = stager.stage(&Snapshot::from(base.clone()), "task-1")?;
//!
//! // The agent works in the workspace (here we edit a file from this process).
//! std::fs::write(ws.host_path().join("src/lib.rs"), "pub fn f() -> u8 { 1 }\n")?;
//! let mut cmd = std::process::Command::new("ls");
//! ws.prepare_command(&mut cmd)?; // cwd = the workspace (entering its namespace if needed)
//! assert!(cmd.output()?.status.success());
//!
//! let changes = ws.changes()?;
//! let Some(Change::Modified { after, .. }) = changes.get("src/lib.rs") else { panic!() };
//! assert_eq!(store.read(&after.hash())?, b"pub fn f() -> u8 { 1 }\n");
//! ws.dispose()?;
//! assert_eq!(std::fs::read_to_string(repo.join("src/lib.rs"))?, "pub fn f() {}\n");
//! # Ok(())
//! # }
//! ```

mod base;
mod build;
mod changes;
mod entry;
mod error;
mod fsutil;
mod gc;
mod git;
mod gitdir;
mod manifest;
mod overlay;
mod path;
mod rules;
mod scan;
mod slot;
mod snapshot;
mod stager;
mod store;
mod tree;
mod workspace;
mod worktree;

pub use base::{BaseMode, BaseSnapshot};
pub use changes::{Change, ChangeSet, SkipReason, Skipped};
pub use entry::{ContentHash, Entry, LinkTarget};
pub use error::StagingError;
pub use forge_types::{IoContext, IoError, PathError};
pub use fsutil::{relative_path, resolve_path, write_atomically, write_changes};
pub use gc::{GcReport, gc};
pub use gitdir::{USER_GIT_LINK, WORKSPACE_HOST_VAR};
pub use manifest::Manifest;
pub use overlay::OverlayStager;
pub use path::RepoPath;
pub use snapshot::Snapshot;
pub use stager::{
    DEFAULT_MAX_FILE_SIZE, OverlayRoute, ShareMode, SharedDir, StagerConfig, StagerKind,
};
pub use store::BlobStore;
pub use tree::{CopyStager, ReflinkStager};
pub use workspace::{Stager, Workspace};
pub use worktree::WorktreeStager;
