use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{LockError, Pattern};

/// How a claim holds its paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockMode {
    /// Shared: any number of readers and appenders, no writer.
    Read,
    /// Exclusive: no other holder of an overlapping path.
    Write,
    /// Shared with readers and other appenders (files several tasks add to, like CHANGELOG.md);
    /// their concurrent additions are merged afterwards.
    Append,
}

impl LockMode {
    /// Whether two holders in these modes may hold overlapping paths at the same time.
    pub fn compatible_with(self, other: LockMode) -> bool {
        !matches!(self, LockMode::Write) && !matches!(other, LockMode::Write)
    }
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LockMode::Read => "read",
            LockMode::Write => "write",
            LockMode::Append => "append",
        })
    }
}

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
/// Cheap to clone (the name is shared).
#[derive(Clone, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OwnerId {
    name: Arc<str>,
    attempt: u32,
}

impl OwnerId {
    /// An owner for attempt `attempt` of `name`.
    pub fn new(name: impl Into<Arc<str>>, attempt: u32) -> Self {
        Self {
            name: name.into(),
            attempt,
        }
    }

    /// The holder's name, e.g. a task id.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Which attempt of it (1 for the first); 0 when attempts are not used.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

impl std::hash::Hash for OwnerId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Consistent with `eq`: equal owners have equal names and attempts.
        self.name.hash(state);
        self.attempt.hash(state);
    }
}

impl PartialEq for OwnerId {
    fn eq(&self, other: &Self) -> bool {
        // Clones share their name: compare pointers before bytes.
        self.attempt == other.attempt
            && (Arc::ptr_eq(&self.name, &other.name) || self.name == other.name)
    }
}

impl fmt::Display for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.attempt == 0 {
            f.write_str(&self.name)
        } else {
            write!(f, "{}#{}", self.name, self.attempt)
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
    fn owner_display() {
        assert_eq!(OwnerId::new("backend", 2).to_string(), "backend#2");
        assert_eq!(OwnerId::new("x", 0).to_string(), "x");
    }
}
