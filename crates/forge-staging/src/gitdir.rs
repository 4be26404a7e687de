//! The git repository every workspace holds, so that `git status`, `git diff` and `git log`
//! work inside it and show the agent's own changes.
//!
//! Each snapshot (the base, and each delta layer) carries a small *git layer*: a directory
//! whose only entry is a `.git` directory made for workspaces staged from that snapshot:
//!
//! - `objects/info/alternates` names the user's object directory (for a delta layer: the base
//!   layer's, which names the user's), so history is shared read-only and nothing is copied.
//!   Objects the agent writes (commits, stashes) land in the workspace's own `objects/`.
//! - `config` includes the user's repository configuration (filters, aliases, identity) and
//!   then sets what a workspace needs: `core.checkStat=minimal` and `core.trustctime=false`,
//!   because an overlay (or a copy) shows other inode, device and ctime values than the files
//!   the index was built from; Forge's fsmonitor hook (below); no split index, untracked
//!   cache or automatic gc.
//! - `HEAD` is on the user's branch (a copy of the ref, private to the workspace) or detached,
//!   at the base commit. When the snapshot holds more than that commit (a `worktree` base's
//!   uncommitted work, or changes integrated earlier in the run), `HEAD` is one Forge commit on
//!   top of the base commit holding exactly the snapshot, so that `git status` starts clean and
//!   then lists only the agent's changes, and `git log` shows the user's history below it.
//! - `index` is built once per snapshot with the stat data of the snapshot's files, so a fresh
//!   workspace's `git status` hashes nothing.
//! - The user's `info/exclude` and `shallow` files and their branches, tags and remote refs
//!   (as of the snapshot) are copied in; the user's hooks are not (`hooks/` starts empty).
//! - An fsmonitor hook (`core.fsmonitor`, protocol 2) spares `git status` even the `lstat` of
//!   every file, which on a fresh overlay mount costs an overlay inode per file: the index is
//!   written with every entry marked valid under a fixed token, and in an overlay workspace the
//!   hook reports as changed exactly what the upper directory holds (all the agent has written
//!   or deleted since the snapshot), also inside an attempt's view of the repository, where the
//!   workspace shows at the user's repository path and [`WORKSPACE_HOST_VAR`] says where it is
//!   outside. Anywhere else (another strategy, a moved workspace, an
//!   unexpected token, fuse-overlayfs whiteouts) it reports everything as changed, so git
//!   checks every file as usual: the hook can make git slower, never wrong.
//!
//! The commit-tree, update-index and checkout commands that build a layer run with the layer
//! as `GIT_DIR`; against the user's repository Forge only reads (`rev-parse`, `for-each-ref`,
//! and the base capture's checkout through a temporary index), so the user's `.git` is never
//! written.
//!
//! Overlay workspaces stack the git layer on top of the snapshot's layers (free per workspace);
//! the other strategies copy it in ([`install`]), with their own `objects/` pointing at the
//! layer's.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::IoContext;
use crate::git::{git, run};
use crate::{ChangeSet, RepoPath, StagingError};

/// The directory of a snapshot (or delta layer) that holds its git layer.
pub(crate) const LAYER: &str = "git";

/// Settings every workspace repository has, after the user's configuration.
const WORKSPACE_CONFIG: &str = "\
[core]
\tcheckStat = minimal
\ttrustctime = false
\tfsmonitor = sh .git/forge-fsmonitor
\tuntrackedCache = false
\tsplitIndex = false
[gc]
\tauto = 0
[maintenance]
\tauto = false
";

/// The fsmonitor hook (see the module documentation). git runs it from the top of the work
/// tree; an overlay workspace is `<slot>/merged` beside `<slot>/upper` and `<slot>/work`. In an
/// attempt's view the work tree shows at the user's repository path instead, and
/// [`WORKSPACE_HOST_VAR`] names where it is outside the view: the hook takes that path only when
/// it is the very directory git runs it in (`-ef`: same device and inode).
const FSMONITOR_HOOK: &str = r#"#!/bin/sh
# git's fsmonitor hook (protocol 2) for a Forge workspace. In an overlay workspace everything
# written or deleted since the snapshot is in the upper directory: those paths are reported.
# Anywhere else, or if unsure, it reports everything ("/"), and git checks every file.
token=forge-snapshot
ws=$PWD
if [ "${ws##*/}" != merged ] && [ -n "$FORGE_WORKSPACE_HOST" ] && [ . -ef "$FORGE_WORKSPACE_HOST" ]; then
    ws=$FORGE_WORKSPACE_HOST
fi
if [ "$1" != 2 ] || [ "$2" != "$token" ] || [ "${ws##*/}" != merged ] || [ ! -d "$ws/../work" ] \
    || [ ! -d "$ws/../upper" ] || ! cd "$ws/../upper" \
    || [ -n "$(find . -name '.wh.*' -print -quit)" ]; then
    printf '%s\0/\0' "$token"
    exit 0
fi
printf '%s\0' "$token"
exec find . -mindepth 1 -path ./.git -prune -o -printf '%P\0%P/\0'
"#;

/// The variable that names, inside an attempt's view of the repository (where the workspace
/// shows at the user's repository path), the workspace's path outside the view: the fsmonitor
/// hook finds the overlay's upper directory beside it.
pub const WORKSPACE_HOST_VAR: &str = "FORGE_WORKSPACE_HOST";

/// The fsmonitor hook a delta layer's index is built with: the step's paths (each also as a
/// directory) are all that may have changed since the index below. They are written into the
/// hook itself, as the arguments of one `printf` (a shell builtin), so that building the index
/// runs one shell and no other program (see [`hook_setting`]).
fn build_hook(changed: &ChangeSet) -> String {
    let quote = |p: &str| format!("'{}'", p.replace('\'', r"'\''"));
    let mut hook = String::from(
        "#!/bin/sh\n# Forge: what may have changed since the index below (fsmonitor protocol 2).\n\
         printf '%s\\0' forge-snapshot",
    );
    for path in changed.paths() {
        let path = quote(path.as_str());
        hook.push_str(" \\\n    ");
        hook.push_str(&path);
        hook.push(' ');
        hook.push_str(&path[..path.len() - 1]);
        hook.push_str("/'");
    }
    hook.push('\n');
    hook
}

/// Characters for which git runs a hook command through `sh -c` rather than directly
/// (`prepare_shell_cmd` in git's `run-command.c`).
const SHELL_METACHARACTERS: &str = "|&;<>()$`\\\"' \t\n*?[#~=%";

/// `core.fsmonitor` running the executable hook `hook`: its path alone, which git executes
/// directly (one process, the hook's shell), unless the path holds a character that makes git
/// go through `sh -c` anyway; then [`fsmonitor_setting`]'s form.
fn hook_setting(hook: &Path) -> Result<String, StagingError> {
    let hook = std::path::absolute(hook).ctx("resolve", hook)?;
    match hook.to_str() {
        Some(path) if !path.contains(|c| SHELL_METACHARACTERS.contains(c)) => {
            Ok(format!("core.fsmonitor={path}"))
        }
        _ => fsmonitor_setting(&hook),
    }
}

/// Settings for the commands Forge runs against the user's repository while building a layer:
/// nothing may be written into the user's `.git` (a split index would be).
pub(crate) const READ_ONLY_USER: [&str; 6] = [
    "-c",
    "core.splitIndex=false",
    "-c",
    "core.untrackedCache=false",
    "-c",
    "core.fsmonitor=false",
];

/// What the base snapshot's git layer is built from.
pub(crate) struct BaseSpec<'a> {
    /// The user's repository (top level), when the base is in git.
    pub(crate) repo: Option<&'a Path>,
    /// The base commit, when there is one.
    pub(crate) commit: Option<&'a str>,
    /// The snapshot's files.
    pub(crate) tree: &'a Path,
    /// An index of `commit` with the stat data of `tree`, when one was made while checking out.
    pub(crate) index: Option<PathBuf>,
    /// Paths where `tree` differs from `commit` (every path when there is no commit).
    pub(crate) off_commit: Vec<&'a str>,
}

/// A `git` command on the repository `dot` (a `.git` directory), with `work_tree` as its
/// working tree.
fn private(dot: &Path, work_tree: &Path) -> Command {
    let mut cmd = git(work_tree);
    cmd.env("GIT_DIR", dot)
        .env("GIT_WORK_TREE", work_tree)
        .args(READ_ONLY_USER);
    cmd
}

/// Runs `cmd` with `input` on its standard input.
fn run_with_input(cmd: &mut Command, input: &[u8]) -> Result<Vec<u8>, StagingError> {
    let command = crate::git::describe(cmd);
    let failed = |message: String| StagingError::Command {
        command: command.clone(),
        message,
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("cannot start it: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input)
            .map_err(|e| failed(format!("cannot write its input: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| failed(format!("cannot wait for it: {e}")))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(failed(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).trim_end().to_owned()
}

/// A path of the user's repository's git directory (`objects`, `config`, `shallow`, …),
/// absolute.
fn user_git_path(repo: &Path, name: &str) -> Result<PathBuf, StagingError> {
    // Relative to `repo` unless absolute (`--path-format` needs git 2.31).
    let out = run(git(repo).args(["rev-parse", "--git-path", name]))?;
    Ok(repo.join(text(&out)))
}

/// A value for a git configuration file, quoted.
fn config_value(path: &Path) -> String {
    let mut out = String::from("\"");
    for c in path.to_string_lossy().chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Builds `<out>/.git` for the base snapshot (see the module documentation).
pub(crate) fn build_base(spec: &BaseSpec<'_>, out: &Path) -> Result<(), StagingError> {
    let dot = out.join(".git");
    fs::create_dir_all(out).ctx("create directory", out)?;
    // Only a SHA-256 repository needs saying so (and a git that knows about it).
    let format = spec
        .repo
        .and_then(|repo| run(git(repo).args(["rev-parse", "--show-object-format"])).ok())
        .map(|out| text(&out))
        .filter(|f| f != "sha1");
    let mut init = git(out);
    init.args(["init", "--quiet", "--template="]);
    if let Some(format) = format {
        init.arg(format!("--object-format={format}"));
    }
    run(init.arg(out))?;
    for dir in ["hooks", "info"] {
        fs::create_dir_all(dot.join(dir)).ctx("create directory", &dot.join(dir))?;
    }
    let hook = dot.join("forge-fsmonitor");
    fs::write(&hook, FSMONITOR_HOOK).ctx("write", &hook)?;

    let mut config = fs::read_to_string(dot.join("config")).ctx("read", &dot.join("config"))?;
    if let Some(repo) = spec.repo {
        // `out` is `<snapshot>.partial/git`, renamed to `<snapshot>/git` once built.
        let partial = out.parent().unwrap_or(out);
        let name = partial.file_name().unwrap_or_default().to_string_lossy();
        let snapshot = partial.with_file_name(name.strip_suffix(".partial").unwrap_or(&name));
        link_user_repo(&dot, repo, (partial, &snapshot), &mut config)?;
    }
    config.push_str(WORKSPACE_CONFIG);
    fs::write(dot.join("config"), config).ctx("write", &dot.join("config"))?;
    build_index(&dot, spec)?;

    let head = match spec.commit {
        Some(commit) if spec.off_commit.is_empty() => commit.to_owned(),
        Some(_) => commit_snapshot(
            &dot,
            spec.tree,
            spec.commit,
            "forge: the uncommitted work the run started from",
        )?,
        None => commit_snapshot(
            &dot,
            spec.tree,
            None,
            "forge: the directory the run started from",
        )?,
    };
    let branch = match spec.repo {
        Some(repo) if spec.commit.is_some() => run(git(repo).args(["symbolic-ref", "-q", "HEAD"]))
            .ok()
            .map(|o| text(&o)),
        _ => None,
    };
    match branch {
        Some(branch) => {
            run(private(&dot, spec.tree).args(["update-ref", &branch, &head]))?;
            run(private(&dot, spec.tree).args(["symbolic-ref", "HEAD", &branch]))?;
        }
        None => {
            run(private(&dot, spec.tree).args(["update-ref", "--no-deref", "HEAD", &head]))?;
        }
    }
    Ok(())
}

/// Where a workspace repository reaches the user's git directory, relative to the base
/// snapshot's directory ([`crate::BaseSnapshot::user_git_link`]): a symbolic link to that
/// directory. Workspace repositories name the user's objects (alternates) and configuration
/// (include) both directly and through this path, so that they still find them where the
/// repository path shows the workspace itself (an attempt's private mount namespace, which
/// mounts the user's git directory read-only at this path: `forge_exec::process::RepoView`).
pub const USER_GIT_LINK: &str = "user/git";

/// Makes `<snapshot>/`[`USER_GIT_LINK`] (the snapshot being built in `partial`, to be renamed
/// to `snapshot`) a symbolic link to the user's (common) git directory; returns the link's
/// final path.
fn link_user_git(repo: &Path, partial: &Path, snapshot: &Path) -> Result<PathBuf, StagingError> {
    let out = run(git(repo).args(["rev-parse", "--git-common-dir"]))?;
    let common = repo.join(text(&out));
    let common = fs::canonicalize(&common).ctx("resolve", &common)?;
    let link = partial.join(USER_GIT_LINK);
    let dir = link.parent().unwrap_or(partial);
    fs::create_dir_all(dir).ctx("create directory", dir)?;
    std::os::unix::fs::symlink(&common, &link).ctx("create the link", &link)?;
    Ok(snapshot.join(USER_GIT_LINK))
}

/// Points the repository `dot` at the user's repository `repo`: its objects (alternates), its
/// configuration (included into `config`), its excludes, shallow boundary, branches and tags.
fn link_user_repo(
    dot: &Path,
    repo: &Path,
    snapshot: (&Path, &Path),
    config: &mut String,
) -> Result<(), StagingError> {
    let link = link_user_git(repo, snapshot.0, snapshot.1)?;
    // Through the link only: where the repository path shows the workspace, `<repo>/.git/config`
    // is the workspace's own, and including it would include itself.
    config.push_str("[include]\n\tpath = ");
    config.push_str(&config_value(&link.join("config")));
    config.push('\n');
    let objects = user_git_path(repo, "objects")?;
    let alternates = dot.join("objects/info/alternates");
    fs::create_dir_all(dot.join("objects/info")).ctx("create directory", dot)?;
    // Both: git skips the one naming the workspace's own objects (inside an attempt's view) and
    // the duplicate (outside).
    fs::write(
        &alternates,
        format!(
            "{}\n{}\n",
            objects.display(),
            link.join("objects").display()
        ),
    )
    .ctx("write", &alternates)?;
    for name in ["info/exclude", "shallow"] {
        let from = user_git_path(repo, name)?;
        if from.is_file() {
            let to = dot.join(name);
            fs::create_dir_all(to.parent().unwrap_or(dot)).ctx("create directory", &to)?;
            fs::copy(&from, &to).ctx("copy into", &to)?;
        }
    }
    // The user's branches and tags, as they are now, private to the workspace.
    let refs = run(git(repo).args([
        "for-each-ref",
        "--format=%(objectname) %(refname)",
        "refs/heads",
        "refs/tags",
        "refs/remotes",
    ]))?;
    let packed = dot.join("packed-refs");
    fs::write(&packed, refs).ctx("write", &packed)?;
    Ok(())
}

/// The index of the snapshot in `dot`: the checkout's when there is one, else read from the
/// commit; then the paths off the commit; then stat data and fsmonitor validity for all.
fn build_index(dot: &Path, spec: &BaseSpec<'_>) -> Result<(), StagingError> {
    let dot = dot.to_path_buf();
    let index = dot.join("index");
    match &spec.index {
        Some(ready) => fs::rename(ready, &index).ctx("move the index to", &index)?,
        None => {
            let mut read = private(&dot, spec.tree);
            read.arg("read-tree");
            match spec.commit {
                Some(commit) => read.arg(commit),
                None => read.arg("--empty"),
            };
            run(&mut read)?;
        }
    }
    if !spec.off_commit.is_empty() {
        let list: Vec<u8> = spec
            .off_commit
            .iter()
            .flat_map(|p| p.bytes().chain([0]))
            .collect();
        run_with_input(
            private(&dot, spec.tree).args([
                "update-index",
                "--add",
                "--remove",
                "--replace",
                "-z",
                "--stdin",
            ]),
            &list,
        )?;
    }
    if spec.index.is_none() {
        // Stat data for every entry read from the commit (this hashes each file once).
        run(private(&dot, spec.tree).args(["update-index", "-q", "--refresh"]))?;
    }
    mark_valid(&dot, spec.tree, &dot.join("forge-fsmonitor"))
}

/// Writes the index of `dot` with the fsmonitor extension, every entry whose stat data matches
/// the file in `tree` marked valid under the token `forge-snapshot`, as the fsmonitor `hook`
/// asks (the workspace hook, outside an overlay, asks for every entry to be checked).
fn mark_valid(dot: &Path, tree: &Path, hook: &Path) -> Result<(), StagingError> {
    let mut cmd = private(dot, tree);
    cmd.arg("-c")
        .arg(fsmonitor_setting(hook)?)
        .args(["update-index", "-q", "--refresh"]);
    run(&mut cmd).map(drop)
}

/// `core.fsmonitor` running the hook script `hook`.
fn fsmonitor_setting(hook: &Path) -> Result<String, StagingError> {
    let hook = std::path::absolute(hook).ctx("resolve", hook)?;
    Ok(format!(
        "core.fsmonitor=sh '{}'",
        hook.to_string_lossy().replace('\'', r"'\''")
    ))
}

/// Commits the index of `dot` on top of `parent` (if any) unless it holds `parent`'s tree;
/// returns the commit `HEAD` should be at.
fn commit_snapshot(
    dot: &Path,
    tree: &Path,
    parent: Option<&str>,
    message: &str,
) -> Result<String, StagingError> {
    commit_in(
        &mut || private(dot, tree),
        dot,
        parent.map(|p| (p, None)),
        message,
        false,
    )
}

/// [`commit_snapshot`] with the git commands `git` makes. With `in_place`, `write-tree` works
/// on the index itself and stores the trees it computed there (its cache-tree extension), so
/// that the next layer's `write-tree` recomputes only what that layer's step changed; `git`
/// must then run the commands with fsmonitor on, or the rewritten index would lose the
/// validity of its entries.
fn commit_in(
    git: &mut dyn FnMut() -> Command,
    dot: &Path,
    parent: Option<(&str, Option<&str>)>,
    message: &str,
    in_place: bool,
) -> Result<String, StagingError> {
    let written = if in_place {
        text(&run(git().arg("write-tree"))?)
    } else {
        // On a copy of the index: `write-tree` may rewrite the index it reads, which (with
        // fsmonitor off) would drop the validity `mark_valid` records.
        let copy = dot.join("index.forge-write-tree");
        fs::copy(dot.join("index"), &copy).ctx("copy into", &copy)?;
        let written = run(git().env("GIT_INDEX_FILE", &copy).arg("write-tree"));
        fs::remove_file(&copy).ctx("remove", &copy)?;
        text(&written?)
    };
    if let Some((parent, known)) = parent {
        let parent_tree = match known {
            Some(tree) => tree.to_owned(),
            None => text(&run(
                git().args(["rev-parse", &format!("{parent}^{{tree}}")])
            )?),
        };
        if parent_tree == written {
            return Ok(parent.to_owned());
        }
    }
    let mut cmd = git();
    cmd.args(["commit-tree", "--no-gpg-sign", &written, "-m", message])
        .env("GIT_AUTHOR_NAME", "Forge")
        .env("GIT_AUTHOR_EMAIL", "forge@localhost")
        .env("GIT_COMMITTER_NAME", "Forge")
        .env("GIT_COMMITTER_EMAIL", "forge@localhost");
    if let Some((parent, _)) = parent {
        cmd.args(["-p", parent]);
    }
    Ok(text(&run(&mut cmd)?))
}

/// What a delta layer's git layer is built from.
pub(crate) struct DeltaSpec<'a> {
    /// The git layer of the snapshot below (the base's, or the previous delta layer's).
    pub(crate) below: &'a Path,
    /// The new layer's files.
    pub(crate) tree: &'a Path,
    /// The paths that differ from the snapshot below, or whose file in `tree` is new.
    pub(crate) changed: &'a ChangeSet,
    /// How many paths the whole delta over the base holds (for the commit message).
    pub(crate) total: usize,
    /// Where to build the layer (`<out>/.git`).
    pub(crate) out: &'a Path,
    /// The chain's objects directory (absolute, as it will be found once the layer is in
    /// place), which the layer's repository uses as its alternate.
    pub(crate) objects: &'a Path,
    /// Where that directory is while the layer is built (the first layer of a chain creates it
    /// inside its partial directory).
    pub(crate) objects_now: &'a Path,
    /// The commit the snapshot's commit sits on and its tree, when known (else the `HEAD` of
    /// `below`).
    pub(crate) parent: Option<(&'a str, &'a str)>,
}

/// The commit `HEAD` of the git layer `layer` is at, and its tree.
pub(crate) fn head(layer: &Path) -> Result<(String, String), StagingError> {
    spawn_head(layer)?.finish()
}

/// `git rev-parse HEAD HEAD^{tree}` in a git layer, running.
struct HeadLookup {
    child: std::process::Child,
    command: String,
}

/// Starts looking up the commit `HEAD` of the git layer `layer` is at, and its tree.
fn spawn_head(layer: &Path) -> Result<HeadLookup, StagingError> {
    let mut cmd = private(&layer.join(".git"), layer);
    cmd.args(["rev-parse", "HEAD", "HEAD^{tree}"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let command = crate::git::describe(&cmd);
    let child = cmd.spawn().map_err(|e| StagingError::Command {
        command: command.clone(),
        message: format!("cannot start it: {e}"),
    })?;
    Ok(HeadLookup { child, command })
}

impl HeadLookup {
    /// Waits for the lookup: the commit and its tree.
    fn finish(self) -> Result<(String, String), StagingError> {
        let failed = |message: String| StagingError::Command {
            command: self.command.clone(),
            message,
        };
        let out = self
            .child
            .wait_with_output()
            .map_err(|e| failed(format!("cannot wait for it: {e}")))?;
        if !out.status.success() {
            return Err(failed(format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let out = text(&out.stdout);
        match out.split_once('\n') {
            Some((commit, tree)) => Ok((commit.to_owned(), tree.trim().to_owned())),
            None => Err(failed(format!("unexpected output `{out}`"))),
        }
    }
}

/// glibc's allocator settings for the git commands that write objects: git starts a zlib
/// stream (about 260 kilobytes) per object it writes, and with glibc's default thresholds
/// each stream's memory is taken from the kernel and given back, so every object costs ~60
/// page faults of fresh, zeroed memory (half of `update-index`'s and `write-tree`'s time for a
/// 10,000-entry index and 150 objects). Keeping freed memory in the process lets the next
/// stream reuse it. Appended to the user's own `GLIBC_TUNABLES` (the later setting of a
/// tunable wins); other C libraries ignore the variable.
const KEEP_HEAP_TUNABLES: &str =
    "glibc.malloc.trim_threshold=268435456:glibc.malloc.mmap_threshold=33554432";

/// Sets [`KEEP_HEAP_TUNABLES`] for `cmd`.
fn keep_heap(cmd: &mut Command) {
    cmd.env(
        "GLIBC_TUNABLES",
        with_keep_heap(std::env::var_os("GLIBC_TUNABLES")),
    );
}

/// `GLIBC_TUNABLES` holding `own` (the user's, if any) and then [`KEEP_HEAP_TUNABLES`].
fn with_keep_heap(own: Option<std::ffi::OsString>) -> std::ffi::OsString {
    match own {
        Some(mut all) if !all.is_empty() => {
            all.push(":");
            all.push(KEEP_HEAP_TUNABLES);
            all
        }
        _ => KEEP_HEAP_TUNABLES.into(),
    }
}

/// Builds `<out>/.git` for a delta layer: the repository below with the changed paths (whose
/// files are in the layer's tree) written into its index and the snapshot committed on top of
/// the parent commit. Returns that parent and its tree.
///
/// Three git commands: `update-index` (plus one for deletions), `write-tree`, `commit-tree`;
/// `update-index` runs the build hook ([`build_hook`]), one shell started directly by git;
/// `write-tree` keeps the trees it computed in the layer's index, so that the layer above
/// recomputes only the trees its own step changed. Entries `update-index --add` writes are fsmonitor-valid already (git marks a regular file
/// valid when it records its stat data with fsmonitor on), and the ref is written directly.
/// The first layer of a chain also looks up the base layer's `HEAD` (`rev-parse`, while
/// `update-index` runs) and starts from a copy of the base's index ([`fresh_index`]); the
/// commands that write objects run with [`KEEP_HEAP_TUNABLES`].
pub(crate) fn build_delta(spec: &DeltaSpec<'_>) -> Result<(String, String), StagingError> {
    let (out, tree) = (spec.out, spec.tree);
    let dot = out.join(".git");
    fs::create_dir_all(out).ctx("create directory", out)?;
    let below = spec.below.join(".git");
    // Hard links, not copies (the index alone is ~100 bytes per path): git replaces the index
    // and refs it writes (a new file renamed over the old name), and nothing here writes into a
    // file it did not create, so the layer below never changes.
    copy_dir(&below, &dot, true, true)?;
    if spec.parent.is_none() {
        fresh_index(&below, &dot)?;
    }
    if !spec.objects_now.exists() {
        // A new chain: its objects directory falls back on the objects below (the base
        // layer's, which fall back on the user's).
        let info = spec.objects_now.join("info");
        fs::create_dir_all(&info).ctx("create directory", &info)?;
        let below_objects = std::path::absolute(below.join("objects")).ctx("resolve", &below)?;
        let alternates = info.join("alternates");
        fs::write(&alternates, format!("{}\n", below_objects.display()))
            .ctx("write", &alternates)?;
    }
    let info = dot.join("objects/info");
    fs::create_dir_all(&info).ctx("create directory", &info)?;
    fs::create_dir_all(dot.join("objects/pack")).ctx("create directory", &dot)?;
    let alternates = info.join("alternates");
    fs::write(&alternates, format!("{}\n", spec.objects.display())).ctx("write", &alternates)?;
    // Objects go to the chain's directory (a layer's own `objects/` stays empty).
    let git = || {
        let mut cmd = private(&dot, tree);
        cmd.env("GIT_OBJECT_DIRECTORY", spec.objects_now);
        keep_heap(&mut cmd);
        cmd
    };
    // While the changes are written into the index, git is told (by a hook that lists them)
    // that only those paths may have changed: the other entries keep their validity.
    let hook = out.with_file_name("fsmonitor-build.sh");
    fs::write(&hook, build_hook(spec.changed)).ctx("write", &hook)?;
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o755)).ctx("make executable", &hook)?;
    let setting = hook_setting(&hook)?;
    // A new chain's parent is the base layer's `HEAD`: looked up while the index is written.
    let lookup = match spec.parent {
        Some(_) => None,
        None => Some(spawn_head(spec.below)?),
    };
    let updated = update_index(
        &mut || {
            let mut cmd = git();
            cmd.arg("-c").arg(&setting);
            cmd
        },
        spec.changed,
    );
    // Waited for even when the index could not be written: no process is left behind.
    let found = lookup.map(HeadLookup::finish).transpose();
    updated?;
    let (parent, parent_tree) = match spec.parent {
        Some((parent, tree)) => (parent.to_owned(), tree.to_owned()),
        None => found?.map_or_else(|| head(spec.below), Ok)?,
    };
    let head = commit_in(
        &mut || {
            let mut cmd = git();
            cmd.arg("-c").arg(&setting);
            cmd
        },
        &dot,
        Some((&parent, Some(&parent_tree))),
        &format!(
            "forge: the changes integrated before this workspace ({} paths)",
            spec.total
        ),
        true,
    )?;
    fs::remove_file(&hook).ctx("remove", &hook)?;
    set_head(&dot, &head)?;
    Ok((parent, parent_tree))
}

/// Writes `changed` into the index with the git commands `git` makes: the deletions, then the
/// paths whose files (in the work tree) are new.
fn update_index(git: &mut dyn FnMut() -> Command, changed: &ChangeSet) -> Result<(), StagingError> {
    let list = |deleted: bool| -> Vec<u8> {
        changed
            .iter()
            .filter(|(_, c)| c.after().is_none() == deleted)
            .flat_map(|(p, _): (&RepoPath, _)| p.as_str().bytes().chain([0]))
            .collect()
    };
    let (gone, written) = (list(true), list(false));
    if !gone.is_empty() {
        run_with_input(
            git().args(["update-index", "--force-remove", "-z", "--stdin"]),
            &gone,
        )?;
    }
    if !written.is_empty() {
        run_with_input(
            git().args(["update-index", "--add", "--replace", "-z", "--stdin"]),
            &written,
        )?;
    }
    Ok(())
}

/// Replaces the index of the new layer `dot` (a hard link of the index of `below`, the base's
/// layer) with a copy written now.
///
/// git takes an index entry whose file was modified in the same second as the index file or
/// later as *racily clean*, and every time it writes the index it looks at that file again
/// (an `lstat`, and a read when it exists). The base's index is written right after its
/// checkout, within the same second as most of its files (all of them in a small repository),
/// and a link keeps its time, so each git command that builds the layer would look for
/// thousands of files that are not in the layer's tree (~15 ms for 10,000 entries). A copy is
/// as new as the layer. No entry becomes clean by mistake: the base's files never change once
/// it is captured.
fn fresh_index(below: &Path, dot: &Path) -> Result<(), StagingError> {
    let (from, to) = (below.join("index"), dot.join("index"));
    match fs::remove_file(&to) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StagingError::io("remove", &to, e)),
    }
    if from.is_file() {
        fs::copy(&from, &to).ctx("copy into", &to)?;
    }
    Ok(())
}

/// Points `HEAD` of the repository `dot` (or the branch it is on) at `commit`, as
/// `git update-ref` would, without its reflog.
fn set_head(dot: &Path, commit: &str) -> Result<(), StagingError> {
    let head = dot.join("HEAD");
    let text = fs::read_to_string(&head).ctx("read", &head)?;
    let target = match text.trim_end().strip_prefix("ref: ") {
        Some(name) if name.starts_with("refs/") && !name.contains("..") => dot.join(name),
        _ => head,
    };
    if let Some(dir) = target.parent() {
        fs::create_dir_all(dir).ctx("create directory", dir)?;
    }
    let mut tmp = target.as_os_str().to_owned();
    tmp.push(".forge-tmp");
    let tmp = PathBuf::from(tmp);
    fs::write(&tmp, format!("{commit}\n")).ctx("write", &tmp)?;
    fs::rename(&tmp, &target)
        .ctx("move into place", &target)
        .map_err(Into::into)
}

/// Makes `dest` (a new `.git` directory) a copy of the repository `src` (a git layer's
/// `.git`), sharing its objects through `alternates` instead of copying them.
pub(crate) fn install(src: &Path, dest: &Path) -> Result<(), StagingError> {
    copy_dir(src, dest, true, false)?;
    let info = dest.join("objects/info");
    fs::create_dir_all(&info).ctx("create directory", &info)?;
    fs::create_dir_all(dest.join("objects/pack")).ctx("create directory", dest)?;
    let alternates = info.join("alternates");
    let objects = std::path::absolute(src.join("objects")).ctx("resolve", src)?;
    fs::write(&alternates, format!("{}\n", objects.display()))
        .ctx("write", &alternates)
        .map_err(Into::into)
}

/// Copies the directory `src` to the new directory `dest` (without `objects/` at the top),
/// hard-linking its files when `link` says so (copying those a link fails for).
fn copy_dir(src: &Path, dest: &Path, top: bool, link: bool) -> Result<(), StagingError> {
    fs::create_dir(dest).ctx("create directory", dest)?;
    for entry in fs::read_dir(src).ctx("list", src)? {
        let entry = entry.ctx("list", src)?;
        if top && entry.file_name() == "objects" {
            continue;
        }
        let (from, to) = (entry.path(), dest.join(entry.file_name()));
        let ft = entry.file_type().ctx("stat", &from)?;
        if ft.is_dir() {
            copy_dir(&from, &to, false, link)?;
        } else if ft.is_file() && !(link && fs::hard_link(&from, &to).is_ok()) {
            fs::copy(&from, &to).ctx("copy into", &to)?;
        }
    }
    Ok(())
}

/// Refreshes the stat data of the workspace repository's index after Forge wrote files in it.
pub(crate) fn refresh(work_tree: &Path) -> Result<(), StagingError> {
    run(private(&work_tree.join(".git"), work_tree).args(["update-index", "-q", "--refresh"]))
        .map(drop)
}

/// Checks out every file of the workspace repository's index into `work_tree`, recording the
/// files' stat data in the index.
pub(crate) fn checkout(work_tree: &Path) -> Result<(), StagingError> {
    run(private(&work_tree.join(".git"), work_tree).args([
        "checkout-index",
        "--all",
        "--force",
        "--quiet",
        "--index",
    ]))
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The git commands that build a delta layer get the allocator settings after the user's
    /// own, and git runs with them.
    #[test]
    fn layer_commands_keep_freed_memory() {
        assert_eq!(with_keep_heap(None), KEEP_HEAP_TUNABLES);
        assert_eq!(with_keep_heap(Some("".into())), KEEP_HEAP_TUNABLES);
        assert_eq!(
            with_keep_heap(Some("glibc.malloc.arena_max=2".into())),
            format!("glibc.malloc.arena_max=2:{KEEP_HEAP_TUNABLES}").as_str()
        );
        let mut cmd = crate::git::git(Path::new("."));
        keep_heap(&mut cmd);
        let set = cmd
            .get_envs()
            .find(|(k, _)| *k == "GLIBC_TUNABLES")
            .and_then(|(_, v)| v)
            .map(std::ffi::OsStr::to_string_lossy)
            .unwrap_or_default();
        assert!(set.ends_with(KEEP_HEAP_TUNABLES), "{set}");
        let out = run(cmd.arg("--version")).unwrap();
        assert!(text(&out).starts_with("git version"), "{}", text(&out));
    }
}
