//! A run's state as the MCP tools and resources return it: folded from the run's journal (the
//! source of truth `forge status` reads too), in a shape with a JSON schema.

use forge_events::{RunId, RunState};
use forge_exec::store::RunStore;
use schemars::JsonSchema;
use serde::Serialize;

use super::ToolError;
use crate::config::Context;
use crate::render::summary;
use crate::term::Style;

/// Where a run's process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Liveness {
    /// Its process is at work.
    Running,
    /// It ended (succeeded, failed or cancelled).
    Finished,
    /// Its process is gone before the end: `forge resume <run>` goes on with it.
    Interrupted,
}

/// One task of a run.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct TaskStatus {
    /// The task's id.
    pub(crate) id: String,
    /// `queued`, `waiting_locks`, `running`, `retrying`, `succeeded`, `failed`, `timed_out`, `cancelled` or
    /// `skipped`.
    pub(crate) status: String,
    /// The current (or last) attempt; 0 before the first.
    pub(crate) attempt: u32,
    /// The agent of the current attempt.
    pub(crate) agent: Option<String>,
    /// What it is doing: its last progress report or output line.
    pub(crate) activity: Option<String>,
    /// Why it failed or was skipped.
    pub(crate) reason: Option<String>,
    /// Tasks it waits on for locks.
    pub(crate) blocked_by: Vec<String>,
    /// Input tokens its agent reported.
    pub(crate) tokens_in: u64,
    /// Output tokens its agent reported.
    pub(crate) tokens_out: u64,
    /// Cost its agent reported, in US dollars.
    pub(crate) cost_usd: Option<f64>,
    /// Files its last finished attempt changed.
    pub(crate) files_changed: Vec<String>,
}

/// A merge conflict.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct ConflictStatus {
    /// The path.
    pub(crate) path: String,
    /// The tasks whose changes clash.
    pub(crate) tasks: Vec<String>,
    /// The merge strategy that was tried.
    pub(crate) strategy: String,
    /// Whether it was resolved.
    pub(crate) resolved: bool,
}

/// A gate command.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct GateStatus {
    /// The command.
    pub(crate) command: String,
    /// Whether it passed (`null` while it runs).
    pub(crate) passed: Option<bool>,
    /// Its exit code.
    pub(crate) exit_code: Option<i32>,
}

/// Where the run's result was applied.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct AppliedStatus {
    /// `working_tree` or `branch`.
    pub(crate) target: String,
    /// The files written.
    pub(crate) files: Vec<String>,
    /// Files left as the user had them because their own edits clash with the run's.
    pub(crate) conflicts: Vec<String>,
    /// The branch, for a branch apply.
    pub(crate) branch: Option<String>,
    /// The commit on that branch.
    pub(crate) commit: Option<String>,
    /// The tasks whose results were applied (empty: all).
    pub(crate) tasks: Vec<String>,
}

/// A run's state.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct RunStatus {
    /// The run's id.
    pub(crate) run: String,
    /// The plan's name.
    pub(crate) plan: Option<String>,
    /// pending, running, gating, succeeded, failed or cancelled.
    pub(crate) phase: String,
    /// Whether its process is at work, finished, or gone before the end (resumable).
    pub(crate) liveness: Liveness,
    /// What `forge status` exits with: the finished run's code (0 success, 1 tasks failed,
    /// 3 merge conflicts, 4 gate failed, 130 interrupted), 0 while it runs.
    pub(crate) exit_code: u8,
    /// The run's summary in one line: conflicts, gate, tasks.
    pub(crate) summary: String,
    /// Tasks done over all tasks, from 0.0 to 1.0.
    pub(crate) progress: f64,
    /// How many tasks the plan has.
    pub(crate) total_tasks: u32,
    /// How many of them are done (finished, not cancelled).
    pub(crate) done_tasks: u32,
    /// The tasks, in plan order.
    pub(crate) tasks: Vec<TaskStatus>,
    /// Merge conflicts.
    pub(crate) conflicts: Vec<ConflictStatus>,
    /// Gate commands and their results.
    pub(crate) gate: Vec<GateStatus>,
    /// Where the result was applied, once it was.
    pub(crate) applied: Option<AppliedStatus>,
    /// Seq of the last event of its journal (grows as the run goes).
    pub(crate) last_seq: u64,
}

/// A serde enum's name (`TaskPhase::TimedOut` → `timed_out`).
fn name_of(value: &impl Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The run `given` (an id or a unique prefix; the latest when `None`), as `forge status`
/// resolves it.
pub(crate) fn resolve(ctx: &Context, given: Option<&str>) -> Result<RunId, ToolError> {
    crate::runs::resolve_run(ctx, given).map_err(ToolError::from)
}

/// The state of `run`, folded from its journal.
pub(crate) fn read(ctx: &Context, run: &RunId) -> Result<RunStatus, ToolError> {
    let store = RunStore::new(&ctx.repo);
    let state = RunState::from_journal(store.journal(run))
        .map_err(|e| ToolError::from(crate::error::CliError::from(e)))?;
    let liveness = if state.phase.is_finished() {
        Liveness::Finished
    } else if store.owner(run).is_some_and(|o| o.alive) {
        Liveness::Running
    } else {
        Liveness::Interrupted
    };
    Ok(from_state(run, &state, liveness))
}

fn from_state(run: &RunId, state: &RunState, liveness: Liveness) -> RunStatus {
    let exit_code = match liveness {
        Liveness::Finished => crate::runs::exit_of(state).code(),
        Liveness::Running => 0,
        Liveness::Interrupted => crate::error::Exit::Interrupted.code(),
    };
    let tasks = state
        .tasks
        .iter()
        .map(|t| TaskStatus {
            id: t.id.to_string(),
            status: name_of(&t.status),
            attempt: t.attempt,
            agent: t.agent.clone(),
            activity: t
                .last_progress
                .as_ref()
                .map(|p| p.message.clone())
                .filter(|m| !m.is_empty())
                .or_else(|| t.last_output.clone()),
            reason: t.reason.clone(),
            blocked_by: t.blocked_by.iter().map(ToString::to_string).collect(),
            tokens_in: t.usage.tokens_in,
            tokens_out: t.usage.tokens_out,
            cost_usd: t.usage.cost_usd,
            files_changed: t.files_changed.iter().map(ToString::to_string).collect(),
        })
        .collect();
    let counts = &state.counts;
    RunStatus {
        run: run.to_string(),
        plan: state.plan.as_ref().map(|p| p.name.clone()),
        phase: name_of(&state.phase),
        liveness,
        exit_code,
        summary: summary::line(&summary::items(state), Style::plain()),
        progress: state.progress,
        total_tasks: counts.total,
        done_tasks: counts.done(),
        tasks,
        conflicts: state
            .conflicts
            .iter()
            .map(|c| ConflictStatus {
                path: c.path.to_string(),
                tasks: c.tasks.iter().map(ToString::to_string).collect(),
                strategy: c.strategy.clone(),
                resolved: c.resolved,
            })
            .collect(),
        gate: state
            .gates
            .iter()
            .map(|g| GateStatus {
                command: g.command.clone(),
                passed: g.passed,
                exit_code: g.exit_code,
            })
            .collect(),
        applied: state.apply.as_ref().map(|a| AppliedStatus {
            target: a.target.clone(),
            files: a.files.clone(),
            conflicts: a.conflicts.clone(),
            branch: a.branch.clone(),
            commit: a.commit.clone(),
            tasks: a.tasks.clone(),
        }),
        last_seq: state.last_seq,
    }
}

/// One run of the repository, as the `forge://runs` resource lists it.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct RunListing {
    /// The run's id.
    pub(crate) id: String,
    /// The plan's name.
    pub(crate) plan: Option<String>,
    /// How many tasks its plan has.
    pub(crate) tasks: Option<u32>,
    /// When it started (RFC 3339).
    pub(crate) started_at: Option<String>,
    /// How it ended (`succeeded`, `failed`, `cancelled`), `null` while it has not.
    pub(crate) status: Option<String>,
}

/// The runs of the repository, most recent first.
pub(crate) fn list(ctx: &Context) -> Result<Vec<RunListing>, ToolError> {
    let store = RunStore::new(&ctx.repo);
    let runs = forge_events::list_runs(&store.runs_dir())
        .map_err(|e| ToolError::from(crate::error::CliError::from(e)))?;
    Ok(runs
        .into_iter()
        .map(|r| RunListing {
            id: r.id.to_string(),
            plan: r.plan,
            tasks: r.tasks,
            started_at: r.started_at.map(|t| t.to_string()),
            status: r.status.map(|s| name_of(&s)),
        })
        .collect())
}
