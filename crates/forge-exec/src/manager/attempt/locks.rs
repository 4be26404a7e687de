//! Step 1, locks: the task's claims, all or nothing, before anything else of the attempt.

use forge_events::{ClaimRecord, EventKind, TaskId};
use forge_locks::{AcquireOptions, Claim, LockError, LockSet, OwnerId};

use super::Attempt;
use crate::ExecError;
use crate::manager::Shared;

/// Gives the attempt the task's locks: those its failed attempt kept for it, or taken now
/// (waiting, and saying for whom, while others hold conflicting ones).
pub(crate) async fn take(shared: &Shared, mut a: Attempt) -> Attempt {
    if let Some(kept) = shared.kept_locks.lock().remove(a.id()) {
        a.locks = Some(kept);
        return a;
    }
    match acquire(shared, &a).await {
        Ok(Some(locks)) => {
            a.locks = Some(locks);
            a
        }
        Ok(None) => a.cancel("cancelled while waiting for locks"),
        Err(e) => a.fail(&e),
    }
}

/// The claims as the journal names them.
fn claim_records(claims: &[Claim]) -> Vec<ClaimRecord> {
    claims
        .iter()
        .map(|c| ClaimRecord {
            mode: c.mode,
            pattern: c.pattern.as_str().to_owned(),
        })
        .collect()
}

/// Takes the task's claims; `None` when the attempt was cancelled while waiting.
async fn acquire(shared: &Shared, a: &Attempt) -> Result<Option<LockSet>, ExecError> {
    let task = &a.task;
    let claims: Vec<Claim> = crate::manager::candidates::lock_claims(task);
    let owner = OwnerId::new(task.id.clone(), a.number);
    match shared.locks.try_acquire(&owner, &claims) {
        Ok(set) => return Ok(Some(set)),
        Err(LockError::WouldBlock { blocked_by }) => {
            let mut by: Vec<TaskId> = blocked_by.iter().map(|o| o.task().clone()).collect();
            by.dedup();
            shared.publish(
                &task.id,
                EventKind::TaskWaitingLocks {
                    claims: claim_records(&claims),
                    blocked_by: by,
                },
            );
        }
        Err(e) => return Err(ExecError::Store(format!("locks of `{}`: {e}", task.id))),
    }
    let options = AcquireOptions::default();
    tokio::select! {
        set = shared.locks.acquire(&owner, &claims, &options) => match set {
            Ok(set) => Ok(Some(set)),
            Err(LockError::Deadlock { cycle, .. }) => {
                let cycle: Vec<TaskId> = cycle.iter().map(|o| o.task().clone()).collect();
                shared.publish(&task.id, EventKind::LockDeadlock { cycle, victim: task.id.clone() });
                Err(ExecError::Store(format!("`{}` was chosen to break a lock deadlock", task.id)))
            }
            Err(e) => Err(ExecError::Store(format!("locks of `{}`: {e}", task.id))),
        },
        () = a.ctx.cancel.cancelled() => {
            shared.locks.release_all(&owner);
            Ok(None)
        }
    }
}
