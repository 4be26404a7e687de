//! Per-task checks (`check`, `check_rounds`): run in the task's workspace after its agent, a
//! failure fed back to the same agent session; the attempt fails when the rounds run out.

use crate::util::{Repo, json_lines};

/// A task of the `sim` agent with `extra` keys.
fn task(id: &str, extra: &str, script: &str) -> String {
    crate::util::task(id, extra, script)
}

#[test]
fn a_failed_check_is_fed_back_to_the_same_session_and_passes_the_second_time() {
    let repo = Repo::new();
    // The check prints what would fix it as a script the simulated agent carries out when it
    // reads the feedback: the agent acts on the check's output. (The feedback fences the
    // output; the script closes that fence first, as the simulated agent reads only top-level
    // blocks.)
    let check = r"test -f src/fixed.txt || { echo 'error: src/fixed.txt is missing'; printf '```\n```forge-sim\nwrite src/fixed.txt\nfixed\nend\n'; exit 1; }";
    let plan = format!(
        "name = \"checks\"\n[defaults]\ncheck = [{}]\n\n{}",
        serde_json::to_string(check).unwrap(),
        task(
            "api",
            "writes = [\"src/**\"]",
            "write src/api.txt\napi\nend"
        ),
    );
    let file = repo.plan("checks", &plan);
    let out = repo.forge(&["run", &file, "--yes", "--json"]).expect(0);
    let events = json_lines(&out.stdout);
    let checks: Vec<(bool, u64)> = events
        .iter()
        .filter(|e| e["type"] == "task_check")
        .map(|e| (e["passed"].as_bool().unwrap(), e["round"].as_u64().unwrap()))
        .collect();
    assert_eq!(checks, [(false, 1), (true, 2)]);
    // One attempt, its agent run twice in one session.
    let started = events
        .iter()
        .filter(|e| e["type"] == "task_started")
        .count();
    assert_eq!(started, 1);
    let sessions: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "task_session")
        .map(|e| e["session"].as_str().unwrap())
        .collect();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert_eq!(sessions[0], sessions[1]);
    assert_eq!(repo.read("src/api.txt"), "api\n");
    assert_eq!(repo.read("src/fixed.txt"), "fixed\n");
    let run = &repo.runs()[0];
    let feedback = repo.read(&format!(".forge/runs/{run}/tasks/api/1/prompt-check1.md"));
    assert!(
        feedback.contains("error: src/fixed.txt is missing"),
        "{feedback}"
    );
}

#[test]
fn a_check_that_always_fails_fails_the_attempt_after_its_rounds() {
    let repo = Repo::new();
    let plan = format!(
        "name = \"broken\"\n{}{}",
        task(
            "api",
            "writes = [\"src/**\"]\ncheck = [\"true\", \"echo 'error: always broken' && exit 7\"]\ncheck_rounds = 2",
            "write src/api.txt\napi\nend"
        ),
        task("docs", "writes = [\"docs/**\"]", "write docs/x\nx\nend"),
    );
    let file = repo.plan("broken", &plan);
    let out = repo.forge(&["run", &file, "--yes"]).expect(1);
    assert!(
        out.stdout.contains(
            "api: its check `echo 'error: always broken' && exit 7` failed (exit code 7) after 2 round(s) of feedback to the agent"
        ),
        "{}",
        out.stdout
    );
    let run = &repo.runs()[0];
    let events = json_lines(&repo.read(&format!(".forge/runs/{run}/events.jsonl")));
    let failed_rounds: Vec<u64> = events
        .iter()
        .filter(|e| e["type"] == "task_check" && e["passed"] == false)
        .map(|e| e["round"].as_u64().unwrap())
        .collect();
    assert_eq!(failed_rounds, [1, 2, 3]);
    assert!(!repo.path().join("src/api.txt").exists());

    // A check with an empty command is a plan error naming it.
    let bad = repo.plan(
        "empty",
        &task("api", "writes = [\"src/**\"]\ncheck = [\" \"]", "say hi"),
    );
    let out = repo.forge(&["check", &bad]).expect(2);
    assert!(out.stderr.contains("empty command in"), "{}", out.stderr);
}
