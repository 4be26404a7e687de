//! Fixtures shared by the test modules.

use std::path::Path;
use std::process::{Command, Stdio};

/// A `git` command that ignores the user's and the system's configuration.
pub(crate) fn git_cmd(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .stdin(Stdio::null());
    cmd
}

/// Runs `git merge-file -p <args> -L ours -L base -L theirs` on the three inputs; returns its
/// output and exit code.
pub(crate) fn git_merge_file(
    base: &[u8],
    ours: &[u8],
    theirs: &[u8],
    args: &[&str],
) -> (Vec<u8>, i32) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("base"), base).unwrap();
    std::fs::write(dir.path().join("ours"), ours).unwrap();
    std::fs::write(dir.path().join("theirs"), theirs).unwrap();
    let out = git_cmd(dir.path())
        .args(["merge-file", "-p"])
        .args(args)
        .args([
            "-L", "ours", "-L", "base", "-L", "theirs", "ours", "base", "theirs",
        ])
        .output()
        .unwrap();
    let code = out.status.code().unwrap();
    assert!(
        (0..=127).contains(&code),
        "git merge-file failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.stdout, code)
}

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use forge_merge::Integration;
use forge_staging::{BaseMode, BaseSnapshot, BlobStore, Change, ChangeSet, Entry, RepoPath};

/// Runs git in `dir` with a fixed identity, panicking with its stderr on failure.
pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_cmd(dir)
        .args([
            "-c",
            "user.name=Forge Test",
            "-c",
            "user.email=test@forge.invalid",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A repository (a real git repository with one commit, unless made with `plain`), a run
/// directory with an object store, and the run's base snapshot.
pub(crate) struct Fixture {
    pub(crate) _tmp: tempfile::TempDir,
    pub(crate) repo: PathBuf,
    pub(crate) run: PathBuf,
    pub(crate) store: BlobStore,
    pub(crate) base: Arc<BaseSnapshot>,
}

impl Fixture {
    /// A git repository holding `files` (path, content) in its first commit, its base taken
    /// from `HEAD`.
    pub(crate) fn git(files: &[(&str, &str)]) -> Self {
        Self::build(files, true, BaseMode::Head)
    }

    /// A plain directory (no git) holding `files`, its base taken from the working tree.
    pub(crate) fn plain(files: &[(&str, &str)]) -> Self {
        Self::build(files, false, BaseMode::Worktree)
    }

    pub(crate) fn build(files: &[(&str, &str)], with_git: bool, mode: BaseMode) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        let run = tmp.path().join("run");
        std::fs::create_dir_all(&repo).unwrap();
        std::fs::create_dir_all(&run).unwrap();
        for (path, content) in files {
            write(&repo, path, content);
        }
        if with_git {
            git(&repo, &["init", "-q"]);
            git(&repo, &["add", "-A"]);
            git(&repo, &["commit", "-q", "-m", "init"]);
        }
        let store = BlobStore::open(run.join("objects")).unwrap();
        let base = Arc::new(BaseSnapshot::capture(&repo, mode, &run.join("base"), &store).unwrap());
        Self {
            _tmp: tmp,
            repo,
            run,
            store,
            base,
        }
    }

    pub(crate) fn integration(&self) -> Integration {
        Integration::new(self.base.clone(), self.store.clone())
    }

    /// A file entry with `content`, stored.
    pub(crate) fn file(&self, content: &str) -> Entry {
        let h = self.store.write(content.as_bytes()).unwrap();
        Entry::file(h, content.len() as u64, false)
    }

    /// The changes a task makes when, starting from what `start` holds, it sets each path to
    /// the given content (`None`: deletes it).
    pub(crate) fn changes(
        &self,
        start: impl Fn(&str) -> Option<Entry>,
        edits: &[(&str, Option<&str>)],
    ) -> ChangeSet {
        edits
            .iter()
            .filter_map(|(path, content)| {
                let after = content.map(|c| self.file(c));
                Change::between(start(path), after).map(|c| (RepoPath::new(path).unwrap(), c))
            })
            .collect()
    }

    /// The changes of a task that started from the base.
    pub(crate) fn task_from_base(&self, edits: &[(&str, Option<&str>)]) -> ChangeSet {
        self.changes(|p| self.base.manifest().get(p).cloned(), edits)
    }

    /// The content of `path` in the integrated tree.
    pub(crate) fn content(&self, integration: &Integration, path: &str) -> Option<String> {
        integration
            .get(path)
            .map(|e| String::from_utf8(self.store.read(&e.hash()).unwrap()).unwrap())
    }
}

/// Every file and symlink under `root` (except `.git` and `.forge`), with its content (a
/// symlink's as `-> target`).
pub(crate) fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel == ".git" || rel == ".forge" {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else if meta.file_type().is_symlink() {
                let t = std::fs::read_link(&path).unwrap();
                out.insert(rel, format!("-> {}", t.display()).into_bytes());
            } else {
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// Writes `content` to `root/path`, creating directories.
pub(crate) fn write(root: &Path, path: &str, content: &str) {
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

/// `n` numbered lines, `prefix 1` to `prefix n`.
pub(crate) fn lines(prefix: &str, n: usize) -> String {
    (1..=n).map(|i| format!("{prefix} {i}\n")).collect()
}

/// Prints to the real stderr, past the test harness's capture.
pub(crate) fn announce(msg: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{msg}");
}

/// A task id.
pub(crate) fn tid(id: &str) -> forge_merge::TaskId {
    forge_merge::TaskId::new(id).unwrap()
}
