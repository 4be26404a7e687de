//! Snapshots with a delta on top: what a task that starts after others were integrated sees.

use std::collections::BTreeMap;
use std::fs;
use std::sync::Arc;

use forge_staging::{
    BaseMode, BlobStore, Change, ChangeSet, ContentHash, Entry, RepoPath, Snapshot, StagingError,
};

use crate::common::{Fixture, Strategy, mounts_under, skip, stager, write};

#[test]
fn delta_overlay_direct() {
    delta(Strategy::OverlayDirect);
}

#[test]
fn delta_overlay_user_namespace() {
    delta(Strategy::OverlayUserns);
}

#[test]
fn delta_overlay_fuse() {
    delta(Strategy::OverlayFuse);
}

#[test]
fn delta_reflink() {
    delta(Strategy::Reflink);
}

#[test]
fn delta_worktree() {
    delta(Strategy::Worktree);
}

#[test]
fn delta_copy() {
    delta(Strategy::Copy);
}

fn p(s: &str) -> RepoPath {
    RepoPath::new(s).unwrap()
}

fn stored(store: &BlobStore, content: &[u8], executable: bool) -> Entry {
    let hash = store.write(content).unwrap();
    Entry::file(hash, content.len() as u64, executable)
}

/// Every file and symlink under `root` with its entry, read from disk.
fn disk_manifest(root: &std::path::Path) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    for (path, state) in crate::common::tree_state(root) {
        if path.ends_with('/') {
            continue;
        }
        let abs = root.join(&path);
        let entry = if let Some(target) = state.strip_prefix("-> ") {
            Entry::symlink(target)
        } else {
            let content = fs::read(&abs).unwrap();
            let mode = state.split(' ').next().unwrap();
            let exec = u32::from_str_radix(mode, 8).unwrap() & 0o100 != 0;
            Entry::file(ContentHash::of(&content), content.len() as u64, exec)
        };
        out.insert(path, entry);
    }
    out
}

// One story, told in order, reads better than many small functions.
#[allow(clippy::too_many_lines)]
fn delta(strategy: Strategy) {
    let fx = Fixture::new(strategy);
    let base = fx.capture(BaseMode::Head);
    let config = fx.config();
    let stager = match stager(strategy, &config, &base) {
        Ok(s) => s,
        Err(reason) => {
            skip("delta", strategy, &reason);
            return;
        }
    };
    let store = &fx.store;
    let b = |path: &str| base.manifest().get(path).unwrap().clone();
    let v2 = stored(store, b"# v2\n", false);
    let added = stored(store, b"integrated\n", true);
    let inner = stored(store, b"inside\n", false);
    let delta: ChangeSet = [
        (
            p("README.md"),
            Change::Modified {
                before: b("README.md"),
                after: v2.clone(),
            },
        ),
        (p("new/dir/file.txt"), Change::Added(added.clone())),
        (p("src/main.rs"), Change::Deleted(b("src/main.rs"))),
        (
            p("dir/a/b/deep.txt"),
            Change::Deleted(b("dir/a/b/deep.txt")),
        ),
        (p("typechange"), Change::Deleted(b("typechange"))),
        (p("typechange/x"), Change::Added(inner.clone())),
        (
            p("link-to-readme"),
            Change::Added(Entry::symlink("README.md")),
        ),
    ]
    .into_iter()
    .collect();
    let layer = fx.run.join("layers/1");
    let snapshot = Snapshot::with_delta(Arc::clone(&base), &delta, store, &layer).unwrap();
    assert_eq!(snapshot.get("README.md"), Some(&v2));
    assert_eq!(snapshot.get("src/main.rs"), None);
    // Three paths added, three deleted.
    assert_eq!(snapshot.len(), base.manifest().len());
    assert_eq!(snapshot.manifest(), base.manifest().apply(&delta).unwrap());
    // The layer holds only the delta: its files and whiteouts, not the repository.
    let layer_files: Vec<_> = crate::common::tree_state(&layer.join("tree"))
        .into_keys()
        .filter(|p| !p.ends_with('/'))
        .collect();
    assert_eq!(
        layer_files,
        [
            "README.md",
            "dir/a/b/deep.txt",
            "link-to-readme",
            "new/dir/file.txt",
            "src/main.rs",
            "typechange/x"
        ]
    );

    // The same delta again reuses the layer; another one, or a stale one, is refused.
    Snapshot::with_delta(Arc::clone(&base), &delta, store, &layer).unwrap();
    let other: ChangeSet = [(p("zzz"), Change::Added(v2.clone()))]
        .into_iter()
        .collect();
    assert!(matches!(
        Snapshot::with_delta(Arc::clone(&base), &other, store, &layer),
        Err(StagingError::AlreadyExists(_))
    ));
    let stale: ChangeSet = [(p("README.md"), Change::Deleted(v2.clone()))]
        .into_iter()
        .collect();
    assert!(matches!(
        Snapshot::with_delta(Arc::clone(&base), &stale, store, &fx.run.join("layers/2")),
        Err(StagingError::ChangeMismatch { .. })
    ));

    let ws = stager.stage(&snapshot, "on-delta").unwrap();
    let h = ws.host_path().to_path_buf();
    let want: BTreeMap<String, Entry> = snapshot
        .iter()
        .map(|(p, e)| (p.as_str().to_owned(), e.clone()))
        .collect();
    assert_eq!(
        disk_manifest(&h),
        want,
        "the workspace shows exactly the snapshot"
    );
    assert!(
        ws.changes().unwrap().is_empty(),
        "{:?}",
        ws.changes().unwrap()
    );

    write(&h, "new/dir/file.txt", b"changed again\n");
    fs::remove_file(h.join("README.md")).unwrap();
    write(&h, "z.txt", b"z\n");
    fs::remove_file(h.join("typechange/x")).unwrap();
    let changes = ws.changes().unwrap();
    let got: BTreeMap<_, _> = changes
        .iter()
        .map(|(p, c)| (p.as_str(), c.clone()))
        .collect();
    let mut exp: BTreeMap<&str, Change> = BTreeMap::new();
    exp.insert(
        "new/dir/file.txt",
        Change::Modified {
            before: added,
            after: Entry::file(ContentHash::of(b"changed again\n"), 14, true),
        },
    );
    exp.insert("README.md", Change::Deleted(v2));
    exp.insert(
        "z.txt",
        Change::Added(Entry::file(ContentHash::of(b"z\n"), 2, false)),
    );
    exp.insert("typechange/x", Change::Deleted(inner));
    assert_eq!(got, exp);

    // Relative to the base, the two compose into what the workspace holds.
    let total = snapshot.against_base(&changes).unwrap();
    let want: BTreeMap<String, Entry> = base
        .manifest()
        .apply(&total)
        .unwrap()
        .iter()
        .map(|(p, e)| (p.as_str().to_owned(), e.clone()))
        .collect();
    assert_eq!(disk_manifest(&h), want);
    assert_eq!(
        total.get("README.md"),
        Some(&Change::Deleted(b("README.md")))
    );

    ws.dispose().unwrap();
    assert!(mounts_under(&fx.run).is_empty());
}
