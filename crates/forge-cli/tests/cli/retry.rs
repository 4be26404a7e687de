//! `forge retry`: one task of a finished run runs again with added instructions, continuing
//! its agent's session from the workspace its previous attempt left; its dependents re-run,
//! every other task is kept (the agents' counters prove it); a retry killed midway resumes.

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::Stdio;

use crate::util::{Repo, json_lines, task, wait_until};

/// A plan where `b` fails after writing half its work; `c` depends on `b`, `d` on `c`; `a`
/// stands alone. Every task but `b` counts its runs in `counters/<id>`.
fn plan(counters: &Path) -> String {
    let count = |id: &str| format!("run echo x >> {}/{id}", counters.display());
    format!(
        "name = \"retry\"\n{}{}{}{}",
        task(
            "a",
            "writes = [\"a/**\"]",
            &format!("{}\nwrite a/x\na\nend", count("a"))
        ),
        task(
            "b",
            "writes = [\"b/**\"]",
            "write b/partial.txt\nhalf\nend\nfail 3"
        ),
        task(
            "c",
            "writes = [\"c/**\"]\nafter = [\"b\"]",
            &format!("{}\nwrite c/x\nc\nend", count("c"))
        ),
        task(
            "d",
            "writes = [\"d/**\"]\nafter = [\"c\"]",
            &format!("{}\nwrite d/x\nd\nend", count("d"))
        ),
    )
}

fn runs_of(counters: &Path, id: &str) -> usize {
    std::fs::read_to_string(counters.join(id)).map_or(0, |t| t.lines().count())
}

fn journal(repo: &Repo, run: &str) -> Vec<serde_json::Value> {
    json_lines(&repo.read(&format!(".forge/runs/{run}/events.jsonl")))
}

/// Waits until the journal of `run` records that `task` started `attempt`. The terminal shows
/// an event as soon as it is published, a moment before the journal has it; a kill in between
/// would make the resume start that attempt number again.
fn wait_for_journaled_start(repo: &Repo, run: &str, task: &str, attempt: u64) {
    wait_until(
        30,
        &format!("the journal to record {task}'s attempt {attempt}"),
        || {
            journal(repo, run).iter().any(|e| {
                e["type"] == "task_started"
                    && e["task"] == task
                    && e["attempt"].as_u64() == Some(attempt)
            })
        },
    );
}

/// The sessions `task` named, per attempt, in journal order.
fn sessions(events: &[serde_json::Value], task: &str) -> Vec<(u64, String)> {
    events
        .iter()
        .filter(|e| e["type"] == "task_session" && e["task"] == task)
        .map(|e| {
            (
                e["attempt"].as_u64().unwrap(),
                e["session"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

const FIX: &str = "Finish the job.\n\n```forge-sim\nrun test -f b/partial.txt\nwrite b/done.txt\ndone\nend\n```\n";

#[test]
fn a_failed_task_retried_with_a_prompt_continues_its_session_and_runs_what_it_blocked() {
    let repo = Repo::new();
    // Outside `/tmp`: each attempt has its own.
    let counters = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let file = repo.plan("retry", &plan(counters.path()));
    repo.forge(&["run", &file, "--no-apply"]).expect(1);
    let run = repo.runs()[0].clone();
    assert_eq!(runs_of(counters.path(), "a"), 1);
    assert_eq!(runs_of(counters.path(), "c"), 0);

    // A task that never ran because its dependency failed: retry the dependency.
    let out = repo.forge(&["retry", "d", &run]).expect(2);
    assert!(
        out.stderr
            .contains("waits for `b` which did not succeed; retry `b`"),
        "{}",
        out.stderr
    );
    // A task the plan does not have.
    let out = repo.forge(&["retry", "bb", &run]).expect(2);
    assert!(
        out.stderr.contains("no such task (did you mean `b`?)"),
        "{}",
        out.stderr
    );
    let out = repo
        .forge(&["retry", "b", &run, "--prompt-file", "missing.md"])
        .expect(2);
    assert!(out.stderr.contains("missing.md"), "{}", out.stderr);

    let out = repo
        .forge(&["retry", "b", "--prompt", FIX, "--yes"])
        .expect(0);
    assert!(
        out.stdout
            .contains("b: retry requested; then c and d run again"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("b: started attempt 2"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("a: started"), "{}", out.stdout);
    assert!(out.stdout.contains("d: succeeded"), "{}", out.stdout);
    // The agent started from what its failed attempt left, and continued its session.
    assert_eq!(repo.read("b/partial.txt"), "half\n");
    assert_eq!(repo.read("b/done.txt"), "done\n");
    assert_eq!(repo.read("a/x"), "a\n");
    assert_eq!(repo.read("d/x"), "d\n");
    let events = journal(&repo, &run);
    let b = sessions(&events, "b");
    assert_eq!(b.len(), 2, "{b:?}");
    assert_eq!((b[0].0, b[1].0), (1, 2));
    assert_eq!(
        b[0].1, b[1].1,
        "the retry continues the first attempt's session"
    );
    let request = events
        .iter()
        .find(|e| e["type"] == "task_retry_requested")
        .unwrap();
    assert_eq!(request["task"], "b");
    assert_eq!(request["dependents"], serde_json::json!(["c", "d"]));
    assert_eq!(request["origin"], "user");
    assert_eq!(request["prompt"], FIX);
    // Not re-run: `a`; run for the first time: `c` and `d`.
    assert_eq!(runs_of(counters.path(), "a"), 1);
    assert_eq!(runs_of(counters.path(), "c"), 1);
    assert_eq!(runs_of(counters.path(), "d"), 1);

    // Retrying a task that succeeded discards its dependents' results: they run again.
    let more = "```forge-sim\nwrite b/more.txt\nmore\nend\n```";
    let out = repo
        .forge(&["retry", "b", &run, "--prompt", more, "--no-apply", "--json"])
        .expect(0);
    let events = json_lines(&out.stdout);
    let started: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "task_started")
        .map(|e| e["task"].as_str().unwrap())
        .collect();
    assert_eq!(started, ["b", "c", "d"]);
    assert_eq!(runs_of(counters.path(), "a"), 1);
    assert_eq!(runs_of(counters.path(), "c"), 2);
    assert_eq!(runs_of(counters.path(), "d"), 2);
    let diff = repo.forge(&["diff", &run]).expect(0);
    for path in [
        "a/x",
        "b/partial.txt",
        "b/done.txt",
        "b/more.txt",
        "c/x",
        "d/x",
    ] {
        assert!(diff.stdout.contains(path), "{path}: {}", diff.stdout);
    }
}

#[test]
fn a_retry_killed_midway_is_finished_by_resume_without_rerunning_kept_tasks() {
    let repo = Repo::new();
    // Outside `/tmp`: each attempt has its own.
    let counters = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let file = repo.plan("retry", &plan(counters.path()));
    repo.forge(&["run", &file, "--no-apply"]).expect(1);
    let run = repo.runs()[0].clone();
    // The retried attempt (2) hangs until killed; the one after it (3, on resume) goes on.
    let prompt = "```forge-sim\nrun if [ \"$FORGE_ATTEMPT\" = 2 ]; then sleep 60; fi\nrun test -f b/partial.txt\nwrite b/done.txt\ndone\nend\n```";
    let mut child = repo
        .cmd(&["retry", "b", &run, "--prompt", prompt, "--no-apply"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while stdout.read_line(&mut line).unwrap() > 0 && !line.contains("b: started attempt 2") {
        line.clear();
    }
    assert!(line.contains("b: started attempt 2"), "{line}");
    wait_for_journaled_start(&repo, &run, "b", 2);
    child.kill().unwrap();
    child.wait().unwrap();

    let out = repo.forge(&["resume", &run, "--yes"]).expect(0);
    assert!(
        out.stdout.contains("b: started attempt 3"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("a: started"), "{}", out.stdout);
    assert_eq!(repo.read("b/done.txt"), "done\n");
    assert_eq!(repo.read("d/x"), "d\n");
    assert_eq!(runs_of(counters.path(), "a"), 1);
    assert_eq!(runs_of(counters.path(), "c"), 1);
    assert_eq!(runs_of(counters.path(), "d"), 1);
    // Attempt 3 still continues attempt 1's session with the retry's instructions.
    let b = sessions(&journal(&repo, &run), "b");
    assert_eq!(b.first().unwrap().1, b.last().unwrap().1, "{b:?}");
}

/// Eight tasks counting their runs; `t5` writes BROKEN, `t6` runs after it. The gate fails while
/// a source says BROKEN, printing an error, a failing test's name and (for the simulated agent,
/// which acts on scripts it reads) the fix, which hangs on attempt `hang_on`, if any.
fn eight_tasks(repo: &Repo, counters: &Path, hang_on: Option<u32>) -> String {
    repo.write("src/base.txt", "fine\n");
    repo.commit("sources");
    let mut plan = String::from("name = \"eight\"\nconcurrency = 2\n\n");
    for i in 1..=8 {
        let body = if i == 5 { "BROKEN" } else { "fine" };
        let after = if i == 6 { "\nafter = [\"t5\"]" } else { "" };
        plan.push_str(&task(
            &format!("t{i}"),
            &format!("writes = [\"src/t{i}.txt\"]{after}"),
            &format!(
                "run echo x >> {}/t{i}\nwrite src/t{i}.txt\n{body}\nend",
                counters.display()
            ),
        ));
    }
    let hang = hang_on.map_or(String::new(), |n| {
        format!(r#"run if [ \"$FORGE_ATTEMPT\" = {n} ]; then sleep 60; fi\n"#)
    });
    let gate = format!(
        r"! grep -rq BROKEN src || {{ echo 'error: src/t5.txt: the build is BROKEN'; echo 'test build::sources ... FAILED'; printf '```\n```forge-sim\n{hang}write src/t5.txt\nfixed\nend\n'; exit 1; }}"
    );
    let _ = writeln!(plan, "[gate]\ncommands = ['''{gate}''']");
    repo.plan("eight", &plan)
}

/// Eight tasks, `t5` breaks the build (`t6` runs after it): the bisect names `t5`, the fix round
/// sends it the failing gate command's output, the agent fixes it in its own session, `t6`
/// re-runs on top, no other task runs again, the gate passes.
#[test]
fn a_fix_round_sends_the_gate_failure_to_the_culprit_and_the_run_succeeds() {
    let repo = Repo::new();
    // Outside `/tmp`: each attempt has its own.
    let counters = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let file = eight_tasks(&repo, counters.path(), None);
    let out = repo.forge(&["run", &file, "--yes", "--json"]).expect(0);
    let events = json_lines(&out.stdout);
    let request = events
        .iter()
        .find(|e| e["type"] == "task_retry_requested")
        .expect("a fix round");
    assert_eq!(request["task"], "t5");
    assert_eq!(request["origin"], "gate");
    assert_eq!(request["dependents"], serde_json::json!(["t6"]));
    let prompt = request["prompt"].as_str().unwrap();
    for shown in [
        "error: src/t5.txt: the build is BROKEN",
        "test build::sources ... FAILED",
    ] {
        assert!(prompt.contains(shown), "{shown}: {prompt}");
    }
    let culprit = events
        .iter()
        .find(|e| e["type"] == "gate_bisect_finished")
        .unwrap();
    assert_eq!(culprit["culprit"], "t5");
    let gates: Vec<bool> = events
        .iter()
        .filter(|e| e["type"] == "gate_finished")
        .map(|e| e["passed"].as_bool().unwrap())
        .collect();
    assert_eq!(gates, [false, true]);
    assert_eq!(events.last().unwrap()["status"], "succeeded");
    assert_eq!(repo.read("src/t5.txt"), "fixed\n");
    assert_eq!(repo.read("src/t8.txt"), "fine\n");
    for i in [1, 2, 3, 4, 5, 7, 8] {
        assert_eq!(runs_of(counters.path(), &format!("t{i}")), 1, "t{i}");
    }
    assert_eq!(runs_of(counters.path(), "t6"), 2, "the dependent re-ran");
}

#[test]
fn a_fix_round_killed_midway_is_finished_by_resume() {
    let repo = Repo::new();
    // Outside `/tmp`: each attempt has its own.
    let counters = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    // The culprit's fix-round attempt (2) hangs; on resume, attempt 3 fixes it.
    let file = eight_tasks(&repo, counters.path(), Some(2));
    let mut child = repo
        .cmd(&["run", &file, "--no-apply"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while stdout.read_line(&mut line).unwrap() > 0 && !line.contains("t5: started attempt 2") {
        line.clear();
    }
    assert!(line.contains("t5: started attempt 2"), "{line}");
    let run = repo.runs()[0].clone();
    wait_for_journaled_start(&repo, &run, "t5", 2);
    child.kill().unwrap();
    child.wait().unwrap();

    let out = repo.forge(&["resume", &run, "--yes"]).expect(0);
    assert!(
        out.stdout.contains("t5: started attempt 3"),
        "{}",
        out.stdout
    );
    assert_eq!(repo.read("src/t5.txt"), "fixed\n");
    assert_eq!(repo.read("src/t6.txt"), "fine\n");
    for i in [1, 2, 3, 4, 5, 7, 8] {
        assert_eq!(runs_of(counters.path(), &format!("t{i}")), 1, "t{i}");
    }
    assert_eq!(runs_of(counters.path(), "t6"), 2, "the dependent re-ran");
}

#[test]
fn fix_rounds_run_out_and_the_run_fails_naming_the_culprit() {
    let repo = Repo::new();
    let plan = format!(
        "name = \"stubborn\"\n{}{}[gate]\ncommands = [\"! grep -rq BROKEN src\"]\nfix_rounds = 2\n",
        task(
            "ok",
            "writes = [\"src/ok.txt\"]",
            "write src/ok.txt\nfine\nend"
        ),
        task(
            "bad",
            "writes = [\"src/bad.txt\"]",
            "write src/bad.txt\nBROKEN\nend"
        ),
    );
    let file = repo.plan("stubborn", &plan);
    let out = repo
        .forge(&["run", &file, "--no-apply", "--json"])
        .expect(4);
    let events = json_lines(&out.stdout);
    let rounds = events
        .iter()
        .filter(|e| e["type"] == "task_retry_requested" && e["origin"] == "gate")
        .count();
    assert_eq!(rounds, 2);
    let finished = events.last().unwrap();
    let message = finished["summary"]["message"].as_str().unwrap();
    assert!(
        message.contains("`bad` is the first task whose changes fail the gate"),
        "{message}"
    );
}
