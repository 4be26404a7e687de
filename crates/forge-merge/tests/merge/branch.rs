//! Applying to a branch `forge/<run>` with git plumbing, never touching index, HEAD or files.

use forge_merge::{BranchOptions, GateReport, MergeError, apply_to_branch};
use forge_staging::BaseMode;

use crate::common::{Fixture, git, tid, tree, write};

/// What the user's repository looks like from outside: HEAD, the index file, status, files.
fn user_state(
    f: &Fixture,
) -> (
    String,
    Vec<u8>,
    String,
    std::collections::BTreeMap<String, Vec<u8>>,
) {
    (
        git(&f.repo, &["rev-parse", "HEAD"]),
        std::fs::read(f.repo.join(".git/index")).unwrap(),
        git(&f.repo, &["status", "--porcelain"]),
        tree(&f.repo),
    )
}

#[test]
fn one_commit_per_task_without_touching_the_users_checkout() {
    let f = Fixture::git(&[("src/a.rs", "a\n"), ("old.txt", "old\n"), ("tool", "t\n")]);
    let mut i = f.integration();
    i.integrate(
        &tid("api"),
        &f.task_from_base(&[("src/a.rs", Some("A\n")), ("old.txt", None)]),
        1,
    )
    .unwrap();
    let t2 = f.changes(
        |p| i.get(p).cloned(),
        &[
            ("docs/guide.md", Some("# Guide\n")),
            ("src/a.rs", Some("A2\n")),
        ],
    );
    i.integrate(&tid("docs"), &t2, 2).unwrap();
    write(&f.repo, "scratch.txt", "user's untracked file\n");
    let before = user_state(&f);

    let report = apply_to_branch(&i, &BranchOptions::new("run-1"), &GateReport::not_run()).unwrap();
    assert_eq!(report.branch, "forge/run-1");
    assert_eq!(report.commits.len(), 2);
    assert_eq!(report.commits[0].task, Some(tid("api")));
    assert_eq!(user_state(&f), before, "index, HEAD and files untouched");

    assert_eq!(git(&f.repo, &["show", "forge/run-1:src/a.rs"]), "A2\n");
    assert_eq!(
        git(&f.repo, &["show", "forge/run-1:docs/guide.md"]),
        "# Guide\n"
    );
    assert_eq!(git(&f.repo, &["show", "forge/run-1~1:src/a.rs"]), "A\n");
    let files = git(&f.repo, &["ls-tree", "-r", "--name-only", "forge/run-1"]);
    assert!(!files.contains("old.txt"), "{files}");
    let log = git(&f.repo, &["log", "--format=%s", "forge/run-1"]);
    assert_eq!(log, "forge(run-1): docs\nforge(run-1): api\ninit\n");
    assert_eq!(
        git(&f.repo, &["rev-parse", "forge/run-1~2"]),
        before.0,
        "the first commit's parent is the base commit"
    );
    assert!(
        git(&f.repo, &["log", "-1", "--format=%B", "forge/run-1"]).contains("Forge-Task: docs")
    );

    // It exists now: refused unless replaced; a squash makes one commit.
    assert!(matches!(
        apply_to_branch(&i, &BranchOptions::new("run-1"), &GateReport::not_run()),
        Err(MergeError::BranchExists { .. })
    ));
    let squash = BranchOptions {
        squash: true,
        replace: true,
        ..BranchOptions::new("run-1")
    };
    let report = apply_to_branch(&i, &squash, &GateReport::not_run()).unwrap();
    assert_eq!(report.commits.len(), 1);
    assert_eq!(git(&f.repo, &["rev-parse", "forge/run-1~1"]), before.0);
    assert_eq!(git(&f.repo, &["show", "forge/run-1:src/a.rs"]), "A2\n");
    assert!(matches!(
        apply_to_branch(&i, &BranchOptions::new("bad..name"), &GateReport::not_run()),
        Err(MergeError::InvalidRun { .. })
    ));
}

#[test]
fn modes_symlinks_and_a_worktree_base() {
    let f = Fixture::build(&[("a", "a\n"), ("dir/x", "x\n")], true, BaseMode::Head);
    // Uncommitted work when the run starts, with a worktree base.
    write(&f.repo, "a", "a edited by the user\n");
    write(&f.repo, "untracked.txt", "u\n");
    let store = f.store.clone();
    let base = std::sync::Arc::new(
        forge_staging::BaseSnapshot::capture(
            &f.repo,
            BaseMode::Worktree,
            &f.run.join("base2"),
            &store,
        )
        .unwrap(),
    );
    let mut i = forge_merge::Integration::new(base.clone(), store.clone());
    let script = store.write(b"#!/bin/sh\necho hi\n").unwrap();
    let changes: forge_staging::ChangeSet = [
        (
            "run.sh",
            forge_staging::Change::Added(forge_staging::Entry::file(script, 18, true)),
        ),
        (
            "link",
            forge_staging::Change::Added(forge_staging::Entry::symlink("dir/x")),
        ),
        (
            "dir/x",
            forge_staging::Change::Deleted(base.manifest().get("dir/x").unwrap().clone()),
        ),
        (
            "dir",
            forge_staging::Change::Added(f.file("dir is a file now\n")),
        ),
    ]
    .into_iter()
    .map(|(p, c)| (forge_staging::RepoPath::new(p).unwrap(), c))
    .collect();
    let o = i.integrate(&tid("t"), &changes, 1).unwrap();
    assert!(o.conflicts.is_empty(), "{o:?}");
    let index_before = std::fs::read(f.repo.join(".git/index")).unwrap();
    let report = apply_to_branch(&i, &BranchOptions::new("r2"), &GateReport::not_run()).unwrap();
    assert_eq!(report.commits.len(), 2);
    assert_eq!(report.commits[0].task, None);
    assert_eq!(
        git(&f.repo, &["log", "--format=%s", "-1", "forge/r2~1"]),
        "forge(r2): uncommitted changes the run started from\n"
    );
    assert_eq!(
        git(&f.repo, &["show", "forge/r2:a"]),
        "a edited by the user\n"
    );
    assert_eq!(git(&f.repo, &["show", "forge/r2:untracked.txt"]), "u\n");
    let listing = git(&f.repo, &["ls-tree", "-r", "forge/r2"]);
    assert!(listing.contains("100755 blob"), "{listing}");
    assert!(listing.contains("120000 blob"), "{listing}");
    assert_eq!(git(&f.repo, &["show", "forge/r2:link"]), "dir/x");
    assert_eq!(
        git(&f.repo, &["show", "forge/r2:dir"]),
        "dir is a file now\n"
    );
    assert_eq!(
        std::fs::read(f.repo.join(".git/index")).unwrap(),
        index_before
    );
}

#[test]
fn needs_a_git_base() {
    let f = Fixture::plain(&[("a", "a\n")]);
    let i = f.integration();
    assert!(matches!(
        apply_to_branch(&i, &BranchOptions::new("x"), &GateReport::not_run()),
        Err(MergeError::NotGit { .. })
    ));
}
