//! Forge's engine: plans, the DAG scheduler, agent processes and the `ExecutionManager`.
//!
//! A **plan** (`plan.toml`) lists tasks, each with an agent, a prompt, its dependencies (`after`)
//! and the files it `reads`, `writes` and `appends` to. The engine validates it, takes one base
//! snapshot of the repository, and runs ready tasks in critical-path order under a concurrency
//! limit. For each attempt it acquires the task's claims (`forge-locks`), stages an isolated
//! workspace (`forge-staging`), spawns the agent CLI in its own process group and parses its JSONL,
//! captures and persists the changeset, releases the locks, and hands the changes to the merge queue
//! (`forge-merge`). Then the gate runs and the result is applied. Every step is published as an event
//! (`forge-events`), and the journal of those events is what a crashed run resumes from.
//!
//! The scheduler is written against small traits so each part can be swapped in tests and by
//! library users. This crate is where the parts are wired together; `forge-cli` only renders.
//!
//! # What is here
//!
//! - [`HumanDuration`]: the durations plans are written in (`500ms`, `2s`, `30m`, `1h30m`).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use forge_exec::HumanDuration;
//!
//! let t: HumanDuration = "1h30m".parse()?;
//! assert_eq!(t.as_duration(), Duration::from_secs(5400));
//! assert_eq!(t.to_string(), "1h30m");
//! assert!("30 minutes".parse::<HumanDuration>().is_err());
//! # Ok::<(), forge_exec::ExecError>(())
//! ```

mod duration;
mod error;

pub use duration::HumanDuration;
pub use error::ExecError;
