//! Step 4, capture (on this machine): what the agent changed in the workspace against the
//! attempt's start tree, as a `ChangeSet`; then the workspace goes, off the attempt's path
//! ([`Disposals`]).

use std::sync::Arc;

use forge_staging::{ChangeSet, Workspace};
use parking_lot::Mutex;
use tokio::task::JoinHandle;

use super::Attempt;
use crate::ExecError;
use crate::manager::{Shared, blocking};

/// Captures the workspace's changes into the attempt and disposes of the workspace.
pub(crate) async fn capture(shared: &Shared, mut a: Attempt) -> Attempt {
    let Some(ws) = a.workspace.take() else {
        let e = ExecError::Store(format!(
            "attempt {} of `{}` has no workspace to capture",
            a.number,
            a.id()
        ));
        return a.fail(&e);
    };
    match changes_and_dispose(shared, ws).await {
        Ok(changes) => {
            a.changes = Some(changes);
            a
        }
        Err(e) => a.fail(&e),
    }
}

/// The workspace's changes (on a heavy-work turn), then the workspace disposed of in the
/// background (see [`Disposals`]).
pub(crate) async fn changes_and_dispose(
    shared: &Shared,
    ws: Box<dyn Workspace>,
) -> Result<ChangeSet, ExecError> {
    let turn = shared.heavy.acquire().await;
    let (ws, changes) = blocking(move || {
        let changes = ws.changes();
        (ws, changes)
    })
    .await?;
    drop(turn);
    shared.disposals.start(ws);
    Ok(changes?)
}

/// Persists what a failed attempt changed (its `changes.json`), so that a retry starts from
/// there, and disposes of its workspace.
pub(crate) async fn keep_for_retry(shared: &Arc<Shared>, mut a: Attempt) -> Attempt {
    if let Some(ws) = a.workspace.take() {
        crate::manager::retry::keep_changes_and_dispose(shared, &a.task, a.number, ws).await;
    }
    a
}

/// Disposes of the attempt's workspace, if it still has one.
pub(crate) async fn release(mut a: Attempt) -> Attempt {
    if let Some(ws) = a.workspace.take() {
        dispose(ws).await;
    }
    a
}

/// Removes a workspace off the async threads; a failure leaves it for `forge gc`. Not
/// throttled: disposing frees what the next stages need.
pub(crate) async fn dispose(ws: Box<dyn Workspace>) {
    let _ = blocking(move || ws.dispose()).await;
}

/// Workspaces being disposed of off the attempts' path. Once its changes are captured, an
/// attempt no longer needs its workspace: unmounting an overlay waits for the kernel to retire
/// the mount (milliseconds, more on a loaded machine) and removing its upper directory is file
/// system work, none of which the attempt's result, its integration or the tasks after it
/// need to wait for. The run waits for every disposal ([`Disposals::finish`]) before it cleans
/// its work directory up; a crash before that leaves the workspace to `forge gc` and to the
/// clean-up of `forge resume`, as a crash during an attempt does.
#[derive(Default)]
pub(crate) struct Disposals {
    pending: Mutex<Vec<JoinHandle<()>>>,
}

impl Disposals {
    /// Disposes of `ws` on a blocking thread, now, without waiting for it; a failure leaves
    /// it for `forge gc`.
    pub(crate) fn start(&self, ws: Box<dyn Workspace>) {
        let handle = tokio::task::spawn_blocking(move || {
            let _ = ws.dispose();
        });
        let mut pending = self.pending.lock();
        pending.retain(|h| !h.is_finished());
        pending.push(handle);
    }

    /// Waits until every disposal started so far has ended.
    pub(crate) async fn finish(&self) {
        loop {
            let handles = std::mem::take(&mut *self.pending.lock());
            if handles.is_empty() {
                return;
            }
            for handle in handles {
                let _ = handle.await;
            }
        }
    }
}
