//! What Forge says must be true: run status from the fold of the journal, cancelled as its own
//! state, what was integrated, one verdict per apply, exit codes in every mode, hints that run.

use std::process::Stdio;
use std::sync::Arc;

use crate::util::{Repo, forge_cmd, json_lines, task, wait_until};

/// Two quick tasks, each writing its own file.
fn pair(repo: &Repo) -> String {
    repo.plan(
        "pair",
        &format!(
            "{}{}",
            task("a", "writes = [\"a/**\"]", "write a/x\nfrom a\nend"),
            task("b", "writes = [\"b/**\"]", "write b/y\nfrom b\nend")
        ),
    )
}

/// The `ts` of the first event of `type` in the run's journal, in milliseconds.
fn event_millis(repo: &Repo, run: &str, kind: &str) -> i64 {
    let journal = repo.read(&format!(".forge/runs/{run}/events.jsonl"));
    let event = json_lines(&journal)
        .into_iter()
        .find(|e| e["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {journal}"));
    event["ts"]
        .as_str()
        .unwrap()
        .parse::<jiff::Timestamp>()
        .unwrap()
        .as_millisecond()
}

#[test]
fn an_applied_run_is_listed_as_it_ended_and_for_as_long_as_it_ran() {
    let repo = Repo::new();
    let file = pair(&repo);
    repo.forge(&["run", &file, "--no-apply"]).expect(0);
    let run = repo.runs()[0].clone();
    // The apply comes later, in another process: `apply_finished` follows `run_finished`.
    repo.forge(&["apply", &run]).expect(0);

    let list = repo.forge(&["runs"]).expect(0);
    assert!(list.stdout.contains("succeeded"), "{}", list.stdout);
    assert!(!list.stdout.contains("interrupted"), "{}", list.stdout);
    let json = json_lines(&repo.forge(&["runs", "--json"]).expect(0).stdout);
    assert_eq!(json[0]["status"], "succeeded", "{json:?}");
    let ran = event_millis(&repo, &run, "run_finished") - event_millis(&repo, &run, "run_started");
    assert_eq!(json[0]["duration_ms"], ran, "{json:?}");

    let gc = repo.forge(&["gc"]).expect(0);
    assert!(!gc.stdout.contains("interrupted"), "{}", gc.stdout);
}

#[test]
fn a_cancelled_run_is_cancelled_everywhere_not_failed_or_done() {
    let repo = Repo::new();
    let slow = "say Working\nsleep 30s\nwrite {d}/x\nx\nend";
    let mut plan = String::from("concurrency = 1\n");
    for id in ["one", "two", "three"] {
        plan.push_str(&task(
            id,
            &format!("writes = [\"{id}/**\"]"),
            &slow.replace("{d}", id),
        ));
    }
    let file = repo.plan("stop", &plan);
    let child = repo
        .cmd(&["run", &file, "--no-apply"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(30, "a task to start", || {
        repo.runs().first().is_some_and(|run| {
            repo.forge(&["status", run, "--json"])
                .stdout
                .contains("\"Working\"")
        })
    });
    let run = repo.runs()[0].clone();
    repo.forge(&["abort", &run]).expect(0);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("⊘ 3 of 3 tasks cancelled (0 succeeded)"),
        "{stdout}"
    );
    assert!(!stdout.contains("did not succeed"), "{stdout}");
    // Tasks that never started were cancelled, not "cancelled after 0.0s".
    assert!(stdout.contains("three: cancelled: "), "{stdout}");

    let status = repo.forge(&["status", &run]).expect(130);
    assert!(
        status.stdout.contains("0% (0/3 tasks) · 3 cancelled"),
        "{}",
        status.stdout
    );
    assert!(!status.stdout.contains("100%"), "{}", status.stdout);
    assert!(
        status.stdout.contains("⊘ 3 of 3 tasks cancelled"),
        "{}",
        status.stdout
    );
    let list = repo.forge(&["runs"]).expect(0);
    assert!(list.stdout.contains("cancelled"), "{}", list.stdout);
    assert!(
        list.stdout.contains("0/3 done, 3 cancelled"),
        "{}",
        list.stdout
    );
    assert!(!list.stdout.contains("not succeeded"), "{}", list.stdout);
    let json = repo.forge(&["status", &run, "--json"]).expect(130);
    let state: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(state["progress"], 0.0);
    assert_eq!(state["counts"]["cancelled"], 3);
}

/// Two tasks appending to one file at once under `fail`: the second's change is dropped.
fn clash(repo: &Repo) -> String {
    repo.write("notes.txt", "start\n");
    repo.plan(
        "clash",
        &format!(
            "{}{}[merge]\n\"notes.txt\" = \"fail\"\n",
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
    )
}

#[test]
fn a_change_dropped_by_a_conflict_is_not_called_integrated() {
    let repo = Repo::new();
    let file = clash(&repo);
    let out = repo.forge(&["run", &file, "--no-apply"]).expect(3);
    assert!(
        out.stdout
            .contains("(1 file changed, 0 integrated; conflict: notes.txt)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("✗ 2 tasks, 1 file integrated; not integrated (conflict): "),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("✓ 2 tasks"), "{}", out.stdout);
    let status = repo.forge(&["status"]).expect(3);
    assert!(
        status
            .stdout
            .contains("1 file changed, 0 integrated (conflict: notes.txt)"),
        "{}",
        status.stdout
    );
    let json = repo.forge(&["status", "--json"]).expect(3);
    let state: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let integrated: Vec<usize> = state["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["integrated_files"].as_array().unwrap().len())
        .collect();
    assert_eq!(
        {
            let mut n = integrated.clone();
            n.sort_unstable();
            n
        },
        [0, 1],
        "{}",
        json.stdout
    );
}

/// A plan whose task rewrites `notes.txt`, committed; the user then edits the same line.
fn user_clash(repo: &Repo) -> String {
    repo.write("notes.txt", "start\n");
    let file = repo.plan(
        "mine",
        &task(
            "a",
            "writes = [\"notes.txt\"]",
            "write notes.txt\nfrom the run\nend",
        ),
    );
    repo.write("notes.txt", "from the user\n");
    file
}

#[test]
fn an_apply_that_clashes_has_one_verdict_and_exits_3_in_every_mode() {
    // Applied by the run itself, in line mode and in JSON mode.
    for json in [false, true] {
        let repo = Repo::new();
        let file = user_clash(&repo);
        let mut args = vec!["run", file.as_str(), "--yes"];
        if json {
            args.push("--json");
        }
        let out = repo.forge(&args).expect(3);
        if !json {
            assert!(
                out.stdout
                    .contains("✗ Applied only in part: 0 files written"),
                "{}",
                out.stdout
            );
            assert!(!out.stdout.contains("✓ Applied"), "{}", out.stdout);
            assert!(
                !out.stdout.contains("✓ No merge conflicts"),
                "{}",
                out.stdout
            );
            assert!(
                out.stdout
                    .contains("✗ 1 path where your edits clash with the run's: notes.txt"),
                "{}",
                out.stdout
            );
        }
        assert_eq!(repo.read("notes.txt"), "from the user\n");
        // `forge status` tells the same and exits the same, in every mode.
        let status = repo.forge(&["status"]).expect(3);
        assert!(
            status.stdout.contains(
                "✗ Applied only in part: 0 files written; notes.txt left as you have them"
            ),
            "{}",
            status.stdout
        );
        assert!(
            !status.stdout.contains("✓ No merge conflicts"),
            "{}",
            status.stdout
        );
        repo.forge(&["status", "--json"]).expect(3);
    }

    // Applied later with `forge apply`.
    let repo = Repo::new();
    let file = user_clash(&repo);
    repo.forge(&["run", &file, "--no-apply"]).expect(0);
    let out = repo.forge(&["apply"]).expect(3);
    assert!(
        out.stdout
            .contains("✗ Applied only in part: 0 files written; 1 path not applied."),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("✓"), "{}", out.stdout);
}

#[test]
fn status_exits_with_the_runs_code() {
    let repo = Repo::new();
    let file = repo.plan(
        "bad",
        &format!(
            "{}{}",
            task("a", "writes = [\"a/**\"]", "fail 9"),
            task(
                "b",
                "writes = [\"b/**\"]\nafter = [\"a\"]",
                "write b/x\nx\nend"
            )
        ),
    );
    let out = repo.forge(&["run", &file, "--no-apply"]).expect(1);
    // A skipped task never ran: no `forge logs` for it.
    assert!(out.stdout.contains("forge logs a "), "{}", out.stdout);
    assert!(!out.stdout.contains("forge logs b "), "{}", out.stdout);
    let logs = repo.forge(&["logs", "b"]).expect(2);
    assert!(logs.stderr.contains("task `b` of run "), "{}", logs.stderr);
    assert!(logs.stderr.contains("never ran"), "{}", logs.stderr);
    assert!(
        !logs.stderr.contains("has not started yet"),
        "{}",
        logs.stderr
    );
    repo.forge(&["status"]).expect(1);
    repo.forge(&["status", "--json"]).expect(1);
    repo.forge(&["status", "--follow"]).expect(1);
}

#[test]
fn applying_again_says_it_was_applied() {
    let repo = Repo::new();
    let file = pair(&repo);
    repo.forge(&["run", &file, "--no-apply"]).expect(0);
    let run = repo.runs()[0].clone();
    let first = repo.forge(&["apply", &run]).expect(0);
    assert!(
        first
            .stdout
            .contains("✓ Applied to the working tree: 2 files written."),
        "{}",
        first.stdout
    );
    let again = repo.forge(&["apply", &run]).expect(0);
    assert!(
        again.stdout.contains(&format!(
            "Run {run} was already applied to the working tree"
        )),
        "{}",
        again.stdout
    );
    assert!(
        !again.stdout.contains("0 files written"),
        "{}",
        again.stdout
    );
    // Discarded by the user, applied once more on request.
    std::fs::remove_file(repo.path().join("a/x")).unwrap();
    let forced = repo.forge(&["apply", &run, "--again"]).expect(0);
    assert!(
        forced.stdout.contains("1 file written"),
        "{}",
        forced.stdout
    );
    assert_eq!(repo.read("a/x"), "from a\n");

    repo.forge(&["apply", &run, "--branch"]).expect(0);
    let branch = repo.forge(&["apply", &run, "--branch"]).expect(0);
    assert!(
        branch.stdout.contains(&format!(
            "Run {run} was already committed to branch forge/{run}"
        )),
        "{}",
        branch.stdout
    );
    // Once the branch is gone, it is committed again.
    repo.git(&["branch", "-D", &format!("forge/{run}")]);
    let recommitted = repo.forge(&["apply", &run, "--branch"]).expect(0);
    assert!(
        recommitted
            .stdout
            .contains(&format!("Committed to branch forge/{run}")),
        "{}",
        recommitted.stdout
    );
}

#[test]
fn a_resumed_apply_reports_the_files_it_wrote() {
    let repo = Repo::new();
    let file = pair(&repo);
    repo.forge(&["run", &file, "--no-apply"]).expect(0);
    let run = repo.runs()[0].clone();
    // An apply killed after the first of its two renames (past its commit point).
    let id: forge_events::RunId = run.parse().unwrap();
    let store = forge_exec::store::RunStore::new(repo.path());
    let base = forge_staging::BaseSnapshot::open(&store.base_dir(&id)).unwrap();
    let blobs = forge_staging::BlobStore::open(store.objects_dir()).unwrap();
    let integration = forge_merge::Integration::open(
        &store.run_dir(&id).join("integration.json"),
        Arc::new(base),
        blobs,
    )
    .unwrap();
    let mut options = forge_merge::ApplyOptions::new(store.run_dir(&id));
    options.crash_at = Some(forge_merge::CrashPoint::AfterOps(1));
    let gate = forge_merge::GateReport::not_run();
    forge_merge::apply_to_worktree(&integration, &options, &gate).unwrap_err();

    let out = repo.forge(&["apply", &run]).expect(0);
    assert!(
        out.stdout.contains(
            "✓ Applied to the working tree: 2 files written, finishing the apply that was interrupted."
        ),
        "{}",
        out.stdout
    );
    assert_eq!(repo.read("a/x"), "from a\n");
    assert_eq!(repo.read("b/y"), "from b\n");
}

#[test]
fn a_resumed_gate_is_listed_once() {
    let repo = Repo::new();
    let file = repo.plan(
        "gated",
        &format!(
            "{}[gate]\ncommands = [\"sleep 3\"]\n",
            task("a", "writes = [\"a/**\"]", "write a/x\nx\nend")
        ),
    );
    let mut child = repo
        .cmd(&["run", &file, "--no-apply"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(30, "the gate to start", || {
        repo.runs().first().is_some_and(|run| {
            repo.forge(&["status", run, "--json"])
                .stdout
                .contains("\"phase\": \"gating\"")
        })
    });
    let run = repo.runs()[0].clone();
    // A crash while the gate runs: the resumed run gates again.
    child.kill().unwrap();
    child.wait().unwrap();
    repo.forge(&["resume", &run, "--no-apply"]).expect(0);
    let status = repo.forge(&["status", &run]).expect(0);
    assert!(
        status.stdout.contains("✓ Gate: sleep 3 "),
        "{}",
        status.stdout
    );
    assert!(
        !status.stdout.contains("sleep 3, sleep 3"),
        "{}",
        status.stdout
    );
    let json = repo.forge(&["status", &run, "--json"]).expect(0);
    let state: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        state["gates"].as_array().unwrap().len(),
        1,
        "{}",
        json.stdout
    );
}

#[test]
fn long_task_ids_stay_apart_in_the_table() {
    let repo = Repo::new();
    let mut plan = String::new();
    for n in 1..=3 {
        let id = format!("task-with-a-longish-name-{n:02}");
        plan.push_str(&task(
            &id,
            &format!("writes = [\"d{n}/**\"]"),
            &format!("write d{n}/x\nx\nend"),
        ));
    }
    let file = repo.plan("long", &plan);
    repo.forge(&["run", &file, "--no-apply"]).expect(0);
    let status = repo.forge(&["status"]).expect(0);
    let rows: Vec<&str> = status
        .stdout
        .lines()
        .filter(|l| l.starts_with("✓  task-with"))
        .collect();
    assert_eq!(rows.len(), 3, "{}", status.stdout);
    for n in 1..=3 {
        let tail = format!("name-{n:02} ");
        assert_eq!(
            rows.iter().filter(|r| r.contains(&tail)).count(),
            1,
            "{tail}: {}",
            status.stdout
        );
    }
}

#[test]
fn runs_outside_a_repository_says_so() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in ["runs", "status"] {
        let out = crate::util::Run::from(
            forge_cmd()
                .current_dir(dir.path())
                .arg(cmd)
                .output()
                .unwrap(),
        )
        .expect(2);
        assert!(
            out.stderr.contains("is not inside a git repository"),
            "{cmd}: {}",
            out.stderr
        );
        assert!(out.stderr.contains("--repo DIR"), "{}", out.stderr);
    }
}

#[test]
fn a_closed_pipe_ends_quietly() {
    for args in [&["completions", "bash"][..], &["--help"][..]] {
        // The reading end is closed before forge writes a byte.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = forge_cmd()
            .args(args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

#[test]
fn hints_name_what_exists() {
    // The planner: the agent asked for is missing; the hint names one that is installed.
    let repo = Repo::new();
    let bin = tempfile::tempdir().unwrap();
    let git = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v git"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    std::os::unix::fs::symlink(git.trim(), bin.path().join("git")).unwrap();
    let codex = bin.path().join("codex");
    std::fs::write(&codex, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(
        &codex,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
    )
    .unwrap();
    let out = crate::util::Run::from(
        repo.cmd(&["plan", "add a feature", "--agent", "claude"])
            .env("PATH", bin.path())
            .output()
            .unwrap(),
    )
    .expect(2);
    assert!(out.stderr.contains("`claude` not found"), "{}", out.stderr);
    assert!(!out.stderr.contains("--agent claude"), "{}", out.stderr);
    assert!(out.stderr.contains("--agent codex"), "{}", out.stderr);

    // A plan error's hint names what to write, not a function of Forge's source.
    let file = repo.plan(
        "overlap",
        &format!(
            "{}{}",
            task("a", "writes = [\"src/**\"]", "say a"),
            task("b", "writes = [\"src/*.rs\"]", "say b")
        ),
    );
    let out = repo.forge(&["run", &file]).expect(2);
    assert!(
        out.stderr
            .contains("narrow the claims so they share no file"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("Plan::"), "{}", out.stderr);

    // A field of a task is quoted once, not with quotes inside quotes.
    let file = repo.plan(
        "slow",
        &task("a", "writes = [\"a/**\"]\ntimeout = \"5x\"", "say a"),
    );
    let out = repo.forge(&["run", &file]).expect(2);
    assert!(
        out.stderr
            .contains("error: `timeout` of task `a`: invalid duration"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("`task `"), "{}", out.stderr);

    // `--branch` on an existing branch names a command that exists.
    let file = pair(&repo);
    repo.forge(&["run", &file, "--no-apply"]).expect(0);
    let run = repo.runs()[0].clone();
    repo.git(&["branch", &format!("forge/{run}")]);
    let out = repo.forge(&["apply", &run, "--branch"]).expect(1);
    assert!(!out.stderr.contains("`replace`"), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("git branch -D forge/{run}")),
        "{}",
        out.stderr
    );
}

#[test]
fn split_says_each_count_once() {
    let repo = Repo::new();
    for n in 1..=4 {
        repo.write(&format!("src/f{n}.rs"), "x\n");
    }
    repo.commit("files");
    let out = repo
        .forge(&[
            "split",
            "--files",
            "src/*.rs",
            "-n",
            "2",
            "--prompt",
            "fix {files}",
            "--agent",
            "sim",
        ])
        .expect(0);
    assert!(
        out.stdout.contains("Worker 1: src/ (part, 2 files)"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("(part: "), "{}", out.stdout);
}
