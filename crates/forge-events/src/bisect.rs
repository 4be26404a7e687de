//! The gate bisect as folded from its events (`gate_bisect_*`): which trees were gated, and
//! which task it named.

use serde::{Deserialize, Serialize};

use crate::{EventKind, TaskId};

/// One tree a bisect gated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BisectStepRecord {
    /// How many of the integrated `ChangeSets` it held (0: the base alone).
    pub changesets: u32,
    /// The last task whose `ChangeSet` it held.
    #[serde(default)]
    pub last: Option<TaskId>,
    /// Whether the gate passed on it.
    pub passed: bool,
    /// The first command that failed on it.
    #[serde(default)]
    pub failed_command: Option<String>,
    /// Wall time in milliseconds.
    #[serde(default)]
    pub duration_ms: u64,
    /// Whether the result came from before a resume.
    #[serde(default)]
    pub reused: bool,
}

/// A run's gate bisect: started after the gate failed on the integrated tree.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BisectRecord {
    /// The integrated tasks, in integration order.
    pub tasks: Vec<TaskId>,
    /// Trees gated at once.
    pub concurrency: u32,
    /// The trees gated so far, in the order their results came.
    pub steps: Vec<BisectStepRecord>,
    /// Whether it has ended.
    pub finished: bool,
    /// The first failing task, once found.
    #[serde(default)]
    pub culprit: Option<TaskId>,
    /// Whether the base alone fails the gate.
    #[serde(default)]
    pub base_fails: bool,
    /// Gate runs made (from `gate_bisect_finished`; while running, the steps not reused).
    pub gate_runs: u32,
    /// What it found, once finished.
    #[serde(default)]
    pub message: Option<String>,
}

impl BisectRecord {
    /// Folds a `gate_bisect_*` event into `slot` (other events are ignored).
    pub(crate) fn fold(slot: &mut Option<Self>, kind: &EventKind) {
        match kind {
            EventKind::GateBisectStarted { tasks, concurrency } => {
                // A resumed run bisects again: the latest bisect is the one shown.
                *slot = Some(Self {
                    tasks: tasks.clone(),
                    concurrency: *concurrency,
                    ..Self::default()
                });
            }
            EventKind::GateBisectStep {
                changesets,
                last,
                passed,
                failed_command,
                duration_ms,
                reused,
            } => {
                let record = slot.get_or_insert_with(Self::default);
                if !reused {
                    record.gate_runs += 1;
                }
                record.steps.push(BisectStepRecord {
                    changesets: *changesets,
                    last: last.clone(),
                    passed: *passed,
                    failed_command: failed_command.clone(),
                    duration_ms: *duration_ms,
                    reused: *reused,
                });
            }
            EventKind::GateBisectFinished {
                culprit,
                base_fails,
                gate_runs,
                message,
            } => {
                let record = slot.get_or_insert_with(Self::default);
                record.finished = true;
                record.culprit.clone_from(culprit);
                record.base_fails = *base_fails;
                record.gate_runs = *gate_runs;
                record.message = Some(message.clone());
            }
            _ => {}
        }
    }
}
