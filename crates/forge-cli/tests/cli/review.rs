//! `forge diff`: the run's integrated change and each task's own, checked against the run
//! store's persisted `ChangeSet`s and against real git (`git apply` of the printed diff).

use std::collections::BTreeMap;

use crate::util::{Repo, task};

/// Twenty lines, so a change in the middle has context on both sides.
fn numbered() -> String {
    (1..=20)
        .map(|i| format!("line {i}"))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Three tasks: `edit` modifies and deletes, `add` creates (one file executable), `docs` after
/// `add` appends to what `add` wrote.
fn review_plan(repo: &Repo) -> String {
    repo.write("src/lib.txt", &numbered());
    repo.write("old.txt", "to be removed\n");
    repo.plan(
        "review",
        &format!(
            "name = \"review\"\n{}{}{}",
            task(
                "edit",
                "writes = [\"src/**\", \"old.txt\"]",
                "replace src/lib.txt line 10 => line ten\nreplace src/lib.txt line 3 => line three\ndelete old.txt"
            ),
            task(
                "add",
                "writes = [\"new/**\"]",
                "write new/a.sh\n#!/bin/sh\necho hi\nend\nchmod +x new/a.sh\nwrite new/b.txt\nb\nend"
            ),
            task(
                "docs",
                "writes = [\"new/b.txt\"]\nafter = [\"add\"]",
                "append new/b.txt more\n"
            ),
        ),
    )
}

/// The paths of a task's persisted `ChangeSet` and each one's op.
fn persisted(repo: &Repo, run: &str, task: &str) -> BTreeMap<String, String> {
    let path = repo
        .path()
        .join(format!(".forge/runs/{run}/tasks/{task}/1/changes.json"));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["changes"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(p, c)| (p.clone(), c["op"].as_str().unwrap().to_owned()))
        .collect()
}

/// A copy of the repository's HEAD in a new directory.
fn checkout(repo: &Repo) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("git")
        .args(["clone", "-q"])
        .arg(repo.path())
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

fn git_apply(dir: &std::path::Path, patch: &str) {
    let patch_file = dir.join("../forge-review.patch");
    std::fs::write(&patch_file, patch).unwrap();
    let out = std::process::Command::new("git")
        .current_dir(dir)
        .args(["apply", "--whitespace=nowarn"])
        .arg(&patch_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git apply refused forge diff's output: {}\n{patch}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn per_task_diff_equals_the_persisted_change_set_and_git_applies_it() {
    let repo = Repo::new();
    let file = review_plan(&repo);
    repo.forge(&["run", &file, "--no-apply"]).expect(0);
    let run = repo.runs()[0].clone();

    for t in ["edit", "add", "docs"] {
        let out = repo.forge(&["diff", &run, t, "--json"]).expect(0);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        let files = v["tasks"][0]["files"].as_array().unwrap();
        let shown: BTreeMap<String, String> = files
            .iter()
            .map(|f| {
                let status = f["status"].as_str().unwrap();
                let op = if status == "modified" {
                    "modified"
                } else {
                    status
                };
                (f["path"].as_str().unwrap().to_owned(), op.to_owned())
            })
            .collect();
        assert_eq!(shown, persisted(&repo, &run, t), "task {t}");
        assert_eq!(v["tasks"][0]["task"], t);
    }

    // The `edit` task's hunks: two changes 6 lines apart share one hunk (git's 3 lines of
    // context on each side), as `git diff` writes it.
    let out = repo.forge(&["diff", &run, "edit"]).expect(0);
    assert!(
        out.stdout
            .contains("diff --git a/src/lib.txt b/src/lib.txt\n"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("@@ -1,13 +1,13 @@\n"), "{}", out.stdout);
    assert!(
        out.stdout.contains("-line 10\n+line ten\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("deleted file mode 100644\n"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("\x1b["),
        "no color when not on a terminal"
    );

    // Each task's diff, applied by git in integration order on a checkout of the base, gives
    // what the whole run's diff gives: the integrated tree.
    let per_task = checkout(&repo);
    for t in ["edit", "add", "docs"] {
        git_apply(
            per_task.path(),
            &repo.forge(&["diff", &run, t]).expect(0).stdout,
        );
    }
    let whole = checkout(&repo);
    let out = repo.forge(&["diff", &run]).expect(0);
    assert!(
        out.stdout.contains("new file mode 100755\n"),
        "{}",
        out.stdout
    );
    git_apply(whole.path(), &out.stdout);
    for rel in ["src/lib.txt", "new/a.sh", "new/b.txt"] {
        assert_eq!(
            std::fs::read(per_task.path().join(rel)).unwrap(),
            std::fs::read(whole.path().join(rel)).unwrap(),
            "{rel}"
        );
    }
    assert!(!whole.path().join("old.txt").exists());
    assert_eq!(
        std::fs::read_to_string(whole.path().join("new/b.txt")).unwrap(),
        "b\nmore\n"
    );
    // And it is what `forge apply` writes.
    repo.forge(&["apply", &run]).expect(0);
    assert_eq!(
        repo.read("src/lib.txt"),
        std::fs::read_to_string(whole.path().join("src/lib.txt")).unwrap()
    );
}

#[test]
fn stat_name_only_and_paths_narrow_the_diff() {
    let repo = Repo::new();
    let file = review_plan(&repo);
    repo.forge(&["run", &file, "--no-apply"]).expect(0);

    // The latest run by default; the first word is a task when the run has one of that name.
    let out = repo.forge(&["diff", "--name-only"]).expect(0);
    assert_eq!(out.stdout, "new/a.sh\nnew/b.txt\nold.txt\nsrc/lib.txt\n");
    let out = repo.forge(&["diff", "--name-only", "--", "new/"]).expect(0);
    assert_eq!(out.stdout, "new/a.sh\nnew/b.txt\n");
    let out = repo
        .forge(&["diff", "edit", "add", "--name-only"])
        .expect(0);
    assert_eq!(
        out.stdout,
        "# task edit (attempt 1)\nold.txt\nsrc/lib.txt\n# task add (attempt 1)\nnew/a.sh\nnew/b.txt\n"
    );
    let out = repo.forge(&["diff", "edit", "--stat"]).expect(0);
    assert_eq!(
        out.stdout,
        " old.txt     | 1 -\n src/lib.txt | 4 ++--\n 2 files changed, 2 insertions(+), 3 deletions(-)\n"
    );
}

#[test]
fn a_clash_with_the_users_edit_shows_the_runs_version() {
    let repo = Repo::new();
    let file = review_plan(&repo);
    repo.forge(&["run", &file, "--no-apply"]).expect(0);
    let run = repo.runs()[0].clone();
    // The user edits the same line meanwhile; the apply keeps their file.
    let mine = numbered().replace("line 10\n", "line X (mine)\n");
    repo.write("src/lib.txt", &mine);
    let out = repo.forge(&["apply", &run]).expect(3);
    assert!(out.stdout.contains("src/lib.txt"), "{}", out.stdout);
    assert_eq!(repo.read("src/lib.txt"), mine);
    let out = repo.forge(&["diff", &run, "--", "src/lib.txt"]).expect(0);
    assert!(
        out.stdout.contains("-line 10\n+line ten\n"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("mine"), "{}", out.stdout);
}

#[test]
fn unknown_or_failed_tasks_and_bad_paths_are_named() {
    let repo = Repo::new();
    let file = repo.plan(
        "fails",
        &format!(
            "{}{}",
            task("good", "writes = [\"a/**\"]", "write a/x\nx\nend"),
            task("bad", "writes = [\"b/**\"]", "fail 3")
        ),
    );
    repo.forge(&["run", &file, "--no-apply"]).expect(1);
    let run = repo.runs()[0].clone();
    let out = repo.forge(&["diff", &run, "nope"]).expect(2);
    assert!(
        out.stderr.contains("task `nope`") && out.stderr.contains("its tasks: good, bad"),
        "{}",
        out.stderr
    );
    let out = repo.forge(&["diff", &run, "bad"]).expect(2);
    assert!(out.stderr.contains("did not succeed"), "{}", out.stderr);
    let out = repo.forge(&["diff", &run, "--", "../etc"]).expect(2);
    assert!(out.stderr.contains("`../etc`"), "{}", out.stderr);
    let out = repo.forge(&["diff", "good", "--json"]).expect(0);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["tasks"][0]["files"][0]["path"], "a/x");
    assert_eq!(
        v["tasks"][0]["files"][0]["hunks"][0]["lines"][0]["text"],
        "x"
    );
}

#[test]
fn a_run_without_a_result_yet_says_so() {
    let repo = Repo::new();
    let file = repo.plan(
        "slow",
        &task("wait", "writes = [\"s/**\"]", "say Started\nsleep 30s"),
    );
    let mut child = repo
        .cmd(&["run", &file, "--no-apply"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    crate::util::wait_until(30, "the run to start its task", || {
        let out = repo.forge(&["status", "--json"]);
        out.stdout.contains("\"running\"")
    });
    // The whole run, and one task (`wait` names no run, so it is a task of the latest run).
    for args in [&["diff"][..], &["diff", "wait"][..]] {
        let out = repo.forge(args).expect(1);
        assert!(
            out.stderr
                .contains("has no result to show yet: it is still running"),
            "{args:?}: {}",
            out.stderr
        );
    }
    crate::util::interrupt(child.id());
    child.wait().unwrap();
}
