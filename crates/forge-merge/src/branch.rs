//! Applying the integrated tree as commits on a branch `forge/<run>`, with git plumbing only: a
//! temporary index, `hash-object`, `update-index`, `write-tree`, `commit-tree`, `update-ref`.
//! The user's index, `HEAD` and working tree are never touched.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use forge_staging::{BaseMode, ChangeSet, Entry, RepoPath};
use serde::{Deserialize, Serialize};

use crate::error::IoContext as _;
use crate::{GateReport, Integration, MergeError, TaskId};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// How to write the branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchOptions {
    /// The run id: the branch is `forge/<run>`.
    pub run: String,
    /// One commit for the whole run instead of one per task.
    pub squash: bool,
    /// Overwrite the branch if it exists.
    pub replace: bool,
}

impl BranchOptions {
    /// One commit per task on `forge/<run>`, refusing to overwrite an existing branch.
    pub fn new(run: &str) -> Self {
        Self {
            run: run.to_owned(),
            squash: false,
            replace: false,
        }
    }
}

/// One commit written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchCommit {
    /// The task it holds (`None` for a squash, or the commit of the base's uncommitted
    /// changes).
    pub task: Option<TaskId>,
    /// Its object id.
    pub commit: String,
}

/// What [`apply_to_branch`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchReport {
    /// The full branch name, `forge/<run>`.
    pub branch: String,
    /// The commits, oldest first.
    pub commits: Vec<BranchCommit>,
    /// The branch's tip.
    pub head: String,
}

/// `git` in `repo`, with variables that would redirect it elsewhere removed.
fn git(repo: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("-C")
        .arg(repo)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_OBJECT_DIRECTORY")
        .env_remove("GIT_COMMON_DIR")
        .env_remove("GIT_PREFIX");
    cmd
}

/// Runs `cmd` (feeding `input`), returning its standard output.
fn run(cmd: &mut Command, input: Option<&[u8]>) -> Result<Vec<u8>, MergeError> {
    let line = describe(cmd);
    let describe = || line.clone();
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| MergeError::Command {
        command: describe(),
        message: format!("cannot start it: {e}"),
    })?;
    let output = std::thread::scope(|scope| {
        if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
            scope.spawn(move || {
                let _ = stdin.write_all(data);
            });
        }
        child.wait_with_output()
    })
    .map_err(|e| MergeError::Command {
        command: describe(),
        message: e.to_string(),
    })?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(MergeError::Command {
            command: describe(),
            message: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        })
    }
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).trim().to_owned()
}

/// A temporary index file, removed on drop.
struct TempIndex(PathBuf);

impl Drop for TempIndex {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
        let mut lock = self.0.clone().into_os_string();
        lock.push(".lock");
        let _ = fs::remove_file(lock);
    }
}

/// Writes the integrated tree of `integration` as commits on `forge/<run>` (one per integrated
/// task, or one for all with `squash`), if `gate` passed.
///
/// The first commit's parent is the base commit. When the run started from the working tree
/// and that differed from the commit, a first commit records those uncommitted changes, so the
/// tasks' commits show only the tasks' work. Contents are committed byte for byte as the tasks
/// left them (no clean filters run).
pub fn apply_to_branch(
    integration: &Integration,
    options: &BranchOptions,
    gate: &GateReport,
) -> Result<BranchReport, MergeError> {
    if !gate.passed() {
        return Err(MergeError::GateFailed {
            summary: gate.summary(),
        });
    }
    let base = integration.base();
    let repo = base.repo().to_path_buf();
    let Some(base_commit) = base.commit() else {
        return Err(MergeError::NotGit {
            path: repo,
            reason: "the run's base has no commit (not a git repository, or no commit yet)"
                .to_owned(),
        });
    };
    let (branch, refname, existing) = target(&repo, options)?;

    let git_dir = PathBuf::from(OsStr::new(&text(&run(
        git(&repo).args(["rev-parse", "--absolute-git-dir"]),
        None,
    )?)));
    let index = TempIndex(git_dir.join(format!(
        "forge-index-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )));
    let with_index = |args: &[&str]| {
        let mut cmd = git(&repo);
        cmd.env("GIT_INDEX_FILE", &index.0).args(args);
        cmd
    };
    run(&mut with_index(&["read-tree", base_commit]), None)?;
    let identity = identity_env(&repo);
    let commit_tree = |tree: &str, parent: &str, message: &str| -> Result<String, MergeError> {
        let mut cmd = git(&repo);
        cmd.args(["commit-tree", tree, "-p", parent, "-F", "-"])
            .envs(identity.iter().map(|(k, v)| (k, v)));
        Ok(text(&run(&mut cmd, Some(message.as_bytes()))?))
    };

    let mut commits = Vec::new();
    let mut parent = base_commit.to_owned();
    let mut tree = text(&run(
        git(&repo).args(["rev-parse", &format!("{base_commit}^{{tree}}")]),
        None,
    )?);
    if base.mode() == BaseMode::Worktree {
        sync_base(&repo, &index.0, &base.tree_dir())?;
        let synced = text(&run(&mut with_index(&["write-tree"]), None)?);
        if synced != tree {
            let message = format!(
                "forge({}): uncommitted changes the run started from\n\nForge-Run: {}\n",
                options.run, options.run
            );
            parent = commit_tree(&synced, &parent, &message)?;
            commits.push(BranchCommit {
                task: None,
                commit: parent.clone(),
            });
            tree = synced;
        }
    }

    let oid_len = base_commit.len();
    for (task, changes, message) in commit_plan(integration, options) {
        stage_changes(&repo, &index.0, integration, &changes, oid_len)?;
        let new_tree = text(&run(&mut with_index(&["write-tree"]), None)?);
        if new_tree == tree {
            continue;
        }
        parent = commit_tree(&new_tree, &parent, &message)?;
        commits.push(BranchCommit {
            task,
            commit: parent.clone(),
        });
        tree = new_tree;
    }

    let zero = "0".repeat(oid_len);
    let old = existing.unwrap_or(zero);
    run(
        git(&repo)
            .args(["update-ref", "-m"])
            .arg(format!("forge: apply run {}", options.run))
            .args([refname.as_str(), parent.as_str(), old.as_str()]),
        None,
    )?;
    Ok(BranchReport {
        branch,
        commits,
        head: parent,
    })
}

/// The branch name, its ref, and its current commit if it exists (refused unless `replace`).
fn target(
    repo: &Path,
    options: &BranchOptions,
) -> Result<(String, String, Option<String>), MergeError> {
    let branch = format!("forge/{}", options.run);
    if run(
        git(repo)
            .args(["check-ref-format", "--branch"])
            .arg(&branch),
        None,
    )
    .is_err()
    {
        return Err(MergeError::InvalidRun {
            run: options.run.clone(),
            reason: format!("`{branch}` is not a valid branch name"),
        });
    }
    let refname = format!("refs/heads/{branch}");
    let existing = run(
        git(repo)
            .args(["rev-parse", "--verify", "-q"])
            .arg(&refname),
        None,
    )
    .ok()
    .map(|o| text(&o));
    if existing.is_some() && !options.replace {
        return Err(MergeError::BranchExists { branch });
    }
    Ok((branch, refname, existing))
}

/// The commits to write: (task, changes, message), one per step or one squash.
fn commit_plan(
    integration: &Integration,
    options: &BranchOptions,
) -> Vec<(Option<TaskId>, ChangeSet, String)> {
    if options.squash {
        let tasks: Vec<&str> = integration
            .steps()
            .iter()
            .map(|s| s.task.as_str())
            .collect();
        let mut message = format!("forge({}): {} task(s)\n\n", options.run, tasks.len());
        for t in &tasks {
            let _ = writeln!(message, "- {t}");
        }
        let _ = write!(message, "\nForge-Run: {}\n", options.run);
        vec![(None, integration.delta(), message)]
    } else {
        integration
            .steps()
            .iter()
            .map(|s| {
                let message = format!(
                    "forge({}): {}\n\nForge-Run: {}\nForge-Task: {}\n",
                    options.run, s.task, options.run, s.task
                );
                (Some(s.task.clone()), s.changes.clone(), message)
            })
            .collect()
    }
}

/// Author and committer for commits when the repository has no identity configured.
fn identity_env(repo: &Path) -> Vec<(String, String)> {
    if run(git(repo).args(["var", "GIT_COMMITTER_IDENT"]), None).is_ok()
        && run(git(repo).args(["var", "GIT_AUTHOR_IDENT"]), None).is_ok()
    {
        return Vec::new();
    }
    [
        ("GIT_AUTHOR_NAME", "Forge"),
        ("GIT_AUTHOR_EMAIL", "forge@localhost"),
        ("GIT_COMMITTER_NAME", "Forge"),
        ("GIT_COMMITTER_EMAIL", "forge@localhost"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Makes the temporary index hold the base snapshot's tree (the working tree as the run found
/// it), keeping submodule entries, which snapshots leave out.
fn sync_base(repo: &Path, index: &Path, tree_dir: &Path) -> Result<(), MergeError> {
    let listing = run(
        git(repo)
            .env("GIT_INDEX_FILE", index)
            .args(["ls-files", "-s", "-z"]),
        None,
    )?;
    let gitlinks: Vec<u8> = listing
        .split(|&b| b == 0)
        .filter(|r| r.starts_with(b"160000 "))
        .flat_map(|r| r.iter().copied().chain([0]))
        .collect();
    run(
        git(repo)
            .env("GIT_INDEX_FILE", index)
            .arg("--work-tree")
            .arg(tree_dir)
            .args(["add", "-A", "--", "."]),
        None,
    )?;
    if !gitlinks.is_empty() {
        run(
            git(repo)
                .env("GIT_INDEX_FILE", index)
                .args(["update-index", "-z", "--index-info"]),
            Some(&gitlinks),
        )?;
    }
    Ok(())
}

/// Writes the blobs of `changes` into the repository and records them in the temporary index
/// (deletions first, so a file can replace a directory).
fn stage_changes(
    repo: &Path,
    index: &Path,
    integration: &Integration,
    changes: &ChangeSet,
    oid_len: usize,
) -> Result<(), MergeError> {
    let store = integration.store();
    let scratch = std::env::temp_dir().join(format!(
        "forge-branch-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&scratch).ctx("create directory", &scratch)?;
    let result = (|| {
        // The files to hash: blobs straight from the object store (its documented layout),
        // symlink targets from scratch files.
        let mut sources: Vec<(RepoPath, &'static str, PathBuf)> = Vec::new();
        for (path, change) in changes {
            let Some(after) = change.after() else {
                continue;
            };
            let (mode, file) = match after {
                Entry::File {
                    hash, executable, ..
                } => {
                    let hex = hash.to_hex();
                    let blob = store.dir().join(&hex[..2]).join(&hex[2..]);
                    let file = if blob.is_file() {
                        blob
                    } else {
                        let copy = scratch.join(format!("b{}", sources.len()));
                        store.copy_to(hash, &copy, false)?;
                        copy
                    };
                    (if *executable { "100755" } else { "100644" }, file)
                }
                Entry::Symlink { target, .. } => {
                    let file = scratch.join(format!("l{}", sources.len()));
                    fs::write(&file, target.as_bytes()).ctx("write", &file)?;
                    ("120000", file)
                }
            };
            sources.push((path.clone(), mode, file));
        }
        let mut paths = Vec::new();
        for (_, _, file) in &sources {
            paths.extend_from_slice(file.as_os_str().as_encoded_bytes());
            paths.push(b'\n');
        }
        let oids = if sources.is_empty() {
            Vec::new()
        } else {
            run(
                git(repo).args(["hash-object", "-w", "--no-filters", "--stdin-paths"]),
                Some(&paths),
            )?
        };
        let oids: Vec<&[u8]> = oids
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        let mut info = Vec::new();
        let zero = "0".repeat(oid_len);
        for (path, change) in changes {
            if change.after().is_none() {
                info.extend_from_slice(format!("0 {zero}\t{path}").as_bytes());
                info.push(0);
            }
        }
        for ((path, mode, _), oid) in sources.iter().zip(oids) {
            info.extend_from_slice(format!("{mode} ").as_bytes());
            info.extend_from_slice(oid);
            info.extend_from_slice(format!("\t{path}").as_bytes());
            info.push(0);
        }
        run(
            git(repo)
                .env("GIT_INDEX_FILE", index)
                .args(["update-index", "-z", "--index-info"]),
            Some(&info),
        )?;
        Ok(())
    })();
    let _ = fs::remove_dir_all(&scratch);
    result
}

/// Pushes branch `branch` of the repository at `repo` to `remote` (a remote's name, a URL or a
/// path), creating it there or fast-forwarding it; nothing is forced. Git never prompts for
/// credentials here (`GIT_TERMINAL_PROMPT=0`): a push that needs them fails with git's message.
pub fn push_branch(repo: &Path, branch: &str, remote: &str) -> Result<(), MergeError> {
    if remote.is_empty() || remote.starts_with('-') {
        return Err(MergeError::Command {
            command: format!("git push {remote}"),
            message: format!("`{remote}` is not a remote (give a remote's name, a URL or a path)"),
        });
    }
    let refspec = format!("refs/heads/{branch}:refs/heads/{branch}");
    run(
        git(repo)
            .env("GIT_TERMINAL_PROMPT", "0")
            .args(["push", "--quiet", remote, &refspec]),
        None,
    )?;
    Ok(())
}

/// Opens a pull request for the pushed branch `branch` with the `gh` command-line tool (`gh pr create`
/// in `repo`, against the repository's default branch), titled `title`, with `body` as its
/// description. Returns what `gh` printed (the pull request's address).
pub fn open_pull_request(
    repo: &Path,
    branch: &str,
    title: &str,
    body: &str,
) -> Result<String, MergeError> {
    let mut cmd = Command::new("gh");
    cmd.current_dir(repo).env("GH_PROMPT_DISABLED", "1").args([
        "pr",
        "create",
        "--head",
        branch,
        "--title",
        title,
        "--body-file",
        "-",
    ]);
    Ok(text(&run(&mut cmd, Some(body.as_bytes()))?))
}

/// The command line, for error messages.
pub(crate) fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(std::ffi::OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}
