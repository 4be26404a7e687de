//! What a run has integrated, held once: the integrated tree (the merge queue), which task's
//! attempt went in (in order) and the conflicts met on the way. `result.json`, the run report,
//! the bisect and the fix rounds read it from here; resume and fix rounds rebuild it through the
//! same [`IntegrationState::integrate`] the pipeline uses, from the persisted changesets in the
//! journal's order.

use std::path::Path;

use forge_events::{RunId, TaskId};
use forge_merge::{Conflict, IntegrationOutcome, IntegrationStatus, Merger, Violation};
use forge_staging::ChangeSet;

use crate::ExecError;
use crate::plan::{Plan, Task};
use crate::store::{RunStore, read_json};

/// The run's integration (the merge queue, `M`) and what it is made of.
pub(crate) struct IntegrationState<M: Merger = Box<dyn Merger>> {
    integration: M,
    /// (task, attempt) whose changes went in, in the order they did.
    integrated: Vec<(TaskId, u32)>,
    /// Conflicts no strategy settled (their paths keep the integrated tree's side).
    unresolved: Vec<Conflict>,
    /// Conflicts settled by their strategy.
    resolved: usize,
}

/// What one integration did.
pub(crate) struct Integrated {
    /// The changes its claims do not permit (audited before merging).
    pub(crate) violations: Vec<Violation>,
    /// The merge's outcome.
    pub(crate) outcome: IntegrationOutcome,
}

impl Integrated {
    /// Whether the changes went into the tree (with or without conflicts).
    pub(crate) fn went_in(&self) -> bool {
        matches!(
            self.outcome.status,
            IntegrationStatus::Integrated | IntegrationStatus::Conflicted
        )
    }
}

impl<M: Merger> IntegrationState<M> {
    /// Nothing integrated yet into `integration`.
    pub(crate) fn new(integration: M) -> Self {
        Self {
            integration,
            integrated: Vec::new(),
            unresolved: Vec::new(),
            resolved: 0,
        }
    }

    /// The integrated tree.
    pub(crate) fn integration(&self) -> &M {
        &self.integration
    }

    /// The integrated tree, without the record of how it was made.
    pub(crate) fn into_integration(self) -> M {
        self.integration
    }

    /// (task, attempt) integrated so far, in order.
    pub(crate) fn integrated(&self) -> &[(TaskId, u32)] {
        &self.integrated
    }

    /// Conflicts left unresolved, and how many were settled.
    pub(crate) fn conflicts(&self) -> (Vec<Conflict>, usize) {
        (self.unresolved.clone(), self.resolved)
    }

    /// The one integration of an attempt's changes, for a run, a resume and a retry alike:
    /// audits them against the task's claims, merges them into the tree (`order`: the task's
    /// place in the plan) and, when they went in, records the attempt and its conflicts.
    pub(crate) fn integrate(
        &mut self,
        task: &Task,
        attempt: u32,
        order: u64,
        changes: &ChangeSet,
    ) -> Result<Integrated, ExecError> {
        let violations = super::audit::claim_violations(task, changes, self.integration.store())?;
        let outcome = self.integration.integrate_audited(
            task.id.as_str(),
            changes,
            order,
            violations.clone(),
        )?;
        let integrated = Integrated {
            violations,
            outcome,
        };
        if integrated.went_in() {
            for c in &integrated.outcome.conflicts {
                if c.resolved {
                    self.resolved += 1;
                } else {
                    self.unresolved.push(c.clone());
                }
            }
            self.integrated.push((task.id.clone(), attempt));
        }
        Ok(integrated)
    }

    /// Records conflicts an attempt gave up on (its changes stay out of the tree).
    pub(crate) fn give_up(&mut self, conflicts: &[Conflict]) {
        self.unresolved.extend(conflicts.iter().cloned());
    }

    /// The same kind of merger, base, strategies and audit policy with nothing integrated.
    pub(crate) fn empty(&self) -> IntegrationState {
        IntegrationState::new(self.integration.empty())
    }

    /// Integrates the persisted changesets of finished attempts again, in their original order:
    /// the same inputs in the same order give the same integrated tree.
    pub(crate) fn rebuild(
        mut self,
        store: &RunStore,
        run: &RunId,
        plan: &Plan,
        order: &[(TaskId, u32)],
    ) -> Result<Self, ExecError> {
        let index = crate::plan::positions(plan.tasks.iter().map(|t| &t.id));
        for (task_id, attempt) in order {
            let Some(&i) = index.get(task_id) else {
                continue;
            };
            let path = store.changes_path(run, task_id.as_str(), *attempt);
            let changes: ChangeSet = read_json(&path)?;
            let done = self.integrate(&plan.tasks[i], *attempt, i as u64, &changes)?;
            if !done.went_in() {
                return Err(ExecError::Corrupt {
                    path,
                    reason: format!(
                        "its changes no longer integrate as they did ({}); was the run store edited?",
                        done.outcome
                    ),
                });
            }
        }
        Ok(self)
    }

    /// Saves the integrated tree for `forge apply` (`integration.json`).
    pub(crate) fn save(&self, path: &Path) -> Result<(), ExecError> {
        Ok(self.integration.save(path)?)
    }
}
