//! Workspace lifecycle: names, shared dirs, copied-in files, drop on panic, gc after a crash.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use forge_staging::{
    BaseMode, RepoPath, ShareMode, SharedDir, Snapshot, Stager, StagingError, Workspace, gc,
};

use crate::common::{Fixture, Strategy, announce, git, mounts_under, skip, stager, write};

/// The stagers of every strategy available here.
fn available(
    base: &forge_staging::BaseSnapshot,
    config: &forge_staging::StagerConfig,
    what: &str,
) -> Vec<(Strategy, Box<dyn Stager>)> {
    Strategy::ALL
        .into_iter()
        .filter_map(|s| match stager(s, config, base) {
            Ok(st) => Some((s, st)),
            Err(reason) => {
                skip(what, s, &reason);
                None
            }
        })
        .collect()
}

#[test]
fn names_are_validated_and_unique() {
    let fx = Fixture::new(Strategy::Copy);
    let base = fx.capture(BaseMode::Head);
    let stager = stager(Strategy::Copy, &fx.config(), &base).unwrap();
    let snap = Snapshot::from(base.clone());
    for bad in ["", ".hidden", "a/b", "..", "x y", &"n".repeat(101)] {
        assert!(
            matches!(
                stager.stage(&snap, bad),
                Err(StagingError::InvalidName { .. })
            ),
            "{bad:?}"
        );
    }
    let ws = stager.stage(&snap, "task-1.attempt-2").unwrap();
    assert!(matches!(
        stager.stage(&snap, "task-1.attempt-2"),
        Err(StagingError::AlreadyExists(_))
    ));
    ws.dispose().unwrap();
    stager
        .stage(&snap, "task-1.attempt-2")
        .unwrap()
        .dispose()
        .unwrap();
}

#[test]
fn shared_dirs_and_copied_in_files_are_never_changes() {
    for strategy in Strategy::ALL {
        let fx = Fixture::new(strategy);
        write(
            &fx.repo,
            "node_modules/pkg/index.js",
            b"module.exports = 1;\n",
        );
        write(&fx.repo, "web/node_modules/x.js", b"x\n");
        write(&fx.repo, ".env", b"SECRET=1\n");
        let base = fx.capture(BaseMode::Worktree);
        let mut config = fx.config();
        config.share = vec![
            SharedDir {
                path: RepoPath::new("node_modules").unwrap(),
                mode: ShareMode::Symlink,
            },
            SharedDir {
                path: RepoPath::new("web/node_modules").unwrap(),
                mode: ShareMode::Clone,
            },
            SharedDir {
                path: RepoPath::new("target").unwrap(),
                mode: ShareMode::Symlink,
            },
        ];
        config.copy_in = vec![RepoPath::new(".env").unwrap()];
        let stager = match stager(strategy, &config, &base) {
            Ok(s) => s,
            Err(reason) => {
                skip("shares", strategy, &reason);
                continue;
            }
        };
        let ws = stager
            .stage(&Snapshot::from(base.clone()), "shares")
            .unwrap();
        let h = ws.host_path().to_path_buf();
        assert_eq!(
            fs::read(h.join("node_modules/pkg/index.js")).unwrap(),
            b"module.exports = 1;\n"
        );
        assert!(
            fs::symlink_metadata(h.join("node_modules"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read(h.join("web/node_modules/x.js")).unwrap(), b"x\n");
        assert_eq!(fs::read(h.join(".env")).unwrap(), b"SECRET=1\n");
        assert!(
            !h.join("target").exists(),
            "a shared dir the repository lacks is skipped"
        );
        // The agent builds into the shared dir and edits its copy of .env.
        write(&h, "node_modules/pkg/new.js", b"installed\n");
        write(&h, "web/node_modules/y.js", b"y\n");
        write(&h, ".env", b"SECRET=2\n");
        write(&h, "web/app.js", b"app\n");
        let changes = ws.changes().unwrap();
        let paths: Vec<_> = changes.paths().map(RepoPath::as_str).collect();
        assert_eq!(paths, ["web/app.js"], "{strategy:?}");
        ws.dispose().unwrap();
        // A symlinked share is the repository's own directory (that is the point of sharing);
        // the copied-in file is a copy.
        assert!(fx.repo.join("node_modules/pkg/new.js").exists());
        assert_eq!(fs::read(fx.repo.join(".env")).unwrap(), b"SECRET=1\n");
        assert!(fx.repo.join("web/node_modules/x.js").exists());
    }
}

#[test]
fn a_panic_drops_and_removes_the_workspace() {
    let fx = Fixture::new(Strategy::Reflink);
    let base = fx.capture(BaseMode::Head);
    let config = fx.config();
    for (strategy, stager) in available(&base, &config, "drop") {
        let ws = stager
            .stage(&Snapshot::from(base.clone()), "doomed")
            .unwrap();
        let dir = ws.host_path().to_path_buf();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _held: Box<dyn Workspace> = ws;
            panic!("agent crashed");
        }));
        assert!(result.is_err());
        assert!(!dir.exists(), "{strategy:?}");
        assert!(mounts_under(&fx.run).is_empty(), "{strategy:?}");
        assert_eq!(
            git(&fx.repo, &["worktree", "list", "--porcelain"])
                .matches("worktree ")
                .count(),
            1
        );
    }
}

#[test]
fn gc_leaves_live_workspaces_alone() {
    let fx = Fixture::new(Strategy::Reflink);
    let base = fx.capture(BaseMode::Head);
    let config = fx.config();
    for (strategy, stager) in available(&base, &config, "gc-live") {
        let ws = stager
            .stage(&Snapshot::from(base.clone()), "alive")
            .unwrap();
        let report = gc(&fx.run).unwrap();
        assert_eq!(report.live.len(), 1, "{strategy:?}: {report:?}");
        assert!(report.workspaces.is_empty(), "{strategy:?}: {report:?}");
        write(ws.host_path(), "still-works.txt", b"yes\n");
        assert_eq!(ws.changes().unwrap().len(), 1);
        ws.dispose().unwrap();
    }
}

/// Set in the child process of the crash test: the fixture directory to stage in.
const CHILD_ENV: &str = "FORGE_STAGING_CRASH_CHILD";

#[test]
fn gc_after_a_killed_process_leaves_nothing() {
    let fx = Fixture::new(Strategy::Reflink);
    // Prepare the base in the parent so the child only stages.
    let base = fx.capture(BaseMode::Worktree);
    drop(base);
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "lifecycle::crash_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, fx.tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // Should an assertion fail, still end the child and collect what it left.
    let mut guard = KillAndCollect {
        run: fx.run.clone(),
        child,
    };
    let mut staged = Vec::new();
    for line in BufReader::new(guard.child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        // libtest prints `test <name> ... ` before the test's own output, on the same line.
        if let Some(i) = line.find("STAGED ") {
            staged.push(line[i + 7..].to_owned());
        }
        if line == "READY" {
            break;
        }
    }
    assert!(staged.len() >= 2, "the child staged {staged:?}");
    guard.child.kill().unwrap();
    guard.child.wait().unwrap();
    announce(&format!("crash test: killed a process holding {staged:?}"));

    let workspaces = fx.run.join("workspaces");
    let left: Vec<_> = fs::read_dir(&workspaces)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), staged.len(), "left behind before gc: {left:?}");
    let report = gc(&fx.run).unwrap();
    assert_eq!(report.workspaces.len(), staged.len(), "{report:?}");
    assert!(report.live.is_empty(), "{report:?}");

    assert_eq!(fs::read_dir(&workspaces).unwrap().count(), 0);
    assert!(
        mounts_under(&fx.run).is_empty(),
        "{:?}",
        mounts_under(&fx.run)
    );
    let worktrees = git(&fx.repo, &["worktree", "list", "--porcelain"]);
    assert_eq!(worktrees.matches("worktree ").count(), 1, "{worktrees}");
    assert!(
        !fx.repo.join(".git/worktrees").exists()
            || fs::read_dir(fx.repo.join(".git/worktrees"))
                .unwrap()
                .count()
                == 0
    );
    for pid in &report.holders {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "holder {pid} survived"
        );
    }
    // Nothing of a holder process is left either: no process has a namespace mount on our dirs.
    assert!(no_process_mounts_under(&workspaces));
    // A second gc finds nothing.
    let again = gc(&fx.run).unwrap();
    assert!(
        again.workspaces.is_empty() && again.unmounted.is_empty(),
        "{again:?}"
    );
}

struct KillAndCollect {
    run: PathBuf,
    child: std::process::Child,
}

impl Drop for KillAndCollect {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = gc(&self.run);
    }
}

fn no_process_mounts_under(dir: &Path) -> bool {
    let dir = dir.to_string_lossy().into_owned();
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .all(|e| {
            let name = e.file_name();
            if !name.to_string_lossy().chars().all(|c| c.is_ascii_digit()) {
                return true;
            }
            fs::read_to_string(e.path().join("mountinfo")).map_or(true, |m| !m.contains(&dir))
        })
}

/// The child of the crash test: stages one workspace per available strategy, edits them,
/// reports `READY` and waits to be killed. Does nothing unless run by that test.
#[test]
#[ignore = "helper process of gc_after_a_killed_process_leaves_nothing"]
fn crash_child() {
    let Some(root) = std::env::var_os(CHILD_ENV).map(PathBuf::from) else {
        return;
    };
    let run = root.join("run");
    let store = forge_staging::BlobStore::open(run.join("objects")).unwrap();
    let base =
        std::sync::Arc::new(forge_staging::BaseSnapshot::open(&run.join("base-worktree")).unwrap());
    let fx = Fixture::reuse(&root, store);
    let config = fx.config();
    let mut held = Vec::new();
    for (strategy, stager) in available(&base, &config, "crash") {
        let ws = stager
            .stage(
                &Snapshot::from(base.clone()),
                &format!("crash-{strategy:?}"),
            )
            .unwrap();
        write(ws.host_path(), "half-written.txt", b"partial");
        println!("STAGED {strategy:?}");
        held.push(ws);
    }
    println!("READY");
    loop {
        std::thread::park();
    }
}

/// forge-exec moves workspaces and stagers into blocking tasks and shares stagers across them.
#[test]
fn workspaces_and_stagers_cross_threads() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<Box<dyn Workspace>>();
    send_sync::<Box<dyn Stager>>();
    send_sync::<Snapshot>();
    send_sync::<forge_staging::BlobStore>();
    send_sync::<forge_staging::ChangeSet>();
}
