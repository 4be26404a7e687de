use std::fmt;
use std::ops::Range;

use forge_staging::{ContentHash, RepoPath};
use forge_types::{IdError, TaskId};
use serde::{Deserialize, Serialize};

use crate::MergeStrategy;

/// Why a path could not be merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictKind {
    /// Both sides changed the same (or adjacent) lines of a text file differently.
    Content,
    /// One side modified the file, the other deleted it.
    ModifyDelete,
    /// Both sides added the file with different content (or a different exec bit).
    AddAdd,
    /// Both sides changed a binary file differently.
    Binary,
    /// One side has a file where the other has a directory (or a file above it).
    FileDirectory,
    /// Both sides changed a path differently and at least one made it (or kept it) a symlink.
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

/// One clashing region of a text conflict: 0-based, end-exclusive line ranges of the base and
/// of the two sides, and the region written with diff3 markers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictHunk {
    /// The base's lines.
    pub base: Range<usize>,
    /// The first side's lines (the task earlier in task order, or the working tree on apply).
    pub first: Range<usize>,
    /// The second side's lines.
    pub second: Range<usize>,
    /// `<<<<<<< <task>`, the first side, `||||||| base`, the base, `=======`, the second side,
    /// `>>>>>>> <task>` (cut after [`ConflictHunk::TEXT_LIMIT`] bytes, ending in `…`).
    pub text: String,
}

impl ConflictHunk {
    /// How much of a hunk's text is kept, in bytes.
    pub const TEXT_LIMIT: usize = 8 << 10;
}

/// Who changed a clashing path: a task of the run, or the user (their working tree, on apply).
///
/// Serialized as a plain string (the task id, or `working tree`), which no task id can be.
///
/// ```
/// use forge_merge::{Party, TaskId};
///
/// let api = TaskId::new("api")?;
/// assert_eq!(Party::try_from("api".to_owned())?, Party::Task(api.clone()));
/// assert_eq!(Party::try_from("working tree".to_owned())?, Party::WorkingTree);
/// assert_eq!(Party::WorkingTree.to_string(), "working tree");
/// assert_eq!(Party::Task(api.clone()).task(), Some(&api));
/// # Ok::<(), forge_types::IdError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Party {
    /// A task of the run, by id.
    Task(TaskId),
    /// The user's own edits in the working tree.
    WorkingTree,
}

impl Party {
    /// How the working tree is named in conflict markers, messages and the journal.
    pub const WORKING_TREE_LABEL: &'static str = "working tree";

    /// The task's id, or `None` for the working tree.
    #[must_use]
    pub fn task(&self) -> Option<&TaskId> {
        match self {
            Self::Task(id) => Some(id),
            Self::WorkingTree => None,
        }
    }
}

impl TryFrom<String> for Party {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        if s == Self::WORKING_TREE_LABEL {
            Ok(Self::WorkingTree)
        } else {
            TaskId::new(s).map(Self::Task)
        }
    }
}

impl From<TaskId> for Party {
    fn from(task: TaskId) -> Self {
        Self::Task(task)
    }
}

impl From<Party> for String {
    fn from(p: Party) -> Self {
        match p {
            Party::Task(id) => id.as_str().to_owned(),
            Party::WorkingTree => Party::WORKING_TREE_LABEL.to_owned(),
        }
    }
}

impl fmt::Display for Party {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Task(id) => id.as_str(),
            Self::WorkingTree => Self::WORKING_TREE_LABEL,
        })
    }
}

/// A path that could not be merged cleanly, the tasks whose changes clash there, and how (or
/// whether) the path's strategy settled it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// Where.
    pub path: RepoPath,
    /// Why.
    pub kind: ConflictKind,
    /// Who changed the path: tasks integrated earlier first, the finishing task last. On apply,
    /// the first is [`Party::WorkingTree`] (the user's edits).
    pub tasks: Vec<Party>,
    /// The strategy the path's `[merge]` rule gave.
    pub strategy: MergeStrategy,
    /// Whether the strategy settled it (the result is in the integrated tree). When not, the
    /// integrated tree keeps what it had at this path and the finishing task's change to it is
    /// set aside (or the task is to be re-run, for `agent`).
    pub resolved: bool,
    /// The clashing regions, for text files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hunks: Vec<ConflictHunk>,
    /// The whole file with diff3 conflict markers, in the object store, for text files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marked: Option<ContentHash>,
    /// Why the strategy did not settle it, when it did not (e.g. the driver's exit status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Conflict {
    /// A conflict with no hunks, not (yet) resolved.
    pub fn new(
        path: RepoPath,
        kind: ConflictKind,
        tasks: Vec<Party>,
        strategy: MergeStrategy,
    ) -> Self {
        Self {
            path,
            kind,
            tasks,
            strategy,
            resolved: false,
            hunks: Vec::new(),
            marked: None,
            note: None,
        }
    }
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} (tasks: {}; strategy {}, {})",
            self.path,
            self.kind,
            self.tasks
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            self.strategy,
            if self.resolved {
                "resolved"
            } else {
                "unresolved"
            }
        )?;
        if let Some(note) = &self.note {
            write!(f, ": {note}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_path_tasks_and_strategy() {
        let mut c = Conflict::new(
            RepoPath::new("CHANGELOG.md").unwrap(),
            ConflictKind::Content,
            vec![
                Party::Task(crate::TaskId::new("docs").unwrap()),
                Party::Task(crate::TaskId::new("api").unwrap()),
            ],
            MergeStrategy::Fail,
        );
        assert_eq!(
            c.to_string(),
            "CHANGELOG.md: both sides changed the same lines (tasks: docs, api; strategy fail, unresolved)"
        );
        c.note = Some("driver exited with 1".into());
        assert!(c.to_string().ends_with("unresolved): driver exited with 1"));
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("hunks"), "{json}");
        assert_eq!(serde_json::from_str::<Conflict>(&json).unwrap(), c);
    }
}
