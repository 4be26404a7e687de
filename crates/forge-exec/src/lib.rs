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
//! - [`plan`]: the plan file ([`Plan::load`], schema in `docs/plan.md`), validated all at once
//!   with `file:line:col` diagnostics ([`PlanError`]), and [`Plan::serialize_conflicts`].
//! - [`sched`]: the DAG [`Scheduler`], generic over a [`TaskRunner`]: critical-path order,
//!   concurrency and pools, retries with backoff, timeouts, skip propagation, `fail_fast`, and
//!   cancellation through a [`CancelHandle`] (first cancel: graceful; second: kill).
//! - [`process`]: the [`ProcessRunner`], which spawns each attempt in its own process group,
//!   logs and parses its output line by line, and stops whole process trees: the one
//!   process-group runner, behind agents, per-task checks, the gate and the planner.
//! - [`gate`]: the gate's commands run on the integrated tree through that runner, contained
//!   like attempts ([`gate::GateRunner`]); [`driver`]: merge drivers through it too
//!   ([`driver::DriverRunner`]); both set their commands up through one
//!   [`contained::ContainedRunner`] (run id, containment, limits, time limit, cancel).
//! - Agents come from [`forge_agents`] (re-exported): their profiles (argv templates for droid,
//!   claude, codex, gemini, opencode, amp, aider, shell, sim; more in `forge.toml`), the parsers
//!   that turn their output into progress, usage, errors and a result, and the simulated agent.
//! - [`ExecutionManager`]: the whole pipeline (locks, staging, agents, capture, merge queue, gate,
//!   apply) with crash resume; [`store`] is the layout of `.forge/` it keeps runs in.
//! - Recovery: [`ExecutionManagerBuilder::retry`] runs one task of a finished run again with a
//!   [`RetryRequest`] (feedback added to its prompt, the agent's session continued where its
//!   profile has `resume`), then its [`dependents`], keeping every other task's result;
//!   per-task `check` commands feed failures back to the agent before integration; a red gate
//!   is bisected ([`GateBisect`]) and its culprit sent back (`[gate] fix_rounds`).
//! - [`HumanDuration`]: the durations plans are written in (`500ms`, `2s`, `30m`, `1h30m`).
//!
//! # Example: a plan run by the shell runner
//!
//! ```
//! use std::path::Path;
//! use std::sync::Arc;
//! use forge_events::{RunId, TaskStatus, VecSink};
//! use forge_exec::plan::{Plan, PlanFormat, PlanOptions};
//! use forge_exec::{CancelHandle, ProcessRunner, Scheduler, SchedulerOptions};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let plan = Plan::parse(r#"
//!     [defaults]
//!     agent = "shell"
//!     [[task]]
//!     id = "build"
//!     prompt = "echo building"
//!     [[task]]
//!     id = "test"
//!     prompt = "exit 3"
//!     after = ["build"]
//!     [[task]]
//!     id = "deploy"
//!     prompt = "echo never"
//!     after = ["test"]
//! "#, Path::new("plan.toml"), PlanFormat::Toml, &PlanOptions::default())?;
//!
//! let dir = tempfile::tempdir()?;
//! let run = RunId::new("example")?;
//! let runner = ProcessRunner::shell(run.clone(), dir.path().into(), dir.path().join("logs"));
//! let events = Arc::new(VecSink::new(run));
//! let report = Scheduler::new(&plan, &runner, events.clone(), SchedulerOptions::default())
//!     .run(&CancelHandle::new())
//!     .await;
//!
//! let status: Vec<TaskStatus> = report.tasks.iter().map(|t| t.status).collect();
//! assert_eq!(status, [TaskStatus::Succeeded, TaskStatus::Failed, TaskStatus::Skipped]);
//! assert_eq!(report.tasks[2].reason.as_deref(), Some("skipped because `test` did not succeed"));
//! assert!(events.types().iter().any(|t| t == "task_finished"));
//!
//! // A broken plan: every problem at once, with its position.
//! let err = Plan::parse("[[task]]\nid = \"a\"\nagent = \"clade\"\nprompt = \"\"\n",
//!     Path::new("plan.toml"), PlanFormat::Toml, &PlanOptions::default()).unwrap_err();
//! assert_eq!(err.short(), [
//!     "plan.toml:3:9: task `a` uses unknown agent `clade`",
//!     "plan.toml:4:10: task `a` has an empty prompt",
//! ]);
//! # Ok(())
//! # }
//! ```

pub mod contained;
pub mod driver;
mod error;
pub mod gate;
pub mod manager;
pub mod plan;
pub mod process;
pub mod runner;
pub mod sched;
pub mod store;

pub use error::ExecError;
pub use forge_agents::{self, HumanDuration};
pub use manager::{
    ApplyMode, ApplyRequest, ApplySummary, DiffSection, ExecutionManager, ExecutionManagerBuilder,
    GateBisect, ModelPrice, Prices, RetryOrigin, RetryRequest, RunReport, TaskSelection, apply_run,
    apply_run_with, dependents, integrated_diff, recover_abandoned_applies, run_diff, run_summary,
};
pub use manager::{Candidate, ConflictRerun, prepare_agent_reruns, run_candidates};
pub use plan::{Budget, Plan, PlanError, PlanOptions, Task};
pub use process::{CommandSpec, ProcessOptions, ProcessRunner};
pub use runner::{RayConfig, RunnerConfig};
pub use sched::{
    AttemptContext, CancelHandle, PriorTask, ScheduleReport, Scheduler, SchedulerOptions,
    TaskOutcome, TaskReport, TaskRunner,
};
