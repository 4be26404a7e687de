//! Applying a finished run: to the working tree (atomic, journaled, merged with the user's own
//! edits) or as commits on branch `forge/<run>`; and the integrated diff for review.

use std::path::Path;
use std::sync::Arc;

use forge_events::{BusOptions, EventBus, EventKind, EventSink, RunId};
use forge_merge::{
    ApplyOptions, ApplyReport, BranchOptions, BranchReport, GateReport, Integration,
    apply_to_branch, apply_to_worktree,
};
use forge_staging::{BaseSnapshot, BlobStore, Entry};

use super::{blocking, read_result};
use crate::ExecError;
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

/// The run's integrated tree, reopened from the run store.
fn open_integration(store: &RunStore, run: &RunId) -> Result<Integration, ExecError> {
    let base = BaseSnapshot::open(&store.base_dir(run))?;
    let blobs = BlobStore::open(store.objects_dir())?;
    Ok(Integration::open(
        &store.run_dir(run).join("integration.json"),
        Arc::new(base),
        blobs,
    )?)
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
    let result = apply_with(&store, run, mode, Some(&bus)).await;
    let closed = bus.close();
    let summary = result?;
    closed?;
    Ok(summary)
}

#[allow(clippy::too_many_lines)] // refusal reasons, the apply, its event
pub(crate) async fn apply_with(
    store: &RunStore,
    run: &RunId,
    mode: ApplyMode,
    events: Option<&dyn EventSink>,
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
    if !result.applicable {
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
        } else if !result.conflicts.is_empty() {
            format!(
                "merge conflicts are unresolved on {}",
                result
                    .conflicts
                    .iter()
                    .map(|c| c.path.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else if let Some(gate) = result.gate.as_ref().filter(|g| !g.passed()) {
            format!("the gate failed: {}", gate.summary())
        } else {
            format!("it ended as {}", result.status.as_str())
        };
        return Err(not(reason));
    }
    let gate = result.gate.clone().unwrap_or_else(GateReport::not_run);
    let (store2, run2) = (store.clone(), run.clone());
    let summary = blocking(move || -> Result<ApplySummary, ExecError> {
        let run_dir = store2.run_dir(&run2);
        let integration = open_integration(&store2, &run2)?;
        same_repository(&store2, &run2, integration.base().repo())?;
        let recovered = matches!(
            forge_merge::recover(&run_dir)?,
            forge_merge::Recovery::RolledForward { .. }
        );
        Ok(match mode {
            ApplyMode::WorkingTree => {
                let mut report =
                    apply_to_worktree(&integration, &ApplyOptions::new(&run_dir), &gate)?;
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
            },
            ApplyMode::None => ApplySummary {
                mode,
                worktree: None,
                branch: None,
                recovered,
            },
        })
    })
    .await??;
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
            },
            (None, Some(b)) => EventKind::ApplyFinished {
                target: "branch".into(),
                files: Vec::new(),
                conflicts: Vec::new(),
                branch: Some(b.branch.clone()),
                commit: Some(b.head.clone()),
            },
            (None, None) => return Ok(summary),
        };
        let _ = events.publish_run(kind);
    }
    Ok(summary)
}

/// The integrated result of run `run` as a unified diff against its base (`git diff` format,
/// for review before applying).
pub fn integrated_diff(repo: &Path, run: &RunId, color: bool) -> Result<String, ExecError> {
    let store = RunStore::new(repo);
    let integration = open_integration(&store, run)?;
    let tmp = tempfile::Builder::new()
        .prefix("forge-diff-")
        .tempdir()
        .map_err(|e| ExecError::io("create", &std::env::temp_dir(), e))?;
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for (path, change) in &integration.delta() {
        for (side, entry) in [(&a, change.before()), (&b, change.after())] {
            let Some(entry) = entry else { continue };
            let dest = side.join(path.as_str());
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(|e| ExecError::io("create", parent, e))?;
            }
            match entry {
                Entry::File { hash, .. } => {
                    let bytes = integration.store().read(hash)?;
                    std::fs::write(&dest, bytes).map_err(|e| ExecError::io("write", &dest, e))?;
                }
                Entry::Symlink { target, .. } => {
                    std::fs::write(&dest, format!("symlink -> {target}\n"))
                        .map_err(|e| ExecError::io("write", &dest, e))?;
                }
            }
        }
    }
    std::fs::create_dir_all(&a).map_err(|e| ExecError::io("create", &a, e))?;
    std::fs::create_dir_all(&b).map_err(|e| ExecError::io("create", &b, e))?;
    let out = std::process::Command::new("git")
        .current_dir(tmp.path())
        .args(["diff", "--no-index", "--no-prefix"])
        .arg(if color {
            "--color=always"
        } else {
            "--color=never"
        })
        .args(["a", "b"])
        .output()
        .map_err(|e| ExecError::io("run git diff in", tmp.path(), e))?;
    // Exit 1 means "differences found".
    if !matches!(out.status.code(), Some(0 | 1)) {
        return Err(ExecError::Store(format!(
            "git diff failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
