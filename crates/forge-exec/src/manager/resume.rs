//! Resume: what the journal says was done (the integration is rebuilt from it by
//! [`super::integrated::IntegrationState::rebuild`]), and the leftovers of a dead process cleaned up.

use std::collections::HashMap;
use std::time::Duration;

use forge_events::{Event, EventKind, RunId, TaskId, TaskStatus};

use crate::ExecError;
use crate::plan::Plan;
use crate::sched::{PriorTask, TaskOutcome, should_retry};
use crate::store::RunStore;

/// What an interrupted run had done.
#[derive(Debug, Default)]
pub(crate) struct Prior {
    /// Per task: finished for good, or attempted.
    pub(crate) tasks: HashMap<TaskId, PriorTask>,
    /// Finished tasks' (task, attempt) in the order they were integrated.
    pub(crate) integrated: Vec<(TaskId, u32)>,
    /// Tasks retried (`task_retry_requested`): how their next attempt starts.
    pub(crate) retries: HashMap<TaskId, super::retry::RetryContext>,
}

#[derive(Debug, Default, Clone)]
struct Seen {
    attempt: u32,
    failed: u32,
    finished: Option<(TaskStatus, Option<String>, Option<i32>)>,
    started: bool,
    integrated_at: Option<usize>,
}

/// A retry request: the task and everything depending on it start over (their results and
/// retry budgets are gone; attempts keep their numbers), and the task's next attempt starts
/// from its last one.
fn start_over<'h>(
    seen: &mut HashMap<&'h str, Seen>,
    requests: &mut Vec<(TaskId, String, u32)>,
    task: &'h TaskId,
    dependents: &'h [TaskId],
    prompt: &str,
) {
    for id in std::iter::once(task).chain(dependents) {
        let s = seen.entry(id.as_str()).or_default();
        s.failed = 0;
        s.finished = None;
        s.integrated_at = None;
    }
    let from = seen.get(task.as_str()).map_or(0, |s| s.attempt);
    requests.retain(|(t, ..)| t != task);
    requests.push((task.clone(), prompt.to_owned(), from));
}

/// Folds the journal into what resume needs.
pub(crate) fn analyze(plan: &Plan, history: &[Event]) -> Prior {
    let mut seen: HashMap<&str, Seen> = HashMap::new();
    let mut sessions: HashMap<(TaskId, u32), String> = HashMap::new();
    let mut requests: Vec<(TaskId, String, u32)> = Vec::new();
    for (pos, event) in history.iter().enumerate() {
        let Some(task) = event.task.as_ref() else {
            continue;
        };
        if let EventKind::TaskRetryRequested {
            prompt, dependents, ..
        } = &event.kind
        {
            start_over(&mut seen, &mut requests, task, dependents, prompt);
            continue;
        }
        let s = seen.entry(task.as_str()).or_default();
        match &event.kind {
            EventKind::TaskSession { attempt, session } => {
                sessions.insert((task.clone(), *attempt), session.clone());
            }
            EventKind::TaskStarted { attempt, .. } => {
                s.attempt = *attempt;
                s.started = true;
                s.finished = None;
                s.integrated_at = None;
            }
            EventKind::TaskFinished {
                status,
                reason,
                exit_code,
                ..
            } => {
                if !s.started {
                    continue; // skipped without running: recomputed
                }
                if matches!(status, TaskStatus::Failed | TaskStatus::TimedOut) {
                    s.failed += 1;
                }
                s.finished = Some((*status, reason.clone(), *exit_code));
            }
            EventKind::TaskRetrying { .. } => s.finished = None,
            EventKind::MergeIntegrated { .. } => s.integrated_at = Some(pos),
            _ => {}
        }
    }
    let mut prior = Prior::default();
    let mut order: Vec<(usize, TaskId, u32)> = Vec::new();
    for task in &plan.tasks {
        let Some(s) = seen.get(task.id.as_str()) else {
            continue;
        };
        if !s.started {
            continue;
        }
        let attempted = PriorTask::Attempted {
            attempts: s.attempt,
            failed: s.failed,
        };
        let entry = match &s.finished {
            Some((TaskStatus::Succeeded, _, _)) => match s.integrated_at {
                Some(pos) => {
                    order.push((pos, task.id.clone(), s.attempt));
                    PriorTask::Finished {
                        status: TaskStatus::Succeeded,
                        reason: None,
                    }
                }
                // A candidate is never integrated: its persisted result waits to be chosen.
                None if task.candidate_of.is_some() => PriorTask::Finished {
                    status: TaskStatus::Succeeded,
                    reason: None,
                },
                // Succeeded but its merge was not recorded: run it again to be safe.
                None => attempted,
            },
            Some((status @ (TaskStatus::Failed | TaskStatus::TimedOut), reason, exit_code)) => {
                // The process may have died between the failure and its retry being recorded.
                let outcome = TaskOutcome {
                    status: *status,
                    exit_code: *exit_code,
                    signal: None,
                    files_changed: Vec::new(),
                    message: reason.clone(),
                };
                if s.failed <= task.retries && should_retry(&task.retry_on, &outcome) {
                    attempted
                } else {
                    PriorTask::Finished {
                        status: *status,
                        reason: reason.clone(),
                    }
                }
            }
            // Cancelled, or interrupted with no end recorded.
            _ => attempted,
        };
        prior.tasks.insert(task.id.clone(), entry);
    }
    order.sort_by_key(|(pos, ..)| *pos);
    prior.integrated = order.into_iter().map(|(_, t, a)| (t, a)).collect();
    prior.retries = super::retry::contexts(requests, &sessions);
    prior
}

/// Attempts a cluster runner can take over (still running where a dead process left them)
/// run again under their own number: the scheduler numbers a task's next attempt from
/// `attempts + 1`, so an interrupted attempt `n` that is reattachable counts `n - 1`.
pub(crate) fn reattach(prior: &mut Prior, reattachable: &[(TaskId, u32)]) {
    for (task, attempt) in reattachable {
        if let Some(PriorTask::Attempted { attempts, .. }) = prior.tasks.get_mut(task)
            && *attempts == *attempt
        {
            *attempts = attempt.saturating_sub(1);
        }
    }
}

/// Stops and removes what a dead process running `run` left behind: agent processes (found by
/// their `FORGE_RUN_ID`), workspaces (mounts, git worktrees, directories), snapshot layers, and
/// a torn apply (finished or undone by `forge_merge::recover`).
pub fn cleanup_leftovers(store: &RunStore, run: &RunId) -> Result<(), ExecError> {
    kill_run_processes(run);
    let work = store.work_dir(run);
    forge_staging::gc(&work)?;
    let layers = work.join("layers");
    if layers.exists() {
        std::fs::remove_dir_all(&layers).map_err(|e| ExecError::io("remove", &layers, e))?;
    }
    forge_merge::recover(&store.run_dir(run))?;
    Ok(())
}

/// Kills every process (other than this one) whose environment says it belongs to `run`, until
/// none is left (a dying agent may still fork for a moment).
pub(crate) fn kill_run_processes(run: &RunId) {
    let marker = format!("FORGE_RUN_ID={run}");
    let me = std::process::id();
    for _ in 0..50 {
        let pids = run_processes(&marker, me);
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            if let Some(pid) = i32::try_from(pid)
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run_processes(marker: &str, me: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        // Zombies keep no environment and need no kill.
        let Ok(env) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        // A cluster job's processes (`forge attempt` and its agent, here when a node runs on
        // this machine) are the cluster's: the runner reattaches to the job or stops it.
        let mut vars = env.split(|b| *b == 0);
        if vars.clone().any(|var| var == marker.as_bytes())
            && !vars.any(|var| var.starts_with(b"FORGE_ATTEMPT_TOKEN="))
        {
            out.push(pid);
        }
    }
    out
}
