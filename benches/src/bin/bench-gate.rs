//! `bench-gate`: how fast a red gate is traced to the task that broke it.
//!
//! `bisect_ms`: N integrated tasks (each a real `ChangeSet` captured from a staged workspace), one
//! of them writing the line that breaks the "build", and a gate command that takes 1 s
//! (`sleep 1` and a grep). Ours is [`forge_exec::manager::bisect_gate`] — prefixes of the
//! integration order, `concurrency` trees gated at once (4, the plan default); the peer is a
//! linear search over the same prefixes, one gate after another, until the first red one (what a
//! merge queue without bisection does). Both stage each tree from the same base and `ChangeSets`
//! with the same stager, so the difference is the number of gate runs and their overlap.
//!
//! Full size: 64 tasks; `--quick`: 16. One repetition each (a run is tens of seconds).

// A benchmark prints its table.
#![allow(clippy::print_stdout, clippy::print_stderr)]
// Milliseconds and counts as figures.
#![allow(clippy::cast_precision_loss)]

use std::sync::Arc;
use std::time::Instant;

use forge_benches::{Better, Report, Row, quick_from_args};
use forge_events::TaskId;
use forge_exec::CancelHandle;
use forge_exec::gate::GateRunner;
use forge_exec::manager::{BisectOptions, IntegratedChanges, bisect_gate};
use forge_merge::{Gate, Integration, Merger};
use forge_staging::{
    BaseMode, BaseSnapshot, BlobStore, Snapshot, Stager, StagerConfig, StagerKind,
};

type Error = Box<dyn std::error::Error>;

/// Trees gated at once by the bisect (the plan's default `concurrency`).
const CONCURRENCY: usize = 4;

fn main() -> Result<(), Error> {
    let quick = quick_from_args();
    let mut report = Report::new("gate", quick);
    bisect(quick, &mut report)?;
    let path = report.write()?;
    println!("\n{}", report.table());
    println!("wrote {}", path.display());
    Ok(())
}

/// An integration of `base` with nothing integrated yet.
fn empty_integration(base: &Arc<BaseSnapshot>, store: &BlobStore) -> Box<dyn Merger> {
    Box::new(Integration::new(base.clone(), store.clone()))
}

fn bisect(quick: bool, report: &mut Report) -> Result<(), Error> {
    let tasks: usize = if quick { 16 } else { 64 };
    // Two thirds in: a linear search pays for most of the run, as it would in practice.
    let culprit = tasks * 2 / 3;
    let tmp = tempfile::tempdir()?;
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(repo.join("src"))?;
    std::fs::write(repo.join("src/base.txt"), "fine\n")?;
    let run = tmp.path().join("run");
    std::fs::create_dir_all(&run)?;
    let store = BlobStore::open(run.join("objects"))?;
    let base = Arc::new(BaseSnapshot::capture(
        &repo,
        BaseMode::Worktree,
        &run.join("base"),
        &store,
    )?);
    let config = StagerConfig::new(run.join("work"), store.clone());
    let stager: Box<dyn Stager> = StagerKind::Auto.build(&config, &base)?;
    println!(
        "== bisect_ms: {tasks} tasks, culprit #{culprit}, a 1 s gate, {} workspaces",
        stager.strategy()
    );

    // Each task's ChangeSet, captured from a real workspace.
    let snapshot = Snapshot::from(Arc::clone(&base));
    let mut integrated = Vec::with_capacity(tasks);
    for i in 1..=tasks {
        let ws = stager.stage(&snapshot, &format!("t{i}"))?;
        let body = if i == culprit { "BROKEN\n" } else { "fine\n" };
        std::fs::write(ws.path().join(format!("src/t{i}.txt")), body)?;
        let changes = ws.changes()?;
        ws.dispose()?;
        integrated.push(IntegratedChanges {
            task: TaskId::new(format!("t{i}"))?,
            order: i as u64,
            changes,
        });
    }
    let gate = Gate::new(["sleep 1; ! grep -rq BROKEN src"]);
    let new_integration = || empty_integration(&base, &store);
    let runner = GateRunner::new(forge_events::RunId::new("bench-gate")?);

    // Ours.
    let t = Instant::now();
    let found = bisect_gate(
        &integrated,
        &new_integration,
        &gate,
        &runner,
        stager.as_ref(),
        &run.join("bisect"),
        &BisectOptions {
            concurrency: CONCURRENCY,
            known: std::collections::HashMap::new(),
        },
        &CancelHandle::new(),
        &|_| {},
    )?;
    let ours_ms = t.elapsed().as_secs_f64() * 1e3;
    let named = found.culprit.as_ref().map(TaskId::as_str);
    if named != Some(format!("t{culprit}").as_str()) {
        return Err(format!("the bisect named {named:?}, not t{culprit}").into());
    }
    println!(
        "   bisect: {} gate runs, {:.1} s",
        found.gate_runs,
        ours_ms / 1e3
    );

    // The peer: one prefix after another until the gate fails.
    let t = Instant::now();
    let mut peer_runs = 0u32;
    let mut peer_found = None;
    for k in 0..=tasks {
        let mut integration = new_integration();
        for c in &integrated[..k] {
            integration.integrate(&c.task, &c.changes, c.order)?;
        }
        let layer = run.join(format!("linear/p{k}"));
        std::fs::create_dir_all(run.join("linear"))?;
        let tree = integration.snapshot(&layer)?;
        let result = runner.run_blocking(&gate, stager.as_ref(), &tree, &format!("linear-{k}"))?;
        drop(tree);
        let _ = std::fs::remove_dir_all(&layer);
        peer_runs += 1;
        if !result.passed() {
            peer_found = Some(k);
            break;
        }
    }
    let peer_ms = t.elapsed().as_secs_f64() * 1e3;
    if peer_found != Some(culprit) {
        return Err(format!("the linear search stopped at {peer_found:?}, not {culprit}").into());
    }
    println!("   linear: {peer_runs} gate runs, {:.1} s", peer_ms / 1e3);

    report.push(
        Row::new("bisect_ms", ours_ms, "ms", Better::Lower, 1)
            .peer("linear-search", peer_ms)
            .extra("tasks", tasks as u64)
            .extra("culprit", culprit as u64)
            .extra("gate_runs", u64::from(found.gate_runs))
            .extra("peer_gate_runs", u64::from(peer_runs))
            .extra("concurrency", CONCURRENCY as u64)
            .extra("gate_s", 1u64),
    );
    Ok(())
}
