/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// A duration is not written as a sequence of `<number><unit>` with units ms, s, m, h, d.
    #[error("invalid duration `{input}`: {reason} (write e.g. `500ms`, `2s`, `30m`, `1h30m`)")]
    InvalidDuration {
        /// The text as written.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}
