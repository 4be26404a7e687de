//! bench-e2e-ray: the e2e scaling workload on a local two-node Ray cluster against the local
//! runner, in the same process run (issue #23).
//!
//! Rows:
//! - `ray_overhead_per_task_ms`: N simulated agents at once, each sleeping S: (wall − S) / N
//!   with every attempt a Ray job (tasks alternate between the two nodes), against the same
//!   plan on the local runner (the peer), alternating A B A B.
//! - `ship_<size>_first_ms`: shipping a start tree of 10k (and, without `--quick`, 100k) files
//!   to a node whose blob cache is empty: the order (the manifest), every blob, the lay-out of
//!   the workspace, as the node measures them (its first output line).
//! - `ship_<size>_incremental_ms`: the same node, its cache warm, after 10 files changed: only
//!   those blobs are sent; the manifest and the lay-out are still per attempt.
//!
//! `--ship-only` runs the shipping rows alone (both sizes unless `--quick`), for a machine where
//! the overhead row's many attempts would take too long.
//!
//! The binary is its own simulated agent (`bench-e2e-ray sim-agent …`) and, on the nodes, its
//! own `forge attempt` (`bench-e2e-ray attempt --server … --key …`). Ray comes from
//! `target/ray-venv` (see `.ci/run`), `FORGE_RAY_BIN` or `PATH`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)] // a bench binary
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss
)] // figures for a report

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use forge_agents::Profiles;
use forge_benches::{Better, Report, Row, median, quick_from_args};
use forge_exec::plan::{Plan, PlanFormat, PlanOptions};
use forge_exec::runner::node::{NodeAttempt, run_attempt};
use forge_exec::{ApplyMode, CancelHandle, ExecutionManager, RayConfig, RunReport, RunnerConfig};
use forge_testkit::ray::{NodeSpec, RayCluster};

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

/// A committed git repository of `files` small files (1,000 per directory) and `CHANGES.md`.
fn generate_repo(dir: &Path, files: usize) {
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["config", "user.name", "Forge Bench"]);
    git(dir, &["config", "user.email", "bench@forge.invalid"]);
    let mut stream = String::from(
        "commit refs/heads/main\ncommitter Forge Bench <bench@forge.invalid> 0 +0000\ndata 9\ngenerated\n",
    );
    let _ = write!(stream, "M 100644 inline .gitignore\ndata 8\n.forge/\n\n");
    let _ = write!(stream, "M 100644 inline CHANGES.md\ndata 10\n# Changes\n\n");
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

/// Puts the working tree back to the commit (between runs that apply).
fn reset(dir: &Path) {
    git(dir, &["reset", "-q", "--hard"]);
    git(dir, &["clean", "-q", "-fd", "-e", ".forge"]);
}

/// `tasks` sim agents at once, each sleeping `sleep` in ten steps, then editing a file of its
/// own directory and appending to `CHANGES.md`; tasks alternate between the two nodes (the
/// local runner ignores `resources`).
fn plan_text(tasks: usize, sleep: Duration) -> String {
    let step = sleep / 10;
    let mut text = format!(
        "name = \"e2e-ray\"\nconcurrency = {tasks}\n[defaults]\nagent = \"sim\"\n\
         [gate]\ncommands = [\"true\"]\n"
    );
    for i in 0..tasks {
        let dir = format!("d{i:03}");
        let node = if i % 2 == 0 { "head" } else { "second" };
        let mut script = String::new();
        for k in 0..10 {
            let _ = writeln!(script, "say agent {i} step {k}");
            let _ = writeln!(script, "sleep {}ms", step.as_millis());
        }
        let _ = writeln!(
            script,
            "replace {dir}/f000.txt some text => some text, edited by agent {i}"
        );
        let _ = writeln!(script, "write {dir}/agent.txt\nwritten by agent {i}\nend");
        let _ = writeln!(script, "append CHANGES.md - agent {i}");
        let _ = write!(
            text,
            "[[task]]\nid = \"agent{i}\"\nwrites = [\"{dir}/**\"]\nappends = [\"CHANGES.md\"]\n\
             resources = {{ {node} = 1 }}\nprompt = '''\n```forge-sim\n{script}```\n'''\n"
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
    p.set_sim_program(
        std::env::current_exe().unwrap(),
        vec!["sim-agent".to_owned()],
    );
    p
}

/// Runs `plan` in `repo` on `runner` (applying it), then resets the tree.
fn timed_run(
    rt: &tokio::runtime::Runtime,
    repo: &Path,
    plan: &str,
    runner: RunnerConfig,
) -> (Duration, RunReport) {
    let start = Instant::now();
    let m = ExecutionManager::builder()
        .repo(repo)
        .plan(parse(plan))
        .profiles(profiles())
        .apply(ApplyMode::WorkingTree)
        .runner(runner)
        .build()
        .unwrap();
    let report = rt.block_on(m.run(CancelHandle::new())).unwrap();
    let wall = start.elapsed();
    assert_eq!(report.exit_code(), 0, "{report:#?}");
    reset(repo);
    (wall, report)
}

/// The journal of `run` in `repo`.
fn journal(repo: &Path, run: &forge_events::RunId) -> Vec<serde_json::Value> {
    let path = repo.join(format!(".forge/runs/{run}/events.jsonl"));
    std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// What the node said of shipping the start tree: blobs fetched, bytes, and the order, blobs
/// and lay-out times (ms).
#[derive(Debug, Clone, Copy)]
struct Shipping {
    blobs: u64,
    bytes: u64,
    order_ms: f64,
    blobs_ms: f64,
    layout_ms: f64,
}

impl Shipping {
    fn total_ms(&self) -> f64 {
        self.order_ms + self.blobs_ms + self.layout_ms
    }
}

/// Reads the node's line "forge attempt on …: fetched N blob(s) … order A ms, blobs B ms
/// (C bytes), lay-out D ms".
fn shipping(events: &[serde_json::Value]) -> Shipping {
    let line = events
        .iter()
        .filter(|e| e["type"] == "task_output")
        .filter_map(|e| e["line"].as_str())
        .find(|l| l.starts_with("forge attempt on "))
        .unwrap_or_else(|| panic!("no shipping line in {events:#?}"));
    let number_after = |word: &str| -> f64 {
        let rest = &line[line
            .find(word)
            .unwrap_or_else(|| panic!("{word} in {line}"))
            + word.len()..];
        rest.trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a number after {word} in {line}"))
    };
    Shipping {
        blobs: number_after("fetched ") as u64,
        bytes: number_after("ms (") as u64,
        order_ms: number_after("order "),
        blobs_ms: number_after("blobs "),
        layout_ms: number_after("lay-out "),
    }
}

/// Per task, the time from `task_started` to `task_finished` (ms), median over the tasks.
fn attempt_ms(events: &[serde_json::Value]) -> f64 {
    let at = |e: &serde_json::Value| {
        chrono_ms(e["ts"].as_str().unwrap_or_default()).unwrap_or_else(|| panic!("a time in {e}"))
    };
    let mut starts = std::collections::HashMap::new();
    let mut spans = Vec::new();
    for e in events {
        let task = e["task"].as_str().unwrap_or_default().to_owned();
        match e["type"].as_str() {
            Some("task_started") => {
                starts.insert(task, at(e));
            }
            Some("task_finished") => {
                if let Some(s) = starts.get(&task) {
                    spans.push(at(e) - s);
                }
            }
            _ => {}
        }
    }
    median(&spans)
}

/// Milliseconds since midnight of an RFC 3339 time stamp (`2026-12-03T05:01:02.345Z`): enough
/// to subtract two stamps of one run.
fn chrono_ms(ts: &str) -> Option<f64> {
    let time = ts.split('T').nth(1)?.trim_end_matches('Z');
    let time = time.split(['+', '-']).next()?;
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(((h * 60.0 + m) * 60.0 + s) * 1000.0)
}

/// `bench-e2e-ray attempt --server URL --key KEY [--cache DIR]`: what `forge attempt` does.
fn attempt(args: &[String]) -> i32 {
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let cache = value("--cache")
        .or_else(|| std::env::var("FORGE_NODE_CACHE").ok())
        .map_or_else(
            || std::env::temp_dir().join("forge-node-objects"),
            PathBuf::from,
        );
    let at = NodeAttempt {
        server: value("--server").expect("--server"),
        key: value("--key").expect("--key"),
        token: std::env::var("FORGE_ATTEMPT_TOKEN").expect("FORGE_ATTEMPT_TOKEN"),
        cache,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    match rt.block_on(run_attempt(&at)) {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn ray_config(cluster: &RayCluster, cache: Option<&Path>) -> RunnerConfig {
    let mut config = RayConfig::new(&cluster.dashboard_url()).unwrap();
    std::env::current_exe()
        .unwrap()
        .display()
        .to_string()
        .clone_into(&mut config.forge);
    if let Some(cache) = cache {
        config
            .env
            .insert("FORGE_NODE_CACHE".into(), cache.display().to_string());
    }
    RunnerConfig::Ray(config)
}

#[allow(clippy::too_many_lines)] // the rows, one after another
fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("sim-agent") => {
            let code = forge_agents::sim::main(
                args[2..].iter().map(Into::into),
                &mut std::io::stdout().lock(),
                &mut std::io::stderr().lock(),
            );
            std::process::exit(code);
        }
        Some("attempt") => std::process::exit(attempt(&args[2..])),
        _ => {}
    }
    let quick = quick_from_args();
    let ship_only = args.iter().any(|a| a == "--ship-only");
    let Some(ray) = forge_testkit::ray::find() else {
        eprintln!(
            "bench-e2e-ray needs Ray: `python3 -m venv target/ray-venv && \
             target/ray-venv/bin/pip install 'ray[default]==2.60.0'` (or FORGE_RAY_BIN)"
        );
        std::process::exit(2);
    };
    let (tasks, sleep, repetitions, sizes): (usize, Duration, usize, &[(&str, usize)]) = if quick {
        (10, Duration::from_secs(1), 2, &[("10k", 10_000)])
    } else {
        (
            20,
            Duration::from_secs(2),
            3,
            &[("10k", 10_000), ("100k", 100_000)],
        )
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let cluster = RayCluster::start(
        &ray,
        &[
            NodeSpec::new(serde_json::json!({"head": 1000})),
            NodeSpec::new(serde_json::json!({"second": 1000})),
        ],
    )
    .unwrap_or_else(|e| panic!("the Ray cluster did not start: {e}"));
    println!(
        "two-node Ray cluster up in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let root = tempfile::tempdir().unwrap();
    let mut report = Report::new("e2e_ray", quick);

    if !ship_only {
        overhead(
            &rt,
            &cluster,
            root.path(),
            &mut report,
            tasks,
            sleep,
            repetitions,
        );
    }

    // Shipping start trees: a cold node cache, then a warm one after 10 files changed.
    // Shipping start trees: a cold node cache, then a warm one after 10 files changed.
    let one = "name = \"ship\"\n[defaults]\nagent = \"sim\"\n[[task]]\nid = \"one\"\n\
               writes = [\"x.txt\"]\nresources = { second = 1 }\nprompt = '''\n```forge-sim\n\
               say hello\n```\n'''\n";
    for &(label, files) in sizes {
        let repo = root.path().join(format!("ship-{label}"));
        std::fs::create_dir(&repo).unwrap();
        generate_repo(&repo, files);
        let cache = root.path().join(format!("node-cache-{label}"));
        let (first_wall, r) = timed_run(&rt, &repo, one, ray_config(&cluster, Some(&cache)));
        let first = shipping(&journal(&repo, &r.run));
        let (local_wall, _) = timed_run(&rt, &repo, one, RunnerConfig::Local);
        for i in 0..10 {
            let path = repo.join(format!("d000/f{i:03}.txt"));
            std::fs::write(&path, format!("file {i}, changed\n")).unwrap();
        }
        git(&repo, &["commit", "-q", "-am", "ten files changed"]);
        // The new commit's base snapshot, taken by a local run so it is not in the Ray row.
        timed_run(&rt, &repo, one, RunnerConfig::Local);
        let (next_wall, r) = timed_run(&rt, &repo, one, ray_config(&cluster, Some(&cache)));
        let next = shipping(&journal(&repo, &r.run));
        println!(
            "{label}: first {:.0} ms ({} blobs), incremental {:.0} ms ({} blobs)",
            first.total_ms(),
            first.blobs,
            next.total_ms(),
            next.blobs
        );
        for (id, s, wall) in [
            (format!("ship_{label}_first_ms"), first, first_wall),
            (format!("ship_{label}_incremental_ms"), next, next_wall),
        ] {
            report.push(
                Row::new(&id, s.total_ms(), "ms", Better::Lower, 1)
                    .extra("files", files as u64)
                    .extra("blobs_fetched", s.blobs)
                    .extra("bytes_fetched", s.bytes)
                    .extra("order_ms", s.order_ms as u64)
                    .extra("blobs_ms", s.blobs_ms as u64)
                    .extra("layout_ms", s.layout_ms as u64)
                    .extra("run_wall_ms", wall.as_millis() as u64)
                    .extra("local_run_wall_ms", local_wall.as_millis() as u64),
            );
        }
    }
    drop(cluster);
    print!("{}", report.table());
    let path = report.write().unwrap();
    println!("wrote {}", path.display());
}

/// Row `ray_overhead_per_task_ms`: N agents at once, local and Ray alternating.
fn overhead(
    rt: &tokio::runtime::Runtime,
    cluster: &RayCluster,
    root: &std::path::Path,
    report: &mut Report,
    tasks: usize,
    sleep: Duration,
    repetitions: usize,
) {
    let repo = root.join("repo");
    std::fs::create_dir(&repo).unwrap();
    generate_repo(&repo, 10_000);
    let plan = plan_text(tasks, sleep);
    let s_ms = sleep.as_secs_f64() * 1000.0;
    // The base snapshot once; the first Ray run fills the nodes' caches.
    timed_run(
        rt,
        &repo,
        &plan_text(1, Duration::ZERO),
        RunnerConfig::Local,
    );
    timed_run(rt, &repo, &plan, ray_config(cluster, None));
    let (mut local, mut on_ray, mut local_attempt, mut ray_attempt) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..repetitions {
        let (wall, r) = timed_run(rt, &repo, &plan, RunnerConfig::Local);
        local.push(wall.as_secs_f64() * 1000.0);
        local_attempt.push(attempt_ms(&journal(&repo, &r.run)) - s_ms);
        let (wall, r) = timed_run(rt, &repo, &plan, ray_config(cluster, None));
        on_ray.push(wall.as_secs_f64() * 1000.0);
        ray_attempt.push(attempt_ms(&journal(&repo, &r.run)) - s_ms);
    }
    let (local, on_ray) = (median(&local), median(&on_ray));
    println!("{tasks} agents at once: local {local:.0} ms, Ray {on_ray:.0} ms");
    let per_task = |wall: f64| (wall - s_ms) / tasks as f64;
    report.push(
        Row::new(
            "ray_overhead_per_task_ms",
            per_task(on_ray),
            "ms",
            Better::Lower,
            repetitions,
        )
        .peer("local-runner", per_task(local))
        .extra("tasks", tasks as u64)
        .extra("sleep_ms", s_ms as u64)
        .extra("wall_ray_ms", on_ray as u64)
        .extra("wall_local_ms", local as u64)
        .extra("attempt_above_s_ray_ms", median(&ray_attempt) as u64)
        .extra("attempt_above_s_local_ms", median(&local_attempt) as u64),
    );
}
