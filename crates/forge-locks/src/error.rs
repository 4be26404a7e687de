use std::time::Duration;

use crate::OwnerId;

/// Errors of the lock manager.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockError {
    /// A claim pattern is not an acceptable repo-relative glob.
    #[error("invalid claim pattern `{pattern}`: {reason}")]
    InvalidPattern {
        /// The pattern as written.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `try_acquire` could not take the claims at once.
    #[error("the claims are held or awaited by {}", owners(.blocked_by))]
    WouldBlock {
        /// Holders, and earlier waiters, whose claims conflict.
        blocked_by: Vec<OwnerId>,
    },
    /// The request waited longer than its timeout.
    #[error("gave up after {waited:?} waiting for {}", owners(.blocked_by))]
    Timeout {
        /// How long it waited.
        waited: Duration,
        /// Who held (or was ahead in the queue for) conflicting claims when it gave up.
        blocked_by: Vec<OwnerId>,
    },
    /// The request was chosen as the victim of a deadlock and failed; the owner keeps what it
    /// already held (release it and retry, or give up).
    #[error("deadlock: {} (this request was chosen as the victim)", cycle_text(.cycle))]
    Deadlock {
        /// The owners in the cycle, each waiting for the next, the last for the first; the
        /// victim is first.
        cycle: Vec<OwnerId>,
    },
    /// The owner already has a request waiting: an owner waits for one thing at a time.
    #[error("{owner} already has a lock request waiting")]
    OwnerBusy {
        /// The owner.
        owner: OwnerId,
    },
    /// The waiting request was cancelled by `release_all` for its owner.
    #[error("the lock request of {owner} was cancelled because its owner released everything")]
    Cancelled {
        /// The owner.
        owner: OwnerId,
    },
    /// An owner's name is not a valid task id.
    #[error(transparent)]
    InvalidOwner(#[from] forge_types::IdError),
}

fn owners(list: &[OwnerId]) -> String {
    if list.is_empty() {
        return "nobody".to_owned();
    }
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn cycle_text(cycle: &[OwnerId]) -> String {
    let mut parts: Vec<String> = cycle.iter().map(ToString::to_string).collect();
    if let Some(first) = cycle.first() {
        parts.push(first.to_string());
    }
    parts.join(" -> ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TaskId;

    #[test]
    fn messages_name_the_owners() {
        let e = LockError::Deadlock {
            cycle: vec![
                OwnerId::new(TaskId::new("a").unwrap(), 1),
                OwnerId::new(TaskId::new("b").unwrap(), 1),
            ],
        };
        assert_eq!(
            e.to_string(),
            "deadlock: a#1 -> b#1 -> a#1 (this request was chosen as the victim)"
        );
        let e = LockError::WouldBlock {
            blocked_by: vec![OwnerId::new(TaskId::new("x").unwrap(), 2)],
        };
        assert_eq!(e.to_string(), "the claims are held or awaited by x#2");
    }
}
