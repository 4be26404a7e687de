use std::path::{Path, PathBuf};

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// A duration is not written as a sequence of `<number><unit>` with units ms, s, m, h, d.
    #[error(transparent)]
    InvalidDuration(#[from] forge_agents::DurationError),
    /// A file-system operation failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done (`read`, `create`, …).
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A file Forge wrote earlier cannot be read back.
    #[error("{} is damaged: {reason}; the run cannot be resumed from it (start it again with `forge run`)", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The plan is invalid.
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),
    /// An agent profile is missing, misconfigured, or its program is not installed.
    #[error("{0}")]
    Agent(String),
    /// The run store (`.forge/`) could not be used.
    #[error("{0}")]
    Store(String),
    /// The builder was not given what it needs.
    #[error("{0}")]
    Config(String),
    /// No run with this id in the repository.
    #[error("no run `{run}` in {}; `forge runs` lists the runs", dir.display())]
    RunNotFound {
        /// The id asked for.
        run: String,
        /// Where runs are kept.
        dir: PathBuf,
    },
    /// Another live process runs it.
    #[error(
        "run `{run}` is being run by process {pid}; wait for it, or stop it with `forge abort {run}`"
    )]
    RunBusy {
        /// The run.
        run: String,
        /// The process running it.
        pid: i32,
    },
    /// The run cannot be applied.
    #[error("run `{run}` cannot be applied: {reason}")]
    NotApplicable {
        /// The run.
        run: String,
        /// Why.
        reason: String,
    },
    /// A task named on the command line has nothing to show or apply in the run.
    #[error("task `{task}` of run `{run}`: {reason}")]
    TaskNotInRun {
        /// The run.
        run: String,
        /// The task asked for.
        task: String,
        /// Why (not in the run, did not succeed), and what to do.
        reason: String,
    },
    /// Staging (snapshot, workspaces, blobs) failed.
    #[error(transparent)]
    Staging(#[from] forge_staging::StagingError),
    /// Merging, the gate or the apply failed.
    #[error(transparent)]
    Merge(#[from] forge_merge::MergeError),
    /// The event journal failed.
    #[error(transparent)]
    Events(#[from] forge_events::EventsError),
    /// A task could not be added to a run in progress (`forge add`).
    #[error("cannot add task `{task}` to run `{run}`: {reason}")]
    TaskNotAdded {
        /// The run.
        run: String,
        /// The task's id as given.
        task: String,
        /// Why, and what to do.
        reason: String,
    },
}

impl ExecError {
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}
