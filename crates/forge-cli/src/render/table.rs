//! The task table: one row per task (state icon, id, agent, the cluster node its attempt runs
//! on when a cluster runner placed it, latest activity, attempt, elapsed, tokens/cost), an overall progress bar, and the gate and apply once they start.
//!
//! Rendering is a pure function of a [`RunState`] and the time, so the live table of
//! `forge run`, `forge status` and `forge status --follow` are the same table. Each line fits the
//! width it is given (in terminal columns), so a live redraw can move the cursor up exactly as
//! many lines as it drew.

use std::collections::HashMap;

use std::fmt::Write as _;

use forge_events::{RunPhase, RunState, TaskId, TaskPhase, TaskState, Timestamp};

use super::format;
use crate::term::{Style, display_width, elide_middle, pad, truncate};

/// Columns of the elapsed-time cell.
const ELAPSED_W: usize = 6;
/// Spaces between the id, agent and activity columns.
const GAP: usize = 2;
/// The narrowest activity column before other columns are dropped.
const MIN_ACTIVITY: usize = 12;

/// Frames of the spinner shown for running tasks in a live table.
const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/// Columns of the progress bar.
const BAR: usize = 20;

/// What the table knows besides the run's events.
#[derive(Debug, Clone, Default)]
pub(crate) struct TableInfo {
    /// Agent per task from the plan (shown before a task starts).
    pub(crate) agents: HashMap<String, String>,
    /// Attempts allowed per task from the plan (`retries + 1`).
    pub(crate) max_attempts: HashMap<String, u32>,
}

/// How to draw.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    /// Terminal columns available.
    pub(crate) width: usize,
    /// Most task rows to show (the rest are summarized in one line).
    pub(crate) max_rows: usize,
    /// Animation frame (for the spinner); `None` for a still picture.
    pub(crate) frame: Option<usize>,
}

/// The icon of a task phase (always two columns wide once padded).
pub(crate) fn icon(phase: TaskPhase, frame: Option<usize>, style: Style) -> String {
    let (glyph, paint): (&str, fn(Style, &str) -> String) = match phase {
        TaskPhase::Queued => ("·", Style::dim),
        TaskPhase::WaitingLocks => ("⏳", Style::yellow),
        TaskPhase::Running => (
            frame.map_or("⟳", |f| SPINNER[f % SPINNER.len()]),
            Style::cyan,
        ),
        TaskPhase::Retrying => ("↻", Style::yellow),
        TaskPhase::Succeeded => ("✓", Style::green),
        TaskPhase::Failed | TaskPhase::TimedOut => ("✗", Style::red),
        TaskPhase::Cancelled => ("⊘", Style::yellow),
        TaskPhase::Skipped => ("⊘", Style::dim),
    };
    let padded = pad(glyph, 2);
    paint(style, &padded)
}

/// What a task is doing, in a few words.
pub(crate) fn activity(task: &TaskState, state: &RunState) -> String {
    match task.status {
        TaskPhase::Queued => {
            let waiting: Vec<&str> = task
                .after
                .iter()
                .filter(|dep| {
                    state
                        .task(dep.as_str())
                        .is_none_or(|d| d.status != TaskPhase::Succeeded)
                })
                .map(TaskId::as_str)
                .collect();
            if waiting.is_empty() {
                "queued".to_owned()
            } else {
                format!("after {}", format::list(&waiting, 3))
            }
        }
        TaskPhase::WaitingLocks => {
            if task.blocked_by.is_empty() {
                "waiting for locks".to_owned()
            } else {
                let who: Vec<&str> = task.blocked_by.iter().map(TaskId::as_str).collect();
                format!("waiting for locks held by {}", format::list(&who, 3))
            }
        }
        TaskPhase::Running => {
            let said = task
                .last_progress
                .as_ref()
                .map(|p| p.message.clone())
                .or_else(|| task.last_output.clone());
            match said {
                // Agents often name files by their absolute path in the workspace.
                Some(text) => match &task.workspace {
                    Some(ws) if !ws.is_empty() => {
                        text.replace(&format!("{}/", ws.trim_end_matches('/')), "")
                    }
                    _ => text,
                },
                None => match &task.strategy {
                    Some(s) => format!("starting ({s} workspace)"),
                    None => "starting".to_owned(),
                },
            }
        }
        TaskPhase::Retrying => match &task.retry {
            Some(r) => format!(
                "attempt {} in {} — {}",
                r.attempt,
                format::millis(r.delay_ms),
                first_line(&r.reason)
            ),
            None => "retrying".to_owned(),
        },
        TaskPhase::Succeeded => {
            let n = task.files_changed.len();
            let lost = task.not_integrated();
            let files = if n == 0 {
                "no changes".to_owned()
            } else if lost.is_empty() {
                format!("{} changed", format::plural(n as u64, "file"))
            } else {
                // What reached the result, not only what was attempted.
                format!(
                    "{} changed, {} integrated (conflict: {})",
                    format::plural(n as u64, "file"),
                    n - lost.len(),
                    format::list(&lost, 3)
                )
            };
            if task.violations.is_empty() {
                files
            } else {
                format!(
                    "{files}; {} outside its claims",
                    format::plural(task.violations.len() as u64, "path")
                )
            }
        }
        TaskPhase::Failed | TaskPhase::TimedOut | TaskPhase::Cancelled | TaskPhase::Skipped => {
            task.reason.as_deref().map_or_else(
                || match (task.status, task.exit_code) {
                    (TaskPhase::Failed, Some(code)) => format!("exit code {code}"),
                    (TaskPhase::TimedOut, _) => "timed out".to_owned(),
                    (TaskPhase::Cancelled, _) => "cancelled".to_owned(),
                    (TaskPhase::Skipped, _) => "skipped".to_owned(),
                    _ => "failed".to_owned(),
                },
                |r| first_line(r).to_owned(),
            )
        }
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// How long a task has taken (since its first attempt started).
fn elapsed(task: &TaskState, now: Timestamp) -> Option<String> {
    let start = task.started_at?;
    let end = if task.status.is_finished() {
        task.finished_at.unwrap_or(now)
    } else {
        now
    };
    Some(format::duration(format::between(start, end)))
}

fn usage(task: &TaskState) -> String {
    let u = &task.usage;
    let total = u.tokens_in.saturating_add(u.tokens_out);
    let mut out = String::new();
    if total > 0 {
        out = format!("{} tok", format::tokens(total));
    }
    if let Some(c) = u.cost_usd {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&format::cost(c));
    } else if total > 0 {
        // Tokens without a reported cost or a price in `[prices]`.
        out.push_str(" n/a");
    }
    out
}

/// The progress bar line: `████████░░ 82% (9/11 tasks)`, and `· 2 cancelled` when some were:
/// a cancelled task is not done (it runs again on resume).
pub(crate) fn progress_bar(state: &RunState, style: Style) -> String {
    let total = state
        .counts
        .total
        .max(u32::try_from(state.tasks.len()).unwrap_or(u32::MAX));
    let done = state.counts.done();
    let ratio = if total == 0 {
        0.0
    } else {
        f64::from(done) / f64::from(total)
    };
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )] // 0..=BAR
    let filled = ((ratio * BAR as f64).round() as usize).min(BAR);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // 0..=100
    let percent = (ratio * 100.0).floor() as u32;
    let bar_color = if state.counts.failed + state.counts.timed_out > 0 {
        Style::red
    } else {
        Style::green
    };
    let cancelled = if state.counts.cancelled > 0 {
        format!(
            " · {}",
            style.yellow(&format!("{} cancelled", state.counts.cancelled))
        )
    } else {
        String::new()
    };
    format!(
        "{}{} {percent:>3}% ({done}/{total} tasks){cancelled}",
        bar_color(style, &"█".repeat(filled)),
        style.dim(&"░".repeat(BAR - filled)),
    )
}

/// The header line: run id, phase, time.
fn header(state: &RunState, now: Timestamp, style: Style) -> String {
    let run = state.run.as_ref().map_or("(no run yet)", |r| r.as_str());
    let phase = match state.phase {
        RunPhase::Pending => style.dim("starting"),
        RunPhase::Running => style.cyan("running"),
        RunPhase::Gating => style.cyan("gating"),
        RunPhase::Succeeded => style.green("succeeded"),
        RunPhase::Failed => style.red("failed"),
        RunPhase::Cancelled => style.yellow("cancelled"),
    };
    let mut parts = vec![format!("{} {}", style.bold("forge"), run), phase];
    if let Some(plan) = &state.plan {
        parts.push(format!(
            "{} · concurrency {}",
            format::plural(plan.tasks, "task"),
            plan.concurrency
        ));
    }
    if let Some(start) = state.started_at {
        let end = state
            .finished_at
            .filter(|_| state.phase.is_finished())
            .unwrap_or(now);
        parts.push(format::duration(format::between(start, end)));
    }
    if state.resumes > 0 {
        parts.push(format!("resumed {}×", state.resumes));
    }
    if let Some(spent) = super::format::spent(&state.usage) {
        parts.push(spent);
    }
    parts.join(" · ")
}

/// Lines about the gate, conflicts and apply, once there is something to say.
fn footer(state: &RunState, now: Timestamp, style: Style) -> Vec<String> {
    let mut out = Vec::new();
    let unresolved = state.conflicts.iter().filter(|c| !c.resolved).count();
    if unresolved > 0 {
        let paths: Vec<&str> = state
            .conflicts
            .iter()
            .filter(|c| !c.resolved)
            .map(|c| c.path.as_str())
            .collect();
        out.push(format!(
            "{} {} in conflict: {}",
            style.red("✗"),
            format::plural(unresolved as u64, "path"),
            format::list(&paths, 3)
        ));
    }
    // Once the run is over, the summary below the table tells the gate's result.
    let gates = if state.phase.is_finished() {
        &[][..]
    } else {
        &state.gates[..]
    };
    for g in gates {
        let line = match g.passed {
            None => {
                let took = g
                    .started_at
                    .map(|s| format!(" ({})", format::duration(format::between(s, now))))
                    .unwrap_or_default();
                format!("{} gate: {}{took}", style.cyan("⟳"), g.command)
            }
            Some(passed) => {
                let tests = match (g.tests_passed, g.tests_failed) {
                    (Some(p), Some(f)) => format!(" — {p}/{} passed", p + f),
                    (Some(p), None) => format!(" — {p} passed"),
                    _ => String::new(),
                };
                let mark = if passed {
                    style.green("✓")
                } else {
                    style.red("✗")
                };
                format!("{mark} gate: {}{tests}", g.command)
            }
        };
        out.push(line);
    }
    if let Some(line) =
        super::bisect::table_line(state, style).filter(|_| !state.phase.is_finished())
    {
        out.push(line);
    }
    if let Some(apply) = state.apply.as_ref().filter(|_| !state.phase.is_finished()) {
        let target = match (&apply.branch, apply.target.as_str()) {
            (Some(b), _) => format!("committed to {b}"),
            (None, "worktree") => "applied to the working tree".to_owned(),
            (None, t) => format!("applied ({t})"),
        };
        out.push(format!(
            "{} {target}: {}",
            style.green("✓"),
            format::plural(apply.files.len() as u64, "file")
        ));
    }
    out
}

/// The table as lines (no newlines), each at most `layout.width` columns wide.
#[allow(clippy::too_many_lines)] // the columns' widths, then the rows: one layout, top to bottom
pub(crate) fn render(
    state: &RunState,
    info: &TableInfo,
    now: Timestamp,
    layout: Layout,
    style: Style,
) -> Vec<String> {
    let width = layout.width.max(30);
    let mut lines = Vec::with_capacity(state.tasks.len() + 4);
    lines.push(fit(&header(state, now, style), width, style));
    if state.tasks.is_empty() {
        lines.push(style.dim("  no tasks yet"));
        return lines;
    }

    // Which rows: all if they fit, else the active and failed ones first, then the rest in plan
    // order, and one line for what is left out.
    let mut rows: Vec<&TaskState> = state.tasks.iter().collect();
    let mut hidden = Vec::new();
    if rows.len() > layout.max_rows.max(1) {
        let keep = layout.max_rows.max(2) - 1;
        let rank = |t: &TaskState| match t.status {
            TaskPhase::Running | TaskPhase::Retrying => 0,
            TaskPhase::WaitingLocks => 1,
            TaskPhase::Failed | TaskPhase::TimedOut => 2,
            TaskPhase::Queued => 3,
            TaskPhase::Cancelled | TaskPhase::Skipped => 4,
            TaskPhase::Succeeded => 5,
        };
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&i| (rank(rows[i]), i));
        let mut shown: Vec<usize> = order[..keep].to_vec();
        shown.sort_unstable();
        hidden = order[keep..].iter().map(|&i| rows[i]).collect();
        rows = shown.iter().map(|&i| rows[i]).collect();
    }

    let agent_of = |t: &TaskState| {
        t.agent
            .clone()
            .or_else(|| info.agents.get(t.id.as_str()).cloned())
            .unwrap_or_default()
    };
    let id_w = rows
        .iter()
        .map(|t| display_width(t.id.as_str()))
        .max()
        .unwrap_or(4)
        .clamp(4, 24);
    let agent_w = rows
        .iter()
        .map(|t| display_width(&agent_of(t)))
        .max()
        .unwrap_or(0)
        .min(12);
    // The node column only appears once a cluster runner placed an attempt.
    let mut node_w = rows
        .iter()
        .filter_map(|t| t.node.as_deref().map(display_width))
        .max()
        .unwrap_or(0)
        .min(16);
    let usages: Vec<String> = rows.iter().map(|t| usage(t)).collect();
    let mut usage_w = usages.iter().map(|u| display_width(u)).max().unwrap_or(0);
    let mut agent_w = agent_w;
    let attempt_of = |t: &TaskState| -> String {
        if t.attempt == 0 {
            return String::new();
        }
        match info.max_attempts.get(t.id.as_str()) {
            // Interrupted attempts do not count against the retries.
            Some(&max) if max > 1 => format!("{}/{max}", t.attempt.saturating_sub(t.interrupted)),
            _ => format!("#{}", t.attempt),
        }
    };
    let attempt_w = rows
        .iter()
        .map(|t| display_width(&attempt_of(t)))
        .max()
        .unwrap_or(0);
    // icon(2) space id gap agent gap activity space attempt space elapsed space usage
    let fixed = 2
        + 1
        + id_w
        + GAP
        + if agent_w > 0 { agent_w + GAP } else { 0 }
        + if node_w > 0 { node_w + GAP } else { 0 }
        + 1
        + if attempt_w > 0 { attempt_w + 1 } else { 0 }
        + ELAPSED_W
        + if usage_w > 0 { usage_w + 1 } else { 0 };
    // On a narrow terminal, usage goes first, then the agent: the activity matters more.
    let mut fixed = fixed;
    if width < fixed + 1 + MIN_ACTIVITY && usage_w > 0 {
        fixed -= usage_w + 1;
        usage_w = 0;
    }
    if width < fixed + 1 + MIN_ACTIVITY && node_w > 0 {
        fixed -= node_w + GAP;
        node_w = 0;
    }
    if width < fixed + 1 + MIN_ACTIVITY && agent_w > 0 {
        fixed -= agent_w + GAP;
        agent_w = 0;
    }
    let activity_w = width.saturating_sub(fixed + 1).max(4);

    for (t, usage) in rows.iter().zip(&usages) {
        let mut line = icon(t.status, layout.frame, style);
        line.push(' ');
        line.push_str(&style.bold(&pad(&elide_middle(t.id.as_str(), id_w), id_w)));
        line.push_str(&" ".repeat(GAP));
        if agent_w > 0 {
            line.push_str(&style.dim(&pad(&agent_of(t), agent_w)));
            line.push_str(&" ".repeat(GAP));
        }
        if node_w > 0 {
            let node = t.node.as_deref().unwrap_or("");
            line.push_str(&style.dim(&pad(&elide_middle(node, node_w), node_w)));
            line.push_str(&" ".repeat(GAP));
        }
        let act = pad(&activity(t, state), activity_w);
        let act = match t.status {
            TaskPhase::Failed | TaskPhase::TimedOut => style.red(&act),
            TaskPhase::Succeeded if !t.not_integrated().is_empty() => style.red(&act),
            TaskPhase::WaitingLocks | TaskPhase::Retrying => style.yellow(&act),
            TaskPhase::Queued | TaskPhase::Skipped => style.dim(&act),
            _ => act,
        };
        line.push_str(&act);
        line.push(' ');
        if attempt_w > 0 {
            let _ = write!(line, "{:>attempt_w$} ", attempt_of(t));
        }
        let el = elapsed(t, now).unwrap_or_default();
        let _ = write!(line, "{el:>ELAPSED_W$}");
        if usage_w > 0 {
            line.push(' ');
            line.push_str(&style.dim(&format!("{usage:>usage_w$}")));
        }
        lines.push(line);
    }
    if !hidden.is_empty() {
        let done = hidden.iter().filter(|t| t.status.is_finished()).count();
        lines.push(style.dim(&truncate(
            &format!(
                "   … and {} more {} ({done} finished)",
                hidden.len(),
                if hidden.len() == 1 { "task" } else { "tasks" },
            ),
            width - 1,
        )));
    }
    lines.push(crate::preview::progress(state, now, style));
    for l in footer(state, now, style) {
        lines.push(fit(&l, width, style));
    }
    lines
}

/// Cuts a line that may contain colour codes to `width` columns. Coloured lines built here are
/// short by construction; only plain text is cut.
fn fit(line: &str, width: usize, style: Style) -> String {
    if style.is_color() || display_width(line) < width {
        line.to_owned()
    } else {
        truncate(line, width - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use forge_events::{ClaimRecord, Event, EventKind, RunId, TaskStatus};

    fn ev(seq: u64, task: Option<&str>, kind: EventKind) -> Event {
        let mut e = Event::new(
            RunId::new("r1").unwrap(),
            seq,
            task.map(|t| TaskId::new(t).unwrap()),
            kind,
        );
        e.ts = Timestamp::from_second(1_700_000_000 + i64::try_from(seq).unwrap()).unwrap();
        e
    }

    fn sample() -> RunState {
        let events = vec![
            ev(
                1,
                None,
                EventKind::RunStarted {
                    plan: "auth".into(),
                    plan_hash: "h".into(),
                    tasks: 4,
                    concurrency: 2,
                    base: "head".into(),
                },
            ),
            ev(
                2,
                Some("backend"),
                EventKind::TaskQueued {
                    after: vec![],
                    estimate_ms: None,
                },
            ),
            ev(
                3,
                Some("frontend"),
                EventKind::TaskQueued {
                    after: vec![],
                    estimate_ms: None,
                },
            ),
            ev(
                4,
                Some("tests"),
                EventKind::TaskQueued {
                    after: vec![TaskId::new("backend").unwrap()],
                    estimate_ms: None,
                },
            ),
            ev(
                5,
                Some("docs"),
                EventKind::TaskQueued {
                    after: vec![],
                    estimate_ms: None,
                },
            ),
            ev(
                6,
                Some("backend"),
                EventKind::TaskStarted {
                    attempt: 1,
                    agent: "sim".into(),
                    workspace: "/w".into(),
                    strategy: "overlay".into(),
                },
            ),
            ev(
                7,
                Some("backend"),
                EventKind::TaskProgress {
                    message: "Edit src/api/auth.rs".into(),
                    tool: Some("edit".into()),
                    files: vec!["src/api/auth.rs".into()],
                },
            ),
            ev(
                8,
                Some("backend"),
                EventKind::TaskUsage {
                    tokens_in: 1000,
                    tokens_out: 234,
                    cost_usd: Some(0.02),
                },
            ),
            ev(
                9,
                Some("docs"),
                EventKind::TaskWaitingLocks {
                    claims: vec![ClaimRecord {
                        mode: forge_events::LockMode::Write,
                        pattern: "docs/**".into(),
                    }],
                    blocked_by: vec![TaskId::new("frontend").unwrap()],
                },
            ),
            ev(
                10,
                Some("frontend"),
                EventKind::TaskStarted {
                    attempt: 1,
                    agent: "sim".into(),
                    workspace: "/w2".into(),
                    strategy: "overlay".into(),
                },
            ),
            ev(
                11,
                Some("frontend"),
                EventKind::TaskFinished {
                    status: TaskStatus::Succeeded,
                    exit_code: Some(0),
                    duration_ms: 1000,
                    files_changed: vec![
                        forge_events::RepoPath::new("ui/a.js").unwrap(),
                        forge_events::RepoPath::new("ui/b.js").unwrap(),
                    ],
                    reason: None,
                },
            ),
        ];
        RunState::from_events(&events)
    }

    fn at(sec: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + sec).unwrap()
    }

    #[test]
    fn rows_show_state_agent_activity_attempt_elapsed_and_usage() {
        let state = sample();
        let layout = Layout {
            width: 100,
            max_rows: 50,
            frame: None,
        };
        let lines = render(
            &state,
            &TableInfo::default(),
            at(20),
            layout,
            Style::plain(),
        );
        let text = lines.join("\n");
        assert!(
            lines[0].starts_with("forge r1 · running · 4 tasks · concurrency 2 · 19s"),
            "{text}"
        );
        let backend = lines.iter().find(|l| l.contains("backend ")).unwrap();
        assert!(backend.starts_with("⟳  backend"), "{backend}");
        assert!(backend.contains("sim"), "{backend}");
        assert!(backend.contains("Edit src/api/auth.rs"), "{backend}");
        assert!(backend.contains("#1"), "{backend}");
        assert!(backend.contains("14s"), "{backend}");
        assert!(backend.contains("1.2k tok $0.02"), "{backend}");
        let tests = lines.iter().find(|l| l.contains(" tests ")).unwrap();
        assert!(tests.contains("after backend"), "{tests}");
        let docs = lines.iter().find(|l| l.contains(" docs ")).unwrap();
        assert!(docs.starts_with("⏳"), "{docs}");
        assert!(
            docs.contains("waiting for locks held by frontend"),
            "{docs}"
        );
        let frontend = lines.iter().find(|l| l.contains(" frontend ")).unwrap();
        assert!(frontend.starts_with("✓"), "{frontend}");
        assert!(frontend.contains("2 files changed"), "{frontend}");
        assert!(frontend.contains("1.0s"), "{frontend}");
        assert!(
            text.contains("█████░░░░░░░░░░░░░░░  25% (1/4 tasks)"),
            "{text}"
        );
        for l in &lines {
            assert!(display_width(l) <= 100, "too wide: {l}");
        }
    }

    #[test]
    fn a_placed_attempt_shows_its_node_and_local_tables_have_no_node_column() {
        let local = render(
            &sample(),
            &TableInfo::default(),
            at(20),
            Layout {
                width: 100,
                max_rows: 50,
                frame: None,
            },
            Style::plain(),
        );
        let mut state = sample();
        state.apply(&ev(
            100,
            Some("backend"),
            EventKind::TaskPlaced {
                attempt: 1,
                node: "10.0.0.7".into(),
                node_id: Some("abc".into()),
            },
        ));
        // A placement of another attempt than the current one is not where it runs now.
        state.apply(&ev(
            101,
            Some("frontend"),
            EventKind::TaskPlaced {
                attempt: 9,
                node: "10.0.0.8".into(),
                node_id: None,
            },
        ));
        let lines = render(
            &state,
            &TableInfo::default(),
            at(20),
            Layout {
                width: 100,
                max_rows: 50,
                frame: None,
            },
            Style::plain(),
        );
        let backend = lines.iter().find(|l| l.contains("backend ")).unwrap();
        assert!(backend.contains("sim  10.0.0.7  "), "{backend}");
        assert!(!lines.join("\n").contains("10.0.0.8"), "{lines:#?}");
        assert!(!local.join("\n").contains("10.0.0"), "{local:#?}");
        // Narrow: the node column goes before the activity is squeezed.
        for l in render(
            &state,
            &TableInfo::default(),
            at(20),
            Layout {
                width: 40,
                max_rows: 50,
                frame: None,
            },
            Style::plain(),
        ) {
            assert!(display_width(&l) <= 40, "too wide: {l}");
        }
    }

    #[test]
    fn lines_fit_narrow_terminals() {
        let state = sample();
        let layout = Layout {
            width: 50,
            max_rows: 50,
            frame: Some(3),
        };
        for l in render(
            &state,
            &TableInfo::default(),
            at(20),
            layout,
            Style::plain(),
        ) {
            assert!(
                display_width(&l) <= 50,
                "too wide ({}): {l}",
                display_width(&l)
            );
        }
    }

    #[test]
    fn long_tables_keep_active_rows_and_summarize_the_rest() {
        let state = sample();
        let layout = Layout {
            width: 100,
            max_rows: 3,
            frame: None,
        };
        let lines = render(
            &state,
            &TableInfo::default(),
            at(20),
            layout,
            Style::plain(),
        );
        let text = lines.join("\n");
        assert!(text.contains("backend"), "{text}");
        assert!(text.contains("docs"), "{text}");
        assert!(text.contains("… and 2 more tasks (1 finished)"), "{text}");
    }

    #[test]
    fn plan_info_fills_agents_and_attempts() {
        let state = sample();
        let mut info = TableInfo::default();
        info.agents.insert("tests".into(), "claude".into());
        info.max_attempts.insert("backend".into(), 2);
        let layout = Layout {
            width: 120,
            max_rows: 50,
            frame: None,
        };
        let lines = render(&state, &info, at(20), layout, Style::plain());
        let tests = lines.iter().find(|l| l.contains(" tests ")).unwrap();
        assert!(tests.contains("claude"), "{tests}");
        let backend = lines.iter().find(|l| l.contains(" backend ")).unwrap();
        assert!(backend.contains("1/2"), "{backend}");
    }
}
