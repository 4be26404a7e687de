//! `bench-sched`: the scheduler against ninja and make on the same DAG, its own overhead per
//! task, and loading + validating a 100,000-task plan.
//!
//! `cargo run --release -p forge-benches --bin bench-sched -- [--quick]`
//! Rows: `dag10k_true_vs_ninja`, `dag10k_true_vs_make`, `sched_overhead_noop`,
//! `plan_100k_validate`, `attempt_setup_ms` (cost of an attempt's PID namespace and cgroup).
//! Needs `ninja` and `make` on `PATH` (Debian: `apt-get install ninja-build make`); the bench
//! stops with that instruction when one is missing.
//! `--forge-only [reps]` runs only Forge's side of `dag10k` and writes no report: a hook for
//! `strace -c` / `perf record` on the process runner.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)] // a bench binary
#![allow(clippy::cast_precision_loss)] // counts and times as f64 figures

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use forge_benches::{Better, Report, Row, median, peak_rss_bytes, quick_from_args};
use forge_events::{EventKind, EventSink, EventsError, RunId, TaskId};
use forge_exec::plan::{Plan, PlanFormat, PlanOptions, Task};
use forge_exec::{
    AttemptContext, CancelHandle, CommandSpec, ProcessRunner, Scheduler, SchedulerOptions,
    TaskOutcome, TaskRunner,
};

/// Events go nowhere: bench-events measures the bus; here we measure the scheduler.
struct NullSink;

impl EventSink for NullSink {
    fn publish(&self, _task: Option<TaskId>, _kind: EventKind) -> Result<u64, EventsError> {
        Ok(0)
    }
}

/// A layered random DAG with a fixed seed: `layers` of `width` tasks, each depending on 1–3
/// tasks of the layer before.
fn layered_dag(tasks: usize, width: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut state = seed;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        usize::try_from(state % n as u64).unwrap()
    };
    (0..tasks)
        .map(|i| {
            let layer = i / width;
            if layer == 0 {
                return Vec::new();
            }
            let start = (layer - 1) * width;
            let mut deps: Vec<usize> = (0..=next(3)).map(|_| start + next(width)).collect();
            deps.sort_unstable();
            deps.dedup();
            deps
        })
        .collect()
}

fn base_plan() -> Plan {
    Plan::parse(
        "[[task]]\nid = \"x\"\nagent = \"shell\"\nprompt = \"true\"\n",
        Path::new("bench.toml"),
        PlanFormat::Toml,
        &PlanOptions::default(),
    )
    .unwrap()
}

fn plan_for(dag: &[Vec<usize>], concurrency: usize) -> Plan {
    let ids: Vec<TaskId> = (0..dag.len())
        .map(|i| TaskId::new(format!("t{i}")).unwrap())
        .collect();
    let mut plan = base_plan();
    plan.concurrency = concurrency;
    plan.tasks = dag
        .iter()
        .enumerate()
        .map(|(i, deps)| {
            let mut t = Task::new(ids[i].clone(), "shell", "true");
            t.after = deps.iter().map(|&d| ids[d].clone()).collect();
            t
        })
        .collect();
    plan
}

fn ninja_file(dag: &[Vec<usize>]) -> String {
    let mut out = String::from("rule r\n  command = true\n");
    for (i, deps) in dag.iter().enumerate() {
        let _ = write!(out, "build t{i}: r");
        for d in deps {
            let _ = write!(out, " t{d}");
        }
        out.push('\n');
    }
    out
}

fn makefile(dag: &[Vec<usize>]) -> String {
    let names: Vec<String> = (0..dag.len()).map(|i| format!("t{i}")).collect();
    let mut out = format!(
        ".PHONY: all {}\nall: {}\n",
        names.join(" "),
        names.join(" ")
    );
    for (i, deps) in dag.iter().enumerate() {
        let _ = write!(out, "t{i}:");
        for d in deps {
            let _ = write!(out, " t{d}");
        }
        out.push_str("\n\t@true\n");
    }
    out
}

fn require(tool: &str, package: &str) {
    if Command::new(tool).arg("--version").output().is_err() {
        eprintln!(
            "bench-sched: `{tool}` is not installed; install it with `apt-get install {package}` (see benches/README.md)"
        );
        std::process::exit(2);
    }
}

/// CPU seconds used so far: (this process, its waited-for children), from `/proc/self/stat`.
fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rfind(')').map_or("", |i| &stat[i + 2..]);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // Fields 14-17 of stat (utime stime cutime cstime) are 12-15 after the comm field, in ticks.
    let tick = 100.0;
    if f.len() < 16 {
        return (0.0, 0.0);
    }
    ((f[11] + f[12]) / tick, (f[13] + f[14]) / tick)
}

fn timed(cmd: &mut Command) -> f64 {
    let start = Instant::now();
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    start.elapsed().as_secs_f64() * 1e3
}

/// One Forge run of `plan`, each task spawning `true`: milliseconds.
fn run_forge(rt: &tokio::runtime::Runtime, plan: &Plan, dir: &Path, rep: usize) -> f64 {
    // Forge spawns `true` directly (posix_spawn, own process group), with the program's
    // path resolved once before the run, as Forge does for agent binaries.
    let program = forge_exec::process::find_program("true").expect("`true` is on PATH");
    let logs = dir.join(format!("logs{rep}"));
    let cwd = dir.join("work");
    std::fs::create_dir_all(&cwd).unwrap();
    let runner = ProcessRunner::new(
        RunId::new("bench").unwrap(),
        logs,
        Arc::new(move |_t: &Task, _a: u32| {
            Ok(CommandSpec {
                program: program.clone().into(),
                args: vec![],
                cwd: cwd.clone(),
                env: vec![],
            })
        }),
    );
    let start = Instant::now();
    let result = rt.block_on(
        Scheduler::new(
            plan,
            &runner,
            Arc::new(NullSink),
            SchedulerOptions::default(),
        )
        .run(&CancelHandle::new()),
    );
    let ms = start.elapsed().as_secs_f64() * 1e3;
    assert!(result.succeeded(), "forge run failed");
    ms
}

/// `--forge-only [reps]`: a measurement hook for profiling the process runner (`strace -c`,
/// `perf record`) without the peers' processes in the trace. Runs only Forge's side of the
/// `dag10k` row, prints each repetition's time and CPU per task, and writes no report.
fn forge_only(rt: &tokio::runtime::Runtime, reps: usize) {
    let tasks = 10_000;
    let plan = plan_for(&layered_dag(tasks, 100, 42), 2);
    let dir = tempfile::tempdir().unwrap();
    for rep in 0..reps {
        let (before, switches_before) = (cpu_seconds(), context_switches());
        let ms = run_forge(rt, &plan, dir.path(), rep);
        let (after, switches_after) = (cpu_seconds(), context_switches());
        println!(
            "forge dag10k rep {rep}: {ms:.0} ms, orchestrator {:.1} us/task, children {:.1} us/task, context switches {:.2}/task",
            (after.0 - before.0) * 1e6 / tasks as f64,
            (after.1 - before.1) * 1e6 / tasks as f64,
            (switches_after - switches_before) as f64 / tasks as f64,
        );
    }
}

/// Voluntary plus involuntary context switches of this process so far.
fn context_switches() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .filter(|l| l.contains("ctxt_switches:"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

fn dag_vs_peers(report: &mut Report, rt: &tokio::runtime::Runtime, quick: bool) {
    require("ninja", "ninja-build");
    require("make", "make");
    let tasks = 10_000;
    // The three tools' times drift together by ±10 % from minute to minute on a shared VM;
    // five alternations make the medians' ratio steady to about ±2 %.
    let reps = if quick { 1 } else { 5 };
    let dag = layered_dag(tasks, 100, 42);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("build.ninja"), ninja_file(&dag)).unwrap();
    std::fs::write(dir.path().join("Makefile"), makefile(&dag)).unwrap();
    let plan = plan_for(&dag, 2);
    let (mut forge, mut ninja, mut make) = (Vec::new(), Vec::new(), Vec::new());
    // CPU per task: (orchestrator, children) for Forge, ninja and make.
    let (mut forge_cpu, mut ninja_cpu, mut make_cpu) = ((0.0, 0.0), (0.0, 0.0), (0.0, 0.0));
    let add = |acc: &mut (f64, f64), before: (f64, f64), after: (f64, f64)| {
        acc.0 += after.0 - before.0;
        acc.1 += after.1 - before.1;
    };
    for rep in 0..reps {
        let before = cpu_seconds();
        forge.push(run_forge(rt, &plan, dir.path(), rep));
        add(&mut forge_cpu, before, cpu_seconds());
        // ninja runs each command through `/bin/sh -c`; make execs simple commands directly.
        let _ = std::fs::remove_file(dir.path().join(".ninja_log"));
        let before = cpu_seconds();
        ninja.push(timed(
            Command::new("ninja").args(["-j2", "-C"]).arg(dir.path()),
        ));
        add(&mut ninja_cpu, before, cpu_seconds());
        let before = cpu_seconds();
        make.push(timed(
            Command::new("make")
                .args(["-j2", "-s", "-C"])
                .arg(dir.path()),
        ));
        add(&mut make_cpu, before, cpu_seconds());
    }
    let (f, n, m) = (median(&forge), median(&ninja), median(&make));
    // Microseconds of CPU per task, summed over repetitions then divided.
    let per_task = |secs: f64| secs * 1e6 / (tasks * reps) as f64;
    report.push(
        Row::new("dag10k_true_vs_ninja", f, "ms", Better::Lower, reps)
            .peer("ninja -j2", n)
            .goal("ratio >= 1.0")
            .extra("tasks", tasks)
            .extra("concurrency", 2)
            .extra("forge_cpu_us_per_task", per_task(forge_cpu.0))
            .extra("forge_children_cpu_us_per_task", per_task(forge_cpu.1))
            .extra("peer_cpu_us_per_task", per_task(ninja_cpu.1)),
    );
    report.push(
        Row::new("dag10k_true_vs_make", f, "ms", Better::Lower, reps)
            .peer("make -j2", m)
            .goal("ratio >= 1.0")
            .extra("tasks", tasks)
            .extra("concurrency", 2)
            .extra("forge_cpu_us_per_task", per_task(forge_cpu.0))
            .extra("peer_cpu_us_per_task", per_task(make_cpu.1)),
    );
}

/// Finishes at once: what is left is the scheduler's own work.
struct Noop;

#[async_trait::async_trait]
impl TaskRunner for Noop {
    async fn run(&self, _task: &Task, _attempt: u32, _ctx: AttemptContext) -> TaskOutcome {
        TaskOutcome::succeeded()
    }
}

fn overhead(report: &mut Report, rt: &tokio::runtime::Runtime, quick: bool) {
    let tasks = 100_000;
    let reps = if quick { 3 } else { 5 };
    let plan = plan_for(&layered_dag(tasks, 1000, 7), 8);
    let mut samples = Vec::new();
    for _ in 0..reps {
        let start = Instant::now();
        let result = rt.block_on(
            Scheduler::new(
                &plan,
                &Noop,
                Arc::new(NullSink),
                SchedulerOptions::default(),
            )
            .run(&CancelHandle::new()),
        );
        samples.push(start.elapsed().as_secs_f64() * 1e6 / tasks as f64);
        assert!(result.succeeded());
    }
    report.push(
        Row::new(
            "sched_overhead_noop",
            median(&samples),
            "us",
            Better::Lower,
            reps,
        )
        .goal("< 10")
        .extra("tasks", tasks)
        .extra("concurrency", 8),
    );
}

/// Mean wall time (ms) of one attempt running `true` under `options`, over `n` attempts, in
/// `dir` or (with `ws`) in the workspace, entered as the pipeline enters it.
fn attempt_ms(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    n: usize,
    options: &forge_exec::ProcessOptions,
    ws: Option<&dyn forge_staging::Workspace>,
) -> f64 {
    use forge_exec::process::{AttemptEnv, run_process_in};
    let run = RunId::new("bench").unwrap();
    let spec = CommandSpec {
        program: "/bin/true".into(),
        args: Vec::new(),
        cwd: ws.map_or_else(|| dir.to_path_buf(), |ws| ws.host_path().to_path_buf()),
        env: Vec::new(),
    };
    let log = dir.join("out.log");
    let (cancel, kill) = (
        tokio_util::sync::CancellationToken::new(),
        tokio_util::sync::CancellationToken::new(),
    );
    let prepare = |cmd: &mut std::process::Command| -> std::io::Result<()> {
        match ws {
            Some(ws) => ws.prepare_command(cmd).map_err(std::io::Error::other),
            None => Ok(()),
        }
    };
    let start = Instant::now();
    for attempt in 0..n {
        let env = AttemptEnv {
            run: &run,
            task: "t",
            attempt: u32::try_from(attempt).unwrap(),
        };
        let exit = rt
            .block_on(run_process_in(
                &spec,
                &env,
                &log,
                &mut |_, _| {},
                &cancel,
                &kill,
                options,
                // As the manager does: a hook only where the workspace needs one.
                ws.filter(|ws| ws.needs_command_hook())
                    .map(|_| &prepare as &forge_exec::process::PrepareCommand<'_>),
            ))
            .unwrap();
        assert_eq!(exit.code, Some(0));
    }
    start.elapsed().as_secs_f64() * 1e3 / n as f64
}

/// A committed repository of `files` small files in `dir/repo`, its base snapshot in its
/// `.forge` (as a run keeps it) and an overlay stager for it, or why there is none here.
fn overlay_repo(
    dir: &Path,
    files: usize,
) -> (
    std::path::PathBuf,
    Arc<forge_staging::BaseSnapshot>,
    Result<Box<dyn forge_staging::Stager>, String>,
) {
    use forge_staging::{BaseMode, BaseSnapshot, BlobStore, StagerConfig, StagerKind};
    let repo = dir.join("repo");
    for i in 0..files {
        let path = repo.join(format!("d{:02}/f{i}.txt", i % 20));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, format!("file {i}\n")).unwrap();
    }
    std::fs::write(repo.join(".gitignore"), ".forge/\n").unwrap();
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "-A"],
        &[
            "-c",
            "user.name=b",
            "-c",
            "user.email=b@b.invalid",
            "commit",
            "-q",
            "-m",
            "base",
        ],
    ] {
        assert!(
            Command::new("git")
                .current_dir(&repo)
                .args(args)
                .status()
                .unwrap()
                .success()
        );
    }
    let forge = repo.join(".forge");
    let store = BlobStore::open(forge.join("objects")).unwrap();
    let base = Arc::new(
        BaseSnapshot::capture(&repo, BaseMode::Head, &forge.join("bases/b"), &store).unwrap(),
    );
    let stager = StagerKind::Overlay
        .build(&StagerConfig::new(forge.join("runs/bench"), store), &base)
        .map_err(|e| e.to_string());
    (repo, base, stager)
}

/// What containing an attempt costs: the same attempt (`/bin/true`) on the `posix_spawn` fast
/// path, in its own PID namespace, in a PID namespace plus the view of the repository (an
/// overlay workspace of a committed repository shown at the repository's path, as the pipeline
/// runs every attempt), and with a memory/CPU cgroup on top, alternating; plus staging and
/// disposing of the overlay workspace (its git repository is a lower layer: no git command).
#[allow(clippy::too_many_lines)] // one row and its parts
fn attempt_setup(report: &mut Report, rt: &tokio::runtime::Runtime, quick: bool) {
    let reps = if quick { 3 } else { 5 };
    let n = if quick { 100 } else { 500 };
    let dir = tempfile::tempdir().unwrap();
    let plain = forge_exec::ProcessOptions::default();
    let namespace = forge_exec::ProcessOptions {
        pid_namespace: true,
        ..forge_exec::ProcessOptions::default()
    };
    let limits = forge_exec::process::Limits {
        memory: Some(1 << 30),
        cpus: Some(1.0),
    };
    let (repo_dir, base, stager) = overlay_repo(dir.path(), 1000);
    let viewed = forge_exec::ProcessOptions {
        repo_view: Some(forge_exec::process::RepoView {
            user_git: base.user_git_link(),
            ..forge_exec::process::RepoView::new(&repo_dir)
        }),
        ..namespace.clone()
    };
    let limited = forge_exec::ProcessOptions {
        limits,
        ..viewed.clone()
    };
    // Whether limits can be set here at all (a cgroup may be out of reach).
    let cgroups = forge_exec::process::AttemptCgroup::create("probe", &limited.limits).is_ok();
    let snapshot = forge_staging::Snapshot::from(base.clone());
    let ws = match &stager {
        Ok(stager) => Some(stager.stage(&snapshot, "bench").unwrap()),
        Err(why) => {
            eprintln!(
                "attempt_setup_ms: no overlay workspace here ({why}): the view is not measured"
            );
            None
        }
    };
    let (mut p, mut ns, mut view, mut cg) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut stage, mut dispose) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        p.push(attempt_ms(rt, dir.path(), n, &plain, None));
        ns.push(attempt_ms(rt, dir.path(), n, &namespace, None));
        if let Some(ws) = &ws {
            view.push(attempt_ms(rt, dir.path(), n, &viewed, Some(&**ws)));
            if cgroups {
                cg.push(attempt_ms(rt, dir.path(), n, &limited, Some(&**ws)));
            }
        }
        if let Ok(stager) = &stager {
            let (mut staging, mut disposing) = (0.0, 0.0);
            for i in 0..n {
                let start = Instant::now();
                let ws = stager.stage(&snapshot, &format!("s{i}")).unwrap();
                staging += start.elapsed().as_secs_f64();
                let start = Instant::now();
                ws.dispose().unwrap();
                disposing += start.elapsed().as_secs_f64();
            }
            stage.push(staging * 1e3 / n as f64);
            dispose.push(disposing * 1e3 / n as f64);
        }
    }
    if let Some(ws) = ws {
        ws.dispose().unwrap();
    }
    let (p, ns) = (median(&p), median(&ns));
    // The value: namespace + view (+ cgroup where the host allows one) + the overlay workspace.
    let contained = if cg.is_empty() {
        median(&view)
    } else {
        median(&cg)
    };
    let value = if view.is_empty() {
        ns - p
    } else {
        contained - p + median(&stage) + median(&dispose)
    };
    let mut row = Row::new("attempt_setup_ms", value, "ms", Better::Lower, reps)
        .goal("< 10")
        .extra("attempts", n)
        .extra(
            "parent_rss",
            forge_benches::current_rss_bytes().unwrap_or(0),
        )
        .extra("plain_attempt_ms", p)
        .extra("pid_namespace_attempt_ms", ns)
        .extra("pid_namespace_ms", ns - p)
        .extra(
            "route",
            format!("{:?}", forge_exec::process::pid_namespace_support()),
        );
    if !view.is_empty() {
        let v = median(&view);
        row = row
            .extra("view_attempt_ms", v)
            .extra("view_ms", v - ns)
            .extra("overlay_stage_ms", median(&stage))
            .extra("overlay_dispose_ms", median(&dispose));
    }
    if !cg.is_empty() {
        let c = median(&cg);
        row = row
            .extra("with_cgroup_attempt_ms", c)
            .extra("cgroup_setup_ms", c - median(&view));
    }
    report.push(row);
}

fn plan_text(tasks: usize) -> String {
    let dag = layered_dag(tasks, 1000, 11);
    let mut out = String::from(
        "name = \"big\"\nconcurrency = 8\n\n[defaults]\nagent = \"sim\"\ntimeout = \"30m\"\n\n",
    );
    for (i, deps) in dag.iter().enumerate() {
        let after: Vec<String> = deps.iter().map(|d| format!("\"t{d}\"")).collect();
        let _ = write!(
            out,
            "[[task]]\nid = \"t{i}\"\nprompt = \"Implement part {i} of the feature\"\nwrites = [\"src/m{}/p{i}/**\"]\nreads = [\"src/shared/**\"]\nafter = [{}]\n\n",
            i % 100,
            after.join(", ")
        );
    }
    out
}

fn plan_validate(report: &mut Report, quick: bool) {
    let tasks = 100_000;
    let reps = if quick { 2 } else { 5 };
    let text = plan_text(tasks);
    let before = peak_rss_bytes().unwrap_or(0);
    let mut samples = Vec::new();
    for _ in 0..reps {
        let start = Instant::now();
        let plan = Plan::parse(
            &text,
            Path::new("big.toml"),
            PlanFormat::Toml,
            &PlanOptions::default(),
        )
        .unwrap();
        samples.push(start.elapsed().as_secs_f64() * 1e3);
        assert_eq!(plan.tasks.len(), tasks);
    }
    let peak = peak_rss_bytes().unwrap_or(0);
    report.push(
        Row::new(
            "plan_100k_validate",
            median(&samples),
            "ms",
            Better::Lower,
            reps,
        )
        .goal("< 1000 ms, peak_rss < 300 MB")
        .extra("peak_rss", peak)
        .extra("peak_rss_growth", peak.saturating_sub(before))
        .extra("plan_bytes", text.len()),
    );
}

fn main() {
    let quick = quick_from_args();
    let args: Vec<String> = std::env::args().collect();
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let run = |id: &str| only.as_deref().is_none_or(|o| id.starts_with(o));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    if let Some(i) = args.iter().position(|a| a == "--forge-only") {
        let reps = args.get(i + 1).and_then(|r| r.parse().ok()).unwrap_or(1);
        forge_only(&rt, reps);
        return;
    }
    let mut report = Report::new("sched", quick);
    // Before anything grows the process: the namespace route forks the spawning process
    // (three times), so its cost grows with the parent's page tables (reported as parent_rss).
    if run("attempt_setup") {
        attempt_setup(&mut report, &rt, quick);
    }
    // The plan row next: its peak RSS is the process's peak.
    if run("plan_100k_validate") {
        plan_validate(&mut report, quick);
    }
    if run("sched_overhead_noop") {
        overhead(&mut report, &rt, quick);
    }
    if run("dag10k") {
        dag_vs_peers(&mut report, &rt, quick);
    }
    println!();
    print!("{}", report.table());
    match report.write() {
        Ok(path) => println!("wrote {}", path.display()),
        Err(e) => {
            eprintln!("bench-sched: cannot write the report: {e}");
            std::process::exit(1);
        }
    }
}
