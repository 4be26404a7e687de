//! Fixtures: a real git repository, a run root, and every strategy this machine can run.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use forge_staging::{
    BaseMode, BaseSnapshot, BlobStore, ContentHash, CopyStager, OverlayRoute, OverlayStager,
    ReflinkStager, Stager, StagerConfig, WorktreeStager,
};

/// Each way of staging the suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strategy {
    OverlayDirect,
    OverlayUserns,
    OverlayFuse,
    Reflink,
    Worktree,
    Copy,
}

impl Strategy {
    pub(crate) const ALL: [Strategy; 6] = [
        Self::OverlayDirect,
        Self::OverlayUserns,
        Self::OverlayFuse,
        Self::Reflink,
        Self::Worktree,
        Self::Copy,
    ];

    /// The name `FORGE_REQUIRE_STRATEGIES` uses for this strategy.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::OverlayDirect => "overlay-direct",
            Self::OverlayUserns => "overlay-userns",
            Self::OverlayFuse => "overlay-fuse",
            Self::Reflink => "reflink",
            Self::Worktree => "worktree",
            Self::Copy => "copy",
        }
    }
}

/// A strategy cannot run here: says why on stderr, and fails the test when the environment
/// requires that strategy (`FORGE_REQUIRE_STRATEGIES`: a comma-separated list of names, or `all`;
/// `.ci/run` sets it to what it prepared), so a CI machine that lost a strategy does not pass
/// untested.
pub(crate) fn skip(what: &str, strategy: Strategy, reason: &str) {
    let required = std::env::var("FORGE_REQUIRE_STRATEGIES").unwrap_or_default();
    let is_required = required
        .split(',')
        .map(str::trim)
        .any(|r| r == "all" || r == strategy.name());
    assert!(
        !is_required,
        "{what}: strategy `{}` is required (FORGE_REQUIRE_STRATEGIES={required}) but cannot run: {reason}",
        strategy.name()
    );
    announce(&format!(
        "SKIPPED {what} {}: {reason} (set FORGE_REQUIRE_STRATEGIES to fail instead)",
        strategy.name()
    ));
}

/// Prints to the real stderr, past the test harness's capture, so that skip reasons show in CI.
pub(crate) fn announce(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

/// Runs git, panicking with its stderr on failure.
pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=Forge Test",
            "-c",
            "user.email=test@forge.invalid",
        ])
        .args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .env_remove("GIT_DIR")
        .env_remove("GIT_INDEX_FILE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Writes `content` at `root/rel`, creating parents.
pub(crate) fn write(root: &Path, rel: &str, content: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
}

pub(crate) fn chmod(root: &Path, rel: &str, mode: u32) {
    fs::set_permissions(root.join(rel), fs::Permissions::from_mode(mode)).unwrap();
}

/// The binary test content: every byte value.
pub(crate) fn all_bytes() -> Vec<u8> {
    (0..=255u8).collect()
}

/// A test repository with a commit, and a run root beside it.
pub(crate) struct Fixture {
    pub(crate) tmp: tempfile::TempDir,
    pub(crate) repo: PathBuf,
    pub(crate) run: PathBuf,
    pub(crate) store: BlobStore,
}

impl Fixture {
    /// A fixture in a directory suited to `strategy` (a reflink-capable file system for
    /// reflink: `$FORGE_TEST_REFLINK_DIR` when set).
    pub(crate) fn new(strategy: Strategy) -> Self {
        let tmp = match (strategy, std::env::var_os("FORGE_TEST_REFLINK_DIR")) {
            (Strategy::Reflink, Some(dir)) => tempfile::tempdir_in(dir).unwrap(),
            _ => tempfile::tempdir().unwrap(),
        };
        let repo = tmp.path().join("repo");
        let run = tmp.path().join("run");
        fs::create_dir_all(&repo).unwrap();
        populate(&repo);
        let store = BlobStore::open(run.join("objects")).unwrap();
        Self {
            tmp,
            repo,
            run,
            store,
        }
    }

    /// The fixture made by another process in `root` (the crash test's child).
    pub(crate) fn reuse(root: &Path, store: BlobStore) -> Self {
        Self {
            repo: root.join("repo"),
            run: root.join("run"),
            tmp: tempfile::TempDir::new_in(root).unwrap(),
            store,
        }
    }

    pub(crate) fn config(&self) -> StagerConfig {
        StagerConfig::new(&self.run, self.store.clone())
    }

    pub(crate) fn capture(&self, mode: BaseMode) -> Arc<BaseSnapshot> {
        let dir = self.run.join(format!("base-{mode}"));
        Arc::new(BaseSnapshot::capture(&self.repo, mode, &dir, &self.store).unwrap())
    }
}

/// The stager for `strategy`, or why it cannot run here.
pub(crate) fn stager(
    strategy: Strategy,
    config: &StagerConfig,
    base: &BaseSnapshot,
) -> Result<Box<dyn Stager>, String> {
    let r: Result<Box<dyn Stager>, _> = match strategy {
        Strategy::OverlayDirect => OverlayStager::with_route(config, OverlayRoute::Direct)
            .map(|s| Box::new(s) as Box<dyn Stager>),
        Strategy::OverlayUserns => OverlayStager::with_route(config, OverlayRoute::UserNamespace)
            .map(|s| Box::new(s) as Box<dyn Stager>),
        Strategy::OverlayFuse => OverlayStager::with_route(config, OverlayRoute::Fuse)
            .map(|s| Box::new(s) as Box<dyn Stager>),
        Strategy::Reflink => {
            ReflinkStager::new(config, base).map(|s| Box::new(s) as Box<dyn Stager>)
        }
        Strategy::Worktree => {
            WorktreeStager::new(config, base).map(|s| Box::new(s) as Box<dyn Stager>)
        }
        Strategy::Copy => CopyStager::new(config).map(|s| Box::new(s) as Box<dyn Stager>),
    };
    r.map_err(|e| e.to_string())
}

/// The committed content of the test repository, plus uncommitted work.
fn populate(repo: &Path) {
    git(repo, &["init", "-q"]);
    write(repo, "README.md", b"# hello\n");
    write(repo, "src/lib.rs", b"pub fn f() {}\n");
    write(repo, "src/main.rs", b"fn main() {}\n");
    write(repo, "bin/tool.sh", b"#!/bin/sh\necho tool\n");
    chmod(repo, "bin/tool.sh", 0o755);
    write(repo, "data/script.py", b"print(1)\n");
    write(repo, "data/blob.bin", &all_bytes());
    symlink("src/lib.rs", repo.join("link-in")).unwrap();
    write(repo, "docs/ünïcödé 文件.md", "unicode ✓\n".as_bytes());
    write(repo, "old/name.txt", b"to be renamed\n");
    write(repo, "dir/a/b/deep.txt", b"deep\n");
    write(repo, "typechange", b"a file that becomes a directory\n");
    write(
        repo,
        ".gitignore",
        b"*.log\nbuild/\n/target\nnode_modules/\n.env\n",
    );
    write(repo, "sub/.gitignore", b"*.tmp\n");
    write(repo, "sub/keep.txt", b"keep\n");
    write(repo, "keep.log", b"tracked although ignored\n");
    git(repo, &["add", "-A"]);
    git(repo, &["add", "-f", "keep.log"]);
    git(repo, &["commit", "-q", "-m", "base"]);
    // Uncommitted work: a modification, an untracked file, an ignored one.
    write(
        repo,
        "src/lib.rs",
        b"pub fn f() {} // edited, uncommitted\n",
    );
    write(repo, "notes.txt", b"untracked notes\n");
    write(repo, "debug.log", b"ignored\n");
}

/// Every file of a directory tree (not following symlinks) with its content hash (or link
/// target) and mode, skipping `.git`.
pub(crate) fn tree_state(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk_state(root, "", &mut out);
    out
}

fn walk_state(root: &Path, rel: &str, out: &mut BTreeMap<String, String>) {
    for entry in fs::read_dir(root.join(rel)).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let path = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        if name == ".git" {
            continue;
        }
        let meta = fs::symlink_metadata(entry.path()).unwrap();
        if meta.is_dir() {
            out.insert(format!("{path}/"), String::new());
            walk_state(root, &path, out);
        } else if meta.file_type().is_symlink() {
            out.insert(
                path,
                format!("-> {}", fs::read_link(entry.path()).unwrap().display()),
            );
        } else if !meta.is_file() {
            out.insert(path, "special".to_owned());
        } else {
            let content = fs::read(entry.path()).unwrap();
            out.insert(
                path,
                format!(
                    "{:o} {}",
                    meta.permissions().mode(),
                    ContentHash::of(&content).to_hex()
                ),
            );
        }
    }
}

/// The user's repository as git sees it: HEAD, refs, status, worktrees, plus every file.
pub(crate) fn repo_state(repo: &Path) -> (String, BTreeMap<String, String>) {
    let git_view = [
        git(repo, &["rev-parse", "HEAD"]),
        git(repo, &["for-each-ref"]),
        git(repo, &["status", "--porcelain=v1", "--untracked-files=all"]),
        git(repo, &["worktree", "list", "--porcelain"]),
        git(repo, &["stash", "list"]),
    ]
    .join("\n");
    (git_view, tree_state(repo))
}

/// Mount points at or under `root` in this process's mount namespace.
pub(crate) fn mounts_under(root: &Path) -> Vec<String> {
    let root = fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|m| Path::new(m).starts_with(&root))
        .collect()
}
