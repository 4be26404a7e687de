//! Applying a finished run: to the working tree (atomic, journaled, merged with the user's own
//! edits) or as commits on branch `forge/<run>`; and the integrated diff for review.

mod agent;
mod clashes;

pub(crate) use agent::with_overrides;
pub use agent::{ConflictRerun, prepare_agent_reruns};

use std::path::Path;
use std::sync::Arc;

use forge_events::{BusOptions, EventBus, EventKind, EventSink, RunId};
use forge_merge::{
    ApplyOptions, ApplyReport, BranchOptions, BranchReport, ConflictChoices, FileDiff, GateReport,
    Integration, apply_to_branch, apply_to_worktree, diff_change_set,
};
use forge_staging::{BaseSnapshot, BlobStore, ChangeSet};

use super::{blocking, read_result};
use crate::ExecError;
use crate::plan::{Plan, PlanOptions};
use crate::store::RunStore;

/// Where a run's result goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApplyMode {
    /// Nowhere (yet): it stays in the run store until `forge apply`.
    #[default]
    None,
    /// Into the user's working tree, merged three ways with edits made during the run.
    WorkingTree,
    /// As commits on branch `forge/<run>` (one per task), the working tree untouched.
    Branch,
}

/// What an apply did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplySummary {
    /// Where it went.
    pub mode: ApplyMode,
    /// The working-tree apply's report.
    pub worktree: Option<ApplyReport>,
    /// The branch written.
    pub branch: Option<BranchReport>,
    /// Whether an apply that was interrupted past its commit point was finished first: the
    /// files it wrote are counted in `worktree.written`.
    pub recovered: bool,
    /// For a partial apply: the tasks whose result was applied, in integration order (those
    /// asked for and those they depend on). Empty when the whole run was applied.
    pub tasks: Vec<String>,
    /// For a partial apply: the tasks Forge added because a task asked for depends on them.
    pub added: Vec<String>,
    /// Conflicts between tasks that the run left unresolved and this apply settled as asked
    /// (`--conflicts`): each path, its two sides and how.
    pub settled: Vec<forge_merge::SettledClash>,
}

impl ApplySummary {
    /// Files written (or committed).
    pub fn files(&self) -> Vec<String> {
        match (&self.worktree, &self.branch) {
            (Some(w), _) => w
                .written
                .iter()
                .chain(&w.deleted)
                .map(|p| p.as_str().to_owned())
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// What runs merge drivers for `forge apply` of `run`: Forge's process runner, with the run's
/// id.
fn driver_runner(run: &RunId) -> Arc<dyn forge_merge::CommandRunner> {
    Arc::new(crate::driver::DriverRunner::new(run.clone()))
}

/// The run's integrated tree, reopened from the run store.
fn open_integration(store: &RunStore, run: &RunId) -> Result<Integration, ExecError> {
    open_integration_on(store, run, None)
}

/// The run's base snapshot: `open` when the caller has it (the run that just ended), else
/// read again from the run store (its manifest names every file of the repository).
fn run_base(
    store: &RunStore,
    run: &RunId,
    open: Option<Arc<BaseSnapshot>>,
) -> Result<Arc<BaseSnapshot>, ExecError> {
    match open {
        Some(base) => Ok(base),
        None => Ok(Arc::new(BaseSnapshot::open(&store.base_dir(run))?)),
    }
}

/// The run's integrated tree, reopened from the run store over the base `base` (see
/// [`run_base`]).
fn open_integration_on(
    store: &RunStore,
    run: &RunId,
    base: Option<Arc<BaseSnapshot>>,
) -> Result<Integration, ExecError> {
    let base = run_base(store, run, base)?;
    let blobs = BlobStore::open(store.objects_dir())?;
    Ok(
        Integration::open(&store.run_dir(run).join("integration.json"), base, blobs)?
            .with_command_runner(driver_runner(run)),
    )
}

/// Finishes or undoes the applies that a process killed mid-way left in the runs of the
/// repository at `repo` (an apply's process that still lives is left alone), removing their
/// temporary files. Returns what was done, per run; any command may call it first.
pub fn recover_abandoned_applies(
    repo: &Path,
) -> Result<Vec<(String, forge_merge::Recovery)>, ExecError> {
    let runs = RunStore::new(repo).runs_dir();
    let entries = match std::fs::read_dir(&runs) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ExecError::io("list", &runs, e)),
    };
    let mut done = Vec::new();
    for entry in entries {
        let dir = entry.map_err(|e| ExecError::io("list", &runs, e))?.path();
        if !dir.join("apply-journal.json").is_file() {
            continue;
        }
        let recovery = forge_merge::recover_abandoned(&dir)?;
        if recovery != forge_merge::Recovery::Nothing {
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            done.push((name, recovery));
        }
    }
    Ok(done)
}

/// Refuses a run whose snapshot names another repository than the store's (a run store copied
/// from elsewhere, or kept with absolute paths by an older Forge): its result is only ever
/// applied where it was made.
fn same_repository(store: &RunStore, run: &RunId, base_repo: &Path) -> Result<(), ExecError> {
    let here = store.root().parent().unwrap_or(store.root());
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    if canonical(here) == canonical(base_repo) {
        return Ok(());
    }
    Err(ExecError::NotApplicable {
        run: run.to_string(),
        reason: format!(
            "it belongs to the repository at {}, not to {}: Forge applies a run only to the \
             repository it was made in (run it again here)",
            base_repo.display(),
            here.display()
        ),
    })
}

/// Applies the result of run `run` of the repository at `repo` (a run that ended and may be
/// applied: every task succeeded, no conflict left, gate passed), and records it in the run's
/// journal.
pub async fn apply_run(
    repo: &Path,
    run: &RunId,
    mode: ApplyMode,
) -> Result<ApplySummary, ExecError> {
    apply_run_scoped(repo, run, mode, None).await
}

/// Which tasks a partial apply takes.
#[derive(Debug, Clone)]
pub struct TaskSelection {
    /// The tasks asked for; the tasks they depend on (`after`, transitively) are added.
    pub tasks: Vec<String>,
    /// How to read the run's plan copy (the agent profiles that exist).
    pub plan_options: PlanOptions,
}

/// What an apply takes and how it settles clashes with the user's own edits.
#[derive(Debug, Clone, Default)]
pub struct ApplyRequest {
    /// Only these tasks (and those they depend on); `None`: the whole run.
    ///
    /// A partial apply integrates the chosen tasks' results again from the run's base, in the
    /// run's integration order. Other tasks may have failed; the chosen ones (and what they
    /// depend on) must have succeeded, and their result must integrate without an unresolved
    /// conflict. The gate is not run again: a gate that failed on the whole run refuses it.
    /// Applying more tasks later (or the whole run) writes only what is not there yet.
    pub tasks: Option<TaskSelection>,
    /// How paths where the user's edits clash with the run's are settled (working tree only).
    pub conflicts: ConflictChoices,
}

/// Applies run `run` as `request` says (see [`apply_run`] and [`ApplyRequest`]).
pub async fn apply_run_with(
    repo: &Path,
    run: &RunId,
    mode: ApplyMode,
    request: &ApplyRequest,
) -> Result<ApplySummary, ExecError> {
    apply_run_scoped(repo, run, mode, Some(request)).await
}

async fn apply_run_scoped(
    repo: &Path,
    run: &RunId,
    mode: ApplyMode,
    scope: Option<&ApplyRequest>,
) -> Result<ApplySummary, ExecError> {
    let store = RunStore::new(repo);
    if !store.exists(run) {
        return Err(ExecError::RunNotFound {
            run: run.to_string(),
            dir: store.runs_dir(),
        });
    }
    if let Some(owner) = store.owner(run)
        && owner.alive
    {
        return Err(ExecError::RunBusy {
            run: run.to_string(),
            pid: owner.pid,
        });
    }
    let bus = EventBus::open(run.clone(), store.journal(run), &BusOptions::default())?;
    let result = apply_scoped(&store, run, mode, Some(&bus), scope, None).await;
    let closed = bus.close();
    let summary = result?;
    closed?;
    Ok(summary)
}

/// Applies run `run` of `store` as [`apply_run`] does, publishing to `events`; `base` is the
/// run's base snapshot when the caller holds it open (the run that just ended), so that it is
/// not read again.
pub(crate) async fn apply_with(
    store: &RunStore,
    run: &RunId,
    mode: ApplyMode,
    events: Option<&dyn EventSink>,
    base: Option<Arc<BaseSnapshot>>,
) -> Result<ApplySummary, ExecError> {
    apply_scoped(store, run, mode, events, None, base).await
}

/// What a partial apply takes.
struct Selected {
    /// The run's plan (dependencies, merge strategies).
    plan: Plan,
    /// The tasks and their integrated attempts, in integration order.
    order: Vec<(forge_events::TaskId, u32)>,
    /// The tasks added because a chosen one depends on them.
    added: Vec<String>,
}

/// The tasks of a partial apply, or why the selection cannot be applied.
fn select_tasks(
    store: &RunStore,
    run: &RunId,
    result: &crate::store::RunResult,
    selection: &TaskSelection,
) -> Result<Selected, ExecError> {
    // With the tasks `forge add` added to the run.
    let plan = super::add::run_plan(store, run, &selection.plan_options)?;
    let by_id: std::collections::HashMap<&str, &crate::plan::Task> =
        plan.tasks.iter().map(|t| (t.id.as_str(), t)).collect();
    let mut chosen = std::collections::BTreeSet::new();
    let mut stack: Vec<&str> = Vec::new();
    for task in &selection.tasks {
        if !by_id.contains_key(task.as_str()) {
            let known: Vec<&str> = plan.tasks.iter().map(|t| t.id.as_str()).collect();
            return Err(ExecError::TaskNotInRun {
                run: run.to_string(),
                task: task.clone(),
                reason: format!("the run has no such task (its tasks: {})", known.join(", ")),
            });
        }
        stack.push(task.as_str());
    }
    while let Some(id) = stack.pop() {
        if chosen.insert(id.to_owned())
            && let Some(task) = by_id.get(id)
        {
            stack.extend(task.after.iter().map(forge_events::TaskId::as_str));
        }
    }
    let candidates = super::candidates::finished(store, run, &plan)?;
    let mut groups: std::collections::BTreeMap<&str, &str> = std::collections::BTreeMap::new();
    for c in candidates
        .iter()
        .filter(|c| chosen.contains(c.task.as_str()))
    {
        if let Some(other) = groups.insert(c.group.as_str(), c.task.as_str()) {
            return Err(ExecError::TaskNotInRun {
                run: run.to_string(),
                task: c.task.to_string(),
                reason: format!(
                    "it and `{other}` are candidates of the same task `{}`, made to be compared                      and one chosen: apply one of them",
                    c.group
                ),
            });
        }
    }
    for id in &chosen {
        if result.integrated.iter().any(|(t, _)| t.as_str() == id)
            || candidates.iter().any(|c| c.task.as_str() == id)
        {
            continue;
        }
        let asked = selection.tasks.iter().any(|t| t == id);
        let why = if result.failed.iter().any(|t| t.as_str() == id) {
            "it did not succeed"
        } else {
            "it did not finish"
        };
        let reason = if asked {
            format!("{why}, so it has no result to apply; retry it, or leave it out of --tasks")
        } else {
            let dependents: Vec<&str> = selection
                .tasks
                .iter()
                .map(String::as_str)
                .filter(|t| {
                    by_id
                        .get(t)
                        .is_some_and(|task| task.after.iter().any(|a| a.as_str() == id))
                })
                .collect();
            let on = if dependents.is_empty() {
                "a task you chose depends on it".to_owned()
            } else {
                format!("{} depends on it", dependents.join(", "))
            };
            format!("{why}, and {on}; its dependents cannot be applied without it")
        };
        return Err(ExecError::TaskNotInRun {
            run: run.to_string(),
            task: id.clone(),
            reason,
        });
    }
    // The chosen candidates go in last, on top of what they depend on.
    let order: Vec<(forge_events::TaskId, u32)> = result
        .integrated
        .iter()
        .filter(|(t, _)| chosen.contains(t.as_str()))
        .cloned()
        .chain(
            candidates
                .iter()
                .filter(|c| chosen.contains(c.task.as_str()))
                .map(|c| (c.task.clone(), c.attempt)),
        )
        .collect();
    let added = order
        .iter()
        .map(|(t, _)| t.as_str().to_owned())
        .filter(|t| !selection.tasks.contains(t))
        .collect();
    Ok(Selected { plan, order, added })
}

#[allow(clippy::too_many_lines)] // refusal reasons, the apply, its event
async fn apply_scoped(
    store: &RunStore,
    run: &RunId,
    mode: ApplyMode,
    events: Option<&dyn EventSink>,
    scope: Option<&ApplyRequest>,
    base: Option<Arc<BaseSnapshot>>,
) -> Result<ApplySummary, ExecError> {
    let not = |reason: String| ExecError::NotApplicable {
        run: run.to_string(),
        reason,
    };
    if mode == ApplyMode::None {
        return Ok(ApplySummary {
            mode,
            worktree: None,
            branch: None,
            recovered: false,
            tasks: Vec::new(),
            added: Vec::new(),
            settled: Vec::new(),
        });
    }
    let result = match read_result(store, run) {
        Ok(r) => r,
        Err(ExecError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Err(not(format!(
                "it has not finished; resume it with `forge resume {run}`"
            )));
        }
        Err(e) => return Err(e),
    };
    let selected = match scope.and_then(|s| s.tasks.as_ref()) {
        Some(selection) => Some(select_tasks(store, run, &result, selection)?),
        None => None,
    };
    let mut apply_options = ApplyOptions::new(store.run_dir(run));
    if let Some(scope) = scope {
        apply_options.conflicts = scope.conflicts.clone();
    }
    if let Some(gate) = result.gate.as_ref().filter(|g| !g.passed())
        && selected.is_some()
    {
        return Err(not(format!(
            "the gate failed on the whole run ({}), so no part of it is applied; fix and retry \
             the task that broke it",
            gate.summary()
        )));
    }
    let open = clashes::unchosen(&result.conflicts, &apply_options.conflicts);
    let gate_ok = result.gate.as_ref().is_none_or(GateReport::passed);
    // Unresolved conflicts between tasks are no obstacle once the user chose how to settle
    // each of them.
    let chosen = result.failed.is_empty()
        && open.is_empty()
        && gate_ok
        && result.status != forge_events::RunStatus::Cancelled;
    if !result.applicable && selected.is_none() && !chosen {
        let reason = if !result.failed.is_empty() {
            format!(
                "tasks did not succeed: {}",
                result
                    .failed
                    .iter()
                    .map(forge_events::TaskId::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else if !open.is_empty() {
            clashes::refusal(run, &open)
        } else if let Some(gate) = result.gate.as_ref().filter(|g| !g.passed()) {
            format!("the gate failed: {}", gate.summary())
        } else {
            format!("it ended as {}", result.status.as_str())
        };
        return Err(not(reason));
    }
    let gate = result
        .gate
        .clone()
        .filter(GateReport::passed)
        .unwrap_or_else(GateReport::not_run);
    let (store2, run2) = (store.clone(), run.clone());
    let (run_conflicts, run_integrated) = (result.conflicts.clone(), result.integrated.clone());
    let choices = apply_options.conflicts.clone();
    let (tasks, added) = match &selected {
        Some(s) => (
            s.order.iter().map(|(t, _)| t.as_str().to_owned()).collect(),
            s.added.clone(),
        ),
        None => (Vec::new(), Vec::new()),
    };
    let mut summary = blocking(move || -> Result<ApplySummary, ExecError> {
        let run_dir = store2.run_dir(&run2);
        let (mut integration, conflicts, attempts) = match selected {
            None => (
                open_integration_on(&store2, &run2, base)?,
                run_conflicts,
                run_integrated,
            ),
            Some(Selected { plan, order, .. }) => {
                let base = run_base(&store2, &run2, base)?;
                let blobs = BlobStore::open(store2.objects_dir())?;
                let fresh = crate::driver::install(
                    Integration::new(base, blobs)
                        .with_strategies(super::merge_rules(&plan)?)
                        .with_audit_policy(plan.on_violation),
                    driver_runner(&run2),
                    &plan,
                );
                let state = super::integrated::IntegrationState::new(fresh)
                    .rebuild(&store2, &run2, &plan, &order)?;
                let (unresolved, _) = state.conflicts();
                let open = clashes::unchosen(&unresolved, &choices);
                if !open.is_empty() {
                    return Err(ExecError::NotApplicable {
                        run: run2.to_string(),
                        reason: clashes::refusal(&run2, &open),
                    });
                }
                (state.into_integration(), unresolved, order)
            }
        };
        let settled = clashes::settle(
            &store2,
            &run2,
            &mut integration,
            &conflicts,
            &attempts,
            &choices,
        )?;
        same_repository(&store2, &run2, integration.base().repo())?;
        let recovered = matches!(
            forge_merge::recover(&run_dir)?,
            forge_merge::Recovery::RolledForward { .. }
        );
        Ok(match mode {
            ApplyMode::WorkingTree => {
                let mut report = apply_to_worktree(&integration, &apply_options, &gate)?;
                clashes::note_marked(&mut report, &conflicts, &settled);
                if recovered {
                    // The interrupted apply wrote what now holds the result: report it as this
                    // apply's, not as "0 files written".
                    let done = std::mem::take(&mut report.unchanged);
                    report.written.extend(done);
                    report.written.sort();
                }
                ApplySummary {
                    mode,
                    worktree: Some(report),
                    branch: None,
                    recovered,
                    tasks: Vec::new(),
                    added: Vec::new(),
                    settled: settled.clone(),
                }
            }
            ApplyMode::Branch => ApplySummary {
                mode,
                worktree: None,
                branch: Some(apply_to_branch(
                    &integration,
                    &BranchOptions::new(run2.as_str()),
                    &gate,
                )?),
                recovered,
                tasks: Vec::new(),
                added: Vec::new(),
                settled: settled.clone(),
            },
            ApplyMode::None => ApplySummary {
                mode,
                worktree: None,
                branch: None,
                recovered,
                tasks: Vec::new(),
                added: Vec::new(),
                settled: settled.clone(),
            },
        })
    })
    .await??;
    summary.tasks = tasks;
    summary.added = added;
    if let Some(events) = events {
        let kind = match (&summary.worktree, &summary.branch) {
            (Some(w), _) => EventKind::ApplyFinished {
                target: "worktree".into(),
                files: summary.files(),
                conflicts: w
                    .conflicts
                    .iter()
                    .map(|c| c.path.as_str().to_owned())
                    .collect(),
                branch: None,
                commit: None,
                tasks: summary.tasks.clone(),
            },
            (None, Some(b)) => EventKind::ApplyFinished {
                target: "branch".into(),
                files: Vec::new(),
                conflicts: Vec::new(),
                branch: Some(b.branch.clone()),
                commit: Some(b.head.clone()),
                tasks: summary.tasks.clone(),
            },
            (None, None) => return Ok(summary),
        };
        let _ = events.publish_run(kind);
    }
    Ok(summary)
}

/// One part of what `forge diff` shows: the whole run's integrated change, or one task's.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DiffSection {
    /// The task, or `None` for the whole run's integrated change against the base.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// The task's attempt whose changes were integrated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// The changed paths.
    pub files: Vec<FileDiff>,
    /// For one side of a conflict between tasks that the run left unresolved: `ours` (the
    /// integrated tree's side, `task` its writers) or `theirs` (the task whose change was set
    /// aside); the diff is from the set-aside task's start to that side's version of the path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflict: Option<String>,
}

/// The change of run `run` for review: with no `tasks`, the integrated tree against the run's
/// base (where the user's own edits clash with it, this is the run's version); otherwise each
/// named task's persisted `ChangeSet` (the attempt that was integrated), in the order given.
pub fn run_diff(repo: &Path, run: &RunId, tasks: &[String]) -> Result<Vec<DiffSection>, ExecError> {
    let store = RunStore::new(repo);
    if !store.exists(run) {
        return Err(ExecError::RunNotFound {
            run: run.to_string(),
            dir: store.runs_dir(),
        });
    }
    let not_yet = || {
        ExecError::Store(format!(
            "run `{run}` has no result to show yet: it is still running, or it stopped before it \
             ended (`forge status {run}` shows it; `forge resume {run}` finishes an interrupted run)"
        ))
    };
    if tasks.is_empty() {
        if !store.run_dir(run).join("integration.json").is_file() {
            return Err(not_yet());
        }
        let integration = open_integration(&store, run)?;
        let files = diff_change_set(&integration.delta(), integration.store())?;
        let mut sections = vec![DiffSection {
            task: None,
            attempt: None,
            files,
            conflict: None,
        }];
        if let Ok(result) = read_result(&store, run) {
            sections.extend(clashes::diff_sections(
                &store,
                run,
                &integration,
                &result.conflicts,
                &result.integrated,
            )?);
        }
        return Ok(sections);
    }
    if !store.result_path(run).is_file() {
        return Err(not_yet());
    }
    let attempts = integrated_attempts(&store, run, tasks)?;
    let blobs = BlobStore::open(store.objects_dir())?;
    let mut sections = Vec::with_capacity(tasks.len());
    for (task, attempt) in attempts {
        let changes: ChangeSet = crate::store::read_json(&store.changes_path(run, &task, attempt))?;
        sections.push(DiffSection {
            files: diff_change_set(&changes, &blobs)?,
            task: Some(task),
            attempt: Some(attempt),
            conflict: None,
        });
    }
    Ok(sections)
}

/// The integrated attempt of each of `tasks`, or an error naming a task that has none.
fn integrated_attempts(
    store: &RunStore,
    run: &RunId,
    tasks: &[String],
) -> Result<Vec<(String, u32)>, ExecError> {
    let result = match read_result(store, run) {
        Ok(r) => r,
        Err(ExecError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Err(ExecError::NotApplicable {
                run: run.to_string(),
                reason: format!(
                    "it has not finished; resume it with `forge resume {run}` (or look at the \
                     whole run's change so far with `forge diff {run}`)"
                ),
            });
        }
        Err(e) => return Err(e),
    };
    // Candidates succeed without being integrated: their attempts are in the journal.
    let succeeded = super::candidates::succeeded_attempts(store, run)?;
    tasks
        .iter()
        .map(|task| {
            if let Some((_, attempt)) = result.integrated.iter().find(|(t, _)| t.as_str() == task) {
                return Ok((task.clone(), *attempt));
            }
            if let Some((_, attempt)) = succeeded.iter().find(|(t, _)| t.as_str() == task)
                && store.changes_path(run, task, *attempt).is_file()
            {
                return Ok((task.clone(), *attempt));
            }
            let reason = if result.failed.iter().any(|t| t.as_str() == task) {
                format!("it did not succeed, so it has no changes in the result; `forge logs {task} {run}` shows what it did")
            } else {
                let mut known: Vec<&str> = result
                    .integrated
                    .iter()
                    .map(|(t, _)| t.as_str())
                    .chain(result.failed.iter().map(forge_events::TaskId::as_str))
                    .collect();
                // Then the candidates (succeeded, not integrated), in name order.
                let mut more: Vec<&str> = succeeded
                    .keys()
                    .map(forge_events::TaskId::as_str)
                    .filter(|t| !known.contains(t))
                    .collect();
                more.sort_unstable();
                known.extend(more);
                format!("the run has no such task (its tasks: {})", known.join(", "))
            };
            Err(ExecError::TaskNotInRun {
                run: run.to_string(),
                task: task.clone(),
                reason,
            })
        })
        .collect()
}

/// The integrated result of run `run` as a unified diff against its base (`git diff` format,
/// for review before applying).
pub fn integrated_diff(repo: &Path, run: &RunId, color: bool) -> Result<String, ExecError> {
    let sections = run_diff(repo, run, &[])?;
    Ok(sections
        .iter()
        .flat_map(|s| &s.files)
        .map(|f| f.render(color))
        .collect())
}

/// A Markdown summary of run `run`, for a pull request's body: its tasks (integrated, and those
/// that did not succeed), the gate's verdict and the paths it changes.
pub fn run_summary(repo: &Path, run: &RunId) -> Result<String, ExecError> {
    use std::fmt::Write as _;
    let store = RunStore::new(repo);
    let result = read_result(&store, run)?;
    let integration = open_integration(&store, run)?;
    let mut s = format!("Made by Forge, run `{run}`.\n\n### Tasks\n\n");
    for (task, attempt) in &result.integrated {
        let _ = writeln!(s, "- `{task}` (attempt {attempt})");
    }
    for task in &result.failed {
        let _ = writeln!(s, "- `{task}`: did not succeed, not included");
    }
    let gate = match &result.gate {
        Some(g) if g.passed() => format!("passed: {}", g.summary()),
        Some(g) => format!("failed: {}", g.summary()),
        None => "not run".to_owned(),
    };
    let _ = writeln!(s, "\n### Gate\n\n{gate}\n\n### Files\n");
    for (path, change) in integration.delta().iter() {
        let what = match (change.before(), change.after()) {
            (None, _) => "added",
            (_, None) => "deleted",
            _ => "modified",
        };
        let _ = writeln!(s, "- `{path}` ({what})");
    }
    Ok(s)
}
