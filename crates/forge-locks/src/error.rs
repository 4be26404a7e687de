/// Errors of the lock manager.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockError {
    /// A claim pattern is not an acceptable repo-relative glob.
    #[error("invalid claim pattern `{pattern}`: {reason}")]
    InvalidPattern {
        /// The pattern as written.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
}
