//! Candidates: one task run N times side by side (`candidates = N`, `forge run --task … -n N`)
//! so the user can compare the results and pick one.
//!
//! The members of a candidate group hold their claims *shared* with each other (as reads), so
//! none waits for another, and exclusive against every other task's writes; each starts from
//! the integrated tree when its locks are granted (the base, when nothing else ran before), in
//! a workspace of its own. A member's `ChangeSet` is captured, audited and persisted like any
//! task's, and its attempt is recorded as succeeded, but it is **never integrated**: the
//! members never see each other's work. `forge apply --tasks <member>` integrates the chosen
//! one's persisted `ChangeSet`, on top of the tasks it depends on.

use std::collections::HashMap;
use std::path::Path;

use forge_events::{EventKind, RunId, TaskId, TaskStatus};
use forge_locks::{Claim, LockMode};
use forge_merge::{AuditPolicy, Violation};
use forge_staging::ChangeSet;

use super::Shared;
use crate::ExecError;
use crate::plan::{Plan, PlanOptions, Task};
use crate::sched::TaskOutcome;
use crate::store::RunStore;

/// A candidate that finished: which group, which task, which attempt holds its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The group (the task the candidates were made from).
    pub group: TaskId,
    /// The candidate task (`<group>-<k>`).
    pub task: TaskId,
    /// Its succeeded attempt, whose persisted `ChangeSet` is its result.
    pub attempt: u32,
}

/// The claims `task` takes from the lock manager: its own, or for a candidate, all of them
/// shared (so the members of its group do not wait for each other).
pub(crate) fn lock_claims(task: &Task) -> Vec<Claim> {
    let shared = task.candidate_of.is_some();
    task.claims()
        .map(|c| Claim {
            pattern: c.pattern.clone(),
            mode: if shared { LockMode::Read } else { c.mode },
        })
        .collect()
}

/// Ends a candidate's attempt after its changes were persisted and audited: succeeded (not
/// integrated), or failed when it changed files outside its claims under `reject`. `None` for
/// a task that is no candidate.
pub(crate) fn finish(
    shared: &Shared,
    task: &Task,
    changes: &ChangeSet,
    violations: &[Violation],
) -> Option<TaskOutcome> {
    let group = task.candidate_of.as_ref()?;
    if !violations.is_empty() && shared.plan.on_violation == AuditPolicy::Reject {
        let paths: Vec<String> = violations.iter().map(|v| v.path.to_string()).collect();
        return Some(TaskOutcome::failed(format!(
            "changed files its claims do not permit ({}): claim them in `writes`, or set \
             on_violation",
            paths.join(", ")
        )));
    }
    shared.publish(
        &task.id,
        EventKind::TaskProgress {
            message: format!(
                "candidate of `{group}`: kept for you to compare and choose, not integrated"
            ),
            tool: None,
            files: Vec::new(),
        },
    );
    Some(TaskOutcome {
        files_changed: changes.paths().cloned().collect(),
        ..TaskOutcome::succeeded()
    })
}

/// The succeeded attempt of each task of run `run`, from its journal (the attempt of the last
/// `task_started` before a `task_finished` that succeeded).
pub(crate) fn succeeded_attempts(
    store: &RunStore,
    run: &RunId,
) -> Result<HashMap<TaskId, u32>, ExecError> {
    let events = forge_events::read_journal(store.journal(run))?;
    let mut current: HashMap<TaskId, u32> = HashMap::new();
    let mut done = HashMap::new();
    for e in events {
        let Some(task) = e.task else { continue };
        match e.kind {
            EventKind::TaskStarted { attempt, .. } => {
                current.insert(task, attempt);
            }
            EventKind::TaskFinished { status, .. } => {
                if status == TaskStatus::Succeeded
                    && let Some(&attempt) = current.get(&task)
                {
                    done.insert(task, attempt);
                } else {
                    done.remove(&task);
                }
            }
            EventKind::TaskRetryRequested { .. } => {
                done.remove(&task);
            }
            _ => {}
        }
    }
    Ok(done)
}

/// The candidates of `plan` that succeeded in run `run`, in plan order.
pub(crate) fn finished(
    store: &RunStore,
    run: &RunId,
    plan: &Plan,
) -> Result<Vec<Candidate>, ExecError> {
    if plan.tasks.iter().all(|t| t.candidate_of.is_none()) {
        return Ok(Vec::new());
    }
    let attempts = succeeded_attempts(store, run)?;
    Ok(plan
        .tasks
        .iter()
        .filter_map(|t| {
            Some(Candidate {
                group: t.candidate_of.clone()?,
                task: t.id.clone(),
                attempt: *attempts.get(&t.id)?,
            })
        })
        .collect())
}

/// The candidates of run `run` (of the repository at `repo`) that succeeded, in plan order:
/// what `forge apply --tasks <candidate>` chooses from.
///
/// # Errors
/// The run's plan copy or journal cannot be read.
pub fn run_candidates(
    repo: &Path,
    run: &RunId,
    plan_options: &PlanOptions,
) -> Result<Vec<Candidate>, ExecError> {
    let store = RunStore::new(repo);
    let plan = Plan::load(&store.plan_copy(run), plan_options)?;
    finished(&store, run, &plan)
}
