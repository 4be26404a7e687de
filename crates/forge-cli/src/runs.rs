//! Commands that look at runs from the run store: `runs`, `status`, `logs`, `abort`, `gc`.
//! They read the journal (the source of truth), so they work from another terminal, during a
//! run or after it, and after a crash.

use std::fmt::Write as _;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::Path;
use std::time::{Duration, Instant};

use forge_events::{RunId, RunPhase, RunState, RunStatus, TaskPhase};
use forge_exec::plan::Plan;
use forge_exec::store::RunStore;

use crate::cli::{AbortArgs, GcArgs, LogsArgs, RunsArgs, StatusArgs};
use crate::config::Context;
use crate::error::{CliError, CliResult, Exit};
use crate::render::table::TableInfo;
use crate::render::{Live, Mode, format, summary, write_stdout};
use crate::term::Style;

/// How often followers look at the journal and the run's owner.
const POLL: Duration = Duration::from_millis(50);

/// The run named on the command line (an id, or a unique prefix of one), or the latest run.
pub(crate) fn resolve_run(ctx: &Context, given: Option<&str>) -> CliResult<RunId> {
    let store = RunStore::new(&ctx.repo);
    if !ctx.in_git && !store.runs_dir().is_dir() {
        return Err(ctx.not_a_repository());
    }
    let Some(given) = given else {
        return store
            .latest_run()
            .map_err(|e| CliError::failed(e.to_string()))?
            .ok_or_else(|| {
                CliError::usage(format!("no runs yet in {}", ctx.repo.display()))
                    .hint("start one with `forge run <plan.toml>`, or try `forge demo`")
            });
    };
    if let Ok(id) = given.parse::<RunId>()
        && store.exists(&id)
    {
        return Ok(id);
    }
    let runs = forge_events::list_runs(&store.runs_dir())?;
    let matches: Vec<&RunId> = runs
        .iter()
        .map(|r| &r.id)
        .filter(|id| id.as_str().starts_with(given))
        .collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(CliError::usage(format!(
            "no run `{given}` in {}",
            store.runs_dir().display()
        ))
        .hint("`forge runs` lists the runs of this repository")),
        many => Err(CliError::usage(format!(
            "`{given}` could be any of {}",
            format::list(&many.iter().map(|r| r.as_str()).collect::<Vec<_>>(), 5)
        ))
        .hint("give more of the run id")),
    }
}

/// Agents and attempt limits from the run's plan copy, for the table (empty if unreadable).
pub(crate) fn table_info_from_copy(ctx: &Context, store: &RunStore, run: &RunId) -> TableInfo {
    let Ok(opts) = crate::plan_file::plan_options(ctx) else {
        return TableInfo::default();
    };
    match Plan::load(&store.plan_copy(run), &opts) {
        Ok(plan) => table_info(&plan),
        Err(_) => TableInfo::default(),
    }
}

/// Agents and attempt limits of a plan's tasks.
pub(crate) fn table_info(plan: &Plan) -> TableInfo {
    TableInfo {
        agents: plan
            .tasks
            .iter()
            .map(|t| (t.id.as_str().to_owned(), t.agent.clone()))
            .collect(),
        max_attempts: plan
            .tasks
            .iter()
            .map(|t| (t.id.as_str().to_owned(), t.retries.saturating_add(1)))
            .collect(),
    }
}

/// The exit code a finished run's state means (as `forge run` would have exited, and
/// `forge apply` after it: an apply that left clashes with the user's edits is exit 3).
pub(crate) fn exit_of(state: &RunState) -> Exit {
    if state.phase == RunPhase::Cancelled {
        Exit::Interrupted
    } else if state.tasks.iter().any(|t| t.status != TaskPhase::Succeeded) {
        Exit::Failed
    } else if state.conflicts.iter().any(|c| !c.resolved) {
        Exit::Conflicts
    } else if state.gates.iter().any(|g| g.passed == Some(false)) {
        Exit::GateFailed
    } else if state.phase == RunPhase::Failed {
        Exit::Failed
    } else if state
        .apply
        .as_ref()
        .is_some_and(|a| !a.conflicts.is_empty())
    {
        Exit::Conflicts
    } else {
        Exit::Success
    }
}

/// What `forge status` exits with: a finished run's code ([`exit_of`]), 0 while it runs, 130
/// when its process is gone before the end (resumable).
fn status_exit(state: &RunState, live: Liveness) -> Exit {
    match live {
        Liveness::Finished(_) => exit_of(state),
        Liveness::Running(_) => Exit::Success,
        Liveness::Interrupted => Exit::Interrupted,
    }
}

/// How a run ended according to the fold of its journal (`None` while it has not).
fn finished_status(state: &RunState) -> Option<RunStatus> {
    match state.phase {
        RunPhase::Succeeded => Some(RunStatus::Succeeded),
        RunPhase::Failed => Some(RunStatus::Failed),
        RunPhase::Cancelled => Some(RunStatus::Cancelled),
        RunPhase::Pending | RunPhase::Running | RunPhase::Gating => None,
    }
}

/// The fold of a listed run's journal (`None` for journals too big to fold for a listing),
/// and how it ended: from the fold, else from the journal's tail.
fn fold_listed(info: &forge_events::RunInfo) -> (Option<RunState>, Option<RunStatus>) {
    // Big journals are not folded just for a listing.
    let state = if info.bytes <= 64 * 1024 * 1024 {
        RunState::from_journal(&info.journal).ok()
    } else {
        None
    };
    let status = state.as_ref().map_or(info.status, finished_status);
    (state, status)
}

/// Whether the run is finished, live, or was left by a process that died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Liveness {
    Finished(RunStatus),
    Running(i32),
    Interrupted,
}

fn liveness(store: &RunStore, run: &RunId, finished: Option<RunStatus>) -> Liveness {
    if let Some(status) = finished {
        return Liveness::Finished(status);
    }
    match store.owner(run) {
        Some(owner) if owner.alive => Liveness::Running(owner.pid),
        _ => Liveness::Interrupted,
    }
}

/// One run of the listing, as `forge runs` shows it.
struct Row<'a> {
    info: &'a forge_events::RunInfo,
    status: String,
    live: Liveness,
    total: u32,
    counts: Option<forge_events::TaskCounts>,
    duration_ms: Option<u128>,
}

/// What the listing shows of one run: status and counts from the fold of its journal, the
/// duration from its start to its end (an apply later is not part of it).
fn row<'a>(store: &RunStore, info: &'a forge_events::RunInfo) -> Row<'a> {
    let (state, finished) = fold_listed(info);
    let live = liveness(store, &info.id, finished);
    let status = match live {
        Liveness::Finished(s) => s.as_str().to_owned(),
        Liveness::Running(_) => "running".to_owned(),
        Liveness::Interrupted => "interrupted".to_owned(),
    };
    let total = state
        .as_ref()
        .map_or(info.tasks.unwrap_or(0), |s| s.counts.total);
    let started = state
        .as_ref()
        .and_then(|s| s.started_at)
        .or(info.started_at);
    let ended = match &state {
        Some(s) if s.phase.is_finished() => s.finished_at,
        Some(s) => s.updated_at,
        None => info.updated_at,
    };
    let duration_ms = match (started, ended) {
        (Some(a), Some(b)) => Some(format::between(a, b).as_millis()),
        _ => None,
    };
    Row {
        info,
        status,
        live,
        total,
        counts: state.map(|s| s.counts),
        duration_ms,
    }
}

/// The TASKS column: `4/6 done, 1 not succeeded, 1 cancelled` (cancelled tasks are neither).
fn tasks_text(counts: Option<&forge_events::TaskCounts>, total: u32) -> String {
    let Some(c) = counts else {
        return format!("{total}");
    };
    let mut text = format!("{}/{total} done", c.succeeded);
    let bad = c.done() - c.succeeded;
    if bad > 0 {
        let _ = write!(text, ", {bad} not succeeded");
    }
    if c.cancelled > 0 {
        let _ = write!(text, ", {} cancelled", c.cancelled);
    }
    text
}

/// `forge runs`.
pub(crate) fn runs(ctx: &Context, args: &RunsArgs, style: Style) -> CliResult {
    let store = RunStore::new(&ctx.repo);
    if !ctx.in_git && !store.runs_dir().is_dir() {
        return Err(ctx.not_a_repository());
    }
    let runs = forge_events::list_runs(&store.runs_dir())?;
    if runs.is_empty() && !args.json {
        outln!("No runs yet in {}.", ctx.repo.display());
        outln!("Start one with `forge run <plan.toml>`, or try `forge demo`.");
        return Ok(Exit::Success);
    }
    let rows: Vec<Row> = runs.iter().map(|info| row(&store, info)).collect();
    if args.json {
        let mut out = String::new();
        for Row {
            info,
            status,
            total,
            counts,
            duration_ms,
            ..
        } in &rows
        {
            let value = serde_json::json!({
                "id": info.id.as_str(),
                "plan": info.plan,
                "status": status,
                "started_at": info.started_at.map(|t| t.to_string()),
                "updated_at": info.updated_at.map(|t| t.to_string()),
                "duration_ms": duration_ms,
                "tasks": total,
                "tasks_finished": counts.map(|c| c.done()),
                "tasks_succeeded": counts.map(|c| c.succeeded),
                "tasks_cancelled": counts.map(|c| c.cancelled),
            });
            out.push_str(&value.to_string());
            out.push('\n');
        }
        write_stdout(&out);
        return Ok(Exit::Success);
    }
    let id_w = rows
        .iter()
        .map(|r| r.info.id.as_str().len())
        .max()
        .unwrap_or(3)
        .max(3);
    outln!(
        "{}",
        style.bold(&format!(
            "{:<id_w$}  {:<11}  {:<19}  {:>8}  {}",
            "RUN", "STATUS", "STARTED", "DURATION", "TASKS"
        ))
    );
    for Row {
        info,
        status,
        live,
        total,
        counts,
        duration_ms,
    } in &rows
    {
        let started = info.started_at.map_or_else(
            || "-".to_owned(),
            |t| {
                t.to_zoned_datetime(jiff_tz())
                    .strftime("%Y-%m-%d %H:%M:%S")
                    .to_string()
            },
        );
        let duration = duration_ms.map_or_else(
            || "-".to_owned(),
            |ms| format::millis(u64::try_from(ms).unwrap_or(u64::MAX)),
        );
        let tasks = tasks_text(counts.as_ref(), *total);
        let painted = match live {
            Liveness::Finished(RunStatus::Succeeded) => style.green(&format!("{status:<11}")),
            Liveness::Finished(RunStatus::Failed) => style.red(&format!("{status:<11}")),
            Liveness::Finished(RunStatus::Cancelled) | Liveness::Interrupted => {
                style.yellow(&format!("{status:<11}"))
            }
            Liveness::Running(_) => style.cyan(&format!("{status:<11}")),
        };
        outln!(
            "{:<id_w$}  {painted}  {started:<19}  {duration:>8}  {tasks}",
            info.id.as_str()
        );
    }
    Ok(Exit::Success)
}

/// The local time zone (UTC when it cannot be determined).
fn jiff_tz() -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::system()
}

/// `forge status`.
pub(crate) async fn status(ctx: &Context, args: &StatusArgs, style: Style) -> CliResult {
    let run = resolve_run(ctx, args.run.as_deref())?;
    let store = RunStore::new(&ctx.repo);
    let journal = store.journal(&run);
    let info = table_info_from_copy(ctx, &store, &run);
    if args.follow {
        let mut live = Live::new(Mode::pick(false), info, style);
        follow_journal(&store, &run, &mut live, |_| false).await?;
        live.finish();
        let state = live.state().clone();
        print_outcome(&run, &state, style, &store);
        let live = liveness(&store, &run, finished_status(&state));
        return Ok(status_exit(&state, live));
    }
    let state = RunState::from_journal(&journal)?;
    // Every output mode exits with the run's code, as `--follow` does.
    let exit = status_exit(&state, liveness(&store, &run, finished_status(&state)));
    if args.json {
        let text = serde_json::to_string_pretty(&state)
            .map_err(|e| CliError::failed(format!("cannot encode the run's state: {e}")))?;
        write_stdout(&(text + "\n"));
        return Ok(exit);
    }
    write_stdout(&Live::still(&state, &info, style));
    print_outcome(&run, &state, style, &store);
    Ok(exit)
}

/// The summary of a finished run, or what is going on with an unfinished one.
fn print_outcome(run: &RunId, state: &RunState, style: Style, store: &RunStore) {
    if state.phase.is_finished() {
        let width = crate::term::width().unwrap_or(100);
        outln!("{}", summary::lines(&summary::items(state), style, width));
        if let Some(apply) = &state.apply {
            let what = match &apply.branch {
                Some(branch) => format!(
                    "Committed to {branch}{}",
                    apply
                        .commit
                        .as_deref()
                        .map(|c| format!(" ({})", c.get(..12).unwrap_or(c)))
                        .unwrap_or_default()
                ),
                None if apply.conflicts.is_empty() => format!(
                    "Applied to the working tree: {}",
                    format::plural(apply.files.len() as u64, "file")
                ),
                None => format!(
                    "Applied only in part: {} written; {} left as you have them (your edits clash with the run's)",
                    format::plural(apply.files.len() as u64, "file"),
                    format::list(&apply.conflicts, 3)
                ),
            };
            let mark = if apply.conflicts.is_empty() {
                style.green("✓")
            } else {
                style.red("✗")
            };
            outln!("{mark} {what}");
        } else if exit_of(state) == Exit::Success {
            outln!("Not applied yet: `forge apply {run}` applies it.");
        }
        return;
    }
    match liveness(store, run, None) {
        Liveness::Running(pid) => outln!(
            "{}",
            style.dim(&format!(
                "Running in process {pid}. `forge status --follow {run}` watches it; `forge abort {run}` stops it."
            ))
        ),
        _ => outln!(
            "{}",
            style.yellow(&format!(
                "Interrupted: no process runs it any more. Resume it with `forge resume {run}`."
            ))
        ),
    }
}

/// Feeds `live` with the run's journal until the run finishes, its process is gone, or `stop`
/// says so (checked after each batch).
pub(crate) async fn follow_journal(
    store: &RunStore,
    run: &RunId,
    live: &mut Live,
    mut stop: impl FnMut(&RunState) -> bool,
) -> CliResult<()> {
    let journal = store.journal(run);
    let mut follow = forge_events::follow(&journal, 0)?;
    let mut last_owner_check = Instant::now();
    let mut gone_since: Option<Instant> = None;
    loop {
        let batch = follow.drain()?;
        live.events(batch.iter());
        live.tick();
        let state = live.state();
        if state.phase.is_finished() || stop(state) {
            return Ok(());
        }
        if last_owner_check.elapsed() >= Duration::from_millis(500) {
            last_owner_check = Instant::now();
            let alive = store.owner(run).is_some_and(|o| o.alive);
            if alive {
                gone_since = None;
            } else {
                // Give a starting or ending process a moment before calling the run dead.
                let since = *gone_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= Duration::from_secs(2) {
                    let rest = follow.drain()?;
                    live.events(rest.iter());
                    return Ok(());
                }
            }
        }
        // Ctrl-C stops watching (the run goes on); the caller puts the terminal back.
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// `forge logs`.
#[allow(clippy::too_many_lines)] // resolve the attempt, then print it once or follow it
pub(crate) async fn logs(ctx: &Context, args: &LogsArgs, style: Style) -> CliResult {
    let run = resolve_run(ctx, args.run.as_deref())?;
    let store = RunStore::new(&ctx.repo);
    let state = RunState::from_journal(store.journal(&run))?;
    let Some(task) = state.task(&args.task) else {
        let known: Vec<&str> = state.tasks.iter().map(|t| t.id.as_str()).collect();
        return Err(
            CliError::usage(format!("run {run} has no task `{}`", args.task))
                .hint(format!("its tasks are {}", format::list(&known, 20))),
        );
    };
    let attempt = match args.attempt {
        Some(n) => n,
        None if task.attempt > 0 => task.attempt,
        None if task.status.is_finished() => {
            let why = task.reason.as_deref().unwrap_or(match task.status {
                TaskPhase::Skipped => "skipped",
                _ => "cancelled",
            });
            return Err(CliError::usage(format!(
                "task `{}` of run {run} never ran ({why}), so it has no output",
                task.id
            ))
            .hint(format!("`forge status {run}` shows the run")));
        }
        None => {
            return Err(CliError::usage(format!(
                "task `{}` of run {run} has not started yet, so it has no output",
                task.id
            ))
            .hint(format!("`forge status {run}` shows what it waits for")));
        }
    };
    if attempt > task.attempt.max(1) {
        return Err(CliError::usage(format!(
            "task `{}` of run {run} has run {} so far; there is no attempt {attempt}",
            task.id,
            format::plural(task.attempt, "attempt")
        )));
    }
    let path = store.log_path(&run, task.id.as_str(), attempt);
    if args.json {
        let t = crate::logs::read(ctx, &run, task.id.as_str(), attempt)?;
        let json = serde_json::to_string_pretty(&t)
            .map_err(|e| CliError::failed(format!("cannot write the transcript as JSON: {e}")))?;
        outln!("{json}");
        return Ok(Exit::Success);
    }
    let format = if args.raw {
        None
    } else {
        let format = crate::logs::format_of(ctx, task.agent.as_deref())?;
        if format.is_none() {
            errln!(
                "{}",
                crate::logs::unknown_agent_note(task.agent.as_deref(), &path)
            );
        }
        format
    };
    let mut reader = format.map(|f| crate::logs::Reader::new(ctx, task, f, style));
    let mut sink = |bytes: &[u8]| match reader.as_mut() {
        Some(r) => r.feed(bytes),
        None => write_raw(bytes),
    };
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !args.follow => {
            return Err(CliError::failed(format!(
                "attempt {attempt} of task `{}` left no output log at {}",
                task.id,
                path.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => wait_for_file(&path).await?,
        Err(e) => return Err(CliError::io("open", &path, &e)),
    };
    let mut offset = copy_from(&mut file, 0, &path, &mut sink)?;
    if !args.follow {
        if let Some(r) = reader {
            r.finish();
        }
        return Ok(Exit::Success);
    }
    let journal = store.journal(&run);
    let mut follow = forge_events::follow(&journal, 0)?;
    let mut state = RunState::new();
    loop {
        for e in follow.drain()? {
            state.apply(&e);
        }
        offset = copy_from(&mut file, offset, &path, &mut sink)?;
        let done = state.phase.is_finished()
            || state.task(&args.task).is_some_and(|t| {
                t.attempt > attempt
                    || (t.attempt == attempt && t.status.is_finished())
                    || (t.attempt == attempt && t.status == TaskPhase::Retrying)
            })
            || !store.owner(&run).is_some_and(|o| o.alive);
        if done {
            // The attempt's last lines may reach the log just after its end reaches the journal:
            // read until the file has been still for a moment (at most 3 s).
            let (mut still, deadline) = (0, Instant::now() + Duration::from_secs(3));
            while still < 3 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let next = copy_from(&mut file, offset, &path, &mut sink)?;
                still = if next == offset { still + 1 } else { 0 };
                offset = next;
            }
            if let Some(r) = reader {
                r.finish();
            }
            return Ok(Exit::Success);
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn wait_for_file(path: &Path) -> CliResult<std::fs::File> {
    loop {
        match std::fs::File::open(path) {
            Ok(f) => return Ok(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tokio::time::sleep(POLL).await;
            }
            Err(e) => return Err(CliError::io("open", path, &e)),
        }
    }
}

/// Hands what the file holds from `offset` on to `sink`; returns the new offset.
fn copy_from(
    file: &mut std::fs::File,
    offset: u64,
    path: &Path,
    sink: &mut dyn FnMut(&[u8]),
) -> CliResult<u64> {
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| CliError::io("read", path, &e))?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)
        .map_err(|e| CliError::io("read", path, &e))?;
    if !buf.is_empty() {
        sink(&buf);
    }
    Ok(offset + buf.len() as u64)
}

/// Writes bytes to stdout as they are (`forge logs --raw`).
fn write_raw(bytes: &[u8]) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes);
    let _ = out.flush();
}

/// `forge abort`.
pub(crate) async fn abort(ctx: &Context, args: &AbortArgs, style: Style) -> CliResult {
    let run = resolve_run(ctx, args.run.as_deref())?;
    let store = RunStore::new(&ctx.repo);
    let folded = RunState::from_journal(store.journal(&run))?;
    let pid = match liveness(&store, &run, finished_status(&folded)) {
        Liveness::Finished(status) => {
            return Err(CliError::failed(format!(
                "run {run} already finished ({status}); there is nothing to abort"
            )));
        }
        Liveness::Interrupted => {
            return Err(CliError::failed(format!(
                "run {run} is not running (its process is gone)"
            ))
            .hint(format!(
                "resume it with `forge resume {run}`, or clean up with `forge gc`"
            )));
        }
        Liveness::Running(pid) => pid,
    };
    let target = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| CliError::failed(format!("run {run} names an invalid process id {pid}")))?;
    rustix::process::kill_process(target, rustix::process::Signal::INT).map_err(|e| {
        CliError::failed(format!(
            "cannot interrupt process {pid} running {run}: {}",
            crate::error::io_reason(&e.into())
        ))
        .hint("it may belong to another user; stop it from its own terminal with Ctrl-C")
    })?;
    outln!("Sent an interrupt to process {pid}; its tasks are being cancelled.");
    if args.no_wait {
        return Ok(Exit::Success);
    }
    let journal = store.journal(&run);
    let deadline = Instant::now() + Duration::from_mins(1);
    let mut follow = forge_events::follow(&journal, 0)?;
    let mut state = RunState::new();
    loop {
        for e in follow.drain()? {
            state.apply(&e);
        }
        let alive = store.owner(&run).is_some_and(|o| o.alive);
        if state.phase.is_finished() || !alive {
            break;
        }
        if Instant::now() >= deadline {
            return Err(
                CliError::failed(format!("run {run} has not stopped after 60 s")).hint(format!(
                    "run `forge abort {run}` again to kill its agents at once"
                )),
            );
        }
        tokio::time::sleep(POLL).await;
    }
    outln!(
        "{} Run {run} stopped. Resume it with `forge resume {run}`.",
        style.yellow("⊘")
    );
    Ok(Exit::Success)
}

/// `forge gc`.
pub(crate) fn gc(ctx: &Context, args: &GcArgs, style: Style) -> CliResult {
    let store = RunStore::new(&ctx.repo);
    let runs = forge_events::list_runs(&store.runs_dir())?;
    let mut cleaned = 0usize;
    let mut freed = 0u64;
    for info in &runs {
        let (_, finished) = fold_listed(info);
        let live = liveness(&store, &info.id, finished);
        if let Liveness::Running(pid) = live {
            outln!(
                "{} {}: running (process {pid}), left alone",
                style.dim("·"),
                info.id
            );
            continue;
        }
        let work = store.work_dir(&info.id);
        if !work.exists() {
            continue;
        }
        if args.dry_run {
            outln!(
                "{} {}: would remove its leftover processes, mounts and workspaces",
                style.yellow("~"),
                info.id,
            );
            continue;
        }
        forge_exec::manager::cleanup_leftovers(&store, &info.id)
            .map_err(|e| CliError::failed(format!("cannot clean up run {}: {e}", info.id)))?;
        // Measured once nothing is mounted there any more.
        let size = dir_size(&work);
        if work.exists() {
            std::fs::remove_dir_all(&work).map_err(|e| CliError::io("remove", &work, &e))?;
        }
        cleaned += 1;
        freed += size;
        let what = match live {
            Liveness::Interrupted => {
                "interrupted; its processes, mounts and workspaces removed (still resumable)"
            }
            _ => "finished; its workspaces removed",
        };
        outln!("{} {}: {what}", style.green("✓"), info.id);
    }
    let (scratch, scratch_bytes) = clean_mcp_scratch(&ctx.repo, args.dry_run, style)?;
    if args.dry_run {
        return Ok(Exit::Success);
    }
    cleaned += scratch;
    freed += scratch_bytes;
    if cleaned == 0 {
        outln!("Nothing to clean up.");
    } else {
        outln!(
            "Cleaned up {} ({} freed). Journals, logs and results are kept: `forge runs` still lists them.",
            format::plural(cleaned as u64, "run"),
            crate::split::human_bytes(freed)
        );
    }
    Ok(Exit::Success)
}

/// How old a plan file the MCP server wrote must be before `forge gc` removes it. The run it
/// started keeps its own copy (`.forge/runs/<run>/plan.toml`), so the file is only needed while
/// `forge run` reads it, a moment after it was written.
const MCP_SCRATCH_AGE: Duration = Duration::from_hours(1);

/// Removes the plan files `forge mcp` left in `.forge/mcp/` that are older than
/// [`MCP_SCRATCH_AGE`]; returns how many and their bytes (what would go, with `dry_run`).
fn clean_mcp_scratch(repo: &Path, dry_run: bool, style: Style) -> Result<(usize, u64), CliError> {
    let dir = repo.join(".forge/mcp");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(CliError::io("read", &dir, &e)),
    };
    let now = std::time::SystemTime::now();
    let mut old = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| CliError::io("read", &dir, &e))?;
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        let age = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or_default();
        if meta.is_file() && age >= MCP_SCRATCH_AGE {
            old.push((path, meta.len()));
        }
    }
    if old.is_empty() {
        return Ok((0, 0));
    }
    let bytes = old.iter().map(|(_, len)| len).sum();
    if dry_run {
        outln!(
            "{} .forge/mcp: would remove {} the MCP server wrote for runs it started",
            style.yellow("~"),
            format::plural(old.len() as u64, "plan file"),
        );
        return Ok((old.len(), bytes));
    }
    for (path, _) in &old {
        std::fs::remove_file(path).map_err(|e| CliError::io("remove", path, &e))?;
    }
    outln!(
        "{} .forge/mcp: removed {} the MCP server wrote for runs it started",
        style.green("✓"),
        format::plural(old.len() as u64, "plan file"),
    );
    Ok((old.len(), bytes))
}

/// Bytes of regular files under `dir` (0 if it does not exist).
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        if meta.is_dir() {
            total += dir_size(&entry.path());
        } else if meta.is_file() {
            total += meta.len();
        }
    }
    total
}
