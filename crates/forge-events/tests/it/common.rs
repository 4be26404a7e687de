//! Shared helpers and proptest strategies.

use forge_events::{
    ClaimRecord, EVENT_VERSION, Event, EventKind, OutputStream, RunId, RunStatus, RunSummary,
    TaskId, TaskStatus, Timestamp, UnknownKind,
};
use proptest::prelude::*;
use serde_json::{Map, Value};

pub(crate) fn run_id() -> RunId {
    "run-1".parse().unwrap()
}

pub(crate) fn task(id: &str) -> TaskId {
    id.parse().unwrap()
}

/// A progress event kind with a message of about `len` bytes.
pub(crate) fn progress(message: impl Into<String>) -> EventKind {
    EventKind::TaskProgress {
        message: message.into(),
        tool: None,
        files: Vec::new(),
    }
}

pub(crate) fn finished(status: TaskStatus) -> EventKind {
    EventKind::TaskFinished {
        status,
        exit_code: Some(0),
        duration_ms: 10,
        files_changed: vec![forge_events::RepoPath::new("src/lib.rs").unwrap()],
        reason: None,
    }
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z ]{0,10}",
        any::<String>().prop_map(|s| s.chars().take(8).collect()),
        Just("line\nbreak \"quoted\" \\ \u{2028}".to_owned()),
    ]
}

pub(crate) fn task_id() -> impl Strategy<Value = TaskId> {
    prop::sample::select(vec!["a", "b", "c", "d", "e"]).prop_map(task)
}

fn tasks() -> impl Strategy<Value = Vec<TaskId>> {
    prop::collection::vec(task_id(), 0..3)
}

fn paths() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec("[a-z]{1,4}/[a-z]{1,4}\\.rs", 0..3)
}

fn repo_paths() -> impl Strategy<Value = Vec<forge_events::RepoPath>> {
    paths().prop_map(|ps| {
        ps.iter()
            .map(|p| forge_events::RepoPath::new(p).unwrap())
            .collect()
    })
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    prop::option::of(text())
}

fn status() -> impl Strategy<Value = TaskStatus> {
    prop::sample::select(vec![
        TaskStatus::Succeeded,
        TaskStatus::Failed,
        TaskStatus::TimedOut,
        TaskStatus::Cancelled,
        TaskStatus::Skipped,
    ])
}

/// Finite costs only: JSON has no `NaN` or infinity.
fn cost() -> impl Strategy<Value = Option<f64>> {
    prop::option::of(prop_oneof![-1.0e6f64..1.0e6, Just(0.1), Just(1e-9)])
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1.0e9f64..1.0e9).prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,3}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Extra fields with names no known kind or the envelope uses.
pub(crate) fn extra_fields() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map("zz_[a-z]{1,4}", json_value(), 0..3)
        .prop_map(|m| m.into_iter().collect())
}

pub(crate) fn unknown_kind() -> impl Strategy<Value = UnknownKind> {
    ("x_[a-z]{1,6}", extra_fields()).prop_map(|(kind, fields)| UnknownKind { kind, fields })
}

/// Every kind, with every optional field both set and unset.
#[allow(clippy::too_many_lines)]
pub(crate) fn kind() -> impl Strategy<Value = EventKind> {
    let claims = prop::collection::vec(
        (
            prop::sample::select(forge_events::LockMode::ALL.to_vec()),
            "[a-z*/]{1,8}",
        )
            .prop_map(|(mode, pattern)| ClaimRecord { mode, pattern }),
        0..3,
    );
    prop_oneof![
        (text(), "[0-9a-f]{8}", 0u32..50, 1u32..8, text()).prop_map(
            |(plan, plan_hash, tasks, concurrency, base)| EventKind::RunStarted {
                plan,
                plan_hash,
                tasks,
                concurrency,
                base
            }
        ),
        (tasks(), proptest::option::of(0u64..100_000_000))
            .prop_map(|(after, estimate_ms)| EventKind::TaskQueued { after, estimate_ms }),
        (claims, tasks())
            .prop_map(|(claims, blocked_by)| EventKind::TaskWaitingLocks { claims, blocked_by }),
        (1u32..4, text(), text(), text()).prop_map(|(attempt, agent, workspace, strategy)| {
            EventKind::TaskStarted {
                attempt,
                agent,
                workspace,
                strategy,
            }
        }),
        (text(), opt_text(), paths()).prop_map(|(message, tool, files)| EventKind::TaskProgress {
            message,
            tool,
            files
        }),
        (any::<bool>(), text()).prop_map(|(err, line)| EventKind::TaskOutput {
            stream: if err {
                OutputStream::Stderr
            } else {
                OutputStream::Stdout
            },
            line
        }),
        (any::<u32>(), any::<u32>(), cost()).prop_map(|(i, o, cost_usd)| EventKind::TaskUsage {
            tokens_in: u64::from(i),
            tokens_out: u64::from(o),
            cost_usd
        }),
        (1u32..4, any::<u64>(), text()).prop_map(|(attempt, delay_ms, reason)| {
            EventKind::TaskRetrying {
                attempt,
                delay_ms,
                reason,
            }
        }),
        (
            status(),
            prop::option::of(any::<i32>()),
            any::<u64>(),
            repo_paths(),
            prop::option::of(text())
        )
            .prop_map(|(status, exit_code, duration_ms, files_changed, reason)| {
                EventKind::TaskFinished {
                    status,
                    exit_code,
                    duration_ms,
                    files_changed,
                    reason,
                }
            }),
        (repo_paths(), text())
            .prop_map(|(paths, policy)| EventKind::ClaimViolation { paths, policy }),
        (tasks(), task_id()).prop_map(|(cycle, victim)| EventKind::LockDeadlock { cycle, victim }),
        repo_paths().prop_map(|files| EventKind::MergeIntegrated { files }),
        (paths(), tasks(), text(), any::<bool>()).prop_map(|(path, tasks, strategy, resolved)| {
            EventKind::MergeConflict {
                path: path.first().map_or_else(
                    || forge_events::RepoPath::new("README.md").unwrap(),
                    |p| forge_events::RepoPath::new(p).unwrap(),
                ),
                tasks,
                strategy,
                resolved,
            }
        }),
        text().prop_map(|command| EventKind::GateStarted { command }),
        (
            text(),
            any::<bool>(),
            prop::option::of(any::<i32>()),
            any::<u64>(),
            prop::option::of(any::<u64>()),
            prop::option::of(any::<u64>())
        )
            .prop_map(
                |(command, passed, exit_code, duration_ms, tests_passed, tests_failed)| {
                    EventKind::GateFinished {
                        command,
                        passed,
                        exit_code,
                        duration_ms,
                        tests_passed,
                        tests_failed,
                    }
                }
            ),
        (text(), paths(), paths(), opt_text(), opt_text()).prop_map(
            |(target, files, conflicts, branch, commit)| EventKind::ApplyFinished {
                target,
                files,
                conflicts,
                branch,
                commit,
                tasks: Vec::new(),
            }
        ),
        (
            prop::sample::select(vec![
                RunStatus::Succeeded,
                RunStatus::Failed,
                RunStatus::Cancelled
            ]),
            any::<[u8; 6]>(),
            any::<u64>(),
            opt_text()
        )
            .prop_map(|(status, n, duration_ms, message)| EventKind::RunFinished {
                status,
                summary: RunSummary {
                    succeeded: n[0].into(),
                    failed: n[1].into(),
                    timed_out: n[2].into(),
                    cancelled: n[3].into(),
                    skipped: n[4].into(),
                    conflicts: n[5].into(),
                    duration_ms,
                    message,
                },
            }),
        unknown_kind().prop_map(EventKind::Unknown),
    ]
}

/// Timestamps the journal can represent (whole milliseconds), 1970 to 2100.
pub(crate) fn timestamp() -> impl Strategy<Value = Timestamp> {
    (0i64..4_102_444_800_000).prop_map(|ms| Timestamp::from_millisecond(ms).unwrap())
}

/// One event (seq 1) with any kind, task and extra fields.
pub(crate) fn event() -> impl Strategy<Value = Event> {
    (
        timestamp(),
        prop::option::of(task_id()),
        kind(),
        extra_fields(),
    )
        .prop_map(|(ts, task, kind, extra)| {
            let extra = if matches!(kind, EventKind::Unknown(_)) {
                // An unknown kind holds all its fields itself.
                Map::new()
            } else {
                extra
            };
            Event {
                v: EVENT_VERSION,
                seq: 1,
                ts,
                run: run_id(),
                task,
                kind,
                extra,
            }
        })
}

/// A run's worth of events: seqs 1..=n, non-decreasing times.
pub(crate) fn events(max: usize) -> impl Strategy<Value = Vec<Event>> {
    prop::collection::vec(event(), 0..max).prop_map(|mut events| {
        let mut ts = Timestamp::from_millisecond(1_700_000_000_000).unwrap();
        for (i, event) in events.iter_mut().enumerate() {
            event.seq = i as u64 + 1;
            ts = ts
                .checked_add(jiff::SignedDuration::from_millis(i as i64 % 7))
                .unwrap();
            event.ts = ts;
        }
        events
    })
}

/// Events of one run as a JSONL journal text.
pub(crate) fn journal_text(events: &[Event]) -> String {
    events.iter().map(|e| e.to_json() + "\n").collect()
}
