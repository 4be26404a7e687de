//! The plan preview's analysis and the live ETA, through the public API.

use std::path::Path;
use std::time::Duration;

use forge_events::{Event, RunState, SerialReason, Timestamp};
use forge_exec::plan::preview::{Estimates, preview, remaining};
use forge_exec::plan::{Plan, PlanFormat, PlanOptions};

fn plan(text: &str) -> Plan {
    Plan::parse(
        text,
        Path::new("plan.toml"),
        PlanFormat::Toml,
        &PlanOptions::default(),
    )
    .unwrap()
}

fn at(minute: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + minute * 60).unwrap()
}

fn event(seq: u64, minute: i64, task: Option<&str>, body: &str) -> Event {
    let task = task.map_or(String::new(), |t| format!(r#""task":"{t}","#));
    let ts = at(minute);
    Event::from_json(&format!(
        r#"{{"v":1,"seq":{seq},"ts":"{ts}","run":"r-1",{task}{body}}}"#
    ))
    .unwrap()
}

const PLAN: &str = r#"
name = "eta"
concurrency = 1
[[task]]
id = "a"
agent = "sim"
prompt = "x"
writes = ["a/**"]
estimate = "10m"
[[task]]
id = "b"
agent = "sim"
prompt = "x"
writes = ["b/**"]
after = ["a"]
estimate = "5m"
"#;

#[test]
fn the_eta_follows_the_run_as_tasks_start_and_finish() {
    let preview = preview(&plan(PLAN), &Estimates::none());
    assert_eq!(preview.estimate_ms, Some(15 * 60_000));
    assert_eq!(preview.sequential_ms, Some(15 * 60_000));
    assert_eq!(preview.serialized.len(), 1);
    assert_eq!(preview.serialized[0].reason, SerialReason::After);

    let mut state = RunState::new();
    let started = r#""type":"run_started","plan":"eta","plan_hash":"h","tasks":2,"concurrency":1,"base":"head""#;
    state.apply(&event(1, 0, None, started));
    let eta = |state: &RunState, minute| remaining(&preview, state, at(minute));
    assert_eq!(eta(&state, 0), Some(Duration::from_mins(15)));
    let start = |task: &str| {
        format!(
            r#""type":"task_started","attempt":1,"agent":"sim","workspace":"/w/{task}","strategy":"copy""#
        )
    };
    state.apply(&event(2, 1, Some("a"), &start("a")));
    // Four minutes into a's ten: six left, then b's five.
    assert_eq!(eta(&state, 5), Some(Duration::from_mins(11)));
    let finished = r#""type":"task_finished","status":"succeeded","duration_ms":420000"#;
    state.apply(&event(3, 8, Some("a"), finished));
    assert_eq!(eta(&state, 8), Some(Duration::from_mins(5)));
    state.apply(&event(4, 8, Some("b"), &start("b")));
    // Over its estimate: nothing is left that the estimates know of.
    assert_eq!(eta(&state, 20), Some(Duration::ZERO));
}

#[test]
fn without_an_estimate_for_a_task_still_to_run_there_is_no_eta() {
    let text = PLAN.replace("estimate = \"5m\"\n", "");
    let preview = preview(&plan(&text), &Estimates::none());
    assert_eq!(preview.estimate_ms, None);
    assert_eq!(preview.sequential_ms, None);
    assert_eq!(preview.critical_path.len(), 2);
    let state = RunState::new();
    assert_eq!(remaining(&preview, &state, at(0)), None);
}

#[test]
fn estimates_are_medians_per_task_then_per_agent() {
    let run = |n: u64, ms_a: u64, ms_b: u64| {
        let mut state = RunState::new();
        let mut seq = 0;
        let mut next = |task: Option<&str>, body: &str| {
            seq += 1;
            state.apply(&event(seq + n * 10, 0, task, body));
        };
        next(
            None,
            r#""type":"run_started","plan":"eta","plan_hash":"h","tasks":2,"concurrency":1,"base":"head""#,
        );
        for (task, ms) in [("a", ms_a), ("b", ms_b)] {
            next(
                Some(task),
                r#""type":"task_started","attempt":1,"agent":"sim","workspace":"/w","strategy":"copy""#,
            );
            next(
                Some(task),
                &format!(r#""type":"task_finished","status":"succeeded","duration_ms":{ms}"#),
            );
        }
        state
    };
    let states = [run(1, 100, 1000), run(2, 300, 2000), run(3, 200, 9000)];
    let estimates = Estimates::from_states(&states);
    assert_eq!(estimates.runs(), 3);
    let text = PLAN
        .replace("estimate = \"10m\"\n", "")
        .replace("id = \"b\"", "id = \"c\"")
        .replace("after = [\"a\"]\n", "")
        .replace("estimate = \"5m\"\n", "");
    let preview = preview(&plan(&text), &estimates);
    // a: its own median; c (never ran): the median of every sim task, (300 + 1000) / 2.
    assert_eq!(preview.tasks[0].estimate_ms, Some(200));
    assert_eq!(preview.tasks[1].estimate_ms, Some(650));
    assert_eq!(preview.sequential_ms, Some(850));
}
