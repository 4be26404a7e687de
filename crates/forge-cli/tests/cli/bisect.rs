//! A red gate is bisected over the integrated `ChangeSets` to the first failing task (or to the
//! base): `gate_bisect_*` events, the lines, the summary, `forge status --json`, and a bisect
//! killed with SIGKILL that `forge resume` finishes.

use std::fmt::Write as _;
use std::process::Stdio;

use crate::util::{Repo, json_lines, task, wait_until};

/// Eight tasks, one file each; `t5` writes the line that breaks the "build" (the gate greps the
/// sources for it). `t2` comes after `t1` and `t6` after `t5`: dependencies stay together.
fn eight_tasks(repo: &Repo, gate_sleep: &str) -> String {
    let mut plan = String::from("name = \"eight\"\nconcurrency = 2\n\n");
    for i in 1..=8 {
        let body = if i == 5 { "BROKEN" } else { "fine" };
        let after = match i {
            2 => "\nafter = [\"t1\"]",
            6 => "\nafter = [\"t5\"]",
            _ => "",
        };
        plan.push_str(&task(
            &format!("t{i}"),
            &format!("writes = [\"src/t{i}.txt\"]{after}"),
            &format!("write src/t{i}.txt\n{body}\nend"),
        ));
    }
    // The bisect alone: no fix round sends `t5` back (see retry.rs for fix rounds).
    let _ = writeln!(
        plan,
        "[gate]\ncommands = [\"{gate_sleep}test -d src && ! grep -rq BROKEN src\"]\nfix_rounds = 0"
    );
    repo.plan("eight", &plan)
}

fn status(repo: &Repo, run: &str) -> serde_json::Value {
    let out = repo.forge(&["status", run, "--json"]);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

#[test]
fn the_bisect_names_the_task_that_breaks_the_build_in_at_most_four_gate_runs() {
    let repo = Repo::new();
    repo.write("src/base.txt", "fine\n");
    repo.commit("sources");
    let file = eight_tasks(&repo, "");
    let out = repo.forge(&["run", &file, "--no-apply"]).expect(4);
    assert!(
        out.stdout.contains(
            "gate bisect: looking for the first failing task among 8 integrated tasks (2 at a time)"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("gate bisect: `t5` is the first task whose changes fail the gate"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("✗ Bisect: t5 is the first failing task"),
        "{}",
        out.stdout
    );
    let run = repo.runs()[0].clone();
    let state = status(&repo, &run);
    let bisect = &state["bisect"];
    assert_eq!(bisect["culprit"], "t5", "{bisect}");
    assert_eq!(bisect["base_fails"], false);
    assert_eq!(bisect["finished"], true);
    let runs = bisect["gate_runs"].as_u64().unwrap();
    assert!((1..=4).contains(&runs), "{bisect}");
    let steps = bisect["steps"].as_array().unwrap();
    assert_eq!(steps.len() as u64, runs);
    // Every tree holding t5 failed, every other passed; t6 never comes without t5.
    let order: Vec<&str> = bisect["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let at = |t: &str| order.iter().position(|x| *x == t).unwrap();
    assert!(at("t5") < at("t6") && at("t1") < at("t2"), "{order:?}");
    for step in steps {
        let k = usize::try_from(step["changesets"].as_u64().unwrap()).unwrap();
        assert_eq!(step["passed"], k <= at("t5"), "{step}");
    }
    // The run's result says so too, and the events are in the journal.
    let result: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo.path().join(format!(".forge/runs/{run}/result.json")))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(result["bisect"]["culprit"], "t5");
    let events =
        std::fs::read_to_string(repo.path().join(format!(".forge/runs/{run}/events.jsonl")))
            .unwrap();
    let types: Vec<String> = json_lines(&events)
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    for t in [
        "gate_bisect_started",
        "gate_bisect_step",
        "gate_bisect_finished",
    ] {
        assert!(types.iter().any(|x| x == t), "{t} missing: {types:?}");
    }
}

#[test]
fn a_base_that_already_fails_the_gate_is_named() {
    let repo = Repo::new();
    repo.write("src/base.txt", "BROKEN before any task\n");
    repo.commit("broken base");
    let file = eight_tasks(&repo, "");
    let out = repo.forge(&["run", &file, "--no-apply"]).expect(4);
    assert!(
        out.stdout
            .contains("✗ Bisect: the base itself fails the gate"),
        "{}",
        out.stdout
    );
    let state = status(&repo, &repo.runs()[0]);
    assert_eq!(state["bisect"]["base_fails"], true, "{}", state["bisect"]);
    assert!(state["bisect"]["culprit"].is_null());
    let base_step = state["bisect"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["changesets"] == 0)
        .cloned()
        .unwrap();
    assert_eq!(base_step["passed"], false);
}

#[test]
fn a_bisect_killed_with_sigkill_is_finished_by_resume_without_rerunning_tasks() {
    let repo = Repo::new();
    repo.write("src/base.txt", "fine\n");
    repo.commit("sources");
    // A slow gate, so that the kill lands in the middle of the bisect.
    let file = eight_tasks(&repo, "sleep 2; ");
    let mut child = repo
        .cmd(&["run", &file, "--no-apply"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut run = String::new();
    wait_until(120, "a first bisect step", || {
        let Some(id) = repo.runs().first().cloned() else {
            return false;
        };
        run = id;
        let s = status(&repo, &run);
        s["bisect"]["steps"]
            .as_array()
            .is_some_and(|steps| !steps.is_empty())
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = status(&repo, &run);
    assert_eq!(before["bisect"]["finished"], false, "{}", before["bisect"]);
    let known = before["bisect"]["steps"].as_array().unwrap().len();

    let out = repo.forge(&["resume", &run, "--no-apply"]).expect(4);
    assert!(
        out.stdout
            .contains("gate bisect: `t5` is the first task whose changes fail the gate"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("(from before the resume)"),
        "{}",
        out.stdout
    );
    let after = status(&repo, &run);
    assert_eq!(after["bisect"]["culprit"], "t5", "{}", after["bisect"]);
    let reused = after["bisect"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["reused"] == true)
        .count();
    assert_eq!(reused, known, "{}", after["bisect"]);
    // No task ran twice.
    let events =
        std::fs::read_to_string(repo.path().join(format!(".forge/runs/{run}/events.jsonl")))
            .unwrap();
    let started = json_lines(&events)
        .iter()
        .filter(|e| e["type"] == "task_started")
        .count();
    assert_eq!(started, 8);
}
