//! The two traits a staging strategy implements: [`Stager`] makes a [`Workspace`] from a
//! snapshot. forge-exec and forge-merge's gate are written against them, so a strategy written
//! outside this crate plugs in the same way as the four built in.

use std::fmt;
use std::path::Path;
use std::process::Command;

use crate::{ChangeSet, Snapshot, StagerKind, StagingError};

/// Makes workspaces from snapshots. One implementation per strategy; [`StagerKind::build`]
/// picks one of the built-in ones.
pub trait Stager: Send + Sync {
    /// The strategy's name, as events and benchmark ids show it (`overlay`, `copy`, …).
    fn strategy(&self) -> &str;

    /// Makes the workspace `name` (a directory name, unique within the run) holding `snapshot`.
    ///
    /// The built-in strategies make it under `<run_root>/workspaces/<name>`; it is removed by
    /// [`Workspace::dispose`], when dropped, or by [`crate::gc`] after a crash.
    fn stage(&self, snapshot: &Snapshot, name: &str) -> Result<Box<dyn Workspace>, StagingError>;

    /// The built-in strategy this is, if it is one.
    fn kind(&self) -> Option<StagerKind> {
        self.strategy().parse().ok()
    }
}

/// An isolated directory tree holding a snapshot, where one agent works.
///
/// Made by a [`Stager`]. Reads and writes inside it never reach the base snapshot, the user's
/// repository or another workspace. [`Workspace::changes`] reports what was done to it relative
/// to its snapshot. [`Workspace::dispose`] removes it with everything it holds (mounts, its git
/// repository, files); dropping a built-in workspace does the same, ignoring errors; after a
/// crash, [`crate::gc`] does.
///
/// Every built-in workspace is a git repository at its start state (see the crate
/// documentation): its `.git` is the workspace's own and is never part of
/// [`Workspace::changes`].
pub trait Workspace: Send + Sync + fmt::Debug {
    /// The workspace's name (as given to [`Stager::stage`]).
    fn name(&self) -> &str;

    /// The name of the strategy that made it (see [`Stager::strategy`]).
    fn strategy(&self) -> &str;

    /// The directory the agent works in (its current directory once
    /// [`Workspace::prepare_command`] has run).
    fn path(&self) -> &Path;

    /// The snapshot the workspace started from; [`Workspace::changes`] is relative to it.
    fn snapshot(&self) -> &Snapshot;

    /// Every change made in the workspace relative to its snapshot, with the new contents
    /// written to the run's object store. Excludes `.git/` and `.forge/`; reports (rather than
    /// drops) what cannot be captured in [`ChangeSet::skipped`].
    fn changes(&self) -> Result<ChangeSet, StagingError>;

    /// Removes the workspace and everything it holds.
    fn dispose(self: Box<Self>) -> Result<(), StagingError>;

    /// Where this process sees the workspace's files: [`Workspace::path`] unless the workspace
    /// is only visible inside a namespace the agent enters (an overlay mounted in a user
    /// namespace shows it at `/proc/<holder>/root/<path>`).
    fn host_path(&self) -> &Path {
        self.path()
    }

    /// Sets `cmd` up to run in the workspace: its current directory and `FORGE_WORKSPACE`
    /// (an overlay in a user namespace also enters that namespace before `exec`, which makes
    /// the spawn use `fork` rather than `posix_spawn`). For tokio, pass `cmd.as_std_mut()`.
    fn prepare_command(&self, cmd: &mut Command) -> Result<(), StagingError> {
        cmd.current_dir(self.path())
            .env("FORGE_WORKSPACE", self.path());
        Ok(())
    }

    /// Whether [`Workspace::prepare_command`] does more than set the current directory to
    /// [`Workspace::path`] and `FORGE_WORKSPACE` to the same (an overlay mounted in a user
    /// namespace enters it before `exec`; a disposed workspace refuses). A caller that starts
    /// processes without a `Command` may set those two itself when this is `false`.
    fn needs_command_hook(&self) -> bool {
        false
    }
}
