//! `forge add <run> --task …`: a task added to a run in progress, through the real binary.

use std::process::{Child, Stdio};

use crate::util::{Repo, json_lines, task, wait_until};

/// `first` (quick, `a/**`), then `second` (`b/**`), which thinks for `secs` seconds.
fn slow_plan(repo: &Repo, secs: u32) -> String {
    repo.plan(
        "slow",
        &format!(
            "{}{}",
            task("first", "writes = [\"a/**\"]", "write a/x\nx\nend"),
            task(
                "second",
                "writes = [\"b/**\"]\nafter = [\"first\"]",
                &format!("say Thinking hard\nsleep {secs}s\nwrite b/y\ny\nend")
            )
        ),
    )
}

/// Starts `forge run <file> <flags>` in the background; returns it and the run's id once
/// `second` runs.
fn start(repo: &Repo, file: &str, flags: &[&str]) -> (Child, String) {
    let child = repo
        .cmd(&[&["run", file][..], flags].concat())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut run = String::new();
    wait_until(60, "the run to start its second task", || {
        let Some(id) = repo.runs().into_iter().next() else {
            return false;
        };
        run.clone_from(&id);
        let status = repo.forge(&["status", &id, "--json"]);
        status.code == 0 && status.stdout.contains("\"Thinking hard\"")
    });
    (child, run)
}

/// The prompt of a `sim` task that runs `script`.
fn sim(script: &str) -> String {
    format!("Added work.\n\n```forge-sim\n{script}\n```\n")
}

/// The run's journal, one JSON value per event.
fn journal(repo: &Repo, run: &str) -> Vec<serde_json::Value> {
    json_lines(&repo.read(&format!(".forge/runs/{run}/events.jsonl")))
}

/// The seq of the first event of `task` of type `kind`.
fn seq_of(events: &[serde_json::Value], task: &str, kind: &str) -> u64 {
    events
        .iter()
        .find(|e| e["task"] == task && e["type"] == kind)
        .and_then(|e| e["seq"].as_u64())
        .unwrap_or_else(|| panic!("no {kind} of {task} in {events:#?}"))
}

#[test]
fn a_running_run_takes_added_tasks_under_the_same_locks_and_applies_their_files() {
    let repo = Repo::new();
    let file = slow_plan(&repo, 4);
    let (child, run) = start(&repo, &file, &["--yes"]);
    // Writes overlap `second`'s claims: it waits for `second` to let go of `b/**`.
    let added = repo
        .forge(&[
            "add",
            &run,
            "--id",
            "extra",
            "--agent",
            "sim",
            "--writes",
            "b/**",
            "--task",
            &sim("write b/z\nz\nend"),
        ])
        .expect(0);
    assert!(
        added.stdout.contains("Added task extra to run"),
        "{}",
        added.stdout
    );
    // No overlap, after a task that already succeeded: it runs at once.
    repo.forge(&[
        "add",
        &run[..12],
        "--agent",
        "sim",
        "--writes",
        "c/**",
        "--after",
        "first",
        "--task",
        &sim("write c/w\nw\nend"),
    ])
    .expect(0);
    let done = child.wait_with_output().unwrap();
    assert_eq!(
        done.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    // Every task ran, and the added ones' files are in the working tree with the plan's.
    let status = repo.forge(&["status", &run, "--json"]).expect(0);
    let state: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(state["counts"]["succeeded"], 4, "{state:#}");
    assert_eq!(repo.read("b/z"), "z\n");
    assert_eq!(repo.read("c/w"), "w\n");
    assert_eq!(repo.read("b/y"), "y\n");
    let events = journal(&repo, &run);
    let added = events
        .iter()
        .find(|e| e["type"] == "task_added" && e["task"] == "extra")
        .unwrap();
    assert_eq!(added["agent"], "sim");
    assert_eq!(added["writes"], serde_json::json!(["b/**"]));
    // `extra` waited for `second`'s lock and started from a tree holding its work.
    let waiting = events
        .iter()
        .find(|e| e["type"] == "task_waiting_locks" && e["task"] == "extra")
        .unwrap();
    assert_eq!(waiting["blocked_by"], serde_json::json!(["second"]));
    assert!(
        seq_of(&events, "second", "merge_integrated") < seq_of(&events, "extra", "task_started")
    );
    // The default id is the first free `added-N`; it did not wait for `second`.
    assert!(
        seq_of(&events, "added-1", "task_finished") < seq_of(&events, "second", "task_finished")
    );
}

#[test]
fn adding_to_a_finished_or_unknown_run_or_a_task_that_does_not_fit_fails_clearly() {
    let repo = Repo::new();
    let file = repo.plan(
        "one",
        &task("only", "writes = [\"a/**\"]", "write a/x\nx\nend"),
    );
    repo.forge(&["run", &file, "--no-apply"]).expect(0);
    let run = repo.runs().remove(0);
    let out = repo
        .forge(&["add", &run, "--agent", "sim", "--task", &sim("say hi")])
        .expect(1);
    assert!(
        out.stderr.contains("cannot add task `added-1` to run")
            && out.stderr.contains("the run has finished (succeeded)"),
        "{}",
        out.stderr
    );
    let out = repo.forge(&["add", "nosuchrun", "--task", "x"]).expect(2);
    assert!(out.stderr.contains("nosuchrun"), "{}", out.stderr);
    // A run in progress refuses a task that does not fit its plan, saying why.
    let file = slow_plan(&repo, 30);
    let (mut child, run) = start(&repo, &file, &["--no-apply"]);
    let out = repo
        .forge(&[
            "add", &run, "--id", "second", "--agent", "sim", "--after", "frist", "--reads",
            "src/[", "--task", "x",
        ])
        .expect(1);
    for words in [
        "the run already has a task `second`",
        "--after `frist` is not a task of this run; did you mean `first`?",
        "invalid claim `src/[` in --reads",
    ] {
        assert!(out.stderr.contains(words), "{words}: {}", out.stderr);
    }
    let out = repo
        .forge(&["add", &run, "--agent", "nosuchagent", "--task", "x"])
        .expect(1);
    assert!(
        out.stderr.contains("unknown agent `nosuchagent`"),
        "{}",
        out.stderr
    );
    // Nothing was added.
    assert!(
        !journal(&repo, &run)
            .iter()
            .any(|e| e["type"] == "task_added")
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_run_killed_after_a_task_was_added_resumes_with_it() {
    let repo = Repo::new();
    let file = slow_plan(&repo, 10);
    let (mut child, run) = start(&repo, &file, &["--no-apply"]);
    repo.forge(&[
        "add",
        &run,
        "--id",
        "late",
        "--agent",
        "sim",
        "--writes",
        "d/**",
        "--after",
        "second",
        "--task",
        &sim("write d/v\nv\nend"),
    ])
    .expect(0);
    // kill -9: the journal is all that is left of the added task.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !repo
            .read(&format!(".forge/runs/{run}/plan.toml"))
            .contains("late")
    );
    // `second` runs again (its attempt was interrupted), then `late` after it.
    let out = repo.forge(&["resume", &run, "--yes"]).expect(0);
    assert!(!out.stderr.contains("error"), "{}", out.stderr);
    let status = repo.forge(&["status", &run, "--json"]).expect(0);
    let state: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let late = state["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "late")
        .unwrap_or_else(|| panic!("{state:#}"));
    assert_eq!(late["status"], "succeeded", "{state:#}");
    assert_eq!(repo.read("d/v"), "v\n");
    // Added once, not again on resume.
    let events = journal(&repo, &run);
    assert_eq!(
        events.iter().filter(|e| e["type"] == "task_added").count(),
        1
    );
    // Later commands know it like a task of the plan.
    repo.forge(&["diff", &run, "late", "--name-only"]).expect(0);
    repo.forge(&[
        "retry",
        "late",
        &run,
        "--prompt",
        "Once more.",
        "--no-apply",
    ])
    .expect(0);
}

#[test]
fn a_red_gate_after_an_added_task_keeps_its_work_and_says_why_no_fix_round_runs() {
    let repo = Repo::new();
    let file = repo.plan(
        "gated",
        &format!(
            "{}{}[gate]\ncommands = [\"test ! -e bad\"]\n",
            task("first", "writes = [\"a/**\"]", "write a/x\nx\nend"),
            task(
                "second",
                "writes = [\"b/**\"]\nafter = [\"first\"]",
                "say Thinking hard\nsleep 4s\nwrite b/y\ny\nend"
            )
        ),
    );
    let (child, run) = start(&repo, &file, &["--no-apply"]);
    repo.forge(&[
        "add",
        &run,
        "--id",
        "breaker",
        "--agent",
        "sim",
        "--writes",
        "bad",
        "--task",
        &sim("write bad\noops\nend"),
    ])
    .expect(0);
    let done = child.wait_with_output().unwrap();
    assert_eq!(
        done.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let events = journal(&repo, &run);
    let warning = events
        .iter()
        .find(|e| e["type"] == "run_warning")
        .unwrap_or_else(|| panic!("{events:#?}"));
    assert!(
        warning["message"]
            .as_str()
            .unwrap()
            .contains("no gate fix round: this run took tasks added with `forge add`"),
        "{warning}"
    );
    // The added task's work is still in the run's result.
    let diff = repo.forge(&["diff", &run, "--name-only"]).expect(0);
    assert!(diff.stdout.lines().any(|l| l == "bad"), "{}", diff.stdout);
}

#[test]
fn a_task_cannot_be_added_after_a_candidate() {
    let repo = Repo::new();
    let file = repo.plan(
        "pick",
        &format!(
            "{}{}",
            task(
                "pick",
                "writes = [\"c/**\"]\ncandidates = 2",
                "write c/x\nx\nend"
            ),
            task(
                "second",
                "writes = [\"b/**\"]",
                "say Thinking hard\nsleep 30s\nwrite b/y\ny\nend"
            )
        ),
    );
    let (mut child, run) = start(&repo, &file, &["--no-apply"]);
    let out = repo
        .forge(&[
            "add", &run, "--agent", "sim", "--after", "pick-1", "--task", "x",
        ])
        .expect(1);
    assert!(
        out.stderr
            .contains("--after `pick-1`: it is a candidate of `pick`"),
        "{}",
        out.stderr
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
