//! Nothing lost in silence, bad input: what an agent writes that Forge cannot carry, claims that
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
            .contains("error: `task `a`.timeout` must be longer than zero"),
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
