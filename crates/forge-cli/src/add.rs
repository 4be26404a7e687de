//! `forge add <run> --task "<prompt>"`: a task added to a run in progress. The task is checked
//! against the run's plan here, then handed to the process running it, which checks it again,
//! journals it (`task_added`) and schedules it under the same locks as every other task (see
//! `forge_exec::manager::add`). The command returns once the run took the task.

use clap::Args;
use forge_events::TaskId;
use forge_exec::ExecError;
use forge_exec::manager::add::{ADD_TIMEOUT, TaskSpec, add_task, run_plan};
use forge_exec::store::RunStore;

use crate::config::Context;
use crate::error::{CliError, CliResult, Exit};
use crate::term::Style;

/// `forge add`.
#[derive(Debug, Args)]
pub(crate) struct AddArgs {
    /// The run in progress (an id, or a unique prefix of one).
    #[arg(value_name = "RUN")]
    pub(crate) run: String,
    /// What the agent should do.
    #[arg(long, value_name = "PROMPT")]
    pub(crate) task: String,
    /// The task's id (default: `added-1`, `added-2`, … the first the run does not have).
    #[arg(long, value_name = "ID")]
    pub(crate) id: Option<String>,
    /// The agent (default: `agent` of forge.toml, else the agent of the run's first task).
    #[arg(long, value_name = "NAME")]
    pub(crate) agent: Option<String>,
    /// Files the task may write, exclusively (a glob; repeat for more; default: any file).
    #[arg(long, value_name = "GLOB")]
    pub(crate) writes: Vec<String>,
    /// Files the task reads, shared with other readers (a glob; repeat for more).
    #[arg(long, value_name = "GLOB")]
    pub(crate) reads: Vec<String>,
    /// Files the task appends to, shared with other appenders (a glob the run already merges
    /// by a rule; repeat for more).
    #[arg(long, value_name = "GLOB")]
    pub(crate) appends: Vec<String>,
    /// Tasks of the run that must succeed before it starts (repeat, or separate with commas).
    #[arg(long, value_name = "TASK", value_delimiter = ',')]
    pub(crate) after: Vec<String>,
}

/// `forge add <run> --task "<prompt>" [--id ID] [--agent NAME] [--writes G]… [--reads G]…
/// [--appends G]… [--after TASK]…`.
pub(crate) fn add(ctx: &Context, args: &AddArgs, style: Style) -> CliResult {
    let run = crate::runs::resolve_run(ctx, Some(&args.run))?;
    let store = RunStore::new(&ctx.repo);
    let opts = crate::plan_file::plan_options(ctx)?;
    if args.task.trim().is_empty() {
        return Err(
            CliError::usage("--task needs a prompt: what the agent should do").hint(format!(
                "e.g. forge add {run} --task \"Document the new endpoint\" --writes 'docs/**'"
            )),
        );
    }
    // Defaults come from the run's plan as it stands (with the tasks added so far).
    let plan = run_plan(&store, &run, &opts).map_err(crate::run::exec_error)?;
    let id = match &args.id {
        Some(id) => id.clone(),
        // One of the first `tasks + 1` names is free.
        None => (1..=plan.tasks.len() + 1)
            .map(|n| format!("added-{n}"))
            .find(|id| TaskId::new(id.as_str()).is_ok_and(|id| plan.task(&id).is_none()))
            .unwrap_or_else(|| "added".to_owned()),
    };
    let agent = args
        .agent
        .clone()
        .or_else(|| ctx.config.agent.clone())
        .or_else(|| plan.tasks.first().map(|t| t.agent.clone()))
        .unwrap_or_else(|| "droid".to_owned());
    // Without claims the task may change any file: it then waits until no running task holds
    // a claim that overlaps, as any task would.
    let writes = if args.writes.is_empty() && args.appends.is_empty() {
        vec!["**".to_owned()]
    } else {
        args.writes.clone()
    };
    let spec = TaskSpec {
        id,
        prompt: args.task.clone(),
        agent,
        reads: args.reads.clone(),
        writes,
        appends: args.appends.clone(),
        after: args.after.clone(),
    };
    let task = add_task(&store, &run, &spec, &opts, ADD_TIMEOUT).map_err(|e| match e {
        ExecError::TaskNotAdded { .. } => CliError::failed(e.to_string())
            .hint(format!("`forge status {run}` shows the run and its tasks")),
        other => crate::run::exec_error(other),
    })?;
    let after = if spec.after.is_empty() {
        String::new()
    } else {
        format!(" after {}", spec.after.join(", "))
    };
    outln!(
        "{} Added task {} to run {run}: it starts{after} when the locks of its claims are free.",
        style.green("✓"),
        style.bold(task.as_str())
    );
    outln!("  Follow it with `forge status {run} --follow`.");
    Ok(Exit::Success)
}
