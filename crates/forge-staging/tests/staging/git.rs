//! Every workspace is a git repository at its start state, on every strategy: `git status`
//! starts clean and then shows exactly the agent's changes, `git diff` shows them, `git log`
//! shows the user's history, and whatever the agent does in git stays in the workspace: the
//! user's `.git` is byte-identical afterwards and the capture never holds `.git`.

use std::fs;
use std::process::Command;

use forge_staging::{BaseMode, Snapshot, StagerKind, Workspace};

use crate::common::{Fixture, Strategy, git, skip, stager, tree_state};

#[test]
fn git_in_workspace_overlay_direct() {
    git_in_workspaces(Strategy::OverlayDirect);
}

#[test]
fn git_in_workspace_overlay_user_namespace() {
    git_in_workspaces(Strategy::OverlayUserns);
}

#[test]
fn git_in_workspace_overlay_fuse() {
    git_in_workspaces(Strategy::OverlayFuse);
}

#[test]
fn git_in_workspace_reflink() {
    git_in_workspaces(Strategy::Reflink);
}

#[test]
fn git_in_workspace_worktree() {
    git_in_workspaces(Strategy::Worktree);
}

#[test]
fn git_in_workspace_copy() {
    git_in_workspaces(Strategy::Copy);
}

/// Runs `sh -c script` in the workspace as an agent would (entering its namespace if it has
/// one), with git's identity set and nothing pointing git elsewhere; returns its stdout.
fn agent(ws: &dyn Workspace, script: &str) -> String {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .env("GIT_AUTHOR_NAME", "Agent")
        .env("GIT_AUTHOR_EMAIL", "agent@forge.invalid")
        .env("GIT_COMMITTER_NAME", "Agent")
        .env("GIT_COMMITTER_EMAIL", "agent@forge.invalid")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE");
    ws.prepare_command(&mut cmd).unwrap();
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{script} in {} workspace: {}\n{}",
        ws.strategy(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const STATUS: &str = "git status --porcelain=v1 --untracked-files=all";

fn git_in_workspaces(strategy: Strategy) {
    let fx = Fixture::new(strategy);
    let user_git = fx.repo.join(".git");
    let user_git_before = tree_state(&user_git);
    let user_commit = git(&fx.repo, &["rev-parse", "HEAD"]).trim().to_owned();
    let config = fx.config();
    for mode in [BaseMode::Head, BaseMode::Worktree] {
        let base = fx.capture(mode);
        let stager = match stager(strategy, &config, &base) {
            Ok(s) => s,
            Err(reason) => return skip("git in workspaces", strategy, &reason),
        };
        let ws = stager
            .stage(&Snapshot::from(base.clone()), &format!("git-{mode}"))
            .unwrap();

        // Clean at the start, at the base commit (on the user's branch); for a `worktree` base
        // the uncommitted work is one Forge commit on top of it.
        assert_eq!(agent(&*ws, STATUS), "", "{strategy:?} {mode}");
        assert_eq!(agent(&*ws, "git branch --show-current").trim(), "main");
        let head_at = match mode {
            BaseMode::Head => "HEAD",
            BaseMode::Worktree => "HEAD~1",
        };
        assert_eq!(
            agent(&*ws, &format!("git rev-parse {head_at}")).trim(),
            user_commit
        );
        let log = agent(&*ws, "git log --format=%s");
        assert!(log.ends_with("base\n"), "{log}");
        if mode == BaseMode::Worktree {
            assert!(log.starts_with("forge: the uncommitted work"), "{log}");
            assert_eq!(
                agent(&*ws, "git show HEAD:src/lib.rs"),
                "pub fn f() {} // edited, uncommitted\n"
            );
        }

        if ws.strategy() == StagerKind::Overlay.name() {
            // The prebuilt index is trusted without an lstat of each file: fsmonitor-valid
            // entries (lowercase tags) for everything the upper directory does not hold.
            assert_eq!(agent(&*ws, "git ls-files -f src/lib.rs"), "h src/lib.rs\n");
        }

        // Exactly the agent's changes.
        agent(
            &*ws,
            "echo 'fn main() { run() }' > src/main.rs && rm README.md && echo new > new.txt \
             && echo ignored > build.log && rm -r dir",
        );
        let want = " D README.md\n D dir/a/b/deep.txt\n M src/main.rs\n?? new.txt\n";
        assert_eq!(agent(&*ws, STATUS), want, "{strategy:?} {mode}");
        assert_eq!(agent(&*ws, &format!("cd src && {STATUS}")), want);
        let diff = agent(&*ws, "git diff");
        assert!(
            diff.contains("-fn main() {}\n+fn main() { run() }\n"),
            "{diff}"
        );
        assert!(diff.contains("deleted file mode 100644"), "{diff}");

        // Commits, branches, stashes, config and hooks stay in the workspace.
        agent(
            &*ws,
            "git add -A && git commit -q -m 'agent work' && git branch agent-branch \
             && echo more >> new.txt && git stash -q && git stash pop -q \
             && git config forge.agent yes && printf '#!/bin/sh\\nexit 0\\n' > .git/hooks/pre-commit \
             && chmod +x .git/hooks/pre-commit && git tag agent-tag",
        );
        assert_eq!(agent(&*ws, STATUS), " M new.txt\n");
        assert_eq!(agent(&*ws, "git log -1 --format=%s"), "agent work\n");

        // The capture holds the files, never `.git`, and does not depend on it: a workspace
        // whose repository the agent removed is captured the same.
        agent(&*ws, "rm -rf .git");
        let changes = ws.changes().unwrap();
        let paths: Vec<&str> = changes
            .paths()
            .map(forge_staging::RepoPath::as_str)
            .collect();
        assert_eq!(
            paths,
            ["README.md", "dir/a/b/deep.txt", "new.txt", "src/main.rs"],
            "{strategy:?} {mode}"
        );
        assert!(changes.skipped().is_empty(), "{:?}", changes.skipped());
        ws.dispose().unwrap();
    }
    assert_eq!(
        tree_state(&user_git),
        user_git_before,
        "the user's .git changed ({strategy:?})"
    );
    assert_eq!(git(&fx.repo, &["rev-parse", "HEAD"]).trim(), user_commit);
    assert_eq!(git(&fx.repo, &["tag"]), "");
    assert!(
        fs::read_to_string(user_git.join("config"))
            .unwrap()
            .find("agent")
            .is_none()
    );
}

#[test]
fn git_in_workspace_of_a_delta_snapshot() {
    for strategy in Strategy::ALL {
        let fx = Fixture::new(strategy);
        let config = fx.config();
        let base = fx.capture(BaseMode::Head);
        let stager = match stager(strategy, &config, &base) {
            Ok(s) => s,
            Err(reason) => {
                skip("git in a delta workspace", strategy, &reason);
                continue;
            }
        };
        let first = stager
            .stage(&Snapshot::from(base.clone()), "first")
            .unwrap();
        agent(
            &*first,
            "echo integrated > src/lib.rs && rm README.md && echo added > added.txt",
        );
        let delta = first.changes().unwrap();
        first.dispose().unwrap();
        let snapshot =
            Snapshot::with_delta(base.clone(), &delta, &fx.store, &fx.run.join("layer-1")).unwrap();
        let ws = stager.stage(&snapshot, "second").unwrap();
        assert_eq!(agent(&*ws, STATUS), "", "{strategy:?}");
        let log = agent(&*ws, "git log --format=%s");
        assert!(
            log.starts_with(
                "forge: the changes integrated before this workspace (3 paths)\nbase\n"
            ),
            "{log}"
        );
        assert_eq!(agent(&*ws, "git show HEAD:src/lib.rs"), "integrated\n");
        if ws.strategy() == StagerKind::Overlay.name() {
            // The delta layer's index keeps the base's entries valid and adds its own.
            assert_eq!(
                agent(&*ws, "git ls-files -f src/main.rs src/lib.rs added.txt"),
                "h added.txt\nh src/lib.rs\nh src/main.rs\n"
            );
        }
        agent(&*ws, "echo mine > added.txt");
        assert_eq!(agent(&*ws, STATUS), " M added.txt\n", "{strategy:?}");
        let changes = ws.changes().unwrap();
        let paths: Vec<&str> = changes
            .paths()
            .map(forge_staging::RepoPath::as_str)
            .collect();
        assert_eq!(paths, ["added.txt"]);
        ws.dispose().unwrap();
    }
}

#[test]
fn git_in_workspace_of_a_directory_outside_git() {
    for strategy in [Strategy::OverlayDirect, Strategy::Copy] {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, run) = (tmp.path().join("plain"), tmp.path().join("run"));
        crate::common::write(&dir, "notes/a.txt", b"a\n");
        crate::common::write(&dir, "b.txt", b"b\n");
        let store = forge_staging::BlobStore::open(run.join("objects")).unwrap();
        let base = std::sync::Arc::new(
            forge_staging::BaseSnapshot::capture(
                &dir,
                BaseMode::Worktree,
                &run.join("base"),
                &store,
            )
            .unwrap(),
        );
        let config = forge_staging::StagerConfig::new(&run, store.clone());
        let stager = match stager(strategy, &config, &base) {
            Ok(s) => s,
            Err(reason) => {
                skip("git in a workspace outside git", strategy, &reason);
                continue;
            }
        };
        let ws = stager
            .stage(&Snapshot::from(base.clone()), "plain")
            .unwrap();
        assert_eq!(agent(&*ws, STATUS), "", "{strategy:?}");
        assert_eq!(
            agent(&*ws, "git log --format=%s"),
            "forge: the directory the run started from\n"
        );
        agent(&*ws, "echo c >> b.txt");
        assert_eq!(agent(&*ws, STATUS), " M b.txt\n", "{strategy:?}");
        ws.dispose().unwrap();
        assert!(!dir.join(".git").exists());
    }
}

/// A delta layer's index is built with a hook that names the step's paths in a shell script:
/// paths holding the shell's and git's special characters come through it intact, and the
/// layer's index keeps every entry valid (an overlay workspace's `git status` then looks at
/// nothing).
#[test]
fn delta_layer_paths_with_shell_characters() {
    delta_layer_with_odd_paths("layer-1");
}

/// The same where the layer's own path holds a space: git then runs the hook through `sh -c`.
#[test]
fn delta_layer_in_a_directory_with_a_space() {
    delta_layer_with_odd_paths("layer 1");
}

fn delta_layer_with_odd_paths(layer: &str) {
    let strategy = Strategy::OverlayDirect;
    let fx = Fixture::new(strategy);
    let config = fx.config();
    let base = fx.capture(BaseMode::Head);
    let stager = match stager(strategy, &config, &base) {
        Ok(s) => s,
        Err(reason) => {
            skip("a delta layer with odd paths", strategy, &reason);
            return;
        }
    };
    let first = stager
        .stage(&Snapshot::from(base.clone()), "first")
        .unwrap();
    let odd = [
        "it's a \"quoted\" $name 100% `x`.txt",
        "back\\slash; & | * ? [a] #~=.txt",
        "src/tab\there.rs",
    ];
    for name in odd {
        fs::write(first.host_path().join(name), name).unwrap();
    }
    let delta = first.changes().unwrap();
    first.dispose().unwrap();
    assert_eq!(delta.len(), odd.len());
    let snapshot =
        Snapshot::with_delta(base.clone(), &delta, &fx.store, &fx.run.join(layer)).unwrap();
    let ws = stager.stage(&snapshot, "second").unwrap();
    // The layer's index keeps the trees its `write-tree` computed, for the layer above.
    let index = fs::read(ws.host_path().join(".git/index")).unwrap();
    assert!(root_tree_cached(&index), "no valid cache-tree for the root");
    assert_eq!(agent(&*ws, STATUS), "");
    let listed = agent(&*ws, "git ls-files -f -z");
    let mut odd_seen = 0;
    for entry in listed.split('\0').filter(|e| !e.is_empty()) {
        // `h`: valid under the fsmonitor token, so git trusts it without a look.
        assert!(entry.starts_with("h "), "{entry:?} in {listed:?}");
        odd_seen += usize::from(odd.contains(&&entry[2..]));
    }
    assert_eq!(odd_seen, odd.len(), "{listed:?}");
    for name in odd {
        assert_eq!(
            agent(
                &*ws,
                &format!(
                    "git show HEAD:\"$(printf '%s' '{}')\"",
                    name.replace('\'', r"'\''")
                )
            ),
            name
        );
    }
    ws.dispose().unwrap();
}

/// Whether the index file `index` holds a valid cache-tree for its root: git's `TREE`
/// extension (signature, 4-byte size, then entries), whose first entry is the root's: an empty
/// path, its entry count (`-1` when invalid), a space, its number of subtrees.
fn root_tree_cached(index: &[u8]) -> bool {
    let Some(at) = index.windows(4).rposition(|w| w == b"TREE") else {
        return false;
    };
    let data = &index[at + 8..];
    data.first() == Some(&0) && data.get(1).is_some_and(u8::is_ascii_digit)
}
