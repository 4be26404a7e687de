//! Step 6, integrate: the attempt's persisted changes audited against its claims and merged
//! into the integrated tree, in the integration's order (its events published under the
//! integration's lock). A conflict an agent must settle sends the attempt round again, on top
//! of the integrated tree, up to `[merge] reruns` times.

use std::fmt::Write as _;
use std::sync::Arc;

use forge_events::{EventKind, TaskId};
use forge_merge::{Conflict, IntegrationOutcome, IntegrationStatus};
use forge_staging::ChangeSet;

use super::Attempt;
use crate::manager::integrated::Integrated;
use crate::manager::{Shared, blocking};
use crate::sched::TaskOutcome;

/// Integrates the attempt's changes: it ends succeeded, failed, or set to run again on top.
pub(crate) async fn integrate(shared: &Arc<Shared>, mut a: Attempt) -> Attempt {
    let Some(changes) = a.changes.take() else {
        return a.end(TaskOutcome::failed("the attempt captured no changes"));
    };
    if !changes.skipped().is_empty() {
        return a.end(TaskOutcome::failed(crate::manager::audit::uncarried(
            changes.skipped(),
        )));
    }
    if a.task.candidate_of.is_some() {
        return candidate(shared, a, &changes).await;
    }
    let files: Vec<forge_events::RepoPath> = changes.paths().cloned().collect();
    let (shared2, task, number) = (shared.clone(), a.task.clone(), a.number);
    let done = blocking(move || {
        let order = shared2.order.get(&task.id).copied().unwrap_or(u64::MAX);
        let mut state = shared2.integration.lock();
        let done = state.integrate(&task, number, order, &changes)?;
        publish(&shared2, &task.id, &done);
        Ok(done)
    })
    .await
    .and_then(|r| r);
    let done = match done {
        Ok(done) => done,
        Err(e) => return a.fail(&e),
    };
    match &done.outcome.status {
        IntegrationStatus::Integrated | IntegrationStatus::Conflicted => a.end(TaskOutcome {
            files_changed: files,
            ..TaskOutcome::succeeded()
        }),
        IntegrationStatus::Rejected => a.end(TaskOutcome::failed(rejected(&done))),
        IntegrationStatus::NeedsRerun { .. } => rerun(shared, a, &done.outcome),
    }
}

/// A candidate is never integrated: audited, it waits, persisted, to be chosen.
async fn candidate(shared: &Arc<Shared>, a: Attempt, changes: &ChangeSet) -> Attempt {
    let violations = {
        let (task, changes, blobs) = (a.task.clone(), changes.clone(), shared.blobs.clone());
        blocking(move || crate::manager::audit::claim_violations(&task, &changes, &blobs)).await
    };
    let violations = match violations.and_then(|r| r) {
        Ok(v) => v,
        Err(e) => return a.fail(&e),
    };
    if !violations.is_empty() {
        shared.publish(
            &a.task.id,
            EventKind::ClaimViolation {
                paths: violations.iter().map(|v| v.path.clone()).collect(),
                policy: shared.plan.on_violation.to_string(),
            },
        );
    }
    match crate::manager::candidates::finish(shared, &a.task, changes, &violations) {
        Some(outcome) => a.end(outcome),
        None => a.end(TaskOutcome::failed("a candidate was taken for a task")),
    }
}

/// Publishes what an integration did: claim violations, then (when the changes went in) each
/// conflict and `merge_integrated`.
fn publish(shared: &Shared, task: &TaskId, done: &Integrated) {
    if !done.violations.is_empty() {
        shared.publish(
            task,
            EventKind::ClaimViolation {
                paths: done.violations.iter().map(|v| v.path.clone()).collect(),
                policy: shared.plan.on_violation.to_string(),
            },
        );
    }
    if !done.went_in() {
        return;
    }
    for c in &done.outcome.conflicts {
        publish_conflict(shared, task, c, c.resolved);
    }
    shared.publish(
        task,
        EventKind::MergeIntegrated {
            files: done.outcome.integrated.clone(),
        },
    );
}

fn publish_conflict(shared: &Shared, task: &TaskId, c: &Conflict, resolved: bool) {
    shared.publish(
        task,
        EventKind::MergeConflict {
            path: c.path.clone(),
            tasks: c
                .tasks
                .iter()
                // The working tree is not a task.
                .filter_map(|t| t.task().cloned())
                .collect(),
            strategy: c.strategy.to_string(),
            resolved,
        },
    );
}

/// Why a rejected attempt failed, naming its violations (at most ten).
fn rejected(done: &Integrated) -> String {
    let shown: Vec<String> = done
        .violations
        .iter()
        .take(10)
        .map(ToString::to_string)
        .collect();
    let more = done.violations.len().saturating_sub(shown.len());
    format!(
        "changed files its claims do not permit ({}{}); nothing of it was integrated \
         (on_violation = \"reject\"): claim them in `writes`, or set on_violation",
        shown.join("; "),
        if more > 0 {
            format!("; and {more} more")
        } else {
            String::new()
        }
    )
}

/// A conflict only an agent can settle: the attempt runs again on top of the integrated tree
/// with the conflicts described, or fails once its re-runs are spent.
fn rerun(shared: &Shared, mut a: Attempt, outcome: &IntegrationOutcome) -> Attempt {
    let paths: Vec<&str> = outcome.conflicts.iter().map(|c| c.path.as_str()).collect();
    if a.pass >= shared.plan.merge_reruns {
        {
            let mut state = shared.integration.lock();
            for c in &outcome.conflicts {
                publish_conflict(shared, a.id(), c, false);
            }
            state.give_up(&outcome.conflicts);
        }
        let message = format!(
            "merge conflict on {} still unresolved after {} re-run(s) on top of the \
             integrated tree",
            paths.join(", "),
            a.pass
        );
        return a.end(TaskOutcome::failed(message));
    }
    shared.publish(
        a.id(),
        EventKind::TaskProgress {
            message: format!(
                "merge conflict on {}: re-running on top of the integrated tree",
                paths.join(", ")
            ),
            tool: None,
            files: paths.iter().map(|p| (*p).to_owned()).collect(),
        },
    );
    a.prompt = format!(
        "{}{}",
        a.task.prompt,
        describe_conflicts(shared, a.id(), outcome)
    );
    a.session = None;
    a.pass += 1;
    a
}

/// What a conflicting first pass tells the agent when it runs again on top.
fn describe_conflicts(shared: &Shared, task: &TaskId, outcome: &IntegrationOutcome) -> String {
    let mut text = String::from(
        "\n\n---\nForge: your previous changes conflicted with work other tasks finished meanwhile. \
         You are now running on top of the integrated tree, which already holds their work. \
         Make your changes again so that both are kept.\n",
    );
    for c in &outcome.conflicts {
        let _ = write!(
            text,
            "\n- `{}` ({}): also changed by {}",
            c.path,
            c.kind,
            c.tasks
                .iter()
                .filter(|t| t.task() != Some(task))
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if let Some(marked) = c.marked.as_ref().and_then(|h| shared.blobs.read(h).ok()) {
            let marked = String::from_utf8_lossy(&marked);
            let shown: String = marked.chars().take(4000).collect();
            let _ = write!(text, "; the file with conflict markers:\n```\n{shown}\n```");
        }
    }
    text
}
