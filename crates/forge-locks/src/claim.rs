use std::fmt;

use serde::{Deserialize, Serialize};

use forge_types::TaskId;

use crate::{LockError, LockMode, Pattern};

/// A path pattern held in a mode: what a task declares with `reads`, `writes` or `appends`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Claim {
    /// The paths claimed.
    pub pattern: Pattern,
    /// How they are held.
    pub mode: LockMode,
}

impl Claim {
    /// Parses `pattern` and pairs it with `mode`.
    pub fn new(pattern: &str, mode: LockMode) -> Result<Self, LockError> {
        Ok(Self {
            pattern: Pattern::new(pattern)?,
            mode,
        })
    }

    /// A read claim on `pattern`.
    pub fn read(pattern: &str) -> Result<Self, LockError> {
        Self::new(pattern, LockMode::Read)
    }

    /// A write claim on `pattern`.
    pub fn write(pattern: &str) -> Result<Self, LockError> {
        Self::new(pattern, LockMode::Write)
    }

    /// An append claim on `pattern`.
    pub fn append(pattern: &str) -> Result<Self, LockError> {
        Self::new(pattern, LockMode::Append)
    }
}

impl fmt::Display for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.mode, self.pattern)
    }
}

/// Who holds claims: in Forge, one attempt of one task (`backend#2`).
///
/// Cheap to clone (the name is shared) and to look up: its hash is computed once, so the lock
/// table's owner lookups never re-hash the name. Ordered by name, then attempt.
#[derive(Clone, Serialize, Deserialize)]
#[serde(from = "OwnerFields", into = "OwnerFields")]
pub struct OwnerId {
    task: TaskId,
    attempt: u32,
    hash: u64,
}

/// The serialized form of an [`OwnerId`]: `{"name": …, "attempt": …}`.
#[derive(Serialize, Deserialize)]
struct OwnerFields {
    name: TaskId,
    attempt: u32,
}

impl From<OwnerFields> for OwnerId {
    fn from(f: OwnerFields) -> Self {
        OwnerId::new(f.name, f.attempt)
    }
}

impl From<OwnerId> for OwnerFields {
    fn from(o: OwnerId) -> Self {
        OwnerFields {
            name: o.task,
            attempt: o.attempt,
        }
    }
}

impl OwnerId {
    /// An owner for attempt `attempt` of the task `task`.
    pub fn new(task: TaskId, attempt: u32) -> Self {
        let hash = {
            use std::hash::{BuildHasher, Hash, Hasher};
            let mut h = rustc_hash::FxBuildHasher.build_hasher();
            task.as_str().hash(&mut h);
            attempt.hash(&mut h);
            h.finish()
        };
        Self {
            task,
            attempt,
            hash,
        }
    }

    /// The task holding the claims.
    pub fn task(&self) -> &TaskId {
        &self.task
    }

    /// The holder's name: its task's id.
    pub fn name(&self) -> &str {
        self.task.as_str()
    }

    /// Which attempt of it (1 for the first); 0 when attempts are not used.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

impl std::hash::Hash for OwnerId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Consistent with `eq`: equal owners have equal names and attempts, so equal hashes.
        state.write_u64(self.hash);
    }
}

impl PartialEq for OwnerId {
    fn eq(&self, other: &Self) -> bool {
        // Clones share their name: compare pointers before bytes.
        self.hash == other.hash && self.attempt == other.attempt && self.task == other.task
    }
}

impl Eq for OwnerId {}

impl PartialOrd for OwnerId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OwnerId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.task
            .cmp(&other.task)
            .then(self.attempt.cmp(&other.attempt))
    }
}

impl fmt::Display for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.attempt == 0 {
            f.write_str(self.task.as_str())
        } else {
            write!(f, "{}#{}", self.task, self.attempt)
        }
    }
}

impl fmt::Debug for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_compatibility_table() {
        use LockMode::{Append, Read, Write};
        let table = [
            (Read, Read, true),
            (Read, Append, true),
            (Append, Append, true),
            (Read, Write, false),
            (Append, Write, false),
            (Write, Write, false),
        ];
        for (a, b, ok) in table {
            assert_eq!(a.compatible_with(b), ok, "{a} vs {b}");
            assert_eq!(b.compatible_with(a), ok, "{b} vs {a}");
        }
    }

    #[test]
    fn owners_compare_by_name_and_attempt_and_round_trip() {
        let a = OwnerId::new(TaskId::new("a").unwrap(), 2);
        assert_eq!(a, OwnerId::new(TaskId::new(String::from("a")).unwrap(), 2));
        assert_ne!(a, OwnerId::new(TaskId::new("a").unwrap(), 1));
        assert!(
            OwnerId::new(TaskId::new("a").unwrap(), 9) < OwnerId::new(TaskId::new("b").unwrap(), 1)
        );
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, r#"{"name":"a","attempt":2}"#);
        let back: OwnerId = serde_json::from_str(&json).unwrap();
        assert_eq!(back, a);
        let mut set = std::collections::HashSet::new();
        set.insert(a.clone());
        assert!(set.contains(&back));
    }

    #[test]
    fn owner_display() {
        assert_eq!(
            OwnerId::new(TaskId::new("backend").unwrap(), 2).to_string(),
            "backend#2"
        );
        assert_eq!(OwnerId::new(TaskId::new("x").unwrap(), 0).to_string(), "x");
    }
}
