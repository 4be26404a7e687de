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
//! Rows from issue #24:
//! - `orchestrator_cpu_per_task_ms`: CPU of the orchestrator (this process and the git commands
//!   it runs, without the agents' own CPU) per task, in the 50-agent run.
//! - `integrate_cost_growth`: that CPU per task for the last 10 of 500 tasks integrated one after
//!   another ÷ the first 10.
//! - `speedup_200_agents` (S = 10 s) and `rss_200_agents`: 200 agents at once in a child
//!   orchestrator; the sequential time is taken as 200 × S (a lower bound: the ratio is low).
//! - `first_agent_ms_100k`: from the start of a run to the first agent process on a 100,000-file
//!   repository, warm (its base snapshot exists) and cold (`extra`), against `git worktree add`.
//!
//! Rows from issue #19 (what containment costs end to end; `--only containment`):
//! - `containment_cost_10_agents`, `containment_cost_50_agents`: wall of the N-agent run with
//!   the default containment (each attempt in its own PID namespace, the repository path showing
//!   its workspace) ÷ wall of the same run without it (`ProcessOptions { pid_namespace: false,
//!   .. }`), runs alternating; a third variant adds a cgroup per attempt (`extra`). The git
//!   repository in each workspace cannot be switched off through the public API: both sides
//!   have it.
//! - `containment_cpu_per_task_ms`: orchestrator CPU per task (as `orchestrator_cpu_per_task_ms`)
//!   in the 50-agent run with containment, against the same without it (the peer).
//!
//! The binary is its own simulated agent (`bench-e2e sim-agent …` runs `forge_agents::sim`) and
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
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use forge_agents::Profiles;
use forge_benches::{Better, Report, Row, median, quick_from_args};
use forge_events::RunId;
use forge_exec::plan::{Plan, PlanFormat, PlanOptions};
use forge_exec::store::RunStore;
use forge_exec::{ApplyMode, CancelHandle, ExecutionManager, ProcessOptions, RunReport};
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

/// Where each simulated agent appends `<task> <start ms> <own CPU ns>` when it ends.
static AGENT_LOG: OnceLock<PathBuf> = OnceLock::new();

fn profiles() -> Profiles {
    let mut p = Profiles::builtin();
    let mut args = vec!["sim-agent".to_owned()];
    if let Some(log) = AGENT_LOG.get() {
        args.extend(["--bench-log".to_owned(), log.display().to_string()]);
    }
    p.set_sim_program(std::env::current_exe().unwrap(), args);
    p
}

/// CPU time this thread group has run, in ns (the sum over its threads' `schedstat`).
fn self_cpu_ns() -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) {
            total += text
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    total
}

/// CPU time the calling thread has run, in ns (its `schedstat`).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU of this process (ns, exact) plus its reaped children (10 ms ticks), in ms.
fn orchestrator_cpu_ms() -> f64 {
    self_cpu_ns() as f64 / 1e6 + cpu_ms().1
}

/// The agents' log lines: task, start (ms since the epoch), own CPU (ms).
fn agent_log() -> Vec<(String, u64, f64)> {
    let Some(path) = AGENT_LOG.get() else {
        return Vec::new();
    };
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let task = f.next()?.to_owned();
            let start = f.next()?.parse().ok()?;
            let cpu: u64 = f.next()?.parse().ok()?;
            Some((task, start, cpu as f64 / 1e6))
        })
        .collect()
}

fn clear_agent_log() {
    if let Some(path) = AGENT_LOG.get() {
        let _ = std::fs::remove_file(path);
    }
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
///
/// The wall is the manager's construction plus its run, not the client's connection before
/// it. The client runs on a thread of its own, whose CPU (parsing every frame) is taken out of
/// the orchestrator's: it is the bench's, not Forge's (the server side stays in).
fn run_with_sse(
    rt: &tokio::runtime::Runtime,
    repo: &Path,
    plan: &str,
    tasks: usize,
) -> (Duration, Vec<u64>, f64) {
    clear_agent_log();
    let cpu_before = cpu_ms();
    let orchestrator_before = orchestrator_cpu_ms();
    let start = Instant::now();
    let m = manager(repo, parse(plan), ApplyMode::WorkingTree);
    let built = start.elapsed();
    let run = m.run_id().clone();
    let runs_dir = m.store().runs_dir();
    let bus = m.bus();
    let (wall, received, client_cpu_ms) = rt.block_on(async {
        let server = forge_events::http::Server::start(
            "127.0.0.1:0".parse().unwrap(),
            runs_dir,
            forge_events::http::ServeOptions::default().attach(bus),
        )
        .await
        .unwrap();
        let addr = server.local_addr();
        let client_run = run.clone();
        let client = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let received = rt.block_on(sse_progress(addr, client_run));
            (received, thread_cpu_ns() as f64 / 1e6)
        });
        // Let the client connect before the first agent speaks.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        let report = m.run(CancelHandle::new()).await.unwrap();
        let wall = built + started.elapsed();
        assert_eq!(report.exit_code(), 0, "{report:#?}");
        let mut joined = tokio::task::spawn_blocking(move || client.join().unwrap());
        // The client ends at `run_finished`; should that never come, ending the server ends it.
        let (received, client_cpu) =
            match tokio::time::timeout(Duration::from_secs(30), &mut joined).await {
                Ok(joined) => {
                    server.shutdown();
                    joined.unwrap()
                }
                Err(_) => {
                    server.shutdown();
                    joined.await.unwrap()
                }
            };
        (wall, received, client_cpu)
    });
    let cpu_after = cpu_ms();
    let agents_cpu: f64 = agent_log().iter().map(|(_, _, cpu)| cpu).sum();
    let orchestrator =
        (orchestrator_cpu_ms() - orchestrator_before - agents_cpu - client_cpu_ms) / tasks as f64;
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
    (wall, delays, orchestrator)
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

/// Runs `tasks` quick tasks one after another and returns the orchestrator's CPU (ms, agents'
/// own CPU taken out) spent on each task after the first: from one integration to the next.
fn integrate_costs(rt: &tokio::runtime::Runtime, repo: &Path, tasks: usize) -> Vec<f64> {
    clear_agent_log();
    let mut text = String::from(
        "name = \"growth\"\nconcurrency = 1\n[defaults]\nagent = \"sim\"\n[gate]\ncommands = [\"true\"]\n",
    );
    for i in 0..tasks {
        let _ = write!(
            text,
            "[[task]]\nid = \"t{i}\"\nwrites = [\"out/t{i}.txt\"]\nappends = [\"CHANGES.md\"]\n\
             prompt = '''\n```forge-sim\nwrite out/t{i}.txt\nresult of {i}\nend\nappend CHANGES.md - task {i}\n```\n'''\n"
        );
    }
    let m = manager(repo, parse(&text), ApplyMode::None);
    let bus = m.bus();
    let marks = rt.block_on(async {
        let mut sub = bus.subscribe();
        let watcher = tokio::spawn(async move {
            let mut marks: Vec<(String, f64)> = Vec::new();
            while let Ok(Some(event)) = sub.recv().await {
                match &event.kind {
                    forge_events::EventKind::MergeIntegrated { .. } => marks.push((
                        event
                            .task
                            .as_ref()
                            .map(|t| t.as_str().to_owned())
                            .unwrap_or_default(),
                        orchestrator_cpu_ms(),
                    )),
                    forge_events::EventKind::RunFinished { .. } => break,
                    _ => {}
                }
            }
            marks
        });
        let report = m.run(CancelHandle::new()).await.unwrap();
        assert_eq!(report.exit_code(), 0, "{report:#?}");
        watcher.await.unwrap()
    });
    assert_eq!(marks.len(), tasks, "one integration per task");
    let agents: HashMap<String, f64> = agent_log()
        .into_iter()
        .map(|(task, _, cpu)| (task, cpu))
        .collect();
    reset(repo);
    marks
        .windows(2)
        .map(|w| w[1].1 - w[0].1 - agents.get(&w[1].0).copied().unwrap_or(0.0))
        .collect()
}

/// A committed git repository of `files` small files (1,000 per directory), checked out.
fn generate_big_repo(dir: &Path, files: usize) {
    git(dir, &["init", "-q", "-b", "main"]);
    let mut stream = String::from(
        "commit refs/heads/main\ncommitter Forge Bench <bench@forge.invalid> 0 +0000\ndata 9\ngenerated\n",
    );
    let _ = write!(stream, "M 100644 inline .gitignore\ndata 8\n.forge/\n\n");
    for i in 0..files {
        let content = format!("file {i}: some text that an agent might read\n");
        let _ = write!(
            stream,
            "M 100644 inline d{:03}/f{:03}.txt\ndata {}\n{content}\n",
            i / 1000,
            i % 1000,
            content.len()
        );
    }
    let mut child = Command::new("git")
        .current_dir(dir)
        .args(["fast-import", "--quiet"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stream.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    git(dir, &["reset", "-q", "--hard", "main"]);
}

/// From the start of a run (building its manager) to the first agent process, in ms.
fn first_agent_ms(rt: &tokio::runtime::Runtime, repo: &Path) -> f64 {
    clear_agent_log();
    let plan = "name = \"first\"\n[defaults]\nagent = \"sim\"\n[[task]]\nid = \"one\"\n\
                writes = [\"x.txt\"]\nprompt = '''\n```forge-sim\nsay hello\n```\n'''\n";
    let started = now_ms();
    let m = manager(repo, parse(plan), ApplyMode::None);
    let report = rt.block_on(m.run(CancelHandle::new())).unwrap();
    assert_eq!(report.exit_code(), 0, "{report:#?}");
    let first = agent_log().iter().map(|(_, at, _)| *at).min().unwrap();
    first.saturating_sub(started) as f64
}

/// `git worktree add` of `repo` (a new detached worktree), in ms; the worktree is removed.
fn worktree_add_ms(repo: &Path, at: &Path) -> f64 {
    let start = Instant::now();
    git(
        repo,
        &["worktree", "add", "-q", "--detach", at.to_str().unwrap()],
    );
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    git(
        repo,
        &["worktree", "remove", "--force", at.to_str().unwrap()],
    );
    ms
}

#[allow(clippy::too_many_lines)] // the rows, one after another
fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("sim-agent") => {
            let started = now_ms();
            let (log, rest) = match args.get(2).map(String::as_str) {
                Some("--bench-log") => (args.get(3).cloned(), &args[4..]),
                _ => (None, &args[2..]),
            };
            let code = forge_agents::sim::main(
                rest.iter().map(Into::into),
                &mut std::io::stdout().lock(),
                &mut std::io::stderr().lock(),
            );
            if let Some(log) = log {
                let task = std::env::var("FORGE_TASK_ID").unwrap_or_default();
                // The pid and directory say whether it ran contained (`containment_cost_*`).
                let cwd = std::env::current_dir().unwrap_or_default();
                let line = format!(
                    "{task} {started} {} {} {}\n",
                    self_cpu_ns(),
                    std::process::id(),
                    cwd.display()
                );
                // One short append: lines of concurrent agents do not interleave.
                if let Ok(mut f) = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
                {
                    let _ = f.write_all(line.as_bytes());
                }
            }
            std::process::exit(code);
        }
        Some("orchestrate") => {
            if let Some(log) = args.get(4) {
                let _ = AGENT_LOG.set(PathBuf::from(log));
            }
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
        (200, 10, Duration::from_millis(300), 200)
    } else {
        (200, 50, Duration::from_secs(2), 1000)
    };
    // Rows from issue #24: tasks integrated one after another, the 200-agent wall, the big
    // repository.
    let (growth_tasks, s200, big_files) = if quick {
        (200, Duration::from_secs(3), 20_000)
    } else {
        (500, Duration::from_secs(10), 100_000)
    };
    let guard = tempfile::tempdir().unwrap();
    let root = guard.path().to_path_buf();
    // `--keep`: leave the repository and its run store for inspection.
    let keep = args.iter().any(|a| a == "--keep");
    let _guard = if keep {
        println!("keeping {}", guard.keep().display());
        None
    } else {
        Some(guard)
    };
    let _ = AGENT_LOG.set(root.join("agents.log"));
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
            .goal(">= 9.7")
            .extra("wall_parallel_ms", p10.as_millis() as u64)
            .extra("wall_sequential_ms", s10.as_millis() as u64),
        );
    }

    // 50 agents, with an SSE client for the event delays.
    if selected("speedup_50") {
        let (p50, delays, orchestrator) = run_with_sse(&rt, &repo, &plan_text(50, 50, sleep), 50);
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
            .goal(">= 47")
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
                "orchestrator_cpu_per_task_ms",
                orchestrator,
                "ms",
                Better::Lower,
                1,
            )
            .goal("<= 3")
            .extra("agents", 50),
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

    // Issue 19: the same runs with and without containment, alternating (next to the
    // speedup rows: the namespace route forks this process, so its size matters).
    if selected("containment") {
        containment_rows(&rt, &repo, sleep, quick, &mut report);
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

    // CPU per task as the integrated tree grows: the last 10 of N tasks against the first 10.
    if selected("integrate_cost") {
        let costs = integrate_costs(&rt, &repo, growth_tasks);
        let n = costs.len();
        let first: f64 = costs[..10].iter().sum::<f64>() / 10.0;
        let last: f64 = costs[n - 10..].iter().sum::<f64>() / 10.0;
        println!(
            "{growth_tasks} tasks one after another: {first:.2} ms of CPU per task for the first 10, {last:.2} ms for the last 10"
        );
        report.push(
            Row::new(
                "integrate_cost_growth",
                last / first,
                "ratio",
                Better::Lower,
                1,
            )
            .goal("<= 1.2")
            .extra("first_10_ms", first)
            .extra("last_10_ms", last)
            .extra("mean_ms", costs.iter().sum::<f64>() / n as f64)
            .extra("tasks", growth_tasks as u64),
        );
    }

    // 200 agents at once, in a child orchestrator whose peak RSS is its own.
    if selected("speedup_200") || selected("rss_200") {
        let plan_file = root.join("plan200.toml");
        std::fs::write(&plan_file, plan_text(200, 200, s200)).unwrap();
        let start = Instant::now();
        let out = Command::new(std::env::current_exe().unwrap())
            .arg("orchestrate")
            .arg(&repo)
            .arg(&plan_file)
            .output()
            .unwrap();
        let wall = start.elapsed();
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
        let sequential = 200.0 * s200.as_secs_f64();
        println!(
            "200 agents: {:.2} s at once (S = {} s)",
            wall.as_secs_f64(),
            s200.as_secs()
        );
        report.push(
            Row::new(
                "speedup_200_agents",
                sequential / wall.as_secs_f64(),
                "ratio",
                Better::Higher,
                1,
            )
            .goal(">= 180")
            .extra("wall_parallel_ms", wall.as_millis() as u64)
            .extra("sequential_lower_bound_ms", (sequential * 1000.0) as u64)
            .extra("s_ms", s200.as_millis() as u64),
        );
        report.push(
            Row::new("rss_200_agents", rss as f64, "bytes", Better::Lower, 1).goal("< 64 MiB"),
        );
    }

    // The first agent on a big repository, cold (no base snapshot) and warm, against
    // `git worktree add` of the same repository.
    if selected("first_agent") {
        let big = root.join("big");
        std::fs::create_dir(&big).unwrap();
        let started = Instant::now();
        generate_big_repo(&big, big_files);
        println!(
            "generated {big_files} files in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        // Cold before the peer's first worktree: removing that worktree frees 100,000 inodes,
        // and on a file system without a journal (this machine's ext4) the inode allocator
        // then skips each recently freed inode, one by one, for a minute or more: whatever
        // creates files next pays for it (`perf`: `recently_deleted` under `ext4_create`). In
        // this order both firsts follow only the repository's generation.
        let cold = first_agent_ms(&rt, &big);
        let peer_first = worktree_add_ms(&big, &root.join("wt-0"));
        let (mut warm, mut peer) = (Vec::new(), vec![peer_first]);
        for k in 1..=3 {
            warm.push(first_agent_ms(&rt, &big));
            peer.push(worktree_add_ms(&big, &root.join(format!("wt-{k}"))));
        }
        let (warm, peer) = (median(&warm), median(&peer));
        println!(
            "first agent on {big_files} files: {cold:.0} ms cold, {warm:.0} ms warm; git worktree add {peer_first:.0} ms first, {peer:.0} ms median"
        );
        report.push(
            Row::new("first_agent_ms_100k", warm, "ms", Better::Lower, 3)
                .peer("git-worktree-add", peer)
                .goal("warm <= 50, cold < peer's first")
                .extra("cold_ms", cold)
                .extra("peer_first_ms", peer_first)
                .extra("files", big_files as u64),
        );
        if !keep {
            let _ = std::fs::remove_dir_all(&big);
        }
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

/// How the attempts of one run of the containment rows are contained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Containment {
    /// The builder's defaults: each attempt in its own PID namespace, the repository path
    /// showing its workspace (a private mount namespace), a git repository in the workspace.
    Contained,
    /// The defaults plus a cgroup per attempt (a `memory` limit no task comes near).
    Cgroup,
    /// `ProcessOptions { pid_namespace: false, .. }`: the attempt runs in its process group
    /// at its workspace's own path (the repository view needs the namespace). The workspace's
    /// git repository stays: the public API has no switch for it.
    Uncontained,
}

/// What one run of the containment rows measured.
struct ContainmentRun {
    wall_ms: f64,
    /// Orchestrator CPU per task (ms), the agents' own CPU taken out.
    cpu_per_task_ms: f64,
    /// Agents that ran contained: PID 2 in their namespace (its init is 1), at the repository
    /// path (the view).
    contained: usize,
    /// Agents that logged their end.
    agents: usize,
    /// From the first agent's start to the last one's (ms).
    start_spread_ms: f64,
}

/// The e2e workload (`tasks` agents at once) contained as `how`, with the apply.
fn containment_run(
    rt: &tokio::runtime::Runtime,
    repo: &Path,
    tasks: usize,
    sleep: Duration,
    how: Containment,
) -> ContainmentRun {
    let mut text = plan_text(tasks, tasks, sleep);
    if how == Containment::Cgroup {
        text = text.replacen("[defaults]\n", "[defaults]\nmemory = \"4G\"\n", 1);
    }
    clear_agent_log();
    let cpu_before = orchestrator_cpu_ms();
    let start = Instant::now();
    let mut builder = ExecutionManager::builder()
        .repo(repo)
        .plan(parse(&text))
        .profiles(profiles())
        .apply(ApplyMode::WorkingTree);
    if how == Containment::Uncontained {
        builder = builder.process_options(ProcessOptions {
            pid_namespace: false,
            ..ProcessOptions::default()
        });
    }
    let report = rt
        .block_on(builder.build().unwrap().run(CancelHandle::new()))
        .unwrap();
    let wall_ms = start.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(report.exit_code(), 0, "{how:?}: {report:#?}");
    let cpu_after = orchestrator_cpu_ms();
    let repo_path = std::fs::canonicalize(repo).unwrap();
    let log = AGENT_LOG
        .get()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    let (mut agents_cpu, mut contained, mut agents) = (0.0, 0, 0);
    let (mut first, mut last) = (u64::MAX, 0);
    for line in log.lines() {
        // `<task> <start ms> <own CPU ns> <pid> <directory>`
        let f: Vec<&str> = line.splitn(5, ' ').collect();
        let [_, start, cpu, pid, cwd] = f[..] else {
            continue;
        };
        agents += 1;
        if let Ok(start) = start.parse::<u64>() {
            first = first.min(start);
            last = last.max(start);
        }
        agents_cpu += cpu.parse::<u64>().unwrap_or(0) as f64 / 1e6;
        if pid == "2" && Path::new(cwd) == repo_path {
            contained += 1;
        }
    }
    assert_eq!(agents, tasks, "{how:?}: every agent logs its end");
    reset(repo);
    ContainmentRun {
        wall_ms,
        cpu_per_task_ms: (cpu_after - cpu_before - agents_cpu) / tasks as f64,
        contained,
        agents,
        start_spread_ms: last.saturating_sub(first) as f64,
    }
}

/// The medians of one variant's runs: wall (ms), CPU per task (ms), share of agents contained.
fn containment_medians(runs: &[ContainmentRun]) -> (f64, f64, f64) {
    let wall: Vec<f64> = runs.iter().map(|r| r.wall_ms).collect();
    let cpu: Vec<f64> = runs.iter().map(|r| r.cpu_per_task_ms).collect();
    let contained: usize = runs.iter().map(|r| r.contained).sum();
    let agents: usize = runs.iter().map(|r| r.agents).sum();
    (
        median(&wall),
        median(&cpu),
        contained as f64 / agents.max(1) as f64,
    )
}

/// The median time from the first agent's start to the last one's, over `runs`.
fn start_spread(runs: &[ContainmentRun]) -> f64 {
    median(&runs.iter().map(|r| r.start_spread_ms).collect::<Vec<_>>())
}

/// `containment_cost_<tasks>_agents` from one size's runs, and the CPU per task (ms) with
/// containment, without it and with a cgroup besides (when that variant ran).
fn containment_cost_row(
    tasks: usize,
    reps: usize,
    sleep: Duration,
    runs: &HashMap<Containment, Vec<ContainmentRun>>,
) -> (Row, (f64, f64, Option<f64>)) {
    let (wall_on, cpu_on, share_on) = containment_medians(&runs[&Containment::Contained]);
    let (wall_off, cpu_off, share_off) = containment_medians(&runs[&Containment::Uncontained]);
    if share_on < 1.0 || share_off > 0.0 {
        println!(
            "containment: {:.0} % of the contained agents and {:.0} % of the others ran in a PID namespace at the repository path; the rows do not compare what they say",
            share_on * 100.0,
            share_off * 100.0
        );
    }
    let mut row = Row::new(
        &format!("containment_cost_{tasks}_agents"),
        wall_on / wall_off,
        "ratio",
        Better::Lower,
        reps,
    )
    .goal("<= 1.10")
    .extra("wall_contained_ms", wall_on)
    .extra("wall_uncontained_ms", wall_off)
    .extra("cpu_per_task_contained_ms", cpu_on)
    .extra("cpu_per_task_uncontained_ms", cpu_off)
    .extra("contained_share", share_on)
    .extra("uncontained_share", share_off)
    .extra(
        "start_spread_contained_ms",
        start_spread(&runs[&Containment::Contained]),
    )
    .extra(
        "start_spread_uncontained_ms",
        start_spread(&runs[&Containment::Uncontained]),
    )
    .extra("s_ms", sleep.as_millis() as u64)
    .extra(
        "orchestrator_rss_bytes",
        forge_benches::current_rss_bytes().unwrap_or(0),
    );
    let mut cpu_cgroup = None;
    if let Some(cg) = runs.get(&Containment::Cgroup) {
        let (wall_cg, cpu_cg, _) = containment_medians(cg);
        cpu_cgroup = Some(cpu_cg);
        row = row
            .extra("wall_cgroup_ms", wall_cg)
            .extra("cgroup_cost", wall_cg / wall_off)
            .extra("cpu_per_task_cgroup_ms", cpu_cg);
    }
    (row, (cpu_on, cpu_off, cpu_cgroup))
}

/// Issue 19's rows: the 10- and 50-agent runs with the default containment, with a cgroup per
/// attempt besides, and without containment, alternating (the order reversed every other
/// repetition, so neither side always runs first).
fn containment_rows(
    rt: &tokio::runtime::Runtime,
    repo: &Path,
    sleep: Duration,
    quick: bool,
    report: &mut Report,
) {
    let reps = if quick { 3 } else { 5 };
    // Asking for a limit where no cgroup can be made fails the run: probe first.
    let probe = forge_exec::process::AttemptCgroup::create(
        "bench-probe",
        &forge_exec::process::Limits {
            memory: Some(4 << 30),
            cpus: None,
        },
    );
    let mut variants = vec![Containment::Contained, Containment::Uncontained];
    match probe {
        Ok(group) => {
            drop(group);
            variants.push(Containment::Cgroup);
        }
        Err(e) => println!("containment: no cgroup variant, this host gives none: {e}"),
    }
    let mut cpu_at = HashMap::new();
    for tasks in [10, 50] {
        let mut runs: HashMap<Containment, Vec<ContainmentRun>> = HashMap::new();
        for rep in 0..reps {
            let mut order = variants.clone();
            if rep % 2 == 1 {
                order.reverse();
            }
            for how in order {
                let run = containment_run(rt, repo, tasks, sleep, how);
                println!(
                    "containment, {tasks} agents, {how:?}: {:.0} ms, orchestrator CPU {:.1} ms/task, agents started within {:.0} ms, {} of {} agents contained",
                    run.wall_ms,
                    run.cpu_per_task_ms,
                    run.start_spread_ms,
                    run.contained,
                    run.agents
                );
                runs.entry(how).or_default().push(run);
            }
        }
        let (row, cpu) = containment_cost_row(tasks, reps, sleep, &runs);
        report.push(row);
        cpu_at.insert(tasks, cpu);
    }
    let (cpu_on, cpu_off, cpu_cgroup) = cpu_at[&50];
    let mut row = Row::new(
        "containment_cpu_per_task_ms",
        cpu_on,
        "ms",
        Better::Lower,
        reps,
    )
    .peer("forge-uncontained", cpu_off)
    .goal("within 10 % of the peer")
    .extra("agents", 50)
    .extra("at_10_agents_ms", cpu_at[&10].0)
    .extra("at_10_agents_uncontained_ms", cpu_at[&10].1);
    if let Some(cg) = cpu_cgroup {
        row = row.extra("cgroup_ms", cg);
    }
    report.push(row);
}
