//! `forge retry <task> [run]`: run one task of a finished, failed or interrupted run again
//! with added instructions, then its dependents; every other task's result is kept. The
//! table, `--json`, the apply prompt and the exit codes are those of `forge run`.

use std::io::Read as _;
use std::path::PathBuf;

use clap::Args;
use forge_events::TaskId;
use forge_exec::RetryRequest;

use crate::cli::{ApplyFlags, OutputFlags};
use crate::config::Context;
use crate::error::{CliError, CliResult};
use crate::run::{Start, execute};
use crate::term::Style;

/// `forge retry`.
#[derive(Debug, Args)]
pub(crate) struct RetryArgs {
    /// The task to run again.
    #[arg(value_name = "TASK")]
    pub(crate) task: String,
    /// The run (default: the latest).
    #[arg(value_name = "RUN")]
    pub(crate) run: Option<String>,
    /// Instructions added to the task's prompt (the agent continues its own session where its
    /// CLI can).
    #[arg(long, value_name = "TEXT", conflicts_with = "prompt_file")]
    pub(crate) prompt: Option<String>,
    /// Read the added instructions from a file (`-` for standard input).
    #[arg(long, value_name = "FILE")]
    pub(crate) prompt_file: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) apply: ApplyFlags,
    #[command(flatten)]
    pub(crate) output: OutputFlags,
}

/// `forge retry <task> [run] [--prompt … | --prompt-file F]`.
pub(crate) async fn retry(ctx: &Context, args: &RetryArgs, style: Style) -> CliResult {
    let run = crate::runs::resolve_run(ctx, args.run.as_deref())?;
    let task = TaskId::new(args.task.as_str()).map_err(|e| {
        CliError::usage(format!("`{}` is not a task id: {e}", args.task))
            .hint(format!("`forge status {run}` lists the run's tasks"))
    })?;
    let prompt = match (&args.prompt, &args.prompt_file) {
        (Some(text), _) => text.clone(),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map_err(|e| {
                CliError::usage(format!(
                    "cannot read the instructions from standard input: {e}"
                ))
            })?;
            text
        }
        (None, Some(path)) => std::fs::read_to_string(path).map_err(|e| {
            CliError::usage(format!(
                "cannot read the prompt file {}: {e}",
                path.display()
            ))
            .hint("give the instructions with --prompt \"…\" or a readable --prompt-file")
        })?,
        (None, None) => String::new(),
    };
    let profiles = crate::agents::profiles(ctx)?;
    execute(
        ctx,
        Start::Retry(run, RetryRequest::new(task, prompt)),
        profiles,
        &args.apply,
        &args.output,
        style,
    )
    .await
}
