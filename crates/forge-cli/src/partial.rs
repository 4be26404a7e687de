//! `forge apply --tasks a,b` (partial apply) and `--conflicts` (how clashes with the user's own
//! edits are settled), and the offer to apply the succeeded tasks after a run where some failed.

use forge_events::RunId;
use forge_exec::store::{RunResult, RunStore};
use forge_exec::{ApplyMode, ApplyRequest, RunReport, TaskSelection, apply_run_with};
use forge_merge::{ConflictChoices, GateReport, OnConflict};
use forge_staging::RepoPath;

use crate::config::Context;
use crate::error::{CliError, CliResult, Exit};
use crate::render::format;
use crate::run::{applied_exit, exec_error, print_applied, prompt};
use crate::term::Style;

/// The `--conflicts` values: `<how>` for every clashing path, `<how>=<path>` for one.
pub(crate) fn conflict_choices(values: &[String]) -> CliResult<ConflictChoices> {
    let mut choices = ConflictChoices::default();
    for value in values {
        let (how, path) = match value.split_once('=') {
            Some((how, path)) => (how, Some(path)),
            None => (value.as_str(), None),
        };
        let how: OnConflict = how.parse().map_err(|e: String| {
            CliError::usage(format!("--conflicts {value}: {e}"))
                .hint("write `--conflicts markers` for every path, or `--conflicts theirs=src/lib.rs` for one")
        })?;
        match path {
            None => choices.all = how,
            Some(path) => {
                let path = RepoPath::new(path.trim_start_matches("./")).map_err(|e| {
                    CliError::usage(format!("--conflicts {value}: {e}"))
                        .hint("give the path relative to the repository's root")
                })?;
                choices.paths.insert(path, how);
            }
        }
    }
    Ok(choices)
}

/// Applies `run` with the tasks and conflict choices given: `tasks` (and the tasks they depend
/// on, which it names), or the whole run when empty.
pub(crate) async fn apply_tasks(
    ctx: &Context,
    run: &RunId,
    tasks: &[String],
    conflicts: ConflictChoices,
    mode: ApplyMode,
    style: Style,
    exit: Exit,
) -> CliResult {
    let request = ApplyRequest {
        tasks: if tasks.is_empty() {
            None
        } else {
            Some(TaskSelection {
                tasks: tasks.to_vec(),
                plan_options: crate::plan_file::plan_options(ctx)?,
            })
        },
        conflicts,
    };
    let summary = apply_run_with(&ctx.repo, run, mode, &request)
        .await
        .map_err(exec_error)?;
    if !summary.added.is_empty() {
        outln!(
            "Also applying {}: {} {} on {}.",
            summary.added.join(", "),
            format::list(tasks, 3),
            if tasks.len() == 1 {
                "depends"
            } else {
                "depend"
            },
            if summary.added.len() == 1 {
                "it"
            } else {
                "them"
            }
        );
    }
    if !summary.tasks.is_empty() {
        outln!(
            "Applying the result of {}: {}.",
            format::plural(summary.tasks.len() as u64, "task"),
            summary.tasks.join(", ")
        );
    }
    print_applied(&summary, run, style);
    Ok(applied_exit(&summary, exit))
}

/// The tasks of `run` whose result was integrated, in integration order (empty if unknown).
fn succeeded(ctx: &Context, run: &RunId) -> Vec<String> {
    let path = RunStore::new(&ctx.repo).result_path(run);
    std::fs::read(&path)
        .ok()
        .and_then(|text| serde_json::from_slice::<RunResult>(&text).ok())
        .map(|r| {
            r.integrated
                .iter()
                .map(|(t, _)| t.as_str().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// After a run where some tasks failed: offers to apply the ones that succeeded. Returns
/// `None` when there is nothing to offer, or when more than failed tasks stand in the way
/// (cancelled, unresolved conflicts, a failed gate).
pub(crate) async fn offer_succeeded(
    ctx: &Context,
    report: &RunReport,
    style: Style,
    exit: Exit,
) -> Option<CliResult> {
    if report.cancelled
        || !report.conflicts.is_empty()
        || !report.gate.as_ref().is_none_or(GateReport::passed)
    {
        return None;
    }
    let run = &report.run;
    let tasks = succeeded(ctx, run);
    if tasks.is_empty() {
        return None;
    }
    let n = tasks.len();
    crate::notify::notify(ctx, run, crate::notify::Event::Waiting);
    loop {
        let answer = prompt(&format!(
            "\n{} 1) Yes  2) Review changes  3) Keep for later  [1-3]: ",
            style.bold(&format!(
                "Apply the {n} succeeded {}?",
                if n == 1 { "task" } else { "tasks" }
            ))
        ))
        .await;
        match answer.as_deref().map(|a| a.trim().to_ascii_lowercase()) {
            Some(a) if matches!(a.as_str(), "1" | "y" | "yes") => {
                return Some(
                    apply_tasks(
                        ctx,
                        run,
                        &tasks,
                        ConflictChoices::default(),
                        ApplyMode::WorkingTree,
                        style,
                        exit,
                    )
                    .await,
                );
            }
            Some(a) if matches!(a.as_str(), "2" | "r" | "review") => {
                if let Err(e) = crate::review::review(ctx, run, &tasks, style).await {
                    return Some(Err(e));
                }
            }
            Some(a)
                if matches!(a.as_str(), "3" | "k" | "keep" | "n" | "no" | "q") || a.is_empty() =>
            {
                break;
            }
            None => break,
            Some(_) => outln!("Please answer 1, 2 or 3."),
        }
    }
    outln!(
        "\nNot applied. `forge apply {run} --tasks {}` applies them later.",
        tasks.join(",")
    );
    Some(Ok(exit))
}

/// `--push [remote]` and `--pr` after the run was committed to its branch.
pub(crate) fn push(
    ctx: &Context,
    run: &RunId,
    args: &crate::cli::ApplyArgs,
    style: Style,
) -> CliResult {
    let Some(remote) = &args.push else {
        return Ok(Exit::Success);
    };
    let branch = format!("forge/{run}");
    forge_merge::push_branch(&ctx.repo, &branch, remote).map_err(|e| {
        CliError::failed(format!("pushing {branch} to {remote} failed: {e}"))
            .hint("check the remote's name (`git remote -v`) and your access to it")
    })?;
    outln!("{} Pushed {branch} to {remote}.", style.green("✓"));
    if args.pr {
        let body = forge_exec::run_summary(&ctx.repo, run).map_err(exec_error)?;
        let url = forge_merge::open_pull_request(&ctx.repo, &branch, &format!("Forge run {run}"), &body)
            .map_err(|e| {
                CliError::failed(format!("opening a pull request for {branch} failed: {e}"))
                    .hint("install GitHub's CLI `gh` and sign in with `gh auth login`; the branch is pushed already")
            })?;
        outln!("{} Pull request: {url}", style.green("✓"));
    }
    Ok(Exit::Success)
}

/// How the apply settled the conflicts between tasks that the run left unresolved.
pub(crate) fn print_settled(applied: &forge_exec::ApplySummary, style: Style) {
    for s in &applied.settled {
        let ours = if s.ours.is_empty() {
            "the integrated tree".to_owned()
        } else {
            s.ours.join(", ")
        };
        let what = match s.how {
            _ if s.marked => format!(
                "conflict markers written ({ours}'s lines, the base's, {}'s); resolve them",
                s.theirs
            ),
            OnConflict::Ours => format!("{ours}'s lines kept where {} clashes (ours)", s.theirs),
            OnConflict::Theirs => {
                format!("{}'s lines taken where {ours} clashes (theirs)", s.theirs)
            }
            _ => format!(
                "kept as {ours} left it ({} cannot be merged with markers)",
                s.theirs
            ),
        };
        let mark = if s.marked {
            style.red("✗")
        } else {
            style.green("✓")
        };
        outln!(
            "  {mark} {}: tasks {ours} and {} clashed: {what}",
            s.path.as_str(),
            s.theirs
        );
    }
}
