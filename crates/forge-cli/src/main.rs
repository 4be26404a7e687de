//! `forge`: run several AI coding agents on one repository in parallel, safely.
//!
//! This binary is thin glue: it parses arguments, renders what the engine reports, and asks the
//! user before touching their files. All logic lives in the library crates (`forge-exec` and
//! below). What it adds is how a run is shown (`render`: the live table, one line per state
//! change, JSON lines), how errors read (`error`: one paragraph, what and what to do, with the
//! documented exit codes), where the repository and settings are (`config`), and the commands
//! that need no engine: `split`, `init`, `demo`'s sample project, `completions`.

// The command line's job is to print.
#![allow(clippy::print_stdout, clippy::print_stderr)]

/// `println!` that ignores a closed stdout (`forge runs | head` must not panic; a run goes on
/// when its reader goes away).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `print!` that ignores a closed stdout, flushed (prompts end without a newline).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut stdout = std::io::stdout();
        let _ = write!(stdout, $($arg)*);
        let _ = stdout.flush();
    }};
}

/// `eprintln!` that ignores a closed stderr.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `eprint!` that ignores a closed stderr.
macro_rules! err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}

mod add;
mod adhoc;
mod agents;
mod budget;
mod candidates;
mod cli;
mod cluster;
mod complete;
mod config;
mod demo;
mod diff;
mod error;
mod init;
mod logs;
mod mcp;
mod notify;
mod partial;
mod plan_file;
mod planner;
mod preview;
mod render;
mod resolve;
mod retry;
mod review;
mod run;
mod runs;
mod serve;
mod split;
mod term;
mod web;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};
use config::Context;
use error::{CliError, CliResult, Exit};
use term::Style;

fn main() -> ExitCode {
    // A bug is reported as one paragraph, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".to_owned());
        errln!(
            "error: forge hit an internal error{at}: {what}\nhint: this is a bug; please report it with the command you ran. Runs are resumable with `forge resume <run>`."
        );
    }));
    let args: Vec<OsString> = std::env::args_os().collect();
    // The simulated agent takes its arguments raw, before clap sees them: it is what plans with
    // `agent = "sim"` start (`forge sim-agent --format droid -f prompt.md`).
    if args.get(1).is_some_and(|a| a == "sim-agent") {
        return sim_agent(&args[2..]);
    }
    // What a cluster job runs on its node (hidden: users never type it).
    if args.get(1).is_some_and(|a| a == "attempt") {
        return cluster::attempt_main(&args[2..]);
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(err) => {
            // Help and version go to stdout with exit 0; usage errors to stderr with exit 2.
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() {
                Exit::Usage.code()
            } else {
                0
            });
        }
    };
    if let Command::SimAgent(sim) = &cli.command {
        // Reached only when options came before `sim-agent` (`forge --color never sim-agent …`).
        let args: Vec<OsString> = sim.args.iter().map(OsString::from).collect();
        return sim_agent(&args);
    }
    let err_style = Style::for_stream(
        cli.color,
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
    );
    match dispatch(&cli) {
        Ok(exit) => exit.into(),
        Err(err) => {
            err!("{}", err.render(err_style));
            err.exit.into()
        }
    }
}

/// Runs the simulated agent with its raw arguments.
fn sim_agent(args: &[OsString]) -> ExitCode {
    let code = forge_agents::sim::main(
        args.iter().cloned(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn dispatch(cli: &Cli) -> CliResult {
    let out_style = Style::for_stream(cli.color, term::stdout_is_tty());
    match &cli.command {
        Command::Completions(args) => return Ok(complete::script(args.shell)),
        Command::Complete(args) => {
            let ctx = Context::discover(cli.repo.as_deref()).ok();
            return Ok(complete::candidates(ctx.as_ref(), args.kind));
        }
        Command::Demo(args) => {
            return runtime()?.block_on(demo::run(args, out_style));
        }
        _ => {}
    }
    let ctx = Context::discover(cli.repo.as_deref())?;
    // An apply killed mid-way is finished or undone first, whatever the command; a failure
    // here is reported by `forge apply` (and `forge resume`), which recover before they act.
    let _ = forge_exec::recover_abandoned_applies(&ctx.repo);
    match &cli.command {
        Command::Run(args) => match (&args.task, &args.plan) {
            (Some(prompt), _) => runtime()?.block_on(adhoc::run(
                &cluster::with_runner(&ctx, args.runner.as_deref())?,
                args,
                prompt,
                out_style,
            )),
            (None, Some(_))
                if args.agent.is_some() || !args.writes.is_empty() || args.candidates.is_some() =>
            {
                Err(CliError::usage(
                    "--agent, --writes and -n describe the task of --task; a plan names its own",
                )
                .hint("set `agent`, `writes` and `candidates` in the plan, or run one task with --task \"<prompt>\""))
            }
            (None, Some(plan)) if args.dry_run => {
                preview::check(&ctx, plan, args.jobs, args.output.json, out_style)
            }
            (None, Some(plan)) => runtime()?.block_on(run::run(
                &cluster::with_runner(&ctx, args.runner.as_deref())?,
                plan,
                args.jobs,
                &args.budget,
                &args.apply,
                &args.output,
                out_style,
            )),
            // clap requires one of them; said again rather than assumed.
            (None, None) => Err(CliError::usage(
                "forge run needs a plan file or --task \"<prompt>\"",
            )),
        },
        Command::Check(args) => preview::check(&ctx, &args.plan, args.jobs, args.json, out_style),
        Command::Resume(args) => runtime()?.block_on(run::resume(
            &ctx,
            &args.run,
            &args.apply,
            &args.output,
            out_style,
        )),
        Command::Status(args) => runtime()?.block_on(runs::status(&ctx, args, out_style)),
        Command::Logs(args) => runtime()?.block_on(runs::logs(&ctx, args, out_style)),
        Command::Runs(args) => runs::runs(&ctx, args, out_style),
        Command::Abort(args) => runtime()?.block_on(runs::abort(&ctx, args, out_style)),
        Command::Diff(args) => diff::run(&ctx, args, out_style),
        Command::Apply(args) => runtime()?.block_on(run::apply(&ctx, args, out_style)),
        Command::Gc(args) => runs::gc(&ctx, args, out_style),
        Command::Plan(args) => runtime()?.block_on(planner::run(&ctx, args, out_style)),
        Command::Split(args) => split::run(&ctx, args, out_style),
        Command::Init(args) => init::run(&ctx, args, out_style),
        Command::Serve(args) => runtime()?.block_on(serve::run(&ctx, args, out_style)),
        Command::Retry(args) => runtime()?.block_on(retry::retry(&ctx, args, out_style)),
        Command::Mcp(_) => runtime()?.block_on(mcp::serve(&ctx)),
        Command::Add(args) => add::add(&ctx, args, out_style),
        Command::Completions(_)
        | Command::Complete(_)
        | Command::SimAgent(_)
        | Command::Demo(_) => Ok(Exit::Success),
    }
}

/// The async runtime for commands that run or watch things.
fn runtime() -> CliResult<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failed(format!("cannot start the async runtime: {e}")))
}
