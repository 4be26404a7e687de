use std::fmt;

use serde::{Deserialize, Serialize};

/// How a task ended, as reported in `task_finished` events and shown by `forge status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// The agent exited successfully and its changes were captured.
    Succeeded,
    /// The agent exited with an error (or its changes could not be captured).
    Failed,
    /// The attempt ran past its timeout and its process group was killed.
    TimedOut,
    /// The run was aborted (or the task was cancelled) before it finished.
    Cancelled,
    /// The task never ran because a dependency did not succeed.
    Skipped,
}

impl TaskStatus {
    /// True for the outcomes that make dependents skip (everything but success).
    pub fn is_failure(self) -> bool {
        !matches!(self, Self::Succeeded)
    }

    /// The snake-case name used in events, e.g. `timed_out`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Cancelled => "cancelled",
            Self::Skipped => "skipped",
        }
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_serde() {
        for s in [
            TaskStatus::Succeeded,
            TaskStatus::Failed,
            TaskStatus::TimedOut,
            TaskStatus::Cancelled,
            TaskStatus::Skipped,
        ] {
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert!(!TaskStatus::Succeeded.is_failure());
        assert!(TaskStatus::Skipped.is_failure());
    }
}
