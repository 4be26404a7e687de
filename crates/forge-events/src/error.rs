/// Errors of the events crate.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventsError {
    /// An identifier (run or task id) is not acceptable.
    #[error("invalid {what} `{id}`: {reason}")]
    InvalidId {
        /// `"task id"` or `"run id"`.
        what: &'static str,
        /// The offending input, as given.
        id: String,
        /// Why it was refused.
        reason: &'static str,
    },
}
