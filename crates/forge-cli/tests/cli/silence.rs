//! Nothing lost in silence, bad input, scheduling: what an agent writes that Forge cannot carry, claims that
//! only permit appending, a task's own `.gitignore`, submodules, and hostile plan files.

use std::process::Command;

use crate::util::{Repo, json_lines, task};

/// The `task_finished` events of the latest run's journal.
fn finished(repo: &Repo) -> Vec<serde_json::Value> {
    let run = &repo.runs()[0];
    let journal = std::fs::read_to_string(
        repo.path()
            .join(".forge/runs")
            .join(run)
            .join("events.jsonl"),
    )
    .unwrap();
    json_lines(&journal)
        .into_iter()
        .filter(|e| e["type"] == "task_finished")
        .collect()
}

fn reason_of(events: &[serde_json::Value], task: &str) -> String {
    events
        .iter()
        .find(|e| e["task"] == task)
        .and_then(|e| e["reason"].as_str())
        .unwrap_or_else(|| panic!("no reason for {task}: {events:?}"))
        .to_owned()
}

#[test]
fn a_fifo_an_oversize_file_and_a_non_utf8_name_fail_the_attempt() {
    let repo = Repo::new();
    let file = repo.plan(
        "uncarried",
        &format!(
            "{}{}{}",
            task(
                "fifo",
                "writes = [\"f/**\"]",
                "write f/ok.txt\nok\nend\nrun mkfifo f/pipe"
            ),
            task(
                "big",
                "writes = [\"b/**\"]",
                "write b/ok.txt\nok\nend\nrun truncate -s 101M b/big.bin"
            ),
            task(
                "name",
                "writes = [\"n/**\"]",
                "write n/ok.txt\nok\nend\nrun touch \"n/caf$(printf '\\351').txt\""
            ),
        ),
    );
    let out = repo.forge(&["run", &file, "--yes"]).expect(1);
    assert!(
        out.stdout.contains("✗ 3 of 3 tasks did not succeed"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Nothing was applied."),
        "{}",
        out.stdout
    );
    let events = finished(&repo);
    for e in &events {
        assert_eq!(e["status"], "failed", "{e}");
    }
    let fifo = reason_of(&events, "fifo");
    assert!(
        fifo.contains("`f/pipe`: a fifo, which a repository cannot hold"),
        "{fifo}"
    );
    let big = reason_of(&events, "big");
    assert!(
        big.contains("`b/big.bin`: a file of 101 MiB, over the 100 MiB limit"),
        "{big}"
    );
    let name = reason_of(&events, "name");
    assert!(name.contains("the name is not valid UTF-8"), "{name}");
    for (task, reason) in [("fifo", &fifo), ("big", &big), ("name", &name)] {
        assert!(
            out.stdout.contains(&format!("{task}: failed after")),
            "{task}: {}",
            out.stdout
        );
        assert!(reason.contains("nothing of it was integrated"), "{reason}");
    }
    assert!(!repo.path().join("f/ok.txt").exists());
}

#[test]
fn an_append_claim_permits_additions_only() {
    let repo = Repo::new();
    repo.write("CHANGELOG.md", "# Changes\n- first\n- second\n");
    repo.commit("history");
    let file = repo.plan(
        "appends",
        &format!(
            "{}{}",
            task(
                "wipe",
                "appends = [\"CHANGELOG.md\"]",
                "write CHANGELOG.md\n# Changes\n- mine only\nend"
            ),
            task(
                "add",
                "appends = [\"CHANGELOG.md\"]",
                "append CHANGELOG.md - third"
            ),
        ),
    );
    let out = repo.forge(&["run", &file, "--yes"]).expect(1);
    let events = finished(&repo);
    let wipe = reason_of(&events, "wipe");
    assert!(
        wipe.contains(
            "CHANGELOG.md was rewritten, but the task's claim on it only permits appending"
        ),
        "{wipe}"
    );
    assert!(
        out.stdout.contains("✗ 1 of 2 tasks did not succeed: wipe"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Nothing was applied."),
        "{}",
        out.stdout
    );
    // The addition is integrated, the rewrite is not; the history is intact.
    assert!(
        out.stdout.contains("add: integrated (1 file)"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("wipe: integrated"), "{}", out.stdout);
    assert_eq!(repo.read("CHANGELOG.md"), "# Changes\n- first\n- second\n");
}

#[test]
fn files_hidden_by_the_tasks_own_gitignore_edit_are_still_carried() {
    let repo = Repo::new();
    let file = repo.plan(
        "ignore",
        &task(
            "hide",
            "writes = [\".gitignore\", \"secret.txt\", \"out/**\"]",
            "append .gitignore secret.txt\nappend .gitignore out/\nwrite secret.txt\nhidden\nend\nwrite out/result.txt\nresult\nend",
        ),
    );
    let out = repo.forge(&["run", &file, "--yes"]).expect(0);
    assert!(
        out.stdout.contains("hide: integrated (3 files)"),
        "{}",
        out.stdout
    );
    assert_eq!(repo.read("secret.txt"), "hidden\n");
    assert_eq!(repo.read("out/result.txt"), "result\n");
    assert!(repo.read(".gitignore").contains("secret.txt\n"));
}

#[test]
fn writes_into_a_submodule_are_reported_as_such() {
    let repo = Repo::new();
    let lib = Repo::new();
    let status = Command::new("git")
        .arg("-C")
        .arg(repo.path())
        .args(["-c", "protocol.file.allow=always", "submodule", "add", "-q"])
        .arg(lib.path())
        .arg("lib")
        .status()
        .unwrap();
    assert!(status.success());
    repo.commit("a submodule");
    let file = repo.plan(
        "sub",
        &task(
            "vendor",
            "writes = [\"lib/**\"]",
            "write lib/patch.txt\npatched\nend",
        ),
    );
    let out = repo.forge(&["run", &file, "--yes"]).expect(1);
    let reason = reason_of(&finished(&repo), "vendor");
    assert!(
        reason.contains("`lib/patch.txt`: inside the git submodule (or nested repository) `lib`")
            && reason.contains("writes into submodules are not supported"),
        "{reason}"
    );
    assert!(!out.stdout.contains("clash"), "{}", out.stdout);
    assert!(!repo.path().join("lib/patch.txt").exists());
}

#[test]
fn a_plan_that_is_not_utf8_is_an_error_at_its_first_bad_byte() {
    let repo = Repo::new();
    std::fs::write(
        repo.path().join("bad.toml"),
        b"[[task]]\nid = \"a\"\nagent = \"sim\"\nprompt = \"caf\xe9\"\n",
    )
    .unwrap();
    let out = repo.forge(&["run", "bad.toml"]).expect(2);
    assert!(
        out.stderr
            .contains("error: the plan is not valid UTF-8: byte 0xe9 is not part of a character"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--> bad.toml:4:14"), "{}", out.stderr);
}

#[test]
fn a_json_plan_nested_20000_deep_is_an_error_not_a_crash() {
    let repo = Repo::new();
    let text = format!("{{\"task\": {}{}}}", "[".repeat(20_000), "]".repeat(20_000));
    std::fs::write(repo.path().join("deep.json"), text).unwrap();
    let out = repo.forge(&["run", "deep.json"]).expect(2);
    assert!(
        out.stderr
            .contains("error: the JSON plan nests arrays and objects more than 128 deep"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--> deep.json:1:"), "{}", out.stderr);
}

#[test]
fn a_zero_timeout_is_rejected() {
    let repo = Repo::new();
    let file = repo.plan(
        "zero",
        &task("a", "timeout = \"0s\"", "write a.txt\na\nend"),
    );
    let out = repo.forge(&["run", &file]).expect(2);
    assert!(
        out.stderr
            .contains("error: `timeout` of task `a` must be longer than zero"),
        "{}",
        out.stderr
    );
    assert!(repo.runs().is_empty());
}

#[test]
fn defaults_extended_after_a_task_apply_to_every_task() {
    let repo = Repo::new();
    let file = repo.plan(
        "split",
        "[defaults]\nagent = \"sim\"\n\n[[task]]\nid = \"a\"\nwrites = [\"a.txt\"]\nprompt = '''\n```forge-sim\nrun printf \"$MODE\" > a.txt\n```\n'''\n\n[defaults.env]\nMODE = \"fast\"\n",
    );
    repo.forge(&["run", &file, "--yes"]).expect(0);
    assert_eq!(repo.read("a.txt"), "fast");
}

/// `cp -a` of a whole directory.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

fn kept_run(repo: &Repo) -> String {
    let file = repo.plan(
        "kept",
        &task(
            "a",
            "writes = [\"a.txt\"]",
            "write a.txt\nfrom the run\nend",
        ),
    );
    repo.forge(&["run", &file, "--no-apply"]).expect(0);
    repo.runs()[0].clone()
}

#[test]
fn a_copied_repository_applies_into_the_copy_and_a_moved_one_still_applies() {
    let repo = Repo::new();
    let run = kept_run(&repo);
    // A copy applies into itself, never into the original.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(repo.path(), copy.path());
    let out = crate::util::forge_cmd()
        .current_dir(copy.path())
        .args(["apply", &run])
        .output()
        .unwrap();
    crate::util::Run::from(out).expect(0);
    assert_eq!(
        std::fs::read_to_string(copy.path().join("a.txt")).unwrap(),
        "from the run\n"
    );
    assert!(!repo.path().join("a.txt").exists());
    // A moved repository still applies.
    let parent = tempfile::tempdir().unwrap();
    let moved = parent.path().join("moved");
    std::fs::rename(repo.path(), &moved).unwrap();
    let out = crate::util::forge_cmd()
        .current_dir(&moved)
        .args(["apply", &run])
        .output()
        .unwrap();
    crate::util::Run::from(out).expect(0);
    assert_eq!(
        std::fs::read_to_string(moved.join("a.txt")).unwrap(),
        "from the run\n"
    );
    // Put it back for the temporary directory's own cleanup.
    std::fs::rename(&moved, repo.path()).unwrap();
}

#[test]
fn a_run_whose_snapshot_names_another_repository_is_not_applied() {
    let repo = Repo::new();
    let run = kept_run(&repo);
    let copy = tempfile::tempdir().unwrap();
    copy_dir(repo.path(), copy.path());
    // An older Forge kept the absolute path of the original in the snapshot.
    let base =
        std::fs::canonicalize(copy.path().join(".forge/runs").join(&run).join("base")).unwrap();
    let record_path = base.join("snapshot.json");
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record_path).unwrap()).unwrap();
    record["repo"] = std::fs::canonicalize(repo.path())
        .unwrap()
        .display()
        .to_string()
        .into();
    std::fs::write(&record_path, serde_json::to_vec(&record).unwrap()).unwrap();
    let out = crate::util::forge_cmd()
        .current_dir(copy.path())
        .args(["apply", &run])
        .output()
        .unwrap();
    let out = crate::util::Run::from(out);
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stderr
            .contains("Forge applies a run only to the repository it was made in"),
        "{}",
        out.stderr
    );
    assert!(!repo.path().join("a.txt").exists());
    assert!(!copy.path().join("a.txt").exists());
}

#[test]
fn an_apply_killed_mid_way_is_undone_by_the_next_command_and_its_temporaries_go() {
    let repo = Repo::new();
    let run = kept_run(&repo);
    let run_dir = repo.path().join(".forge/runs").join(&run);
    // What a killed `forge apply` leaves before its commit point: the journal (of a process
    // that is gone) and its temporary file, inside the run directory.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let temps = run_dir.join("apply-tmp");
    std::fs::create_dir_all(&temps).unwrap();
    std::fs::write(temps.join(".forge-apply-1-0.tmp"), "half\n").unwrap();
    let journal = serde_json::json!({
        "version": 1,
        "state": "prepared",
        "repo": "../../..",
        "pid": dead,
        "ops": [{
            "path": "a.txt",
            "temp": [format!(".forge/runs/{run}/apply-tmp"), ".forge-apply-1-0.tmp"],
            "expect": null,
            "over_dir": false
        }]
    });
    std::fs::write(
        run_dir.join("apply-journal.json"),
        serde_json::to_vec(&journal).unwrap(),
    )
    .unwrap();
    repo.forge(&["runs"]).expect(0);
    assert!(!run_dir.join("apply-journal.json").exists());
    assert_eq!(std::fs::read_dir(&temps).unwrap().count(), 0);
    assert!(!repo.path().join("a.txt").exists());
    // The run applies as if nothing happened.
    repo.forge(&["apply", &run]).expect(0);
    assert_eq!(repo.read("a.txt"), "from the run\n");
}

#[test]
fn an_interrupted_attempt_is_not_a_failed_one_and_the_message_says_what_is_discarded() {
    use std::io::{BufRead as _, BufReader, Read as _};
    use std::process::Stdio;

    let repo = Repo::new();
    let file = repo.plan(
        "stop",
        &task(
            "slow",
            "writes = [\"s/**\"]\nretries = 1",
            "fail-on-attempt 2 1\nsay Working slowly\nsleep 20s\nwrite s/done\nyes\nend",
        ),
    );
    let mut child = repo
        .cmd(&["run", &file, "--no-apply"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while stdout.read_line(&mut line).unwrap() > 0 {
        if line.contains("slow: started attempt 1") {
            break;
        }
        line.clear();
    }
    crate::util::interrupt(child.id());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{rest}");
    let run = repo.runs()[0].clone();
    assert!(
        rest.contains(&format!(
            "Run {run} was interrupted. Finished tasks are kept; the unfinished work of `slow` was discarded, and it runs again from the start (an interrupted attempt does not count against retries): `forge resume {run}` goes on where it stopped."
        )),
        "{rest}"
    );
    assert!(!rest.contains("Nothing was lost"), "{rest}");

    // Attempt 2 fails; its one retry is still there, so attempt 3 runs and succeeds.
    let copy = repo.path().join(".forge/runs").join(&run).join("plan.toml");
    let text = std::fs::read_to_string(&copy)
        .unwrap()
        .replace("sleep 20s", "sleep 10ms");
    std::fs::write(&copy, text).unwrap();
    let out = repo.forge(&["resume", &run, "--yes"]).expect(0);
    assert!(
        out.stdout.contains("slow: started attempt 3"),
        "{}",
        out.stdout
    );
    assert_eq!(repo.read("s/done"), "yes\n");
    let status = crate::util::Run::from(repo.cmd(&["status", &run, "--json"]).output().unwrap());
    let state: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let slow = &state["tasks"][0];
    assert_eq!(
        (slow["attempt"].as_u64(), slow["interrupted"].as_u64()),
        (Some(3), Some(1))
    );
}

/// The events of the latest run's journal, as (type, task) pairs with the event.
fn journal(repo: &Repo) -> Vec<serde_json::Value> {
    let run = &repo.runs()[0];
    json_lines(
        &std::fs::read_to_string(
            repo.path()
                .join(".forge/runs")
                .join(run)
                .join("events.jsonl"),
        )
        .unwrap(),
    )
}

#[test]
fn a_task_waiting_to_retry_keeps_its_place_in_the_lock_queue() {
    let repo = Repo::new();
    let file = repo.plan(
        "retry-place",
        &format!(
            "{}{}{}{}",
            // The critical task: long chain behind it; its first attempt fails after a while.
            task(
                "crit",
                "writes = [\"x/**\"]\nretries = 1\nestimate = \"10m\"",
                "sleep 5s\nfail-on-attempt 1 1\nwrite x/a\na\nend"
            ),
            task(
                "dep",
                "writes = [\"d/**\"]\nafter = [\"crit\"]\nestimate = \"10m\"",
                "write d/done\nyes\nend"
            ),
            // Ready once `pre` is done, while `crit` holds `x/**`: it queues for a read lock.
            task("pre", "writes = [\"p/**\"]", "write p/done\nyes\nend"),
            task(
                "other",
                "reads = [\"x/**\"]\nwrites = [\"o/**\"]\nafter = [\"pre\"]",
                "sleep 2s\nwrite o/done\nyes\nend"
            ),
        ),
    );
    repo.forge(&["run", &file, "--yes"]).expect(0);
    let events = journal(&repo);
    let position = |kind: &str, task: &str, extra: &dyn Fn(&serde_json::Value) -> bool| {
        events
            .iter()
            .position(|e| e["type"] == kind && e["task"] == task && extra(e))
            .unwrap_or_else(|| panic!("no {kind} of {task}"))
    };
    let any = |_: &serde_json::Value| true;
    let other_waited = position("task_waiting_locks", "other", &any);
    let crit_failed = position("task_finished", "crit", &|e| e["status"] == "failed");
    let crit_retry = position("task_started", "crit", &|e| e["attempt"] == 2);
    let crit_done = position("task_finished", "crit", &|e| e["status"] == "succeeded");
    let other_started = position("task_started", "other", &any);
    assert!(
        other_waited < crit_failed,
        "`other` queued behind `crit`'s first attempt"
    );
    // `crit` kept its place through the back-off: `other` got the files only after it.
    assert!(crit_failed < crit_retry && crit_retry < crit_done);
    assert!(crit_done < other_started, "{events:#?}");
    assert!(
        !events[crit_failed..crit_done]
            .iter()
            .any(|e| e["type"] == "task_waiting_locks" && e["task"] == "crit"),
        "the retry did not wait for locks"
    );
    assert_eq!(repo.read("o/done"), "yes\n");
}

#[test]
fn a_task_waiting_to_retry_keeps_its_slot_so_no_waiter_can_block_its_retry() {
    let repo = Repo::new();
    // One slot: were it given away during the back-off, `reader` would take it and wait for
    // the locks `writer` keeps for its retry, which could then never start.
    let file = repo.plan(
        "one-slot",
        &format!(
            "concurrency = 1\n{}{}",
            task(
                "writer",
                "writes = [\"x/**\"]\nretries = 1\nestimate = \"10m\"",
                "fail-on-attempt 1 1\nwrite x/a\na\nend"
            ),
            task(
                "reader",
                "reads = [\"x/**\"]\nwrites = [\"r/**\"]",
                "write r/done\nyes\nend"
            ),
        ),
    );
    let mut child = repo
        .cmd(&["run", &file, "--yes"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut status = None;
    crate::util::wait_until(120, "the run to end", || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    let events = journal(&repo);
    let started: Vec<(&str, u64)> = events
        .iter()
        .filter(|e| e["type"] == "task_started")
        .map(|e| (e["task"].as_str().unwrap(), e["attempt"].as_u64().unwrap()))
        .collect();
    assert_eq!(started, [("writer", 1), ("writer", 2), ("reader", 1)]);
}
