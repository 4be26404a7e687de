//! Tasks added to a run in progress (`forge add <run> --task …`).
//!
//! The running process is the journal's only writer, so another process cannot add a task by
//! itself. [`add_task`] checks the task against the run's plan (a unique id, valid claims,
//! `after` naming tasks of the run, a known agent), writes it as a request file into the run's
//! folder (`requests/<task>.json`, atomically) and waits. The running manager looks at that
//! folder while its scheduler runs: it takes the request (renaming it, so it is
//! taken once), checks it again against the plan as it stands, journals `task_added` and hands
//! the task to the scheduler, which runs it like a task of the plan — after its `after` tasks,
//! under the locks of its claims. A request it refuses gets `requests/<task>.rejected` with the
//! reason. [`add_task`] returns when the journal holds the `task_added`, or fails with the
//! reason, or when the run ends first.
//!
//! The journal is what makes an added task part of the run: a resumed run reads the
//! `task_added` events and adds those tasks to the plan from `plan.toml`,
//! and so do the commands that read a finished run's plan ([`run_plan`]).
//!
//! An added task's `appends` must name a pattern the run already merges by a rule (a `[merge]`
//! pattern or another task's `appends`): the run's merge rules are fixed when it starts.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use forge_events::{Event, EventKind, EventSink, RunId, RunState, TaskId};
use forge_locks::{Claim, LockMode};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::ExecError;
use crate::plan::{Plan, PlanOptions, Task};
use crate::store::{RunStore, write_atomically};
use forge_agents::did_you_mean;

/// How often the running manager looks for requests, and [`add_task`] for the answer.
const POLL: Duration = Duration::from_millis(50);

/// How long [`add_task`] waits for the running process to take the task.
pub const ADD_TIMEOUT: Duration = Duration::from_secs(30);

/// A task to add to a run in progress, as `forge add` gives it (and as the request file holds
/// it). Claims are globs; `after` names tasks of the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// The task's id, unique in the run.
    pub id: String,
    /// What the agent is asked to do.
    pub prompt: String,
    /// The agent profile.
    pub agent: String,
    /// Shared claims.
    #[serde(default)]
    pub reads: Vec<String>,
    /// Exclusive claims.
    #[serde(default)]
    pub writes: Vec<String>,
    /// Claims shared with other appenders.
    #[serde(default)]
    pub appends: Vec<String>,
    /// Tasks that must succeed before it starts.
    #[serde(default)]
    pub after: Vec<String>,
}

impl TaskSpec {
    /// The spec of a `task_added` event (`None` for any other event).
    pub fn from_event(event: &Event) -> Option<Self> {
        let EventKind::TaskAdded {
            prompt,
            agent,
            reads,
            writes,
            appends,
            after,
        } = &event.kind
        else {
            return None;
        };
        Some(Self {
            id: event.task.as_ref()?.to_string(),
            prompt: prompt.clone(),
            agent: agent.clone(),
            reads: reads.clone(),
            writes: writes.clone(),
            appends: appends.clone(),
            after: after.iter().map(ToString::to_string).collect(),
        })
    }

    /// The `task_added` event of this (checked) task.
    fn event(task: &Task) -> EventKind {
        let patterns = |claims: &[Claim]| -> Vec<String> {
            claims
                .iter()
                .map(|c| c.pattern.as_str().to_owned())
                .collect()
        };
        EventKind::TaskAdded {
            prompt: task.prompt.clone(),
            agent: task.agent.clone(),
            reads: patterns(&task.reads),
            writes: patterns(&task.writes),
            appends: patterns(&task.appends),
            after: task.after.clone(),
        }
    }

    /// The task, with every problem of its own fields (id, prompt, claims, `after` ids).
    fn build(&self, problems: &mut Vec<String>) -> Option<Task> {
        let id = match TaskId::new(self.id.as_str()) {
            Ok(id) => Some(id),
            Err(e) => {
                problems.push(format!("`{}` is not a valid task id: {e}", self.id));
                None
            }
        };
        if self.prompt.trim().is_empty() {
            problems.push("the prompt is empty: say what the agent should do".into());
        }
        if self.agent.trim().is_empty() {
            problems.push("no agent given".into());
        }
        let mut claims = |patterns: &[String], mode: LockMode, flag: &str| -> Vec<Claim> {
            patterns
                .iter()
                .filter_map(|p| match Claim::new(p, mode) {
                    Ok(claim) => Some(claim),
                    Err(e) => {
                        problems.push(format!("invalid claim `{p}` in {flag}: {e}"));
                        None
                    }
                })
                .collect()
        };
        let reads = claims(&self.reads, LockMode::Read, "--reads");
        let writes = claims(&self.writes, LockMode::Write, "--writes");
        let appends = claims(&self.appends, LockMode::Append, "--appends");
        let mut after = Vec::new();
        for dep in &self.after {
            match TaskId::new(dep.as_str()) {
                Ok(dep) => after.push(dep),
                Err(e) => problems.push(format!("--after `{dep}` is not a valid task id: {e}")),
            }
        }
        let mut task = Task::new(id?, self.agent.clone(), self.prompt.clone());
        task.reads = reads;
        task.writes = writes;
        task.appends = appends;
        task.after = after;
        Some(task)
    }

    /// The task, checked against the run's `plan` (which holds the tasks added so far) the
    /// way a plan's tasks are: a unique id, `after` naming tasks of the run, a known agent, and
    /// `appends` the run merges by a rule. Every problem is reported at once.
    pub fn check(&self, plan: &Plan, agents: &[String], run: &RunId) -> Result<Task, ExecError> {
        let mut problems = Vec::new();
        let task = self.build(&mut problems);
        if let Some(task) = &task {
            if plan.task(&task.id).is_some() {
                problems.push(format!(
                    "the run already has a task `{}`; choose another id with --id",
                    task.id
                ));
            }
            for dep in &task.after {
                if *dep == task.id {
                    problems.push(format!("task `{}` runs after itself", task.id));
                } else if let Some(group) = plan.task(dep).and_then(|t| t.candidate_of.as_ref()) {
                    problems.push(format!(
                        "--after `{dep}`: it is a candidate of `{group}`, which is never \
                         integrated until you choose one; choose it first (`forge apply --tasks \
                         {dep}`), then run the task on top"
                    ));
                } else if plan.task(dep).is_none() {
                    let ids = plan.tasks.iter().map(|t| t.id.as_str());
                    problems.push(match did_you_mean(dep.as_str(), ids) {
                        Some(near) => format!(
                            "--after `{dep}` is not a task of this run; did you mean `{near}`?"
                        ),
                        None => format!(
                            "--after `{dep}` is not a task of this run (its tasks: {})",
                            plan.tasks
                                .iter()
                                .map(|t| t.id.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    });
                }
            }
            if !agents.contains(&task.agent) {
                problems.push(
                    match did_you_mean(&task.agent, agents.iter().map(String::as_str)) {
                        Some(near) => {
                            format!("unknown agent `{}`; did you mean `{near}`?", task.agent)
                        }
                        None => format!(
                            "unknown agent `{}` (known agents: {})",
                            task.agent,
                            agents.join(", ")
                        ),
                    },
                );
            }
            for claim in &task.appends {
                let pattern = claim.pattern.as_str();
                let merged = plan.merge.iter().any(|r| r.pattern.as_str() == pattern)
                    || plan
                        .tasks
                        .iter()
                        .flat_map(|t| &t.appends)
                        .any(|c| c.pattern.as_str() == pattern);
                if !merged {
                    problems.push(format!(
                        "--appends `{pattern}`: the run has no merge rule for it (its rules are fixed when it starts: a `[merge]` pattern or another task's `appends`); claim it with --writes instead"
                    ));
                }
            }
        }
        match task {
            Some(task) if problems.is_empty() => Ok(task),
            _ => Err(ExecError::TaskNotAdded {
                run: run.to_string(),
                task: self.id.clone(),
                reason: problems.join("; "),
            }),
        }
    }
}

/// Adds the tasks of the `task_added` events in `history` that `plan` does not have yet (a
/// resumed run's plan, read from `plan.toml`).
pub(crate) fn extend_plan(
    plan: &mut Plan,
    history: &[Event],
    journal: &Path,
) -> Result<(), ExecError> {
    for event in history {
        let Some(spec) = TaskSpec::from_event(event) else {
            continue;
        };
        let mut problems = Vec::new();
        match spec.build(&mut problems) {
            Some(task) if problems.is_empty() => {
                if plan.task(&task.id).is_none() {
                    plan.tasks.push(task);
                }
            }
            _ => {
                return Err(ExecError::Corrupt {
                    path: journal.to_path_buf(),
                    reason: format!(
                        "its `task_added` event (seq {}) for `{}` is invalid: {}",
                        event.seq,
                        spec.id,
                        problems.join("; ")
                    ),
                });
            }
        }
    }
    Ok(())
}

/// The plan of `run` as it stands: its `plan.toml` with every task added to it since.
pub fn run_plan(store: &RunStore, run: &RunId, opts: &PlanOptions) -> Result<Plan, ExecError> {
    let mut plan = Plan::load(&store.plan_copy(run), opts)?;
    let journal = store.journal(run);
    let history = forge_events::read_journal(&journal)?;
    extend_plan(&mut plan, &history, &journal)?;
    Ok(plan)
}

/// A request file of the run: `requests/<task>.<ext>`.
fn request_path(store: &RunStore, run: &RunId, task: &str, ext: &str) -> PathBuf {
    store.layout(run).requests().join(format!("{task}.{ext}"))
}

/// Hands `spec` to the process running `run` (in the repository of `store`) and waits until
/// it journals the task (at most `timeout`). `opts.agents` are the agents that exist.
///
/// Fails with a clear reason when the run is unknown, finished or no longer running, when the
/// task does not fit the run, when the running process refuses it, or when the run ends first.
pub fn add_task(
    store: &RunStore,
    run: &RunId,
    spec: &TaskSpec,
    opts: &PlanOptions,
    timeout: Duration,
) -> Result<TaskId, ExecError> {
    if !store.exists(run) {
        return Err(ExecError::RunNotFound {
            run: run.to_string(),
            dir: store.runs_dir(),
        });
    }
    let journal = store.journal(run);
    let state = RunState::from_journal(&journal)?;
    let refuse = |reason: String| ExecError::TaskNotAdded {
        run: run.to_string(),
        task: spec.id.clone(),
        reason,
    };
    if state.phase.is_finished() {
        let how = match state.phase {
            forge_events::RunPhase::Succeeded => "succeeded",
            forge_events::RunPhase::Cancelled => "cancelled",
            _ => "failed",
        };
        return Err(refuse(format!(
            "the run has finished ({how}); tasks can be added only to a run in progress — start a new one with `forge run --task \"…\"`"
        )));
    }
    if state.phase == forge_events::RunPhase::Gating {
        return Err(refuse(
            "every task of the run has ended and its gate is running: it takes no more tasks"
                .into(),
        ));
    }
    if !store.owner(run).is_some_and(|o| o.alive) {
        return Err(refuse(format!(
            "the run is not running (its process is gone); resume it with `forge resume {run}`, then add the task"
        )));
    }
    let plan = run_plan(store, run, opts)?;
    let task = spec.check(&plan, &opts.agents, run)?;
    let request = request_path(store, run, task.id.as_str(), "json");
    let dir = store.layout(run).requests();
    std::fs::create_dir_all(&dir).map_err(|e| ExecError::io("create", &dir, e))?;
    if request.exists() || request_path(store, run, task.id.as_str(), "taking").exists() {
        return Err(refuse(format!(
            "a task `{}` is already being added to the run",
            task.id
        )));
    }
    let body = serde_json::to_vec_pretty(spec)
        .map_err(|e| ExecError::Store(format!("cannot write the request: {e}")))?;
    write_atomically(&request, &body)?;
    wait_for_answer(store, run, &task.id, state.last_seq + 1, timeout).inspect_err(|_| {
        // Not taken: withdraw the request (unless the run is taking it right now).
        let _ = std::fs::remove_file(&request);
    })
}

/// Waits until the journal holds `task_added` for `task`, the run refuses it, or the run ends.
fn wait_for_answer(
    store: &RunStore,
    run: &RunId,
    task: &TaskId,
    from_seq: u64,
    timeout: Duration,
) -> Result<TaskId, ExecError> {
    let refuse = |reason: String| ExecError::TaskNotAdded {
        run: run.to_string(),
        task: task.to_string(),
        reason,
    };
    let rejected = request_path(store, run, task.as_str(), "rejected");
    let mut follow = forge_events::follow(store.journal(run), from_seq)?;
    let deadline = Instant::now() + timeout;
    loop {
        for event in follow.drain()? {
            match &event.kind {
                EventKind::TaskAdded { .. } if event.task.as_ref() == Some(task) => {
                    return Ok(task.clone());
                }
                EventKind::RunFinished { status, .. } => {
                    return Err(refuse(format!(
                        "the run finished ({status}) before it took the task"
                    )));
                }
                _ => {}
            }
        }
        if let Ok(reason) = std::fs::read_to_string(&rejected) {
            let _ = std::fs::remove_file(&rejected);
            return Err(refuse(reason.trim().to_owned()));
        }
        if !store.owner(run).is_some_and(|o| o.alive) {
            return Err(refuse(
                "the run's process ended before it took the task".into(),
            ));
        }
        if Instant::now() >= deadline {
            return Err(refuse(format!(
                "the run's process did not take the task within {} s",
                timeout.as_secs()
            )));
        }
        std::thread::sleep(POLL);
    }
}

/// The manager's side: takes the requests of `forge add` while the scheduler runs.
pub(crate) struct Intake {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<bool>,
}

/// Starts taking requests for the scheduler, which receives the tasks on the returned channel.
pub(crate) fn intake(shared: &Arc<Shared>) -> (mpsc::Receiver<Task>, Intake) {
    let (tx, rx) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let task = tokio::spawn(take_requests(shared.clone(), tx, stop.clone()));
    (rx, Intake { stop, task })
}

impl Intake {
    /// Stops taking requests (the scheduler has ended); requests left are refused. Whether
    /// any task was added.
    pub(crate) async fn finish(self) -> bool {
        self.stop.cancel();
        self.task.await.unwrap_or(false)
    }
}

/// Whether a gate fix round may start. A round re-runs the run from the plan this process
/// started with, which does not hold the tasks added since: rather than drop their work, the
/// run says so and ends (`forge retry` on the culprit, or `forge resume`, knows them).
pub(crate) fn fix_round_allowed(
    shared: &Shared,
    took_added: bool,
    request: &crate::manager::RetryRequest,
) -> bool {
    if took_added {
        let _ = shared.events.publish_run(EventKind::RunWarning {
            message: format!(
                "no gate fix round: this run took tasks added with `forge add`; retry `{}` with `forge retry {} {}`",
                request.task, request.task, shared.run
            ),
        });
    }
    !took_added
}

async fn take_requests(
    shared: Arc<Shared>,
    tx: mpsc::Sender<Task>,
    stop: CancellationToken,
) -> bool {
    let dir = shared.store.layout(&shared.run).requests();
    let mut added: Vec<Task> = Vec::new();
    let mut tick = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => break,
            () = tx.closed() => break,
        }
        for id in waiting_requests(&dir) {
            take(&shared, &tx, &dir, &id, &mut added).await;
        }
    }
    for id in waiting_requests(&dir) {
        let taking = dir.join(format!("{id}.taking"));
        if std::fs::rename(dir.join(format!("{id}.json")), &taking).is_ok() {
            refuse(&dir, &id, "the run finished before it could take the task");
            let _ = std::fs::remove_file(&taking);
        }
    }
    !added.is_empty()
}

/// The ids of the requests waiting in `dir`, oldest name first.
fn waiting_requests(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut ids: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".json").map(str::to_owned)
        })
        .collect();
    ids.sort();
    ids
}

/// Writes why the request `id` was refused, for the `forge add` that waits for it.
fn refuse(dir: &Path, id: &str, reason: &str) {
    let _ = write_atomically(&dir.join(format!("{id}.rejected")), reason.as_bytes());
}

/// Takes one request: checks it, journals `task_added` and hands the task to the scheduler, or
/// refuses it.
async fn take(
    shared: &Shared,
    tx: &mpsc::Sender<Task>,
    dir: &Path,
    id: &str,
    added: &mut Vec<Task>,
) {
    let taking = dir.join(format!("{id}.taking"));
    // Taken once: a withdrawn request (its `forge add` gave up) is gone.
    if std::fs::rename(dir.join(format!("{id}.json")), &taking).is_err() {
        return;
    }
    let outcome = match accept(shared, &taking, added) {
        Ok(task) => match tx.reserve().await {
            Ok(permit) => {
                // Journaled before the scheduler hears of it: a crash from here on resumes
                // with the task.
                match shared.events.publish_task(&task.id, TaskSpec::event(&task)) {
                    Ok(_) => {
                        added.push(task.clone());
                        permit.send(task);
                        Ok(())
                    }
                    Err(e) => Err(format!("the run could not journal the task: {e}")),
                }
            }
            Err(_) => Err("the run is finishing and takes no more tasks".to_owned()),
        },
        Err(e) => Err(e.to_string()),
    };
    if let Err(reason) = outcome {
        refuse(dir, id, &reason);
    }
    let _ = std::fs::remove_file(&taking);
}

/// The task of a request file, checked against the plan as it stands now.
fn accept(shared: &Shared, path: &Path, added: &[Task]) -> Result<Task, ExecError> {
    let text = std::fs::read(path).map_err(|e| ExecError::io("read", path, e))?;
    let spec: TaskSpec = serde_json::from_slice(&text).map_err(|e| ExecError::TaskNotAdded {
        run: shared.run.to_string(),
        task: path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        reason: format!("the request {} is not valid: {e}", path.display()),
    })?;
    let mut plan = (*shared.plan).clone();
    plan.tasks.extend(added.iter().cloned());
    let agents: Vec<String> = shared.profiles.names().map(str::to_owned).collect();
    let task = spec.check(&plan, &agents, &shared.run)?;
    shared
        .profiles
        .check_available([task.agent.as_str()])
        .map_err(|e| ExecError::TaskNotAdded {
            run: shared.run.to_string(),
            task: spec.id.clone(),
            reason: e.to_string(),
        })?;
    Ok(task)
}
