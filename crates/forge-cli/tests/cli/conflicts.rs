//! `forge apply --conflicts`: what happens where the user's own edits clash with the run's.
//! Markers are compared byte for byte with `git merge-file --diff3` on the same three versions.

use std::process::Command;

use crate::util::{Repo, task};

const BASE: &str = "one\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\nten\n";
const MINE: &str = "one\ntwo\nTHREE (mine)\nfour\nfive\nsix\nseven\neight\nnine\nten (mine)\n";

/// A finished run (not applied) whose task `edit` changes `lib.txt` and `other.txt`, then the
/// user's clashing edit of `lib.txt`.
fn clash(repo: &Repo) -> String {
    repo.write("lib.txt", BASE);
    repo.write("other.txt", "other\n");
    let file = repo.plan(
        "clash",
        &task(
            "edit",
            "writes = [\"lib.txt\", \"other.txt\"]",
            "replace lib.txt three => 3 (run)\nreplace lib.txt one => 1 (run)\nreplace other.txt other => changed",
        ),
    );
    repo.forge(&["run", &file, "--no-apply"]).expect(0);
    repo.write("lib.txt", MINE);
    repo.runs()[0].clone()
}

/// What the run made of `lib.txt`.
fn runs_version() -> String {
    BASE.replace("three", "3 (run)").replace("one", "1 (run)")
}

#[test]
fn markers_are_what_git_merge_file_diff3_writes() {
    let repo = Repo::new();
    let run = clash(&repo);
    let out = repo
        .forge(&["apply", &run, "--conflicts", "markers"])
        .expect(3);
    assert!(
        out.stdout
            .contains("lib.txt: conflict markers written (yours, the base's, the run's lines)"),
        "{}",
        out.stdout
    );
    assert_eq!(repo.read("other.txt"), "changed\n");

    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("ours", MINE),
        ("base", BASE),
        ("theirs", runs_version().as_str()),
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
            "working tree",
            "-L",
            "base",
            "-L",
            "edit",
            "ours",
            "base",
            "theirs",
        ])
        .output()
        .unwrap();
    assert_eq!(git.status.code(), Some(1), "git sees one conflict");
    let expected = String::from_utf8(git.stdout).unwrap();
    assert!(expected.contains("||||||| base\n"), "{expected}");
    assert_eq!(repo.read("lib.txt"), expected);
}

#[test]
fn theirs_and_ours_settle_clashing_hunks_like_git_merge_x() {
    let repo = Repo::new();
    let run = clash(&repo);
    let out = repo
        .forge(&["apply", &run, "--conflicts", "theirs"])
        .expect(0);
    assert!(
        out.stdout.contains("Applied to the working tree"),
        "{}",
        out.stdout
    );
    // The run's line where both changed; the user's own change elsewhere is kept.
    assert_eq!(
        repo.read("lib.txt"),
        "1 (run)\ntwo\n3 (run)\nfour\nfive\nsix\nseven\neight\nnine\nten (mine)\n"
    );

    let repo = Repo::new();
    let run = clash(&repo);
    // Per path: `ours` for lib.txt wins over `markers` for every path.
    repo.forge(&[
        "apply",
        &run,
        "--conflicts",
        "markers",
        "--conflicts",
        "ours=lib.txt",
    ])
    .expect(0);
    assert_eq!(
        repo.read("lib.txt"),
        "1 (run)\ntwo\nTHREE (mine)\nfour\nfive\nsix\nseven\neight\nnine\nten (mine)\n"
    );
}

#[test]
fn the_default_keeps_the_users_file_and_bad_choices_are_named() {
    let repo = Repo::new();
    let run = clash(&repo);
    let out = repo
        .forge(&["apply", &run, "--conflicts", "mine"])
        .expect(2);
    assert!(
        out.stderr
            .contains("`mine` is not a way to settle conflicts"),
        "{}",
        out.stderr
    );
    let out = repo
        .forge(&["apply", &run, "--conflicts", "theirs=../x"])
        .expect(2);
    assert!(
        out.stderr.contains("--conflicts theirs=../x"),
        "{}",
        out.stderr
    );
    let out = repo.forge(&["apply", &run]).expect(3);
    assert!(out.stdout.contains("--conflicts markers"), "{}", out.stdout);
    assert_eq!(repo.read("lib.txt"), MINE);
    // Then the user picks a side: the rest was applied already, only lib.txt is written.
    let out = repo
        .forge(&["apply", &run, "--conflicts", "theirs=lib.txt"])
        .expect(0);
    assert!(out.stdout.contains("1 file written"), "{}", out.stdout);
}
