//! `forge apply --branch --push [remote] [--pr]`: the branch goes to a real (local, bare)
//! repository; `--pr` needs the `gh` command-line tool.

use std::process::Command;

use crate::util::{Repo, task};

fn bare() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("git")
        .args(["init", "-q", "--bare"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    dir
}

fn rev(dir: &std::path::Path, name: &str) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "--verify", name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn finished_run(repo: &Repo) -> String {
    let file = repo.plan(
        "push",
        &task("one", "writes = [\"one/**\"]", "write one/x\n1\nend"),
    );
    repo.forge(&["run", &file, "--no-apply"]).expect(0);
    repo.runs()[0].clone()
}

#[test]
fn push_sends_the_branch_to_origin_or_a_named_remote() {
    let repo = Repo::new();
    let run = finished_run(&repo);
    let origin = bare();
    repo.git(&["remote", "add", "origin", origin.path().to_str().unwrap()]);
    let out = repo.forge(&["apply", &run, "--branch", "--push"]).expect(0);
    let branch = format!("forge/{run}");
    assert!(
        out.stdout.contains(&format!("Pushed {branch} to origin.")),
        "{}",
        out.stdout
    );
    assert_eq!(rev(origin.path(), &branch), rev(repo.path(), &branch));

    // Already committed: the branch is pushed again, elsewhere, without a new commit.
    let other = bare();
    let url = other.path().to_str().unwrap();
    let out = repo
        .forge(&["apply", &run, "--branch", "--push", url])
        .expect(0);
    assert!(out.stdout.contains("already committed"), "{}", out.stdout);
    assert_eq!(rev(other.path(), &branch), rev(repo.path(), &branch));
}

#[test]
fn a_push_that_fails_says_where_and_needs_branch() {
    let repo = Repo::new();
    let run = finished_run(&repo);
    let out = repo.forge(&["apply", &run, "--push"]).expect(2);
    assert!(out.stderr.contains("--branch"), "{}", out.stderr);
    let out = repo
        .forge(&["apply", &run, "--branch", "--push", "nowhere"])
        .expect(1);
    assert!(
        out.stderr
            .contains(&format!("pushing forge/{run} to nowhere failed")),
        "{}",
        out.stderr
    );
}

#[test]
fn pr_opens_a_pull_request_with_gh() {
    let gh = Command::new("gh").arg("--version").output();
    if gh.is_err() {
        assert!(
            !std::env::var("FORGE_REQUIRE_GH").is_ok_and(|v| v == "1"),
            "FORGE_REQUIRE_GH=1 but `gh` is not on PATH"
        );
        eprintln!(
            "skipped: GitHub's CLI `gh` is not on PATH (FORGE_REQUIRE_GH=1 makes this a failure)"
        );
        return;
    }
    // With gh but a remote that is no GitHub repository, gh refuses: Forge pushed the branch
    // and says what failed and what to do.
    let repo = Repo::new();
    let run = finished_run(&repo);
    let origin = bare();
    repo.git(&["remote", "add", "origin", origin.path().to_str().unwrap()]);
    let out = repo
        .forge(&["apply", &run, "--branch", "--push", "--pr"])
        .expect(1);
    assert!(out.stdout.contains("Pushed forge/"), "{}", out.stdout);
    assert!(
        out.stderr.contains("opening a pull request") && out.stderr.contains("gh pr create"),
        "{}",
        out.stderr
    );
}
