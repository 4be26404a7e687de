//! `forge diff`: what a run (or some of its tasks) changed, for review before applying.

use forge_events::RunId;
use forge_exec::store::RunStore;
use forge_exec::{DiffSection, run_diff};
use forge_merge::render_stat;

use crate::cli::DiffArgs;
use crate::config::Context;
use crate::error::{CliError, CliResult, Exit};
use crate::render::write_stdout;
use crate::run::{exec_error, page};
use crate::term::{Style, stdout_is_tty};

/// `forge diff [run] [task…] [--stat] [--name-only] [--json] [-- <paths>]`.
pub(crate) fn run(ctx: &Context, args: &DiffArgs, style: Style) -> CliResult {
    let (run, tasks) = run_and_tasks(ctx, &args.words)?;
    let mut sections = run_diff(&ctx.repo, &run, &tasks).map_err(exec_error)?;
    let filters = path_filters(&args.paths)?;
    for section in &mut sections {
        section.files.retain(|f| matches(&filters, &f.path));
    }
    // A conflict's side outside the paths asked for is left out whole.
    sections.retain(|s| s.conflict.is_none() || !s.files.is_empty());
    if args.json {
        let value = match sections.as_slice() {
            [
                DiffSection {
                    task: None,
                    conflict: None,
                    files,
                    ..
                },
                clashes @ ..,
            ] if clashes.iter().all(|s| s.conflict.is_some()) => {
                if clashes.is_empty() {
                    serde_json::json!({ "run": run.as_str(), "files": files })
                } else {
                    serde_json::json!({ "run": run.as_str(), "files": files, "conflicts": clashes })
                }
            }
            _ => serde_json::json!({ "run": run.as_str(), "tasks": sections }),
        };
        write_stdout(&format!("{value}\n"));
        return Ok(Exit::Success);
    }
    let color = style.is_color();
    let headed = sections.len() > 1;
    let mut text = String::new();
    for section in &sections {
        if headed {
            text.push_str(&style.bold(&heading(section)));
            text.push('\n');
        }
        if args.name_only {
            for f in &section.files {
                text.push_str(&f.path);
                text.push('\n');
            }
        } else if args.stat {
            if !section.files.is_empty() {
                text.push_str(&render_stat(&section.files, color));
            }
        } else {
            for f in &section.files {
                text.push_str(&f.render(color));
            }
        }
    }
    if stdout_is_tty() && !text.is_empty() {
        page(&text);
    } else {
        write_stdout(&text);
    }
    Ok(Exit::Success)
}

/// The line above a section when there are several: the task (and attempt), the whole run,
/// or one side of a conflict between tasks.
fn heading(section: &DiffSection) -> String {
    let task = section.task.as_deref().unwrap_or("the integrated tree");
    let path = section.files.first().map_or("", |f| f.path.as_str());
    match (section.conflict.as_deref(), section.attempt) {
        (Some("ours"), _) => {
            format!("# conflict on {path}: {task}'s version (ours: kept in the integrated tree)")
        }
        (Some(_), _) => format!("# conflict on {path}: {task}'s version (theirs: set aside)"),
        (None, Some(attempt)) => format!("# task {task} (attempt {attempt})"),
        (None, None) => "# the run's integrated change".to_owned(),
    }
}

/// Splits the words before `--` into the run and the tasks: the first word is the run when a
/// run has that id (or an id it uniquely starts) and the latest run has no task of that name;
/// otherwise every word is a task of the latest run.
fn run_and_tasks(ctx: &Context, words: &[String]) -> CliResult<(RunId, Vec<String>)> {
    let Some((first, rest)) = words.split_first() else {
        return Ok((crate::runs::resolve_run(ctx, None)?, Vec::new()));
    };
    let latest = crate::runs::resolve_run(ctx, None)?;
    if latest.as_str() != first.as_str() && tasks_of(ctx, &latest).contains(first) {
        return Ok((latest, words.to_vec()));
    }
    match crate::runs::resolve_run(ctx, Some(first)) {
        Ok(run) => Ok((run, rest.to_vec())),
        Err(_) => Ok((latest, words.to_vec())),
    }
}

/// The tasks named in the run's result (empty while it has none).
fn tasks_of(ctx: &Context, run: &RunId) -> Vec<String> {
    let path = RunStore::new(&ctx.repo).result_path(run);
    let Ok(text) = std::fs::read(&path) else {
        return Vec::new();
    };
    let Ok(result) = serde_json::from_slice::<forge_exec::store::RunResult>(&text) else {
        return Vec::new();
    };
    result
        .integrated
        .iter()
        .map(|(t, _)| t.as_str().to_owned())
        .chain(result.failed.iter().map(|t| t.as_str().to_owned()))
        .collect()
}

/// The paths after `--`, repo-relative, without a trailing `/` (`.` stands for everything).
fn path_filters(paths: &[String]) -> CliResult<Vec<String>> {
    paths
        .iter()
        .filter(|p| p.as_str() != "." && p.as_str() != "./")
        .map(|p| {
            let trimmed = p.trim_start_matches("./").trim_end_matches('/');
            if trimmed.starts_with('/') || trimmed.split('/').any(|s| s == "..") {
                return Err(CliError::usage(format!(
                    "path `{p}` after `--` is not inside the repository"
                ))
                .hint(
                    "give paths relative to the repository's root, such as `src/` or `README.md`",
                ));
            }
            Ok(trimmed.to_owned())
        })
        .collect()
}

/// Whether `path` is one of `filters` or inside one of them (no filters: every path).
fn matches(filters: &[String], path: &str) -> bool {
    filters.is_empty()
        || filters.iter().any(|f| {
            path == f
                || path
                    .strip_prefix(f.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        })
}
