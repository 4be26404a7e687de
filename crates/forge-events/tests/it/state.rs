//! The run-state fold.

use forge_events::{
    Event, EventKind, EventSink, OutputStream, RunPhase, RunState, RunStatus, RunSummary,
    TaskPhase, TaskStatus, VecSink,
};
use proptest::prelude::*;

use super::common::{events, finished, progress, run_id, task};

/// A small but complete run, as a producer would publish it.
fn sample_run() -> Vec<Event> {
    let sink = VecSink::new(run_id());
    let (a, b) = (task("api"), task("tests"));
    sink.publish_run(EventKind::RunStarted {
        plan: "auth".into(),
        plan_hash: "abc".into(),
        tasks: 2,
        concurrency: 2,
        base: "head".into(),
    })
    .unwrap();
    sink.publish_task(
        &a,
        EventKind::TaskQueued {
            after: vec![],
            estimate_ms: None,
        },
    )
    .unwrap();
    sink.publish_task(
        &b,
        EventKind::TaskQueued {
            after: vec![a.clone()],
            estimate_ms: Some(90_000),
        },
    )
    .unwrap();
    sink.publish_task(
        &a,
        EventKind::TaskStarted {
            attempt: 1,
            agent: "sim".into(),
            workspace: "/w/api".into(),
            strategy: "overlay".into(),
        },
    )
    .unwrap();
    sink.publish_task(
        &a,
        EventKind::TaskProgress {
            message: "editing".into(),
            tool: Some("edit".into()),
            files: vec!["src/api.rs".into()],
        },
    )
    .unwrap();
    sink.publish_task(
        &a,
        EventKind::TaskOutput {
            stream: OutputStream::Stdout,
            line: "ok".into(),
        },
    )
    .unwrap();
    sink.publish_task(
        &a,
        EventKind::TaskUsage {
            tokens_in: 100,
            tokens_out: 20,
            cost_usd: Some(0.25),
        },
    )
    .unwrap();
    sink.publish_task(
        &a,
        EventKind::TaskUsage {
            tokens_in: 50,
            tokens_out: 5,
            cost_usd: Some(0.5),
        },
    )
    .unwrap();
    sink.publish_task(
        &a,
        EventKind::TaskRetrying {
            attempt: 2,
            delay_ms: 100,
            reason: "exit 1".into(),
        },
    )
    .unwrap();
    sink.publish_task(
        &a,
        EventKind::TaskStarted {
            attempt: 2,
            agent: "sim".into(),
            workspace: "/w/api2".into(),
            strategy: "overlay".into(),
        },
    )
    .unwrap();
    sink.publish_task(&a, finished(TaskStatus::Succeeded))
        .unwrap();
    sink.publish_task(
        &a,
        EventKind::MergeIntegrated {
            files: vec![forge_events::RepoPath::new("src/lib.rs").unwrap()],
        },
    )
    .unwrap();
    sink.publish_task(
        &b,
        EventKind::TaskWaitingLocks {
            claims: vec![],
            blocked_by: vec![a.clone()],
        },
    )
    .unwrap();
    sink.publish_task(&b, finished(TaskStatus::Failed)).unwrap();
    sink.publish_run(EventKind::MergeConflict {
        path: forge_events::RepoPath::new("CHANGELOG.md").unwrap(),
        tasks: vec![a.clone(), b.clone()],
        strategy: "union".into(),
        resolved: true,
    })
    .unwrap();
    sink.publish_run(EventKind::GateStarted {
        command: "cargo test".into(),
    })
    .unwrap();
    sink.publish_run(EventKind::GateFinished {
        command: "cargo test".into(),
        passed: false,
        exit_code: Some(101),
        duration_ms: 1000,
        tests_passed: Some(10),
        tests_failed: Some(1),
    })
    .unwrap();
    sink.publish_run(EventKind::RunFinished {
        status: RunStatus::Failed,
        summary: RunSummary {
            succeeded: 1,
            failed: 1,
            ..RunSummary::default()
        },
    })
    .unwrap();
    sink.events()
}

#[test]
fn folds_a_run_into_a_useful_view() {
    let state = RunState::from_events(&sample_run());
    assert_eq!(state.run, Some(run_id()));
    assert_eq!(state.plan.as_ref().unwrap().name, "auth");
    assert_eq!(state.phase, RunPhase::Failed);
    assert_eq!(state.last_seq, 18);
    assert_eq!(
        state
            .tasks
            .iter()
            .map(|t| t.id.as_str())
            .collect::<Vec<_>>(),
        ["api", "tests"],
        "plan order"
    );
    let api = state.task("api").unwrap();
    assert_eq!(api.status, TaskPhase::Succeeded);
    assert_eq!(api.attempt, 2);
    assert_eq!(api.workspace.as_deref(), Some("/w/api2"));
    assert_eq!(api.usage.tokens_in, 150);
    assert_eq!(api.usage.cost_usd, Some(0.75));
    assert_eq!(api.last_progress.as_ref().unwrap().message, "editing");
    assert!(api.files_touched.contains("src/api.rs"));
    assert_eq!(api.files_changed, ["src/lib.rs"]);
    assert_eq!(api.retry.as_ref().unwrap().reason, "exit 1");
    assert!(api.integrated);
    assert_eq!(api.output_lines, 1);
    let tests = state.task("tests").unwrap();
    assert_eq!(tests.status, TaskPhase::Failed);
    assert_eq!(tests.after, [task("api")]);
    assert_eq!(tests.estimate_ms, Some(90_000));
    assert_eq!(api.estimate_ms, None);
    assert_eq!(state.counts.total, 2);
    assert_eq!(state.counts.succeeded, 1);
    assert_eq!(state.counts.failed, 1);
    assert!((state.progress - 1.0).abs() < f64::EPSILON);
    assert_eq!(state.conflicts.len(), 1);
    assert_eq!(state.gates[0].passed, Some(false));
    assert_eq!(state.gates[0].tests_failed, Some(1));
    assert_eq!(state.summary.as_ref().unwrap().failed, 1);
    assert_eq!(state.integrated, [task("api")]);
}

#[test]
fn progress_counts_follow_the_tasks() {
    let events = sample_run();
    let mut state = RunState::new();
    for event in &events[..4] {
        state.apply(event);
    }
    assert_eq!(state.phase, RunPhase::Running);
    assert_eq!(state.counts.running, 1);
    assert_eq!(state.counts.queued, 1);
    assert!(state.progress.abs() < f64::EPSILON);
}

#[test]
fn cancelled_tasks_are_not_done_and_dropped_changes_are_not_integrated() {
    let sink = VecSink::new(run_id());
    let (a, b, c) = (task("a"), task("b"), task("c"));
    sink.publish_run(EventKind::RunStarted {
        plan: "p".into(),
        plan_hash: "h".into(),
        tasks: 3,
        concurrency: 3,
        base: "head".into(),
    })
    .unwrap();
    // Both changed src/lib.rs; a conflict dropped b's change.
    for (t, integrated) in [
        (&a, vec![forge_events::RepoPath::new("src/lib.rs").unwrap()]),
        (&b, vec![]),
    ] {
        sink.publish_task(t, EventKind::MergeIntegrated { files: integrated })
            .unwrap();
        sink.publish_task(t, finished(TaskStatus::Succeeded))
            .unwrap();
    }
    sink.publish_task(&c, finished(TaskStatus::Cancelled))
        .unwrap();
    // A gate that runs again (a resume, a fix round) is listed once, with its latest result.
    for passed in [false, true] {
        sink.publish_run(EventKind::GateStarted {
            command: "make test".into(),
        })
        .unwrap();
        sink.publish_run(EventKind::GateFinished {
            command: "make test".into(),
            passed,
            exit_code: Some(i32::from(!passed)),
            duration_ms: 1,
            tests_passed: None,
            tests_failed: None,
        })
        .unwrap();
    }
    let state = RunState::from_events(&sink.events());
    assert_eq!(state.counts.finished(), 3);
    assert_eq!(state.counts.done(), 2);
    assert!(
        (state.progress - 2.0 / 3.0).abs() < 1e-9,
        "{}",
        state.progress
    );
    assert!(state.task("a").unwrap().not_integrated().is_empty());
    assert_eq!(state.task("b").unwrap().not_integrated(), ["src/lib.rs"]);
    assert!(state.task("c").unwrap().not_integrated().is_empty());
    assert_eq!(state.gates.len(), 1);
    assert_eq!(state.gates[0].passed, Some(true));
}

#[test]
fn already_folded_and_foreign_events_are_ignored() {
    let events = sample_run();
    let whole = RunState::from_events(&events);
    let mut again = whole.clone();
    for event in &events {
        assert!(!again.apply(event));
    }
    assert_eq!(again, whole);
    let mut foreign = Event::new("other-run".parse().unwrap(), 99, None, progress("x"));
    foreign.kind = EventKind::GateStarted {
        command: "x".into(),
    };
    assert!(!again.apply(&foreign));
    assert_eq!(again, whole);
}

#[test]
fn serializes_to_json_for_the_dashboard() {
    let state = RunState::from_events(&sample_run());
    let json = serde_json::to_value(&state).unwrap();
    assert_eq!(json["phase"], "failed");
    assert_eq!(json["tasks"][0]["id"], "api");
    assert_eq!(json["tasks"][0]["status"], "succeeded");
    assert_eq!(json["counts"]["total"], 2);
    let back: RunState = serde_json::from_value(json).unwrap();
    assert_eq!(back, state);
    assert_eq!(back.task("tests").unwrap().status, TaskPhase::Failed);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Folding in pieces, with the state written to JSON and read back between pieces, equals
    /// folding the whole list.
    #[test]
    fn folding_any_split_equals_folding_whole(
        events in events(40),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        let whole = RunState::from_events(&events);
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(events.len() + 1)).collect();
        cuts.push(events.len());
        cuts.sort_unstable();
        let mut state = RunState::new();
        let mut start = 0;
        for cut in cuts {
            for event in &events[start..cut] {
                state.apply(event);
            }
            start = cut;
            let json = serde_json::to_string(&state).unwrap();
            state = serde_json::from_str(&json).unwrap();
        }
        prop_assert_eq!(&state, &whole);
        // Counts always add up.
        let c = whole.counts;
        prop_assert_eq!(
            c.queued + c.waiting_locks + c.running + c.retrying + c.finished(),
            whole.tasks.len() as u32
        );
    }

    /// Replaying an overlapping prefix (a reconnecting client) changes nothing.
    #[test]
    fn overlapping_replays_are_harmless(events in events(30), k in any::<prop::sample::Index>()) {
        let whole = RunState::from_events(&events);
        let k = k.index(events.len() + 1);
        let mut state = RunState::from_events(&events[..k]);
        for event in &events {
            state.apply(event);
        }
        prop_assert_eq!(state, whole);
    }
}

/// An event at `secs` seconds.
fn at(seq: u64, secs: i64, task_id: Option<&str>, kind: EventKind) -> Event {
    let mut e = Event::new(run_id(), seq, task_id.map(task), kind);
    e.ts = jiff::Timestamp::from_second(1_800_000_000 + secs).unwrap();
    e
}

fn started(attempt: u32) -> EventKind {
    EventKind::TaskStarted {
        attempt,
        agent: "sim".into(),
        workspace: String::new(),
        strategy: "copy".into(),
    }
}

fn run_started() -> EventKind {
    EventKind::RunStarted {
        plan: "p".into(),
        plan_hash: "h".into(),
        tasks: 2,
        concurrency: 2,
        base: "head".into(),
    }
}

#[test]
fn the_time_a_run_was_stopped_is_not_counted_and_interrupted_attempts_are_known() {
    let journal = [
        at(1, 0, None, run_started()),
        at(2, 0, Some("a"), started(1)),
        at(3, 0, Some("done"), started(1)),
        at(4, 2, Some("done"), finished(TaskStatus::Succeeded)),
        // Ctrl-C after 5 s: `a` is stopped, the run ends cancelled.
        at(5, 5, Some("a"), finished(TaskStatus::Cancelled)),
        at(
            6,
            5,
            None,
            EventKind::RunFinished {
                status: RunStatus::Cancelled,
                summary: RunSummary {
                    succeeded: 1,
                    failed: 0,
                    timed_out: 0,
                    cancelled: 1,
                    skipped: 0,
                    conflicts: 0,
                    duration_ms: 5_000,
                    message: None,
                },
            },
        ),
        // Resumed an hour later; `a` runs 3 s more.
        at(7, 3_605, None, run_started()),
        at(8, 3_605, Some("a"), started(2)),
        at(9, 3_608, Some("a"), finished(TaskStatus::Succeeded)),
    ];
    let mut state = RunState::new();
    for e in &journal {
        state.apply(e);
    }
    let a = state.task("a").unwrap();
    let ran = a.finished_at.unwrap().duration_since(a.started_at.unwrap());
    assert_eq!(ran.as_secs(), 8, "5 s before the stop, 3 s after");
    assert_eq!((a.attempt, a.interrupted), (2, 1));
    let done = state.task("done").unwrap();
    let ran = done
        .finished_at
        .unwrap()
        .duration_since(done.started_at.unwrap());
    assert_eq!(ran.as_secs(), 2);
    assert_eq!(done.interrupted, 0);

    // A process that died (no `task_finished`) interrupted its running attempt too.
    let mut state = RunState::new();
    for e in &journal[..3] {
        state.apply(e);
    }
    state.apply(&at(4, 100, None, run_started()));
    state.apply(&at(5, 100, Some("a"), started(2)));
    let a = state.task("a").unwrap();
    assert_eq!(a.interrupted, 1);
    assert_eq!(
        a.started_at,
        Some(jiff::Timestamp::from_second(1_800_000_100).unwrap())
    );
}

#[test]
fn an_added_task_joins_the_table_and_the_total() {
    let sink = VecSink::new(run_id());
    sink.publish_run(EventKind::RunStarted {
        plan: "p".into(),
        plan_hash: "h".into(),
        tasks: 1,
        concurrency: 2,
        base: "head".into(),
    })
    .unwrap();
    sink.publish_task(
        &task("late"),
        EventKind::TaskAdded {
            prompt: "more".into(),
            agent: "sim".into(),
            reads: vec![],
            writes: vec!["docs/**".into()],
            appends: vec![],
            after: vec![task("first")],
        },
    )
    .unwrap();
    let mut state = RunState::new();
    for e in sink.events() {
        state.apply(&e);
    }
    let late = state.task("late").unwrap();
    assert_eq!(late.status, TaskPhase::Queued);
    assert_eq!(late.agent.as_deref(), Some("sim"));
    assert_eq!(late.after, [task("first")]);
    assert_eq!(state.plan.as_ref().unwrap().tasks, 2);
    assert_eq!(state.counts.total, 2);
    // The JSON form round-trips with its claims.
    let json = sink.events()[1].to_json();
    assert!(
        json.contains(r#""type":"task_added""#) && json.contains(r#""writes":["docs/**"]"#),
        "{json}"
    );
    assert_eq!(Event::from_json(&json).unwrap(), sink.events()[1]);
}
