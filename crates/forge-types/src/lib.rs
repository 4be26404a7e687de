//! Forge's shared vocabulary: one type per concept, used by every crate that names it.
//!
//! The crates below forge-exec (events, locks, staging, merge) can each be used alone, yet they
//! talk about the same things: a task, a path in the repository, how a claim holds its paths,
//! a file operation that failed. Defined once here, below all of them, those values pass from
//! crate to crate as they are, never converted to strings and parsed back. Each crate
//! re-exports the types it uses, so `forge_events::TaskId` and `forge_staging::RepoPath` keep
//! working.
//!
//! - [`TaskId`], [`RunId`]: validated identifiers, safe as path segments ([`IdError`]).
//! - [`RepoPath`]: a normalized repo-relative path that cannot leave the repository
//!   ([`PathError`]).
//! - [`LockMode`]: `read`, `write`, `append`; its plan key (`reads`, …) through
//!   [`LockMode::plan_key`] and the [`plan_key`] serde adapter.
//! - [`IoError`] and [`IoContext`]: a failed file operation with its path.
//!
//! # Example
//!
//! ```
//! use forge_types::{LockMode, RepoPath, TaskId};
//!
//! let task = TaskId::new("backend")?;
//! let path = RepoPath::new("./src//lib.rs")?;
//! assert_eq!((task.as_str(), path.as_str()), ("backend", "src/lib.rs"));
//! assert!(RepoPath::new("../outside").is_err());
//! assert_eq!(LockMode::from_plan_key("writes"), Some(LockMode::Write));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod ids;
mod io;
mod mode;
mod path;

pub use ids::{IdError, RunId, TaskId};
pub use io::{IoContext, IoError};
pub use mode::{LockMode, UnknownMode, plan_key};
pub use path::{PathError, RepoPath};
