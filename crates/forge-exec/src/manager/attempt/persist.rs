//! Step 5, persist: the attempt's `ChangeSet` made durable — its blobs synced, its
//! `changes.json` written — before anything of it is integrated or the task recorded as
//! finished, whatever runner captured it.

use super::Attempt;
use crate::ExecError;
use crate::manager::{Shared, blocking};
use crate::store::write_json;

/// Persists the attempt's changes.
pub(crate) async fn persist(shared: &Shared, a: Attempt) -> Attempt {
    let Some(changes) = a.changes.clone() else {
        let e = ExecError::Store(format!(
            "attempt {} of `{}` has no changes to persist",
            a.number,
            a.id()
        ));
        return a.fail(&e);
    };
    let blobs = shared.blobs.clone();
    let path = shared
        .store
        .changes_path(&shared.run, a.id().as_str(), a.number);
    let written = blocking(move || -> Result<(), ExecError> {
        // The changeset's own blobs, not the whole file system (`syncfs`).
        blobs.sync_blobs(
            changes
                .iter()
                .filter_map(|(_, c)| c.after().map(forge_staging::Entry::hash)),
        )?;
        write_json(&path, &changes)
    })
    .await
    .and_then(|r| r);
    match written {
        Ok(()) => a,
        Err(e) => a.fail(&e),
    }
}
