//! "Review changes" at the apply prompts: the whole run's diff, or one task's, chosen from a
//! numbered list (`forge diff <run> <task>` shows the same).

use std::fmt::Write as _;

use forge_events::RunId;
use forge_exec::run_diff;

use crate::config::Context;
use crate::error::CliResult;
use crate::run::{exec_error, page, prompt};
use crate::term::Style;

/// Asks which diff to show among `tasks` (the run's integrated tasks), then pages it. With
/// one task or none there is nothing to choose: the whole diff is shown.
pub(crate) async fn review(
    ctx: &Context,
    run: &RunId,
    tasks: &[String],
    style: Style,
) -> CliResult<()> {
    if tasks.len() < 2 {
        let diff =
            forge_exec::integrated_diff(&ctx.repo, run, style.is_color()).map_err(exec_error)?;
        page(&diff);
        return Ok(());
    }
    let mut question = format!("\n{} 0) everything", style.bold("Review:"));
    for (i, task) in tasks.iter().enumerate() {
        let _ = write!(question, "  {}) {task}", i + 1);
    }
    let _ = write!(question, "  [0-{}, Enter: everything]: ", tasks.len());
    loop {
        let Some(answer) = prompt(&question).await else {
            return Ok(());
        };
        let answer = answer.trim();
        let chosen = if answer.is_empty() || answer == "0" {
            None
        } else if let Some(task) = answer
            .parse::<usize>()
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| tasks.get(i))
            .or_else(|| tasks.iter().find(|t| t.as_str() == answer))
        {
            Some(task.clone())
        } else {
            outln!(
                "Please answer a number from 0 to {}, or a task's name.",
                tasks.len()
            );
            continue;
        };
        let text = match chosen {
            None => {
                forge_exec::integrated_diff(&ctx.repo, run, style.is_color()).map_err(exec_error)?
            }
            Some(task) => {
                let sections = run_diff(&ctx.repo, run, &[task]).map_err(exec_error)?;
                let mut text = String::new();
                for section in &sections {
                    for f in &section.files {
                        text.push_str(&f.render(style.is_color()));
                    }
                }
                text
            }
        };
        page(&text);
        return Ok(());
    }
}

/// The tasks a review can choose from: those of the run's result, in integration order.
pub(crate) fn integrated_tasks(ctx: &Context, run: &RunId) -> Vec<String> {
    let path = forge_exec::store::RunStore::new(&ctx.repo).result_path(run);
    std::fs::read(&path)
        .ok()
        .and_then(|text| serde_json::from_slice::<forge_exec::store::RunResult>(&text).ok())
        .map(|result| {
            result
                .integrated
                .iter()
                .map(|(t, _)| t.as_str().to_owned())
                .collect()
        })
        .unwrap_or_default()
}
