//! Forge's typed event stream.
//!
//! Everything Forge does during a run — a task queued, waiting on locks, started, printing progress,
//! finished; a merge integrated or in conflict; the gate; the apply — is reported as one typed
//! **event**. Events are the only way the engine talks to the outside: the live terminal table,
//! `forge run --json`, `forge status`, the SSE server and the web dashboard are all readers of the
//! same stream, and the run's **journal** (`.forge/runs/<run>/events.jsonl`) is its durable copy and
//! the source of truth for crash resume.
//!
//! This crate depends on no other Forge crate: events carry plain data (ids, paths as strings,
//! numbers), so any tool can read a journal without linking the engine.
//!
//! # What is here
//!
//! - [`RunId`] and [`TaskId`]: the validated identifiers every event is keyed by.
//! - [`TaskStatus`]: how a task attempt ended, as it appears in events and in `forge status`.
//!
//! # Example
//!
//! ```
//! use forge_events::{TaskId, TaskStatus};
//!
//! let id: TaskId = "backend".parse()?;
//! assert_eq!(id.as_str(), "backend");
//! assert!("../etc".parse::<TaskId>().is_err());
//! assert!(TaskStatus::TimedOut.is_failure());
//! assert_eq!(serde_json::to_string(&TaskStatus::TimedOut)?, "\"timed_out\"");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod ids;
mod status;

pub use error::EventsError;
pub use ids::{RunId, TaskId};
pub use status::TaskStatus;
