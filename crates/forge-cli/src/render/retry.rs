//! The lines of a retry (`forge retry`, a gate fix round) and of a task's checks.

use forge_events::{EventKind, TaskId};

/// The line for a `task_retry_requested` or `task_check` event about `task`.
pub(crate) fn line(kind: &EventKind, task: &str) -> Option<String> {
    match kind {
        EventKind::TaskRetryRequested {
            dependents, origin, ..
        } => {
            let why = if origin == "gate" {
                "fix round: the gate bisect named it"
            } else {
                "retry requested"
            };
            let then = if dependents.is_empty() {
                String::new()
            } else {
                let names: Vec<&str> = dependents.iter().map(TaskId::as_str).collect();
                format!("; then {} run again", super::format::list(&names, 5))
            };
            Some(format!("{task}: {why}{then}"))
        }
        EventKind::TaskCheck {
            command,
            passed,
            exit_code,
            round,
            ..
        } => Some(if *passed {
            format!("{task}: check `{command}` passed (round {round})")
        } else {
            let code =
                exit_code.map_or_else(|| "no exit code".to_owned(), |c| format!("exit code {c}"));
            format!("{task}: check `{command}` failed ({code}, round {round})")
        }),
        _ => None,
    }
}
