use std::fmt;

use forge_staging::RepoPath;
use serde::{Deserialize, Serialize};

/// Why a path could not be merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictKind {
    /// Both sides changed the same lines of a text file differently.
    Content,
    /// One side modified the file, the other deleted it.
    ModifyDelete,
    /// Both sides added the file with different content.
    AddAdd,
    /// Both sides changed a binary file differently.
    Binary,
    /// One side has a file where the other has a directory.
    FileDirectory,
    /// Both sides changed a symlink (or turned a path into one) differently.
    Symlink,
}

impl fmt::Display for ConflictKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Content => "both sides changed the same lines",
            Self::ModifyDelete => "modified on one side, deleted on the other",
            Self::AddAdd => "added on both sides with different content",
            Self::Binary => "binary file changed on both sides",
            Self::FileDirectory => "a file on one side, a directory on the other",
            Self::Symlink => "symlink changed on both sides",
        })
    }
}

/// A path that could not be merged, and the tasks whose changes clash there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// Where.
    pub path: RepoPath,
    /// Why.
    pub kind: ConflictKind,
    /// The tasks involved: those integrated earlier first, the finishing task last.
    pub tasks: Vec<String>,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} (tasks: {})",
            self.path,
            self.kind,
            self.tasks.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_path_and_tasks() {
        let c = Conflict {
            path: RepoPath::new("CHANGELOG.md").unwrap(),
            kind: ConflictKind::Content,
            tasks: vec!["docs".into(), "api".into()],
        };
        assert_eq!(
            c.to_string(),
            "CHANGELOG.md: both sides changed the same lines (tasks: docs, api)"
        );
    }
}
