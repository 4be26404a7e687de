//! The end-of-run summary: `✓ No merge conflicts  ✓ Gate: cargo test — 12/12 passed  ✓ 4 tasks,
//! 23 files changed`, computed from the run's folded state.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use forge_events::{RunPhase, RunState, TaskPhase};

use super::format;
use crate::term::Style;

/// Whether an item of the summary is good news.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mark {
    /// It went well.
    Ok,
    /// It did not.
    Bad,
    /// It was stopped (cancelled) and can go on (`forge resume`).
    Stopped,
    /// Neither (not run, not configured).
    Info,
}

/// One item of the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    /// Good or bad.
    pub(crate) mark: Mark,
    /// What it says.
    pub(crate) text: String,
}

/// Files in the result: what the succeeded tasks changed that was integrated (union). A task
/// whose changes were not integrated yet counts with everything it changed.
pub(crate) fn files_changed(state: &RunState) -> usize {
    state
        .tasks
        .iter()
        .filter(|t| t.status == TaskPhase::Succeeded)
        .flat_map(|t| {
            if t.integrated {
                t.integrated_files
                    .iter()
                    .map(forge_events::RepoPath::as_str)
                    .collect::<Vec<_>>()
            } else {
                t.files_changed
                    .iter()
                    .map(forge_events::RepoPath::as_str)
                    .collect()
            }
        })
        .collect::<BTreeSet<_>>()
        .len()
}

/// The summary items: conflicts (of the merge, then of the apply), gate, tasks.
pub(crate) fn items(state: &RunState) -> Vec<Item> {
    let mut items = vec![conflicts(state), gate(state), tasks(state)];
    if let Some(bisect) = super::bisect::summary_item(state) {
        items.insert(2, bisect);
    }
    if let Some(nodes) = nodes(state) {
        items.push(nodes);
    }
    if let Some(spent) = super::format::spent(&state.usage) {
        items.push(Item {
            mark: Mark::Info,
            text: format!("Spent {spent}"),
        });
    }
    items
}

/// Where a cluster runner ran the tasks: each node with the tasks whose last attempt it ran
/// (`On nodes 10.0.0.7 (api, db) · 10.0.0.8 (ui)`); nothing for a run on this machine.
fn nodes(state: &RunState) -> Option<Item> {
    let mut by_node: std::collections::BTreeMap<&str, Vec<&str>> =
        std::collections::BTreeMap::new();
    for t in &state.tasks {
        if let Some(node) = &t.node {
            by_node.entry(node).or_default().push(t.id.as_str());
        }
    }
    if by_node.is_empty() {
        return None;
    }
    let parts: Vec<String> = by_node
        .iter()
        .map(|(node, tasks)| format!("{node} ({})", format::list(tasks, 3)))
        .collect();
    Some(Item {
        mark: Mark::Info,
        text: format!(
            "On {} {}",
            if parts.len() == 1 { "node" } else { "nodes" },
            parts.join(" · ")
        ),
    })
}

fn conflicts(state: &RunState) -> Item {
    // Paths where the user's own edits clash with the run's, left as the user has them.
    let clashes: Vec<&str> = state
        .apply
        .as_ref()
        .map(|a| a.conflicts.iter().map(String::as_str).collect())
        .unwrap_or_default();
    if !clashes.is_empty() && state.conflicts.iter().all(|c| c.resolved) {
        return Item {
            mark: Mark::Bad,
            text: format!(
                "{} where your edits clash with the run's: {}",
                format::plural(clashes.len() as u64, "path"),
                format::list(&clashes, 3)
            ),
        };
    }
    merge_conflicts(state)
}

fn merge_conflicts(state: &RunState) -> Item {
    let unresolved: Vec<&str> = state
        .conflicts
        .iter()
        .filter(|c| !c.resolved)
        .map(|c| c.path.as_str())
        .collect();
    let resolved = state.conflicts.len() - unresolved.len();
    if unresolved.is_empty() {
        let text = if resolved > 0 {
            let strategies: BTreeSet<&str> = state
                .conflicts
                .iter()
                .map(|c| c.strategy.as_str())
                .collect();
            format!(
                "No merge conflicts ({} merged by {})",
                format::plural(resolved as u64, "overlap"),
                strategies.into_iter().collect::<Vec<_>>().join(", ")
            )
        } else {
            "No merge conflicts".to_owned()
        };
        Item {
            mark: Mark::Ok,
            text,
        }
    } else {
        Item {
            mark: Mark::Bad,
            text: format!(
                "{} in conflict: {}",
                format::plural(unresolved.len() as u64, "path"),
                format::list(&unresolved, 3)
            ),
        }
    }
}

fn gate(state: &RunState) -> Item {
    if state.gates.is_empty() {
        let text =
            if state.counts.succeeded < state.counts.total || state.phase == RunPhase::Cancelled {
                "Gate not run"
            } else {
                "No gate configured"
            };
        return Item {
            mark: Mark::Info,
            text: text.to_owned(),
        };
    }
    let failed = state.gates.iter().find(|g| g.passed == Some(false));
    let commands: Vec<&str> = state.gates.iter().map(|g| g.command.as_str()).collect();
    let (mut passed, mut failed_tests, mut counted) = (0, 0, false);
    for g in &state.gates {
        if let Some(p) = g.tests_passed {
            passed += p;
            counted = true;
        }
        if let Some(f) = g.tests_failed {
            failed_tests += f;
            counted = true;
        }
    }
    let tests = if counted {
        if failed_tests == 0 {
            format!(" — {passed}/{passed} passed")
        } else {
            format!(" — {failed_tests} of {} failed", passed + failed_tests)
        }
    } else {
        String::new()
    };
    match failed {
        Some(g) => Item {
            mark: Mark::Bad,
            text: format!(
                "Gate: {} failed{}{tests}",
                g.command,
                g.exit_code
                    .map(|c| format!(" (exit code {c})"))
                    .unwrap_or_default()
            ),
        },
        None if state.gates.iter().any(|g| g.passed.is_none()) => Item {
            mark: Mark::Info,
            text: format!("Gate: {} did not finish", commands.join(", ")),
        },
        None => Item {
            mark: Mark::Ok,
            text: format!("Gate: {}{tests}", commands.join(", ")),
        },
    }
}

fn tasks(state: &RunState) -> Item {
    let total = state
        .counts
        .total
        .max(u32::try_from(state.tasks.len()).unwrap_or(u32::MAX));
    let ids = |keep: fn(TaskPhase) -> bool| -> Vec<&str> {
        state
            .tasks
            .iter()
            .filter(|t| keep(t.status))
            .map(|t| t.id.as_str())
            .collect()
    };
    // Cancelled and never-reached tasks of a stopped run are not failures: they run on resume.
    let stopped = state.phase == RunPhase::Cancelled;
    let cancelled = ids(|p| p == TaskPhase::Cancelled);
    let bad: Vec<&str> = if stopped {
        ids(|p| {
            matches!(
                p,
                TaskPhase::Failed | TaskPhase::TimedOut | TaskPhase::Skipped
            )
        })
    } else {
        ids(|p| p != TaskPhase::Succeeded)
    };
    let unfinished = if stopped {
        ids(|p| !p.is_finished())
    } else {
        Vec::new()
    };
    let dropped: Vec<String> = state
        .tasks
        .iter()
        .filter(|t| t.status == TaskPhase::Succeeded && !t.not_integrated().is_empty())
        .map(|t| format!("{} ({})", t.id, t.not_integrated().join(", ")))
        .collect();
    let files = files_changed(state);
    if !bad.is_empty() {
        let mut text = format!(
            "{} of {} did not succeed: {}",
            bad.len(),
            format::plural(total, "task"),
            format::list(&bad, 4)
        );
        if stopped && !cancelled.is_empty() {
            let _ = write!(text, "; {} cancelled", cancelled.len());
        }
        return Item {
            mark: Mark::Bad,
            text,
        };
    }
    if stopped {
        let waiting = cancelled.len() + unfinished.len();
        return Item {
            mark: Mark::Stopped,
            text: format!(
                "{} of {} cancelled ({} succeeded); they run again on resume",
                waiting,
                format::plural(total, "task"),
                state.counts.succeeded
            ),
        };
    }
    if !dropped.is_empty() {
        return Item {
            mark: Mark::Bad,
            text: format!(
                "{}, {} integrated; not integrated (conflict): {}",
                format::plural(total, "task"),
                format::plural(files as u64, "file"),
                format::list(&dropped, 3)
            ),
        };
    }
    Item {
        mark: Mark::Ok,
        text: format!(
            "{}, {} changed",
            format::plural(total, "task"),
            format::plural(files as u64, "file")
        ),
    }
}

/// The items on one line, two spaces apart, with their marks.
pub(crate) fn line(items: &[Item], style: Style) -> String {
    marked(items, style).join("  ")
}

/// The items on one line if it fits in `width` columns, else one per line.
pub(crate) fn lines(items: &[Item], style: Style, width: usize) -> String {
    let plain = line(items, Style::plain());
    if crate::term::display_width(&plain) < width {
        line(items, style)
    } else {
        marked(items, style).join("\n")
    }
}

fn marked(items: &[Item], style: Style) -> Vec<String> {
    items
        .iter()
        .map(|i| {
            let mark = match i.mark {
                Mark::Ok => style.green("✓"),
                Mark::Bad => style.red("✗"),
                Mark::Stopped => style.yellow("⊘"),
                Mark::Info => style.dim("·"),
            };
            format!("{mark} {}", i.text)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use forge_events::{Event, EventKind, RunId, TaskId, TaskStatus};

    fn state(events: Vec<(Option<&str>, EventKind)>) -> RunState {
        let run = RunId::new("r").unwrap();
        let evs: Vec<Event> = events
            .into_iter()
            .enumerate()
            .map(|(i, (t, k))| {
                Event::new(
                    run.clone(),
                    i as u64 + 1,
                    t.map(|t| TaskId::new(t).unwrap()),
                    k,
                )
            })
            .collect();
        RunState::from_events(&evs)
    }

    fn finished(files: &[&str]) -> EventKind {
        EventKind::TaskFinished {
            status: TaskStatus::Succeeded,
            exit_code: Some(0),
            duration_ms: 1,
            files_changed: files
                .iter()
                .map(|f| forge_events::RepoPath::new(f).unwrap())
                .collect(),
            reason: None,
        }
    }

    #[test]
    fn tasks_run_on_cluster_nodes_are_listed_by_node() {
        let started = |attempt| EventKind::TaskStarted {
            attempt,
            agent: "shell".into(),
            workspace: "ray:j".into(),
            strategy: "ray".into(),
        };
        let placed = |attempt, node: &str| EventKind::TaskPlaced {
            attempt,
            node: node.into(),
            node_id: None,
        };
        let s = state(vec![
            (Some("a"), started(1)),
            (Some("a"), placed(1, "10.0.0.8")),
            (Some("b"), started(1)),
            (Some("b"), placed(1, "10.0.0.7")),
            (Some("c"), started(1)),
            (Some("c"), placed(1, "10.0.0.8")),
            (Some("a"), finished(&["x"])),
            (Some("b"), finished(&["y"])),
            (Some("c"), finished(&["z"])),
        ]);
        let nodes = items(&s)
            .into_iter()
            .find(|i| i.text.starts_with("On "))
            .unwrap();
        assert_eq!(nodes.text, "On nodes 10.0.0.7 (b) · 10.0.0.8 (a and c)");
        assert_eq!(nodes.mark, Mark::Info);
        // A local run says nothing of nodes.
        let local = state(vec![(Some("a"), finished(&["x"]))]);
        assert!(items(&local).iter().all(|i| !i.text.starts_with("On ")));
    }

    #[test]
    fn a_clean_run_reads_like_the_issue() {
        let s = state(vec![
            (
                Some("a"),
                EventKind::TaskQueued {
                    after: vec![],
                    estimate_ms: None,
                },
            ),
            (
                Some("b"),
                EventKind::TaskQueued {
                    after: vec![],
                    estimate_ms: None,
                },
            ),
            (Some("a"), finished(&["x", "CHANGELOG.md"])),
            (Some("b"), finished(&["y", "CHANGELOG.md"])),
            (
                None,
                EventKind::MergeConflict {
                    path: forge_events::RepoPath::new("CHANGELOG.md").unwrap(),
                    tasks: vec![TaskId::new("a").unwrap(), TaskId::new("b").unwrap()],
                    strategy: "union".into(),
                    resolved: true,
                },
            ),
            (
                None,
                EventKind::GateStarted {
                    command: "sh test.sh".into(),
                },
            ),
            (
                None,
                EventKind::GateFinished {
                    command: "sh test.sh".into(),
                    passed: true,
                    exit_code: Some(0),
                    duration_ms: 5,
                    tests_passed: Some(12),
                    tests_failed: Some(0),
                },
            ),
        ]);
        assert_eq!(
            line(&items(&s), Style::plain()),
            "✓ No merge conflicts (1 overlap merged by union)  ✓ Gate: sh test.sh — 12/12 passed  ✓ 2 tasks, 3 files changed"
        );
    }

    #[test]
    fn failures_say_what_failed() {
        let s = state(vec![
            (
                Some("a"),
                EventKind::TaskQueued {
                    after: vec![],
                    estimate_ms: None,
                },
            ),
            (
                Some("b"),
                EventKind::TaskQueued {
                    after: vec![],
                    estimate_ms: None,
                },
            ),
            (Some("a"), finished(&["x"])),
            (
                Some("b"),
                EventKind::TaskFinished {
                    status: TaskStatus::Failed,
                    exit_code: Some(1),
                    duration_ms: 1,
                    files_changed: vec![],
                    reason: Some("exit code 1".into()),
                },
            ),
        ]);
        assert_eq!(
            line(&items(&s), Style::plain()),
            "✓ No merge conflicts  · Gate not run  ✗ 1 of 2 tasks did not succeed: b"
        );
    }

    #[test]
    fn a_stopped_run_tells_failed_from_cancelled() {
        let queued = || EventKind::TaskQueued {
            after: vec![],
            estimate_ms: None,
        };
        let ended = |status| EventKind::TaskFinished {
            status,
            exit_code: None,
            duration_ms: 1,
            files_changed: vec![],
            reason: None,
        };
        let s = state(vec![
            (Some("a"), queued()),
            (Some("b"), queued()),
            (Some("c"), queued()),
            (Some("a"), finished(&["x"])),
            (Some("b"), ended(TaskStatus::Cancelled)),
            (Some("c"), ended(TaskStatus::Cancelled)),
            (
                None,
                EventKind::RunFinished {
                    status: forge_events::RunStatus::Cancelled,
                    summary: forge_events::RunSummary::default(),
                },
            ),
        ]);
        assert_eq!(
            line(&items(&s), Style::plain()),
            "✓ No merge conflicts  · Gate not run  ⊘ 2 of 3 tasks cancelled (1 succeeded); they run again on resume"
        );
        let s = state(vec![
            (Some("a"), queued()),
            (Some("b"), queued()),
            (Some("a"), ended(TaskStatus::Failed)),
            (Some("b"), ended(TaskStatus::Cancelled)),
            (
                None,
                EventKind::RunFinished {
                    status: forge_events::RunStatus::Cancelled,
                    summary: forge_events::RunSummary::default(),
                },
            ),
        ]);
        assert_eq!(
            line(&items(&s), Style::plain()),
            "✓ No merge conflicts  · Gate not run  ✗ 1 of 2 tasks did not succeed: a; 1 cancelled"
        );
    }
}
