//! One suite, run against every strategy the machine can run: each edit an agent can make is
//! captured exactly, workspaces are isolated, and neither the base nor the user's repository is
//! ever modified.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::process::Command;

use forge_staging::{
    BaseMode, BaseSnapshot, Change, ChangeSet, ContentHash, Entry, LinkTarget, SkipReason,
    Snapshot, Stager, StagerKind,
};

use crate::common::{
    Fixture, Strategy, all_bytes, announce, mounts_under, repo_state, skip, stager, tree_state,
    write,
};

#[test]
fn conformance_overlay_direct() {
    conformance(Strategy::OverlayDirect);
}

#[test]
fn conformance_overlay_user_namespace() {
    conformance(Strategy::OverlayUserns);
}

#[test]
fn conformance_overlay_fuse() {
    conformance(Strategy::OverlayFuse);
}

#[test]
fn conformance_reflink() {
    conformance(Strategy::Reflink);
}

#[test]
fn conformance_worktree() {
    conformance(Strategy::Worktree);
}

#[test]
fn conformance_copy() {
    conformance(Strategy::Copy);
}

#[test]
fn auto_picks_a_working_strategy_in_order() {
    let fx = Fixture::new(Strategy::Copy);
    let base = fx.capture(BaseMode::Head);
    let config = fx.config();
    let auto = StagerKind::Auto.build(&config, &base).unwrap();
    // The first strategy that builds is the one Auto chose.
    let first = StagerKind::STRATEGIES
        .into_iter()
        .find(|k| k.build(&config, &base).is_ok())
        .unwrap();
    assert_eq!(auto.kind(), Some(first));
    announce(&format!("StagerKind::Auto chose `{first}` on this machine"));
    let ws = auto.stage(&Snapshot::from(base.clone()), "auto").unwrap();
    assert_eq!(
        fs::read(ws.host_path().join("README.md")).unwrap(),
        b"# hello\n"
    );
    ws.dispose().unwrap();
    assert_eq!("copy".parse::<StagerKind>().unwrap(), StagerKind::Copy);
    assert!("zfs".parse::<StagerKind>().is_err());
}

fn conformance(strategy: Strategy) {
    let fx = Fixture::new(strategy);
    let mut config = fx.config();
    config.max_file_size = 1 << 20;
    for mode in [BaseMode::Worktree, BaseMode::Head] {
        let base = fx.capture(mode);
        let stager = match stager(strategy, &config, &base) {
            Ok(s) => s,
            Err(reason) => {
                skip("conformance", strategy, &reason);
                return;
            }
        };
        let repo_before = repo_state(&fx.repo);
        let base_before = tree_state(&base.tree_dir());

        edits_are_captured_exactly(&fx, stager.as_ref(), &base, mode);
        workspaces_are_isolated(stager.as_ref(), &base);

        assert_eq!(
            repo_state(&fx.repo),
            repo_before,
            "the user's repository changed"
        );
        assert_eq!(
            tree_state(&base.tree_dir()),
            base_before,
            "the base snapshot changed"
        );
        assert!(
            mounts_under(&fx.run).is_empty(),
            "{:?}",
            mounts_under(&fx.run)
        );
        let left: Vec<_> = fs::read_dir(fx.run.join("workspaces")).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }
}

fn file(content: &[u8], executable: bool) -> Entry {
    Entry::file(ContentHash::of(content), content.len() as u64, executable)
}

// One story of edits, told in order, reads better than many small functions.
#[allow(clippy::too_many_lines)]
fn edits_are_captured_exactly(
    fx: &Fixture,
    stager: &dyn Stager,
    base: &std::sync::Arc<BaseSnapshot>,
    mode: BaseMode,
) {
    let ws = stager
        .stage(&Snapshot::from(base.clone()), "conformance")
        .unwrap();
    let h = ws.host_path().to_path_buf();

    // The snapshot is what the workspace shows.
    assert_eq!(fs::read(h.join("README.md")).unwrap(), b"# hello\n");
    let lib = fs::read_to_string(h.join("src/lib.rs")).unwrap();
    assert_eq!(lib.contains("uncommitted"), mode == BaseMode::Worktree);
    assert_eq!(h.join("notes.txt").exists(), mode == BaseMode::Worktree);
    assert!(
        !h.join("debug.log").exists(),
        "ignored files are not staged"
    );
    assert!(
        h.join("keep.log").exists(),
        "tracked files are staged even if ignored"
    );
    assert_eq!(
        fs::read_link(h.join("link-in")).unwrap().to_str(),
        Some("src/lib.rs")
    );
    assert_eq!(fs::read(h.join("data/blob.bin")).unwrap(), all_bytes());
    assert!(
        ws.changes().unwrap().is_empty(),
        "{:?}",
        ws.changes().unwrap()
    );

    // An agent process, started the way forge-exec starts one.
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(
        "set -e; pwd; echo agent > agent.txt; rm src/main.rs; chmod +x data/script.py; \
         mv old/name.txt old/renamed.txt; cat README.md; printf %s \"$FORGE_WORKSPACE\" >&2",
    );
    ws.prepare_command(&mut cmd).unwrap();
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout, format!("{}\n# hello\n", ws.path().display()));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        ws.path().display().to_string()
    );

    // More edits, made from this process.
    write(&h, "README.md", b"# changed\n");
    write(&h, "new.txt", b"new\n");
    symlink("new.txt", h.join("link-new")).unwrap();
    symlink("/etc/passwd", h.join("escape")).unwrap();
    symlink("../../outside", h.join("escape-rel")).unwrap();
    let new_bin = [0u8, 255, 0, 10, 13, 0];
    write(&h, "data/new.bin", &new_bin);
    let reversed: Vec<u8> = all_bytes().into_iter().rev().collect();
    write(&h, "data/blob.bin", &reversed);
    for ignored in [
        "build/out.o",
        "sub/x.tmp",
        "a.log",
        "deep/er/z.log",
        "target/debug/x",
    ] {
        write(&h, ignored, b"ignored");
    }
    // The task ignores a file of its own: the start state's rules decide, so it is captured.
    write(&h, "sub/.gitignore", b"*.tmp\nhidden-by-task.txt\n");
    write(&h, "sub/hidden-by-task.txt", b"mine\n");
    write(&h, "sub2/.git/notes", b"never captured");
    write(&h, ".forge/state", b"never captured");
    fs::create_dir_all(h.join("empty/dir")).unwrap();
    fs::remove_dir_all(h.join("dir")).unwrap();
    // A link to a directory outside, holding the same names, takes the directory's place: its
    // files are gone from the workspace, not read through the link.
    let outside = fx.run.join("outside-dir");
    write(&outside, "a/b/deep.txt", b"outside\n");
    symlink(&outside, h.join("dir")).unwrap();
    fs::remove_file(h.join("typechange")).unwrap();
    write(&h, "typechange/inner.txt", b"now a directory\n");
    write(&h, "ünï/新しい.txt", "新\n".as_bytes());
    write(&h, "docs/ünïcödé 文件.md", "unicode ✓✓\n".as_bytes());
    write(&h, "big.bin", &vec![7u8; 2 << 20]);
    assert!(
        Command::new("mkfifo")
            .arg(h.join("fifo"))
            .status()
            .unwrap()
            .success()
    );

    let b = |p: &str| base.manifest().get(p).unwrap().clone();
    let mut want: BTreeMap<&str, Change> = BTreeMap::new();
    want.insert("agent.txt", Change::Added(file(b"agent\n", false)));
    want.insert("new.txt", Change::Added(file(b"new\n", false)));
    want.insert("link-new", Change::Added(Entry::symlink("new.txt")));
    want.insert("escape", Change::Added(Entry::symlink("/etc/passwd")));
    want.insert("escape-rel", Change::Added(Entry::symlink("../../outside")));
    want.insert(
        "dir",
        Change::Added(Entry::symlink(outside.to_str().unwrap())),
    );
    want.insert("data/new.bin", Change::Added(file(&new_bin, false)));
    want.insert(
        "old/renamed.txt",
        Change::Added(file(b"to be renamed\n", false)),
    );
    want.insert(
        "typechange/inner.txt",
        Change::Added(file(b"now a directory\n", false)),
    );
    want.insert(
        "ünï/新しい.txt",
        Change::Added(file("新\n".as_bytes(), false)),
    );
    want.insert(
        "sub/hidden-by-task.txt",
        Change::Added(file(b"mine\n", false)),
    );
    let modified = |p: &str, after: Entry| Change::Modified {
        before: b(p),
        after,
    };
    want.insert(
        "sub/.gitignore",
        modified(
            "sub/.gitignore",
            file(b"*.tmp\nhidden-by-task.txt\n", false),
        ),
    );
    want.insert(
        "README.md",
        modified("README.md", file(b"# changed\n", false)),
    );
    want.insert(
        "data/script.py",
        modified("data/script.py", file(b"print(1)\n", true)),
    );
    want.insert(
        "data/blob.bin",
        modified("data/blob.bin", file(&reversed, false)),
    );
    want.insert(
        "docs/ünïcödé 文件.md",
        modified(
            "docs/ünïcödé 文件.md",
            file("unicode ✓✓\n".as_bytes(), false),
        ),
    );
    for gone in [
        "src/main.rs",
        "old/name.txt",
        "dir/a/b/deep.txt",
        "typechange",
    ] {
        want.insert(gone, Change::Deleted(b(gone)));
    }

    let changes = ws.changes().unwrap();
    let got: BTreeMap<&str, Change> = changes
        .iter()
        .map(|(p, c)| (p.as_str(), c.clone()))
        .collect();
    assert_eq!(got, want);
    // Every new content is in the store, verified on read.
    for (_, change) in &changes {
        if let Some(after) = change.after() {
            let blob = fx.store.read(&after.hash()).unwrap();
            if let Some(target) = after.link_target() {
                assert_eq!(&blob[..], target.as_bytes());
            }
        }
    }
    assert_eq!(
        fx.store
            .read(
                &changes
                    .get("data/blob.bin")
                    .unwrap()
                    .after()
                    .unwrap()
                    .hash()
            )
            .unwrap(),
        reversed
    );
    let skipped: BTreeMap<&str, &SkipReason> = changes
        .skipped()
        .iter()
        .map(|s| (s.path.as_str(), &s.reason))
        .collect();
    assert_eq!(
        skipped.get("big.bin"),
        Some(&&SkipReason::TooLarge {
            size: 2 << 20,
            limit: 1 << 20
        })
    );
    // git status does not list special files, so the worktree strategy never sees the FIFO.
    if stager.kind() == Some(StagerKind::Worktree) {
        assert_eq!(skipped.len(), 1, "{skipped:?}");
    } else {
        assert!(
            matches!(skipped.get("fifo"), Some(SkipReason::Special { kind }) if kind == "fifo")
        );
        assert_eq!(skipped.len(), 2, "{skipped:?}");
    }
    // Deterministic and serde round-trippable.
    assert_eq!(ws.changes().unwrap(), changes);
    let json = serde_json::to_string(&changes).unwrap();
    assert_eq!(serde_json::from_str::<ChangeSet>(&json).unwrap(), changes);
    assert_eq!(
        changes
            .get("escape")
            .unwrap()
            .after()
            .unwrap()
            .link_target(),
        Some(&LinkTarget::from("/etc/passwd"))
    );

    let dir = ws.host_path().to_path_buf();
    ws.dispose().unwrap();
    assert!(!dir.exists());
}

fn workspaces_are_isolated(stager: &dyn Stager, base: &std::sync::Arc<BaseSnapshot>) {
    let snapshot = Snapshot::from(base.clone());
    let workspaces: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..10)
            .map(|i| {
                let snapshot = &snapshot;
                s.spawn(move || {
                    let ws = stager.stage(snapshot, &format!("iso-{i}")).unwrap();
                    let mut cmd = Command::new("sh");
                    cmd.arg("-c").arg(format!(
                        "echo 'ws {i}' > README.md && echo {i} > iso-{i}.txt && cat README.md"
                    ));
                    ws.prepare_command(&mut cmd).unwrap();
                    let out = cmd.output().unwrap();
                    assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("ws {i}\n"));
                    ws
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, ws) in workspaces.iter().enumerate() {
        let readme = format!("ws {i}\n");
        assert_eq!(
            fs::read_to_string(ws.host_path().join("README.md")).unwrap(),
            readme
        );
        for j in 0..10 {
            assert_eq!(ws.host_path().join(format!("iso-{j}.txt")).exists(), i == j);
        }
        let changes = ws.changes().unwrap();
        let paths: Vec<_> = changes.paths().map(|p| p.as_str().to_owned()).collect();
        assert_eq!(paths, ["README.md".to_owned(), format!("iso-{i}.txt")]);
        assert_eq!(
            changes.get("README.md").unwrap().after(),
            Some(&file(readme.as_bytes(), false))
        );
    }
    for ws in workspaces {
        ws.dispose().unwrap();
    }
}
