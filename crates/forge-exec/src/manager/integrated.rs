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
        let outcome =
            self.integration
                .integrate_audited(&task.id, changes, order, violations.clone())?;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use forge_merge::{Integration, Merger as _};
    use forge_staging::{BaseMode, BaseSnapshot, BlobStore, Change, ChangeSet, Entry, RepoPath};

    use super::IntegrationState;
    use crate::plan::{Plan, PlanFormat, PlanOptions};
    use crate::store::{RunStore, write_json};

    const PLAN: &str = r#"
[defaults]
agent = "sim"
[merge]
"CHANGELOG.md" = "fail"
[[task]]
id = "one"
prompt = "p"
appends = ["CHANGELOG.md"]
[[task]]
id = "two"
prompt = "p"
appends = ["CHANGELOG.md"]
writes = ["a.txt"]
[[task]]
id = "idle"
prompt = "p"
writes = ["b.txt"]
"#;

    /// `text` as a change of `path` from its base entry, its blob in `blobs`.
    fn edit(base: &BaseSnapshot, blobs: &BlobStore, path: &str, text: &str) -> ChangeSet {
        let hash = blobs.write(text.as_bytes()).unwrap();
        let after = Entry::file(hash, text.len() as u64, false);
        let before = base.manifest().get(path).cloned();
        let change = Change::between(before, Some(after)).unwrap();
        std::iter::once((RepoPath::new(path).unwrap(), change)).collect()
    }

    /// What the pipeline integrates as attempts finish, resume (and a fix round) integrates again
    /// from the persisted changesets in the same order through the same function: the same tree,
    /// the same attempts in the same order (an empty changeset included), the same conflicts.
    #[test]
    fn a_rebuild_from_persisted_changes_holds_what_the_run_integrated() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        std::fs::write(repo.join("CHANGELOG.md"), "# Changes\n").unwrap();
        std::fs::write(repo.join("a.txt"), "a\n").unwrap();
        let plan = Plan::parse(
            PLAN,
            &repo.join("plan.toml"),
            PlanFormat::Toml,
            &PlanOptions::default(),
        )
        .unwrap();
        let store = RunStore::new(&repo);
        let run = store.new_run("t").unwrap();
        let blobs = BlobStore::open(store.objects_dir()).unwrap();
        let base = Arc::new(
            BaseSnapshot::capture(&repo, BaseMode::Worktree, &store.base_dir(&run), &blobs)
                .unwrap(),
        );
        let merger = || {
            let integration: Box<dyn forge_merge::Merger> = Box::new(
                Integration::new(base.clone(), blobs.clone())
                    .with_strategies(super::super::merge_rules(&plan).unwrap())
                    .with_audit_policy(plan.on_violation),
            );
            IntegrationState::new(integration)
        };
        let one = edit(&base, &blobs, "CHANGELOG.md", "# Changes\n- one\n");
        let mut two = edit(&base, &blobs, "CHANGELOG.md", "# Changes\n- two\n");
        for (path, change) in &edit(&base, &blobs, "a.txt", "a\nb\n") {
            two.insert(path.clone(), change.clone());
        }
        let idle = ChangeSet::default();
        let mut live = merger();
        for (i, (task, attempt, changes)) in
            [("one", 1, &one), ("two", 2, &two), ("idle", 1, &idle)]
                .into_iter()
                .enumerate()
        {
            let task = plan.tasks.iter().find(|t| t.id.as_str() == task).unwrap();
            let done = live.integrate(task, attempt, i as u64, changes).unwrap();
            assert!(done.went_in(), "{}", done.outcome);
            write_json(
                &store.changes_path(&run, task.id.as_str(), attempt),
                changes,
            )
            .unwrap();
        }
        let order: Vec<(String, u32)> = live
            .integrated()
            .iter()
            .map(|(t, a)| (t.to_string(), *a))
            .collect();
        assert_eq!(
            order,
            [("one".into(), 1), ("two".into(), 2), ("idle".into(), 1)]
        );
        let (unresolved, resolved) = live.conflicts();
        assert_eq!(unresolved.len(), 1, "the two appends clash under `fail`");
        assert_eq!(unresolved[0].path.as_str(), "CHANGELOG.md");
        assert_eq!(resolved, 0);

        let rebuilt = merger()
            .rebuild(&store, &run, &plan, live.integrated())
            .unwrap();
        assert_eq!(rebuilt.integrated(), live.integrated());
        assert_eq!(rebuilt.conflicts(), live.conflicts());
        assert_eq!(rebuilt.integration().delta(), live.integration().delta());
        assert_eq!(
            rebuilt.integration().version(),
            live.integration().version()
        );
        // A fix round starts from the same kind of merger with nothing in it.
        let empty = live.empty();
        assert!(empty.integrated().is_empty());
        assert_eq!(empty.integration().version(), 0);
    }
}
