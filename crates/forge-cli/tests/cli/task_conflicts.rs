//! Conflicts between two tasks that no `[merge]` strategy settled: the run keeps the side
//! integrated first and sets the other task's change aside; `forge diff` shows both versions
//! and `forge apply --conflicts` settles them (markers compared byte for byte with
//! `git merge-file --diff3` on the same three versions).

use std::process::Command;

use crate::util::{Repo, task};

const BASE: &str = "start\n";

/// A finished run (not applied) whose tasks `a` and `b` both append to `notes.txt` under the
/// `fail` strategy, and `a` also writes `other.txt`. Returns the run, the task whose side the
/// integrated tree kept (`ours`) and the one whose change was set aside (`theirs`).
fn clash(repo: &Repo) -> (String, String, String) {
    repo.write("notes.txt", BASE);
    let file = repo.plan(
        "clash",
        &format!(
            "{}{}[merge]\n\"notes.txt\" = \"fail\"\n",
            // Both run at once (the sleeps outlast staging), so their appends meet.
            task(
                "a",
                "appends = [\"notes.txt\"]\nwrites = [\"other.txt\"]",
                "sleep 800ms\nappend notes.txt from a\nwrite other.txt\nby a\nend"
            ),
            task(
                "b",
                "appends = [\"notes.txt\"]",
                "sleep 800ms\nappend notes.txt from b"
            )
        ),
    );
    repo.forge(&["run", &file, "--no-apply"]).expect(3);
    let run = repo.runs()[0].clone();
    let result: serde_json::Value =
        serde_json::from_str(&repo.read(&format!(".forge/runs/{run}/result.json"))).unwrap();
    let tasks = &result["conflicts"][0]["tasks"];
    let ours = tasks[0].as_str().unwrap().to_owned();
    let theirs = tasks[1].as_str().unwrap().to_owned();
    assert_ne!(ours, theirs);
    (run, ours, theirs)
}

fn version(task: &str) -> String {
    format!("{BASE}from {task}\n")
}

#[test]
fn apply_refuses_until_a_choice_and_diff_shows_both_tasks_versions() {
    let repo = Repo::new();
    let (run, ours, theirs) = clash(&repo);
    let out = repo.forge(&["apply", &run]);
    assert_ne!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("merge conflicts between tasks are unresolved on notes.txt"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--conflicts markers"), "{}", out.stderr);
    assert_eq!(repo.read("notes.txt"), BASE);
    assert!(!repo.path().join("other.txt").exists());

    let diff = repo.forge(&["diff", &run]).expect(0);
    for (task, side) in [
        (&ours, "ours: kept in the integrated tree"),
        (&theirs, "theirs: set aside"),
    ] {
        assert!(
            diff.stdout.contains(&format!(
                "# conflict on notes.txt: {task}'s version ({side})"
            )),
            "{}",
            diff.stdout
        );
        assert!(
            diff.stdout.contains(&format!("+from {task}")),
            "{}",
            diff.stdout
        );
    }
    let json = repo.forge(&["diff", &run, "--json"]).expect(0);
    let value: serde_json::Value = serde_json::from_str(json.stdout.trim()).unwrap();
    let sides: Vec<(&str, &str)> = value["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["task"].as_str().unwrap(), s["conflict"].as_str().unwrap()))
        .collect();
    assert_eq!(
        sides,
        [(ours.as_str(), "ours"), (theirs.as_str(), "theirs")]
    );
}

#[test]
fn markers_between_tasks_are_what_git_merge_file_diff3_writes() {
    let repo = Repo::new();
    let (run, ours, theirs) = clash(&repo);
    let out = repo
        .forge(&["apply", &run, "--conflicts", "markers"])
        .expect(3);
    assert!(
        out.stdout.contains(&format!(
            "notes.txt: tasks {ours} and {theirs} clashed: conflict markers written"
        )),
        "{}",
        out.stdout
    );
    assert_eq!(repo.read("other.txt"), "by a\n");

    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("ours", version(&ours)),
        ("base", BASE.to_owned()),
        ("theirs", version(&theirs)),
    ] {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let git = Command::new("git")
        .current_dir(dir.path())
        .args([
            "merge-file",
            "-p",
            "--diff3",
            "-L",
            &ours,
            "-L",
            "base",
            "-L",
            &theirs,
        ])
        .args(["ours", "base", "theirs"])
        .output()
        .unwrap();
    assert_eq!(git.status.code(), Some(1), "git sees one conflict");
    let expected = String::from_utf8(git.stdout).unwrap();
    assert!(expected.contains("||||||| base\n"), "{expected}");
    assert_eq!(repo.read("notes.txt"), expected);
}

#[test]
fn ours_is_the_integrated_side_and_theirs_the_set_aside_task() {
    for (how, side) in [("ours", 0), ("theirs", 1), ("theirs=notes.txt", 1)] {
        let repo = Repo::new();
        let (run, ours, theirs) = clash(&repo);
        let out = repo.forge(&["apply", &run, "--conflicts", how]).expect(0);
        assert!(
            out.stdout.contains("Applied to the working tree"),
            "{}",
            out.stdout
        );
        let winner = if side == 0 { &ours } else { &theirs };
        assert_eq!(repo.read("notes.txt"), version(winner), "--conflicts {how}");
        assert_eq!(repo.read("other.txt"), "by a\n");
    }
}

#[test]
fn a_partial_apply_settles_the_clash_of_the_tasks_it_takes() {
    let repo = Repo::new();
    let (run, _, theirs) = clash(&repo);
    let out = repo
        .forge(&["apply", &run, "--tasks", "a,b", "--conflicts", "theirs"])
        .expect(0);
    assert!(
        out.stdout.contains("Applied to the working tree"),
        "{}",
        out.stdout
    );
    assert_eq!(repo.read("notes.txt"), version(&theirs));
}
