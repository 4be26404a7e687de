//! One attempt of a task, as one value through one module per step.
//!
//! ```text
//! Attempt::new        the task, its number, its agent profile (a spent budget starts nothing)
//!   locks::take       the task's claims: kept from its failed attempt, or acquired now
//!   begin             its folder; how it starts (as planned, or continuing a retried attempt)
//!   ┌ start tree      the integrated tree now (base + everything integrated so far)
//!   │ runner          stage → agent → (per-task checks) → capture, on this machine
//!   │                 (crate::runner::local) or on a cluster (crate::runner::ray)
//!   │ persist::persist  blobs synced and changes.json written before anything is integrated
//!   └ integrate::integrate  claim audit + merge into the integrated tree; a conflict an agent
//!                     must settle sends the attempt round again on top (`[merge] reruns`)
//! ```
//!
//! Each step takes the [`Attempt`] and gives it back; a step that ends it sets its outcome
//! ([`Attempt::end`]), and the steps after it are not run. The attempt keeps its lock set to
//! the end, so a failed attempt hands its place to its retry ([`PipelineRunner`]).

pub(crate) mod agent;
pub(crate) mod capture;
pub(crate) mod integrate;
pub(crate) mod locks;
pub(crate) mod persist;
pub(crate) mod stage;

use std::path::PathBuf;
use std::sync::Arc;

use forge_events::{TaskId, TaskStatus};
use forge_locks::LockSet;
use forge_staging::{ChangeSet, Snapshot, Workspace};

use super::Shared;
use crate::ExecError;
use crate::plan::Task;
use crate::sched::{AttemptContext, TaskOutcome, TaskRunner};
use forge_agents::Profile;

/// One attempt of a task, from its locks to its integration.
pub(crate) struct Attempt {
    /// The task.
    pub(crate) task: Task,
    /// Its number, from 1.
    pub(crate) number: u32,
    /// Its timeout and cancellation.
    pub(crate) ctx: AttemptContext,
    /// The agent's profile.
    pub(crate) profile: Profile,
    /// `.forge/runs/<run>/tasks/<task>/<number>/`: prompts, output logs, changes.
    pub(crate) dir: PathBuf,
    /// The task's claims, held until the attempt ends (and kept for a retry when it failed).
    pub(crate) locks: Option<LockSet>,
    /// The prompt of the agent's next run.
    pub(crate) prompt: String,
    /// The agent session its next run continues (the profile's `resume_args`).
    pub(crate) session: Option<String>,
    /// The session the agent named in its last run.
    pub(crate) agent_session: Option<String>,
    /// Changes written into the workspace before the agent runs (a retried attempt's previous
    /// work, or this attempt's work before a failed check).
    pub(crate) restore: Option<ChangeSet>,
    /// 0, then 1, 2, … when a conflicting attempt runs again on top of the integrated tree.
    pub(crate) pass: u32,
    /// Rounds of `check` feedback so far (the agent runs again in the same state).
    pub(crate) check_round: u32,
    /// The tree this pass starts from: the integrated tree when it was staged.
    pub(crate) start: Option<Arc<Snapshot>>,
    /// The workspace, while the attempt runs on this machine.
    pub(crate) workspace: Option<Box<dyn Workspace>>,
    /// What the agent changed against `start`, once captured.
    pub(crate) changes: Option<ChangeSet>,
    /// Whether `task_started` was published.
    started: bool,
    /// How it ended, once it did.
    outcome: Option<TaskOutcome>,
}

impl Attempt {
    /// Attempt `number` of `task`, with `profile`'s agent.
    pub(crate) fn new(task: &Task, number: u32, ctx: &AttemptContext, profile: Profile) -> Self {
        Self {
            task: task.clone(),
            number,
            ctx: ctx.clone(),
            profile,
            dir: PathBuf::new(),
            locks: None,
            prompt: task.prompt.clone(),
            session: None,
            agent_session: None,
            restore: None,
            pass: 0,
            check_round: 0,
            start: None,
            workspace: None,
            changes: None,
            started: false,
            outcome: None,
        }
    }

    /// The task's id.
    pub(crate) fn id(&self) -> &TaskId {
        &self.task.id
    }

    /// Whether a step ended it.
    pub(crate) fn is_over(&self) -> bool {
        self.outcome.is_some()
    }

    /// Ends it with `outcome` (the first end stays).
    #[must_use]
    pub(crate) fn end(mut self, outcome: TaskOutcome) -> Self {
        self.outcome.get_or_insert(outcome);
        self
    }

    /// Ends it as failed because Forge itself failed (the file system, the journal).
    #[must_use]
    pub(crate) fn fail(self, error: &ExecError) -> Self {
        self.end(TaskOutcome::failed(error.to_string()))
    }

    /// Ends it as cancelled.
    #[must_use]
    pub(crate) fn cancel(self, message: &str) -> Self {
        self.end(TaskOutcome {
            status: TaskStatus::Cancelled,
            ..TaskOutcome::failed(message)
        })
    }

    /// The suffix of this pass's files (`prompt-rerun1-check2.md`) and workspace name.
    pub(crate) fn suffix(&self) -> String {
        match (self.pass, self.check_round) {
            (0, 0) => String::new(),
            (0, n) => format!("-check{n}"),
            (p, 0) => format!("-rerun{p}"),
            (p, n) => format!("-rerun{p}-check{n}"),
        }
    }

    /// Publishes `task_started` the first time the attempt has a workspace (wherever a runner
    /// made it: `strategy` names how).
    pub(crate) fn announce(&mut self, workspace: &str, strategy: &str) {
        if !std::mem::replace(&mut self.started, true) {
            self.ctx.started(&self.task.agent, workspace, strategy);
        }
    }
}

/// Runs the attempt through every step, to its end.
pub(crate) async fn run(shared: &Arc<Shared>, mut a: Attempt) -> Attempt {
    a = locks::take(shared, a).await;
    if a.is_over() {
        return a;
    }
    a = begin(shared, a);
    while !a.is_over() {
        if a.ctx.cancel.is_cancelled() {
            return a.cancel("cancelled before the agent started");
        }
        match super::layers::current(shared).await {
            Ok(start) => a.start = Some(start),
            Err(e) => return a.fail(&e),
        }
        a = shared.runner.run(shared, a).await;
        if !a.is_over() {
            a = persist::persist(shared, a).await;
        }
        if !a.is_over() {
            a = integrate::integrate(shared, a).await;
        }
    }
    a
}

/// Its folder, and how it starts: as planned, or as the continuation of a retried attempt.
fn begin(shared: &Shared, mut a: Attempt) -> Attempt {
    a.dir = shared
        .store
        .attempt_dir(&shared.run, a.task.id.as_str(), a.number);
    if let Err(e) = std::fs::create_dir_all(&a.dir) {
        let e = ExecError::io("create", &a.dir, e);
        return a.fail(&e);
    }
    let start = super::retry::attempt_start(shared, &a.task, &a.profile);
    a.prompt = start.prompt;
    a.session = start.session;
    a.restore = start.restore;
    a
}

/// The [`TaskRunner`] of the `ExecutionManager`: each attempt through [`run`].
pub(crate) struct PipelineRunner {
    shared: Arc<Shared>,
}

impl PipelineRunner {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

#[async_trait::async_trait]
impl TaskRunner for PipelineRunner {
    async fn run(&self, task: &Task, attempt: u32, ctx: AttemptContext) -> TaskOutcome {
        // A spent budget starts nothing new.
        if let Some(why) = super::budget::refuse_start(&self.shared, task) {
            return TaskOutcome::failed(why);
        }
        let Some(profile) = self.shared.profiles.get(&task.agent).cloned() else {
            return TaskOutcome::failed(format!("unknown agent profile `{}`", task.agent));
        };
        let mut a = run(&self.shared, Attempt::new(task, attempt, &ctx, profile)).await;
        let outcome = a
            .outcome
            .take()
            .unwrap_or_else(|| TaskOutcome::failed("the attempt ended without an outcome"));
        // A failed attempt may be retried: the task keeps its locks (its place) until the
        // scheduler says it has ended (`task_ended`), so that no other task slips in between.
        if matches!(outcome.status, TaskStatus::Failed | TaskStatus::TimedOut)
            && !ctx.cancel.is_cancelled()
            && let Some(locks) = a.locks.take()
        {
            self.shared.kept_locks.lock().insert(task.id.clone(), locks);
        }
        outcome
    }

    fn reports_start(&self) -> bool {
        true
    }

    fn task_ended(&self, task: &TaskId) {
        // Dropping the set releases the claims.
        drop(self.shared.kept_locks.lock().remove(task));
    }
}
