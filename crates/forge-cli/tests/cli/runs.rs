//! `forge runs`, `status` (and `--follow` from another terminal), `logs --follow`, `abort`, `gc`.

use std::process::Stdio;

use crate::util::{Repo, Run, task, wait_until};

fn slow_plan(repo: &Repo, secs: u32) -> String {
    repo.plan(
        "slow",
        &format!(
            "{}{}",
            task(
                "first",
                "writes = [\"a/**\"]",
                "say Step one\nwrite a/x\nx\nend"
            ),
            task(
                "second",
                "writes = [\"b/**\"]\nafter = [\"first\"]",
                &format!("say Thinking hard\nsleep {secs}s\nwrite b/y\ny\nend\nsay Done thinking")
            )
        ),
    )
}

/// Starts `forge run` in the background and waits until `second` started.
fn start_in_background(repo: &Repo, file: &str) -> (std::process::Child, String) {
    let child = repo
        .cmd(&["run", file, "--no-apply"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut run = String::new();
    wait_until(30, "the run to start its second task", || {
        let runs = repo.runs();
        let Some(id) = runs.first() else { return false };
        run.clone_from(id);
        let status = repo.forge(&["status", id, "--json"]);
        status.code == 0 && status.stdout.contains("\"Thinking hard\"")
    });
    (child, run)
}

#[test]
fn runs_and_status_describe_finished_runs() {
    let repo = Repo::new();
    let file = slow_plan(&repo, 0);
    repo.forge(&["run", &file, "--no-apply"]).expect(0);
    let run = repo.runs()[0].clone();
    let list = repo.forge(&["runs"]).expect(0);
    assert!(list.stdout.starts_with("RUN "), "{}", list.stdout);
    assert!(list.stdout.contains(&run), "{}", list.stdout);
    assert!(list.stdout.contains("succeeded"), "{}", list.stdout);
    assert!(list.stdout.contains("2/2 done"), "{}", list.stdout);

    // The latest run by default, a unique prefix, or the full id.
    for args in [
        vec!["status"],
        vec!["status", &run[..6]],
        vec!["status", &run],
    ] {
        let out = repo.forge(&args).expect(0);
        assert!(
            out.stdout.contains(&format!("forge {run} · succeeded")),
            "{}",
            out.stdout
        );
        assert!(out.stdout.contains("✓  first "), "{}", out.stdout);
        assert!(out.stdout.contains("✓  second"), "{}", out.stdout);
        assert!(out.stdout.contains("100% (2/2 tasks)"), "{}", out.stdout);
        assert!(
            out.stdout.contains("✓ No merge conflicts"),
            "{}",
            out.stdout
        );
    }
    let json = repo.forge(&["status", "--json"]).expect(0);
    let state: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(state["phase"], "succeeded");
    assert_eq!(state["counts"]["succeeded"], 2);

    let logs = repo.forge(&["logs", "first"]).expect(0);
    assert!(logs.stdout.contains("Step one"), "{}", logs.stdout);
    let out = repo.forge(&["logs", "third"]).expect(2);
    assert!(
        out.stderr.contains("its tasks are first and second"),
        "{}",
        out.stderr
    );
}

#[test]
fn status_follow_and_logs_follow_watch_a_run_from_another_terminal() {
    let repo = Repo::new();
    let file = slow_plan(&repo, 2);
    let (child, run) = start_in_background(&repo, &file);
    let live = repo.forge(&["status", &run]).expect(0);
    assert!(live.stdout.contains("· running"), "{}", live.stdout);
    assert!(live.stdout.contains("Thinking hard"), "{}", live.stdout);
    assert!(
        live.stdout.contains("Running in process"),
        "{}",
        live.stdout
    );
    // Both return when the run ends, with everything it printed.
    let logs = repo
        .cmd(&["logs", "second", &run, "--follow"])
        .output()
        .unwrap();
    let follow = repo.forge(&["status", "--follow", &run]).expect(0);
    let logs = Run::from(logs).expect(0);
    assert!(logs.stdout.contains("Done thinking"), "{}", logs.stdout);
    assert!(
        follow.stdout.contains("second: succeeded"),
        "{}",
        follow.stdout
    );
    assert!(
        follow.stdout.contains(&format!("run {run} succeeded")),
        "{}",
        follow.stdout
    );
    assert!(
        follow.stdout.contains("✓ No merge conflicts"),
        "{}",
        follow.stdout
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn abort_interrupts_a_running_run_which_stays_resumable() {
    let repo = Repo::new();
    let file = slow_plan(&repo, 30);
    let (child, run) = start_in_background(&repo, &file);
    let out = repo.forge(&["abort", &run]).expect(0);
    assert!(
        out.stdout.contains("Sent an interrupt to process"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains(&format!("Resume it with `forge resume {run}`")),
        "{}",
        out.stdout
    );
    let done = child.wait_with_output().unwrap();
    assert_eq!(done.status.code(), Some(130));
    // `forge status` exits with the run's code (130: interrupted, resumable) in every mode.
    let status = repo.forge(&["status", &run, "--json"]).expect(130);
    let state: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(state["phase"], "cancelled");
    assert_eq!(state["counts"]["succeeded"], 1);
    let again = repo.forge(&["abort", &run]).expect(1);
    assert!(
        again.stderr.contains("already finished (cancelled)"),
        "{}",
        again.stderr
    );
    // Nothing is left running; gc has nothing but finished runs to tidy.
    let gc = repo.forge(&["gc"]).expect(0);
    assert!(
        gc.stdout.contains("Nothing to clean up") || gc.stdout.contains("Cleaned up"),
        "{}",
        gc.stdout
    );
    let list = repo.forge(&["runs"]).expect(0);
    assert!(list.stdout.contains("cancelled"), "{}", list.stdout);
}

#[test]
fn gc_cleans_up_after_a_killed_run() {
    let repo = Repo::new();
    let file = slow_plan(&repo, 30);
    let (mut child, run) = start_in_background(&repo, &file);
    // A crash: no chance to clean up.
    child.kill().unwrap();
    child.wait().unwrap();
    let list = repo.forge(&["runs"]).expect(0);
    assert!(list.stdout.contains("interrupted"), "{}", list.stdout);
    let status = repo.forge(&["status", &run]).expect(130);
    assert!(
        status
            .stdout
            .contains("Interrupted: no process runs it any more"),
        "{}",
        status.stdout
    );
    let dry = repo.forge(&["gc", "--dry-run"]).expect(0);
    assert!(
        dry.stdout.contains(&format!("{run}: would remove")),
        "{}",
        dry.stdout
    );
    let gc = repo.forge(&["gc"]).expect(0);
    assert!(
        gc.stdout.contains(&format!("{run}: interrupted;")),
        "{}",
        gc.stdout
    );
    assert!(
        !repo
            .path()
            .join(".forge/runs")
            .join(&run)
            .join("work")
            .exists()
    );
    // Its agent (sleeping 30 s) is gone too.
    let left = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("environ")).is_ok_and(|env| {
                env.split(|b| *b == 0)
                    .any(|v| v == format!("FORGE_RUN_ID={run}").as_bytes())
            })
        })
        .count();
    assert_eq!(left, 0);
    let again = repo.forge(&["gc"]).expect(0);
    assert!(
        again.stdout.contains("Nothing to clean up"),
        "{}",
        again.stdout
    );
}

#[test]
fn gc_removes_old_plan_files_of_the_mcp_server_and_keeps_fresh_ones() {
    let repo = Repo::new();
    let dir = repo.path().join(".forge/mcp");
    std::fs::create_dir_all(&dir).unwrap();
    let old = dir.join("auth-0123456789ab.toml");
    let fresh = dir.join("auth-ba9876543210.toml");
    std::fs::write(&old, "name = \"auth\"\n").unwrap();
    std::fs::write(&fresh, "name = \"auth\"\n").unwrap();
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_hours(2);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();
    let dry = repo.forge(&["gc", "--dry-run"]).expect(0);
    assert!(
        dry.stdout.contains(".forge/mcp: would remove 1 plan file"),
        "{}",
        dry.stdout
    );
    assert!(old.exists());
    let gc = repo.forge(&["gc"]).expect(0);
    assert!(
        gc.stdout.contains(".forge/mcp: removed 1 plan file"),
        "{}",
        gc.stdout
    );
    assert!(!old.exists(), "the old plan file is gone");
    assert!(
        fresh.exists(),
        "a plan file a run may still be reading stays"
    );
    let again = repo.forge(&["gc"]).expect(0);
    assert!(
        again.stdout.contains("Nothing to clean up"),
        "{}",
        again.stdout
    );
}
