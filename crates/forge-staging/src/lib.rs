//! Isolated workspaces for agents, and exact capture of what they changed.
//!
//! Each attempt of a Forge task runs its agent in a workspace of its own, so agents never see each
//! other's half-written files. A run first takes one **base snapshot** of the repository (git `HEAD`,
//! or the working tree with untracked, not-ignored files). A task's workspace starts from a
//! **snapshot**: the base plus a delta of what has been integrated so far. When the agent is done,
//! the workspace reports its **changeset** — every file added, modified or deleted relative to that
//! snapshot — which `forge-merge` then integrates.
//!
//! Workspaces are made by a `Stager` strategy: overlayfs (O(1), the default on Linux), reflink
//! copies, a git worktree, or a plain copy. This crate depends on no other Forge crate.
//!
//! # What is here
//!
//! - [`RepoPath`]: a validated, normalized repo-relative path, the key of every manifest and changeset.
//! - [`BaseMode`]: which base a run starts from.
//! - [`ContentHash`], [`Entry`]: what a path holds (a file with its hash, size and exec bit, or a
//!   symlink).
//! - [`Change`], [`ChangeSet`]: what an agent did to a snapshot.
//!
//! # Example
//!
//! ```
//! use forge_staging::{Change, ChangeSet, ContentHash, Entry, RepoPath};
//!
//! let path = RepoPath::new("./src//lib.rs")?;
//! assert_eq!(path.as_str(), "src/lib.rs");
//! assert!(RepoPath::new("../etc/passwd").is_err());
//!
//! let mut changes = ChangeSet::default();
//! let new = Entry::file(ContentHash::of(b"fn main() {}\n"), 13, false);
//! changes.insert(path.clone(), Change::Added(new));
//! assert_eq!(changes.len(), 1);
//! assert_eq!(changes.get(&path).and_then(Change::after), Some(&new));
//! # Ok::<(), forge_staging::StagingError>(())
//! ```

mod base;
mod changes;
mod entry;
mod error;
mod path;

pub use base::BaseMode;
pub use changes::{Change, ChangeSet};
pub use entry::{ContentHash, Entry};
pub use error::StagingError;
pub use path::RepoPath;
