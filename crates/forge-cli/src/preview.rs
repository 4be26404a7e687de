//! The plan preview on the terminal: at the start of `forge run`, and for `forge check` /
//! `forge run --dry-run`, which print it and start nothing. Also the progress line of the live
//! table with file counts (plans made by `forge split`) and the ETA.

use std::fmt::Write as _;
use std::path::Path;

use forge_events::{
    EstimateSource, LockMode, PlanPreview, RunState, SerialReason, TaskPhase, Timestamp,
};
use forge_exec::plan::Plan;
use forge_exec::plan::preview::{Estimates, preview, remaining};

use crate::config::Context;
use crate::error::{CliError, CliResult, Exit};
use crate::render::format;
use crate::term::{Style, pad};

/// Loads the plan as `forge run` does: named after its file when it has no name, with `-j`.
pub(crate) fn load_plan(ctx: &Context, path: &Path, jobs: Option<u32>) -> CliResult<Plan> {
    let mut plan = crate::plan_file::load(ctx, path)?;
    // A plan without a name is called after its file (`auth.toml` runs as `auth-…`).
    if plan.name.trim().is_empty()
        && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
    {
        stem.clone_into(&mut plan.name);
    }
    if let Some(jobs) = jobs {
        plan.concurrency = usize::try_from(jobs).unwrap_or(usize::MAX);
    }
    Ok(plan)
}

/// `forge check <plan>` and `forge run <plan> --dry-run`: validate (the plan, and that its
/// agents are installed), print the preview, start nothing, write nothing.
pub(crate) fn check(
    ctx: &Context,
    path: &Path,
    jobs: Option<u32>,
    json: bool,
    style: Style,
) -> CliResult {
    let plan = load_plan(ctx, path, jobs)?;
    // `forge run` would refuse a plan whose agents are not installed: so does the check.
    crate::agents::profiles(ctx)?
        .check_available(plan.tasks.iter().map(|t| t.agent.as_str()))
        .map_err(|e| crate::run::exec_error(forge_exec::ExecError::Agent(e.to_string())))?;
    let estimates = Estimates::from_runs(&ctx.runs_dir(), None).map_err(crate::run::exec_error)?;
    let preview = preview(&plan, &estimates);
    if json {
        let line = serde_json::to_string(&preview)
            .map_err(|e| CliError::failed(format!("cannot write the preview as JSON: {e}")))?;
        outln!("{line}");
        return Ok(Exit::Success);
    }
    outln!("{}", render(&plan.name, &preview, None, style));
    outln!(
        "\n{} The plan is valid. Nothing was started: `forge run {}` runs it.",
        style.green("✓"),
        path.display()
    );
    Ok(Exit::Success)
}

/// How many tasks, groups and serialized pairs the preview at the start of a run lists (the
/// rest are counted; `forge check` lists everything).
pub(crate) const RUN_LIMIT: usize = 12;

/// The preview as lines of text (no trailing newline), listing at most `limit` tasks, task ids
/// per group and serialized pairs.
pub(crate) fn render(
    name: &str,
    preview: &PlanPreview,
    limit: Option<usize>,
    style: Style,
) -> String {
    let limit = limit.unwrap_or(usize::MAX);
    let mut out = String::new();
    let n = preview.tasks.len();
    let _ = writeln!(
        out,
        "{} {name}: {}, up to {} at once",
        style.bold("Execution plan"),
        format::plural(n as u64, "task"),
        preview.concurrency
    );
    let id_width = preview
        .tasks
        .iter()
        .map(|t| t.id.as_str().chars().count())
        .max()
        .unwrap_or(0);
    let agent_width = preview
        .tasks
        .iter()
        .map(|t| t.agent.chars().count())
        .max()
        .unwrap_or(0);
    for t in preview.tasks.iter().take(limit) {
        let mut what: Vec<String> = Vec::new();
        for mode in [LockMode::Write, LockMode::Append, LockMode::Read] {
            let patterns: Vec<&str> = t
                .claims
                .iter()
                .filter(|c| c.mode == mode)
                .map(|c| c.pattern.as_str())
                .collect();
            if !patterns.is_empty() {
                what.push(format!("{} {}", mode.plan_key(), patterns.join(", ")));
            }
        }
        if !t.after.is_empty() {
            let after: Vec<&str> = t.after.iter().map(forge_events::TaskId::as_str).collect();
            what.push(format!("after {}", after.join(", ")));
        }
        if let Some(files) = t.files {
            what.push(format::plural(files, "file"));
        }
        let claims = if what.is_empty() {
            "no claims".to_owned()
        } else {
            what.join("; ")
        };
        let _ = writeln!(
            out,
            "  • {}  {}  {}  {}",
            pad(t.id.as_str(), id_width),
            pad(&t.agent, agent_width),
            claims,
            style.dim(&estimate_text(t.estimate_ms, t.estimate_from, &t.agent))
        );
    }
    more(&mut out, n, limit, "task", style);
    render_locks(&mut out, preview, limit, style);
    render_time(&mut out, preview, style);
    out
}

/// `  … and 12 more tasks` when `limit` cut a list of `n`.
fn more(out: &mut String, n: usize, limit: usize, word: &str, style: Style) {
    if n > limit {
        let _ = writeln!(
            out,
            "  {}",
            style.dim(&format!(
                "… and {} more {word}{} (`forge check` lists them all)",
                n - limit,
                if n - limit == 1 { "" } else { "s" }
            ))
        );
    }
}

/// Which tasks run together and which are serialized, and why.
fn render_locks(out: &mut String, preview: &PlanPreview, limit: usize, style: Style) {
    let n = preview.tasks.len();
    let _ = writeln!(out, "{}", style.bold("Resource locks:"));
    if preview.serialized.is_empty() {
        let all: Vec<&str> = preview.tasks.iter().map(|t| t.id.as_str()).collect();
        let _ = writeln!(
            out,
            "  {} No conflicts detected: {}",
            style.green("✓"),
            if n > 1 {
                format!("{} can run together", format::list(&all, limit))
            } else {
                "one task".to_owned()
            }
        );
    } else {
        for group in preview.together.iter().take(limit) {
            let ids: Vec<&str> = group.iter().map(forge_events::TaskId::as_str).collect();
            let ids = if ids.len() > limit {
                format::list(&ids, limit)
            } else {
                ids.join(", ")
            };
            let _ = writeln!(out, "  {} {ids} can run together", style.green("✓"));
        }
        more(out, preview.together.len(), limit, "group", style);
        for s in preview.serialized.iter().take(limit) {
            let overlap = s.overlap.as_ref().map(|o| {
                format!(
                    "{} {} {} and {} {} {} both cover {}",
                    s.first,
                    o.first_claim.mode.plan_key(),
                    o.first_claim.pattern,
                    s.then,
                    o.then_claim.mode.plan_key(),
                    o.then_claim.pattern,
                    o.path
                )
            });
            let line = match (s.reason, overlap) {
                (SerialReason::After, None) => {
                    format!("{} runs after {} (`after`)", s.then, s.first)
                }
                (SerialReason::After, Some(overlap)) => {
                    format!("{} runs after {} (`after`; {overlap})", s.then, s.first)
                }
                (SerialReason::Locks, overlap) => format!(
                    "{} and {} run one at a time (locks: {})",
                    s.first,
                    s.then,
                    overlap.unwrap_or_default()
                ),
            };
            let _ = writeln!(out, "  {} {line}", style.yellow("→"));
        }
        more(
            out,
            preview.serialized.len(),
            limit,
            "serialized pair",
            style,
        );
        if preview.more_serialized > 0 {
            let _ = writeln!(
                out,
                "  {}",
                style.dim(&format!(
                    "… and {} more pairs the locks keep apart (not listed)",
                    preview.more_serialized
                ))
            );
        }
    }
}

/// Most tasks of the critical path named (the first ones and the last).
const CHAIN_LIMIT: usize = 10;

/// The critical path and the estimated time.
fn render_time(out: &mut String, preview: &PlanPreview, style: Style) {
    if preview.critical_path.len() > 1 {
        let path: Vec<&str> = preview
            .critical_path
            .iter()
            .map(forge_events::TaskId::as_str)
            .collect();
        let total: Option<u64> = preview
            .critical_path
            .iter()
            .map(|id| preview.task(id).and_then(|t| t.estimate_ms))
            .sum();
        // A long chain shows its ends and its length.
        let shown = if path.len() > CHAIN_LIMIT {
            format!(
                "{} → … → {} ({} tasks)",
                path[..CHAIN_LIMIT - 1].join(" → "),
                path[path.len() - 1],
                path.len()
            )
        } else {
            path.join(" → ")
        };
        let _ = writeln!(
            out,
            "{} {shown}{}",
            style.bold("Critical path:"),
            total.map_or(String::new(), |ms| format!(" ({})", format::millis(ms)))
        );
    }
    match (preview.estimate_ms, preview.sequential_ms) {
        (Some(wall), Some(sequential)) => {
            let _ = write!(
                out,
                "{} {} (vs {} sequential)",
                style.bold("Estimated time:"),
                format::millis(wall),
                format::millis(sequential)
            );
        }
        _ => {
            let unknown: Vec<&str> = preview.unknown().map(|t| t.id.as_str()).collect();
            let _ = write!(
                out,
                "{} unknown (no estimate for {}: add `estimate = \"10m\"` to a task, or run the plan once)",
                style.bold("Estimated time:"),
                format::list(&unknown, 5)
            );
        }
    }
}

fn estimate_text(ms: Option<u64>, from: EstimateSource, agent: &str) -> String {
    match (ms, from) {
        (Some(ms), EstimateSource::Plan) => format!("~{}", format::millis(ms)),
        (Some(ms), EstimateSource::TaskHistory) => {
            format!("~{} (median of earlier runs)", format::millis(ms))
        }
        (Some(ms), EstimateSource::AgentHistory) => {
            format!("~{} (median of earlier {agent} tasks)", format::millis(ms))
        }
        _ => "estimate unknown".to_owned(),
    }
}

/// The live table's progress line: the task bar, or for plans whose tasks know their files
/// (`forge split`) a bar of the files done; then the ETA while the run goes.
pub(crate) fn progress(state: &RunState, now: Timestamp, style: Style) -> String {
    let files = state.preview.as_ref().and_then(|p| {
        let total = p.files().filter(|&n| n > 0)?;
        let done: u64 = p
            .tasks
            .iter()
            .filter(|t| {
                state
                    .task(t.id.as_str())
                    .is_some_and(|s| s.status == TaskPhase::Succeeded)
            })
            .filter_map(|t| t.files)
            .sum();
        Some((done, total))
    });
    let mut line = match files {
        Some((done, total)) => file_bar(state, done, total, style),
        None => crate::render::table::progress_bar(state, style),
    };
    if !state.phase.is_finished()
        && let Some(eta) = state
            .preview
            .as_ref()
            .and_then(|p| remaining(p, state, now))
    {
        let _ = write!(
            line,
            "  {}",
            style.dim(&format!("ETA {}", format::duration(eta)))
        );
    }
    line
}

/// `████████░░  82% (203/247 files, 9/11 tasks)`.
fn file_bar(state: &RunState, done: u64, total: u64, style: Style) -> String {
    const BAR: u64 = 20;
    let filled = (done.min(total) * BAR + total / 2) / total;
    let percent = done.min(total) * 100 / total;
    let tasks_total = state
        .counts
        .total
        .max(u32::try_from(state.tasks.len()).unwrap_or(u32::MAX));
    let color = if state.counts.failed + state.counts.timed_out > 0 {
        Style::red
    } else {
        Style::green
    };
    let filled = usize::try_from(filled).unwrap_or(0);
    let empty = usize::try_from(BAR).unwrap_or(0).saturating_sub(filled);
    format!(
        "{}{} {percent:>3}% ({done}/{total} files, {}/{tasks_total} tasks)",
        color(style, &"█".repeat(filled)),
        style.dim(&"░".repeat(empty)),
        state.counts.finished()
    )
}
