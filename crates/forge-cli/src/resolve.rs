//! `forge apply --conflicts agent`: each clashing path's task runs again (as `forge retry`
//! runs it) on top of the other side's version, with the clash as its added instructions; its
//! new result is then applied.
//!
//! Conflicts between tasks go first (the task whose change was set aside re-runs on top of the
//! integrated side); then the run is applied, which finds the clashes with your own edits
//! (kept as you have them); the tasks that wrote those paths re-run on top of your version;
//! then their new result is applied, taking the resolution where it and your file differ.

use forge_events::RunId;
use forge_exec::{
    ApplyMode, ApplyRequest, ConflictRerun, TaskSelection, apply_run_with, prepare_agent_reruns,
};
use forge_merge::{Conflict, ConflictChoices, OnConflict};

use crate::cli::{ApplyFlags, OutputFlags};
use crate::config::Context;
use crate::error::{CliResult, Exit};
use crate::render::format;
use crate::run::{Start, applied_exit, exec_error, execute, print_applied};
use crate::term::Style;

/// Whether any path's choice in `choices` is `agent`.
pub(crate) fn wants_agent(choices: &ConflictChoices) -> bool {
    choices.all == OnConflict::Agent || choices.paths.values().any(|&c| c == OnConflict::Agent)
}

/// `forge apply <run> [--tasks …] --conflicts agent[=PATH]`.
pub(crate) async fn apply(
    ctx: &Context,
    run: &RunId,
    tasks: &[String],
    choices: ConflictChoices,
    style: Style,
) -> CliResult {
    let plan_options = crate::plan_file::plan_options(ctx)?;
    let reruns =
        prepare_agent_reruns(&ctx.repo, run, &choices, &[], &plan_options).map_err(exec_error)?;
    if let Some(exit) = rerun(ctx, run, reruns, style).await? {
        return Ok(exit);
    }
    let request = |choices: ConflictChoices| ApplyRequest {
        tasks: (!tasks.is_empty()).then(|| TaskSelection {
            tasks: tasks.to_vec(),
            plan_options: plan_options.clone(),
        }),
        conflicts: choices,
    };
    let summary = apply_run_with(
        &ctx.repo,
        run,
        ApplyMode::WorkingTree,
        &request(choices.clone()),
    )
    .await
    .map_err(exec_error)?;
    let clashes: Vec<Conflict> = summary
        .worktree
        .iter()
        .flat_map(|w| {
            w.conflicts
                .iter()
                .filter(|c| !w.marked.contains(&c.path))
                .filter(|c| choices.for_path(&c.path) == OnConflict::Agent)
        })
        .cloned()
        .collect();
    if clashes.is_empty() {
        print_applied(&summary, run, style);
        return Ok(applied_exit(&summary, Exit::Success));
    }
    let reruns = prepare_agent_reruns(&ctx.repo, run, &choices, &clashes, &plan_options)
        .map_err(exec_error)?;
    if let Some(exit) = rerun(ctx, run, reruns, style).await? {
        return Ok(exit);
    }
    // The re-runs resolved on top of your version: where their result and your file differ,
    // theirs is the resolution.
    let mut settle = choices;
    if settle.all == OnConflict::Agent {
        settle.all = OnConflict::Keep;
    }
    for how in settle.paths.values_mut() {
        if *how == OnConflict::Agent {
            *how = OnConflict::Keep;
        }
    }
    for c in &clashes {
        settle.paths.insert(c.path.clone(), OnConflict::Theirs);
    }
    let summary = apply_run_with(&ctx.repo, run, ApplyMode::WorkingTree, &request(settle))
        .await
        .map_err(exec_error)?;
    print_applied(&summary, run, style);
    Ok(applied_exit(&summary, Exit::Success))
}

/// Runs each re-run as a retry of the run (kept in the run store, not applied). Returns the
/// exit when one did not succeed.
async fn rerun(
    ctx: &Context,
    run: &RunId,
    reruns: Vec<ConflictRerun>,
    style: Style,
) -> CliResult<Option<Exit>> {
    for r in reruns {
        let paths: Vec<&str> = r
            .paths
            .iter()
            .map(forge_staging::RepoPath::as_str)
            .collect();
        outln!(
            "Re-running {} on top of {} to resolve {}.",
            r.request.task,
            if r.with_working_tree {
                "your version"
            } else {
                "the integrated side"
            },
            format::list(&paths, 5)
        );
        let flags = ApplyFlags {
            no_apply: true,
            ..ApplyFlags::default()
        };
        let task = r.request.task.clone();
        let exit = execute(
            ctx,
            Start::Retry(run.clone(), r.request),
            crate::agents::profiles(ctx)?,
            &flags,
            &OutputFlags::default(),
            style,
        )
        .await?;
        if exit != Exit::Success {
            outln!(
                "{} The re-run of {task} did not resolve it; nothing more was applied. `forge logs {task} {run}` shows what it did.",
                style.red("✗")
            );
            return Ok(Some(exit));
        }
    }
    Ok(None)
}
