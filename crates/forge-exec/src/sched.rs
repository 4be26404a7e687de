//! The DAG scheduler: runs a plan's tasks through a [`TaskRunner`], in critical-path order,
//! within the global concurrency and per-pool limits, with retries, timeouts and cancellation.
//!
//! The scheduler owns no processes and no files: everything a task does is the runner's
//! business, so the DAG logic is tested and benchmarked with in-process runners. Attempts run as
//! futures inside the scheduler's own task (no spawn per task), which keeps the cost per task in
//! the microseconds.

use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use forge_events::{EventKind, EventSink, TaskId, TaskStatus};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::plan::{OnFailure, Plan, RetryOn, Task};

/// How one attempt ended, as the runner reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskOutcome {
    /// `Succeeded`, `Failed`, `TimedOut` or `Cancelled`. (The scheduler overrides it with
    /// `TimedOut` when it enforced the timeout, and `Cancelled` when the run was cancelled.)
    pub status: TaskStatus,
    /// The exit code, if a process exited.
    pub exit_code: Option<i32>,
    /// The signal that killed the process, if one did.
    pub signal: Option<i32>,
    /// Files the attempt changed (repo-relative).
    pub files_changed: Vec<forge_events::RepoPath>,
    /// Why it failed, in words, when it did.
    pub message: Option<String>,
}

impl TaskOutcome {
    /// A successful attempt.
    pub fn succeeded() -> Self {
        Self {
            status: TaskStatus::Succeeded,
            exit_code: Some(0),
            signal: None,
            files_changed: Vec::new(),
            message: None,
        }
    }

    /// A failed attempt, with the reason.
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            status: TaskStatus::Failed,
            exit_code: None,
            signal: None,
            files_changed: Vec::new(),
            message: Some(message.into()),
        }
    }

    fn describe(&self) -> String {
        if let Some(m) = &self.message {
            return m.clone();
        }
        match (self.status, self.exit_code, self.signal) {
            (TaskStatus::TimedOut, ..) => "timed out".into(),
            (_, _, Some(sig)) => format!("killed by signal {sig}"),
            (_, Some(code), _) => format!("exited with code {code}"),
            (status, ..) => status.to_string(),
        }
    }
}

/// What a runner gets for one attempt.
#[derive(Clone)]
pub struct AttemptContext {
    /// The task.
    pub task: TaskId,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// Cancelled when the attempt must stop: its timeout expired or the run was cancelled.
    /// Runners stop gracefully (for processes: SIGINT, grace, SIGTERM, grace, SIGKILL).
    pub cancel: CancellationToken,
    /// Cancelled when the attempt must stop *now* (a second cancel, or a runner that ignored
    /// `cancel` past the kill grace): kill without grace.
    pub kill: CancellationToken,
    /// When the attempt's timeout expires, if it has one.
    pub deadline: Option<Instant>,
    events: Arc<dyn EventSink>,
}

impl AttemptContext {
    /// Where runners publish what happens inside the attempt (progress, output, usage).
    pub fn events(&self) -> &Arc<dyn EventSink> {
        &self.events
    }

    /// Reports that the attempt really started (for runners whose
    /// [`TaskRunner::reports_start`] is true): publishes `task_started`.
    pub fn started(&self, agent: &str, workspace: &str, strategy: &str) {
        let _ = self.events.publish_task(
            &self.task,
            EventKind::TaskStarted {
                attempt: self.attempt,
                agent: agent.to_owned(),
                workspace: workspace.to_owned(),
                strategy: strategy.to_owned(),
            },
        );
    }
}

/// Runs one attempt of a task.
#[async_trait::async_trait]
pub trait TaskRunner: Send + Sync {
    /// Runs attempt `attempt` (from 1) of `task`. Must return soon after `ctx.cancel` fires,
    /// and at once after `ctx.kill` fires.
    async fn run(&self, task: &Task, attempt: u32, ctx: AttemptContext) -> TaskOutcome;

    /// Whether the runner publishes `task_started` itself (via [`AttemptContext::started`],
    /// once it has a workspace). If not, the scheduler publishes it when it calls `run`.
    fn reports_start(&self) -> bool {
        false
    }

    /// Called once for each task the runner ran, when it has ended for good: no further attempt
    /// of it will be made (tasks that never ran, skipped or not started, are not named). A runner
    /// that keeps something from a failed attempt for the retry lets go of it here (the
    /// pipeline keeps the task's locks, so that a task waiting to retry keeps its place).
    fn task_ended(&self, _task: &TaskId) {}
}

/// Cancels a run: the first call stops new starts and asks running attempts to stop
/// gracefully; a second call kills them at once. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct CancelHandle {
    graceful: CancellationToken,
    kill: CancellationToken,
    calls: Arc<AtomicU8>,
}

impl CancelHandle {
    /// A handle that has not been used.
    pub fn new() -> Self {
        Self::default()
    }

    /// Escalates: the first call cancels gracefully, later calls kill.
    pub fn cancel(&self) {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            self.graceful.cancel();
        } else {
            self.graceful.cancel();
            self.kill.cancel();
        }
    }

    /// Whether the run was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.graceful.is_cancelled()
    }

    /// Tokens that fire with the first cancel (graceful) and with a later one (kill), for
    /// work outside the scheduler (the gate).
    pub fn tokens(&self) -> (CancellationToken, CancellationToken) {
        (self.graceful.child_token(), self.kill.child_token())
    }
}

/// Scheduler settings besides those in the plan.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// First retry delay; doubles with each attempt.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Randomize delays by ±25 % so retries of many tasks do not arrive together.
    pub jitter: bool,
    /// How long an attempt may take to stop after `cancel` before `kill` fires.
    pub kill_grace: Duration,
    /// What an earlier, interrupted run of the same plan already did (for resume), by task.
    /// Tasks not listed start fresh.
    pub prior: HashMap<TaskId, PriorTask>,
}

/// What an interrupted run already did with a task (see [`SchedulerOptions::prior`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriorTask {
    /// The task ended for good (succeeded, or failed with no retry left): it is not run again.
    /// Its dependents start (on success) or are skipped (otherwise) as if it had just ended.
    Finished {
        /// How it ended.
        status: TaskStatus,
        /// Why, when it did not succeed.
        reason: Option<String>,
    },
    /// Attempts were made but the task had not ended (an attempt was interrupted, or a retry
    /// was due): it runs again, numbered from `attempts + 1`. Only the `failed` ones count
    /// against the task's `retries`; interrupted attempts do not.
    Attempted {
        /// Attempts already made.
        attempts: u32,
        /// Of those, the attempts that failed (rather than being interrupted).
        failed: u32,
    },
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_mins(1),
            jitter: true,
            kill_grace: Duration::from_secs(30),
            prior: HashMap::new(),
        }
    }
}

/// How one task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskReport {
    /// The task.
    pub id: TaskId,
    /// Final status.
    pub status: TaskStatus,
    /// Attempts made (0 when it never ran).
    pub attempts: u32,
    /// Why it failed or was skipped, in words.
    pub reason: Option<String>,
    /// The last attempt's outcome, if it ran.
    pub outcome: Option<TaskOutcome>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleReport {
    /// Every task, in plan order, then the tasks added while it ran (in the order they came).
    pub tasks: Vec<TaskReport>,
    /// Whether the run was cancelled.
    pub cancelled: bool,
}

impl ScheduleReport {
    /// Whether every task succeeded.
    pub fn succeeded(&self) -> bool {
        !self.cancelled && self.tasks.iter().all(|t| t.status == TaskStatus::Succeeded)
    }

    /// Tasks with each status.
    pub fn count(&self, status: TaskStatus) -> usize {
        self.tasks.iter().filter(|t| t.status == status).count()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for this many dependencies.
    Pending(usize),
    Ready,
    Running,
    /// Failed attempt, next one due after a delay.
    Backoff,
    Done,
}

/// Ready task in a heap: longest remaining path first, then plan order.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Ready {
    priority: u64,
    earlier: std::cmp::Reverse<usize>,
}

enum Msg {
    Finished {
        task: usize,
        outcome: TaskOutcome,
        started: Instant,
    },
    RetryDue {
        task: usize,
    },
}

type Pending<'a> = Pin<Box<dyn Future<Output = Msg> + Send + 'a>>;

/// What woke the event loop.
enum Wake {
    Msg(Option<Msg>),
    Cancel,
    Kill,
    Added(Option<Box<Task>>),
}

/// A task the scheduler runs: one of the plan's, or one added while it runs.
#[derive(Clone)]
enum TaskRef<'p> {
    Plan(&'p Task),
    Added(Arc<Task>),
}

impl std::ops::Deref for TaskRef<'_> {
    type Target = Task;

    fn deref(&self) -> &Task {
        match self {
            Self::Plan(task) => task,
            Self::Added(task) => task,
        }
    }
}

/// Room to start attempts: the global limit and each pool's (pool 0 is "no pool", global
/// limit only), and the ready tasks of each pool.
struct Slots<'p> {
    names: Vec<&'p str>,
    limit: Vec<usize>,
    running: Vec<usize>,
    ready: Vec<BinaryHeap<Ready>>,
    concurrency: usize,
    total: usize,
}

impl<'p> Slots<'p> {
    fn new(plan: &'p Plan) -> Self {
        let limit: Vec<usize> = std::iter::once(usize::MAX)
            .chain(plan.pools.values().copied())
            .collect();
        Self {
            names: plan.pools.keys().map(String::as_str).collect(),
            running: vec![0; limit.len()],
            ready: (0..limit.len()).map(|_| BinaryHeap::new()).collect(),
            limit,
            concurrency: plan.concurrency.max(1),
            total: 0,
        }
    }

    /// The pool a task runs in (0 when it names none, or one the plan does not define).
    fn pool_of(&self, task: &Task) -> usize {
        task.pool
            .as_deref()
            .and_then(|p| self.names.iter().position(|n| *n == p))
            .map_or(0, |i| i + 1)
    }

    fn has_room(&self) -> bool {
        self.total < self.concurrency
    }

    fn take(&mut self, pool: usize) {
        self.total += 1;
        self.running[pool] += 1;
    }

    fn release(&mut self, pool: usize) {
        self.total -= 1;
        self.running[pool] -= 1;
    }

    fn push_ready(&mut self, pool: usize, priority: u64, task: usize) {
        self.ready[pool].push(Ready {
            priority,
            earlier: std::cmp::Reverse(task),
        });
    }

    /// The best ready task among pools with room.
    fn pop_ready(&mut self) -> Option<usize> {
        let best = (0..self.ready.len())
            .filter(|&p| self.running[p] < self.limit[p])
            .filter_map(|p| self.ready[p].peek().map(|r| (r, p)))
            .max_by(|a, b| a.0.cmp(b.0))
            .map(|(_, p)| p)?;
        self.ready[best].pop().map(|r| r.earlier.0)
    }
}

/// Everything one run of the scheduler keeps, indexed by task position (the plan's tasks,
/// then the ones added while it runs).
struct Run<'p> {
    tasks: Vec<TaskRef<'p>>,
    state: Vec<State>,
    dependents: Vec<Vec<usize>>,
    priority: Vec<u64>,
    pool_of: Vec<usize>,
    reports: Vec<TaskReport>,
    /// Attempts that do not count against `retries` (a resumed task's interrupted ones).
    first_attempt: Vec<u32>,
    /// Tasks in [`State::Done`].
    done: usize,
    slots: Slots<'p>,
    /// Retries whose back-off is over. A task waiting to retry keeps its place: its slot (in
    /// the global count and its pool) stays taken through the back-off and its retry starts
    /// before anything else, so a runner that keeps the failed attempt's locks for the retry
    /// never waits behind a task that waits for those locks.
    due: VecDeque<usize>,
    /// Why new starts stopped (cancel or `fail_fast`), once they did.
    stopping: Option<String>,
    cancelled: bool,
    /// Cancelled when new starts stop: pending retries end at once.
    stop_starts: CancellationToken,
}

impl Run<'_> {
    fn make_ready(&mut self, i: usize) {
        self.state[i] = State::Ready;
        self.slots.push_ready(self.pool_of[i], self.priority[i], i);
    }

    /// `i` succeeded: each dependent waits for one task less, and starts when none is left.
    fn release_dependents(&mut self, i: usize) {
        for k in 0..self.dependents[i].len() {
            let t = self.dependents[i][k];
            match self.state[t] {
                State::Pending(1) => self.make_ready(t),
                State::Pending(n) => self.state[t] = State::Pending(n.saturating_sub(1)),
                _ => {}
            }
        }
    }

    fn position(&self, id: &TaskId) -> Option<usize> {
        self.tasks.iter().position(|t| t.id == *id)
    }
}

/// Critical-path priorities: the longest chain of weights from each task to the end of the
/// DAG, itself included. Weights are `estimate`s in milliseconds; tasks without one weigh the
/// mean of the given estimates (1 when none is given).
pub fn critical_path(plan: &Plan, deps: &[Vec<usize>]) -> Vec<u64> {
    let given: Vec<u64> = plan
        .tasks
        .iter()
        .filter_map(|t| {
            t.estimate
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        })
        .collect();
    let default = if given.is_empty() {
        1
    } else {
        (given.iter().sum::<u64>() / given.len() as u64).max(1)
    };
    let weight: Vec<u64> = plan
        .tasks
        .iter()
        .map(|t| {
            t.estimate.map_or(default, |d| {
                u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
            })
        })
        .collect();
    let n = plan.tasks.len();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut indegree = vec![0usize; n];
    for (t, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(t);
            indegree[t] += 1;
        }
    }
    // Topological order (Kahn), then longest path backwards.
    let mut order = Vec::with_capacity(n);
    let mut stack: Vec<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    while let Some(i) = stack.pop() {
        order.push(i);
        for &t in &dependents[i] {
            indegree[t] -= 1;
            if indegree[t] == 0 {
                stack.push(t);
            }
        }
    }
    let mut longest = weight.clone();
    for &i in order.iter().rev() {
        let tail = dependents[i].iter().map(|&t| longest[t]).max().unwrap_or(0);
        longest[i] = weight[i].saturating_add(tail);
    }
    longest
}

/// Small, fast, good-enough randomness for jitter (no need for a crate).
fn jitter_factor(seed: u64) -> f64 {
    let mut x = seed ^ 0x9E37_79B9_7F4A_7C15;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    // 0.75 ..= 1.25
    #[allow(clippy::cast_precision_loss)] // 16 bits of randomness are plenty
    let unit = (x & 0xFFFF) as f64 / 65535.0;
    0.75 + unit * 0.5
}

pub(crate) fn should_retry(retry_on: &RetryOn, outcome: &TaskOutcome) -> bool {
    if outcome.status == TaskStatus::Cancelled {
        return false;
    }
    if retry_on.is_unset() || retry_on.any {
        return true;
    }
    (retry_on.timeout && outcome.status == TaskStatus::TimedOut)
        || (retry_on.signal && outcome.signal.is_some())
        || outcome
            .exit_code
            .is_some_and(|c| retry_on.exit_codes.contains(&c))
}

/// Runs a plan's tasks with a runner.
pub struct Scheduler<'p, R: ?Sized> {
    plan: &'p Plan,
    runner: &'p R,
    events: Arc<dyn EventSink>,
    options: SchedulerOptions,
    intake: Mutex<Option<mpsc::Receiver<Task>>>,
}

impl<'p, R: TaskRunner + ?Sized> Scheduler<'p, R> {
    /// A scheduler for a validated plan.
    pub fn new(
        plan: &'p Plan,
        runner: &'p R,
        events: Arc<dyn EventSink>,
        options: SchedulerOptions,
    ) -> Self {
        Self {
            plan,
            runner,
            events,
            options,
            intake: Mutex::new(None),
        }
    }

    /// Takes tasks added while the run is under way from `intake` (`forge add`): each is queued
    /// like a task of the plan — after the tasks it names in `after`, within the same
    /// concurrency and pools — and reported after the plan's tasks. The sender checks a task
    /// first (a unique id, `after` naming tasks of the run); here, a task whose id the run
    /// already has is refused with a `run_warning`, and one that runs after a task the run does
    /// not have, or one that did not succeed, is skipped.
    ///
    /// When nothing is left to run, the scheduler closes the intake, takes the tasks already
    /// sent (a sender holding a [`mpsc::Sender::reserve`]d permit from before the close is
    /// still heard) and runs them; then it ends, and later sends fail.
    #[must_use]
    pub fn intake(self, intake: mpsc::Receiver<Task>) -> Self {
        *self.intake.lock() = Some(intake);
        self
    }

    fn publish(&self, task: &TaskId, kind: EventKind) {
        // The event stream is best effort here; durability errors surface from the journal.
        let _ = self.events.publish_task(task, kind);
    }

    /// Runs every task to an end (succeeded, failed, timed out, skipped or cancelled).
    pub async fn run(&self, cancel: &CancelHandle) -> ScheduleReport {
        let mut run = self.prepare();
        let mut intake = self.intake.lock().take();
        let mut pending: FuturesUnordered<Pending<'p>> = FuturesUnordered::new();
        // After a graceful cancel, attempts get `kill_grace` to stop before they are killed.
        let mut kill_timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
        loop {
            self.start_ready(&mut run, &mut pending, cancel);
            if pending.is_empty() {
                // Nothing runs: the intake closes, and what was sent before still joins.
                if let Some(rx) = intake.take()
                    && self.drain(&mut run, rx).await
                {
                    continue;
                }
                break;
            }
            let wake = tokio::select! {
                msg = pending.next() => Wake::Msg(msg),
                () = cancel.graceful.cancelled(), if !run.cancelled => Wake::Cancel,
                () = async { if let Some(t) = kill_timer.as_mut() { t.await } }, if kill_timer.is_some() => Wake::Kill,
                task = async { match intake.as_mut() { Some(rx) => rx.recv().await.map(Box::new), None => None } }, if intake.is_some() => Wake::Added(task),
            };
            match wake {
                Wake::Msg(None) => break,
                Wake::Msg(Some(Msg::RetryDue { task })) => Self::retry_due(&mut run, task),
                Wake::Msg(Some(Msg::Finished {
                    task,
                    outcome,
                    started,
                })) => self.finished(&mut run, &mut pending, task, outcome, started, cancel),
                Wake::Cancel => {
                    run.stopping
                        .get_or_insert_with(|| "the run was cancelled".into());
                    run.cancelled = true;
                    run.stop_starts.cancel();
                    kill_timer = Some(Box::pin(tokio::time::sleep(self.options.kill_grace)));
                }
                Wake::Kill => {
                    cancel.kill.cancel();
                    kill_timer = None;
                }
                Wake::Added(Some(task)) => self.add(&mut run, *task),
                Wake::Added(None) => intake = None,
            }
        }
        self.finish(run)
    }

    /// The run's state before anything starts: the DAG, what an interrupted run already did
    /// (see [`SchedulerOptions::prior`]), every unfinished task queued.
    fn prepare(&self) -> Run<'p> {
        let plan = self.plan;
        let n = plan.tasks.len();
        let index = crate::plan::positions(plan.tasks.iter().map(|t| &t.id));
        let deps = crate::plan::dependency_positions(
            plan.tasks.iter().map(|t| t.after.as_slice()),
            &index,
        );
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (t, ds) in deps.iter().enumerate() {
            for &d in ds {
                dependents[d].push(t);
            }
        }
        let slots = Slots::new(plan);
        let mut run = Run {
            tasks: plan.tasks.iter().map(TaskRef::Plan).collect(),
            state: deps.iter().map(|d| State::Pending(d.len())).collect(),
            dependents,
            priority: critical_path(plan, &deps),
            pool_of: plan.tasks.iter().map(|t| slots.pool_of(t)).collect(),
            reports: plan
                .tasks
                .iter()
                .map(|t| TaskReport {
                    id: t.id.clone(),
                    status: TaskStatus::Skipped,
                    attempts: 0,
                    reason: None,
                    outcome: None,
                })
                .collect(),
            first_attempt: vec![0; n],
            done: 0,
            slots,
            due: VecDeque::new(),
            stopping: None,
            cancelled: false,
            stop_starts: CancellationToken::new(),
        };
        self.apply_prior(&mut run);
        for i in 0..n {
            self.queue(&mut run, i);
        }
        run
    }

    /// Resume: what an interrupted run finished stays finished (its dependents start or are
    /// skipped as if it had just ended); attempt numbering goes on.
    fn apply_prior(&self, run: &mut Run<'p>) {
        if self.options.prior.is_empty() {
            return;
        }
        let mut finished_before = Vec::new();
        for (i, task) in self.plan.tasks.iter().enumerate() {
            match self.options.prior.get(&task.id) {
                Some(PriorTask::Finished { status, reason }) => {
                    run.state[i] = State::Done;
                    run.done += 1;
                    run.reports[i].status = *status;
                    run.reports[i].reason.clone_from(reason);
                    finished_before.push(i);
                }
                Some(PriorTask::Attempted { attempts, failed }) => {
                    run.reports[i].attempts = *attempts;
                    run.first_attempt[i] = attempts.saturating_sub(*failed);
                }
                None => {}
            }
        }
        for i in finished_before {
            if run.reports[i].status == TaskStatus::Succeeded {
                run.release_dependents(i);
            } else {
                self.skip_dependents(run, i);
            }
        }
    }

    /// Publishes `task_queued` for task `i` unless it ended already, and readies it when it
    /// waits for nothing.
    fn queue(&self, run: &mut Run<'p>, i: usize) {
        if run.state[i] == State::Done {
            return;
        }
        let task = &run.tasks[i];
        self.publish(
            &task.id,
            EventKind::TaskQueued {
                after: task.after.clone(),
                estimate_ms: task.estimate.map(millis),
            },
        );
        if run.state[i] == State::Pending(0) {
            run.make_ready(i);
        }
    }

    /// The one place where a task that did not succeed takes its dependents with it: every
    /// task downstream of `failed` that has not started is skipped, once, with a reason naming
    /// `failed`.
    fn skip_dependents(&self, run: &mut Run<'p>, failed: usize) {
        let reason = format!(
            "skipped because `{}` {}",
            run.tasks[failed].id,
            if run.reports[failed].status == TaskStatus::Skipped {
                "was skipped"
            } else {
                "did not succeed"
            }
        );
        let mut stack = run.dependents[failed].clone();
        while let Some(t) = stack.pop() {
            if !matches!(run.state[t], State::Pending(_)) {
                continue;
            }
            run.state[t] = State::Done;
            run.done += 1;
            run.reports[t].status = TaskStatus::Skipped;
            run.reports[t].reason = Some(reason.clone());
            self.publish(
                &run.tasks[t].id,
                EventKind::TaskFinished {
                    status: TaskStatus::Skipped,
                    exit_code: None,
                    duration_ms: 0,
                    files_changed: Vec::new(),
                    reason: Some(reason.clone()),
                },
            );
            stack.extend(run.dependents[t].iter().copied());
        }
    }

    /// Starts what may start: retries that are due first, then the best ready tasks, while
    /// there is room and starts have not stopped.
    fn start_ready(
        &self,
        run: &mut Run<'p>,
        pending: &mut FuturesUnordered<Pending<'p>>,
        cancel: &CancelHandle,
    ) {
        while run.stopping.is_none() && run.slots.has_room() {
            let Some(i) = run.due.pop_front().or_else(|| run.slots.pop_ready()) else {
                break;
            };
            pending.push(self.start(run, i, cancel));
        }
    }

    /// Starts the next attempt of task `i`; the future ends with its outcome, after the
    /// task's timeout if it has one.
    fn start(&self, run: &mut Run<'p>, i: usize, cancel: &CancelHandle) -> Pending<'p> {
        run.state[i] = State::Running;
        run.slots.take(run.pool_of[i]);
        run.reports[i].attempts += 1;
        let attempt = run.reports[i].attempts;
        let task = run.tasks[i].clone();
        let cancel_token = cancel.graceful.child_token();
        let kill_token = cancel.kill.child_token();
        let started = Instant::now();
        let deadline = task.timeout.map(|t| started + t);
        let ctx = AttemptContext {
            task: task.id.clone(),
            attempt,
            cancel: cancel_token.clone(),
            kill: kill_token.clone(),
            deadline,
            events: self.events.clone(),
        };
        if !self.runner.reports_start() {
            ctx.started(&task.agent, "", "");
        }
        let runner = self.runner;
        let kill_grace = self.options.kill_grace;
        Box::pin(async move {
            let fut = runner.run(&task, attempt, ctx);
            tokio::pin!(fut);
            let outcome = match deadline {
                Some(deadline) => {
                    tokio::select! {
                        outcome = &mut fut => outcome,
                        () = tokio::time::sleep_until(deadline) => {
                            cancel_token.cancel();
                            let mut outcome = stop(&mut fut, &kill_token, kill_grace).await;
                            outcome.status = TaskStatus::TimedOut;
                            outcome
                        }
                    }
                }
                None => fut.await,
            };
            Msg::Finished {
                task: i,
                outcome,
                started,
            }
        })
    }

    /// A retry's back-off is over: the slot it kept is handed to it, and it starts first.
    fn retry_due(run: &mut Run<'p>, i: usize) {
        run.slots.release(run.pool_of[i]);
        if run.stopping.is_some() {
            return;
        }
        run.state[i] = State::Ready;
        run.due.push_back(i);
    }

    /// An attempt of task `i` ended: it is retried, or the task ends.
    fn finished(
        &self,
        run: &mut Run<'p>,
        pending: &mut FuturesUnordered<Pending<'p>>,
        i: usize,
        mut outcome: TaskOutcome,
        started: Instant,
        cancel: &CancelHandle,
    ) {
        run.slots.release(run.pool_of[i]);
        let task = run.tasks[i].clone();
        if cancel.is_cancelled() && outcome.status != TaskStatus::Succeeded {
            outcome.status = TaskStatus::Cancelled;
        }
        let attempt = run.reports[i].attempts;
        let retry = outcome.status != TaskStatus::Succeeded
            && run.stopping.is_none()
            && attempt - run.first_attempt[i] <= task.retries
            && should_retry(&task.retry_on, &outcome);
        self.publish(
            &task.id,
            EventKind::TaskFinished {
                status: outcome.status,
                exit_code: outcome.exit_code,
                duration_ms: millis(started.elapsed()),
                files_changed: outcome.files_changed.clone(),
                reason: (outcome.status != TaskStatus::Succeeded).then(|| outcome.describe()),
            },
        );
        if retry {
            pending.push(self.back_off(run, i, outcome));
        } else {
            self.end(run, i, outcome);
        }
    }

    /// Task `i` will be tried again after a delay; it keeps its slot meanwhile (see
    /// [`Run::due`]).
    fn back_off(&self, run: &mut Run<'p>, i: usize, outcome: TaskOutcome) -> Pending<'p> {
        let attempt = run.reports[i].attempts;
        let exp = self
            .options
            .backoff_base
            .saturating_mul(1u32 << (attempt - 1).min(20))
            .min(self.options.backoff_max);
        let delay = if self.options.jitter {
            exp.mul_f64(jitter_factor((i as u64) << 32 | u64::from(attempt)))
        } else {
            exp
        };
        self.publish(
            &run.tasks[i].id,
            EventKind::TaskRetrying {
                attempt: attempt + 1,
                delay_ms: millis(delay),
                reason: outcome.describe(),
            },
        );
        run.slots.take(run.pool_of[i]);
        run.state[i] = State::Backoff;
        run.reports[i].outcome = Some(outcome);
        let stop = run.stop_starts.clone();
        Box::pin(async move {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = stop.cancelled() => {}
            }
            Msg::RetryDue { task: i }
        })
    }

    /// Task `i` ended for good: its dependents start, or are skipped.
    fn end(&self, run: &mut Run<'p>, i: usize, outcome: TaskOutcome) {
        run.state[i] = State::Done;
        run.done += 1;
        self.runner.task_ended(&run.tasks[i].id);
        let status = outcome.status;
        run.reports[i].status = status;
        if status != TaskStatus::Succeeded {
            run.reports[i].reason = Some(outcome.describe());
        }
        run.reports[i].outcome = Some(outcome);
        if status == TaskStatus::Succeeded {
            run.release_dependents(i);
            return;
        }
        // On a cancelled run, what never started is reported as cancelled at the end.
        if run.cancelled {
            return;
        }
        self.skip_dependents(run, i);
        if self.plan.on_failure == OnFailure::FailFast
            && run.stopping.is_none()
            && status != TaskStatus::Cancelled
        {
            run.stopping = Some(format!(
                "not started: fail_fast stopped new starts after `{}` failed",
                run.tasks[i].id
            ));
            run.stop_starts.cancel();
        }
    }

    /// A task added while the run is under way (see [`Scheduler::intake`]).
    fn add(&self, run: &mut Run<'p>, task: Task) {
        if run.position(&task.id).is_some() {
            let _ = self.events.publish(
                None,
                EventKind::RunWarning {
                    message: format!(
                        "the task `{}` added to the run was refused: the run already has a task with this id",
                        task.id
                    ),
                },
            );
            return;
        }
        let i = run.tasks.len();
        let deps: Vec<Option<usize>> = task.after.iter().map(|d| run.position(d)).collect();
        let unknown = task
            .after
            .iter()
            .zip(&deps)
            .find(|(_, d)| d.is_none())
            .map(|(id, _)| id.clone());
        let mut waiting = 0;
        let mut failed = None;
        for &d in deps.iter().flatten() {
            match run.state[d] {
                State::Done if run.reports[d].status == TaskStatus::Succeeded => {}
                State::Done => {
                    failed.get_or_insert(d);
                    run.dependents[d].push(i);
                }
                _ => {
                    waiting += 1;
                    run.dependents[d].push(i);
                }
            }
        }
        run.state
            .push(State::Pending(waiting + usize::from(failed.is_some())));
        run.dependents.push(Vec::new());
        run.priority
            .push(task.estimate.map_or(1, |d| millis(d).max(1)));
        run.pool_of.push(run.slots.pool_of(&task));
        run.reports.push(TaskReport {
            id: task.id.clone(),
            status: TaskStatus::Skipped,
            attempts: 0,
            reason: None,
            outcome: None,
        });
        run.first_attempt.push(0);
        run.tasks.push(TaskRef::Added(Arc::new(task)));
        self.queue(run, i);
        if let Some(missing) = unknown {
            let reason =
                format!("skipped: it runs after `{missing}`, which is not a task of this run");
            run.state[i] = State::Done;
            run.done += 1;
            run.reports[i].reason = Some(reason.clone());
            self.publish(
                &run.tasks[i].id,
                EventKind::TaskFinished {
                    status: TaskStatus::Skipped,
                    exit_code: None,
                    duration_ms: 0,
                    files_changed: Vec::new(),
                    reason: Some(reason),
                },
            );
        } else if let Some(d) = failed
            && !run.cancelled
        {
            self.skip_dependents(run, d);
        }
    }

    /// Closes the intake and adds what was sent before; whether anything was.
    async fn drain(&self, run: &mut Run<'p>, mut rx: mpsc::Receiver<Task>) -> bool {
        rx.close();
        let mut added = false;
        while let Some(task) = rx.recv().await {
            self.add(run, task);
            added = true;
        }
        added
    }

    /// Whatever never ran (cancelled, or stopped by `fail_fast`) is reported as such.
    fn finish(&self, mut run: Run<'p>) -> ScheduleReport {
        let reason = run.stopping.take().unwrap_or_else(|| "not started".into());
        for i in 0..run.tasks.len() {
            if run.state[i] == State::Done {
                continue;
            }
            let report = &mut run.reports[i];
            if report.attempts > 0 {
                self.runner.task_ended(&report.id);
            }
            // A task waiting for its retry keeps the status of the attempt it made.
            let status = match (&report.outcome, run.cancelled) {
                (_, true) => TaskStatus::Cancelled,
                (Some(last), false) => last.status,
                (None, false) => TaskStatus::Skipped,
            };
            report.status = status;
            let why = match &report.outcome {
                Some(last) => format!("{}; no retry: {reason}", last.describe()),
                None => reason.clone(),
            };
            report.reason.get_or_insert(why);
            self.publish(
                &report.id,
                EventKind::TaskFinished {
                    status,
                    exit_code: None,
                    duration_ms: 0,
                    files_changed: Vec::new(),
                    reason: report.reason.clone(),
                },
            );
            run.done += 1;
        }
        debug_assert_eq!(run.done, run.tasks.len());
        ScheduleReport {
            tasks: run.reports,
            cancelled: run.cancelled,
        }
    }
}

/// A duration in whole milliseconds (saturating).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Waits for an attempt asked to stop; kills it if it takes longer than the grace.
async fn stop<F: Future<Output = TaskOutcome> + Unpin>(
    fut: &mut F,
    kill: &CancellationToken,
    grace: Duration,
) -> TaskOutcome {
    tokio::select! {
        outcome = &mut *fut => outcome,
        () = tokio::time::sleep(grace) => {
            kill.cancel();
            fut.await
        }
    }
}
