//! The event schema: exact JSON shape, round trips, forward compatibility.

use forge_events::{EVENT_VERSION, Event, EventKind, EventsError, TaskStatus, Timestamp};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::common::{event, events, finished, progress, run_id, task};

#[test]
fn json_shape_is_flat_with_a_type_tag_and_millisecond_utc_time() {
    let event = Event {
        v: EVENT_VERSION,
        seq: 7,
        ts: "2026-11-24T14:03:07.123456Z".parse::<Timestamp>().unwrap(),
        run: run_id(),
        task: Some(task("backend")),
        kind: EventKind::TaskStarted {
            attempt: 2,
            agent: "droid".into(),
            workspace: "/tmp/w".into(),
            strategy: "overlay".into(),
        },
        extra: serde_json::Map::new(),
    };
    assert_eq!(
        event.to_json(),
        r#"{"v":1,"seq":7,"ts":"2026-11-24T14:03:07.123Z","run":"run-1","task":"backend","type":"task_started","attempt":2,"agent":"droid","workspace":"/tmp/w","strategy":"overlay"}"#
    );
    // Whole seconds still carry three digits; no task, no `task` field.
    let event = Event {
        ts: "2026-01-02T03:04:05Z".parse().unwrap(),
        task: None,
        kind: EventKind::GateStarted {
            command: "cargo test".into(),
        },
        ..event
    };
    assert_eq!(
        event.to_json(),
        r#"{"v":1,"seq":7,"ts":"2026-01-02T03:04:05.000Z","run":"run-1","type":"gate_started","command":"cargo test"}"#
    );
}

#[test]
fn new_events_are_stamped_now_in_whole_milliseconds() {
    let before = Timestamp::now();
    let event = Event::new(run_id(), 1, None, progress("x"));
    assert_eq!(event.v, EVENT_VERSION);
    assert_eq!(event.ts.subsec_nanosecond() % 1_000_000, 0);
    assert!(event.ts.as_millisecond() >= before.as_millisecond());
    assert!(event.ts.as_millisecond() <= Timestamp::now().as_millisecond());
}

#[test]
fn task_finished_statuses_are_snake_case() {
    let mut event = Event::new(run_id(), 1, Some(task("a")), finished(TaskStatus::TimedOut));
    event.ts = Timestamp::UNIX_EPOCH;
    let value: Value = serde_json::from_str(&event.to_json()).unwrap();
    assert_eq!(value["type"], "task_finished");
    assert_eq!(value["status"], "timed_out");
    assert_eq!(value["files_changed"], json!(["src/lib.rs"]));
}

#[test]
fn every_known_type_is_listed_and_transitions_are_the_documented_ones() {
    let types: Vec<&str> = EventKind::known_types().collect();
    assert_eq!(
        types,
        [
            "run_started",
            "plan_preview",
            "task_queued",
            "task_waiting_locks",
            "task_started",
            "task_progress",
            "task_output",
            "task_usage",
            "task_session",
            "task_retrying",
            "task_finished",
            "claim_violation",
            "lock_deadlock",
            "merge_integrated",
            "merge_conflict",
            "gate_started",
            "gate_finished",
            "apply_finished",
            "run_warning",
            "run_finished",
            "task_retry_requested",
            "task_check",
            "gate_bisect_started",
            "gate_bisect_step",
            "gate_bisect_finished",
            "task_added",
            "task_placed",
        ]
    );
    assert!(finished(TaskStatus::Succeeded).is_transition());
    assert!(!progress("x").is_transition());
}

#[test]
fn unknown_type_is_kept_whole() {
    let line = r#"{"v":3,"seq":4,"ts":"2030-01-01T00:00:00.000Z","run":"run-1","task":"a","type":"task_teleported","to":"mars","how":{"fast":true}}"#;
    let event = Event::from_json(line).unwrap();
    match &event.kind {
        EventKind::Unknown(unknown) => {
            assert_eq!(unknown.kind, "task_teleported");
            assert_eq!(unknown.fields["to"], "mars");
            assert_eq!(unknown.fields["how"], json!({"fast": true}));
        }
        other => panic!("expected Unknown, got {other:?}"),
    }
    assert_eq!(event.type_name(), "task_teleported");
    let back: Value = serde_json::from_str(&event.to_json()).unwrap();
    let orig: Value = serde_json::from_str(line).unwrap();
    assert_eq!(back, orig);
}

#[test]
fn unknown_fields_of_known_types_are_kept() {
    let line = r#"{"v":1,"seq":1,"ts":"2030-01-01T00:00:00.000Z","run":"run-1","type":"gate_started","command":"make","shell":"bash","n":[1,2]}"#;
    let event = Event::from_json(line).unwrap();
    assert_eq!(
        event.kind,
        EventKind::GateStarted {
            command: "make".into()
        }
    );
    assert_eq!(event.extra["shell"], "bash");
    let back: Value = serde_json::from_str(&event.to_json()).unwrap();
    assert_eq!(back, serde_json::from_str::<Value>(line).unwrap());
}

#[test]
fn a_malformed_known_type_is_an_error_naming_it_unless_written_by_a_newer_version() {
    let bad = r#"{"v":1,"seq":1,"ts":"2030-01-01T00:00:00.000Z","run":"run-1","type":"task_started","attempt":"first"}"#;
    let err = Event::from_json(bad).unwrap_err();
    let EventsError::InvalidEvent { reason } = &err else {
        panic!("{err:?}")
    };
    assert!(reason.contains("task_started"), "{reason}");
    // A newer writer may have changed the type: kept as unknown, not refused.
    let newer = bad.replace(r#""v":1"#, r#""v":2"#);
    let event = Event::from_json(&newer).unwrap();
    let EventKind::Unknown(unknown) = &event.kind else {
        panic!("{event:?}")
    };
    assert_eq!(unknown.kind, "task_started");
    assert_eq!(unknown.fields["attempt"], "first");
}

#[test]
fn envelope_errors_name_the_field() {
    for (line, field) in [
        (
            r#"{"seq":1,"ts":"2030-01-01T00:00:00Z","run":"r","type":"x"}"#,
            "v",
        ),
        (
            r#"{"v":1,"ts":"2030-01-01T00:00:00Z","run":"r","type":"x"}"#,
            "seq",
        ),
        (r#"{"v":1,"seq":1,"run":"r","type":"x"}"#, "ts"),
        (
            r#"{"v":1,"seq":1,"ts":"yesterday","run":"r","type":"x"}"#,
            "ts",
        ),
        (
            r#"{"v":1,"seq":1,"ts":"2030-01-01T00:00:00Z","run":"../r","type":"x"}"#,
            "run",
        ),
        (
            r#"{"v":1,"seq":1,"ts":"2030-01-01T00:00:00Z","run":"r"}"#,
            "type",
        ),
        (
            r#"{"v":1,"seq":-1,"ts":"2030-01-01T00:00:00Z","run":"r","type":"x"}"#,
            "seq",
        ),
    ] {
        let err = Event::from_json(line).unwrap_err().to_string();
        assert!(err.contains(field), "{line}: {err}");
    }
    assert!(Event::from_json("[1,2]").is_err());
    assert!(Event::from_json("").is_err());
}

#[test]
fn kinds_parse_on_their_own_too() {
    let kind: EventKind =
        serde_json::from_str(r#"{"type":"gate_started","command":"x","new":1}"#).unwrap();
    assert_eq!(
        kind,
        EventKind::GateStarted {
            command: "x".into()
        }
    );
    let kind: EventKind = serde_json::from_str(r#"{"type":"zzz","a":1}"#).unwrap();
    assert_eq!(kind.type_name(), "zzz");
    assert!(serde_json::from_str::<EventKind>(r#"{"type":"gate_started"}"#).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn serialize_then_parse_round_trips(event in event()) {
        let json = event.to_json();
        let back = Event::from_json(&json).unwrap();
        prop_assert_eq!(&back, &event);
        // And the text is canonical: writing again gives the same line.
        prop_assert_eq!(back.to_json(), json);
    }

    #[test]
    fn unknown_kinds_and_fields_survive_a_round_trip(event in event()) {
        let value: Value = serde_json::from_str(&event.to_json()).unwrap();
        let again: Value = serde_json::from_str(&Event::from_json(&value.to_string()).unwrap().to_json()).unwrap();
        prop_assert_eq!(again, value);
    }

    #[test]
    fn a_journal_text_reads_back(events in events(20)) {
        let text = super::common::journal_text(&events);
        let back = forge_events::read_journal_bytes(std::path::Path::new("mem"), text.as_bytes()).unwrap();
        prop_assert_eq!(back, events);
    }
}

#[test]
fn hand_made_fields_that_collide_are_not_written_twice() {
    let mut event = Event::new(
        run_id(),
        3,
        None,
        EventKind::GateStarted {
            command: "x".into(),
        },
    );
    for key in ["seq", "command", "type", "run"] {
        event.extra.insert(key.into(), json!("clash"));
    }
    event.extra.insert("note".into(), json!(1));
    let text = event.to_json();
    for key in ["\"seq\"", "\"command\"", "\"type\"", "\"run\""] {
        assert_eq!(text.matches(key).count(), 1, "{text}");
    }
    let back = Event::from_json(&text).unwrap();
    assert_eq!(back.seq, 3);
    assert_eq!(back.extra.len(), 1);
    assert_eq!(back.extra["note"], 1);

    let mut unknown = forge_events::UnknownKind {
        kind: "x_new".into(),
        fields: serde_json::Map::new(),
    };
    unknown.fields.insert("ts".into(), json!("clash"));
    unknown.fields.insert("type".into(), json!("clash"));
    unknown.fields.insert("depth".into(), json!(2));
    let event = Event {
        kind: EventKind::Unknown(unknown),
        extra: serde_json::Map::new(),
        ..back
    };
    let text = event.to_json();
    assert_eq!(text.matches("\"ts\"").count(), 1, "{text}");
    assert_eq!(text.matches("\"type\"").count(), 1, "{text}");
    assert_eq!(Event::from_json(&text).unwrap().type_name(), "x_new");
}

/// Claims were written with their plan key as a string before the mode was typed; those
/// journals read into the typed mode and are written back byte for byte.
#[test]
fn claim_modes_of_old_journals_read_and_write_back_the_same() {
    use forge_events::{ClaimRecord, LockMode, read_journal_bytes};
    let line = r#"{"v":1,"seq":3,"ts":"2026-11-24T14:03:07.123Z","run":"run-1","task":"tests","type":"task_waiting_locks","claims":[{"mode":"reads","pattern":"src/**"},{"mode":"writes","pattern":"tests/**"},{"mode":"appends","pattern":"CHANGELOG.md"}],"blocked_by":["backend"]}"#;
    let events = read_journal_bytes(
        std::path::Path::new("events.jsonl"),
        format!("{line}\n").as_bytes(),
    )
    .unwrap();
    let EventKind::TaskWaitingLocks { claims, blocked_by } = &events[0].kind else {
        panic!("{:?}", events[0].kind);
    };
    let modes: Vec<LockMode> = claims.iter().map(|c| c.mode).collect();
    assert_eq!(modes, [LockMode::Read, LockMode::Write, LockMode::Append]);
    assert_eq!(blocked_by, &[task("backend")]);
    assert_eq!(events[0].to_json(), line);
    // A mode no version wrote is an error naming it, not a silent default.
    let bad = line.replace(r#""mode":"writes""#, r#""mode":"exclusive""#);
    let err = Event::from_json(&bad).unwrap_err().to_string();
    assert!(err.contains("unknown lock mode `exclusive`"), "{err}");
    let record = ClaimRecord {
        mode: LockMode::Append,
        pattern: "CHANGELOG.md".into(),
    };
    assert_eq!(
        serde_json::to_string(&record).unwrap(),
        r#"{"mode":"appends","pattern":"CHANGELOG.md"}"#
    );
}

/// Paths in merge and violation events were plain strings before they were typed; journals
/// written then read into `RepoPath`s and are written back byte for byte.
#[test]
fn paths_of_old_journals_read_and_write_back_the_same() {
    use forge_events::{RepoPath, read_journal_bytes};
    let lines = [
        r#"{"v":1,"seq":8,"ts":"2026-11-24T14:03:07.123Z","run":"run-1","task":"api","type":"claim_violation","paths":["docs/guide.md"],"policy":"reject"}"#,
        r#"{"v":1,"seq":9,"ts":"2026-11-24T14:03:07.124Z","run":"run-1","task":"api","type":"merge_integrated","files":["src/api/auth.rs","src/lib.rs"]}"#,
        r#"{"v":1,"seq":10,"ts":"2026-11-24T14:03:07.125Z","run":"run-1","task":"web","type":"merge_conflict","path":"CHANGELOG.md","tasks":["api","web"],"strategy":"union","resolved":true}"#,
    ];
    let events = read_journal_bytes(
        std::path::Path::new("events.jsonl"),
        format!("{}\n", lines.join("\n")).as_bytes(),
    )
    .unwrap();
    let path = |p: &str| RepoPath::new(p).unwrap();
    assert!(matches!(
        &events[0].kind,
        EventKind::ClaimViolation { paths, .. } if *paths == [path("docs/guide.md")]
    ));
    assert!(matches!(
        &events[1].kind,
        EventKind::MergeIntegrated { files } if *files == [path("src/api/auth.rs"), path("src/lib.rs")]
    ));
    assert!(matches!(
        &events[2].kind,
        EventKind::MergeConflict { path: p, .. } if *p == path("CHANGELOG.md")
    ));
    for (event, line) in events.iter().zip(lines) {
        assert_eq!(event.to_json(), line);
    }
}
