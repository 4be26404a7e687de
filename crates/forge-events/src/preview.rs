//! The plan preview: what a run will do before any agent starts — its tasks with their agents,
//! claims and estimates, which tasks can run together and which are serialized (and why), the
//! critical path, and the estimated wall time against the sequential sum.
//!
//! `forge-exec` computes it from a plan (`forge_exec::plan::preview`), publishes it as the
//! `plan_preview` event right after `run_started`, and `forge check` prints it. It is plain data
//! here so a journal reader (the terminal, `--json`, the dashboard) needs nothing else.

use serde::{Deserialize, Serialize};

use crate::{ClaimRecord, TaskId};

/// A plan's preview (the payload of the `plan_preview` event).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanPreview {
    /// How many tasks may run at once.
    pub concurrency: u32,
    /// Every task, in plan order.
    pub tasks: Vec<PreviewTask>,
    /// Groups of tasks that can run at the same time: neither runs after the other and their
    /// claims do not exclude each other (each group has two tasks or more).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub together: Vec<Vec<TaskId>>,
    /// Pairs of tasks that cannot run at the same time, and why: every `after` edge, and a
    /// bounded number of the pairs only the locks keep apart (`forge_exec` lists 200).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub serialized: Vec<Serialized>,
    /// How many more pairs the locks keep apart than `serialized` lists.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub more_serialized: u64,
    /// The longest chain of `after` edges by estimated duration (by task count where durations
    /// are unknown), first task first.
    pub critical_path: Vec<TaskId>,
    /// The estimated wall time in milliseconds: a simulation of the scheduler (concurrency,
    /// `after` edges, lock exclusions, critical path first). Absent when a task has no estimate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate_ms: Option<u64>,
    /// The sum of every task's estimate (what running them one after the other would take).
    /// Absent when a task has no estimate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequential_ms: Option<u64>,
}

/// One task of a [`PlanPreview`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviewTask {
    /// The task.
    pub id: TaskId,
    /// Its agent profile.
    pub agent: String,
    /// Its claims, reads first, then writes, then appends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<ClaimRecord>,
    /// The tasks it runs after.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<TaskId>,
    /// Its expected duration in milliseconds, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate_ms: Option<u64>,
    /// Where the estimate comes from.
    pub estimate_from: EstimateSource,
    /// How many files the task works on, when the plan says (`files` key, written by
    /// `forge split`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<u64>,
}

/// Where a task's estimate comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EstimateSource {
    /// The plan's `estimate` key.
    Plan,
    /// The median duration of this task id in the repository's earlier runs.
    TaskHistory,
    /// The median duration of this agent's tasks in the repository's earlier runs.
    AgentHistory,
    /// Nothing to go by.
    #[default]
    Unknown,
}

/// Two tasks that cannot run at the same time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Serialized {
    /// The task that goes first (for [`SerialReason::Locks`], the one earlier in the plan: the
    /// locks decide the order at run time).
    pub first: TaskId,
    /// The other task.
    pub then: TaskId,
    /// Why.
    pub reason: SerialReason,
    /// Claims of the two that overlap with a write (always there for
    /// [`SerialReason::Locks`]; for an `after` edge, when the edge also keeps their writes
    /// apart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<Overlap>,
}

/// Why two tasks are serialized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SerialReason {
    /// `then` has `after = ["first"]`.
    After,
    /// Neither runs after the other, but their claims overlap and one of them writes: the
    /// locks let one of them at a time hold its claims.
    Locks,
}

/// Two claims, of two tasks, that cover a common path, one of them a write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overlap {
    /// The claim of [`Serialized::first`].
    pub first_claim: ClaimRecord,
    /// The claim of [`Serialized::then`].
    pub then_claim: ClaimRecord,
    /// A path both claims cover.
    pub path: String,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `skip_serializing_if` passes a reference
fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl PlanPreview {
    /// The task with this id.
    pub fn task(&self, id: &TaskId) -> Option<&PreviewTask> {
        self.tasks.iter().find(|t| t.id == *id)
    }

    /// Tasks that have no estimate.
    pub fn unknown(&self) -> impl Iterator<Item = &PreviewTask> {
        self.tasks.iter().filter(|t| t.estimate_ms.is_none())
    }

    /// The total of every task's `files`, when each task has one.
    pub fn files(&self) -> Option<u64> {
        self.tasks.iter().map(|t| t.files).sum()
    }
}
