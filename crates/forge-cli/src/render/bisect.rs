//! How the gate bisect (`gate_bisect_*` events) is shown: a line per step, a footer line in the
//! live table, and an item of the summary.

use forge_events::{BisectRecord, EventKind, RunState};

use super::format;
use super::summary::{Item, Mark};
use crate::term::Style;

/// The plain line for a `gate_bisect_*` event.
pub(crate) fn line(kind: &EventKind) -> Option<String> {
    Some(match kind {
        EventKind::GateBisectStarted { tasks, concurrency } => format!(
            "gate bisect: looking for the first failing task among {} ({} at a time)",
            format::plural(tasks.len() as u64, "integrated task"),
            concurrency
        ),
        EventKind::GateBisectStep {
            changesets,
            last,
            passed,
            failed_command,
            duration_ms,
            reused,
        } => {
            let tree = match last {
                Some(last) => format!("the tree up to {last} ({changesets} of the ChangeSets)"),
                None => "the base alone".to_owned(),
            };
            let verdict = match (passed, failed_command) {
                (true, _) => "passes".to_owned(),
                (false, Some(c)) => format!("fails ({c})"),
                (false, None) => "fails".to_owned(),
            };
            let how = if *reused {
                " (from before the resume)".to_owned()
            } else {
                format!(" in {}", format::millis(*duration_ms))
            };
            format!("gate bisect: {tree} {verdict}{how}")
        }
        EventKind::GateBisectFinished { message, .. } => format!("gate bisect: {message}"),
        _ => return None,
    })
}

/// The live table's line while a bisect runs, or once it named its result.
pub(crate) fn table_line(state: &RunState, style: Style) -> Option<String> {
    let b = state.bisect.as_ref()?;
    if b.finished {
        return Some(format!("{} {}", style.red("✗"), finished_text(b)));
    }
    let (lo, hi) = bounds(b);
    let range = match (lo, hi) {
        (Some(lo), Some(hi)) => format!("between {lo} and {hi}"),
        (None, Some(hi)) => format!("at or before {hi}"),
        _ => format!("among {}", b.tasks.len()),
    };
    Some(format!(
        "{} gate bisect: first failing task {range} — {} so far",
        style.cyan("⟳"),
        format::plural(u64::from(b.gate_runs), "gate run")
    ))
}

/// The summary's item about the bisect, once it finished.
pub(crate) fn summary_item(state: &RunState) -> Option<Item> {
    let b = state.bisect.as_ref().filter(|b| b.finished)?;
    Some(Item {
        mark: Mark::Bad,
        text: finished_text(b),
    })
}

fn finished_text(b: &BisectRecord) -> String {
    let runs = format::plural(u64::from(b.gate_runs), "gate run");
    match (&b.culprit, b.base_fails) {
        (_, true) => format!("Bisect: the base itself fails the gate ({runs})"),
        (Some(task), _) => format!("Bisect: {task} is the first failing task ({runs})"),
        (None, false) => format!(
            "Bisect: {}",
            b.message.as_deref().unwrap_or("no task named")
        ),
    }
}

/// The last task known to pass and the first known to fail, so far.
fn bounds(b: &BisectRecord) -> (Option<&str>, Option<&str>) {
    let task = |k: u32| -> Option<&str> {
        usize::try_from(k)
            .ok()
            .and_then(|k| k.checked_sub(1))
            .and_then(|i| b.tasks.get(i))
            .map(forge_events::TaskId::as_str)
    };
    let passed = b
        .steps
        .iter()
        .filter(|s| s.passed)
        .map(|s| s.changesets)
        .max();
    let failed = b
        .steps
        .iter()
        .filter(|s| !s.passed)
        .map(|s| s.changesets)
        .min()
        .or_else(|| u32::try_from(b.tasks.len()).ok());
    let after = passed.and_then(|k| task(k + 1));
    (after.or_else(|| task(1)), failed.and_then(task))
}

#[cfg(test)]
mod tests {
    use forge_events::{Event, RunId, TaskId};

    use super::*;

    fn ev(seq: u64, kind: EventKind) -> Event {
        Event::new(RunId::new("r1").unwrap(), seq, None, kind)
    }

    #[test]
    fn steps_and_result_read_as_sentences() {
        let tasks: Vec<TaskId> = ["a", "b", "c", "d"]
            .iter()
            .map(|t| TaskId::new(*t).unwrap())
            .collect();
        let mut state = RunState::new();
        state.apply(&ev(
            1,
            EventKind::GateBisectStarted {
                tasks: tasks.clone(),
                concurrency: 1,
            },
        ));
        let step = EventKind::GateBisectStep {
            changesets: 2,
            last: Some(tasks[1].clone()),
            passed: true,
            failed_command: None,
            duration_ms: 1500,
            reused: false,
        };
        assert_eq!(
            line(&step).unwrap(),
            "gate bisect: the tree up to b (2 of the ChangeSets) passes in 1.5s"
        );
        state.apply(&ev(2, step));
        assert_eq!(
            table_line(&state, Style::plain()).unwrap(),
            "⟳ gate bisect: first failing task between c and d — 1 gate run so far"
        );
        assert!(summary_item(&state).is_none());
        let done = EventKind::GateBisectFinished {
            culprit: Some(tasks[2].clone()),
            base_fails: false,
            gate_runs: 2,
            message: "`c` is the first task whose changes fail the gate (bisected in 2 gate runs)"
                .into(),
        };
        assert_eq!(
            line(&done).unwrap(),
            "gate bisect: `c` is the first task whose changes fail the gate (bisected in 2 gate runs)"
        );
        state.apply(&ev(3, done));
        assert_eq!(
            summary_item(&state).unwrap().text,
            "Bisect: c is the first failing task (2 gate runs)"
        );
        let base = EventKind::GateBisectStep {
            changesets: 0,
            last: None,
            passed: false,
            failed_command: Some("make".into()),
            duration_ms: 0,
            reused: true,
        };
        assert_eq!(
            line(&base).unwrap(),
            "gate bisect: the base alone fails (make) (from before the resume)"
        );
    }
}
