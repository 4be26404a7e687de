//! The claim audit of an attempt's changes, shared by the pipeline and resume: every change must
//! be covered by a `writes` or `appends` claim, and a change covered by `appends` claims alone
//! may only add to the file.

use forge_merge::{ChangeKind, Violation};
use forge_staging::{BlobStore, Change, ChangeSet, Entry, Skipped};

use crate::ExecError;
use crate::plan::Task;

/// The changes of `task` that its claims do not permit, in path order.
pub(crate) fn claim_violations(
    task: &Task,
    changes: &ChangeSet,
    blobs: &BlobStore,
) -> Result<Vec<Violation>, ExecError> {
    let mut violations = forge_merge::audit(
        changes,
        &task.writes.iter().chain(&task.appends).collect::<Vec<_>>(),
        |c, p| c.pattern.matches(p.as_str()),
    );
    if task.appends.is_empty() {
        return Ok(violations);
    }
    for (path, change) in changes.iter() {
        let p = path.as_str();
        if task.writes.iter().any(|c| c.pattern.matches(p))
            || !task.appends.iter().any(|c| c.pattern.matches(p))
        {
            continue;
        }
        if !appends_only(change, blobs)? {
            violations.push(Violation {
                path: path.clone(),
                change: ChangeKind::Rewritten,
            });
        }
    }
    violations.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(violations)
}

/// Whether a change only adds: a new path, or a file whose old lines are all kept in order.
fn appends_only(change: &Change, blobs: &BlobStore) -> Result<bool, ExecError> {
    match change {
        Change::Added(_) => Ok(true),
        Change::Modified {
            before:
                Entry::File {
                    hash: old,
                    executable: x1,
                    ..
                },
            after:
                Entry::File {
                    hash: new,
                    executable: x2,
                    ..
                },
        } if x1 == x2 => Ok(forge_merge::only_additions(
            &blobs.read(old)?,
            &blobs.read(new)?,
        )),
        // A deletion, or a change of mode or kind.
        Change::Deleted(_) | Change::Modified { .. } => Ok(false),
    }
}

/// Why an attempt that left paths Forge cannot carry failed, naming each (at most ten).
pub(crate) fn uncarried(skipped: &[Skipped]) -> String {
    const SHOWN: usize = 10;
    let mut list: Vec<String> = skipped
        .iter()
        .take(SHOWN)
        .map(ToString::to_string)
        .collect();
    if skipped.len() > SHOWN {
        list.push(format!("and {} more", skipped.len() - SHOWN));
    }
    format!(
        "left {} Forge cannot carry into the result, so nothing of it was integrated: {}; \
         remove them in the task (or change its prompt) and run it again",
        if skipped.len() == 1 {
            "a path".to_owned()
        } else {
            format!("{} paths", skipped.len())
        },
        list.join("; ")
    )
}
