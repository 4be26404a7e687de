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
    /// A file-system operation failed.
    #[error("cannot {op} `{}`: {source}", path.display())]
    Io {
        /// What was being done (`read`, `rename into place`, …).
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
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
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Adds the operation and path to an `io::Result`.
pub(crate) trait IoContext<T> {
    /// Maps an I/O error to [`MergeError::Io`].
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T, MergeError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T, MergeError> {
        self.map_err(|e| MergeError::io(op, path, e))
    }
}

impl<T> IoContext<T> for rustix::io::Result<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T, MergeError> {
        self.map_err(|e| MergeError::io(op, path, e.into()))
    }
}
