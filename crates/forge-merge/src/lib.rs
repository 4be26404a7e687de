//! Forge's merge queue: integrate each agent's changes as it finishes, resolve what can be
//! resolved, prove the result with the project's own commands, then apply it atomically.
//!
//! Every task's [`ChangeSet`](forge_staging::ChangeSet) comes with the snapshot the task started
//! from, which is its merge base. A path changed only by that task since it started is simply
//! taken; a path that others changed meanwhile (possible for `appends` claims, for claim violations
//! the policy lets through, or when locking is off) is merged three ways, line by line for text,
//! with the same result as `git merge-file`. What cannot be merged becomes a [`Conflict`], settled
//! by the path's [`MergeStrategy`]. The integrated tree then passes the **gate** (build/test
//! commands) before it is **applied** to the user's working tree, against the run's base, so the
//! user's own edits made during the run are never overwritten silently.
//!
//! # What is here
//!
//! - [`MergeStrategy`]: how conflicts on a path are settled (`[merge]` in a plan).
//! - [`Conflict`] and [`ConflictKind`]: what could not be merged, where, and between which tasks.
//!
//! # Example
//!
//! ```
//! use forge_merge::MergeStrategy;
//!
//! let s: MergeStrategy = "driver:./scripts/merge-lock.sh %O %A %B".parse()?;
//! assert_eq!(s, MergeStrategy::Driver("./scripts/merge-lock.sh %O %A %B".into()));
//! assert_eq!("union".parse::<MergeStrategy>()?, MergeStrategy::Union);
//! assert!("newest".parse::<MergeStrategy>().is_err());
//! # Ok::<(), forge_merge::MergeError>(())
//! ```

mod conflict;
mod error;
mod strategy;

pub use conflict::{Conflict, ConflictKind};
pub use error::MergeError;
pub use strategy::MergeStrategy;
