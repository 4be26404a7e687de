//! `forge apply --conflicts agent`: the task that produced a clashing path runs again (the
//! retry machinery) on top of the other side's version, with the clash as its added
//! instructions; its new result is then applied.
//!
//! The other side is the user's own version (a clash with the working tree) or the integrated
//! tree's side (a conflict between tasks that no strategy settled). The re-run's workspace gets
//! the clashing file with diff3 markers between that side and the task's own version, so the
//! agent sees both; what it leaves there is its resolution. Which files are put in place for
//! which attempt is persisted beside the attempt re-run (`resolve.json`), so a re-run
//! interrupted and resumed starts the same way.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use forge_events::{RunId, TaskId};
use forge_merge::{Conflict, ConflictChoices, OnConflict, Party, TaskClash};
use forge_staging::{BlobStore, Change, ChangeSet, Entry, RepoPath};
use serde::{Deserialize, Serialize};

use crate::ExecError;
use crate::manager::retry::{RetryContext, RetryRequest};
use crate::plan::{Plan, PlanOptions};
use crate::store::{RunStore, read_json, write_json};

const FILE: &str = "resolve.json";

/// One task to re-run for `--conflicts agent`: the request to hand to the retry machinery and
/// the paths it is to resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictRerun {
    /// The retry request: the task, with the clash described as its added instructions.
    pub request: RetryRequest,
    /// The clashing paths the re-run resolves.
    pub paths: Vec<RepoPath>,
    /// Whether the other side is the user's working tree (else the integrated tree's side).
    pub with_working_tree: bool,
}

/// The files a re-run's workspace gets before its agent starts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Overrides {
    /// Path → the file put there (the clash with diff3 markers).
    paths: BTreeMap<RepoPath, Entry>,
    /// The re-run's added instructions: only the retry asked with them gets the files (a
    /// later `forge retry` of the same attempt starts as usual).
    prompt: String,
}

/// Prepares the re-runs of `--conflicts agent` for run `run` of the repository at `repo`:
/// one per task, for the unresolved conflicts between tasks whose choice in `choices` is
/// `agent` (the task whose change was set aside re-runs on top of the integrated side) and for
/// `user_clashes` (clashes with the user's own edits an apply reported, with their diff3
/// marked file; the task that wrote the path re-runs on top of the user's version). Persists
/// what each re-run's workspace starts with; the caller runs the requests as retries.
///
/// # Errors
/// The run or its result cannot be read, or a clashing path has no task that wrote it.
pub fn prepare_agent_reruns(
    repo: &Path,
    run: &RunId,
    choices: &ConflictChoices,
    user_clashes: &[Conflict],
    plan_options: &PlanOptions,
) -> Result<Vec<ConflictRerun>, ExecError> {
    let store = RunStore::new(repo);
    let result = super::read_result(&store, run)?;
    let plan = Plan::load(&store.plan_copy(run), plan_options)?;
    let blobs = BlobStore::open(store.objects_dir())?;
    let agent = |c: &&Conflict| choices.for_path(&c.path) == OnConflict::Agent;
    // (task, with the working tree) → the clashes and the marked files.
    let mut by_task: BTreeMap<(String, bool), Vec<(Conflict, Entry)>> = BTreeMap::new();
    let between: Vec<&Conflict> = result
        .conflicts
        .iter()
        .filter(|c| !c.resolved)
        .filter(agent)
        .collect();
    if !between.is_empty() {
        let mut integration = super::open_integration(&store, run)?;
        for conflict in between {
            let changes =
                super::clashes::set_aside_changes(&store, run, conflict, &result.integrated)?;
            let change = changes.get(conflict.path.as_str());
            let clash = TaskClash {
                conflict,
                start: change.and_then(Change::before),
                result: change.and_then(Change::after),
            };
            let settled = integration.settle_clash(&clash, OnConflict::Markers)?;
            let marked = integration.get(conflict.path.as_str()).cloned();
            let Some(marked) = marked.filter(|_| settled.marked) else {
                return Err(not_markable(run, conflict));
            };
            by_task
                .entry((settled.theirs.to_string(), false))
                .or_default()
                .push((conflict.clone(), marked));
        }
    }
    for conflict in user_clashes.iter().filter(agent) {
        let task = conflict
            .tasks
            .iter()
            .find_map(Party::task)
            .ok_or_else(|| not_markable(run, conflict))?;
        let Some(hash) = conflict.marked else {
            return Err(not_markable(run, conflict));
        };
        let size = blobs.read(&hash)?.len() as u64;
        // The file keeps the user's exec bit.
        let executable = std::fs::metadata(repo.join(conflict.path.as_str()))
            .is_ok_and(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0);
        by_task
            .entry((task.to_string(), true))
            .or_default()
            .push((conflict.clone(), Entry::file(hash, size, executable)));
    }
    let mut reruns = Vec::new();
    for ((task, with_working_tree), clashes) in by_task {
        let Some((_, attempt)) = result.integrated.iter().find(|(t, _)| t.as_str() == task) else {
            return Err(ExecError::TaskNotInRun {
                run: run.to_string(),
                task,
                reason: "it has no integrated result to re-run on top of".to_owned(),
            });
        };
        let prompt = instructions(&plan, &task, &clashes, with_working_tree);
        let overrides = Overrides {
            paths: clashes
                .iter()
                .map(|(c, e)| (c.path.clone(), e.clone()))
                .collect(),
            prompt: prompt.clone(),
        };
        write_json(
            &store.attempt_dir(run, &task, *attempt).join(FILE),
            &overrides,
        )?;
        let id = TaskId::new(task.as_str()).map_err(|e| ExecError::TaskNotInRun {
            run: run.to_string(),
            task: task.clone(),
            reason: e.to_string(),
        })?;
        reruns.push(ConflictRerun {
            request: RetryRequest::new(id, prompt),
            paths: clashes.iter().map(|(c, _)| c.path.clone()).collect(),
            with_working_tree,
        });
    }
    Ok(reruns)
}

fn not_markable(run: &RunId, conflict: &Conflict) -> ExecError {
    ExecError::NotApplicable {
        run: run.to_string(),
        reason: format!(
            "the conflict on {} ({}) cannot be handed to an agent: only text files changed on \
             both sides can be; choose `ours` or `theirs` for it",
            conflict.path, conflict.kind
        ),
    }
}

/// The added instructions of a re-run: the clash, then the task as given.
fn instructions(
    plan: &Plan,
    task: &str,
    clashes: &[(Conflict, Entry)],
    with_working_tree: bool,
) -> String {
    let mut s = String::from(
        "Forge: your change clashes with another change to the same lines. Each file below now \
         holds diff3 conflict markers in your workspace: `<<<<<<< <other side>`, the other \
         side's lines, `||||||| base`, the lines both started from, `=======`, your lines, \
         `>>>>>>> <you>`. Resolve every conflict so that the file keeps the intent of both \
         changes, remove all marker lines, and change nothing else.\n\n",
    );
    for (c, _) in clashes {
        let other = if with_working_tree {
            "the user's own edits in their working tree".to_owned()
        } else {
            let others: Vec<String> = c
                .tasks
                .iter()
                .filter(|p| p.task().map(TaskId::as_str) != Some(task))
                .map(|p| format!("task `{p}`"))
                .collect();
            others.join(", ")
        };
        let _ = writeln!(s, "- {} (with {other})", c.path);
    }
    if let Some(t) = plan.tasks.iter().find(|t| t.id.as_str() == task) {
        let _ = write!(s, "\nThe task, as given:\n\n{}\n", t.prompt);
    }
    s
}

/// `restore` (the previous attempt's changes a retried attempt starts from) with the files a
/// `--conflicts agent` re-run is to resolve put in place, when `retry` is such a re-run.
pub(crate) fn with_overrides(
    store: &RunStore,
    run: &RunId,
    task: &TaskId,
    retry: &RetryContext,
    restore: Option<ChangeSet>,
) -> Option<ChangeSet> {
    if retry.from_attempt == 0 {
        return restore;
    }
    let path = store
        .attempt_dir(run, task.as_str(), retry.from_attempt)
        .join(FILE);
    let Ok(overrides) = read_json::<Overrides>(&path) else {
        return restore;
    };
    if overrides.prompt != retry.prompt {
        return restore;
    }
    let mut changes = restore.unwrap_or_default();
    for (path, entry) in overrides.paths {
        if let Some(change) = Change::between(None, Some(entry)) {
            changes.insert(path, change);
        }
    }
    Some(changes)
}
