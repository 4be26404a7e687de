//! `forge run --task "<prompt>" -n N`: N candidates of one task side by side, each from the
//! same start in its own workspace, never merged into each other; compared with `forge diff`,
//! one chosen with `forge apply --tasks`.

use crate::util::{Repo, json_lines};

/// A prompt whose sim script writes `out.txt` naming the candidate (its task id), after the
/// base's `shared.txt` line is checked to be the only one (nobody else's work is there).
fn prompt() -> String {
    "Write out.txt.\n\n```forge-sim\nsleep 300ms\nrun test \"$(cat shared.txt)\" = base && echo \"by $FORGE_TASK_ID\" > out.txt && echo \"$FORGE_TASK_ID\" >> shared.txt\n```\n".to_owned()
}

#[test]
fn three_candidates_three_diffs_and_the_chosen_one_is_applied() {
    let repo = Repo::new();
    repo.write("shared.txt", "base\n");
    repo.commit("shared");
    let out = repo
        .forge(&["run", "--task", &prompt(), "--agent", "sim", "-n", "3"])
        .expect(0);
    assert!(
        out.stdout
            .contains("3 candidates to compare: task-1, task-2, task-3."),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("--tasks task-1"), "{}", out.stdout);
    // Nothing applied yet.
    assert!(!repo.path().join("out.txt").exists());
    assert_eq!(repo.read("shared.txt"), "base\n");
    let run = repo.runs()[0].clone();

    // Each candidate started from the base: out.txt is new in each, shared.txt gains only
    // its own line.
    for k in 1..=3 {
        let diff = repo.forge(&["diff", &run, &format!("task-{k}")]).expect(0);
        assert!(
            diff.stdout.contains(&format!("+by task-{k}")),
            "{}",
            diff.stdout
        );
        assert!(diff.stdout.contains("--- /dev/null"), "{}", diff.stdout);
        assert!(
            diff.stdout.contains(&format!(" base\n+task-{k}\n")),
            "{}",
            diff.stdout
        );
    }
    // Shared claims: no candidate waited for another's locks.
    let events = json_lines(
        &std::fs::read_to_string(
            repo.path()
                .join(".forge/runs")
                .join(&run)
                .join("events.jsonl"),
        )
        .unwrap(),
    );
    assert!(
        !events.iter().any(|e| e["type"] == "task_waiting_locks"),
        "a candidate waited for locks"
    );
    assert!(!events.iter().any(|e| e["type"] == "merge_integrated"));

    // The whole run is not one result; two candidates of one task are not either.
    let out = repo.forge(&["apply", &run]).expect(2);
    assert!(
        out.stderr
            .contains("made candidates to choose from (task-1, task-2, task-3)"),
        "{}",
        out.stderr
    );
    let out = repo.forge(&["apply", &run, "--tasks", "task-1,task-3"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("candidates of the same task"),
        "{}",
        out.stderr
    );

    repo.forge(&["apply", &run, "--tasks", "task-2"]).expect(0);
    assert_eq!(repo.read("out.txt"), "by task-2\n");
    assert_eq!(repo.read("shared.txt"), "base\ntask-2\n");
}

#[test]
fn with_json_the_candidates_are_named_on_stderr() {
    let repo = Repo::new();
    repo.write("shared.txt", "base\n");
    repo.commit("shared");
    let out = repo
        .forge(&[
            "run",
            "--task",
            &prompt(),
            "--agent",
            "sim",
            "-n",
            "2",
            "--json",
        ])
        .expect(0);
    assert!(
        out.stderr
            .contains("Candidates to compare: task-1, task-2;"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--tasks task-1"), "{}", out.stderr);
    json_lines(&out.stdout);
}

#[test]
fn n_needs_a_task_and_no_yes() {
    let repo = Repo::new();
    let out = repo.forge(&["run", "plan.toml", "-n", "2"]).expect(2);
    assert!(out.stderr.contains("--task"), "{}", out.stderr);
    let out = repo
        .forge(&[
            "run",
            "--task",
            &prompt(),
            "--agent",
            "sim",
            "-n",
            "2",
            "-y",
        ])
        .expect(2);
    assert!(
        out.stderr
            .contains("there is no one result to apply with --yes"),
        "{}",
        out.stderr
    );
}
