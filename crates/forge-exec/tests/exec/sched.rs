//! The scheduler with in-process runners.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use forge_events::{EventKind, RunId, TaskId, TaskStatus, VecSink};
use forge_exec::plan::{OnFailure, Plan, PlanFormat, PlanOptions, RetryOn, Task};
use forge_exec::{
    AttemptContext, CancelHandle, PriorTask, Scheduler, SchedulerOptions, TaskOutcome, TaskRunner,
};
use parking_lot::Mutex;
use proptest::prelude::*;

fn plan_of(tasks: Vec<Task>, concurrency: usize) -> Plan {
    let mut plan = Plan::parse(
        "[[task]]\nid = \"x\"\nagent = \"sim\"\nprompt = \"p\"\n",
        Path::new("p.toml"),
        PlanFormat::Toml,
        &PlanOptions::default(),
    )
    .unwrap();
    plan.tasks = tasks;
    plan.concurrency = concurrency;
    plan
}

fn task(id: &str, after: &[&str]) -> Task {
    let mut t = Task::new(TaskId::new(id).unwrap(), "sim", "p");
    t.after = after.iter().map(|a| TaskId::new(*a).unwrap()).collect();
    t
}

fn sink() -> Arc<VecSink> {
    Arc::new(VecSink::new(RunId::new("r").unwrap()))
}

fn fast() -> SchedulerOptions {
    SchedulerOptions {
        backoff_base: Duration::from_millis(100),
        backoff_max: Duration::from_secs(1),
        jitter: false,
        kill_grace: Duration::from_millis(200),
        ..SchedulerOptions::default()
    }
}

/// Records starts and ends; each task takes `work` (virtual time) and fails per `fail`.
#[derive(Default)]
struct Recorder {
    log: Mutex<Vec<(String, &'static str, u32)>>,
    running: Mutex<(usize, usize, BTreeMap<String, usize>)>,
    work: BTreeMap<String, Duration>,
    /// task -> attempts that fail (with this exit code)
    fail: BTreeMap<String, (u32, i32)>,
    pools: BTreeMap<String, String>,
    /// Tasks the scheduler said ended for good, in order.
    ended: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl TaskRunner for Recorder {
    fn task_ended(&self, task: &TaskId) {
        self.ended.lock().push(task.to_string());
    }

    async fn run(&self, task: &Task, attempt: u32, ctx: AttemptContext) -> TaskOutcome {
        let id = task.id.to_string();
        self.log.lock().push((id.clone(), "start", attempt));
        {
            let mut r = self.running.lock();
            r.0 += 1;
            r.1 = r.1.max(r.0);
            if let Some(p) = self.pools.get(&id) {
                *r.2.entry(p.clone()).or_default() += 1;
            }
        }
        let work = self
            .work
            .get(&id)
            .copied()
            .unwrap_or(Duration::from_millis(1));
        let cancelled = tokio::select! {
            () = tokio::time::sleep(work) => false,
            () = ctx.cancel.cancelled() => true,
        };
        {
            let mut r = self.running.lock();
            r.0 -= 1;
            if let Some(p) = self.pools.get(&id) {
                *r.2.get_mut(p).unwrap() -= 1;
            }
        }
        self.log.lock().push((id.clone(), "end", attempt));
        if cancelled {
            return TaskOutcome {
                status: TaskStatus::Cancelled,
                ..TaskOutcome::failed("stopped")
            };
        }
        match self.fail.get(&id) {
            Some(&(n, code)) if attempt <= n => TaskOutcome {
                exit_code: Some(code),
                ..TaskOutcome::failed(format!("exit {code}"))
            },
            _ => TaskOutcome::succeeded(),
        }
    }
}

#[derive(Debug, Clone)]
struct Dag {
    deps: Vec<Vec<usize>>,
    work_ms: Vec<u64>,
    pool: Vec<Option<usize>>,
    concurrency: usize,
    pool_limits: Vec<usize>,
}

fn dags() -> impl Strategy<Value = Dag> {
    (
        2..30usize,
        1..5usize,
        prop::collection::vec(1..3usize, 0..3),
    )
        .prop_flat_map(|(n, concurrency, pool_limits)| {
            let pools = pool_limits.len();
            (
                prop::collection::vec(prop::collection::vec(any::<prop::sample::Index>(), 0..3), n),
                prop::collection::vec(1..50u64, n),
                prop::collection::vec(prop::option::of(0..pools.max(1)), n),
                Just(concurrency),
                Just(pool_limits),
            )
                .prop_map(move |(raw, work_ms, pool, concurrency, pool_limits)| Dag {
                    deps: raw
                        .into_iter()
                        .enumerate()
                        .map(|(i, ds)| {
                            let mut v: Vec<usize> = if i == 0 {
                                vec![]
                            } else {
                                ds.iter().map(|d| d.index(i)).collect()
                            };
                            v.sort_unstable();
                            v.dedup();
                            v
                        })
                        .collect(),
                    work_ms,
                    pool: if pools == 0 { vec![None; n] } else { pool },
                    concurrency,
                    pool_limits,
                })
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_dags_respect_order_and_limits(dag in dags()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
        let tasks: Vec<Task> = dag.deps.iter().enumerate().map(|(i, ds)| {
            let after: Vec<String> = ds.iter().map(|d| format!("t{d}")).collect();
            let after: Vec<&str> = after.iter().map(String::as_str).collect();
            let mut t = task(&format!("t{i}"), &after);
            t.pool = dag.pool[i].map(|p| format!("p{p}"));
            t
        }).collect();
        let mut plan = plan_of(tasks, dag.concurrency);
        plan.pools = dag.pool_limits.iter().enumerate().map(|(i, l)| (format!("p{i}"), *l)).collect();
        let runner = Recorder {
            work: (0..dag.deps.len()).map(|i| (format!("t{i}"), Duration::from_millis(dag.work_ms[i]))).collect(),
            pools: (0..dag.deps.len()).filter_map(|i| dag.pool[i].map(|p| (format!("t{i}"), format!("p{p}")))).collect(),
            ..Recorder::default()
        };
        // Pool limits are checked live by wrapping: sample the max per pool at each start.
        let report = rt.block_on(Scheduler::new(&plan, &runner, sink(), fast()).run(&CancelHandle::new()));
        prop_assert!(report.succeeded(), "{:?}", report);
        let log = runner.log.lock().clone();
        let pos = |id: &str, what: &str| log.iter().position(|(t, w, _)| t == id && *w == what).unwrap();
        for (i, ds) in dag.deps.iter().enumerate() {
            for d in ds {
                prop_assert!(pos(&format!("t{d}"), "end") < pos(&format!("t{i}"), "start"), "t{i} started before t{d} ended");
            }
        }
        prop_assert!(runner.running.lock().1 <= dag.concurrency);
        // Replay the log to check pool limits at every moment.
        let mut in_pool: BTreeMap<String, usize> = BTreeMap::new();
        for (id, what, _) in &log {
            if let Some(p) = runner.pools.get(id) {
                let n = in_pool.entry(p.clone()).or_default();
                if *what == "start" { *n += 1 } else { *n -= 1 }
                let limit = plan.pools[p];
                prop_assert!(*n <= limit, "pool {p} ran {n} > {limit}");
            }
        }
        prop_assert_eq!(log.len(), 2 * dag.deps.len());
    }
}

#[tokio::test(start_paused = true)]
async fn critical_path_runs_first() {
    // chain a1 -> a2 -> a3 is the longest; b and c are single tasks listed first. Once a3 is
    // as short as b and c, plan order breaks the tie.
    let tasks = vec![
        task("b", &[]),
        task("c", &[]),
        task("a1", &[]),
        task("a2", &["a1"]),
        task("a3", &["a2"]),
    ];
    let plan = plan_of(tasks, 1);
    let runner = Recorder::default();
    let report = Scheduler::new(&plan, &runner, sink(), fast())
        .run(&CancelHandle::new())
        .await;
    assert!(report.succeeded());
    let starts: Vec<String> = runner
        .log
        .lock()
        .iter()
        .filter(|e| e.1 == "start")
        .map(|e| e.0.clone())
        .collect();
    assert_eq!(starts, ["a1", "a2", "b", "c", "a3"]);
    // Estimates weigh in: a long single task beats a chain of short ones.
    let mut tasks = vec![task("long", &[]), task("s1", &[]), task("s2", &["s1"])];
    tasks[0].estimate = Some(Duration::from_mins(10));
    tasks[1].estimate = Some(Duration::from_secs(1));
    tasks[2].estimate = Some(Duration::from_secs(1));
    tasks.push(task("unknown", &[]));
    let plan = plan_of(tasks, 1);
    let runner = Recorder::default();
    let events = sink();
    Scheduler::new(&plan, &runner, events.clone(), fast())
        .run(&CancelHandle::new())
        .await;
    assert_eq!(runner.log.lock()[0].0, "long");
    // The estimates go out with `task_queued`, for the dashboard's critical path.
    let estimates: Vec<(String, Option<u64>)> = events
        .events()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TaskQueued { estimate_ms, .. } => {
                Some((e.task.as_ref()?.to_string(), *estimate_ms))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        estimates,
        [
            ("long".to_owned(), Some(600_000)),
            ("s1".to_owned(), Some(1000)),
            ("s2".to_owned(), Some(1000)),
            ("unknown".to_owned(), None),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn the_runner_hears_once_when_a_task_ends_for_good_never_between_retries() {
    let mut flaky = task("flaky", &[]);
    flaky.retries = 3;
    let mut broken = task("broken", &[]);
    broken.retries = 1;
    let after = task("after", &["broken"]);
    let mut waiting = task("waiting", &[]);
    waiting.retries = 50;
    let plan = plan_of(vec![flaky, broken, after, waiting], 4);
    let runner = Recorder {
        fail: BTreeMap::from([
            ("flaky".to_owned(), (2, 1)),
            ("broken".to_owned(), (9, 1)),
            ("waiting".to_owned(), (9, 1)),
        ]),
        work: BTreeMap::from([("flaky".to_owned(), Duration::from_secs(5))]),
        ..Recorder::default()
    };
    let cancel = CancelHandle::new();
    let scheduler = Scheduler::new(&plan, &runner, sink(), fast());
    let run = scheduler.run(&cancel);
    tokio::pin!(run);
    // `waiting` fails and backs off; while `flaky` runs its third attempt, the run is cancelled.
    let report = tokio::select! {
        report = &mut run => report,
        () = tokio::time::sleep(Duration::from_secs(11)) => {
            cancel.cancel();
            run.await
        }
    };
    assert_eq!(report.tasks[1].status, TaskStatus::Failed);
    assert_eq!(report.tasks[1].attempts, 2);
    let ended = runner.ended.lock().clone();
    let mut sorted = ended.clone();
    sorted.sort();
    // Each task that ran, once; `after` was skipped without running.
    assert_eq!(sorted, ["broken", "flaky", "waiting"], "{ended:?}");
    // `broken` ended after its second attempt, not after its first.
    let log = runner.log.lock().clone();
    assert_eq!(
        log.iter()
            .filter(|(t, what, _)| t == "broken" && *what == "end")
            .count(),
        2
    );
}

#[tokio::test(start_paused = true)]
async fn retries_back_off_and_respect_retry_on() {
    let mut flaky = task("flaky", &[]);
    flaky.retries = 3;
    let mut picky = task("picky", &[]);
    picky.retries = 3;
    picky.retry_on = RetryOn {
        exit_codes: vec![1],
        ..RetryOn::default()
    };
    let plan = plan_of(vec![flaky, picky], 2);
    let runner = Recorder {
        fail: BTreeMap::from([("flaky".to_owned(), (2, 1)), ("picky".to_owned(), (5, 3))]),
        ..Recorder::default()
    };
    let events = sink();
    let report = Scheduler::new(&plan, &runner, events.clone(), fast())
        .run(&CancelHandle::new())
        .await;
    assert_eq!(report.tasks[0].status, TaskStatus::Succeeded);
    assert_eq!(report.tasks[0].attempts, 3);
    // Exit code 3 is not in retry_on: one attempt only.
    assert_eq!(report.tasks[1].status, TaskStatus::Failed);
    assert_eq!(report.tasks[1].attempts, 1);
    assert_eq!(report.tasks[1].reason.as_deref(), Some("exit 3"));
    let retries: Vec<(u32, u64)> = events
        .events()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TaskRetrying {
                attempt, delay_ms, ..
            } => Some((*attempt, *delay_ms)),
            _ => None,
        })
        .collect();
    assert_eq!(retries, [(2, 100), (3, 200)]);
}

#[tokio::test(start_paused = true)]
async fn failures_skip_dependents_and_keep_going() {
    let plan = plan_of(
        vec![
            task("a", &[]),
            task("b", &["a"]),
            task("c", &["b"]),
            task("d", &[]),
        ],
        1,
    );
    let runner = Recorder {
        fail: BTreeMap::from([("a".to_owned(), (9, 2))]),
        ..Recorder::default()
    };
    let events = sink();
    let report = Scheduler::new(&plan, &runner, events.clone(), fast())
        .run(&CancelHandle::new())
        .await;
    let status: Vec<TaskStatus> = report.tasks.iter().map(|t| t.status).collect();
    assert_eq!(
        status,
        [
            TaskStatus::Failed,
            TaskStatus::Skipped,
            TaskStatus::Skipped,
            TaskStatus::Succeeded
        ]
    );
    assert_eq!(
        report.tasks[1].reason.as_deref(),
        Some("skipped because `a` did not succeed")
    );
    assert_eq!(
        report.tasks[2].reason.as_deref(),
        Some("skipped because `a` did not succeed")
    );
    // The reasons travel in the events too, for `forge status` and the dashboard.
    let reasons: Vec<(String, Option<String>)> = events
        .events()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TaskFinished { reason, .. } => {
                Some((e.task.as_ref().unwrap().to_string(), reason.clone()))
            }
            _ => None,
        })
        .collect();
    assert!(
        reasons.contains(&("a".into(), Some("exit 2".into()))),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&(
            "c".into(),
            Some("skipped because `a` did not succeed".into())
        )),
        "{reasons:?}"
    );
    assert!(reasons.contains(&("d".into(), None)), "{reasons:?}");
}

#[tokio::test(start_paused = true)]
async fn resume_reuses_finished_tasks_and_numbers_attempts_on() {
    // a ok, b failed for good, c (after a) was interrupted at attempt 2, d after b, e after c.
    let mut plan = plan_of(
        vec![
            task("a", &[]),
            task("b", &[]),
            task("c", &["a"]),
            task("d", &["b"]),
            task("e", &["c"]),
        ],
        2,
    );
    plan.tasks[2].retries = 1;
    let runner = Recorder {
        fail: BTreeMap::from([("c".to_owned(), (2, 1))]),
        ..Recorder::default()
    };
    let mut opts = fast();
    opts.prior = [
        (
            "a",
            PriorTask::Finished {
                status: TaskStatus::Succeeded,
                reason: None,
            },
        ),
        (
            "b",
            PriorTask::Finished {
                status: TaskStatus::Failed,
                reason: Some("exit 1".into()),
            },
        ),
        (
            "c",
            PriorTask::Attempted {
                attempts: 2,
                failed: 0,
            },
        ),
    ]
    .into_iter()
    .map(|(id, p)| (TaskId::new(id).unwrap(), p))
    .collect();
    let events = sink();
    let report = Scheduler::new(&plan, &runner, events.clone(), opts)
        .run(&CancelHandle::new())
        .await;
    let status: Vec<TaskStatus> = report.tasks.iter().map(|t| t.status).collect();
    assert_eq!(
        status,
        [
            TaskStatus::Succeeded,
            TaskStatus::Failed,
            TaskStatus::Succeeded,
            TaskStatus::Skipped,
            TaskStatus::Succeeded
        ]
    );
    // Only c and e ran; c went on from attempt 3 (which fails: attempts 1-2 fail by the
    // recorder's rule), and its retry budget of 1 was still whole, so attempt 4 ran.
    let starts: Vec<(String, u32)> = runner
        .log
        .lock()
        .iter()
        .filter(|(_, what, _)| *what == "start")
        .map(|(id, _, n)| (id.clone(), *n))
        .collect();
    assert_eq!(starts, [("c".to_owned(), 3), ("e".to_owned(), 1)]);
    assert_eq!(
        report.tasks[3].reason.as_deref(),
        Some("skipped because `b` did not succeed")
    );
    // Finished tasks are not queued again.
    let queued: Vec<String> = events
        .events()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::TaskQueued { .. }))
        .map(|e| e.task.as_ref().unwrap().to_string())
        .collect();
    assert_eq!(queued, ["c", "e"]);
}

#[tokio::test(start_paused = true)]
async fn fail_fast_starts_nothing_new_but_lets_running_tasks_finish() {
    let mut plan = plan_of(
        vec![
            task("quick_fail", &[]),
            task("slow", &[]),
            task("later", &[]),
        ],
        2,
    );
    plan.on_failure = OnFailure::FailFast;
    let runner = Recorder {
        fail: BTreeMap::from([("quick_fail".to_owned(), (9, 1))]),
        work: BTreeMap::from([
            ("slow".to_owned(), Duration::from_secs(5)),
            ("quick_fail".to_owned(), Duration::from_secs(1)),
            ("later".to_owned(), Duration::from_secs(1)),
        ]),
        ..Recorder::default()
    };
    let report = Scheduler::new(&plan, &runner, sink(), fast())
        .run(&CancelHandle::new())
        .await;
    assert_eq!(report.tasks[0].status, TaskStatus::Failed);
    assert_eq!(
        report.tasks[1].status,
        TaskStatus::Succeeded,
        "running task finished"
    );
    assert_eq!(report.tasks[2].status, TaskStatus::Skipped);
    assert!(
        report.tasks[2]
            .reason
            .as_deref()
            .unwrap()
            .contains("fail_fast"),
        "{:?}",
        report.tasks[2].reason
    );
}

#[tokio::test(start_paused = true)]
async fn timeouts_interrupt_and_can_be_retried() {
    let mut t = task("slow", &[]);
    t.timeout = Some(Duration::from_secs(1));
    t.retries = 1;
    t.retry_on = RetryOn {
        timeout: true,
        ..RetryOn::default()
    };
    let plan = plan_of(vec![t], 1);
    let runner = Recorder {
        work: BTreeMap::from([("slow".to_owned(), Duration::from_hours(1))]),
        ..Recorder::default()
    };
    let report = Scheduler::new(&plan, &runner, sink(), fast())
        .run(&CancelHandle::new())
        .await;
    assert_eq!(report.tasks[0].status, TaskStatus::TimedOut);
    assert_eq!(report.tasks[0].attempts, 2);
}

/// A runner that ignores graceful cancellation: only `kill` stops it.
struct Stubborn;

#[async_trait::async_trait]
impl TaskRunner for Stubborn {
    async fn run(&self, _task: &Task, _attempt: u32, ctx: AttemptContext) -> TaskOutcome {
        ctx.kill.cancelled().await;
        TaskOutcome {
            status: TaskStatus::Cancelled,
            ..TaskOutcome::failed("killed")
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_runner_ignoring_cancel_is_killed_after_the_grace() {
    let mut t = task("stubborn", &[]);
    t.timeout = Some(Duration::from_secs(1));
    let plan = plan_of(vec![t], 1);
    let report = Scheduler::new(&plan, &Stubborn, sink(), fast())
        .run(&CancelHandle::new())
        .await;
    assert_eq!(report.tasks[0].status, TaskStatus::TimedOut);
}

#[tokio::test(start_paused = true)]
async fn cancel_stops_new_starts_then_kills_on_second_cancel() {
    let plan = plan_of(vec![task("a", &[]), task("b", &["a"]), task("c", &[])], 1);
    let cancel = CancelHandle::new();
    let events = sink();
    let run = {
        let (plan, cancel, events) = (plan.clone(), cancel.clone(), events.clone());
        tokio::spawn(async move {
            Scheduler::new(&plan, &Stubborn, events, fast())
                .run(&cancel)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    cancel.cancel();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(
        !run.is_finished(),
        "stubborn runner is still in its grace period"
    );
    cancel.cancel();
    let report = run.await.unwrap();
    assert!(report.cancelled);
    assert!(
        report
            .tasks
            .iter()
            .all(|t| t.status == TaskStatus::Cancelled),
        "{report:?}"
    );
    let started = events
        .events()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::TaskStarted { .. }))
        .count();
    assert_eq!(started, 1, "nothing new started after the cancel");
    let finished = events
        .events()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::TaskFinished { .. }))
        .count();
    assert_eq!(finished, 3, "every task gets a task_finished");
}

#[tokio::test]
async fn events_follow_each_task_through_its_states() {
    let plan = plan_of(vec![task("a", &[]), task("b", &["a"])], 2);
    let events = sink();
    Scheduler::new(&plan, &Recorder::default(), events.clone(), fast())
        .run(&CancelHandle::new())
        .await;
    let kinds: Vec<(String, &str)> = events
        .events()
        .iter()
        .map(|e| (e.task.as_ref().unwrap().to_string(), e.kind.type_name()))
        .collect::<Vec<_>>()
        .iter()
        .map(|(t, k)| {
            (
                t.clone(),
                match *k {
                    "task_queued" => "queued",
                    "task_started" => "started",
                    "task_finished" => "finished",
                    _ => "other",
                },
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("a".into(), "queued"),
            ("b".into(), "queued"),
            ("a".into(), "started"),
            ("a".into(), "finished"),
            ("b".into(), "started"),
            ("b".into(), "finished"),
        ]
    );
}

/// A random DAG where some tasks fail (no retries) and some already ended in an earlier,
/// interrupted run (each only if every task it runs after succeeded there).
#[derive(Debug, Clone)]
struct FailingDag {
    dag: Dag,
    fail: Vec<bool>,
    prior: Vec<bool>,
}

fn failing_dags() -> impl Strategy<Value = FailingDag> {
    dags().prop_flat_map(|dag| {
        let n = dag.deps.len();
        (
            Just(dag),
            prop::collection::vec(prop::bool::weighted(0.25), n),
            prop::collection::vec(prop::bool::weighted(0.3), n),
        )
            .prop_map(|(dag, fail, prior)| FailingDag { dag, fail, prior })
    })
}

/// Whether `ancestor` is upstream of `task` (through `after`, transitively).
fn upstream(deps: &[Vec<usize>], task: usize, ancestor: usize) -> bool {
    let mut stack = deps[task].clone();
    let mut seen = vec![false; deps.len()];
    while let Some(d) = stack.pop() {
        if d == ancestor {
            return true;
        }
        if !std::mem::replace(&mut seen[d], true) {
            stack.extend(deps[d].iter().copied());
        }
    }
    false
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// A task runs only after all its dependencies succeeded; a failed or skipped task's
    /// transitive dependents are all skipped, exactly once, with a reason naming a task
    /// upstream that did not succeed — in a new run and in a resumed one alike.
    #[test]
    fn failures_skip_every_dependent_exactly_once(case in failing_dags()) {
        let FailingDag { dag, fail, prior } = case;
        let n = dag.deps.len();
        let name = |i: usize| format!("t{i}");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
        let tasks: Vec<Task> = dag.deps.iter().enumerate().map(|(i, ds)| {
            let after: Vec<String> = ds.iter().map(|d| name(*d)).collect();
            let after: Vec<&str> = after.iter().map(String::as_str).collect();
            task(&name(i), &after)
        }).collect();
        let plan = plan_of(tasks, dag.concurrency);
        // The earlier run: tasks in index order (dependencies come first).
        let mut prior_status: Vec<Option<TaskStatus>> = vec![None; n];
        for i in 0..n {
            let deps_ok = dag.deps[i].iter().all(|&d| prior_status[d] == Some(TaskStatus::Succeeded));
            if prior[i] && deps_ok {
                prior_status[i] = Some(if fail[i] { TaskStatus::Failed } else { TaskStatus::Succeeded });
            }
        }
        let mut opts = fast();
        opts.prior = (0..n).filter_map(|i| prior_status[i].map(|status| (
            TaskId::new(name(i)).unwrap(),
            PriorTask::Finished { status, reason: None },
        ))).collect();
        let runner = Recorder {
            work: (0..n).map(|i| (name(i), Duration::from_millis(dag.work_ms[i]))).collect(),
            fail: (0..n).filter(|&i| fail[i]).map(|i| (name(i), (1, 1))).collect(),
            ..Recorder::default()
        };
        let events = sink();
        let report = rt.block_on(Scheduler::new(&plan, &runner, events.clone(), opts).run(&CancelHandle::new()));
        let status: Vec<TaskStatus> = report.tasks.iter().map(|t| t.status).collect();
        let log = runner.log.lock().clone();
        let ends: Vec<(String, TaskStatus, Option<String>)> = events.events().iter().filter_map(|e| match &e.kind {
            EventKind::TaskFinished { status, reason, .. } => Some((e.task.as_ref().unwrap().to_string(), *status, reason.clone())),
            _ => None,
        }).collect();
        for i in 0..n {
            let started = log.iter().position(|(t, w, _)| *t == name(i) && *w == "start");
            if let Some(start) = started {
                prop_assert!(prior_status[i].is_none(), "t{i} ended before, yet ran again");
                for &d in &dag.deps[i] {
                    prop_assert_eq!(status[d], TaskStatus::Succeeded, "t{} ran though t{} did not succeed", i, d);
                    if prior_status[d].is_none() {
                        let end = log.iter().position(|(t, w, _)| *t == name(d) && *w == "end").unwrap();
                        prop_assert!(end < start, "t{i} started before t{d} ended");
                    }
                }
            }
            // Every task downstream of one that did not succeed is skipped.
            if status[i] != TaskStatus::Succeeded {
                for t in 0..n {
                    if upstream(&dag.deps, t, i) {
                        prop_assert_eq!(status[t], TaskStatus::Skipped, "t{} is downstream of t{} ({:?})", t, i, status[i]);
                        prop_assert!(!log.iter().any(|(id, _, _)| *id == name(t)), "t{t} ran");
                    }
                }
            }
            // Ended in this run: exactly one `task_finished` (no retries here); a skip names a
            // task upstream that did not succeed.
            let mine: Vec<&(String, TaskStatus, Option<String>)> = ends.iter().filter(|(t, _, _)| *t == name(i)).collect();
            if prior_status[i].is_some() {
                prop_assert!(mine.is_empty(), "t{i} ended before, yet ended again: {mine:?}");
                continue;
            }
            prop_assert_eq!(mine.len(), 1, "t{}: {:?}", i, mine);
            prop_assert_eq!(mine[0].1, status[i]);
            if status[i] == TaskStatus::Skipped {
                let reason = mine[0].2.clone().unwrap_or_default();
                let named = reason.split('`').nth(1).unwrap_or_default();
                let d: usize = named.trim_start_matches('t').parse().map_err(|_| TestCaseError::fail(format!("t{i}: {reason}")))?;
                prop_assert!(upstream(&dag.deps, i, d), "t{i}: {reason} names no task upstream");
                prop_assert!(status[d] != TaskStatus::Succeeded, "t{i}: {reason}, but t{d} succeeded");
                prop_assert_eq!(report.tasks[i].reason.as_deref(), Some(reason.as_str()));
            } else {
                prop_assert_eq!(status[i], if fail[i] { TaskStatus::Failed } else { TaskStatus::Succeeded });
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn tasks_added_while_running_are_scheduled_after_their_dependencies() {
    // `slow` runs while tasks are added: `late` runs after it, `free` runs at once, `orphan`
    // runs after `broken`, which failed, and is skipped; a duplicate id is refused.
    let plan = plan_of(vec![task("slow", &[]), task("broken", &[])], 4);
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let runner = Recorder {
        work: BTreeMap::from([
            ("slow".to_owned(), Duration::from_secs(1)),
            ("free".to_owned(), Duration::from_millis(10)),
        ]),
        fail: BTreeMap::from([("broken".to_owned(), (1, 1))]),
        ..Recorder::default()
    };
    let events = sink();
    let cancel = CancelHandle::new();
    let scheduler = Scheduler::new(&plan, &runner, events.clone(), fast()).intake(rx);
    let adder = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        for t in [
            task("late", &["slow"]),
            task("free", &[]),
            task("orphan", &["broken"]),
            task("slow", &[]),
        ] {
            tx.send(t).await.unwrap();
        }
    };
    let (report, ()) = tokio::join!(scheduler.run(&cancel), adder);
    let status: Vec<(String, TaskStatus)> = report
        .tasks
        .iter()
        .map(|t| (t.id.to_string(), t.status))
        .collect();
    assert_eq!(
        status,
        [
            ("slow".into(), TaskStatus::Succeeded),
            ("broken".into(), TaskStatus::Failed),
            ("late".into(), TaskStatus::Succeeded),
            ("free".into(), TaskStatus::Succeeded),
            ("orphan".into(), TaskStatus::Skipped),
        ]
    );
    assert_eq!(
        report.tasks[4].reason.as_deref(),
        Some("skipped because `broken` did not succeed")
    );
    let log = runner.log.lock().clone();
    let at = |id: &str, what: &str| log.iter().position(|(t, w, _)| t == id && *w == what);
    assert!(at("slow", "end") < at("late", "start"), "{log:?}");
    assert!(at("free", "end") < at("slow", "end"), "{log:?}");
    assert!(events.events().iter().any(|e| matches!(
        &e.kind,
        EventKind::RunWarning { message } if message.contains("`slow`") && message.contains("already has")
    )));
}

#[tokio::test(start_paused = true)]
async fn a_task_sent_as_the_run_ends_still_runs_and_later_sends_fail() {
    // The sender reserves its slot while the last task runs and sends once it ended: the
    // scheduler, finding nothing left, closes the intake but still takes the reserved send.
    let plan = plan_of(vec![task("only", &[])], 1);
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let runner = Recorder::default();
    let cancel = CancelHandle::new();
    let scheduler = Scheduler::new(&plan, &runner, sink(), fast()).intake(rx);
    let adder = async {
        let permit = tx.reserve().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        permit.send(task("last", &["only"]));
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.send(task("too_late", &[])).await.is_err()
    };
    let (report, refused) = tokio::join!(scheduler.run(&cancel), adder);
    assert!(refused, "a send after the run ended must fail");
    let ids: Vec<(&str, TaskStatus)> = report
        .tasks
        .iter()
        .map(|t| (t.id.as_str(), t.status))
        .collect();
    assert_eq!(
        ids,
        [
            ("only", TaskStatus::Succeeded),
            ("last", TaskStatus::Succeeded)
        ]
    );
}
