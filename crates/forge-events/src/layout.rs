//! Where Forge keeps what: the one definition of the `.forge/` folder's layout.
//!
//! ```text
//! <repo>/.forge/
//!   runs/<run>/events.jsonl                      the journal
//!   runs/<run>/plan.toml                         the plan as run
//!   runs/<run>/result.json                       the outcome, written when the run ends
//!   runs/<run>/tasks/<task>/<attempt>/output.log every line an attempt printed
//!   runs/<run>/tasks/<task>/<attempt>/changes.json  the attempt's persisted ChangeSet
//!   runs/<run>/base, work/, owner                the base snapshot, workspaces, the owner
//!   runs/<run>/requests/<task>.json              tasks `forge add` hands to the running process
//!   objects/, bases/                             shared by all runs
//! ```
//!
//! Every crate that reads or writes these paths goes through this module, so the layout is
//! spelled out once.
//!
//! ```
//! use forge_events::{RunId, layout::{self, RunDir}};
//! use std::path::Path;
//!
//! let runs = layout::runs_dir(Path::new("/repo"));
//! let run = RunDir::new(&runs, &RunId::new("demo-20260101-000000-abcd")?);
//! assert_eq!(run.log("api", 2), Path::new(
//!     "/repo/.forge/runs/demo-20260101-000000-abcd/tasks/api/2/output.log"));
//! # Ok::<(), forge_events::EventsError>(())
//! ```

use std::path::{Path, PathBuf};

use crate::RunId;

/// Forge's folder at the repository's root.
pub const FORGE_DIR: &str = ".forge";

/// The journal's file name inside a run directory.
pub const JOURNAL_FILE: &str = "events.jsonl";

/// An attempt's log file name.
pub const LOG_FILE: &str = "output.log";

/// An attempt's persisted `ChangeSet` file name.
pub const CHANGES_FILE: &str = "changes.json";

/// `<repo>/.forge`.
pub fn forge_dir(repo: &Path) -> PathBuf {
    repo.join(FORGE_DIR)
}

/// `<repo>/.forge/runs`: one directory per run.
pub fn runs_dir(repo: &Path) -> PathBuf {
    forge_dir(repo).join("runs")
}

/// `<tasks_dir>/<task>/<attempt>`, given a run's `tasks` directory ([`RunDir::tasks`]).
pub fn attempt_dir(tasks_dir: &Path, task: &(impl AsRef<str> + ?Sized), attempt: u32) -> PathBuf {
    tasks_dir.join(task.as_ref()).join(attempt.to_string())
}

/// `<task_dir>/<attempt>/output.log`, given a task's directory ([`RunDir::task`]).
pub fn attempt_log(task_dir: &Path, attempt: u32) -> PathBuf {
    task_dir.join(attempt.to_string()).join(LOG_FILE)
}

/// The paths inside one run's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir(PathBuf);

impl RunDir {
    /// `<runs_dir>/<run>`.
    pub fn new(runs_dir: &Path, run: &RunId) -> Self {
        Self(runs_dir.join(run.as_str()))
    }

    /// A run directory at a known path.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self(path.into())
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The journal, `events.jsonl`.
    pub fn journal(&self) -> PathBuf {
        self.0.join(JOURNAL_FILE)
    }

    /// The plan as run, `plan.toml`.
    pub fn plan_copy(&self) -> PathBuf {
        self.0.join("plan.toml")
    }

    /// The run's outcome, `result.json`.
    pub fn result(&self) -> PathBuf {
        self.0.join("result.json")
    }

    /// Who runs it (pid and start time), `owner`.
    pub fn owner(&self) -> PathBuf {
        self.0.join("owner")
    }

    /// The base snapshot, `base`.
    pub fn base(&self) -> PathBuf {
        self.0.join("base")
    }

    /// Workspaces and snapshot layers, `work`.
    pub fn work(&self) -> PathBuf {
        self.0.join("work")
    }

    /// Tasks handed to the run's process by `forge add`, waiting to be taken, `requests`.
    pub fn requests(&self) -> PathBuf {
        self.0.join("requests")
    }

    /// The tasks' attempt directories, `tasks`.
    pub fn tasks(&self) -> PathBuf {
        self.0.join("tasks")
    }

    /// The directory holding a task's attempts, `tasks/<task>`.
    pub fn task(&self, task: &(impl AsRef<str> + ?Sized)) -> PathBuf {
        self.tasks().join(task.as_ref())
    }

    /// `tasks/<task>/<attempt>`.
    pub fn attempt(&self, task: &(impl AsRef<str> + ?Sized), attempt: u32) -> PathBuf {
        attempt_dir(&self.tasks(), task, attempt)
    }

    /// Every line an attempt printed, `tasks/<task>/<attempt>/output.log`.
    pub fn log(&self, task: &(impl AsRef<str> + ?Sized), attempt: u32) -> PathBuf {
        attempt_log(&self.task(task), attempt)
    }

    /// The attempt's persisted `ChangeSet`, `tasks/<task>/<attempt>/changes.json`.
    pub fn changes(&self, task: &(impl AsRef<str> + ?Sized), attempt: u32) -> PathBuf {
        self.attempt(task, attempt).join(CHANGES_FILE)
    }
}
