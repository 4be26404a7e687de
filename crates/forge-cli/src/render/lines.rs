//! Plain output for pipes and logs: one line per state change, prefixed with the time since the
//! run started. Progress, output and usage events are left to the table and `--json`.

use std::fmt::Write as _;

use forge_events::{Event, EventKind, RunState, TaskId, TaskState, TaskStatus, Timestamp};

use super::format;

/// The line for `event` (already folded into `state`), if it is a state change.
#[allow(clippy::too_many_lines)] // one arm per event type, each a sentence
pub(crate) fn line(event: &Event, state: &RunState) -> Option<String> {
    let task = event.task.as_ref().map_or("", |t| t.as_str());
    let text = match &event.kind {
        EventKind::RunStarted {
            plan,
            tasks,
            concurrency,
            base,
            ..
        } => {
            let verb = if state.resumes > 0 {
                "resumed"
            } else {
                "started"
            };
            format!(
                "run {} {verb}: plan {plan}, {}, concurrency {concurrency}, base {base}",
                event.run,
                format::plural(*tasks, "task")
            )
        }
        EventKind::TaskWaitingLocks { blocked_by, .. } => {
            let who: Vec<&str> = blocked_by.iter().map(TaskId::as_str).collect();
            if who.is_empty() {
                format!("{task}: waiting for locks")
            } else {
                format!(
                    "{task}: waiting for locks held by {}",
                    format::list(&who, 5)
                )
            }
        }
        EventKind::TaskStarted {
            attempt,
            agent,
            strategy,
            ..
        } => format!("{task}: started attempt {attempt} ({agent}, {strategy} workspace)"),
        EventKind::TaskRetrying {
            attempt, delay_ms, ..
        } => {
            // The failure itself was the line before (`task_finished`); say what comes next.
            format!(
                "{task}: retrying: attempt {attempt} starts in {}",
                format::millis(*delay_ms)
            )
        }
        EventKind::TaskFinished {
            status,
            exit_code,
            duration_ms,
            files_changed,
            reason,
        } => {
            let took = format::millis(*duration_ms);
            match status {
                TaskStatus::Succeeded => {
                    let changed = format::plural(files_changed.len() as u64, "file");
                    let lost = state.task(task).map(TaskState::not_integrated);
                    match lost.filter(|l| !l.is_empty()) {
                        // Its integration (just before) dropped some: say what reached the result.
                        Some(lost) => format!(
                            "{task}: succeeded in {took} ({changed} changed, {} integrated; conflict: {})",
                            files_changed.len() - lost.len(),
                            format::list(&lost, 5)
                        ),
                        None => format!("{task}: succeeded in {took} ({changed} changed)"),
                    }
                }
                other => {
                    let why = reason
                        .as_deref()
                        .and_then(|r| r.lines().next())
                        .map(str::to_owned)
                        .or_else(|| exit_code.map(|c| format!("exit code {c}")))
                        .unwrap_or_default();
                    let word = match other {
                        TaskStatus::TimedOut => "timed out",
                        TaskStatus::Cancelled => "cancelled",
                        TaskStatus::Skipped => "skipped",
                        _ => "failed",
                    };
                    let never_ran = state.task(task).is_none_or(|t| t.attempt == 0);
                    if matches!(other, TaskStatus::Skipped) || why.is_empty() || never_ran {
                        format!("{task}: {word}{}", sep(&why))
                    } else {
                        format!("{task}: {word} after {took}: {why}")
                    }
                }
            }
        }
        EventKind::ClaimViolation { paths, policy } => format!(
            "{task}: changed {} outside its claims: {} (policy: {policy})",
            format::plural(paths.len() as u64, "path"),
            format::list(paths, 5)
        ),
        EventKind::LockDeadlock { cycle, victim } => {
            let names: Vec<&str> = cycle.iter().map(TaskId::as_str).collect();
            format!(
                "lock deadlock {} -> {}; {victim} gives up its wait",
                names.join(" -> "),
                names.first().copied().unwrap_or("")
            )
        }
        EventKind::MergeIntegrated { files } => format!(
            "{task}: integrated ({})",
            format::plural(files.len() as u64, "file")
        ),
        EventKind::MergeConflict {
            path,
            tasks,
            strategy,
            resolved,
        } => {
            let who: Vec<&str> = tasks.iter().map(TaskId::as_str).collect();
            let how = if *resolved {
                format!("resolved by {strategy}")
            } else {
                format!("unresolved (strategy {strategy})")
            };
            format!(
                "merge conflict in {path} between {}: {how}",
                format::list(&who, 5)
            )
        }
        EventKind::GateStarted { command } => format!("gate: {command} started"),
        EventKind::RunWarning { message } => format!("warning: {message}"),
        EventKind::GateFinished {
            command,
            passed,
            exit_code,
            duration_ms,
            tests_passed,
            tests_failed,
        } => {
            let verdict = if *passed { "passed" } else { "failed" };
            let code = match (passed, exit_code) {
                (false, Some(c)) => format!(", exit code {c}"),
                _ => String::new(),
            };
            let tests = match (tests_passed, tests_failed) {
                (Some(p), Some(f)) => format!(" ({p} passed, {f} failed)"),
                (Some(p), None) => format!(" ({p} passed)"),
                _ => String::new(),
            };
            format!(
                "gate: {command} {verdict} in {}{code}{tests}",
                format::millis(*duration_ms)
            )
        }
        EventKind::ApplyFinished {
            target,
            files,
            conflicts,
            branch,
            commit,
            ..
        } => {
            let n = format::plural(files.len() as u64, "file");
            let mut text = match (branch, commit) {
                (Some(b), Some(c)) => format!("committed {n} to {b} ({})", short(c)),
                (Some(b), None) => format!("committed {n} to {b}"),
                _ if target == "worktree" => format!("applied {n} to the working tree"),
                _ => format!("applied {n} ({target})"),
            };
            if !conflicts.is_empty() {
                let _ = write!(
                    text,
                    "; {} left in conflict with your edits: {}",
                    format::plural(conflicts.len() as u64, "path"),
                    format::list(conflicts, 5)
                );
            }
            text
        }
        EventKind::RunFinished { status, summary } => {
            let mut parts = vec![format!("{} succeeded", summary.succeeded)];
            for (n, word) in [
                (summary.failed, "failed"),
                (summary.timed_out, "timed out"),
                (summary.cancelled, "cancelled"),
                (summary.skipped, "skipped"),
            ] {
                if n > 0 {
                    parts.push(format!("{n} {word}"));
                }
            }
            let msg = summary
                .message
                .as_deref()
                .map(|m| format!(" — {m}"))
                .unwrap_or_default();
            format!(
                "run {} {status} in {}: {}{msg}",
                event.run,
                format::millis(summary.duration_ms),
                parts.join(", ")
            )
        }
        EventKind::GateBisectStarted { .. }
        | EventKind::GateBisectStep { .. }
        | EventKind::GateBisectFinished { .. } => super::bisect::line(&event.kind)?,
        EventKind::TaskRetryRequested { .. } | EventKind::TaskCheck { .. } => {
            super::retry::line(&event.kind, task)?
        }
        EventKind::TaskPlaced { attempt, node, .. } => {
            format!("{task}: attempt {attempt} runs on node {node}")
        }
        // Queueing, progress, output, usage, unknown and future types: shown by the table and
        // `--json`, not here.
        _ => return None,
    };
    Some(format!("{} {text}", stamp(state.started_at, event.ts)))
}

fn sep(why: &str) -> String {
    if why.is_empty() {
        String::new()
    } else {
        format!(": {why}")
    }
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// `[   12.3s]`: the time since the run started, fixed width so lines align.
fn stamp(start: Option<Timestamp>, at: Timestamp) -> String {
    let secs = start.map_or(0.0, |s| format::between(s, at).as_secs_f64());
    format!("[{secs:>8.1}s]")
}

#[cfg(test)]
mod tests {
    use super::*;
    use forge_events::{RunId, RunStatus, RunSummary};

    fn fold(events: &[Event]) -> Vec<String> {
        let mut state = RunState::new();
        let mut out = Vec::new();
        for e in events {
            state.apply(e);
            out.extend(line(e, &state));
        }
        out
    }

    fn ev(seq: u64, ms: i64, task: Option<&str>, kind: EventKind) -> Event {
        let mut e = Event::new(
            RunId::new("r1").unwrap(),
            seq,
            task.map(|t| TaskId::new(t).unwrap()),
            kind,
        );
        e.ts = Timestamp::from_millisecond(1_700_000_000_000 + ms).unwrap();
        e
    }

    fn queued() -> EventKind {
        EventKind::TaskQueued {
            after: vec![],
            estimate_ms: None,
        }
    }

    #[test]
    fn one_line_per_state_change() {
        let lines = fold(&[
            ev(
                1,
                0,
                None,
                EventKind::RunStarted {
                    plan: "auth".into(),
                    plan_hash: "h".into(),
                    tasks: 2,
                    concurrency: 2,
                    base: "head".into(),
                },
            ),
            ev(2, 1, Some("a"), queued()),
            ev(
                3,
                100,
                Some("a"),
                EventKind::TaskStarted {
                    attempt: 1,
                    agent: "sim".into(),
                    workspace: "/w".into(),
                    strategy: "overlay".into(),
                },
            ),
            ev(
                4,
                200,
                Some("a"),
                EventKind::TaskProgress {
                    message: "Edit x".into(),
                    tool: None,
                    files: vec![],
                },
            ),
            ev(
                5,
                1300,
                Some("a"),
                EventKind::TaskFinished {
                    status: TaskStatus::Failed,
                    exit_code: Some(1),
                    duration_ms: 1200,
                    files_changed: vec![],
                    reason: Some("exit code 1".into()),
                },
            ),
            ev(
                6,
                1400,
                Some("a"),
                EventKind::TaskRetrying {
                    attempt: 2,
                    delay_ms: 2000,
                    reason: "exit code 1".into(),
                },
            ),
            ev(
                7,
                3000,
                None,
                EventKind::GateFinished {
                    command: "sh test.sh".into(),
                    passed: true,
                    exit_code: Some(0),
                    duration_ms: 400,
                    tests_passed: Some(12),
                    tests_failed: Some(0),
                },
            ),
            ev(
                8,
                3100,
                None,
                EventKind::RunFinished {
                    status: RunStatus::Succeeded,
                    summary: RunSummary {
                        succeeded: 2,
                        duration_ms: 3100,
                        ..RunSummary::default()
                    },
                },
            ),
        ]);
        assert_eq!(
            lines,
            [
                "[     0.0s] run r1 started: plan auth, 2 tasks, concurrency 2, base head",
                "[     0.1s] a: started attempt 1 (sim, overlay workspace)",
                "[     1.3s] a: failed after 1.2s: exit code 1",
                "[     1.4s] a: retrying: attempt 2 starts in 2.0s",
                "[     3.0s] gate: sh test.sh passed in 0.4s (12 passed, 0 failed)",
                "[     3.1s] run r1 succeeded in 3.1s: 2 succeeded",
            ]
        );
    }
}
