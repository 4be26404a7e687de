//! bench-staging: how fast a workspace is made, how fast its changes are found, and what it
//! costs on disk, for each strategy, on generated git repositories of 10,000 and 100,000 files,
//! side by side with `git worktree add` + `git status --porcelain` + `git worktree remove`, and
//! `cp -a`.
//!
//! Each repetition: stage, edit 10 files, `changes()`, dispose. Disk figures are the drop in
//! free space of a dedicated XFS (reflink) loop file system after `syncfs`, so they count data,
//! inodes and directories alike; without root (no loop image) they fall back to summing the
//! workspace's allocated blocks, and the reflink rows are missing.
//!
//! `git_status_<size>_workspace` times `git status --porcelain` in a fresh workspace of the
//! first strategy that runs here (the overlay, where it can) against the same command in the
//! user's own clean clone.
//!
//! Where this machine gives attempts a private mount namespace, the workspace's figure is taken
//! *inside the attempt's view of the repository* (the workspace shown at the repository's path,
//! as every agent sees it); `extra.outside_view_ms` keeps the figure taken at the workspace's own
//! path.
//!
//! `--quick` runs the 10k size only; `--size <label>` (`10k`, `100k`) one size;
//! `--git-status-only` only the capture and the `git_status_*` row of each size.

#![allow(clippy::print_stdout, clippy::print_stderr)]
// Byte counts and sample counts fit f64's 52-bit mantissa by far.
#![allow(clippy::cast_precision_loss)]

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use forge_benches::{Better, Report, Row, median, quick_from_args};
use forge_staging::{
    BaseMode, BaseSnapshot, BlobStore, OverlayRoute, OverlayStager, Snapshot, Stager, StagerConfig,
    StagerKind,
};

type Error = Box<dyn std::error::Error>;
/// A stager, or why it cannot run here.
type Built = Result<Box<dyn Stager>, String>;

fn main() -> Result<(), Error> {
    let quick = quick_from_args();
    let mut report = Report::new("staging", quick);
    let scratch = Scratch::new(if quick { 4 } else { 16 })?;
    println!(
        "scratch file system: {} ({})",
        scratch.dir.display(),
        if scratch.dedicated {
            "dedicated XFS loop image with reflink: disk = drop in free space"
        } else {
            "shared file system: disk = allocated blocks of the workspace"
        }
    );
    let sizes: &[(usize, &str, usize)] = if quick {
        &[(10_000, "10k", 5)]
    } else {
        &[(10_000, "10k", 5), (100_000, "100k", 3)]
    };
    let args: Vec<String> = std::env::args().collect();
    let size = args
        .iter()
        .position(|a| a == "--size")
        .and_then(|i| args.get(i + 1));
    let status_only = args.iter().any(|a| a == "--git-status-only");
    for &(files, label, reps) in sizes {
        if size.is_none_or(|s| s == label) {
            run_size(&scratch, files, label, reps, status_only, &mut report)?;
        }
    }
    let path = report.write()?;
    println!("\n{}", report.table());
    println!("wrote {}", path.display());
    Ok(())
}

/// Where the repositories and runs live: a fresh XFS loop image when we may mount one.
struct Scratch {
    dir: PathBuf,
    dedicated: bool,
    image: Option<PathBuf>,
    _tmp: Option<tempfile::TempDir>,
}

impl Scratch {
    fn new(gib: u32) -> Result<Self, Error> {
        let mount_dir = tempfile::Builder::new()
            .prefix("forge-bench-staging")
            .tempdir()?;
        let image =
            std::env::temp_dir().join(format!("forge-bench-staging-{}.img", std::process::id()));
        let ok = rustix::process::geteuid().is_root()
            && Command::new("truncate")
                .args(["-s", &format!("{gib}G")])
                .arg(&image)
                .status()
                .is_ok_and(|s| s.success())
            && quiet(
                Command::new("mkfs.xfs")
                    .args(["-q", "-f", "-m", "reflink=1"])
                    .arg(&image),
            )
            && quiet(
                Command::new("mount")
                    .args(["-o", "loop"])
                    .arg(&image)
                    .arg(mount_dir.path()),
            );
        if ok {
            let dir = mount_dir.keep();
            return Ok(Self {
                dir,
                dedicated: true,
                image: Some(image),
                _tmp: None,
            });
        }
        let _ = fs::remove_file(&image);
        let tmp = tempfile::Builder::new()
            .prefix("forge-bench-staging")
            .tempdir()?;
        Ok(Self {
            dir: tmp.path().to_path_buf(),
            dedicated: false,
            image: None,
            _tmp: Some(tmp),
        })
    }

    fn free_bytes(&self) -> u64 {
        if let Ok(dir) = fs::File::open(&self.dir) {
            let _ = rustix::fs::syncfs(&dir);
        }
        rustix::fs::statvfs(&self.dir).map_or(0, |s| s.f_bfree * s.f_frsize)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(image) = &self.image {
            let _ = quiet(Command::new("umount").arg(&self.dir));
            let _ = fs::remove_dir(&self.dir);
            let _ = fs::remove_file(image);
        }
    }
}

fn quiet(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run(cmd: &mut Command) -> Result<(), Error> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(())
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// A deterministic source-like file of 200 to 6,000 bytes.
fn content(i: usize, version: u32) -> Vec<u8> {
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(version);
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let len = 200 + (next() % 5800) as usize;
    let mut out = format!("// file {i} version {version}\n").into_bytes();
    while out.len() < len {
        let _ = writeln!(
            out,
            "fn f{}() -> u64 {{ {} }}",
            next() % 1000,
            next() % 100_000
        );
    }
    out
}

fn rel_path(i: usize) -> String {
    format!("d{:03}/s{:02}/f{i:06}.rs", i / 1000, (i / 50) % 20)
}

/// A git repository of `files` files in one commit, written with `git fast-import` and checked
/// out with `git reset --hard`.
fn generate(dir: &Path, files: usize) -> Result<u64, Error> {
    fs::create_dir_all(dir)?;
    run(Command::new("git")
        .args(["init", "-q", "-b", "main"])
        .arg(dir))?;
    let mut child = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()?;
    let mut total = 0u64;
    {
        let stdin = child.stdin.as_mut().ok_or("no stdin")?;
        let mut w = std::io::BufWriter::new(stdin);
        writeln!(w, "commit refs/heads/main")?;
        writeln!(w, "committer Bench <bench@forge.invalid> 0 +0000")?;
        writeln!(w, "data 9\ngenerated")?;
        for i in 0..files {
            let c = content(i, 0);
            total += c.len() as u64;
            writeln!(w, "M 100644 inline {}", rel_path(i))?;
            writeln!(w, "data {}", c.len())?;
            w.write_all(&c)?;
            writeln!(w)?;
        }
        w.flush()?;
    }
    if !child.wait()?.success() {
        return Err("git fast-import failed".into());
    }
    run(Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["reset", "-q", "--hard"]))?;
    Ok(total)
}

/// The ten files each repetition edits, spread over the tree.
fn edits(files: usize) -> Vec<usize> {
    (0..10).map(|k| k * files / 10 + 7).collect()
}

fn edit(root: &Path, files: usize, rep: u32) -> Result<(), Error> {
    for i in edits(files) {
        fs::write(root.join(rel_path(i)), content(i, rep + 1))?;
    }
    Ok(())
}

/// Allocated bytes of a tree (`st_blocks`), not following symlinks.
fn allocated(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    let mut total = meta.blocks() * 512;
    if meta.is_dir()
        && let Ok(entries) = fs::read_dir(path)
    {
        for e in entries.flatten() {
            total += allocated(&e.path());
        }
    }
    total
}

#[derive(Default)]
struct Samples {
    stage: Vec<f64>,
    changes: Vec<f64>,
    dispose: Vec<f64>,
    disk: Vec<f64>,
}

/// One repetition of ours: stage, edit 10 files, `changes()`, dispose.
fn ours_once(
    scratch: &Scratch,
    stager: &dyn Stager,
    snapshot: &Snapshot,
    files: usize,
    rep: u32,
    s: &mut Samples,
) -> Result<(), Error> {
    let free0 = scratch.free_bytes();
    let t = Instant::now();
    let ws = stager.stage(snapshot, &format!("bench-{rep}"))?;
    s.stage.push(ms(t));
    edit(ws.host_path(), files, rep)?;
    let disk = if scratch.dedicated {
        free0.saturating_sub(scratch.free_bytes())
    } else if ws.strategy() == StagerKind::Overlay.name() {
        let dir = ws.path().parent().ok_or("no workspace dir")?;
        allocated(&dir.join("upper")) + allocated(&dir.join("work"))
    } else {
        allocated(ws.host_path())
    };
    s.disk.push(disk as f64);
    let t = Instant::now();
    let changes = ws.changes()?;
    s.changes.push(ms(t));
    if changes.len() != 10 {
        return Err(format!("expected 10 changes, found {}", changes.len()).into());
    }
    let t = Instant::now();
    ws.dispose()?;
    s.dispose.push(ms(t));
    Ok(())
}

/// One repetition of the peer: `git worktree add`, edit, `git status --porcelain`, remove.
fn git_worktree_once(
    scratch: &Scratch,
    repo: &Path,
    root: &Path,
    files: usize,
    rep: u32,
    s: &mut Samples,
) -> Result<(), Error> {
    let path = root.join(format!("peer-{rep}"));
    let free0 = scratch.free_bytes();
    let t = Instant::now();
    run(Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["worktree", "add", "--detach", "--quiet"])
        .arg(&path))?;
    s.stage.push(ms(t));
    edit(&path, files, rep)?;
    let disk = if scratch.dedicated {
        free0.saturating_sub(scratch.free_bytes())
    } else {
        allocated(&path)
    };
    s.disk.push(disk as f64);
    let t = Instant::now();
    let out = Command::new("git")
        .arg("-C")
        .arg(&path)
        .args(["status", "--porcelain"])
        .output()?;
    s.changes.push(ms(t));
    let lines = out
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    if lines != 10 {
        return Err(format!("git status listed {lines} paths, not 10").into());
    }
    let t = Instant::now();
    run(Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["worktree", "remove", "--force"])
        .arg(&path))?;
    s.dispose.push(ms(t));
    Ok(())
}

/// One `cp -a` of the base tree, and its removal.
fn cp_once(
    scratch: &Scratch,
    tree: &Path,
    root: &Path,
    rep: u32,
    s: &mut Samples,
) -> Result<(), Error> {
    let dest = root.join(format!("cp-{rep}"));
    let free0 = scratch.free_bytes();
    let t = Instant::now();
    run(Command::new("cp").arg("-a").arg(tree).arg(&dest))?;
    s.stage.push(ms(t));
    let disk = if scratch.dedicated {
        free0.saturating_sub(scratch.free_bytes())
    } else {
        allocated(&dest)
    };
    s.disk.push(disk as f64);
    let t = Instant::now();
    fs::remove_dir_all(&dest)?;
    s.dispose.push(ms(t));
    Ok(())
}

fn med(v: &[f64]) -> f64 {
    median(v)
}

#[allow(clippy::too_many_lines)]
fn run_size(
    scratch: &Scratch,
    files: usize,
    label: &str,
    reps: usize,
    status_only: bool,
    report: &mut Report,
) -> Result<(), Error> {
    let size_dir = scratch.dir.join(label);
    let repo_dir = size_dir.join("repo_dir");
    println!("\n== {label}: generating a repository of {files} files");
    let t = Instant::now();
    let bytes = generate(&repo_dir, files)?;
    println!(
        "   generated in {:.1} s ({bytes} bytes of content)",
        t.elapsed().as_secs_f64()
    );
    let run_root = size_dir.join("run");
    let store = BlobStore::open(run_root.join("objects"))?;
    let t = Instant::now();
    let base = Arc::new(BaseSnapshot::capture(
        &repo_dir,
        BaseMode::Head,
        &run_root.join("base"),
        &store,
    )?);
    report.push(
        Row::new(
            &format!("capture_{label}_head"),
            ms(t),
            "ms",
            Better::Lower,
            1,
        )
        .extra("files", files as u64),
    );
    let snapshot = Snapshot::from(Arc::clone(&base));
    let config = StagerConfig::new(&run_root, store);
    let peers_root = size_dir.join("peers");
    fs::create_dir_all(&peers_root)?;

    let mut strategies: Vec<(String, Built)> = StagerKind::STRATEGIES
        .into_iter()
        .map(|k| {
            (
                k.name().to_owned(),
                k.build(&config, &base).map_err(|e| e.to_string()),
            )
        })
        .collect();
    if OverlayStager::new(&config).is_ok_and(|s| s.route() != OverlayRoute::UserNamespace) {
        strategies.push((
            "overlay_userns".to_owned(),
            OverlayStager::with_route(&config, OverlayRoute::UserNamespace)
                .map(|s| Box::new(s) as Box<dyn Stager>)
                .map_err(|e| e.to_string()),
        ));
    }

    // The peers, measured interleaved with ours (A B A B): `git worktree add` with the first
    // strategy's repetitions (the overlay's, whose goals compare with it), `cp -a` with the copy
    // strategy's.
    let mut peer = Samples::default();
    let mut cp = Samples::default();
    let mut peer_owner: Option<String> = None;
    let mut ours: Vec<(String, Samples)> = Vec::new();
    for (name, stager) in strategies.iter().filter(|_| !status_only) {
        let stager = match stager {
            Ok(s) => s,
            Err(reason) => {
                println!("   MISS {name}: {reason}");
                continue;
            }
        };
        let mut s = Samples::default();
        for rep in 0..reps {
            let rep = u32::try_from(rep)?;
            ours_once(scratch, stager.as_ref(), &snapshot, files, rep, &mut s)?;
            if peer_owner.get_or_insert_with(|| name.clone()) == name {
                git_worktree_once(scratch, &repo_dir, &peers_root, files, rep, &mut peer)?;
            }
            if name == "copy" {
                cp_once(scratch, &base.tree_dir(), &peers_root, rep, &mut cp)?;
            }
        }
        println!(
            "   {name}: stage {:.2} ms, changes {:.2} ms, dispose {:.2} ms",
            med(&s.stage),
            med(&s.changes),
            med(&s.dispose)
        );
        ours.push((name.clone(), s));
    }

    let (p_stage, p_status, p_remove, p_disk) = (
        med(&peer.stage),
        med(&peer.changes),
        med(&peer.dispose),
        med(&peer.disk),
    );
    let repo_bytes = base.manifest().total_size() as f64;
    for (name, s) in &ours {
        let goal_stage = (name == "overlay").then_some("< 20 ms, ratio >= 100");
        let mut row = Row::new(
            &format!("stage_{label}_{name}"),
            med(&s.stage),
            "ms",
            Better::Lower,
            s.stage.len(),
        )
        .peer("git worktree add", p_stage);
        if let Some(g) = goal_stage {
            row = row.goal(g);
        }
        if name == "copy" && !cp.stage.is_empty() {
            row = row.extra("cp_a_ms", med(&cp.stage));
        }
        report.push(row);
        let mut row = Row::new(
            &format!("changes_{label}_10edits_{name}"),
            med(&s.changes),
            "ms",
            Better::Lower,
            s.changes.len(),
        )
        .peer("git status --porcelain", p_status);
        if name == "overlay" {
            row = row.goal("<= 10 ms");
        }
        report.push(row);
        let disk = med(&s.disk);
        let mut row = Row::new(
            &format!("disk_{label}_{name}"),
            disk,
            "bytes",
            Better::Lower,
            s.disk.len(),
        )
        .peer("git worktree add", p_disk)
        .extra("repo_bytes", repo_bytes)
        .extra("pct_of_repo", 100.0 * disk / repo_bytes);
        if name == "overlay" || name == "reflink" {
            row = row.goal("< 1 % of the repo");
        }
        if name == "copy" && !cp.disk.is_empty() {
            row = row.extra("cp_a_bytes", med(&cp.disk));
        }
        report.push(row);
        report.push(
            Row::new(
                &format!("dispose_{label}_{name}"),
                med(&s.dispose),
                "ms",
                Better::Lower,
                s.dispose.len(),
            )
            .peer("git worktree remove", p_remove),
        );
    }
    if let Some((name, Ok(stager))) = strategies.first() {
        git_status_row(
            stager.as_ref(),
            name,
            &snapshot,
            &repo_dir,
            label,
            reps,
            report,
        )?;
    }
    fs::remove_dir_all(&size_dir)?;
    Ok(())
}

/// `git status --porcelain` in a fresh workspace (each repetition stages a new one) beside the
/// same command in the user's own clean clone, interleaved: the workspace repository's prebuilt
/// index must spare git from reading the files.
fn git_status_row(
    stager: &dyn Stager,
    name: &str,
    snapshot: &Snapshot,
    clone: &Path,
    label: &str,
    reps: usize,
    report: &mut Report,
) -> Result<(), Error> {
    let in_view = !matches!(
        forge_exec::process::pid_namespace_support(),
        forge_exec::process::PidNamespaceSupport::Unavailable(_)
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let status = |cmd: &mut Command| -> Result<f64, Error> {
        cmd.args(["status", "--porcelain"]).stdin(Stdio::null());
        let t = Instant::now();
        let out = cmd.output()?;
        let took = ms(t);
        if !out.status.success() || !out.stdout.is_empty() {
            return Err(format!(
                "{cmd:?} should list nothing: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        Ok(took)
    };
    let (mut ours, mut outside, mut peer) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 0..reps {
        if in_view {
            let ws = stager.stage(snapshot, &format!("status-view-{rep}"))?;
            ours.push(status_in_view(&rt, &*ws, snapshot, clone)?);
            ws.dispose()?;
        }
        let ws = stager.stage(snapshot, &format!("status-{rep}"))?;
        let mut cmd = Command::new("git");
        ws.prepare_command(&mut cmd)?;
        outside.push(status(&mut cmd)?);
        ws.dispose()?;
        peer.push(status(Command::new("git").arg("-C").arg(clone))?);
    }
    if !in_view {
        ours.clone_from(&outside);
    }
    println!(
        "   git status: {:.2} ms in a fresh {name} workspace ({}), {:.2} ms at its own path, \
         {:.2} ms in the clean clone",
        med(&ours),
        if in_view {
            "in the view"
        } else {
            "no view here"
        },
        med(&outside),
        med(&peer)
    );
    report.push(
        Row::new(
            &format!("git_status_{label}_workspace"),
            med(&ours),
            "ms",
            Better::Lower,
            ours.len(),
        )
        .peer("git status in the user's clean clone", med(&peer))
        .goal("ratio >= 0.5")
        .extra("strategy", name)
        .extra("in_view", in_view)
        .extra("outside_view_ms", med(&outside)),
    );
    Ok(())
}

/// `git status --porcelain` timed by a shell inside the attempt's view of the repository
/// `repo` (the workspace `ws` shown at its path, in a PID and mount namespace, as the pipeline
/// runs agents), in ms.
fn status_in_view(
    rt: &tokio::runtime::Runtime,
    ws: &dyn forge_staging::Workspace,
    snapshot: &Snapshot,
    repo: &Path,
) -> Result<f64, Error> {
    use forge_exec::process::{AttemptEnv, ProcessOptions, RepoView, run_process_in};
    // The view shows `.forge` read-only: it must exist (the run store of this bench is
    // elsewhere).
    fs::create_dir_all(repo.join(".forge"))?;
    let script = "s=$(date +%s%N); out=$(git status --porcelain) || exit 1; e=$(date +%s%N); \
                  [ -z \"$out\" ] || { echo \"dirty: $out\"; exit 1; }; \
                  [ \"$PWD\" = \"$FORGE_WORKSPACE\" ] && echo \"us=$(( (e - s) / 1000 ))\"";
    let spec = forge_exec::CommandSpec::shell(script, ws.host_path());
    let options = ProcessOptions {
        pid_namespace: true,
        require_isolation: true,
        repo_view: Some(RepoView {
            user_git: snapshot.base().user_git_link(),
            ..RepoView::new(repo)
        }),
        ..ProcessOptions::default()
    };
    let run = forge_events::RunId::new("bench")?;
    let env = AttemptEnv {
        run: &run,
        task: "status",
        attempt: 1,
    };
    let log = ws.host_path().with_file_name("status-in-view.log");
    let (cancel, kill) = (
        tokio_util::sync::CancellationToken::new(),
        tokio_util::sync::CancellationToken::new(),
    );
    let prepare = |cmd: &mut Command| ws.prepare_command(cmd).map_err(std::io::Error::other);
    let mut lines = Vec::new();
    let exit = rt.block_on(run_process_in(
        &spec,
        &env,
        &log,
        &mut |_, line: &str| lines.push(line.to_owned()),
        &cancel,
        &kill,
        &options,
        Some(&prepare),
    ))?;
    let micros = lines
        .iter()
        .find_map(|l| l.strip_prefix("us="))
        .and_then(|us| us.parse::<f64>().ok());
    match (exit.code, micros) {
        (Some(0), Some(us)) => Ok(us / 1000.0),
        _ => Err(format!("git status in the view: {exit:?}: {}", lines.join("\n")).into()),
    }
}
