//! Repository paths live in `forge-types`, below every crate that names them.

pub use forge_types::RepoPath;
