//! The run-state fold: the current view of a run, computed from its events alone.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::journal::replay;
use crate::{
    ClaimRecord, Event, EventKind, EventsError, RepoPath, RunId, RunStatus, RunSummary, TaskId,
    TaskStatus,
};

/// Where a run is, as folded from its events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunPhase {
    /// No `run_started` seen yet.
    #[default]
    Pending,
    /// Tasks are being scheduled and run.
    Running,
    /// Gate commands run on the integrated result (from the first `gate_started` until the run
    /// finishes: the apply follows the gate).
    Gating,
    /// Finished: every task succeeded, the gate passed, the result was applied.
    Succeeded,
    /// Finished with a failure.
    Failed,
    /// Finished by cancellation.
    Cancelled,
}

impl RunPhase {
    /// Whether the run has finished.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

impl From<RunStatus> for RunPhase {
    fn from(status: RunStatus) -> Self {
        match status {
            RunStatus::Succeeded => Self::Succeeded,
            RunStatus::Failed => Self::Failed,
            RunStatus::Cancelled => Self::Cancelled,
        }
    }
}

/// Where a task is, as folded from its events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskPhase {
    /// Waiting for its dependencies (or not yet reached by the scheduler).
    #[default]
    Queued,
    /// Ready, waiting for locks held by other tasks.
    WaitingLocks,
    /// An attempt is running.
    Running,
    /// An attempt failed; another is scheduled.
    Retrying,
    /// Finished successfully.
    Succeeded,
    /// Finished with an error.
    Failed,
    /// Its last attempt timed out.
    TimedOut,
    /// Cancelled.
    Cancelled,
    /// Skipped because a dependency did not succeed.
    Skipped,
}

impl TaskPhase {
    /// Whether the task has finished (any outcome).
    pub fn is_finished(self) -> bool {
        self.status().is_some()
    }

    /// The outcome, for a finished task.
    pub fn status(self) -> Option<TaskStatus> {
        match self {
            Self::Succeeded => Some(TaskStatus::Succeeded),
            Self::Failed => Some(TaskStatus::Failed),
            Self::TimedOut => Some(TaskStatus::TimedOut),
            Self::Cancelled => Some(TaskStatus::Cancelled),
            Self::Skipped => Some(TaskStatus::Skipped),
            Self::Queued | Self::WaitingLocks | Self::Running | Self::Retrying => None,
        }
    }
}

impl From<TaskStatus> for TaskPhase {
    fn from(status: TaskStatus) -> Self {
        match status {
            TaskStatus::Succeeded => Self::Succeeded,
            TaskStatus::Failed => Self::Failed,
            TaskStatus::TimedOut => Self::TimedOut,
            TaskStatus::Cancelled => Self::Cancelled,
            TaskStatus::Skipped => Self::Skipped,
        }
    }
}

/// The plan a run executes, from `run_started`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanInfo {
    /// The plan's name.
    pub name: String,
    /// Hash of the plan file.
    pub hash: String,
    /// Number of tasks in the plan.
    pub tasks: u32,
    /// Concurrency limit.
    pub concurrency: u32,
    /// `head` or `worktree`.
    pub base: String,
}

/// The last progress report of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// What the agent said or did.
    pub message: String,
    /// The tool it used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// Files touched by that step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// When it was reported.
    pub at: Timestamp,
}

/// Tokens and cost used by a task, summed over its usage reports (all attempts).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Input tokens.
    pub tokens_in: u64,
    /// Output tokens.
    pub tokens_out: u64,
    /// Cost in US dollars, if any report carried one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

impl Usage {
    fn add(&mut self, tokens_in: u64, tokens_out: u64, cost_usd: Option<f64>) {
        self.tokens_in = self.tokens_in.saturating_add(tokens_in);
        self.tokens_out = self.tokens_out.saturating_add(tokens_out);
        if let Some(cost) = cost_usd {
            *self.cost_usd.get_or_insert(0.0) += cost;
        }
    }
}

/// The last retry scheduled for a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retry {
    /// The attempt that will run.
    pub attempt: u32,
    /// Delay before it, in milliseconds.
    pub delay_ms: u64,
    /// Why the previous attempt failed.
    pub reason: String,
    /// When the retry was scheduled.
    pub at: Timestamp,
}

/// Everything known about one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskState {
    /// The task.
    pub id: TaskId,
    /// Where it is.
    pub status: TaskPhase,
    /// Tasks it runs after.
    #[serde(default)]
    pub after: Vec<TaskId>,
    /// The plan's estimate of its duration, in milliseconds.
    #[serde(default)]
    pub estimate_ms: Option<u64>,
    /// Current (or last) attempt number; 0 before the first start.
    pub attempt: u32,
    /// Agent profile of the current attempt.
    #[serde(default)]
    pub agent: Option<String>,
    /// Workspace directory of the current attempt.
    #[serde(default)]
    pub workspace: Option<String>,
    /// Staging strategy of the current attempt.
    #[serde(default)]
    pub strategy: Option<String>,
    /// Claims it asked for (from its last lock wait).
    #[serde(default)]
    pub claims: Vec<ClaimRecord>,
    /// Tasks it waits on for locks, while waiting.
    #[serde(default)]
    pub blocked_by: Vec<TaskId>,
    /// When it was queued.
    #[serde(default)]
    pub queued_at: Option<Timestamp>,
    /// When its first attempt started, moved later by the time the run was stopped while the
    /// task was under way (interrupted, then resumed): `finished_at - started_at` is the time
    /// it ran.
    #[serde(default)]
    pub started_at: Option<Timestamp>,
    /// When its current attempt started.
    #[serde(default)]
    pub attempt_started_at: Option<Timestamp>,
    /// Attempts that were interrupted (the run was cancelled or its process died) rather than
    /// ended: they do not count against the task's retries.
    #[serde(default)]
    pub interrupted: u32,
    /// When it finished (last attempt).
    #[serde(default)]
    pub finished_at: Option<Timestamp>,
    /// Wall time of the last finished attempt, in milliseconds.
    #[serde(default)]
    pub duration_ms: Option<u64>,
    /// Exit code of the last finished attempt.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Why the last attempt failed or the task was skipped, when it did not succeed.
    #[serde(default)]
    pub reason: Option<String>,
    /// The last progress report.
    #[serde(default)]
    pub last_progress: Option<Progress>,
    /// Progress reports received.
    #[serde(default)]
    pub progress_events: u64,
    /// The last output line relayed.
    #[serde(default)]
    pub last_output: Option<String>,
    /// Output lines relayed (producers rate-limit these; `output.log` has them all).
    #[serde(default)]
    pub output_lines: u64,
    /// Files its progress reports mentioned, sorted.
    #[serde(default)]
    pub files_touched: BTreeSet<String>,
    /// Files its last finished attempt changed.
    #[serde(default)]
    pub files_changed: Vec<RepoPath>,
    /// Tokens and cost.
    #[serde(default)]
    pub usage: Usage,
    /// The last retry scheduled.
    #[serde(default)]
    pub retry: Option<Retry>,
    /// Paths it changed outside its claims.
    #[serde(default)]
    pub violations: Vec<RepoPath>,
    /// Whether its changes were integrated.
    #[serde(default)]
    pub integrated: bool,
    /// The files of its changes that were integrated (fewer than `files_changed` when a merge
    /// conflict dropped some).
    #[serde(default)]
    pub integrated_files: Vec<RepoPath>,
    /// The agent's session id of each attempt that reported one: (attempt, session).
    #[serde(default)]
    pub sessions: Vec<(u32, String)>,
    /// The cluster node its current (or last) attempt runs on (`task_placed`); `None` for an
    /// attempt on this machine.
    #[serde(default)]
    pub node: Option<String>,
}

impl TaskState {
    /// Files it changed that are not in the integrated result (a merge conflict dropped them),
    /// once its changes were integrated; empty before.
    pub fn not_integrated(&self) -> Vec<&str> {
        if !self.integrated {
            return Vec::new();
        }
        self.files_changed
            .iter()
            .filter(|f| {
                !self
                    .integrated_files
                    .iter()
                    .any(|i| i.as_str() == f.as_str())
            })
            .map(RepoPath::as_str)
            .collect()
    }
}

impl TaskState {
    fn new(id: TaskId) -> Self {
        Self {
            id,
            status: TaskPhase::Queued,
            after: Vec::new(),
            estimate_ms: None,
            attempt: 0,
            agent: None,
            workspace: None,
            strategy: None,
            claims: Vec::new(),
            blocked_by: Vec::new(),
            queued_at: None,
            started_at: None,
            attempt_started_at: None,
            interrupted: 0,
            finished_at: None,
            duration_ms: None,
            exit_code: None,
            reason: None,
            last_progress: None,
            progress_events: 0,
            last_output: None,
            output_lines: 0,
            files_touched: BTreeSet::new(),
            files_changed: Vec::new(),
            usage: Usage::default(),
            retry: None,
            violations: Vec::new(),
            integrated: false,
            integrated_files: Vec::new(),
            sessions: Vec::new(),
            node: None,
        }
    }
}

/// A merge conflict met during the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictRecord {
    /// The path.
    pub path: RepoPath,
    /// The tasks whose changes met.
    pub tasks: Vec<TaskId>,
    /// The strategy applied.
    pub strategy: String,
    /// Whether it was resolved.
    pub resolved: bool,
    /// Seq of the `merge_conflict` event.
    pub seq: u64,
}

/// One gate command and its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateResult {
    /// The command line.
    pub command: String,
    /// `None` while running, then whether it passed.
    pub passed: Option<bool>,
    /// Exit code.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Wall time in milliseconds.
    #[serde(default)]
    pub duration_ms: Option<u64>,
    /// Tests passed, when parsed.
    #[serde(default)]
    pub tests_passed: Option<u64>,
    /// Tests failed, when parsed.
    #[serde(default)]
    pub tests_failed: Option<u64>,
    /// When it started.
    #[serde(default)]
    pub started_at: Option<Timestamp>,
}

/// A claim violation found during the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViolationRecord {
    /// The task, if the event named one.
    pub task: Option<TaskId>,
    /// The offending paths.
    pub paths: Vec<RepoPath>,
    /// What the policy did.
    pub policy: String,
}

/// A lock deadlock broken during the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadlockRecord {
    /// The tasks in the cycle.
    pub cycle: Vec<TaskId>,
    /// The task that gave up its wait.
    pub victim: TaskId,
}

/// The apply's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyRecord {
    /// `worktree`, `branch` or `both`.
    pub target: String,
    /// Files written.
    pub files: Vec<String>,
    /// Paths left in conflict with the user's edits.
    pub conflicts: Vec<String>,
    /// Branch committed to.
    pub branch: Option<String>,
    /// Commit made.
    pub commit: Option<String>,
    /// The tasks applied, when not all were (`forge apply --tasks`); empty for the whole run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<String>,
    /// When it finished.
    pub at: Timestamp,
}

impl ApplyRecord {
    /// The record of an `apply_finished` event (`None` for other kinds).
    fn of(kind: &EventKind, at: Timestamp) -> Option<Self> {
        let EventKind::ApplyFinished {
            target,
            files,
            conflicts,
            branch,
            commit,
            tasks,
        } = kind
        else {
            return None;
        };
        Some(Self {
            target: target.clone(),
            files: files.clone(),
            conflicts: conflicts.clone(),
            branch: branch.clone(),
            commit: commit.clone(),
            tasks: tasks.clone(),
            at,
        })
    }
}

/// How many tasks are in each phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCounts {
    /// Tasks in the plan (or seen, if more).
    pub total: u32,
    /// Queued.
    pub queued: u32,
    /// Waiting for locks.
    pub waiting_locks: u32,
    /// Running.
    pub running: u32,
    /// Retrying.
    pub retrying: u32,
    /// Succeeded.
    pub succeeded: u32,
    /// Failed.
    pub failed: u32,
    /// Timed out.
    pub timed_out: u32,
    /// Cancelled.
    pub cancelled: u32,
    /// Skipped.
    pub skipped: u32,
}

impl TaskCounts {
    fn slot(&mut self, phase: TaskPhase) -> &mut u32 {
        match phase {
            TaskPhase::Queued => &mut self.queued,
            TaskPhase::WaitingLocks => &mut self.waiting_locks,
            TaskPhase::Running => &mut self.running,
            TaskPhase::Retrying => &mut self.retrying,
            TaskPhase::Succeeded => &mut self.succeeded,
            TaskPhase::Failed => &mut self.failed,
            TaskPhase::TimedOut => &mut self.timed_out,
            TaskPhase::Cancelled => &mut self.cancelled,
            TaskPhase::Skipped => &mut self.skipped,
        }
    }

    /// Tasks that finished, whatever the outcome (cancelled ones included: they stopped).
    pub fn finished(&self) -> u32 {
        self.succeeded + self.failed + self.timed_out + self.cancelled + self.skipped
    }

    /// Tasks that are done for good: finished, but not cancelled (a cancelled task runs again
    /// when the run is resumed). This is what progress counts.
    pub fn done(&self) -> u32 {
        self.finished() - self.cancelled
    }

    /// Tasks that ended badly: failed or timed out (not skipped, not cancelled).
    pub fn failed_or_timed_out(&self) -> u32 {
        self.failed + self.timed_out
    }
}

/// The current view of a run: a pure fold of its events ([`RunState::apply`]).
///
/// `forge status`, the dashboard (served as JSON at `/api/runs/{id}`) and resume all read
/// this. Folding is incremental and order-only: folding a journal in any number of pieces —
/// serializing the state to JSON in between — gives the same state as folding it whole.
/// Events at or below [`RunState::last_seq`] are ignored, so overlapping replays are harmless.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunState {
    /// The run, once an event was folded.
    pub run: Option<RunId>,
    /// The plan, from `run_started`.
    pub plan: Option<PlanInfo>,
    /// The plan preview (tasks, lock analysis, estimates), from `plan_preview`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<crate::PlanPreview>,
    /// Where the run is.
    pub phase: RunPhase,
    /// When the run first started.
    pub started_at: Option<Timestamp>,
    /// How many times it was resumed (a `run_started` after the first).
    pub resumes: u32,
    /// When it finished.
    pub finished_at: Option<Timestamp>,
    /// Time of the last event folded.
    pub updated_at: Option<Timestamp>,
    /// Seq of the last event folded.
    pub last_seq: u64,
    /// Tasks in the order they were first seen (plan order, as `task_queued` comes first).
    pub tasks: Vec<TaskState>,
    /// Tasks per phase.
    pub counts: TaskCounts,
    /// Done tasks ([`TaskCounts::done`]: finished, not cancelled) over all tasks, from 0.0 to
    /// 1.0.
    pub progress: f64,
    /// Tasks whose changes were integrated, in order.
    pub integrated: Vec<TaskId>,
    /// Merge conflicts, in order.
    pub conflicts: Vec<ConflictRecord>,
    /// Gate commands, in order.
    pub gates: Vec<GateResult>,
    /// Claim violations, in order.
    pub violations: Vec<ViolationRecord>,
    /// Lock deadlocks broken, in order.
    pub deadlocks: Vec<DeadlockRecord>,
    /// The apply's result.
    pub apply: Option<ApplyRecord>,
    /// The totals from `run_finished`.
    pub summary: Option<RunSummary>,
    /// Events of types this version does not know.
    pub unknown_events: u64,
    /// The gate bisect, when the gate failed and Forge looked for the task that broke it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bisect: Option<crate::BisectRecord>,
    /// Tokens and cost of the whole run (every task's usage reports summed).
    #[serde(default)]
    pub usage: Usage,
    /// Task id -> index in `tasks` (rebuilt after deserializing).
    #[serde(skip)]
    index: HashMap<TaskId, usize>,
}

impl PartialEq for RunState {
    fn eq(&self, other: &Self) -> bool {
        // Everything but the lookup index, which is derived from `tasks`.
        self.run == other.run
            && self.plan == other.plan
            && self.preview == other.preview
            && self.phase == other.phase
            && self.started_at == other.started_at
            && self.resumes == other.resumes
            && self.finished_at == other.finished_at
            && self.updated_at == other.updated_at
            && self.last_seq == other.last_seq
            && self.tasks == other.tasks
            && self.counts == other.counts
            && self.progress.to_bits() == other.progress.to_bits()
            && self.integrated == other.integrated
            && self.conflicts == other.conflicts
            && self.gates == other.gates
            && self.violations == other.violations
            && self.deadlocks == other.deadlocks
            && self.apply == other.apply
            && self.summary == other.summary
            && self.unknown_events == other.unknown_events
            && self.bisect == other.bisect
            && self.usage == other.usage
    }
}

impl RunState {
    /// An empty state (no events folded).
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds `events` into a new state.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut state = Self::new();
        for event in events {
            state.apply(event);
        }
        state
    }

    /// Folds the journal at `path` (see [`crate::replay`]).
    pub fn from_journal(path: impl AsRef<Path>) -> Result<Self, EventsError> {
        let mut state = Self::new();
        for event in replay(path, 0)? {
            state.apply(&event?);
        }
        Ok(state)
    }

    /// A resume at `resumed` of a run whose last event was at `stopped`: tasks that were under
    /// way (not ended for good) did not run in between, so their start moves later by the gap;
    /// an attempt that was running then was interrupted.
    fn exclude_stopped_time(&mut self, stopped: Timestamp, resumed: Timestamp) {
        let gap = resumed.duration_since(stopped);
        if gap.is_negative() {
            return;
        }
        for t in &mut self.tasks {
            let under_way = match t.status {
                TaskPhase::Cancelled => t.attempt > 0,
                TaskPhase::Running | TaskPhase::WaitingLocks | TaskPhase::Retrying => true,
                _ => false,
            };
            if !under_way {
                continue;
            }
            // Its process died with the run's (no `task_finished` was written).
            if t.status == TaskPhase::Running {
                t.interrupted += 1;
            }
            if let Some(start) = t.started_at {
                t.started_at = start.checked_add(gap).ok().or(Some(start));
            }
        }
    }

    /// The task `id`, if seen.
    pub fn task(&self, id: &str) -> Option<&TaskState> {
        match self.index.get(id) {
            Some(&i) => self.tasks.get(i),
            None => self.tasks.iter().find(|t| t.id.as_str() == id),
        }
    }

    /// Folds one event. Returns `false` (and changes nothing) for an event already folded
    /// (`seq <= last_seq`) or of another run.
    pub fn apply(&mut self, event: &Event) -> bool {
        if event.seq <= self.last_seq && self.run.is_some() {
            return false;
        }
        match &self.run {
            Some(run) if *run != event.run => return false,
            Some(_) => {}
            None => self.run = Some(event.run.clone()),
        }
        self.last_seq = event.seq;
        if matches!(event.kind, EventKind::RunStarted { .. })
            && self.started_at.is_some()
            && let Some(stopped) = self.updated_at
        {
            self.exclude_stopped_time(stopped, event.ts);
        }
        self.updated_at = Some(event.ts);
        match &event.kind {
            EventKind::TaskQueued { .. }
            | EventKind::TaskWaitingLocks { .. }
            | EventKind::TaskStarted { .. }
            | EventKind::TaskProgress { .. }
            | EventKind::TaskOutput { .. }
            | EventKind::TaskUsage { .. }
            | EventKind::TaskSession { .. }
            | EventKind::TaskPlaced { .. }
            | EventKind::TaskRetrying { .. }
            | EventKind::TaskFinished { .. } => {
                if let Some(task) = &event.task {
                    self.apply_task(task, &event.kind, event.ts);
                }
                if let EventKind::TaskUsage {
                    tokens_in,
                    tokens_out,
                    cost_usd,
                } = &event.kind
                {
                    self.usage.add(*tokens_in, *tokens_out, *cost_usd);
                }
            }
            EventKind::TaskAdded { agent, after, .. } => {
                if let Some(task) = &event.task {
                    self.apply_added(task, agent, after, event.ts);
                }
            }
            EventKind::Unknown(_) => self.unknown_events += 1,
            _ => self.apply_run(event),
        }
        true
    }

    /// Run-level events (and merges and violations, which may name a task).
    fn apply_run(&mut self, event: &Event) {
        let ts = event.ts;
        match &event.kind {
            EventKind::RunStarted {
                plan,
                plan_hash,
                tasks,
                concurrency,
                base,
            } => {
                if self.started_at.is_some() {
                    self.resumes += 1;
                } else {
                    self.started_at = Some(ts);
                }
                self.plan = Some(PlanInfo {
                    name: plan.clone(),
                    hash: plan_hash.clone(),
                    tasks: *tasks,
                    concurrency: *concurrency,
                    base: base.clone(),
                });
                self.phase = RunPhase::Running;
                self.finished_at = None;
                self.recount_total();
            }
            EventKind::PlanPreview { preview } => self.preview = Some(preview.clone()),
            EventKind::RunFinished { status, summary } => {
                self.phase = (*status).into();
                self.finished_at = Some(ts);
                self.summary = Some(summary.clone());
            }
            EventKind::LockDeadlock { cycle, victim } => self.deadlocks.push(DeadlockRecord {
                cycle: cycle.clone(),
                victim: victim.clone(),
            }),
            EventKind::MergeConflict {
                path,
                tasks,
                strategy,
                resolved,
            } => self.conflicts.push(ConflictRecord {
                path: path.clone(),
                tasks: tasks.clone(),
                strategy: strategy.clone(),
                resolved: *resolved,
                seq: event.seq,
            }),
            EventKind::GateStarted { command } => {
                self.phase = RunPhase::Gating;
                // A command that ran before starts a new round (a resumed run, a fix round):
                // the list shows the latest round, once.
                if let Some(i) = self.gates.iter().position(|g| g.command == *command) {
                    self.gates.truncate(i);
                }
                self.gates.push(GateResult {
                    command: command.clone(),
                    passed: None,
                    exit_code: None,
                    duration_ms: None,
                    tests_passed: None,
                    tests_failed: None,
                    started_at: Some(ts),
                });
            }
            EventKind::GateFinished { .. } => self.apply_gate_finished(&event.kind),
            EventKind::GateBisectStarted { .. }
            | EventKind::GateBisectStep { .. }
            | EventKind::GateBisectFinished { .. } => {
                crate::BisectRecord::fold(&mut self.bisect, &event.kind);
            }
            EventKind::ApplyFinished { .. } => self.apply = ApplyRecord::of(&event.kind, ts),
            EventKind::ClaimViolation { paths, policy } => {
                self.violations.push(ViolationRecord {
                    task: event.task.clone(),
                    paths: paths.clone(),
                    policy: policy.clone(),
                });
                if let Some(task) = &event.task {
                    let i = self.task_index(task);
                    self.tasks[i].violations.extend(paths.iter().cloned());
                }
            }
            EventKind::MergeIntegrated { files } => {
                if let Some(task) = &event.task {
                    let i = self.task_index(task);
                    self.tasks[i].integrated = true;
                    self.tasks[i].integrated_files.clone_from(files);
                    self.integrated.push(task.clone());
                }
            }
            // Task-level kinds are handled by `apply_task`.
            _ => {}
        }
    }

    fn apply_gate_finished(&mut self, kind: &EventKind) {
        let EventKind::GateFinished {
            command,
            passed,
            exit_code,
            duration_ms,
            tests_passed,
            tests_failed,
        } = kind
        else {
            return;
        };
        let running = self
            .gates
            .iter_mut()
            .rev()
            .find(|g| g.passed.is_none() && g.command == *command);
        let gate = if let Some(gate) = running {
            gate
        } else {
            self.gates.push(GateResult {
                command: command.clone(),
                passed: None,
                exit_code: None,
                duration_ms: None,
                tests_passed: None,
                tests_failed: None,
                started_at: None,
            });
            let last = self.gates.len() - 1;
            &mut self.gates[last]
        };
        gate.passed = Some(*passed);
        gate.exit_code = *exit_code;
        gate.duration_ms = Some(*duration_ms);
        gate.tests_passed = *tests_passed;
        gate.tests_failed = *tests_failed;
    }

    /// Task-level events.
    fn apply_task(&mut self, task: &TaskId, kind: &EventKind, ts: Timestamp) {
        let i = self.task_index(task);
        let mut new_status = None;
        let t = &mut self.tasks[i];
        match kind {
            EventKind::TaskQueued { after, estimate_ms } => {
                t.after.clone_from(after);
                t.estimate_ms = *estimate_ms;
                t.queued_at.get_or_insert(ts);
                new_status = Some(TaskPhase::Queued);
            }
            EventKind::TaskWaitingLocks { claims, blocked_by } => {
                t.claims.clone_from(claims);
                t.blocked_by.clone_from(blocked_by);
                new_status = Some(TaskPhase::WaitingLocks);
            }
            EventKind::TaskStarted {
                attempt,
                agent,
                workspace,
                strategy,
            } => {
                t.attempt = *attempt;
                t.agent = Some(agent.clone());
                t.workspace = Some(workspace.clone());
                t.strategy = Some(strategy.clone());
                t.node = None;
                t.blocked_by.clear();
                t.started_at.get_or_insert(ts);
                t.attempt_started_at = Some(ts);
                t.finished_at = None;
                t.duration_ms = None;
                t.exit_code = None;
                new_status = Some(TaskPhase::Running);
            }
            EventKind::TaskProgress {
                message,
                tool,
                files,
            } => {
                t.files_touched.extend(files.iter().cloned());
                t.last_progress = Some(Progress {
                    message: message.clone(),
                    tool: tool.clone(),
                    files: files.clone(),
                    at: ts,
                });
                t.progress_events += 1;
            }
            EventKind::TaskOutput { line, .. } => {
                t.last_output = Some(line.clone());
                t.output_lines += 1;
            }
            EventKind::TaskUsage {
                tokens_in,
                tokens_out,
                cost_usd,
            } => t.usage.add(*tokens_in, *tokens_out, *cost_usd),
            EventKind::TaskSession { attempt, session } => {
                t.sessions.retain(|(a, _)| a != attempt);
                t.sessions.push((*attempt, session.clone()));
            }
            EventKind::TaskPlaced { attempt, node, .. } if *attempt == t.attempt => {
                t.node = Some(node.clone());
            }
            EventKind::TaskRetrying {
                attempt,
                delay_ms,
                reason,
            } => {
                t.retry = Some(Retry {
                    attempt: *attempt,
                    delay_ms: *delay_ms,
                    reason: reason.clone(),
                    at: ts,
                });
                new_status = Some(TaskPhase::Retrying);
            }
            EventKind::TaskFinished {
                status,
                exit_code,
                duration_ms,
                files_changed,
                reason,
            } => {
                if *status == TaskStatus::Cancelled && t.status == TaskPhase::Running {
                    t.interrupted += 1;
                }
                t.reason.clone_from(reason);
                t.exit_code = *exit_code;
                t.duration_ms = Some(*duration_ms);
                t.files_changed.clone_from(files_changed);
                t.finished_at = Some(ts);
                new_status = Some((*status).into());
            }
            // Run-level kinds are handled by `apply`.
            _ => {}
        }
        if let Some(status) = new_status {
            self.set_status(i, status);
        }
    }

    /// A task added while the run runs (`task_added`): queued, and the plan grew by one (a
    /// resumed run's `run_started` counts it already).
    fn apply_added(&mut self, task: &TaskId, agent: &str, after: &[TaskId], ts: Timestamp) {
        let i = self.task_index(task);
        let t = &mut self.tasks[i];
        t.agent = Some(agent.to_owned());
        t.after = after.to_vec();
        t.queued_at.get_or_insert(ts);
        if let Some(plan) = &mut self.plan {
            plan.tasks = plan.tasks.saturating_add(1);
        }
        self.set_status(i, TaskPhase::Queued);
        self.recount_total();
    }

    fn set_status(&mut self, i: usize, status: TaskPhase) {
        let old = std::mem::replace(&mut self.tasks[i].status, status);
        *self.counts.slot(old) -= 1;
        *self.counts.slot(status) += 1;
        self.recount_progress();
    }

    /// The index of `task` in `tasks`, adding it (queued) if new.
    fn task_index(&mut self, task: &TaskId) -> usize {
        if self.index.len() != self.tasks.len() {
            self.index = self
                .tasks
                .iter()
                .enumerate()
                .map(|(i, t)| (t.id.clone(), i))
                .collect();
        }
        if let Some(&i) = self.index.get(task) {
            return i;
        }
        self.tasks.push(TaskState::new(task.clone()));
        let i = self.tasks.len() - 1;
        self.index.insert(task.clone(), i);
        self.counts.queued += 1;
        self.recount_total();
        i
    }

    fn recount_total(&mut self) {
        let planned = self.plan.as_ref().map_or(0, |p| p.tasks);
        let seen = u32::try_from(self.tasks.len()).unwrap_or(u32::MAX);
        self.counts.total = planned.max(seen);
        self.recount_progress();
    }

    fn recount_progress(&mut self) {
        self.progress = if self.counts.total == 0 {
            0.0
        } else {
            f64::from(self.counts.done()) / f64::from(self.counts.total)
        };
    }
}
