//! Fix rounds (`[gate] fix_rounds`, default 1): a red gate whose bisect names a task sends that
//! task back. The culprit is retried ([`super::retry`], origin `gate`) with the failing gate
//! command's output, trimmed to what matters, as its feedback; its dependents re-run on top;
//! every other task's result is kept; the gate runs again. After `fix_rounds` rounds the run
//! fails with the culprit named.
//!
//! A round starts with a `task_retry_requested` event in the journal, and the state it runs
//! from is the journal's fold (the same analysis and rebuild as `forge resume`), so a process
//! killed during a fix round resumes it like any retry.

use std::fmt::Write as _;
use std::sync::Arc;

use forge_events::{Event, EventKind, EventSink as _, TaskId};
use forge_merge::{CommandStatus, GateReport};

use super::{GateBisect, RetryOrigin, RetryRequest, Shared, blocking};
use crate::ExecError;
use crate::sched::{PriorTask, SchedulerOptions};

/// The fix rounds already made since the last retry asked by the user (a user's `forge retry`
/// gets the plan's rounds afresh).
pub(crate) fn rounds_used(history: &[Event]) -> u32 {
    let mut used = 0;
    for event in history {
        if let EventKind::TaskRetryRequested { origin, .. } = &event.kind {
            if origin == RetryOrigin::Gate.as_str() {
                used += 1;
            } else {
                used = 0;
            }
        }
    }
    used
}

/// The retry a fix round makes, if the gate failed, the bisect named a task and rounds are left.
pub(crate) fn next_round(
    max_rounds: u32,
    used: u32,
    gate: Option<&GateReport>,
    bisect: Option<&GateBisect>,
) -> Option<RetryRequest> {
    let gate = gate.filter(|g| !g.passed())?;
    let bisect = bisect.filter(|b| !b.cancelled)?;
    let culprit = bisect.culprit.clone()?;
    if used >= max_rounds {
        return None;
    }
    // The failure on the culprit's own tree (what its changes broke), else the integrated one.
    let report = bisect.failing.as_ref().unwrap_or(gate);
    Some(RetryRequest {
        prompt: feedback(&culprit, report),
        task: culprit,
        origin: RetryOrigin::Gate,
    })
}

/// What the culprit is told: which gate command failed and its output, trimmed.
fn feedback(task: &TaskId, report: &GateReport) -> String {
    let failed = report.commands.iter().find(|c| {
        matches!(
            c.status,
            CommandStatus::Failed { .. } | CommandStatus::TimedOut
        )
    });
    let Some(command) = failed else {
        return format!(
            "Forge: the gate failed once task `{task}`'s changes were integrated. Find and fix \
             what breaks it."
        );
    };
    let how = match command.status {
        CommandStatus::Failed { code } => format!("exit code {code}"),
        _ => "it timed out".to_owned(),
    };
    let output = super::check::trim_failure_output(&command.output);
    let mut text = format!(
        "Forge: the gate command `{}` failed ({how}) on the integrated result, and a bisect \
         found that your changes (task `{task}`) are the first that make it fail. Fix it: the \
         gate runs again once you are done.",
        command.command
    );
    if !output.trim().is_empty() {
        let _ = write!(text, " Its output, trimmed:\n\n```\n{output}```\n");
    }
    text
}

/// Starts a fix round: journals the request, then sets the run's state to the journal's fold
/// (the culprit and its dependents lose their results, every other task's persisted `ChangeSet`
/// is integrated again in its order) and returns what the scheduler starts from.
pub(crate) async fn start_round(
    shared: &Arc<Shared>,
    request: &RetryRequest,
) -> Result<std::collections::HashMap<TaskId, PriorTask>, ExecError> {
    let kind = super::retry::request_event(&shared.plan, request);
    shared.events.publish_task(&request.task, kind)?;
    shared.events.bus.flush()?;
    let journal = shared.store.journal(&shared.run);
    let history = blocking(move || forge_events::read_journal(journal)).await??;
    let mut prior = super::resume::analyze(&shared.plan, &history);
    let (shared2, order) = (shared.clone(), std::mem::take(&mut prior.integrated));
    let integration = blocking(move || {
        let fresh = shared2.integration.lock().empty();
        fresh.rebuild(&shared2.store, &shared2.run, &shared2.plan, &order)
    })
    .await??;
    // Workspaces of the last round are gone; snapshot versions start again with the new tree.
    shared.snapshots.lock().clear();
    *shared.integration.lock() = integration;
    *shared.retries.lock() = std::mem::take(&mut prior.retries);
    Ok(prior.tasks)
}

/// The scheduler options of a fix round: those of the run, from the round's state.
pub(crate) fn options(
    base: &SchedulerOptions,
    prior: std::collections::HashMap<TaskId, PriorTask>,
) -> SchedulerOptions {
    SchedulerOptions {
        prior,
        ..base.clone()
    }
}
