//! Base snapshots, checked against git itself.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::symlink;

use forge_staging::{
    BaseMode, BaseSnapshot, BlobStore, ContentHash, Entry, SkipReason, StagingError,
};

use crate::common::{Fixture, Strategy, git, repo_state, write};

#[test]
fn head_mode_is_the_commit_as_git_has_it() {
    let fx = Fixture::new(Strategy::Copy);
    let before = repo_state(&fx.repo);
    let base = fx.capture(BaseMode::Head);
    assert_eq!(
        repo_state(&fx.repo),
        before,
        "capture must not touch the repository"
    );
    assert_eq!(
        base.commit(),
        Some(git(&fx.repo, &["rev-parse", "HEAD"]).trim())
    );
    let tracked: BTreeSet<String> = git(&fx.repo, &["ls-tree", "-r", "--name-only", "-z", "HEAD"])
        .split('\0')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let paths: BTreeSet<String> = base
        .manifest()
        .iter()
        .map(|(p, _)| p.as_str().to_owned())
        .collect();
    assert_eq!(paths, tracked);
    for (path, entry) in base.manifest() {
        let content = std::process::Command::new("git")
            .arg("-C")
            .arg(&fx.repo)
            .args(["cat-file", "blob", &format!("HEAD:{path}")])
            .output()
            .unwrap()
            .stdout;
        assert_eq!(entry.hash(), ContentHash::of(&content), "{path}");
        // Every blob is in the store, verified on read.
        assert_eq!(fx.store.read(&entry.hash()).unwrap(), content);
    }
    assert!(base.manifest().get("bin/tool.sh").unwrap().is_executable());
    assert_eq!(
        base.manifest().get("link-in"),
        Some(&Entry::symlink("src/lib.rs"))
    );
    // The uncommitted edit is not in a Head snapshot.
    let lib = fs::read_to_string(base.tree_dir().join("src/lib.rs")).unwrap();
    assert_eq!(lib, "pub fn f() {}\n");

    let reopened = BaseSnapshot::open(base.dir()).unwrap();
    assert_eq!(reopened.manifest(), base.manifest());
    assert_eq!(reopened.commit(), base.commit());
    assert!(matches!(
        BaseSnapshot::capture(&fx.repo, BaseMode::Head, base.dir(), &fx.store),
        Err(StagingError::AlreadyExists(_))
    ));
}

/// A snapshot recorded by the previous version (its manifest as `manifest.json`) still opens,
/// to resume a run that used it, but is not reused as a cached base; a damaged manifest is an
/// error naming the file.
#[test]
fn older_and_damaged_snapshots() {
    let fx = Fixture::new(Strategy::Copy);
    let base = fx.capture(BaseMode::Head);
    let dir = base.dir();
    assert!(BaseSnapshot::is_current(dir));
    let record = dir.join("snapshot.json");
    let text = fs::read_to_string(&record).unwrap();
    assert!(text.contains("\"version\":3"), "{text}");
    fs::write(&record, text.replace("\"version\":3", "\"version\":2")).unwrap();
    fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec(base.manifest()).unwrap(),
    )
    .unwrap();
    fs::remove_file(dir.join("manifest.bin")).unwrap();
    let old = BaseSnapshot::open(dir).unwrap();
    assert_eq!(old.manifest(), base.manifest());
    assert!(!BaseSnapshot::is_current(dir));

    fs::write(&record, text).unwrap();
    let mut bytes = base.manifest().encode();
    bytes.truncate(bytes.len() - 3);
    fs::write(dir.join("manifest.bin"), bytes).unwrap();
    match BaseSnapshot::open(dir) {
        Err(e @ StagingError::Corrupt { .. }) => {
            let message = e.to_string();
            assert!(message.contains("manifest.bin"), "{message}");
            assert!(message.contains("ends inside"), "{message}");
        }
        other => panic!("a cut manifest must be refused: {other:?}"),
    }
}

/// Worktree mode keeps exactly what git considers part of the working tree: tracked files and
/// untracked files that are not ignored, whatever the mix of ignore rules.
#[test]
fn worktree_mode_agrees_with_git_on_ignored_files() {
    let fx = Fixture::new(Strategy::Copy);
    let r = &fx.repo;
    write(
        r,
        "a/.gitignore",
        b"*.o\n!keep.o\n/anchored.txt\ndeep/**/x\n",
    );
    for f in [
        "a/m.o",
        "a/keep.o",
        "a/anchored.txt",
        "a/b/anchored.txt",
        "a/deep/1/2/x",
        "a/deep/y",
        "build/out",
        "b/build/out",
        "x.log",
        "b/c/d.log",
        "node_modules/pkg/index.js",
        "target/debug/t",
        "sub/t.tmp",
        "sub/t.txt",
        "spaced name.txt",
        "info-excluded.dat",
        "deleted-later.txt",
    ] {
        write(r, f, f.as_bytes());
    }
    write(r, ".git/info/exclude", b"*.dat\n");
    git(r, &["add", "deleted-later.txt"]);
    git(r, &["commit", "-q", "-m", "more"]);
    fs::remove_file(r.join("deleted-later.txt")).unwrap();
    symlink("../outside", r.join("dangling")).unwrap();

    let base = fx.capture(BaseMode::Worktree);
    let by_git: BTreeSet<String> = git(
        r,
        &[
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ],
    )
    .split('\0')
    .filter(|s| !s.is_empty() && *s != "deleted-later.txt")
    .map(str::to_owned)
    .collect();
    let ours: BTreeSet<String> = base
        .manifest()
        .iter()
        .map(|(p, _)| p.as_str().to_owned())
        .collect();
    assert_eq!(ours, by_git);
    assert_eq!(
        base.manifest().get("dangling"),
        Some(&Entry::symlink("../outside"))
    );
    assert_eq!(
        fs::read_link(base.tree_dir().join("dangling"))
            .unwrap()
            .to_str(),
        Some("../outside")
    );
    let lib = fs::read_to_string(base.tree_dir().join("src/lib.rs")).unwrap();
    assert!(lib.contains("uncommitted"));
}

#[test]
fn nested_repositories_are_reported_not_captured() {
    let fx = Fixture::new(Strategy::Copy);
    let nested = fx.repo.join("vendor/lib");
    fs::create_dir_all(&nested).unwrap();
    git(&nested, &["init", "-q"]);
    write(&nested, "code.c", b"int x;\n");
    let base = fx.capture(BaseMode::Worktree);
    assert!(
        base.manifest()
            .iter()
            .all(|(p, _)| !p.as_str().starts_with("vendor/"))
    );
    assert!(
        base.skipped()
            .iter()
            .any(|s| s.path == "vendor/lib" && s.reason == SkipReason::NestedRepository)
    );
}

#[test]
fn plain_directories_work_in_worktree_mode_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plain");
    write(&dir, "a.txt", b"a\n");
    write(&dir, "skip.me", b"x\n");
    write(&dir, ".gitignore", b"*.me\n");
    write(&dir, "x/y/z.txt", b"z\n");
    write(&dir, ".forge/runs/r/state", b"forge's own\n");
    let store = BlobStore::open(tmp.path().join("objects")).unwrap();
    let base =
        BaseSnapshot::capture(&dir, BaseMode::Worktree, &tmp.path().join("base"), &store).unwrap();
    let paths: Vec<_> = base
        .manifest()
        .iter()
        .map(|(p, _)| p.as_str().to_owned())
        .collect();
    assert_eq!(paths, [".gitignore", "a.txt", "x/y/z.txt"]);
    assert_eq!(base.commit(), None);
    let err =
        BaseSnapshot::capture(&dir, BaseMode::Head, &tmp.path().join("b2"), &store).unwrap_err();
    assert!(matches!(err, StagingError::NotGit { .. }), "{err}");
    assert!(err.to_string().contains("worktree"), "{err}");
    assert!(!tmp.path().join("b2").exists());
}
