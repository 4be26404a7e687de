//! `forge run`, `forge resume` and `forge apply`: drive the [`ExecutionManager`], show the run,
//! handle Ctrl-C, summarize, and ask before touching the working tree.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use forge_agents::Profiles;
use forge_events::{EventKind, RunId, TaskStatus};
use forge_exec::plan::Plan;
use forge_exec::{
    ApplyMode, ApplySummary, CancelHandle, ExecError, ExecutionManager, RunReport, apply_run,
};

use crate::cli::{ApplyArgs, ApplyFlags, OutputFlags};
use crate::config::{ApplyDefault, Context};
use crate::error::{CliError, CliResult, Exit};
use crate::render::{FRAME, Live, Mode, format, summary};
use crate::term::{self, Style};

/// What to do with the result once the run passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Ask on the terminal.
    Ask,
    /// Apply to the working tree.
    Apply,
    /// Commit to `forge/<run>`.
    Branch,
    /// Keep it in the run store.
    Keep,
}

impl Decision {
    /// Flags first, then `forge.toml` / `FORGE_APPLY`; asking needs a terminal (and no JSON).
    pub(crate) fn from_flags(flags: &ApplyFlags, config: ApplyDefault, json: bool) -> Self {
        let wanted = if flags.yes {
            Self::Apply
        } else if flags.branch {
            Self::Branch
        } else if flags.no_apply {
            Self::Keep
        } else {
            match config {
                ApplyDefault::Ask => Self::Ask,
                ApplyDefault::Yes => Self::Apply,
                ApplyDefault::No => Self::Keep,
                ApplyDefault::Branch => Self::Branch,
            }
        };
        if wanted == Self::Ask && (json || !term::interactive()) {
            Self::Keep
        } else {
            wanted
        }
    }

    fn mode(self) -> ApplyMode {
        match self {
            Self::Apply => ApplyMode::WorkingTree,
            Self::Branch => ApplyMode::Branch,
            Self::Ask | Self::Keep => ApplyMode::None,
        }
    }
}

/// An engine error in the CLI's words, with its exit code.
pub(crate) fn exec_error(err: ExecError) -> CliError {
    match err {
        ExecError::Plan(plan) => CliError::from(plan),
        ExecError::Agent(msg) => CliError::usage(msg)
            .hint("install the agent, choose another with `agent = \"…\"` in the plan, or try `agent = \"sim\"`"),
        ExecError::RunNotFound { .. } | ExecError::Config(_) | ExecError::TaskNotInRun { .. } => {
            CliError::usage(err.to_string())
        }
        ExecError::RunBusy { .. } => CliError::failed(err.to_string()),
        ExecError::NotApplicable { ref run, .. } => {
            let hint = format!("`forge status {run}` shows what went wrong");
            CliError::failed(err.to_string()).hint(hint)
        }
        other => CliError::failed(other.to_string()),
    }
}

/// `forge run <plan>`.
pub(crate) async fn run(
    ctx: &Context,
    plan_path: &Path,
    jobs: Option<u32>,
    budget: &crate::budget::BudgetFlags,
    flags: &ApplyFlags,
    output: &OutputFlags,
    style: Style,
) -> CliResult {
    let mut plan = crate::preview::load_plan(ctx, plan_path, jobs)?;
    crate::budget::apply_flags(&mut plan, budget);
    let profiles = crate::agents::profiles(ctx)?;
    execute(
        ctx,
        Start::New(Box::new(plan)),
        profiles,
        flags,
        output,
        style,
    )
    .await
}

/// `forge resume <run>`.
pub(crate) async fn resume(
    ctx: &Context,
    run: &str,
    flags: &ApplyFlags,
    output: &OutputFlags,
    style: Style,
) -> CliResult {
    let run = crate::runs::resolve_run(ctx, Some(run))?;
    let state = forge_events::RunState::from_journal(
        forge_exec::store::RunStore::new(&ctx.repo).journal(&run),
    )?;
    if state.phase.is_finished() && state.phase != forge_events::RunPhase::Cancelled {
        return Err(CliError::usage(
            format!(
                "run {run} already finished ({:?}); there is nothing to resume",
                state.phase
            )
            .to_lowercase(),
        )
        .hint(format!(
            "`forge status {run}` shows it; `forge apply {run}` applies a run that passed"
        )));
    }
    let profiles = crate::agents::profiles(ctx)?;
    execute(ctx, Start::Resume(run), profiles, flags, output, style).await
}

/// A new run or a resumed one.
pub(crate) enum Start {
    /// Run this plan.
    New(Box<Plan>),
    /// Resume this run.
    Resume(RunId),
    /// Retry one task of this run (`forge retry`).
    Retry(RunId, forge_exec::RetryRequest),
}

/// Runs (or resumes) with the live view, then summarizes and applies as decided.
#[allow(clippy::too_many_lines)] // start, view, summary, apply: one flow
pub(crate) async fn execute(
    ctx: &Context,
    start: Start,
    profiles: Profiles,
    flags: &ApplyFlags,
    output: &OutputFlags,
    style: Style,
) -> CliResult {
    let decision = Decision::from_flags(flags, ctx.config.apply, output.json);
    let builder = crate::budget::with_prices(ExecutionManager::builder(), ctx)?
        .repo(&ctx.repo)
        .profiles(profiles)
        .runner(ctx.config.runner.clone())
        .apply(decision.mode());
    let resuming = matches!(start, Start::Resume(_) | Start::Retry(..));
    let builder = match start {
        Start::New(plan) => builder.plan(*plan),
        Start::Resume(run) => builder.resume(run),
        Start::Retry(run, request) => builder.retry(run, request),
    };
    let manager = builder.build().map_err(exec_error)?;
    let run = manager.run_id().clone();
    let manager_name = manager.plan().name.clone();
    let info = crate::runs::table_info(manager.plan());
    let bus = manager.bus();
    let mut sub = bus.subscribe();
    let mode = Mode::pick(output.json);
    let mut live = Live::new(mode, info, style);
    if resuming {
        // What the run did before: the table and the summary cover the whole run.
        let history = forge_events::read_journal(manager.store().journal(&run))?;
        live.seed(&history);
    }

    let server = match output.serve {
        Some(addr) => {
            let (addr, opts) = crate::serve::options(ctx, Some(addr), None);
            let server = crate::serve::start(ctx, addr, opts.attach(bus.clone())).await?;
            live.note(&format!(
                "Dashboard: http://{}/  (SSE: /api/runs/{run}/events)",
                server.local_addr()
            ));
            Some(server)
        }
        None => None,
    };

    let cancel = CancelHandle::new();
    let interrupts = Arc::new(AtomicU8::new(0));
    let signals = spawn_interrupts(cancel.clone(), interrupts.clone());
    let mut task = tokio::spawn(manager.run(cancel));
    let mut ticker = tokio::time::interval(FRAME);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut seen_interrupts = 0;
    let mut result = None;
    let mut bus_open = true;
    while result.is_none() || bus_open {
        tokio::select! {
            event = sub.recv(), if bus_open => match event {
                Ok(Some(first)) => {
                    let mut batch = vec![first];
                    while let Ok(Some(e)) = sub.try_recv() {
                        batch.push(e);
                    }
                    show(&mut live, mode, &manager_name, &batch, style);
                }
                Ok(None) | Err(_) => bus_open = false,
            },
            joined = &mut task, if result.is_none() => {
                // The run closes its bus before it returns; a run that panicked did not.
                let crashed = joined.is_err();
                result = Some(joined);
                if bus.is_closed() || crashed {
                    while let Ok(Some(e)) = sub.try_recv() {
                        show(&mut live, mode, &manager_name, &[e], style);
                    }
                    bus_open = false;
                }
            },
            _ = ticker.tick() => {
                let n = interrupts.load(Ordering::SeqCst);
                if n != seen_interrupts {
                    seen_interrupts = n;
                    live.note(&interrupt_message(n, &run, style));
                }
                live.tick();
            }
        }
    }
    signals.abort();
    // An interrupt that came after the last tick is still worth saying.
    let n = interrupts.load(Ordering::SeqCst);
    if n != seen_interrupts {
        live.note(&interrupt_message(n, &run, style));
    }
    live.finish();
    let report = match result {
        Some(Ok(Ok(report))) => report,
        Some(Ok(Err(e))) => return Err(exec_error(e)),
        Some(Err(join)) => {
            return Err(
                CliError::failed(format!("the run {run} stopped unexpectedly: {join}"))
                    .hint(format!("resume it with `forge resume {run}`")),
            );
        }
        None => return Err(CliError::failed("the run did not report its end")),
    };
    let exit = conclude(ctx, &report, &live, mode, decision, style).await;
    if let Some(server) = server {
        serve_until_stopped(server, mode, style).await;
    }
    exit
}

/// Keeps the dashboard of a finished run up until Ctrl-C (or SIGTERM): an open page shows the
/// final state instead of reconnecting to nothing.
async fn serve_until_stopped(server: forge_events::http::Server, mode: Mode, style: Style) {
    let note = format!(
        "The run is over; the dashboard stays up at http://{}/ until you press Ctrl-C.",
        server.local_addr()
    );
    // Below the summary: the table is not drawn again.
    if mode == Mode::Table {
        outln!("{}", style.dim(&note));
    } else {
        errln!("{note}");
    }
    wait_for_stop().await;
    server.shutdown();
}

/// Returns on Ctrl-C or SIGTERM.
async fn wait_for_stop() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Shows events, and the plan preview where it comes (after the run's first line): above the
/// table, or in the line output (`--json` has the event itself).
fn show(
    live: &mut Live,
    mode: Mode,
    name: &str,
    events: &[Arc<forge_events::Event>],
    style: Style,
) {
    for part in events.split_inclusive(|e| matches!(e.kind, EventKind::PlanPreview { .. })) {
        live.events(part.iter().map(|e| &**e));
        if let Some(EventKind::PlanPreview { preview }) = part.last().map(|e| &e.kind) {
            let text =
                crate::preview::render(name, preview, Some(crate::preview::RUN_LIMIT), style);
            match mode {
                Mode::Table => live.note(&text),
                Mode::Lines => outln!("{text}"),
                Mode::Json => {}
            }
        }
    }
}

/// Listens for Ctrl-C (and SIGTERM): the first asks the run to stop gracefully, the second kills.
fn spawn_interrupts(cancel: CancelHandle, count: Arc<AtomicU8>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        loop {
            let got = match term.as_mut() {
                Some(t) => tokio::select! {
                    r = tokio::signal::ctrl_c() => r.is_ok(),
                    r = t.recv() => r.is_some(),
                },
                None => tokio::signal::ctrl_c().await.is_ok(),
            };
            if !got {
                return;
            }
            count.fetch_add(1, Ordering::SeqCst);
            cancel.cancel();
        }
    })
}

fn interrupt_message(n: u8, run: &RunId, style: Style) -> String {
    if n == 1 {
        style.yellow(&format!(
            "Interrupted: no new tasks start; running agents are asked to stop (what they did so far is discarded, finished tasks are kept) — resume with `forge resume {run}`. Press Ctrl-C again to kill them now."
        ))
    } else {
        style.red("Killing the running agents now.")
    }
}

/// Prints the summary and the way forward, applies if asked, and picks the exit code.
#[allow(clippy::too_many_lines)] // the summary, then each way a run can end
async fn conclude(
    ctx: &Context,
    report: &RunReport,
    live: &Live,
    mode: Mode,
    decision: Decision,
    style: Style,
) -> CliResult {
    let run = &report.run;
    crate::notify::notify(
        ctx,
        run,
        crate::notify::Event::Finished(report.status.as_str()),
    );
    let exit = Exit::from_code(report.exit_code());
    // Every output mode exits alike: an apply that clashed with the user's edits is exit 3.
    let exit = report
        .applied
        .as_ref()
        .map_or(exit, |applied| applied_exit(applied, exit));
    if mode == Mode::Json {
        if let Some(hint) = crate::candidates::hint(ctx, run) {
            errln!("{hint}");
        } else if report.applicable() && decision == Decision::Keep {
            errln!(
                "Result kept in the run store: apply it with `forge apply {run}` (or `--branch`)."
            );
        } else if exit == Exit::Interrupted {
            errln!("Interrupted: resume with `forge resume {run}`.");
        }
        return Ok(exit);
    }
    let state = live.state();
    let mut items = summary::items(state);
    // The engine knows the integrated delta exactly; the fold only knows what tasks reported.
    if let Some(last) = items.last_mut()
        && last.mark == summary::Mark::Ok
    {
        last.text = format!(
            "{}, {} changed",
            format::plural(report.tasks.len() as u64, "task"),
            format::plural(report.files_changed.len() as u64, "file")
        );
        if let Some(usage) = usage_total(state) {
            last.text.push_str(", ");
            last.text.push_str(&usage);
        }
    }
    let width = term::width().unwrap_or(100);
    outln!("\n{}", summary::lines(&items, style, width));
    print_failures(report, style);

    if exit == Exit::Interrupted {
        // What was running when the run stopped: its partial work is discarded.
        let stopped: Vec<&str> = report
            .tasks
            .iter()
            .filter(|t| {
                t.outcome
                    .as_ref()
                    .is_some_and(|o| o.status == forge_events::TaskStatus::Cancelled)
            })
            .map(|t| t.id.as_str())
            .collect();
        let discarded = if stopped.is_empty() {
            "Finished tasks are kept".to_owned()
        } else {
            format!(
                "Finished tasks are kept; the unfinished work of {} was discarded, and {} again from the start (an interrupted attempt does not count against retries)",
                stopped
                    .iter()
                    .map(|t| format!("`{t}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if stopped.len() == 1 {
                    "it runs"
                } else {
                    "they run"
                }
            )
        };
        outln!(
            "\n{} Run {run} was interrupted. {discarded}: `forge resume {run}` goes on where it stopped.",
            style.yellow("⊘")
        );
        return Ok(exit);
    }
    if let Some(done) =
        crate::candidates::conclude(ctx, run, decision == Decision::Ask, style, exit).await
    {
        return done;
    }
    if !report.applicable() {
        if matches!(decision, Decision::Ask)
            && let Some(done) = crate::partial::offer_succeeded(ctx, report, style, exit).await
        {
            return done;
        }
        outln!(
            "\nNothing was applied. `forge status {run}` shows the run; `forge logs <task> {run}` a task's output."
        );
        return Ok(exit);
    }
    if let Some(applied) = &report.applied {
        print_applied(applied, run, style);
        return Ok(exit);
    }
    match decision {
        Decision::Keep => {
            outln!(
                "\nThe result is kept in .forge/runs/{run}. Apply it with `forge apply {run}`, or `forge apply {run} --branch` for a branch."
            );
            Ok(exit)
        }
        Decision::Ask => ask_and_apply(ctx, run, style, exit).await,
        // The engine applied it already (report.applied); reaching here means it had nothing to do.
        Decision::Apply | Decision::Branch => Ok(exit),
    }
}

/// `12.3k tokens, $0.42` over all tasks, if any usage was reported.
fn usage_total(state: &forge_events::RunState) -> Option<String> {
    let (mut tokens, mut cost, mut any_cost) = (0u64, 0.0, false);
    for t in &state.tasks {
        tokens = tokens.saturating_add(t.usage.tokens_in.saturating_add(t.usage.tokens_out));
        if let Some(c) = t.usage.cost_usd {
            cost += c;
            any_cost = true;
        }
    }
    match (tokens, any_cost) {
        (0, false) => None,
        (t, false) => Some(format!("{} tokens", format::tokens(t))),
        (t, true) => Some(format!(
            "{} tokens, {}",
            format::tokens(t),
            format::cost(cost)
        )),
    }
}

/// Why tasks failed and what the gate printed, when they did.
fn print_failures(report: &RunReport, style: Style) {
    let failed: Vec<_> = report
        .tasks
        .iter()
        .filter(|t| !matches!(t.status, TaskStatus::Succeeded | TaskStatus::Cancelled))
        .collect();
    for t in &failed {
        let why = t.reason.as_deref().unwrap_or("failed");
        // A task that never ran (skipped) has no output to look at.
        if t.status == TaskStatus::Skipped || t.attempts == 0 {
            outln!("  {} {}: {why}", style.dim("⊘"), t.id);
        } else {
            outln!(
                "  {} {}: {why}  (see `forge logs {} {}`)",
                style.red("✗"),
                t.id,
                t.id,
                report.run
            );
        }
    }
    for c in &report.conflicts {
        outln!(
            "  {} {}: {} ({})",
            style.red("✗"),
            c.path.as_str(),
            c.kind,
            c.tasks
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" vs ")
        );
    }
    if let Some(gate) = report.gate.as_ref().filter(|g| !g.passed()) {
        for c in gate.commands.iter().filter(|c| !c.passed()) {
            outln!("  {} gate `{}` printed:", style.red("✗"), c.command);
            let lines: Vec<&str> = c.output.lines().collect();
            for l in &lines[lines.len().saturating_sub(20)..] {
                outln!("    {}", style.dim(l));
            }
        }
    }
}

pub(crate) fn print_applied(applied: &ApplySummary, run: &RunId, style: Style) {
    match (&applied.worktree, &applied.branch) {
        (Some(w), _) => {
            let mut what = format!("{} written", format::plural(w.written.len() as u64, "file"));
            if !w.deleted.is_empty() {
                let _ = write!(what, ", {} deleted", w.deleted.len());
            }
            if !w.merged.is_empty() {
                let _ = write!(
                    what,
                    ", {} merged with your own edits",
                    format::plural(w.merged.len() as u64, "file")
                );
            }
            if applied.recovered {
                what.push_str(", finishing the apply that was interrupted");
            }
            // One verdict: complete (✓), or partial (✗ with what was left and why).
            if w.conflicts.is_empty() && w.refused.is_empty() {
                outln!(
                    "\n{} Applied to the working tree: {what}.",
                    style.green("✓")
                );
            } else {
                let left = w.conflicts.len() + w.refused.len();
                outln!(
                    "\n{} Applied only in part: {what}; {} not applied.",
                    style.red("✗"),
                    format::plural(left as u64, "path")
                );
            }
            crate::partial::print_settled(applied, style);
            let between_tasks =
                |c: &&forge_merge::Conflict| applied.settled.iter().any(|s| s.path == c.path);
            for c in w
                .conflicts
                .iter()
                .filter(|c| w.marked.contains(&c.path) && !between_tasks(c))
            {
                outln!(
                    "  {} {}: conflict markers written (yours, the base's, the run's lines); resolve them",
                    style.red("✗"),
                    c.path.as_str()
                );
            }
            for c in w.conflicts.iter().filter(|c| !w.marked.contains(&c.path)) {
                outln!(
                    "  {} {}: your edits clash with the run's; left as you have them",
                    style.red("✗"),
                    c.path.as_str()
                );
            }
            for r in &w.refused {
                outln!("  {} {}: {}", style.red("✗"), r.path.as_str(), r.reason);
            }
            if !w.conflicts.is_empty() {
                outln!(
                    "  `forge diff {run} -- <path>` shows the run's side; `forge apply {run} --conflicts markers` (or `ours`, `theirs`, `<how>=<path>`) settles them."
                );
            }
        }
        (None, Some(b)) => {
            outln!(
                "\n{} Committed to branch {} ({}, head {}). Your working tree is untouched; `git diff HEAD..{}` shows it.",
                style.green("✓"),
                b.branch,
                format::plural(b.commits.len() as u64, "commit"),
                b.head.get(..12).unwrap_or(&b.head),
                b.branch
            );
        }
        (None, None) => outln!("\nNothing to apply for run {run}."),
    }
}

/// Exit 3 when the apply left paths in conflict with the user's own edits (or refused some).
pub(crate) fn applied_exit(applied: &ApplySummary, exit: Exit) -> Exit {
    match &applied.worktree {
        Some(w) if !w.is_complete() => Exit::Conflicts,
        _ => exit,
    }
}

/// `Apply? 1) Yes  2) Review changes  3) Keep for later`.
async fn ask_and_apply(ctx: &Context, run: &RunId, style: Style, exit: Exit) -> CliResult {
    crate::notify::notify(ctx, run, crate::notify::Event::Waiting);
    loop {
        let answer = prompt(&format!(
            "\n{} 1) Yes  2) Review changes  3) Keep for later  [1-3]: ",
            style.bold("Apply?")
        ))
        .await;
        match answer.as_deref().map(|a| a.trim().to_ascii_lowercase()) {
            Some(a) if matches!(a.as_str(), "1" | "y" | "yes") => {
                let summary = apply_run(&ctx.repo, run, ApplyMode::WorkingTree)
                    .await
                    .map_err(exec_error)?;
                print_applied(&summary, run, style);
                return Ok(applied_exit(&summary, exit));
            }
            Some(a) if matches!(a.as_str(), "2" | "r" | "review") => {
                let tasks = crate::review::integrated_tasks(ctx, run);
                crate::review::review(ctx, run, &tasks, style).await?;
            }
            Some(a) if matches!(a.as_str(), "3" | "k" | "keep" | "n" | "no" | "q") => {
                outln!(
                    "Not applied. The result stays in .forge/runs/{run}: `forge apply {run}` applies it later."
                );
                return Ok(exit);
            }
            None => {
                outln!(
                    "\nNot applied. The result stays in .forge/runs/{run}: `forge apply {run}` applies it later."
                );
                return Ok(exit);
            }
            Some(_) => outln!("Please answer 1, 2 or 3."),
        }
    }
}

/// Reads one line from the terminal; `None` on end of input or Ctrl-C.
pub(crate) async fn prompt(question: &str) -> Option<String> {
    out!("{question}");
    let _ = std::io::stdout().flush();
    let read = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        match std::io::stdin().read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line),
        }
    });
    tokio::select! {
        line = read => line.ok().flatten(),
        _ = tokio::signal::ctrl_c() => None,
    }
}

/// Shows `text` in `$PAGER`, else `less -R`, else prints it.
pub(crate) fn page(text: &str) {
    if text.trim().is_empty() {
        outln!("(the run changes nothing)");
        return;
    }
    let pager = std::env::var("PAGER").ok().filter(|p| !p.trim().is_empty());
    let mut child = match &pager {
        Some(p) => std::process::Command::new("sh")
            .args(["-c", p])
            .stdin(std::process::Stdio::piped())
            .spawn(),
        None => std::process::Command::new("less")
            .args(["-R", "-F", "-X"])
            .stdin(std::process::Stdio::piped())
            .spawn(),
    };
    match child.as_mut() {
        Ok(c) => {
            if let Some(mut stdin) = c.stdin.take() {
                let _ = stdin.write_all(text.as_bytes());
            }
            let _ = c.wait();
        }
        Err(_) => out!("{text}"),
    }
}

/// `forge apply [run] [--branch] [--again]`.
pub(crate) async fn apply(ctx: &Context, args: &ApplyArgs, style: Style) -> CliResult {
    let run = crate::runs::resolve_run(ctx, args.run.as_deref())?;
    let mode = if args.branch {
        ApplyMode::Branch
    } else {
        ApplyMode::WorkingTree
    };
    let conflicts = crate::partial::conflict_choices(&args.conflicts)?;
    if crate::resolve::wants_agent(&conflicts) {
        return crate::resolve::apply(ctx, &run, &args.tasks, conflicts, style).await;
    }
    if !args.tasks.is_empty() || conflicts != forge_merge::ConflictChoices::default() {
        return crate::partial::apply_tasks(
            ctx,
            &run,
            &args.tasks,
            conflicts,
            mode,
            style,
            Exit::Success,
        )
        .await;
    }
    crate::candidates::refuse_whole(ctx, &run)?;
    if let Some(said) = already_applied(ctx, &run, mode, args.again)? {
        outln!("{} {said}", style.green("✓"));
        return crate::partial::push(ctx, &run, args, style);
    }
    let summary = apply_run(&ctx.repo, &run, mode).await.map_err(exec_error)?;
    print_applied(&summary, &run, style);
    let exit = applied_exit(&summary, Exit::Success);
    if summary.branch.is_some() {
        crate::partial::push(ctx, &run, args, style)?;
    }
    Ok(exit)
}

/// What to say when the run's result is already where `mode` would put it: applied to the
/// working tree completely (unless `again`), or committed to a branch that still exists.
fn already_applied(
    ctx: &Context,
    run: &RunId,
    mode: ApplyMode,
    again: bool,
) -> CliResult<Option<String>> {
    let journal = forge_exec::store::RunStore::new(&ctx.repo).journal(run);
    let events = forge_events::read_journal(&journal)?;
    // The latest apply of the same kind decides.
    let latest = events.iter().rev().find(|e| {
        matches!(&e.kind, EventKind::ApplyFinished { branch, .. }
            if branch.is_some() == (mode == ApplyMode::Branch))
    });
    // After a partial apply (`--tasks`), the whole run is not applied yet.
    if latest.is_some_and(
        |e| matches!(&e.kind, EventKind::ApplyFinished { tasks, .. } if !tasks.is_empty()),
    ) {
        return Ok(None);
    }
    let Some(event) = latest else {
        return Ok(None);
    };
    let EventKind::ApplyFinished {
        files,
        conflicts,
        branch,
        commit,
        ..
    } = &event.kind
    else {
        return Ok(None);
    };
    let when = event
        .ts
        .to_zoned_datetime(jiff::tz::TimeZone::system())
        .strftime("%Y-%m-%d %H:%M:%S");
    Ok(match branch {
        None if conflicts.is_empty() && !again => Some(format!(
            "Run {run} was already applied to the working tree ({when}, {}); nothing to do. `forge apply {run} --again` applies it once more.",
            format::plural(files.len() as u64, "file")
        )),
        Some(branch) if branch_exists(&ctx.repo, branch) => {
            let at = commit
                .as_deref()
                .map(|c| format!(" at {}", c.get(..12).unwrap_or(c)))
                .unwrap_or_default();
            Some(format!(
                "Run {run} was already committed to branch {branch}{at} ({when}); nothing to do. `git diff HEAD..{branch}` shows it."
            ))
        }
        _ => None,
    })
}

/// Whether the branch `name` exists in the repository.
fn branch_exists(repo: &Path, name: &str) -> bool {
    std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["rev-parse", "--verify", "--quiet"])
        .arg(format!("refs/heads/{name}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
