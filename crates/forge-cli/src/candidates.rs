//! Runs with candidates (`forge run --task … -n N`, or `candidates = N` in a plan): after the
//! run, the choice of one; `forge apply` of the whole run asks for that choice.

use forge_events::RunId;
use forge_exec::{ApplyMode, Candidate, run_candidates};
use forge_merge::ConflictChoices;

use crate::config::Context;
use crate::error::{CliError, CliResult, Exit};
use crate::run::prompt;
use crate::term::Style;

/// The candidates of `run` that succeeded (none when the run has no candidates, or its plan
/// cannot be read).
pub(crate) fn of_run(ctx: &Context, run: &RunId) -> Vec<Candidate> {
    crate::plan_file::plan_options(ctx)
        .ok()
        .and_then(|options| run_candidates(&ctx.repo, run, &options).ok())
        .unwrap_or_default()
}

/// How to look at and apply candidates, for messages.
fn how_to(run: &RunId, candidates: &[Candidate]) -> String {
    let first = candidates.first().map_or("task-1", |c| c.task.as_str());
    format!(
        "`forge diff {run} {first}` shows one's change; `forge apply {run} --tasks {first}` applies it"
    )
}

/// For `--json` runs (on stderr): the candidates and how to choose one, if the run has some.
pub(crate) fn hint(ctx: &Context, run: &RunId) -> Option<String> {
    let candidates = of_run(ctx, run);
    let names: Vec<&str> = candidates.iter().map(|c| c.task.as_str()).collect();
    (!names.is_empty()).then(|| {
        format!(
            "Candidates to compare: {}; {}.",
            names.join(", "),
            how_to(run, &candidates)
        )
    })
}

/// `forge apply <run>` of a whole run that has candidates: one must be chosen.
pub(crate) fn refuse_whole(ctx: &Context, run: &RunId) -> CliResult<()> {
    let candidates = of_run(ctx, run);
    if candidates.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = candidates.iter().map(|c| c.task.as_str()).collect();
    Err(CliError::usage(format!(
        "run {run} made candidates to choose from ({}): apply the one you choose",
        names.join(", ")
    ))
    .hint(how_to(run, &candidates)))
}

/// After a run with candidates: lists them and, when asking, offers to apply one. `None` when
/// the run has none.
pub(crate) async fn conclude(
    ctx: &Context,
    run: &RunId,
    ask: bool,
    style: Style,
    exit: Exit,
) -> Option<CliResult> {
    let candidates = of_run(ctx, run);
    if candidates.is_empty() {
        return None;
    }
    let names: Vec<String> = candidates.iter().map(|c| c.task.to_string()).collect();
    outln!(
        "\n{} {} candidates to compare: {}.",
        style.green("✓"),
        candidates.len(),
        names.join(", ")
    );
    if ask {
        crate::notify::notify(ctx, run, crate::notify::Event::Waiting);
        let choices: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{}) {n}", i + 1))
            .collect();
        loop {
            let answer = prompt(&format!(
                "\n{} {}  r) Review changes  k) Keep for later: ",
                style.bold("Apply which?"),
                choices.join("  ")
            ))
            .await;
            let Some(answer) = answer.map(|a| a.trim().to_ascii_lowercase()) else {
                break;
            };
            if let Some(k) = answer
                .parse::<usize>()
                .ok()
                .filter(|k| (1..=names.len()).contains(k))
            {
                let chosen = [names[k - 1].clone()];
                return Some(
                    crate::partial::apply_tasks(
                        ctx,
                        run,
                        &chosen,
                        ConflictChoices::default(),
                        ApplyMode::WorkingTree,
                        style,
                        exit,
                    )
                    .await,
                );
            }
            match answer.as_str() {
                "r" | "review" => {
                    if let Err(e) = crate::review::review(ctx, run, &names, style).await {
                        return Some(Err(e));
                    }
                }
                "k" | "keep" | "n" | "no" | "q" | "" => break,
                _ => outln!("Please answer 1 to {}, r or k.", names.len()),
            }
        }
    }
    outln!("\nNot applied. {}.", how_to(run, &candidates));
    Some(Ok(exit))
}
