//! Step 2, stage (on this machine): a workspace from the attempt's start tree, holding the
//! work it continues, if any.

use std::sync::Arc;

use super::Attempt;
use crate::ExecError;
use crate::manager::{Shared, blocking};

/// Stages the attempt's workspace from its start tree and writes what it continues into it;
/// the first workspace of an attempt announces it (`task_started`).
pub(crate) async fn stage(shared: &Shared, mut a: Attempt) -> Attempt {
    match workspace(shared, &mut a).await {
        Ok(()) => {
            if let Some(ws) = &a.workspace {
                let (path, kind) = (ws.path().display().to_string(), ws.strategy().to_owned());
                a.announce(&path, &kind);
            }
            a
        }
        Err(e) => a.fail(&e),
    }
}

async fn workspace(shared: &Shared, a: &mut Attempt) -> Result<(), ExecError> {
    let snapshot = a.start.clone().ok_or_else(|| {
        ExecError::Store(format!(
            "attempt {} of `{}` has no start tree",
            a.number,
            a.id()
        ))
    })?;
    let name = format!("{}-{}{}", a.id(), a.number, a.suffix());
    let stager = Arc::clone(&shared.stager);
    let ws = {
        let _turn = shared.heavy.acquire().await;
        blocking(move || stager.stage(&snapshot, &name)).await??
    };
    let restore = a.restore.take();
    // Held by the attempt from here on, so that whatever happens next disposes of it.
    let ws = a.workspace.insert(ws);
    if let Some(changes) = restore {
        let (root, blobs) = (ws.host_path().to_path_buf(), shared.blobs.clone());
        // Never through a link standing where a directory was (see `write_changes`).
        blocking(move || forge_staging::write_changes(&root, &changes, &blobs)).await??;
    }
    Ok(())
}
