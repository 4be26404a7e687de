/// Errors of the staging crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StagingError {
    /// A path is not an acceptable repo-relative path.
    #[error("invalid path `{path}`: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A base mode name is not one of `head` or `worktree`.
    #[error(
        "unknown base `{0}`: expected `head` (the git HEAD commit) or `worktree` (the working tree)"
    )]
    UnknownBase(String),
    /// A content hash is not 64 hexadecimal digits.
    #[error("invalid content hash `{0}`: expected 64 hexadecimal digits")]
    InvalidHash(String),
}
