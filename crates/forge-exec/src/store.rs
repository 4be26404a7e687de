//! The run store: where a run keeps everything it needs to be watched, resumed and applied.
//!
//! ```text
//! <repo>/.forge/
//!   objects/                       content-addressed blobs (forge-staging's BlobStore)
//!   bases/<commit>/                base snapshots of `head` runs, shared per commit (one an
//!                                  older Forge made is captured again: `BaseSnapshot::is_current`)
//!   runs/<run>/
//!     plan.toml                    the plan as run (defaults applied, prompts inlined)
//!     events.jsonl                 the journal: the source of truth
//!     owner                        "<pid> <start time>" of the process running it, while it runs
//!     base/                        the base snapshot (for `head`: a symlink into bases/)
//!     work/                        workspaces and snapshot layers (removed at the end)
//!     tasks/<task>/<attempt>/
//!       prompt.md                  the prompt the agent was given
//!       output.log                 every line it printed
//!       changes.json               its captured ChangeSet (durable before task_finished)
//!     result.json                  gate report and outcome, once the run ended
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use forge_events::layout::RunDir;
use forge_events::{RunId, TaskId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::ExecError;

/// The directory under the repository that holds Forge's state.
pub use forge_events::layout::FORGE_DIR;

/// The `.forge` directory of one repository and the layout of the runs in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStore {
    root: PathBuf,
}

/// Who is running a run: read from its `owner` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOwner {
    /// The process id.
    pub pid: i32,
    /// Whether that process is still the one that wrote the file (same pid, same start time).
    pub alive: bool,
}

impl RunStore {
    /// The store of the repository at `repo` (`<repo>/.forge`). Nothing is created yet.
    pub fn new(repo: &Path) -> Self {
        Self {
            root: forge_events::layout::forge_dir(repo),
        }
    }

    /// `<repo>/.forge`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `.forge/runs`: what `forge_events::list_runs` and the SSE server read.
    pub fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }

    /// The paths inside `.forge/runs/<run>` ([`forge_events::layout`]).
    pub fn layout(&self, run: &RunId) -> RunDir {
        RunDir::new(&self.runs_dir(), run)
    }

    /// `.forge/objects`: the blob store shared by all runs.
    pub fn objects_dir(&self) -> PathBuf {
        self.root.join("objects")
    }

    /// `.forge/bases`: base snapshots of `head` runs, one per commit, shared by the runs of
    /// that commit (each run's `base` is a symlink to its commit's).
    pub fn bases_dir(&self) -> PathBuf {
        self.root.join("bases")
    }

    /// `.forge/runs/<run>`.
    pub fn run_dir(&self, run: &RunId) -> PathBuf {
        self.layout(run).path().to_path_buf()
    }

    /// The run's journal, `events.jsonl`.
    pub fn journal(&self, run: &RunId) -> PathBuf {
        self.layout(run).journal()
    }

    /// The plan as run.
    pub fn plan_copy(&self, run: &RunId) -> PathBuf {
        self.layout(run).plan_copy()
    }

    /// The base snapshot's directory.
    pub fn base_dir(&self, run: &RunId) -> PathBuf {
        self.layout(run).base()
    }

    /// Workspaces and snapshot layers of the run (the stager's `run_root`).
    pub fn work_dir(&self, run: &RunId) -> PathBuf {
        self.layout(run).work()
    }

    /// `tasks/<task>/<attempt>` of the run.
    pub fn attempt_dir(&self, run: &RunId, task: &str, attempt: u32) -> PathBuf {
        self.layout(run).attempt(task, attempt)
    }

    /// Every line an attempt printed.
    pub fn log_path(&self, run: &RunId, task: &str, attempt: u32) -> PathBuf {
        self.layout(run).log(task, attempt)
    }

    /// The attempt's persisted `ChangeSet`.
    pub fn changes_path(&self, run: &RunId, task: &str, attempt: u32) -> PathBuf {
        self.layout(run).changes(task, attempt)
    }

    /// The run's outcome, written when it ends.
    pub fn result_path(&self, run: &RunId) -> PathBuf {
        self.layout(run).result()
    }

    fn owner_path(&self, run: &RunId) -> PathBuf {
        self.layout(run).owner()
    }

    /// A new run id `<name>-<yyyymmdd-hhmmss>-<4 hex digits>` (UTC; the random suffix keeps ids
    /// of runs started in the same second apart, in this repository and in others), its
    /// directory created so no other process takes it.
    pub fn new_run(&self, name: &str) -> Result<RunId, ExecError> {
        use std::hash::{BuildHasher as _, Hasher as _};
        let runs = self.runs_dir();
        fs::create_dir_all(&runs).map_err(|e| ExecError::io("create", &runs, e))?;
        // Forge's state is never part of the user's changes: keep it out of `git status`.
        let ignore = self.root.join(".gitignore");
        if !ignore.exists() {
            fs::write(
                &ignore,
                "# Forge's run store (runs, objects, bases): not part of the project.\n*\n",
            )
            .map_err(|e| ExecError::io("write", &ignore, e))?;
        }
        let mut slug: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        slug = slug.trim_matches('-').chars().take(48).collect();
        if slug.is_empty() {
            "run".clone_into(&mut slug);
        }
        let stamp = jiff::Timestamp::now().strftime("%Y%m%d-%H%M%S").to_string();
        for attempt in 0..1000u32 {
            let mut hasher = std::hash::RandomState::new().build_hasher();
            hasher.write_u32(std::process::id());
            hasher.write_u32(attempt);
            let suffix = hasher.finish() & 0xffff;
            let run = RunId::new(format!("{slug}-{stamp}-{suffix:04x}"))
                .map_err(|e| ExecError::Store(e.to_string()))?;
            match fs::create_dir(self.run_dir(&run)) {
                Ok(()) => return Ok(run),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(ExecError::io("create", &self.run_dir(&run), e)),
            }
        }
        Err(ExecError::Store(format!(
            "no free run id for `{slug}-{stamp}` in {}",
            runs.display()
        )))
    }

    /// The most recently written run, if any.
    pub fn latest_run(&self) -> Result<Option<RunId>, ExecError> {
        let runs = forge_events::list_runs(&self.runs_dir())
            .map_err(|e| ExecError::Store(e.to_string()))?;
        Ok(runs.into_iter().next().map(|r| r.id))
    }

    /// Whether a run with this id has a journal here.
    pub fn exists(&self, run: &RunId) -> bool {
        self.journal(run).is_file()
    }

    /// Who runs `run`, if a process said so and has not cleaned up.
    pub fn owner(&self, run: &RunId) -> Option<RunOwner> {
        let text = fs::read_to_string(self.owner_path(run)).ok()?;
        let mut parts = text.split_whitespace();
        let pid: i32 = parts.next()?.parse().ok()?;
        let start = parts.next().map(str::to_owned);
        let alive = process_start_time(pid).is_some_and(|s| Some(s) == start);
        Some(RunOwner { pid, alive })
    }

    /// Records this process as the run's owner.
    pub(crate) fn claim_owner(&self, run: &RunId) -> Result<(), ExecError> {
        let pid = std::process::id();
        let start = i32::try_from(pid)
            .ok()
            .and_then(process_start_time)
            .unwrap_or_default();
        let path = self.owner_path(run);
        write_atomically(&path, format!("{pid} {start}\n").as_bytes())
    }

    /// Removes the owner record (the run ended in this process).
    pub(crate) fn release_owner(&self, run: &RunId) {
        let _ = fs::remove_file(self.owner_path(run));
    }
}

/// The start time of process `pid` (field 22 of `/proc/<pid>/stat`), to tell a live owner from
/// a reused pid.
fn process_start_time(pid: i32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields after it follow the
    // last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19).map(str::to_owned)
}

/// Writes `path` atomically and durably ([`forge_staging::write_atomically`]).
pub(crate) fn write_atomically(path: &Path, content: &[u8]) -> Result<(), ExecError> {
    forge_staging::write_atomically(path, content).map_err(|e| ExecError::io("save", path, e))
}

/// Writes `value` as JSON, atomically and durably.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ExecError> {
    let text = serde_json::to_vec_pretty(value)
        .map_err(|e| ExecError::io("encode", path, std::io::Error::other(e)))?;
    write_atomically(path, &text)
}

/// Reads JSON written by [`write_json`].
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, ExecError> {
    let text = fs::read(path).map_err(|e| ExecError::io("read", path, e))?;
    serde_json::from_slice(&text).map_err(|e| ExecError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// What a run left in `result.json` when it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// How it ended.
    pub status: forge_events::RunStatus,
    /// Whether the run may be applied: every task succeeded, no conflict is unresolved and the
    /// gate passed.
    pub applicable: bool,
    /// The gate's report, if it ran.
    pub gate: Option<forge_merge::GateReport>,
    /// Tasks that did not succeed.
    pub failed: Vec<TaskId>,
    /// Conflicts no strategy settled.
    pub conflicts: Vec<forge_merge::Conflict>,
    /// The integrated order: which task's changes (from which attempt) went in, in order.
    pub integrated: Vec<(TaskId, u32)>,
    /// The bisect of a failed gate, if one ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bisect: Option<crate::manager::GateBisect>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_unique_and_valid() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::new(dir.path());
        let a = store.new_run("Add user auth!").unwrap();
        let b = store.new_run("Add user auth!").unwrap();
        assert_ne!(a, b);
        assert!(a.as_str().starts_with("add-user-auth-"), "{a}");
        assert_eq!(
            a.as_str().len(),
            "add-user-auth-20261124-163000-abcd".len(),
            "{a}"
        );
        assert!(store.run_dir(&a).is_dir());
        assert!(
            fs::read_to_string(dir.path().join(".forge/.gitignore"))
                .unwrap()
                .contains("*\n")
        );
        let c = store.new_run("").unwrap();
        assert!(c.as_str().starts_with("run-"));
    }

    #[test]
    fn owner_is_alive_only_for_the_same_process() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::new(dir.path());
        let run = store.new_run("x").unwrap();
        assert_eq!(store.owner(&run), None);
        store.claim_owner(&run).unwrap();
        let owner = store.owner(&run).unwrap();
        assert!(owner.alive);
        assert_eq!(owner.pid, i32::try_from(std::process::id()).unwrap());
        // A pid whose start time differs is not the owner any more.
        fs::write(store.owner_path(&run), format!("{} 1\n", owner.pid)).unwrap();
        assert!(!store.owner(&run).unwrap().alive);
        store.release_owner(&run);
        assert_eq!(store.owner(&run), None);
    }
}
