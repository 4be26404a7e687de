use std::path::PathBuf;

use crate::{ContentHash, RepoPath};

/// Errors of the staging crate. Each variant names the path, command or value involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StagingError {
    /// A path is not an acceptable repo-relative path.
    #[error(transparent)]
    InvalidPath(#[from] forge_types::PathError),
    /// A base mode name is not one of `head` or `worktree`.
    #[error(
        "unknown base `{0}`: expected `head` (the git HEAD commit) or `worktree` (the working tree)"
    )]
    UnknownBase(String),
    /// A staging strategy name is not known.
    #[error(
        "unknown staging strategy `{0}`: expected `auto`, `overlay`, `reflink`, `worktree` or `copy`"
    )]
    UnknownStrategy(String),
    /// A content hash is not 64 hexadecimal digits.
    #[error("invalid content hash `{0}`: expected 64 hexadecimal digits")]
    InvalidHash(String),
    /// A file-system operation failed (what was done, to which path, and why).
    #[error(transparent)]
    Io(#[from] forge_types::IoError),
    /// An external command (git, unshare, fuse-overlayfs, …) failed.
    #[error("`{command}` failed: {message}")]
    Command {
        /// The command line, for the user to re-run.
        command: String,
        /// Its exit status and error output.
        message: String,
    },
    /// `Head` mode, or the worktree strategy, needs a git repository with a commit.
    #[error("`{}` cannot be used as a git base: {reason}", path.display())]
    NotGit {
        /// The directory given as the repository.
        path: PathBuf,
        /// Why (not a repository, no commit yet, git missing).
        reason: String,
    },
    /// A blob is not in the store.
    #[error("blob {hash} is missing from the object store `{}`", store.display())]
    BlobMissing {
        /// The hash asked for.
        hash: ContentHash,
        /// The store directory.
        store: PathBuf,
    },
    /// A blob's content no longer matches its hash: the store was damaged.
    #[error("blob `{}` is corrupt: it should hash to {expected} but hashes to {actual}", path.display())]
    BlobCorrupt {
        /// The blob's file.
        path: PathBuf,
        /// The hash it is stored under.
        expected: ContentHash,
        /// The hash of what it holds.
        actual: ContentHash,
    },
    /// A staging strategy cannot run on this machine or for this snapshot.
    #[error("the {strategy} strategy is not available here: {reason}")]
    Unsupported {
        /// The strategy (`overlay`, `reflink`, `worktree`, `copy`).
        strategy: &'static str,
        /// Why, in words a user can act on.
        reason: String,
    },
    /// A workspace name is not usable as a directory name.
    #[error("invalid workspace name `{name}`: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A workspace or snapshot directory already exists.
    #[error("`{}` already exists", .0.display())]
    AlreadyExists(PathBuf),
    /// A change does not apply to the manifest or changeset it is applied to.
    #[error("change to `{path}` does not apply: {reason}")]
    ChangeMismatch {
        /// The path of the change.
        path: RepoPath,
        /// What the change expected and what was found.
        reason: String,
    },
    /// A file Forge wrote (manifest, snapshot or workspace record) cannot be read back.
    #[error("`{}` is not a valid {what}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What it should be (`snapshot manifest`, `workspace record`, …).
        what: &'static str,
        /// The parse error.
        reason: String,
    },
}

impl StagingError {
    /// An [`StagingError::Io`] error for `op` on `path`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io(forge_types::IoError::new(op, path, source))
    }
}

/// `.ctx(op, path)` on I/O results: the one helper of `forge-types`, whose [`forge_types::IoError`]
/// `?` converts into this crate's error.
pub(crate) use forge_types::IoContext;
