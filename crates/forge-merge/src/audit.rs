//! Claim audit: which of a task's changes fall outside the paths it declared it would write.

use std::fmt;
use std::str::FromStr;

use forge_staging::{Change, ChangeSet, RepoPath};
use serde::{Deserialize, Serialize};

/// What a change did to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// The path was created.
    Added,
    /// The path's content, exec bit or kind changed.
    Modified,
    /// The path was removed.
    Deleted,
    /// Content of a file the task only holds an `appends` claim on was changed or removed
    /// (an append claim permits additions only).
    Rewritten,
}

impl ChangeKind {
    /// The kind of `change`.
    pub fn of(change: &Change) -> Self {
        match change {
            Change::Added(_) => Self::Added,
            Change::Modified { .. } => Self::Modified,
            Change::Deleted(_) => Self::Deleted,
        }
    }
}

/// A change to a path none of the task's write claims covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Violation {
    /// The path changed.
    pub path: RepoPath,
    /// What was done to it.
    pub change: ChangeKind,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.change {
            ChangeKind::Added => "added",
            ChangeKind::Modified => "modified",
            ChangeKind::Deleted => "deleted",
            ChangeKind::Rewritten => {
                return write!(
                    f,
                    "{} was rewritten, but the task's claim on it only permits appending",
                    self.path
                );
            }
        };
        write!(
            f,
            "{} was {verb} outside the task's write claims",
            self.path
        )
    }
}

/// What integration does with a task whose changes violate its claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditPolicy {
    /// Integrate nothing of the task and report the violations (the default).
    #[default]
    Reject,
    /// Integrate the task and report the violations.
    Warn,
    /// Integrate the task and say nothing.
    Allow,
}

impl FromStr for AuditPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "reject" => Ok(Self::Reject),
            "warn" => Ok(Self::Warn),
            "allow" => Ok(Self::Allow),
            other => Err(format!(
                "unknown claim policy `{other}`: expected reject, warn or allow"
            )),
        }
    }
}

impl fmt::Display for AuditPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Reject => "reject",
            Self::Warn => "warn",
            Self::Allow => "allow",
        })
    }
}

/// Every change in `changes` that no claim of `write_claims` covers, in path order.
///
/// `covers(claim, path)` decides whether a claim covers a path, so any claim type works (such as
/// `forge_locks::Claim` through its own matcher); pass the task's `writes` and `appends`.
pub fn audit<C>(
    changes: &ChangeSet,
    write_claims: &[C],
    covers: impl Fn(&C, &RepoPath) -> bool,
) -> Vec<Violation> {
    changes
        .iter()
        .filter(|(path, _)| !write_claims.iter().any(|c| covers(c, path)))
        .map(|(path, change)| Violation {
            path: path.clone(),
            change: ChangeKind::of(change),
        })
        .collect()
}

/// Whether `after` only adds to `before`: it starts with `before`, or keeps every line of
/// `before` in order (lines were inserted, none changed or removed). What an `appends` claim
/// permits.
pub fn only_additions(before: &[u8], after: &[u8]) -> bool {
    if after.starts_with(before) {
        return true;
    }
    let mut wanted = before.split_inclusive(|&b| b == b'\n').peekable();
    for line in after.split_inclusive(|&b| b == b'\n') {
        if wanted.peek() == Some(&line) {
            wanted.next();
        }
    }
    wanted.peek().is_none()
}

#[cfg(test)]
mod tests {
    use forge_staging::{ContentHash, Entry};

    use super::*;

    #[test]
    fn reports_changes_outside_the_claims() {
        let e = Entry::file(ContentHash::of(b"x"), 1, false);
        let changes: ChangeSet = [
            ("src/api/a.rs", Change::Added(e.clone())),
            ("src/db.rs", Change::Deleted(e.clone())),
            (
                "README.md",
                Change::Modified {
                    before: e.clone(),
                    after: Entry::file(ContentHash::of(b"y"), 1, false),
                },
            ),
        ]
        .into_iter()
        .map(|(p, c)| (RepoPath::new(p).unwrap(), c))
        .collect();
        let claims = ["src/api/", "README.md"];
        let v = audit(&changes, &claims, |claim, path| {
            path.as_str() == *claim || path.as_str().starts_with(claim)
        });
        assert_eq!(
            v,
            [Violation {
                path: RepoPath::new("src/db.rs").unwrap(),
                change: ChangeKind::Deleted
            }]
        );
        assert_eq!(
            v[0].to_string(),
            "src/db.rs was deleted outside the task's write claims"
        );
        assert!(audit(&changes, &[()], |(), _| true).is_empty());
        assert_eq!(audit(&changes, &[] as &[()], |(), _| true).len(), 3);
        assert_eq!("warn".parse::<AuditPolicy>().unwrap(), AuditPolicy::Warn);
        assert!("lenient".parse::<AuditPolicy>().is_err());
    }

    #[test]
    fn additions_keep_every_line() {
        let log = b"# Changes\n- one\n- two\n";
        assert!(only_additions(log, b"# Changes\n- one\n- two\n- three\n"));
        assert!(only_additions(log, b"# Changes\n- zero\n- one\n- two\n"));
        assert!(only_additions(b"no newline", b"no newline, continued\n"));
        assert!(only_additions(b"", b"anything"));
        assert!(!only_additions(log, b"# Changes\n- two\n"));
        assert!(!only_additions(log, b"wiped\n"));
        assert!(!only_additions(log, b"# Changes\n- one\n- 2\n"));
        assert!(!only_additions(log, b""));
    }
}
