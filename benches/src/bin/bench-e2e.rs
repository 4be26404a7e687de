//! bench-e2e: is N agents really N times faster? The whole pipeline — locks, staging, the
//! simulated agent as a real process, capture, persistence, merge queue, gate, apply — on a
//! generated 10,000-file git repository, at concurrency N against the same plan at concurrency 1.
//!
//! Rows (ids from issue #11):
//! - `speedup_10_agents`, `speedup_50_agents`: wall at concurrency 1 / wall at concurrency N.
//! - `overhead_per_task_ms`: (wall at concurrency 50 − S × waves) / tasks.
//! - `rss_100_agents`: peak RSS of an orchestrator process running 100 agents at once.
//! - `events_p99_ms`: agent prints a progress line → the event reaches an SSE client (50 agents).
//! - `resume_ms`: `resume` of a 1,000-task run rebuilding its state from the journal.
//!
//! The binary is its own simulated agent (`bench-e2e sim-agent …` runs `forge_exec::sim`) and
//! its own orchestrator child for the memory row (`bench-e2e orchestrate <repo> <plan>`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)] // a bench binary
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss,
    clippy::similar_names
)] // figures for a report

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use forge_benches::{Better, Report, Row, median, quick_from_args};
use forge_events::RunId;
use forge_exec::agent::Profiles;
use forge_exec::plan::{Plan, PlanFormat, PlanOptions};
use forge_exec::store::RunStore;
use forge_exec::{ApplyMode, CancelHandle, ExecutionManager, RunReport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A git repository of `dirs` × `per_dir` small text files, committed.
fn generate_repo(dir: &Path, dirs: usize, per_dir: usize) {
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["config", "user.name", "Forge Bench"]);
    git(dir, &["config", "user.email", "bench@forge.invalid"]);
    std::fs::write(dir.join(".gitignore"), ".forge/\n").unwrap();
    std::fs::write(dir.join("CHANGES.md"), "# Changes\n").unwrap();
    for d in 0..dirs {
        let sub = dir.join(format!("d{d:03}"));
        std::fs::create_dir_all(&sub).unwrap();
        for f in 0..per_dir {
            let mut text = String::new();
            for line in 0..40 {
                let _ = writeln!(text, "file {f} of directory {d}, line {line}");
            }
            std::fs::write(sub.join(format!("f{f:03}.txt")), text).unwrap();
        }
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "generated"]);
}

/// Puts the working tree back to the commit (between runs that apply).
fn reset(dir: &Path) {
    git(dir, &["reset", "-q", "--hard"]);
    git(dir, &["clean", "-q", "-fd", "-e", ".forge"]);
}

/// A plan of `tasks` sim agents, each sleeping `sleep` in ten steps (saying something at each)
/// then editing files in its own directory and appending to the shared CHANGES.md.
fn plan_text(tasks: usize, concurrency: usize, sleep: Duration) -> String {
    let step = sleep / 10;
    let mut text = format!(
        "name = \"e2e\"\nconcurrency = {concurrency}\n[defaults]\nagent = \"sim\"\n\
         [gate]\ncommands = [\"true\"]\n"
    );
    for i in 0..tasks {
        let dir = format!("d{i:03}");
        let mut script = String::new();
        for k in 0..10 {
            let _ = writeln!(script, "say agent {i} step {k}");
            let _ = writeln!(script, "sleep {}ms", step.as_millis());
        }
        let _ = writeln!(
            script,
            "replace {dir}/f000.txt line 0 => line 0, edited by agent {i}"
        );
        let _ = writeln!(script, "write {dir}/agent.txt\nwritten by agent {i}\nend");
        let _ = writeln!(script, "append CHANGES.md - agent {i}");
        let _ = write!(
            text,
            "[[task]]\nid = \"agent{i}\"\nwrites = [\"{dir}/**\"]\nappends = [\"CHANGES.md\"]\n\
             prompt = '''\n```forge-sim\n{script}```\n'''\n"
        );
    }
    text
}

fn parse(text: &str) -> Plan {
    Plan::parse(
        text,
        Path::new("plan.toml"),
        PlanFormat::Toml,
        &PlanOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{}", e.render()))
}

fn profiles() -> Profiles {
    let mut p = Profiles::builtin();
    p.set_sim_program(std::env::current_exe().unwrap(), vec!["sim-agent".into()]);
    p
}

fn manager(repo: &Path, plan: Plan, apply: ApplyMode) -> ExecutionManager {
    ExecutionManager::builder()
        .repo(repo)
        .plan(plan)
        .profiles(profiles())
        .apply(apply)
        .build()
        .unwrap()
}

/// Runs `plan` (with the apply) and returns its wall time and report.
fn timed_run(rt: &tokio::runtime::Runtime, repo: &Path, plan: &str) -> (Duration, RunReport) {
    let start = Instant::now();
    let m = manager(repo, parse(plan), ApplyMode::WorkingTree);
    let report = rt.block_on(m.run(CancelHandle::new())).unwrap();
    let wall = start.elapsed();
    assert_eq!(report.exit_code(), 0, "{report:#?}");
    reset(repo);
    (wall, report)
}

/// CPU time (user + system) of this process and of its reaped children, in ms, from
/// `/proc/self/stat` (clock ticks of 10 ms).
fn cpu_ms() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // Fields 14-17 of stat(5), counted from the state (field 3) at index 0.
    ((f[11] + f[12]) * 10.0, (f[13] + f[14]) * 10.0)
}

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// Reads SSE frames from `/api/runs/<run>/events`, noting when each `task_progress` arrived
/// (by task and message) until `run_finished`.
async fn sse_progress(addr: std::net::SocketAddr, run: RunId) -> HashMap<(String, String), u64> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let request = format!(
        "GET /api/runs/{run}/events HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut seen = HashMap::new();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match tokio::time::timeout(Duration::from_mins(10), stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => break,
        };
        let at = now_ms();
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let frame: Vec<u8> = buf.drain(..end + 2).collect();
            let frame = String::from_utf8_lossy(&frame);
            for line in frame.lines() {
                let Some(data) = line.strip_prefix("data:") else {
                    continue;
                };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(data.trim()) else {
                    continue;
                };
                match v["type"].as_str() {
                    Some("task_progress") => {
                        let task = v["task"].as_str().unwrap_or_default().to_owned();
                        let message = v["message"].as_str().unwrap_or_default().to_owned();
                        seen.entry((task, message)).or_insert(at);
                    }
                    Some("run_finished") => return seen,
                    _ => {}
                }
            }
        }
    }
    seen
}

/// When each agent printed each assistant message: the `timestamp` (ms) of its droid-format
/// lines in `output.log`.
fn printed(repo: &Path, run: &RunId, tasks: usize) -> HashMap<(String, String), u64> {
    let store = RunStore::new(repo);
    let mut out = HashMap::new();
    for i in 0..tasks {
        let task = format!("agent{i}");
        let Ok(log) = std::fs::read_to_string(store.log_path(run, &task, 1)) else {
            continue;
        };
        for line in log.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if v["type"] == "message"
                && v["role"] == "assistant"
                && let (Some(text), Some(ts)) = (v["text"].as_str(), v["timestamp"].as_u64())
            {
                out.insert((task.clone(), text.to_owned()), ts);
            }
        }
    }
    out
}

/// The 50-agent run with an SSE client attached: wall time and the event delays.
fn run_with_sse(
    rt: &tokio::runtime::Runtime,
    repo: &Path,
    plan: &str,
    tasks: usize,
) -> (Duration, Vec<u64>) {
    let start = Instant::now();
    let cpu_before = cpu_ms();
    let m = manager(repo, parse(plan), ApplyMode::WorkingTree);
    let run = m.run_id().clone();
    let runs_dir = m.store().runs_dir();
    let bus = m.bus();
    let (wall, received) = rt.block_on(async {
        let server = forge_events::http::Server::start(
            "127.0.0.1:0".parse().unwrap(),
            runs_dir,
            forge_events::http::ServeOptions::default().attach(bus),
        )
        .await
        .unwrap();
        let client = tokio::spawn(sse_progress(server.local_addr(), run.clone()));
        // Let the client connect before the first agent speaks.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let report = m.run(CancelHandle::new()).await.unwrap();
        let wall = start.elapsed();
        assert_eq!(report.exit_code(), 0, "{report:#?}");
        let received = tokio::time::timeout(Duration::from_secs(30), client)
            .await
            .unwrap()
            .unwrap();
        server.shutdown();
        (wall, received)
    });
    let cpu_after = cpu_ms();
    println!(
        "{tasks} agents at once: orchestrator CPU {:.1} ms/task, agents' CPU {:.1} ms/task",
        (cpu_after.0 - cpu_before.0) / tasks as f64,
        (cpu_after.1 - cpu_before.1) / tasks as f64
    );
    let printed = printed(repo, &run, tasks);
    let mut delays: Vec<u64> = printed
        .iter()
        .filter_map(|(key, at)| received.get(key).map(|r| r.saturating_sub(*at)))
        .collect();
    assert!(
        delays.len() * 10 >= printed.len() * 9,
        "only {} of {} progress lines reached the client",
        delays.len(),
        printed.len()
    );
    delays.sort_unstable();
    reset(repo);
    (wall, delays)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64
}

/// Child mode: runs the plan at `plan` in `repo` and prints its own peak RSS.
fn orchestrate(repo: &Path, plan: &Path) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let text = std::fs::read_to_string(plan).unwrap();
    let m = manager(repo, parse(&text), ApplyMode::WorkingTree);
    let report = rt.block_on(m.run(CancelHandle::new())).unwrap();
    assert_eq!(report.exit_code(), 0, "{report:#?}");
    println!("rss={}", forge_benches::peak_rss_bytes().unwrap_or(0));
}

/// A finished run of `tasks` quick tasks whose journal lost its `run_finished` (as if the
/// process died at the very end), then `resume` timed.
fn resume_time(rt: &tokio::runtime::Runtime, repo: &Path, tasks: usize) -> Duration {
    let mut text = String::from(
        "name = \"resume\"\nconcurrency = 50\n[defaults]\nagent = \"sim\"\n[gate]\ncommands = [\"true\"]\n",
    );
    for i in 0..tasks {
        let _ = write!(
            text,
            "[[task]]\nid = \"t{i}\"\nwrites = [\"out/t{i}.txt\"]\nprompt = '''\n```forge-sim\nsay task {i}\nwrite out/t{i}.txt\nresult of {i}\nend\n```\n'''\n"
        );
    }
    let m = manager(repo, parse(&text), ApplyMode::None);
    let run = m.run_id().clone();
    let report = rt.block_on(m.run(CancelHandle::new())).unwrap();
    assert_eq!(report.exit_code(), 0, "{report:#?}");
    let journal = RunStore::new(repo).journal(&run);
    let mut bytes = std::fs::read(&journal).unwrap();
    bytes.pop(); // the last newline
    let cut = bytes.iter().rposition(|b| *b == b'\n').unwrap() + 1;
    assert!(String::from_utf8_lossy(&bytes[cut..]).contains("run_finished"));
    bytes.truncate(cut);
    let saved = bytes;
    let mut times = Vec::new();
    for _ in 0..3 {
        std::fs::write(&journal, &saved).unwrap();
        let start = Instant::now();
        let m = ExecutionManager::builder()
            .repo(repo)
            .resume(run.clone())
            .profiles(profiles())
            .build()
            .unwrap();
        let report = rt.block_on(m.run(CancelHandle::new())).unwrap();
        times.push(start.elapsed().as_secs_f64());
        assert_eq!(report.exit_code(), 0, "{report:#?}");
        assert!(report.resumed);
    }
    Duration::from_secs_f64(median(&times))
}

#[allow(clippy::too_many_lines)] // the rows, one after another
fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("sim-agent") => {
            let code = forge_exec::sim::main(
                args[2..].iter().map(Into::into),
                &mut std::io::stdout().lock(),
                &mut std::io::stderr().lock(),
            );
            std::process::exit(code);
        }
        Some("orchestrate") => {
            orchestrate(Path::new(&args[2]), Path::new(&args[3]));
            return;
        }
        _ => {}
    }
    let quick = quick_from_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (dirs, per_dir, sleep, resume_tasks) = if quick {
        (100, 20, Duration::from_millis(300), 200)
    } else {
        (100, 100, Duration::from_secs(2), 1000)
    };
    let guard = tempfile::tempdir().unwrap();
    let root = guard.path().to_path_buf();
    // `--keep`: leave the repository and its run store for inspection.
    let _guard = if args.iter().any(|a| a == "--keep") {
        println!("keeping {}", guard.keep().display());
        None
    } else {
        Some(guard)
    };
    let repo = root.join("repo");
    std::fs::create_dir(&repo).unwrap();
    let started = Instant::now();
    generate_repo(&repo, dirs, per_dir);
    println!(
        "generated {} files in {:.1} s; S = {} ms",
        dirs * per_dir,
        started.elapsed().as_secs_f64(),
        sleep.as_millis()
    );
    // Runs of one commit share its base snapshot: the first run of the commit captures it. Take
    // it now so every measured run starts alike.
    timed_run(&rt, &repo, &plan_text(1, 1, Duration::ZERO));
    let mut report = Report::new("e2e", quick);
    // `--only <prefix>`: the rows whose id starts with it.
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let selected = |id: &str| only.as_deref().is_none_or(|o| id.starts_with(o));
    let s_ms = sleep.as_secs_f64() * 1000.0;

    // 10 agents: concurrency 10 against 1, alternating.
    if selected("speedup_10") {
        let reps = if quick { 1 } else { 2 };
        let (mut par, mut seq) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            par.push(
                timed_run(&rt, &repo, &plan_text(10, 10, sleep))
                    .0
                    .as_secs_f64(),
            );
            seq.push(
                timed_run(&rt, &repo, &plan_text(10, 1, sleep))
                    .0
                    .as_secs_f64(),
            );
        }
        let (p10, s10) = (
            Duration::from_secs_f64(median(&par)),
            Duration::from_secs_f64(median(&seq)),
        );
        println!(
            "10 agents: {:.2} s at 10, {:.2} s at 1",
            p10.as_secs_f64(),
            s10.as_secs_f64()
        );
        report.push(
            Row::new(
                "speedup_10_agents",
                s10.as_secs_f64() / p10.as_secs_f64(),
                "ratio",
                Better::Higher,
                reps,
            )
            .goal(">= 9.5")
            .extra("wall_parallel_ms", p10.as_millis() as u64)
            .extra("wall_sequential_ms", s10.as_millis() as u64),
        );
    }

    // 50 agents, with an SSE client for the event delays.
    if selected("speedup_50") {
        let (p50, delays) = run_with_sse(&rt, &repo, &plan_text(50, 50, sleep), 50);
        let (s50, _) = timed_run(&rt, &repo, &plan_text(50, 1, sleep));
        println!(
            "50 agents: {:.2} s at 50, {:.2} s at 1",
            p50.as_secs_f64(),
            s50.as_secs_f64()
        );
        report.push(
            Row::new(
                "speedup_50_agents",
                s50.as_secs_f64() / p50.as_secs_f64(),
                "ratio",
                Better::Higher,
                1,
            )
            .goal(">= 45")
            .extra("wall_parallel_ms", p50.as_millis() as u64)
            .extra("wall_sequential_ms", s50.as_millis() as u64),
        );
        let overhead = (p50.as_secs_f64() * 1000.0 - s_ms) / 50.0;
        report.push(
            Row::new("overhead_per_task_ms", overhead, "ms", Better::Lower, 1)
                .goal("< 25")
                .extra(
                    "sequential_per_task_ms",
                    (s50.as_secs_f64() * 1000.0 - 50.0 * s_ms) / 50.0,
                ),
        );
        report.push(
            Row::new(
                "events_p99_ms",
                percentile(&delays, 0.99),
                "ms",
                Better::Lower,
                1,
            )
            .goal("< 50")
            .extra("p50_ms", percentile(&delays, 0.5))
            .extra("max_ms", percentile(&delays, 1.0))
            .extra("samples", delays.len() as u64),
        );
    }

    // 100 agents at once, in a child orchestrator whose peak RSS is its own.
    if selected("rss") {
        let plan_file = root.join("plan100.toml");
        std::fs::write(&plan_file, plan_text(100, 100, sleep)).unwrap();
        let out = Command::new(std::env::current_exe().unwrap())
            .arg("orchestrate")
            .arg(&repo)
            .arg(&plan_file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rss: u64 = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("rss=").map(|v| v.trim().parse().unwrap()))
            .unwrap();
        reset(&repo);
        #[allow(clippy::cast_precision_loss)]
        report.push(
            Row::new("rss_100_agents", rss as f64, "bytes", Better::Lower, 1).goal("< 64 MiB"),
        );
    }

    // Resume of a 1,000-task run.
    if selected("resume") {
        let resume = resume_time(&rt, &repo, resume_tasks);
        report.push(
            Row::new(
                "resume_ms",
                resume.as_secs_f64() * 1000.0,
                "ms",
                Better::Lower,
                3,
            )
            .goal("< 500")
            .extra("tasks", resume_tasks as u64),
        );
    }

    println!();
    print!("{}", report.table());
    match report.write() {
        Ok(path) => println!("wrote {}", path.display()),
        Err(e) => {
            eprintln!("cannot write the report: {e}");
            std::process::exit(1);
        }
    }
}
