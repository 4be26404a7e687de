//! The command line: every subcommand, flag and help text (clap derive).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The exit codes, as `--help` shows them.
pub(crate) const EXIT_CODES_HELP: &str = "\
Exit codes:
  0    success
  1    tasks failed (or the run could not finish)
  2    usage, configuration or plan error
  3    unresolved merge conflicts
  4    the gate failed
  130  interrupted (Ctrl-C); the run is resumable with `forge resume <run>`

Environment:
  FORGE_REPO, FORGE_AGENT, FORGE_APPLY (ask|yes|no|branch), FORGE_BIND, FORGE_TOKEN,
  FORGE_COLOR (auto|always|never) override forge.toml; NO_COLOR disables colour.
  forge.toml is found by walking up from the current directory (or from --repo).";

/// Run several AI coding agents on one repository in parallel, safely.
///
/// Forge turns a plan into a DAG of tasks, gives each agent an isolated workspace and file locks,
/// merges what they changed with real conflict detection, gates the result on your tests and
/// applies it atomically. Start with `forge demo`.
#[derive(Debug, Parser)]
#[command(
    name = "forge",
    version,
    about,
    long_about,
    after_help = EXIT_CODES_HELP,
    propagate_version = true,
    max_term_width = 100
)]
pub(crate) struct Cli {
    /// The repository to work on (default: the git repository around the current directory).
    #[arg(long, global = true, value_name = "DIR", env = "FORGE_REPO")]
    pub(crate) repo: Option<PathBuf>,

    /// When to use colours.
    #[arg(long, global = true, value_name = "WHEN", env = "FORGE_COLOR")]
    pub(crate) color: Option<ColorChoice>,

    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// When to use colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ColorChoice {
    /// When writing to a terminal and `NO_COLOR` is not set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a plan (or one `--task` without a plan): every task in its own workspace, merged,
    /// gated, then applied.
    #[command(after_help = EXIT_CODES_HELP)]
    Run(RunArgs),
    /// Validate a plan and print its preview (tasks, locks, critical path, estimate); start
    /// nothing (same as `forge run <plan> --dry-run`).
    Check(CheckArgs),
    /// Resume an interrupted run: finished tasks are kept, the rest run again.
    #[command(after_help = EXIT_CODES_HELP)]
    Resume(ResumeArgs),
    /// Show the task table of a run (default: the latest), live with --follow; exits with the
    /// run's exit code (0 while it runs, 130 when its process is gone).
    #[command(after_help = EXIT_CODES_HELP)]
    Status(StatusArgs),
    /// Show a task attempt's transcript: what the agent said, its tool calls and their results,
    /// errors and usage (`--raw` for the output as the agent wrote it).
    Logs(LogsArgs),
    /// List the runs of this repository.
    Runs(RunsArgs),
    /// Interrupt a running run: its tasks are cancelled cleanly and it stays resumable.
    Abort(AbortArgs),
    /// Show what a run (or some of its tasks) changed, as `git diff` does.
    Diff(DiffArgs),
    /// Apply the result of a finished run to the working tree (or a branch).
    #[command(after_help = EXIT_CODES_HELP)]
    Apply(ApplyArgs),
    /// Remove what finished and dead runs left behind (workspaces, unreferenced objects).
    Gc(GcArgs),
    /// Ask a planner agent to turn a request into a plan (read-only), validate it and write it.
    Plan(PlanArgs),
    /// Split matching files into N tasks along directory boundaries and write the plan.
    Split(SplitArgs),
    /// Install Forge's slash commands, specialist droids and a commented forge.toml.
    Init(InitArgs),
    /// Run a demo: a sample project, five simulated agents, the live table, the gate, the apply.
    Demo(DemoArgs),
    /// Serve the runs of this repository over HTTP (SSE API and dashboard).
    Serve(ServeArgs),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
    /// Run the simulated agent (what plans with `agent = "sim"` start).
    #[command(hide = true)]
    SimAgent(SimAgentArgs),
    /// Print completion candidates the repository knows (used by the completion scripts).
    #[command(name = "__complete", hide = true)]
    Complete(CompleteArgs),
    /// Run one task of a finished, failed or interrupted run again with added instructions
    /// (`--prompt`), then the tasks depending on it; every other task's result is kept.
    #[command(after_help = EXIT_CODES_HELP)]
    Retry(crate::retry::RetryArgs),
    /// Serve Forge's tools to an agent host (Claude Code, droid) over MCP on stdin/stdout:
    /// plan, validate, run, status, wait, logs, diff, apply, abort (`forge init` registers it).
    Mcp(McpArgs),
    /// Add a task to a run in progress: its scheduler picks it up under the same locks.
    Add(crate::add::AddArgs),
}

/// `forge mcp`.
#[derive(Debug, Args)]
pub(crate) struct McpArgs {}

/// `forge __complete`.
#[derive(Debug, Args)]
pub(crate) struct CompleteArgs {
    /// What to list.
    #[arg(value_enum)]
    pub(crate) kind: CompleteKind,
}

/// What `forge __complete` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CompleteKind {
    /// Run ids, newest first.
    Runs,
    /// Task ids of the recent runs.
    Tasks,
    /// Agent profile names.
    Agents,
}

/// What to do with the result when the run ends.
#[derive(Debug, Clone, Default, Args)]
#[group(multiple = false)]
pub(crate) struct ApplyFlags {
    /// Apply without asking.
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,
    /// Keep the result in the run store only (apply later with `forge apply <run>`).
    #[arg(long)]
    pub(crate) no_apply: bool,
    /// Commit the result to the branch `forge/<run>` instead of touching the working tree.
    #[arg(long)]
    pub(crate) branch: bool,
}

/// How a run is shown.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct OutputFlags {
    /// Print the event stream as JSON lines on stdout (and nothing else there).
    #[arg(long)]
    pub(crate) json: bool,
    /// Serve the SSE API and dashboard while the run goes (`--serve` or `--serve=ADDR`;
    /// default address 127.0.0.1:7317).
    #[arg(
        long,
        value_name = "ADDR",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "127.0.0.1:7317"
    )]
    pub(crate) serve: Option<SocketAddr>,
}

/// `forge run`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["plan", "task"])))]
pub(crate) struct RunArgs {
    /// The plan file (TOML, or JSON when it ends in `.json`).
    #[arg(value_name = "PLAN")]
    pub(crate) plan: Option<PathBuf>,
    /// Run one task without a plan file: this prompt, as task `task`.
    #[arg(long, value_name = "PROMPT", conflicts_with = "dry_run")]
    pub(crate) task: Option<String>,
    /// The agent of the --task task (default: `agent` of forge.toml, else droid).
    #[arg(long, value_name = "NAME")]
    pub(crate) agent: Option<String>,
    /// Files the --task task may write (a glob; repeat for more; default: any file).
    #[arg(long, value_name = "GLOB")]
    pub(crate) writes: Vec<String>,
    #[command(flatten)]
    pub(crate) apply: ApplyFlags,
    /// With --task: run N candidates of the task side by side (tasks task-1 … task-N), each in
    /// its own workspace from the same start and never merged into each other, to compare
    /// (`forge diff <run> task-K`) and pick one (`forge apply <run> --tasks task-K`).
    #[arg(short = 'n', long = "candidates", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=20))]
    pub(crate) candidates: Option<u32>,
    #[command(flatten)]
    pub(crate) output: OutputFlags,
    /// How many tasks run at once (overrides the plan's `concurrency`).
    #[arg(long = "jobs", short = 'j', value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) jobs: Option<u32>,
    /// Validate the plan and print its preview; start nothing, write nothing (`forge check`).
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Where attempts run: `local`, or a Ray cluster's dashboard as `ray://host:port`
    /// (overrides `[runner]` in forge.toml).
    #[arg(long, value_name = "RUNNER")]
    pub(crate) runner: Option<String>,
    #[command(flatten)]
    pub(crate) budget: crate::budget::BudgetFlags,
}

/// `forge check`.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// The plan file (TOML, or JSON when it ends in `.json`).
    #[arg(value_name = "PLAN")]
    pub(crate) plan: PathBuf,
    /// Preview with this many tasks at once (overrides the plan's `concurrency`).
    #[arg(long = "jobs", short = 'j', value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) jobs: Option<u32>,
    /// Print the preview as one JSON object.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `forge resume`.
#[derive(Debug, Args)]
pub(crate) struct ResumeArgs {
    /// The run to resume.
    #[arg(value_name = "RUN")]
    pub(crate) run: String,
    #[command(flatten)]
    pub(crate) apply: ApplyFlags,
    #[command(flatten)]
    pub(crate) output: OutputFlags,
}

/// `forge status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The run (default: the latest).
    #[arg(value_name = "RUN")]
    pub(crate) run: Option<String>,
    /// Keep watching until the run finishes.
    #[arg(long, short = 'f')]
    pub(crate) follow: bool,
    /// Print the run's folded state as JSON.
    #[arg(long, conflicts_with = "follow")]
    pub(crate) json: bool,
}

/// `forge logs`.
#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    /// The task.
    #[arg(value_name = "TASK")]
    pub(crate) task: String,
    /// The run (default: the latest).
    #[arg(value_name = "RUN")]
    pub(crate) run: Option<String>,
    /// Keep printing as the attempt writes, until it ends.
    #[arg(long, short = 'f')]
    pub(crate) follow: bool,
    /// The attempt (default: the latest).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) attempt: Option<u32>,
    /// Print the agent's output as it wrote it (JSON lines) instead of the transcript.
    #[arg(long)]
    pub(crate) raw: bool,
    /// Print the transcript as one JSON object (entries, usage, result).
    #[arg(long, conflicts_with_all = ["raw", "follow"])]
    pub(crate) json: bool,
}

/// `forge runs`.
#[derive(Debug, Args)]
pub(crate) struct RunsArgs {
    /// One JSON object per run, one per line.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `forge abort`.
#[derive(Debug, Args)]
pub(crate) struct AbortArgs {
    /// The run to interrupt (default: the latest).
    #[arg(value_name = "RUN")]
    pub(crate) run: Option<String>,
    /// Return once the signal is sent instead of waiting for the run to stop.
    #[arg(long)]
    pub(crate) no_wait: bool,
}

/// `forge apply`.
#[derive(Debug, Args)]
pub(crate) struct ApplyArgs {
    /// The run whose result to apply (default: the latest).
    #[arg(value_name = "RUN")]
    pub(crate) run: Option<String>,
    /// Commit to the branch `forge/<run>` instead of the working tree.
    #[arg(long)]
    pub(crate) branch: bool,
    /// Apply again a run that was applied to the working tree before (after you discarded it).
    #[arg(long)]
    pub(crate) again: bool,
    /// Apply only the result of these tasks (comma-separated) and of the tasks they depend on,
    /// also when other tasks failed.
    #[arg(long, value_name = "TASK,…", value_delimiter = ',', num_args = 1..)]
    pub(crate) tasks: Vec<String>,
    /// Where your own edits clash with the run's: `keep` (your file, the default), `markers`
    /// (diff3 conflict markers to resolve), `ours` or `theirs` (clashing hunks take your lines
    /// or the run's, like `git merge -X`), `agent` (the task re-runs on top of your version and
    /// resolves it); `<how>=<path>` for one path (repeatable). Conflicts between tasks that no
    /// strategy settled take the same choices: `ours` is the side integrated first, `theirs`
    /// the task whose change was set aside.
    #[arg(long, value_name = "HOW[=PATH]", conflicts_with = "branch")]
    pub(crate) conflicts: Vec<String>,
    /// With --branch: push `forge/<run>` to REMOTE (default: origin).
    #[arg(
        long,
        value_name = "REMOTE",
        num_args = 0..=1,
        default_missing_value = "origin",
        requires = "branch"
    )]
    pub(crate) push: Option<String>,
    /// With --push: open a pull request with the `gh` tool, the run's summary as its body.
    #[arg(long, requires = "push")]
    pub(crate) pr: bool,
}

/// `forge diff`.
#[derive(Debug, Args)]
pub(crate) struct DiffArgs {
    /// `[RUN] [TASK…]`: the run (default: the latest) and the tasks whose own changes to show
    /// (default: the whole run's integrated change against its base).
    #[arg(value_name = "RUN|TASK")]
    pub(crate) words: Vec<String>,
    /// Only the changed paths, with counts of added and removed lines.
    #[arg(long, conflicts_with_all = ["name_only", "json"])]
    pub(crate) stat: bool,
    /// Only the names of the changed paths.
    #[arg(long, conflicts_with = "json")]
    pub(crate) name_only: bool,
    /// The files and their hunks as one JSON object.
    #[arg(long)]
    pub(crate) json: bool,
    /// Only these paths (repo-relative files or directories), after `--`.
    #[arg(last = true, value_name = "PATH")]
    pub(crate) paths: Vec<String>,
}

/// `forge gc`.
#[derive(Debug, Args)]
pub(crate) struct GcArgs {
    /// Say what would be removed, remove nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

/// `forge plan`.
#[derive(Debug, Args)]
pub(crate) struct PlanArgs {
    /// What you want done, in words.
    #[arg(value_name = "REQUEST")]
    pub(crate) request: String,
    /// The planner agent profile [default: droid, or the `agent` of forge.toml].
    #[arg(long, value_name = "AGENT")]
    pub(crate) agent: Option<String>,
    /// The agent the plan's tasks use [default: the planner's agent].
    #[arg(long, value_name = "AGENT")]
    pub(crate) task_agent: Option<String>,
    /// Where to write the plan.
    #[arg(long, short = 'o', value_name = "FILE", default_value = "plan.toml")]
    pub(crate) output: PathBuf,
    /// Overwrite the output file if it exists.
    #[arg(long)]
    pub(crate) force: bool,
}

/// How `forge split` balances workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub(crate) enum Balance {
    /// By number of files.
    #[default]
    Files,
    /// By total size.
    Bytes,
}

impl From<Balance> for forge_exec::plan::split::Balance {
    fn from(b: Balance) -> Self {
        match b {
            Balance::Files => Self::Files,
            Balance::Bytes => Self::Bytes,
        }
    }
}

/// `forge split`.
#[derive(Debug, Args)]
pub(crate) struct SplitArgs {
    /// Which files (a gitignore-style glob, relative to the repository root; repeatable).
    #[arg(long, value_name = "GLOB", required = true)]
    pub(crate) files: Vec<String>,
    /// How many tasks.
    #[arg(long, short = 'n', value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(crate) workers: u32,
    /// The prompt of each task; `{files}` becomes its file list, `{dir}` its directories.
    #[arg(long, value_name = "TEMPLATE")]
    pub(crate) prompt: String,
    /// Balance by file count or by bytes.
    #[arg(long, value_enum, default_value_t)]
    pub(crate) by: Balance,
    /// The agent of every task [default: droid, or the `agent` of forge.toml].
    #[arg(long, value_name = "AGENT")]
    pub(crate) agent: Option<String>,
    /// The plan's name [default: split].
    #[arg(long, value_name = "NAME")]
    pub(crate) name: Option<String>,
    /// Where to write the plan.
    #[arg(long, short = 'o', value_name = "FILE", default_value = "plan.toml")]
    pub(crate) output: PathBuf,
    /// Overwrite the output file if it exists.
    #[arg(long)]
    pub(crate) force: bool,
}

/// `forge init`.
#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// Install for Factory's droid (`.factory/commands`, `.factory/droids`).
    #[arg(long)]
    pub(crate) droid: bool,
    /// Install for Claude Code (`.claude/commands`).
    #[arg(long)]
    pub(crate) claude: bool,
    /// Overwrite files you changed since `forge init` wrote them.
    #[arg(long)]
    pub(crate) force: bool,
}

/// `forge demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Where to create the sample project (default: a new temporary directory).
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
    /// Keep the sample project afterwards (always kept with --dir).
    #[arg(long)]
    pub(crate) keep: bool,
    /// Print the event stream as JSON lines instead of the table.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `forge serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The address to listen on [default: 127.0.0.1:7317, or `serve.bind` of forge.toml].
    #[arg(long, value_name = "ADDR")]
    pub(crate) bind: Option<SocketAddr>,
    /// Require `Authorization: Bearer <T>` (needed for a non-loopback address).
    #[arg(long, value_name = "T")]
    pub(crate) token: Option<String>,
}

/// `forge completions`.
#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub(crate) shell: clap_complete::Shell,
}

/// `forge sim-agent`: its arguments go to the simulated agent untouched.
#[derive(Debug, Args)]
pub(crate) struct SimAgentArgs {
    /// The simulated agent's arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub(crate) args: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn apply_flags_exclude_each_other() {
        let err = Cli::try_parse_from(["forge", "run", "p.toml", "--yes", "--branch"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn the_documented_default_address_is_the_servers() {
        assert_eq!(
            forge_events::http::DEFAULT_ADDR,
            "127.0.0.1:7317".parse().unwrap()
        );
    }

    #[test]
    fn serve_flag_takes_an_optional_address() {
        let cli = Cli::try_parse_from(["forge", "run", "p.toml", "--serve"]).unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.output.serve, Some("127.0.0.1:7317".parse().unwrap()));
        let cli = Cli::try_parse_from(["forge", "run", "--serve=127.0.0.1:9", "p.toml"]).unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.output.serve, Some("127.0.0.1:9".parse().unwrap()));
    }
}
