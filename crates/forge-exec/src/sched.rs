//! The DAG scheduler: runs a plan's tasks through a [`TaskRunner`], in critical-path order,
//! within the global concurrency and per-pool limits, with retries, timeouts and cancellation.
//!
//! The scheduler owns no processes and no files: everything a task does is the runner's
//! business, so the DAG logic is tested and benchmarked with in-process runners. Attempts run as
//! futures inside the scheduler's own task (no spawn per task), which keeps the cost per task in
//! the microseconds.

use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use forge_events::{EventKind, EventSink, TaskId, TaskStatus};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
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
    pub files_changed: Vec<String>,
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
    /// Every task, in plan order.
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
        }
    }

    fn publish(&self, task: &TaskId, kind: EventKind) {
        // The event stream is best effort here; durability errors surface from the journal.
        let _ = self.events.publish_task(task, kind);
    }

    /// Runs every task to an end (succeeded, failed, timed out, skipped or cancelled).
    #[allow(clippy::too_many_lines)] // one event loop, read top to bottom
    pub async fn run(&self, cancel: &CancelHandle) -> ScheduleReport {
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
        let priority = critical_path(plan, &deps);
        // Pools: index 0 is "no pool" (global limit only).
        let pool_names: Vec<&str> = plan.pools.keys().map(String::as_str).collect();
        let pool_of: Vec<usize> = plan
            .tasks
            .iter()
            .map(|t| {
                t.pool
                    .as_deref()
                    .and_then(|p| pool_names.iter().position(|n| *n == p))
                    .map_or(0, |i| i + 1)
            })
            .collect();
        let pool_limit: Vec<usize> = std::iter::once(usize::MAX)
            .chain(plan.pools.values().copied())
            .collect();
        let mut pool_running = vec![0usize; pool_limit.len()];
        let mut ready: Vec<BinaryHeap<Ready>> =
            (0..pool_limit.len()).map(|_| BinaryHeap::new()).collect();

        let mut state: Vec<State> = deps.iter().map(|d| State::Pending(d.len())).collect();
        let mut reports: Vec<TaskReport> = plan
            .tasks
            .iter()
            .map(|t| TaskReport {
                id: t.id.clone(),
                status: TaskStatus::Skipped,
                attempts: 0,
                reason: None,
                outcome: None,
            })
            .collect();
        // Cancelled when new starts stop (cancel or fail_fast): pending retries end at once.
        let stop_starts = CancellationToken::new();
        // After a graceful cancel, attempts get `kill_grace` to stop before they are killed.
        let mut kill_timer: Option<Pin<Box<tokio::time::Sleep>>> = None;

        // Resume: what an interrupted run finished stays finished; numbering goes on.
        let mut first_attempt = vec![0u32; n];
        let mut done = 0usize;
        let mut finished_before: Vec<(usize, TaskStatus)> = Vec::new();
        for (i, task) in plan.tasks.iter().enumerate() {
            match self.options.prior.get(&task.id) {
                Some(PriorTask::Finished { status, reason }) => {
                    state[i] = State::Done;
                    done += 1;
                    reports[i].status = *status;
                    reports[i].reason.clone_from(reason);
                    finished_before.push((i, *status));
                }
                Some(PriorTask::Attempted { attempts, failed }) => {
                    reports[i].attempts = *attempts;
                    first_attempt[i] = attempts.saturating_sub(*failed);
                }
                None => {}
            }
        }
        for &(i, status) in &finished_before {
            if status == TaskStatus::Succeeded {
                for &t in &dependents[i] {
                    if let State::Pending(k) = state[t] {
                        state[t] = State::Pending(k.saturating_sub(1));
                    }
                }
            } else {
                let mut stack = dependents[i].clone();
                while let Some(t) = stack.pop() {
                    if matches!(state[t], State::Pending(_)) {
                        state[t] = State::Done;
                        done += 1;
                        reports[t].status = TaskStatus::Skipped;
                        reports[t].reason = Some(format!(
                            "skipped because `{}` did not succeed",
                            plan.tasks[i].id
                        ));
                        self.publish(
                            &plan.tasks[t].id,
                            EventKind::TaskFinished {
                                status: TaskStatus::Skipped,
                                exit_code: None,
                                duration_ms: 0,
                                files_changed: Vec::new(),
                                reason: reports[t].reason.clone(),
                            },
                        );
                        stack.extend(dependents[t].iter().copied());
                    }
                }
            }
        }

        for (i, task) in plan.tasks.iter().enumerate() {
            if state[i] == State::Done {
                continue;
            }
            self.publish(
                &task.id,
                EventKind::TaskQueued {
                    after: task.after.clone(),
                    estimate_ms: task
                        .estimate
                        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                },
            );
            if state[i] == State::Pending(0) {
                state[i] = State::Ready;
                ready[pool_of[i]].push(Ready {
                    priority: priority[i],
                    earlier: std::cmp::Reverse(i),
                });
            }
        }

        let mut running = 0usize;
        let mut stopping: Option<String> = None;
        let mut cancelled = false;
        let mut pending: FuturesUnordered<Pending<'_>> = FuturesUnordered::new();
        // Retries whose back-off is over. A task waiting to retry keeps its place: its slot (in
        // `running` and its pool) stays taken through the back-off and its retry starts before
        // anything else, so a runner that keeps the failed attempt's locks for the retry never
        // waits behind a task that waits for those locks.
        let mut due: std::collections::VecDeque<usize> = std::collections::VecDeque::new();

        loop {
            // Start what may start.
            while stopping.is_none() && running < plan.concurrency.max(1) {
                let i = if let Some(i) = due.pop_front() {
                    i
                } else {
                    // The best ready task among pools with room.
                    let best = (0..ready.len())
                        .filter(|&p| pool_running[p] < pool_limit[p])
                        .filter_map(|p| ready[p].peek().map(|r| (r, p)))
                        .max_by(|a, b| a.0.cmp(b.0))
                        .map(|(_, p)| p);
                    let Some(p) = best else { break };
                    let Some(Ready { earlier, .. }) = ready[p].pop() else {
                        break;
                    };
                    earlier.0
                };
                let p = pool_of[i];
                state[i] = State::Running;
                running += 1;
                pool_running[p] += 1;
                reports[i].attempts += 1;
                let attempt = reports[i].attempts;
                let task = &plan.tasks[i];
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
                    self.publish(
                        &task.id,
                        EventKind::TaskStarted {
                            attempt,
                            agent: task.agent.clone(),
                            workspace: String::new(),
                            strategy: String::new(),
                        },
                    );
                }
                let runner = self.runner;
                let kill_grace = self.options.kill_grace;
                pending.push(Box::pin(async move {
                    let fut = runner.run(task, attempt, ctx);
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
                }));
            }

            if pending.is_empty() {
                break;
            }

            let msg = tokio::select! {
                msg = pending.next() => msg,
                () = cancel.graceful.cancelled(), if !cancelled => {
                    stopping.get_or_insert_with(|| "the run was cancelled".into());
                    cancelled = true;
                    stop_starts.cancel();
                    kill_timer = Some(Box::pin(tokio::time::sleep(self.options.kill_grace)));
                    continue;
                }
                () = async { if let Some(t) = kill_timer.as_mut() { t.await } }, if kill_timer.is_some() => {
                    cancel.kill.cancel();
                    kill_timer = None;
                    continue;
                }
            };
            let Some(msg) = msg else { break };
            match msg {
                Msg::RetryDue { task: i } => {
                    // The slot it kept is handed to its retry, which starts first.
                    running -= 1;
                    pool_running[pool_of[i]] -= 1;
                    if stopping.is_some() {
                        continue;
                    }
                    state[i] = State::Ready;
                    due.push_back(i);
                }
                Msg::Finished {
                    task: i,
                    mut outcome,
                    started,
                } => {
                    running -= 1;
                    pool_running[pool_of[i]] -= 1;
                    let task = &plan.tasks[i];
                    if cancel.is_cancelled() && outcome.status != TaskStatus::Succeeded {
                        outcome.status = TaskStatus::Cancelled;
                    }
                    let duration_ms =
                        u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                    let attempt = reports[i].attempts;
                    let retry = outcome.status != TaskStatus::Succeeded
                        && stopping.is_none()
                        && attempt - first_attempt[i] <= task.retries
                        && should_retry(&task.retry_on, &outcome);
                    self.publish(
                        &task.id,
                        EventKind::TaskFinished {
                            status: outcome.status,
                            exit_code: outcome.exit_code,
                            duration_ms,
                            files_changed: outcome.files_changed.clone(),
                            reason: (outcome.status != TaskStatus::Succeeded)
                                .then(|| outcome.describe()),
                        },
                    );
                    if retry {
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
                            &task.id,
                            EventKind::TaskRetrying {
                                attempt: attempt + 1,
                                delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                                reason: outcome.describe(),
                            },
                        );
                        // It keeps its slot through the back-off (see `due`).
                        running += 1;
                        pool_running[pool_of[i]] += 1;
                        state[i] = State::Backoff;
                        reports[i].outcome = Some(outcome);
                        let stop = stop_starts.clone();
                        pending.push(Box::pin(async move {
                            tokio::select! {
                                () = tokio::time::sleep(delay) => {}
                                () = stop.cancelled() => {}
                            }
                            Msg::RetryDue { task: i }
                        }));
                        continue;
                    }
                    state[i] = State::Done;
                    done += 1;
                    self.runner.task_ended(&task.id);
                    reports[i].status = outcome.status;
                    if outcome.status != TaskStatus::Succeeded {
                        reports[i].reason = Some(outcome.describe());
                    }
                    reports[i].outcome = Some(outcome.clone());
                    if outcome.status == TaskStatus::Succeeded {
                        for &t in &dependents[i] {
                            if let State::Pending(k) = state[t] {
                                state[t] = if k == 1 {
                                    State::Ready
                                } else {
                                    State::Pending(k - 1)
                                };
                                if k == 1 {
                                    ready[pool_of[t]].push(Ready {
                                        priority: priority[t],
                                        earlier: std::cmp::Reverse(t),
                                    });
                                }
                            }
                        }
                    } else if !cancelled {
                        // Everything downstream is skipped, with the reason. (On a cancelled
                        // run, what never started is reported as cancelled at the end.)
                        let mut stack = dependents[i].clone();
                        while let Some(t) = stack.pop() {
                            if matches!(state[t], State::Pending(_)) {
                                state[t] = State::Done;
                                done += 1;
                                reports[t].status = TaskStatus::Skipped;
                                reports[t].reason = Some(format!(
                                    "skipped because `{}` {}",
                                    task.id,
                                    if outcome.status == TaskStatus::Skipped {
                                        "was skipped"
                                    } else {
                                        "did not succeed"
                                    }
                                ));
                                self.publish(
                                    &plan.tasks[t].id,
                                    EventKind::TaskFinished {
                                        status: TaskStatus::Skipped,
                                        exit_code: None,
                                        duration_ms: 0,
                                        files_changed: Vec::new(),
                                        reason: reports[t].reason.clone(),
                                    },
                                );
                                stack.extend(dependents[t].iter().copied());
                            }
                        }
                        if plan.on_failure == OnFailure::FailFast
                            && stopping.is_none()
                            && outcome.status != TaskStatus::Cancelled
                        {
                            stopping = Some(format!(
                                "not started: fail_fast stopped new starts after `{}` failed",
                                task.id
                            ));
                            stop_starts.cancel();
                        }
                    }
                }
            }
        }

        // Whatever never ran (cancelled, or stopped by fail_fast) is reported as such.
        let reason = stopping.unwrap_or_else(|| "not started".into());
        for i in 0..n {
            if state[i] != State::Done {
                if reports[i].attempts > 0 {
                    self.runner.task_ended(&plan.tasks[i].id);
                }
                // A task waiting for its retry keeps the status of the attempt it made.
                let status = match (&reports[i].outcome, cancelled) {
                    (_, true) => TaskStatus::Cancelled,
                    (Some(last), false) => last.status,
                    (None, false) => TaskStatus::Skipped,
                };
                reports[i].status = status;
                let why = match &reports[i].outcome {
                    Some(last) => format!("{}; no retry: {reason}", last.describe()),
                    None => reason.clone(),
                };
                reports[i].reason.get_or_insert(why);
                self.publish(
                    &plan.tasks[i].id,
                    EventKind::TaskFinished {
                        status,
                        exit_code: None,
                        duration_ms: 0,
                        files_changed: Vec::new(),
                        reason: reports[i].reason.clone(),
                    },
                );
                done += 1;
            }
        }
        debug_assert_eq!(done, n);
        ScheduleReport {
            tasks: reports,
            cancelled,
        }
    }
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
