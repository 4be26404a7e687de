//! The tools' parameters and results (their JSON schemas are derived from these types), and
//! plan validation with line and column.

use std::path::Path;

use forge_exec::plan::{Plan, PlanFormat};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ToolError;
use super::status::{AppliedStatus, RunStatus};
use crate::config::Context;

/// `forge_plan`'s parameters.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlanParams {
    /// What you want done, in words.
    pub(crate) request: String,
    /// Where to write the plan, relative to the repository's root (not written when absent).
    pub(crate) output: Option<String>,
    /// Overwrite `output` if it exists.
    #[serde(default)]
    pub(crate) force: bool,
    /// The planner agent profile (default: droid, or the `agent` of forge.toml).
    pub(crate) agent: Option<String>,
    /// The agent the plan's tasks use (default: the planner's).
    pub(crate) task_agent: Option<String>,
}

/// One task of a plan.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct PlanTask {
    /// The task's id.
    pub(crate) id: String,
    /// Its agent profile.
    pub(crate) agent: String,
    /// Globs it writes (exclusively).
    pub(crate) writes: Vec<String>,
    /// Globs it reads.
    pub(crate) reads: Vec<String>,
    /// Files it appends to (shared with other appenders).
    pub(crate) appends: Vec<String>,
    /// Tasks it runs after.
    pub(crate) after: Vec<String>,
}

impl PlanTask {
    /// The summary of a plan's task.
    pub(crate) fn of(task: &forge_exec::Task) -> Self {
        let globs =
            |claims: &[forge_locks::Claim]| claims.iter().map(|c| c.pattern.to_string()).collect();
        Self {
            id: task.id.to_string(),
            agent: task.agent.clone(),
            writes: globs(&task.writes),
            reads: globs(&task.reads),
            appends: globs(&task.appends),
            after: task.after.iter().map(ToString::to_string).collect(),
        }
    }
}

/// `forge_plan`'s result.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct PlanResult {
    /// The plan's name.
    pub(crate) name: String,
    /// Where it was written (relative to the repository), when `output` was given.
    pub(crate) path: Option<String>,
    /// Its tasks.
    pub(crate) tasks: Vec<PlanTask>,
    /// The plan as TOML: give it to `forge_run` as `plan_text`, or the `path` as `plan`.
    pub(crate) plan: String,
    /// What `forge plan` printed (the task table).
    pub(crate) output: String,
}

/// `forge_validate`'s parameters.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ValidateParams {
    /// The plan's text.
    pub(crate) plan: String,
    /// `toml` (the default) or `json`.
    pub(crate) format: Option<String>,
}

/// One problem of a plan.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct PlanProblem {
    /// What is wrong.
    pub(crate) message: String,
    /// The line (1-based), when the problem is at a place in the text.
    pub(crate) line: Option<usize>,
    /// The column (1-based, in characters).
    pub(crate) column: Option<usize>,
    /// What is at that place.
    pub(crate) label: Option<String>,
    /// How to fix it.
    pub(crate) help: Option<String>,
}

/// `forge_validate`'s result.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct ValidateResult {
    /// Whether the plan is valid.
    pub(crate) valid: bool,
    /// Its name, when valid.
    pub(crate) name: Option<String>,
    /// Its tasks, when valid.
    pub(crate) tasks: Vec<PlanTask>,
    /// Its problems, in the order of the text.
    pub(crate) errors: Vec<PlanProblem>,
    /// The problems as `forge check` prints them (with the lines and carets).
    pub(crate) report: Option<String>,
}

/// Validates `text` as `forge run` loads a plan (with the agents of forge.toml).
pub(crate) fn validate(ctx: &Context, text: &str, json: bool) -> Result<ValidateResult, ToolError> {
    let opts = crate::plan_file::plan_options(ctx)?;
    let (format, name) = if json {
        (PlanFormat::Json, "plan.json")
    } else {
        (PlanFormat::Toml, "plan.toml")
    };
    Ok(match Plan::parse(text, Path::new(name), format, &opts) {
        Ok(plan) => ValidateResult {
            valid: true,
            name: Some(plan.name.clone()),
            tasks: plan.tasks.iter().map(PlanTask::of).collect(),
            errors: Vec::new(),
            report: None,
        },
        Err(err) => ValidateResult {
            valid: false,
            name: None,
            tasks: Vec::new(),
            errors: err
                .problems
                .iter()
                .map(|p| {
                    let at = match (&err.source, &p.span) {
                        (Some(src), Some(span)) => Some(src.line_col(span.start)),
                        _ => None,
                    };
                    PlanProblem {
                        message: p.message.clone(),
                        line: at.map(|a| a.0),
                        column: at.map(|a| a.1),
                        label: p.label.clone(),
                        help: p.help.clone(),
                    }
                })
                .collect(),
            report: Some(err.render()),
        },
    })
}

/// `forge_run`'s parameters.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunParams {
    /// A plan file, relative to the repository's root.
    pub(crate) plan: Option<String>,
    /// The plan itself, as TOML (instead of `plan`).
    pub(crate) plan_text: Option<String>,
    /// How many tasks run at once (overrides the plan's `concurrency`).
    #[schemars(range(min = 1, max = 10000))]
    pub(crate) jobs: Option<u32>,
}

/// `forge_run`'s result.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct RunStarted {
    /// The run's id: give it to `forge_wait`, `forge_status`, `forge_diff`, `forge_apply`.
    pub(crate) run: String,
    /// The plan file it runs (relative to the repository).
    pub(crate) plan: String,
    /// The process id of the run (`forge run`), which goes on in the background.
    pub(crate) pid: u32,
}

/// Parameters naming a run.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StatusParams {
    /// The run: its id or a unique prefix (default: the latest).
    pub(crate) run: Option<String>,
}

/// `forge_abort`'s parameters.
pub(crate) type AbortParams = StatusParams;

/// `forge_wait`'s parameters.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WaitParams {
    /// The run: its id or a unique prefix (default: the latest).
    pub(crate) run: Option<String>,
    /// How long to wait at most, in seconds (default 600, at most 3600).
    pub(crate) timeout_secs: Option<u64>,
}

/// `forge_wait`'s result.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct WaitResult {
    /// Whether the run ended (false: it was interrupted, or the wait timed out).
    pub(crate) finished: bool,
    /// Whether the wait ended because `timeout_secs` passed (the run goes on).
    pub(crate) timed_out: bool,
    /// The run's state.
    pub(crate) status: RunStatus,
}

/// `forge_logs`' parameters.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogsParams {
    /// The task.
    pub(crate) task: String,
    /// The run: its id or a unique prefix (default: the latest).
    pub(crate) run: Option<String>,
    /// The attempt (default: the latest).
    #[schemars(range(min = 1))]
    pub(crate) attempt: Option<u32>,
    /// At most this many bytes, from the end (default 65536).
    pub(crate) max_bytes: Option<usize>,
}

/// `forge_logs`' result.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct LogsResult {
    /// The run.
    pub(crate) run: String,
    /// The task.
    pub(crate) task: String,
    /// The transcript (its end, when `truncated`).
    pub(crate) text: String,
    /// Whether the beginning was cut.
    pub(crate) truncated: bool,
    /// The transcript's whole size in bytes.
    pub(crate) total_bytes: usize,
}

/// `forge_diff`'s parameters.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiffParams {
    /// The run: its id or a unique prefix (default: the latest).
    pub(crate) run: Option<String>,
    /// Only what these tasks changed (default: the whole run against its base).
    #[serde(default)]
    pub(crate) tasks: Vec<String>,
    /// Only these paths (files or directories, relative to the repository's root).
    #[serde(default)]
    pub(crate) paths: Vec<String>,
}

/// `forge_diff`'s result.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct DiffResult {
    /// The run.
    pub(crate) run: String,
    /// The tasks asked for (empty: the whole run).
    pub(crate) tasks: Vec<String>,
    /// The files and their hunks, as `forge diff --json` prints them.
    pub(crate) diff: serde_json::Value,
    /// The unified diff, as `forge diff` prints it.
    pub(crate) patch: String,
}

/// `forge_apply`'s parameters.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApplyParams {
    /// The run: its id or a unique prefix (default: the latest).
    pub(crate) run: Option<String>,
    /// Only these tasks, and the tasks they depend on (default: all).
    #[serde(default)]
    pub(crate) tasks: Vec<String>,
    /// Commit to the branch `forge/<run>` instead of the working tree.
    #[serde(default)]
    pub(crate) branch: bool,
    /// Where the user's own edits clash with the run's: `keep` (the default), `markers`,
    /// `ours`, `theirs`, or `<how>=<path>` for one path.
    #[serde(default)]
    pub(crate) conflicts: Vec<String>,
}

/// `forge_apply`'s result.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct ApplyResult {
    /// The run.
    pub(crate) run: String,
    /// `forge apply`'s exit code: 0, or 3 when clashes with the user's edits were left.
    pub(crate) exit_code: i32,
    /// What `forge apply` printed.
    pub(crate) output: String,
    /// Where the result went: files, branch, commit.
    pub(crate) applied: Option<AppliedStatus>,
    /// The run's summary.
    pub(crate) summary: String,
}

/// `forge_abort`'s result.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct AbortResult {
    /// The run.
    pub(crate) run: String,
    /// What `forge abort` printed.
    pub(crate) output: String,
    /// The run's state after it stopped.
    pub(crate) status: RunStatus,
}

/// `forge_retry`'s parameters.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetryParams {
    /// The task to run again.
    pub(crate) task: String,
    /// The run: its id or a unique prefix (default: the latest).
    pub(crate) run: Option<String>,
    /// Feedback: instructions added to the task's prompt (its agent continues its own
    /// session where its CLI can).
    pub(crate) prompt: Option<String>,
}

/// `forge_retry`'s result.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct RetryStarted {
    /// The run (the same run, going on): give it to `forge_wait`.
    pub(crate) run: String,
    /// The task run again.
    pub(crate) task: String,
    /// The process id of `forge retry`, which goes on in the background.
    pub(crate) pid: u32,
}
