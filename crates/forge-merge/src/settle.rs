//! Settling, on apply, a conflict between two tasks that no `[merge]` strategy settled.
//!
//! During a run such a path keeps the integrated tree's side (the task(s) integrated first) and
//! the finishing task's change to it is set aside. When the run is applied, the user chooses per
//! path: [`OnConflict::Ours`] keeps the integrated side's lines where the two clash,
//! [`OnConflict::Theirs`] takes the set-aside task's, [`OnConflict::Markers`] writes the file
//! with diff3 markers (the integrated side first, the base, then the set-aside task), labelled
//! with the tasks' ids, as `git merge-file --diff3` writes them.

use forge_staging::{Change, ChangeSet, Entry, RepoPath};
use serde::{Deserialize, Serialize};

use crate::merge::{PathMerger, PathResult, Settle, Side};
use crate::{Conflict, Integration, MergeError, MergeStrategy, OnConflict, Party, TaskId};

/// A conflict between tasks that the run left unresolved, with the change that was set aside.
#[derive(Debug, Clone, Copy)]
pub struct TaskClash<'a> {
    /// The conflict as the run recorded it: its last party is the task whose change was set
    /// aside.
    pub conflict: &'a Conflict,
    /// What the set-aside task started from at the path (the merge base).
    pub start: Option<&'a Entry>,
    /// What the set-aside task made of the path.
    pub result: Option<&'a Entry>,
}

/// What settling a [`TaskClash`] did to the integrated tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettledClash {
    /// The path.
    pub path: RepoPath,
    /// The tasks of the integrated side (`ours`), the last writer first.
    pub ours: Vec<TaskId>,
    /// The task whose change had been set aside (`theirs`).
    pub theirs: TaskId,
    /// How it was settled.
    pub how: OnConflict,
    /// Whether the path now holds the file with conflict markers, for the user to resolve.
    pub marked: bool,
    /// Whether the integrated tree is unchanged at the path: the choice was `keep`, or
    /// `markers` for a file that cannot hold them (binary, deleted on one side, a symlink).
    pub kept: bool,
}

impl Integration {
    /// Settles `clash` as `how` says, in this integration (in memory: the caller decides
    /// whether to save it). `ours` is the integrated tree's side at the path, `theirs` the
    /// set-aside task's result; the outcome goes in as one more step of that task.
    ///
    /// # Errors
    /// When the conflict names no task as its last party, or a content cannot be read from or
    /// written to the object store.
    pub fn settle_clash(
        &mut self,
        clash: &TaskClash<'_>,
        how: OnConflict,
    ) -> Result<SettledClash, MergeError> {
        let path = &clash.conflict.path;
        let Some(Party::Task(theirs)) = clash.conflict.tasks.last() else {
            return Err(MergeError::io(
                "settle the conflict on",
                path.as_str(),
                std::io::Error::other("the conflict names no task whose change was set aside"),
            ));
        };
        let ours = self.writers(path.as_str());
        let ours_label = if ours.is_empty() {
            "integrated".to_owned()
        } else {
            ours.iter()
                .map(TaskId::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut settled = SettledClash {
            path: path.clone(),
            ours: ours.clone(),
            theirs: theirs.clone(),
            how,
            marked: false,
            kept: true,
        };
        let strategy = match how {
            OnConflict::Keep | OnConflict::Agent => return Ok(settled),
            OnConflict::Ours => MergeStrategy::Ours,
            OnConflict::Theirs => MergeStrategy::Theirs,
            OnConflict::Markers => MergeStrategy::Fail,
        };
        let current = self.get(path.as_str()).cloned();
        let merger = PathMerger {
            store: self.store(),
            repo: self.base().repo(),
            resolver: None,
            driver_timeout: std::time::Duration::from_secs(1),
            driver_runner: self.command_runner(),
        };
        let mut parties: Vec<Party> = ours.iter().cloned().map(Party::Task).collect();
        parties.push(Party::Task(theirs.clone()));
        let outcome = merger.merge(
            path,
            clash.start,
            Side {
                entry: current.as_ref(),
                label: &ours_label,
            },
            Side {
                entry: clash.result,
                label: theirs.as_str(),
            },
            &strategy,
            parties,
        )?;
        let new = match outcome {
            PathResult::Clean(entry)
            | PathResult::Conflict {
                settle: Settle::Take(entry),
                ..
            } => entry,
            PathResult::Conflict { conflict, .. } => {
                let (Some(hash), Some(Entry::File { executable, .. })) =
                    (conflict.marked, current.as_ref().or(clash.result))
                else {
                    return Ok(settled);
                };
                settled.marked = true;
                let size = self.store().read(&hash)?.len() as u64;
                Some(Entry::file(hash, size, *executable))
            }
        };
        let Some(change) = Change::between(current, new) else {
            settled.kept = false;
            return Ok(settled);
        };
        let changes: ChangeSet = [(path.clone(), change)].into_iter().collect();
        self.integrate(theirs, &changes, u64::MAX)?;
        settled.kept = false;
        Ok(settled)
    }
}
