/// Errors of the merge crate.
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
}
