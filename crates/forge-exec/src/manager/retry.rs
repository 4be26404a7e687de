//! Retry: one task of a finished, failed or interrupted run runs again, with feedback.
//!
//! ```text
//! ExecutionManager::builder().retry(run, RetryRequest::new(task, "…")).build()?.run(cancel)
//!   task_retry_requested  journaled first (task, the added instructions, its dependents)
//!   resume's analysis     folds it: the task and every task depending on it lose their earlier
//!                         result (their integration is not rebuilt), their retry budget starts
//!                         again; every other task's persisted ChangeSet is integrated as before
//!   the task's attempt    starts from the workspace state its previous attempt left (that
//!                         attempt's changes, persisted even when it failed) and continues the
//!                         agent's own session where its profile has `resume`; else a fresh
//!                         session gets the previous attempt's final message and diff
//!   then                  its dependents run on top; integration, gate and apply as in a run
//! ```
//!
//! Because the request is an event of the journal, a retry is resumable like any run: a
//! process killed in the middle of one leaves a journal whose fold says what is left to do.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;

use forge_events::{EventKind, TaskId};
use forge_staging::{BlobStore, ChangeSet};

use super::Shared;
use crate::ExecError;
use crate::plan::{Plan, Task};
use crate::store::read_json;
use forge_agents::{AgentEvent, OutputParser, Profile};

/// The most of the previous attempt's diff a fresh attempt's prompt carries, in bytes.
const DIFF_LIMIT: usize = 16 * 1024;

/// Who asked for a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetryOrigin {
    /// A person or a program: `forge retry`, the library, the dashboard, the MCP server.
    #[default]
    User,
    /// A gate fix round: the task was found to break the gate.
    Gate,
}

impl RetryOrigin {
    /// The word the journal uses (`task_retry_requested`'s `origin`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Gate => "gate",
        }
    }
}

/// What to run again: a task of an existing run, and what to tell its agent this time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryRequest {
    /// The task.
    pub task: TaskId,
    /// Instructions added to the task's prompt (may be empty: the task simply runs again).
    pub prompt: String,
    /// Who asked.
    pub origin: RetryOrigin,
}

impl RetryRequest {
    /// A retry of `task` asked by the user, with `prompt` added to its instructions.
    pub fn new(task: TaskId, prompt: impl Into<String>) -> Self {
        Self {
            task,
            prompt: prompt.into(),
            origin: RetryOrigin::User,
        }
    }
}

/// Every task that depends on `task`, directly or through others, in plan order.
pub fn dependents(plan: &Plan, task: &TaskId) -> Vec<TaskId> {
    let mut hit: HashSet<&TaskId> = HashSet::from([task]);
    // Plan order is a topological order of `after` only for hand-written plans; iterate until
    // nothing changes so any order works.
    loop {
        let before = hit.len();
        for t in &plan.tasks {
            if !hit.contains(&t.id) && t.after.iter().any(|a| hit.contains(a)) {
                hit.insert(&t.id);
            }
        }
        if hit.len() == before {
            break;
        }
    }
    plan.tasks
        .iter()
        .filter(|t| t.id != *task && hit.contains(&t.id))
        .map(|t| t.id.clone())
        .collect()
}

/// The journal event of a request.
pub(crate) fn request_event(plan: &Plan, request: &RetryRequest) -> EventKind {
    EventKind::TaskRetryRequested {
        prompt: request.prompt.clone(),
        dependents: dependents(plan, &request.task),
        origin: request.origin.as_str().to_owned(),
    }
}

/// Checks a request against the run before anything is journaled: the task must be in the
/// plan and must not be waiting for a dependency that failed (retry that one instead).
pub(crate) fn check_request(
    plan: &Plan,
    run: &forge_events::RunId,
    history: &[forge_events::Event],
    request: &RetryRequest,
) -> Result<(), ExecError> {
    let Some(task) = plan.tasks.iter().find(|t| t.id == request.task) else {
        let ids: Vec<&str> = plan.tasks.iter().map(|t| t.id.as_str()).collect();
        let hint = forge_agents::did_you_mean(request.task.as_str(), ids.iter().copied())
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        return Err(ExecError::TaskNotInRun {
            run: run.to_string(),
            task: request.task.to_string(),
            reason: format!(
                "the run's plan has no such task{hint}; its tasks are {}",
                ids.join(", ")
            ),
        });
    };
    let prior = super::resume::analyze(plan, history);
    if !prior.tasks.contains_key(&task.id) {
        // It never ran: if that is because a task it depends on (directly or not) failed,
        // that task is the one to retry.
        let index = crate::plan::positions(plan.tasks.iter().map(|t| &t.id));
        let mut failed: Vec<&str> = Vec::new();
        let mut stack: Vec<&TaskId> = task.after.iter().collect();
        let mut seen: HashSet<&TaskId> = HashSet::new();
        while let Some(dep) = stack.pop() {
            if !seen.insert(dep) {
                continue;
            }
            match prior.tasks.get(dep) {
                Some(crate::sched::PriorTask::Finished { status, .. })
                    if *status != forge_events::TaskStatus::Succeeded =>
                {
                    failed.push(dep.as_str());
                }
                None => {
                    if let Some(&i) = index.get(dep) {
                        stack.extend(plan.tasks[i].after.iter());
                    }
                }
                Some(_) => {}
            }
        }
        failed.sort_unstable();
        if !failed.is_empty() {
            let named: Vec<String> = failed.iter().map(|f| format!("`{f}`")).collect();
            return Err(ExecError::TaskNotInRun {
                run: run.to_string(),
                task: task.id.to_string(),
                reason: format!(
                    "it never ran: it waits for {} which did not succeed; retry {} instead (the tasks depending on it, this one among them, run again after it)",
                    named.join(", "),
                    named[0]
                ),
            });
        }
    }
    Ok(())
}

/// A retried task's starting point, from the journal's latest request for it.
#[derive(Debug, Clone, Default)]
pub(crate) struct RetryContext {
    /// The added instructions.
    pub(crate) prompt: String,
    /// The last attempt before the request (0: the task never ran).
    pub(crate) from_attempt: u32,
    /// That attempt's agent session, if it named one.
    pub(crate) session: Option<String>,
}

/// How one attempt starts: its prompt, the session it continues, the changes it starts from.
#[derive(Debug, Default)]
pub(crate) struct AttemptStart {
    /// The prompt given to the agent.
    pub(crate) prompt: String,
    /// The agent session to continue (the profile's `resume`).
    pub(crate) session: Option<String>,
    /// Changes put into the workspace before the agent starts (the previous attempt's work).
    pub(crate) restore: Option<ChangeSet>,
}

/// How `task`'s attempt starts: as planned, or as the continuation of a retried one.
pub(crate) fn attempt_start(shared: &Shared, task: &Task, profile: &Profile) -> AttemptStart {
    let Some(retry) = shared.retries.lock().get(&task.id).cloned() else {
        return AttemptStart {
            prompt: task.prompt.clone(),
            ..AttemptStart::default()
        };
    };
    let restore = (retry.from_attempt > 0)
        .then(|| {
            read_json::<ChangeSet>(&shared.store.changes_path(
                &shared.run,
                task.id.as_str(),
                retry.from_attempt,
            ))
            .ok()
        })
        .flatten()
        .filter(|c| !c.is_empty());
    // `forge apply --conflicts agent`: the clashing files, with markers, go in too.
    let restore =
        super::apply::with_overrides(&shared.store, &shared.run, &task.id, &retry, restore);
    let instructions = if retry.prompt.trim().is_empty() {
        "Try again.".to_owned()
    } else {
        retry.prompt.clone()
    };
    let carried = shared.runner.continues_attempts();
    if let Some(session) = retry
        .session
        .clone()
        .filter(|_| carried && profile.can_resume())
    {
        let mut prompt = String::from(
            "Forge: this task is being retried. Your working directory is a new workspace: it \
             holds what your previous attempt left, on top of the other tasks' finished work. \
             Work in the current directory (the previous attempt's directory is gone).\n\n",
        );
        prompt.push_str(&instructions);
        prompt.push('\n');
        return AttemptStart {
            prompt,
            session: Some(session),
            restore,
        };
    }
    let mut prompt = task.prompt.clone();
    prompt.push_str("\n\n---\nForge: this is a new attempt at this task.");
    if retry.from_attempt > 0 {
        let attempt_dir =
            shared
                .store
                .attempt_dir(&shared.run, task.id.as_str(), retry.from_attempt);
        if let Some(message) = final_message(&attempt_dir.join("output.log"), profile) {
            let _ = write!(
                prompt,
                "\n\nThe previous attempt ended with this message:\n\n{message}\n"
            );
        }
        if let Some(changes) = &restore {
            let diff = render_diff(changes, &shared.blobs);
            let where_they_are = if carried {
                "Its changes are already in your workspace"
            } else {
                "Its changes are NOT in your workspace (this attempt starts again from the \
                 task's start tree): redo what is still needed"
            };
            let _ = write!(prompt, "\n{where_they_are}:\n\n```diff\n{diff}```\n");
        }
    }
    let _ = write!(prompt, "\nWhat to do now:\n\n{instructions}\n");
    AttemptStart {
        prompt,
        session: None,
        restore: restore.filter(|_| carried),
    }
}

/// The final message (result text) of an attempt, read back from its output log.
fn final_message(log: &Path, profile: &Profile) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let mut parser = OutputParser::new(profile.format);
    let mut events = Vec::new();
    for line in text.lines() {
        parser.line(forge_agents::Stream::Stdout, line, &mut events);
    }
    parser.finish(&mut events);
    events.into_iter().rev().find_map(|e| match e {
        AgentEvent::Result { text, .. } if !text.trim().is_empty() => Some(text),
        _ => None,
    })
}

/// A changeset as a unified diff, cut at [`DIFF_LIMIT`].
pub(crate) fn render_diff(changes: &ChangeSet, blobs: &BlobStore) -> String {
    let Ok(files) = forge_merge::diff_change_set(changes, blobs) else {
        let mut out = String::new();
        for path in changes.paths() {
            let _ = writeln!(out, "(changed) {path}");
        }
        return out;
    };
    let mut out = String::new();
    for file in files {
        let text = file.render(false);
        if out.len() + text.len() > DIFF_LIMIT {
            let _ = writeln!(out, "… (the rest of the diff is left out: {})", file.path);
            continue;
        }
        out.push_str(&text);
    }
    out
}

/// Folds the requests of a journal: per task, its latest request with the session of the
/// attempt before it. `sessions` are the journal's `task_session` events per (task, attempt).
pub(crate) fn contexts(
    requests: Vec<(TaskId, String, u32)>,
    sessions: &HashMap<(TaskId, u32), String>,
) -> HashMap<TaskId, RetryContext> {
    let mut out = HashMap::new();
    for (task, prompt, from_attempt) in requests {
        let session = sessions.get(&(task.clone(), from_attempt)).cloned();
        out.insert(
            task,
            RetryContext {
                prompt,
                from_attempt,
                session,
            },
        );
    }
    out
}

/// Captures and persists what a failed attempt changed (its `changes.json`), so that a retry
/// starts from there, then disposes of the workspace. Best effort: a capture that fails leaves
/// a retry starting afresh; a workspace that cannot be removed is left for `forge gc`.
pub(crate) async fn keep_changes_and_dispose(
    shared: &std::sync::Arc<Shared>,
    task: &Task,
    attempt: u32,
    ws: Box<dyn forge_staging::Workspace>,
) {
    let path = shared
        .store
        .changes_path(&shared.run, task.id.as_str(), attempt);
    let blobs = shared.blobs.clone();
    let turn = shared.heavy.acquire().await;
    let _ = super::blocking(move || {
        if let Ok(changes) = ws.changes()
            && !changes.is_empty()
            && blobs.sync().is_ok()
        {
            let _ = crate::store::write_json(&path, &changes);
        }
        let _ = ws.dispose();
    })
    .await;
    drop(turn);
}
