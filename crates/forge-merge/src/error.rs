use std::path::PathBuf;

use forge_staging::StagingError;

/// Errors of the merge crate. Each variant names the path, command or value involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MergeError {
    /// A `[merge]` strategy name is not known.
    #[error(
        "unknown merge strategy `{0}`: expected one of fail, ours, theirs, union, agent, driver:<command>"
    )]
    UnknownStrategy(String),
    /// `driver:` was given without a command.
    #[error("merge strategy `driver:` needs a command, e.g. `driver:./merge.sh %O %A %B`")]
    EmptyDriver,
    /// A `[merge]` path pattern is not a valid glob.
    #[error("invalid merge pattern `{pattern}`: {reason}")]
    InvalidPattern {
        /// The pattern as given.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading or writing the object store, a snapshot or a changeset failed.
    #[error(transparent)]
    Staging(#[from] StagingError),
    /// A file-system operation failed (what was done, to which path, and why).
    #[error(transparent)]
    Io(#[from] forge_types::IoError),
    /// An external command (git, a merge driver) could not be run or failed.
    #[error("`{command}` failed: {message}")]
    Command {
        /// The command line, for the user to re-run.
        command: String,
        /// Its exit status and error output.
        message: String,
    },
    /// Applying was refused because the gate did not pass.
    #[error("the gate did not pass, so nothing was applied: {summary}")]
    GateFailed {
        /// The gate's summary (which command failed, test counts).
        summary: String,
    },
    /// An earlier apply of this run did not finish; [`crate::recover`] must run first.
    #[error(
        "an unfinished apply journal exists at `{}`: run recovery before applying again",
        .0.display()
    )]
    ApplyPending(PathBuf),
    /// A file Forge wrote (apply journal, integration record) cannot be read back.
    #[error("`{}` is not a valid {what}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What it should be.
        what: &'static str,
        /// Why it cannot be used.
        reason: String,
    },
    /// Applying to a branch needs a git repository with a commit.
    #[error("`{}` cannot be used for a branch apply: {reason}", path.display())]
    NotGit {
        /// The repository directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A run id does not make a valid branch name `forge/<run>`.
    #[error("run id `{run}` cannot name a branch: {reason}")]
    InvalidRun {
        /// The run id as given.
        run: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The branch `forge/<run>` exists already and does not hold this run's commits.
    #[error(
        "branch `{branch}` already exists; delete it with `git branch -D {branch}` and apply again"
    )]
    BranchExists {
        /// The full branch name.
        branch: String,
    },
}

impl MergeError {
    /// An [`MergeError::Io`] error for `op` on `path`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io(forge_types::IoError::new(op, path, source))
    }
}

/// `.ctx(op, path)` on I/O results: the one helper of `forge-types`, whose [`forge_types::IoError`]
/// `?` converts into this crate's error.
pub(crate) use forge_types::IoContext;
