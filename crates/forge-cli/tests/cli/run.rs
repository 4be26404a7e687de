//! `forge run` and `forge resume`: outputs (lines, JSON), every exit code, apply modes, Ctrl-C.

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::Stdio;

use crate::util::{Repo, Run, interrupt, json_lines, task};

fn two_tasks() -> String {
    format!(
        "name = \"pair\"\n{}{}",
        task(
            "backend",
            "writes = [\"src/**\"]",
            "say Writing the API\nwrite src/api.txt\nGET /health\nend\nsleep 100ms"
        ),
        task(
            "docs",
            "writes = [\"docs/**\"]\nafter = [\"backend\"]",
            "write docs/api.md\n# API\nend"
        )
    )
}

#[test]
fn a_clean_run_prints_one_line_per_state_change_and_applies_with_yes() {
    let repo = Repo::new();
    let file = repo.plan("pair", &two_tasks());
    let out = repo.forge(&["run", &file, "--yes"]).expect(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].starts_with("[     0.0s] run pair-"),
        "{}",
        out.stdout
    );
    for want in [
        "backend: started attempt 1 (sim,",
        "backend: succeeded in ",
        "backend: integrated (1 file)",
        "docs: started attempt 1 (sim,",
        "applied 2 files to the working tree",
    ] {
        assert!(out.stdout.contains(want), "{want}: {}", out.stdout);
    }
    assert!(
        out.stdout
            .contains("✓ No merge conflicts  · No gate configured  ✓ 2 tasks, 2 files changed"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("✓ Applied to the working tree: 2 files written."),
        "{}",
        out.stdout
    );
    // No progress lines, no escape sequences on a pipe.
    assert!(!out.stdout.contains("Writing the API"), "{}", out.stdout);
    assert!(!out.stdout.contains('\x1b'), "{}", out.stdout);
    assert_eq!(repo.read("src/api.txt"), "GET /health\n");
    assert_eq!(repo.read("docs/api.md"), "# API\n");
}

#[test]
fn json_output_is_the_event_stream_and_nothing_else() {
    let repo = Repo::new();
    let file = repo.plan("pair", &two_tasks());
    let out = repo.forge(&["run", &file, "--json"]).expect(0);
    let events = json_lines(&out.stdout);
    assert_eq!(events.first().unwrap()["type"], "run_started");
    assert_eq!(events.last().unwrap()["type"], "run_finished");
    assert_eq!(events.last().unwrap()["status"], "succeeded");
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    for t in [
        "task_queued",
        "task_started",
        "task_progress",
        "task_usage",
        "task_finished",
        "merge_integrated",
    ] {
        assert!(types.contains(&t), "{t}: {types:?}");
    }
    // Not applied without --yes: a hint on stderr, the working tree untouched.
    assert!(out.stderr.contains("forge apply"), "{}", out.stderr);
    assert!(!repo.path().join("src/api.txt").exists());
}

#[test]
fn failed_tasks_exit_1_and_say_where_to_look() {
    let repo = Repo::new();
    let file = repo.plan(
        "fails",
        &format!(
            "{}{}",
            task("good", "writes = [\"a/**\"]", "write a/x\nx\nend"),
            task("bad", "writes = [\"b/**\"]", "say Trying\nfail 3")
        ),
    );
    let out = repo.forge(&["run", &file, "--yes"]).expect(1);
    assert!(out.stdout.contains("bad: failed after "), "{}", out.stdout);
    assert!(
        out.stdout.contains("✗ 1 of 2 tasks did not succeed: bad"),
        "{}",
        out.stdout
    );
    let run = &repo.runs()[0];
    assert!(
        out.stdout
            .contains(&format!("(see `forge logs bad {run}`)")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Nothing was applied."),
        "{}",
        out.stdout
    );
    assert!(!repo.path().join("a/x").exists());
}

#[test]
fn a_failed_gate_exits_4_and_shows_its_output() {
    let repo = Repo::new();
    let file = repo.plan(
        "gate",
        &format!(
            "{}[gate]\ncommands = [\"echo '3 passed, 2 failed'; exit 1\"]\n",
            task("a", "writes = [\"a/**\"]", "write a/x\nx\nend")
        ),
    );
    let out = repo.forge(&["run", &file, "--yes"]).expect(4);
    assert!(
        out.stdout.contains(
            "✗ Gate: echo '3 passed, 2 failed'; exit 1 failed (exit code 1) — 2 of 5 failed"
        ),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("3 passed, 2 failed"), "{}", out.stdout);
    assert!(!repo.path().join("a/x").exists());
}

#[test]
fn an_unresolved_merge_conflict_exits_3() {
    let repo = Repo::new();
    repo.write("notes.txt", "start\n");
    let file = repo.plan(
        "clash",
        &format!(
            "{}{}[merge]\n\"notes.txt\" = \"fail\"\n",
            // Both run at once (the sleeps outlast staging), so their appends meet.
            task(
                "a",
                "appends = [\"notes.txt\"]",
                "sleep 800ms\nappend notes.txt from a"
            ),
            task(
                "b",
                "appends = [\"notes.txt\"]",
                "sleep 800ms\nappend notes.txt from b"
            )
        ),
    );
    let out = repo.forge(&["run", &file, "--yes"]).expect(3);
    assert!(
        out.stdout.contains("merge conflict in notes.txt between "),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(": unresolved (strategy fail)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("✗ 1 path in conflict: notes.txt"),
        "{}",
        out.stdout
    );
    assert_eq!(repo.read("notes.txt"), "start\n");
}

#[test]
fn appends_merge_by_union_and_retries_recover() {
    let repo = Repo::new();
    repo.write("CHANGELOG.md", "# Changelog\n");
    let file = repo.plan(
        "union",
        &format!(
            "{}{}{}",
            task(
                "a",
                "appends = [\"CHANGELOG.md\"]",
                "sleep 800ms\nappend CHANGELOG.md - from a"
            ),
            task(
                "b",
                "appends = [\"CHANGELOG.md\"]",
                "sleep 800ms\nappend CHANGELOG.md - from b"
            ),
            task(
                "c",
                "writes = [\"c/**\"]\nretries = 1",
                "write c/x\nx\nend\nfail-on-attempt 1 9"
            )
        ),
    );
    let out = repo.forge(&["run", &file, "--yes"]).expect(0);
    assert!(
        out.stdout.contains("c: retrying: attempt 2 starts in"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("resolved by union"), "{}", out.stdout);
    let log = repo.read("CHANGELOG.md");
    assert!(
        log.contains("- from a\n") && log.contains("- from b\n"),
        "{log}"
    );
    // Both attempts of c have their own log.
    let run = &repo.runs()[0];
    let first = repo.forge(&["logs", "c", run, "--attempt", "1"]).expect(0);
    assert!(
        first.stdout.contains("failing attempt 1 with exit code 9"),
        "{}",
        first.stdout
    );
    let latest = repo.forge(&["logs", "c", run]).expect(0);
    assert!(
        !latest.stdout.contains("failing attempt"),
        "{}",
        latest.stdout
    );
    repo.forge(&["logs", "c", run, "--attempt", "3"]).expect(2);
}

#[test]
fn no_apply_keeps_the_result_and_apply_applies_it_later() {
    let repo = Repo::new();
    let file = repo.plan("pair", &two_tasks());
    let out = repo.forge(&["run", &file, "--no-apply"]).expect(0);
    assert!(
        out.stdout.contains("The result is kept in .forge/runs/"),
        "{}",
        out.stdout
    );
    assert!(!repo.path().join("src/api.txt").exists());
    let run = repo.runs()[0].clone();
    let out = repo.forge(&["apply", &run]).expect(0);
    assert!(
        out.stdout
            .contains("Applied to the working tree: 2 files written"),
        "{}",
        out.stdout
    );
    assert_eq!(repo.read("src/api.txt"), "GET /health\n");
}

#[test]
fn branch_commits_to_forge_run_and_leaves_the_working_tree() {
    let repo = Repo::new();
    let file = repo.plan("pair", &two_tasks());
    let out = repo.forge(&["run", &file, "--branch"]).expect(0);
    let run = repo.runs()[0].clone();
    assert!(
        out.stdout
            .contains(&format!("Committed to branch forge/{run}")),
        "{}",
        out.stdout
    );
    assert!(!repo.path().join("src/api.txt").exists());
    let tree = repo.git(&["ls-tree", "-r", "--name-only", &format!("forge/{run}")]);
    assert!(
        tree.contains("src/api.txt") && tree.contains("docs/api.md"),
        "{tree}"
    );
    // `forge apply --branch` on a run kept in the store does the same.
    let file2 = repo.plan(
        "pair2",
        &two_tasks().replace("name = \"pair\"", "name = \"again\""),
    );
    repo.forge(&["run", &file2, "--no-apply"]).expect(0);
    let run2 = repo.runs()[0].clone();
    repo.forge(&["apply", &run2, "--branch"]).expect(0);
    repo.git(&["rev-parse", "--verify", &format!("forge/{run2}")]);
}

#[test]
fn ctrl_c_interrupts_with_130_and_resume_finishes_the_run() {
    let repo = Repo::new();
    let file = repo.plan(
        "slow",
        &format!(
            "{}{}",
            task("quick", "writes = [\"q/**\"]", "write q/done\nyes\nend"),
            task(
                "slow",
                "writes = [\"s/**\"]\nafter = [\"quick\"]",
                "say Working slowly\nsleep 20s\nwrite s/done\nyes\nend"
            )
        ),
    );
    let mut child = repo
        .cmd(&["run", &file, "--no-apply"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    let mut line = String::new();
    while stdout.read_line(&mut line).unwrap() > 0 {
        seen.push_str(&line);
        if line.contains("slow: started attempt 1") {
            break;
        }
        line.clear();
    }
    assert!(seen.contains("slow: started"), "{seen}");
    interrupt(child.id());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(130), "{seen}{rest}\n{stderr}");
    assert!(
        stderr.contains("Interrupted: no new tasks start"),
        "{stderr}"
    );
    let run = repo.runs()[0].clone();
    assert!(rest.contains(&format!("`forge resume {run}`")), "{rest}");
    let status = repo.forge(&["status", &run]).expect(130);
    assert!(status.stdout.contains("cancelled"), "{}", status.stdout);
    assert!(status.stdout.contains("✓  quick"), "{}", status.stdout);

    // Resume re-runs only what did not finish: make the slow task quick first.
    let copy = repo.path().join(".forge/runs").join(&run).join("plan.toml");
    let text = std::fs::read_to_string(&copy)
        .unwrap()
        .replace("sleep 20s", "sleep 10ms");
    std::fs::write(&copy, text).unwrap();
    let out = repo.forge(&["resume", &run, "--yes"]).expect(0);
    assert!(out.stdout.contains("resumed"), "{}", out.stdout);
    assert!(!out.stdout.contains("quick: started"), "{}", out.stdout);
    assert!(
        out.stdout.contains("slow: started attempt"),
        "{}",
        out.stdout
    );
    assert_eq!(repo.read("q/done"), "yes\n");
    assert_eq!(repo.read("s/done"), "yes\n");
    // A finished run cannot be resumed.
    let out = repo.forge(&["resume", &run]).expect(2);
    assert!(out.stderr.contains("already finished"), "{}", out.stderr);
}

/// A `head` base is written by git's parallel checkout: on a big repository, creating the
/// files is most of a cold first run (issue 24, `first_agent_ms_100k`). git's own trace shows
/// the `checkout--worker` processes (parallel checkout starts at 100 files).
#[test]
fn a_head_base_is_checked_out_by_parallel_workers() {
    let repo = Repo::new();
    for i in 0..150 {
        repo.write(&format!("src/f{i:03}.txt"), &format!("file {i}\n"));
    }
    let file = repo.plan(
        "one",
        &format!(
            "name = \"one\"\n{}",
            task("t", "writes = [\"x.txt\"]", "write x.txt\nx\nend")
        ),
    );
    let trace = repo.path().join("git-trace2.json");
    let out = Run::from(
        repo.cmd(&["run", &file, "--no-apply"])
            .env("GIT_TRACE2_EVENT", &trace)
            .output()
            .unwrap(),
    )
    .expect(0);
    let text = std::fs::read_to_string(&trace).unwrap();
    let workers = json_lines(&text)
        .into_iter()
        .filter(|e| e["event"] == "child_start" && e["argv"][1] == "checkout--worker")
        .count();
    assert!(workers >= 2, "{workers} checkout workers\n{}", out.stdout);
    // What they wrote is the commit.
    let base = repo
        .path()
        .join(".forge/bases")
        .join(repo.git(&["rev-parse", "HEAD"]).trim());
    assert_eq!(
        std::fs::read_to_string(base.join("tree/src/f149.txt")).unwrap(),
        "file 149\n"
    );
}
