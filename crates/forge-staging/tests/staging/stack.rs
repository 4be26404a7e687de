//! Stacked snapshots: one layer per integrated step, merged like a binary counter. Whatever
//! the sequence of steps (and so of compactions), the stacked view is the flat tree: in the
//! snapshot's manifest, on disk through every strategy this machine runs, and to git.

use std::collections::BTreeMap;
use std::fs;
use std::sync::Arc;

use forge_staging::{
    BaseMode, BaseSnapshot, BlobStore, Change, ChangeSet, ContentHash, Entry, RepoPath, Snapshot,
    Stager, StagingError,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::common::{Fixture, Strategy, skip, stager, tree_state};

/// Paths the steps touch: base files, new ones, and places where a file and a directory take
/// turns (`src`, `typechange`, `new`, `dir/a`).
const PATHS: [&str; 13] = [
    "README.md",
    "src",
    "src/lib.rs",
    "src/main.rs",
    "typechange",
    "typechange/x",
    "new",
    "new/a.txt",
    "new/b/c.txt",
    "dir/a",
    "dir/a/b/deep.txt",
    "link-in",
    "bin/tool.sh",
];

/// One edit: `(path index, what)`, what being 0 = delete (a directory: all of it), 1–3 = a
/// file with that content, 4 = an executable file, 5 = a symlink.
type Edit = (usize, u8);

fn edits() -> impl proptest::strategy::Strategy<Value = Vec<Vec<Edit>>> {
    prop::collection::vec(prop::collection::vec((0..PATHS.len(), 0u8..6), 0..4), 1..12)
}

fn is_under(path: &str, dir: &str) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
}

/// Applies `edit` to the flat tree `model` (a file replacing a directory removes the
/// directory's files, and the other way round).
fn apply(model: &mut BTreeMap<String, Entry>, store: &BlobStore, (i, what): Edit) {
    let path = PATHS[i];
    model.retain(|p, _| !is_under(p, path));
    if what == 0 {
        model.remove(path);
        return;
    }
    model.retain(|p, _| !is_under(path, p));
    let entry = match what {
        5 => Entry::symlink("README.md"),
        _ => {
            let content = format!("content {what} of {path}\n");
            let hash = store.write(content.as_bytes()).unwrap();
            Entry::file(hash, content.len() as u64, what == 4)
        }
    };
    model.insert(path.to_owned(), entry);
}

/// The changes that turn `before` into `after`.
fn diff(before: &BTreeMap<String, Entry>, after: &BTreeMap<String, Entry>) -> ChangeSet {
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|p| {
            Change::between(before.get(p).cloned(), after.get(p).cloned())
                .map(|c| (RepoPath::new(p).unwrap(), c))
        })
        .collect()
}

/// Every file and symlink under `root` (not `.git`) as an entry.
fn on_disk(root: &std::path::Path) -> BTreeMap<String, Entry> {
    tree_state(root)
        .into_iter()
        .filter(|(p, _)| !p.ends_with('/'))
        .map(|(path, state)| {
            let entry = if let Some(target) = state.strip_prefix("-> ") {
                Entry::symlink(target)
            } else {
                let content = fs::read(root.join(&path)).unwrap();
                let mode = u32::from_str_radix(state.split(' ').next().unwrap(), 8).unwrap();
                Entry::file(
                    ContentHash::of(&content),
                    content.len() as u64,
                    mode & 0o100 != 0,
                )
            };
            (path, entry)
        })
        .collect()
}

/// Stages `snapshot` with `stager` and checks that the workspace shows `model`, that git sees
/// a clean tree, and that nothing counts as changed.
fn check_staged(
    stager: &dyn Stager,
    snapshot: &Snapshot,
    model: &BTreeMap<String, Entry>,
    name: &str,
) -> Result<(), TestCaseError> {
    let ws = stager.stage(snapshot, name).unwrap();
    let seen = on_disk(ws.host_path());
    // Through the workspace's own view (an overlay in a user namespace is not a path here).
    let mut cmd = std::process::Command::new("git");
    cmd.args(["status", "--porcelain", "--untracked-files=all"])
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE");
    ws.prepare_command(&mut cmd).unwrap();
    let out = cmd.output().unwrap();
    let status = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let changes = ws.changes().unwrap();
    ws.dispose().unwrap();
    prop_assert_eq!(
        &seen,
        model,
        "{:?}: the workspace shows the flat tree",
        stager.kind()
    );
    prop_assert_eq!(
        status.trim(),
        "",
        "{:?}: git sees a clean tree",
        stager.kind()
    );
    prop_assert!(changes.is_empty(), "{:?}: {:?}", stager.kind(), changes);
    Ok(())
}

/// The base, its flat tree, and a stager for every strategy this machine runs.
struct Setup {
    fx: Fixture,
    base: Arc<BaseSnapshot>,
    flat: BTreeMap<String, Entry>,
    stagers: Vec<Box<dyn Stager>>,
}

impl Setup {
    fn new() -> Self {
        let fx = Fixture::new(Strategy::Copy);
        let base: Arc<BaseSnapshot> = fx.capture(BaseMode::Head);
        let config = fx.config();
        let stagers = Strategy::ALL
            .into_iter()
            .filter(|s| {
                *s != Strategy::Reflink || std::env::var_os("FORGE_TEST_REFLINK_DIR").is_none()
            })
            .filter_map(|s| match stager(s, &config, &base) {
                Ok(stager) => Some(stager),
                Err(reason) => {
                    skip("stacked snapshots", s, &reason);
                    None
                }
            })
            .collect();
        let flat = base
            .manifest()
            .iter()
            .map(|(p, e)| (p.as_str().to_owned(), e.clone()))
            .collect();
        Self {
            fx,
            base,
            flat,
            stagers,
        }
    }

    /// Stacks `steps` one by one (case number `case`), checking each stack against the flat
    /// tree: every intermediate one through the first strategy, the last through all.
    fn check(&self, steps: &[Vec<Edit>], case: u32) -> Result<(), TestCaseError> {
        let fx = &self.fx;
        let mut model = self.flat.clone();
        let mut snapshot = Snapshot::from(Arc::clone(&self.base));
        for (n, step_edits) in steps.iter().enumerate() {
            let before = model.clone();
            for edit in step_edits {
                apply(&mut model, &fx.store, *edit);
            }
            let step = diff(&before, &model);
            let dir = fx.run.join(format!("layers/{case}-{n}"));
            snapshot = snapshot.stack(&step, &fx.store, &dir).unwrap();
            let view: BTreeMap<String, Entry> = snapshot
                .iter()
                .map(|(p, e)| (p.as_str().to_owned(), e.clone()))
                .collect();
            prop_assert_eq!(&view, &model);
            // The binary counter: after n steps, one layer per bit of n.
            prop_assert_eq!(snapshot.depth(), (n + 1).count_ones() as usize);
            prop_assert_eq!(
                snapshot.against_base(&ChangeSet::default()).unwrap(),
                diff(&self.flat, &model)
            );
            let last = n + 1 == steps.len();
            let all = if last { self.stagers.len() } else { 1 };
            for stager in self.stagers.iter().take(all) {
                check_staged(
                    stager.as_ref(),
                    &snapshot,
                    &model,
                    &format!("ws-{case}-{n}"),
                )?;
            }
        }
        Ok(())
    }
}

#[test]
fn stacked_view_equals_flat_tree() {
    let setup = Setup::new();
    let mut runner = TestRunner::new(Config {
        cases: 16,
        ..Config::default()
    });
    let case = std::cell::Cell::new(0u32);
    runner
        .run(&edits(), |steps| {
            case.set(case.get() + 1);
            setup.check(&steps, case.get())
        })
        .unwrap();
}

/// Found by the property above: `README.md` becomes a link to itself, then `src` a link to
/// `README.md`. The worktree strategy looked for `src/lib.rs` through the link and failed with
/// "too many levels of symbolic links".
#[test]
fn a_directory_replaced_by_a_looping_link() {
    Setup::new()
        .check(&[vec![(0, 5)], vec![(1, 5)]], 0)
        .unwrap();
}

#[test]
fn a_step_must_start_from_the_snapshot() {
    let fx = Fixture::new(Strategy::Copy);
    let base = fx.capture(BaseMode::Head);
    let readme = base.manifest().get("README.md").unwrap().clone();
    let hash = fx.store.write(b"one\n").unwrap();
    let one = Entry::file(hash, 4, false);
    let first: ChangeSet = [(
        RepoPath::new("README.md").unwrap(),
        Change::Modified {
            before: readme.clone(),
            after: one,
        },
    )]
    .into_iter()
    .collect();
    let s1 = Snapshot::from(Arc::clone(&base))
        .stack(&first, &fx.store, &fx.run.join("layers/1"))
        .unwrap();
    // The same step again starts from the base's entry, not from what the snapshot holds.
    let err = s1
        .stack(&first, &fx.store, &fx.run.join("layers/2"))
        .unwrap_err();
    assert!(
        matches!(&err, StagingError::ChangeMismatch { path, .. } if path.as_str() == "README.md"),
        "{err}"
    );
    // A layer directory is never reused.
    let err = s1
        .stack(&ChangeSet::default(), &fx.store, &fx.run.join("layers/1"))
        .unwrap_err();
    assert!(matches!(err, StagingError::AlreadyExists(_)), "{err}");
}
