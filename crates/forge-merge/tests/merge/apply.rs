//! Applying to the working tree: three ways against the base, atomic, recoverable, confined.

use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::process::Command;
use std::time::Duration;

use forge_merge::{
    ApplyOptions, CommandReport, CommandStatus, ConflictKind, CrashPoint, GateReport, Integration,
    MergeError, Party, Recovery, apply_to_worktree, recover, recover_abandoned,
};
use forge_staging::{BaseSnapshot, BlobStore, RepoPath};

use crate::common::{Fixture, lines, tid, tree, write};

fn opts(f: &Fixture) -> ApplyOptions {
    ApplyOptions::new(f.repo.join(".forge/runs/r1"))
}

fn ok() -> GateReport {
    GateReport::not_run()
}

#[test]
fn applies_the_run_and_merges_the_users_own_edits() {
    let f = Fixture::git(&[
        ("src/a.rs", &lines("a", 10)),
        ("gone.txt", "bye\n"),
        ("run.sh", "echo\n"),
    ]);
    let mut i = f.integration();
    let mut a = lines("a", 10).replace("a 2\n", "a 2 by task\n");
    let t = f.task_from_base(&[
        ("src/a.rs", Some(&a)),
        ("gone.txt", None),
        ("new/deep/b.txt", Some("b\n")),
    ]);
    i.integrate(&tid("task"), &t, 1).unwrap();
    // The user works on during the run: another line of a.rs, and an untracked file.
    write(
        &f.repo,
        "src/a.rs",
        &lines("a", 10).replace("a 9\n", "a 9 by user\n"),
    );
    write(&f.repo, "notes.txt", "mine\n");
    std::fs::set_permissions(
        f.repo.join("run.sh"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();

    let report = apply_to_worktree(&i, &opts(&f), &ok()).unwrap();
    assert_eq!(report.merged, [RepoPath::new("src/a.rs").unwrap()]);
    assert_eq!(report.deleted, [RepoPath::new("gone.txt").unwrap()]);
    assert!(report.is_complete(), "{report:?}");
    a = a.replace("a 9\n", "a 9 by user\n");
    assert_eq!(std::fs::read_to_string(f.repo.join("src/a.rs")).unwrap(), a);
    assert_eq!(
        std::fs::read_to_string(f.repo.join("new/deep/b.txt")).unwrap(),
        "b\n"
    );
    assert!(!f.repo.join("gone.txt").exists());
    assert_eq!(
        std::fs::read_to_string(f.repo.join("notes.txt")).unwrap(),
        "mine\n"
    );
    assert!(!f.repo.join(".forge/runs/r1/apply-journal.json").exists());
    // No temporary file is left behind, and applying again changes nothing.
    assert!(tree(&f.repo).keys().all(|k| !k.contains(".forge-apply")));
    let again = apply_to_worktree(&i, &opts(&f), &ok()).unwrap();
    assert!(again.written.is_empty() && again.deleted.is_empty());
    assert_eq!(again.unchanged.len(), 3);
}

#[test]
fn clashing_user_edits_are_reported_and_never_overwritten() {
    let f = Fixture::git(&[
        ("a.txt", &lines("l", 5)),
        ("b.txt", "b\n"),
        ("c.txt", "c\n"),
    ]);
    let mut i = f.integration();
    let t = f.task_from_base(&[
        ("a.txt", Some(&lines("l", 5).replace("l 3\n", "task\n"))),
        ("b.txt", Some("B\n")),
        ("c.txt", Some("C\n")),
    ]);
    i.integrate(&tid("t1"), &t, 1).unwrap();
    let users_a = lines("l", 5).replace("l 3\n", "user\n");
    write(&f.repo, "a.txt", &users_a);
    std::fs::remove_file(f.repo.join("c.txt")).unwrap();

    let report = apply_to_worktree(&i, &opts(&f), &ok()).unwrap();
    assert_eq!(
        std::fs::read_to_string(f.repo.join("a.txt")).unwrap(),
        users_a
    );
    assert!(!f.repo.join("c.txt").exists(), "the user's deletion stands");
    assert_eq!(
        std::fs::read_to_string(f.repo.join("b.txt")).unwrap(),
        "B\n"
    );
    let kinds: Vec<_> = report
        .conflicts
        .iter()
        .map(|c| (c.path.as_str(), c.kind, c.tasks.clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            (
                "a.txt",
                ConflictKind::Content,
                vec![Party::WorkingTree, Party::Task(tid("t1"))]
            ),
            (
                "c.txt",
                ConflictKind::ModifyDelete,
                vec![Party::WorkingTree, Party::Task(tid("t1"))]
            ),
        ]
    );
    assert!(
        report.conflicts[0].hunks[0]
            .text
            .starts_with("<<<<<<< working tree\nuser\n")
    );
}

#[test]
fn a_failing_gate_blocks_the_apply() {
    let f = Fixture::git(&[("a", "a\n")]);
    let mut i = f.integration();
    i.integrate(&tid("t"), &f.task_from_base(&[("a", Some("A\n"))]), 1)
        .unwrap();
    let failed = GateReport {
        commands: vec![CommandReport {
            name: "test".into(),
            command: "cargo test".into(),
            status: CommandStatus::Failed { code: 101 },
            duration_ms: 1,
            output: String::new(),
            output_truncated: false,
            tests: None,
        }],
        duration_ms: 1,
    };
    let err = apply_to_worktree(&i, &opts(&f), &failed).unwrap_err();
    assert!(matches!(err, MergeError::GateFailed { ref summary } if summary.contains("exit 101")));
    assert_eq!(std::fs::read_to_string(f.repo.join("a")).unwrap(), "a\n");
}

#[test]
fn never_writes_through_a_symlink_or_outside_the_repository() {
    let f = Fixture::git(&[("conf/app.toml", "a = 1\n"), ("keep", "k\n")]);
    let outside = f.repo.parent().unwrap().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("app.toml"), "outside\n").unwrap();
    let mut i = f.integration();
    let t = f.task_from_base(&[
        ("conf/app.toml", Some("a = 2\n")),
        ("conf/new.toml", Some("n\n")),
        ("keep", Some("K\n")),
    ]);
    i.integrate(&tid("t"), &t, 1).unwrap();
    // The user swaps the directory for a symlink to somewhere outside the repository.
    std::fs::remove_dir_all(f.repo.join("conf")).unwrap();
    symlink(&outside, f.repo.join("conf")).unwrap();

    let report = apply_to_worktree(&i, &opts(&f), &ok()).unwrap();
    assert_eq!(report.refused.len(), 2, "{report:?}");
    assert!(report.refused[0].reason.contains("symlink"));
    assert_eq!(
        std::fs::read_to_string(outside.join("app.toml")).unwrap(),
        "outside\n"
    );
    assert!(!outside.join("new.toml").exists());
    assert_eq!(std::fs::read_to_string(f.repo.join("keep")).unwrap(), "K\n");
    // Paths into .git or .forge, or with `..`, cannot even be named.
    for bad in [
        ".git/config",
        "a/../../x",
        "/etc/passwd",
        ".forge/runs/x",
        "sub/.git/HEAD",
    ] {
        assert!(RepoPath::new(bad).is_err(), "{bad}");
    }
}

#[test]
fn files_become_directories_and_back() {
    let f = Fixture::git(&[
        ("docs", "a file\n"),
        ("lib/x.rs", "x\n"),
        ("lib/y.rs", "y\n"),
    ]);
    let mut i = f.integration();
    let t = f.task_from_base(&[
        ("docs", None),
        ("docs/index.md", Some("# Docs\n")),
        ("lib/x.rs", None),
        ("lib/y.rs", None),
        ("lib", Some("now a file\n")),
    ]);
    let o = i.integrate(&tid("t"), &t, 1).unwrap();
    assert!(o.conflicts.is_empty(), "{o:?}");
    apply_to_worktree(&i, &opts(&f), &ok()).unwrap();
    assert_eq!(
        std::fs::read_to_string(f.repo.join("docs/index.md")).unwrap(),
        "# Docs\n"
    );
    assert_eq!(
        std::fs::read_to_string(f.repo.join("lib")).unwrap(),
        "now a file\n"
    );
}

/// A run whose apply changes `n` files, deletes some and creates some in new directories.
fn big_run(n: usize) -> (Fixture, Integration) {
    let files: Vec<(String, String)> = (0..n)
        .map(|k| (format!("d{}/f{k}.txt", k % 7), format!("old {k}\n")))
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let f = Fixture::plain(&refs);
    let mut i = f.integration();
    let new: Vec<(String, Option<String>)> = (0..n)
        .map(|k| {
            let path = format!("d{}/f{k}.txt", k % 7);
            (path, (k % 10 != 0).then(|| format!("new {k}\n")))
        })
        .chain((0..n / 10).map(|k| (format!("fresh/sub{k}/g.txt"), Some(format!("g {k}\n")))))
        .collect();
    let edits: Vec<(&str, Option<&str>)> = new
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_deref()))
        .collect();
    i.integrate(&tid("t"), &f.task_from_base(&edits), 1)
        .unwrap();
    (f, i)
}

#[test]
fn a_crash_before_the_commit_point_rolls_back() {
    let (f, i) = big_run(50);
    let before = tree(&f.repo);
    let mut o = opts(&f);
    o.crash_at = Some(CrashPoint::Prepared);
    assert!(apply_to_worktree(&i, &o, &ok()).is_err());
    // The temporary files wait inside the run directory, out of the user's sight.
    assert_eq!(tree(&f.repo), before);
    let temps = o.run_dir.join("apply-tmp");
    assert_eq!(std::fs::read_dir(&temps).unwrap().count(), 50);
    assert!(matches!(
        apply_to_worktree(&i, &opts(&f), &ok()),
        Err(MergeError::ApplyPending(_))
    ));
    let r = recover(&o.run_dir).unwrap();
    assert!(matches!(r, Recovery::RolledBack { .. }), "{r:?}");
    assert_eq!(tree(&f.repo), before);
    assert_eq!(std::fs::read_dir(&temps).unwrap().count(), 0);
    assert_eq!(recover(&o.run_dir).unwrap(), Recovery::Nothing);
}

/// Sets the process recorded in the run's apply journal.
fn set_journal_pid(run_dir: &std::path::Path, pid: u32) {
    let path = run_dir.join("apply-journal.json");
    let mut journal: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    journal["pid"] = pid.into();
    std::fs::write(&path, serde_json::to_vec(&journal).unwrap()).unwrap();
}

#[test]
fn an_apply_whose_process_died_is_recovered_by_anyone_and_a_live_one_by_nobody() {
    let (f, i) = big_run(10);
    let before = tree(&f.repo);
    let mut o = opts(&f);
    o.crash_at = Some(CrashPoint::Prepared);
    assert!(apply_to_worktree(&i, &o, &ok()).is_err());
    // A live process (this one's parent) is applying: left alone.
    set_journal_pid(&o.run_dir, std::os::unix::process::parent_id());
    assert_eq!(recover_abandoned(&o.run_dir).unwrap(), Recovery::Nothing);
    assert!(o.run_dir.join("apply-journal.json").exists());
    // Its process is gone (a child that ended and was reaped): rolled back.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    set_journal_pid(&o.run_dir, dead);
    let r = recover_abandoned(&o.run_dir).unwrap();
    assert!(matches!(r, Recovery::RolledBack { .. }), "{r:?}");
    assert_eq!(tree(&f.repo), before);
    assert_eq!(
        std::fs::read_dir(o.run_dir.join("apply-tmp"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn a_copied_repository_recovers_into_itself() {
    let (f, i) = big_run(5);
    let mut o = opts(&f);
    o.crash_at = Some(CrashPoint::AfterOps(0));
    assert!(apply_to_worktree(&i, &o, &ok()).is_err());
    let original = tree(&f.repo);
    let copy = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", f.repo.display()))
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(status.success());
    let r = recover(&copy.path().join(".forge/runs/r1")).unwrap();
    assert!(matches!(r, Recovery::RolledForward { .. }), "{r:?}");
    // The copy's recovery stays in the copy (whose files, new inodes, it leaves as they are):
    // the original is as the crash left it, its own apply still pending.
    assert_eq!(tree(&f.repo), original);
    assert!(
        !copy
            .path()
            .join(".forge/runs/r1/apply-journal.json")
            .exists()
    );
    assert!(f.repo.join(".forge/runs/r1/apply-journal.json").exists());
    let r = recover(&o.run_dir).unwrap();
    assert!(
        matches!(r, Recovery::RolledForward { ref skipped, .. } if skipped.is_empty()),
        "{r:?}"
    );
    assert_ne!(tree(&f.repo), original);
}

#[test]
fn a_crash_after_the_commit_point_rolls_forward() {
    let after = {
        let (g, j) = big_run(50);
        apply_to_worktree(&j, &opts(&g), &ok()).unwrap();
        tree(&g.repo)
    };
    for stop in [0, 1, 7, 30, 54] {
        let (f, i) = big_run(50);
        let mut o = opts(&f);
        o.crash_at = Some(CrashPoint::AfterOps(stop));
        assert!(apply_to_worktree(&i, &o, &ok()).is_err());
        let r = recover(&o.run_dir).unwrap();
        assert!(
            matches!(r, Recovery::RolledForward { ref skipped, .. } if skipped.is_empty()),
            "{r:?}"
        );
        assert_eq!(tree(&f.repo), after, "stopped after {stop} operations");
    }
}

/// Entry point of the child process the kill test starts: applies the run saved in
/// `FORGE_MERGE_CRASH_DIR`. Does nothing in a normal test run.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var("FORGE_MERGE_CRASH_DIR") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let store = BlobStore::open(dir.join("run/objects")).unwrap();
    let base = std::sync::Arc::new(BaseSnapshot::open(&dir.join("run/base")).unwrap());
    let i = Integration::open(&dir.join("run/integration.json"), base, store).unwrap();
    apply_to_worktree(
        &i,
        &ApplyOptions::new(dir.join("run/apply")),
        &GateReport::not_run(),
    )
    .unwrap();
}

/// Kills a real process at points of an apply (at a random time; as soon as its journal
/// appears; just after its commit point), then recovers: the working tree is always wholly as
/// before or wholly as after.
#[test]
fn killed_mid_apply_the_tree_is_wholly_old_or_wholly_new() {
    let n = 600;
    let (g, j) = big_run(n);
    let old = tree(&g.repo);
    apply_to_worktree(&j, &opts(&g), &ok()).unwrap();
    let new = tree(&g.repo);
    let exe = std::env::current_exe().unwrap();
    let (mut olds, mut news) = (0, 0);
    let mut recoveries = Vec::new();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for round in 0..6 {
        let (f, i) = big_run(n);
        let root = f.repo.parent().unwrap().to_path_buf();
        i.save(&f.run.join("integration.json")).unwrap();
        let journal = f.run.join("apply/apply-journal.json");
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "apply::crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("FORGE_MERGE_CRASH_DIR", &root)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let wait_for = |committing: bool| {
            while std::time::Instant::now() < deadline {
                if let Ok(text) = std::fs::read_to_string(&journal)
                    && (!committing || text.contains("\"committing\""))
                {
                    return;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        };
        match round % 3 {
            0 => std::thread::sleep(Duration::from_millis(x % 300)),
            1 => {
                wait_for(false);
                std::thread::sleep(Duration::from_micros(x % 3000));
            }
            _ => wait_for(true),
        }
        let _ = child.kill();
        let _ = child.wait();
        recoveries.push(match recover(&f.run.join("apply")).unwrap() {
            Recovery::Nothing => "none",
            Recovery::RolledBack { .. } => "back",
            Recovery::RolledForward { .. } => "forward",
        });
        let now = tree(&f.repo);
        if now == old {
            olds += 1;
        } else {
            assert_eq!(now, new, "the tree is neither wholly old nor wholly new");
            news += 1;
        }
    }
    crate::common::announce(&format!(
        "kill test: {olds} wholly old, {news} wholly new; recoveries {recoveries:?}"
    ));
    assert!(
        recoveries.contains(&"back"),
        "no kill landed before the commit point"
    );
}
