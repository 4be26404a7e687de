//! Conflicts between tasks that a run left unresolved (no `[merge]` strategy settled them: the
//! integrated tree kept its side, the finishing task's change to the path was set aside),
//! settled on apply as the user chose with `--conflicts`.
//!
//! For such a path `ours` is the integrated tree's side (the task or tasks integrated first)
//! and `theirs` is the task whose change was set aside; `markers` writes both with the base
//! between them, labelled with the tasks' ids.

use forge_events::{RunId, TaskId};
use forge_merge::{
    ApplyReport, Conflict, ConflictChoices, Integration, OnConflict, SettledClash, TaskClash,
};
use forge_staging::ChangeSet;

use crate::ExecError;
use crate::store::{RunStore, read_json};

/// The conflicts of `conflicts` for which `choices` name no way to settle them here (`keep`,
/// the default, or `agent`, which re-runs a task before the apply).
pub(super) fn unchosen<'a>(
    conflicts: &'a [Conflict],
    choices: &ConflictChoices,
) -> Vec<&'a Conflict> {
    conflicts
        .iter()
        .filter(|c| !c.resolved)
        .filter(|c| {
            matches!(
                choices.for_path(&c.path),
                OnConflict::Keep | OnConflict::Agent
            )
        })
        .collect()
}

/// Why a run with unsettled conflicts between tasks is not applied, and what to do.
pub(super) fn refusal(run: &RunId, open: &[&Conflict]) -> String {
    let paths: Vec<String> = open
        .iter()
        .map(|c| {
            let tasks: Vec<String> = c.tasks.iter().map(ToString::to_string).collect();
            format!("{} ({})", c.path, tasks.join(" vs "))
        })
        .collect();
    format!(
        "merge conflicts between tasks are unresolved on {}: choose how to settle them with \
         `forge apply {run} --conflicts markers` (or `ours` for the side integrated first, \
         `theirs` for the task whose change was set aside, `agent` to re-run that task; \
         `<how>=<path>` for one path); `forge diff {run}` shows both tasks' versions",
        paths.join(", ")
    )
}

/// Settles each unresolved conflict of `conflicts` in `integration` as `choices` say, with
/// the set-aside change read from the persisted `ChangeSet` of its task's attempt in
/// `attempts`.
pub(super) fn settle(
    store: &RunStore,
    run: &RunId,
    integration: &mut Integration,
    conflicts: &[Conflict],
    attempts: &[(TaskId, u32)],
    choices: &ConflictChoices,
) -> Result<Vec<SettledClash>, ExecError> {
    let mut settled = Vec::new();
    for conflict in conflicts.iter().filter(|c| !c.resolved) {
        let how = choices.for_path(&conflict.path);
        if matches!(how, OnConflict::Keep | OnConflict::Agent) {
            continue;
        }
        let changes = set_aside_changes(store, run, conflict, attempts)?;
        let change = changes.get(conflict.path.as_str());
        let clash = TaskClash {
            conflict,
            start: change.and_then(|c| c.before()),
            result: change.and_then(|c| c.after()),
        };
        if change.is_none() {
            return Err(ExecError::Corrupt {
                path: store.run_dir(run).join("result.json"),
                reason: format!(
                    "the conflict on {} names a task whose persisted changes do not touch it",
                    conflict.path
                ),
            });
        }
        settled.push(integration.settle_clash(&clash, how)?);
    }
    Ok(settled)
}

/// The persisted `ChangeSet` of the task whose change to `conflict`'s path was set aside.
pub(super) fn set_aside_changes(
    store: &RunStore,
    run: &RunId,
    conflict: &Conflict,
    attempts: &[(TaskId, u32)],
) -> Result<ChangeSet, ExecError> {
    let task = conflict
        .tasks
        .last()
        .and_then(|p| p.task())
        .map_or("", TaskId::as_str);
    let Some((_, attempt)) = attempts.iter().find(|(t, _)| t.as_str() == task) else {
        return Err(ExecError::Corrupt {
            path: store.run_dir(run).join("result.json"),
            reason: format!(
                "the conflict on {} names task `{task}`, which has no integrated attempt",
                conflict.path
            ),
        });
    };
    read_json(&store.changes_path(run, task, *attempt))
}

/// Adds the paths written with markers between tasks to the apply's conflicts (they are the
/// user's to resolve), unless the apply reported them already.
pub(super) fn note_marked(
    report: &mut ApplyReport,
    conflicts: &[Conflict],
    settled: &[SettledClash],
) {
    for s in settled.iter().filter(|s| s.marked) {
        let on_disk = report.written.contains(&s.path) || report.unchanged.contains(&s.path);
        if !on_disk || report.conflicts.iter().any(|c| c.path == s.path) {
            continue;
        }
        if let Some(c) = conflicts.iter().find(|c| c.path == s.path) {
            report.conflicts.push(c.clone());
            report.marked.push(s.path.clone());
        }
    }
}

/// For `forge diff`: both sides of each unresolved conflict between tasks, each as a diff
/// from the set-aside task's start (the merge base) to that side's version of the path.
pub(super) fn diff_sections(
    store: &RunStore,
    run: &RunId,
    integration: &Integration,
    conflicts: &[Conflict],
    attempts: &[(TaskId, u32)],
) -> Result<Vec<super::DiffSection>, ExecError> {
    let mut sections = Vec::new();
    for conflict in conflicts.iter().filter(|c| !c.resolved) {
        let Some(theirs) = conflict.tasks.last().and_then(|p| p.task()) else {
            continue;
        };
        let changes = set_aside_changes(store, run, conflict, attempts)?;
        let Some(change) = changes.get(conflict.path.as_str()) else {
            continue;
        };
        let start = change.before().cloned();
        let ours = integration.writers(conflict.path.as_str());
        let attempt = attempts.iter().find(|(t, _)| t == theirs).map(|(_, a)| *a);
        let sides = [
            (
                ours.iter()
                    .map(TaskId::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
                None,
                integration.get(conflict.path.as_str()).cloned(),
                "ours",
            ),
            (
                theirs.to_string(),
                attempt,
                change.after().cloned(),
                "theirs",
            ),
        ];
        for (task, attempt, entry, side) in sides {
            let diff: ChangeSet = forge_staging::Change::between(start.clone(), entry)
                .map(|c| (conflict.path.clone(), c))
                .into_iter()
                .collect();
            sections.push(super::DiffSection {
                task: (!task.is_empty()).then_some(task),
                attempt,
                files: forge_merge::diff_change_set(&diff, integration.store())?,
                conflict: Some(side.to_owned()),
            });
        }
    }
    Ok(sections)
}
