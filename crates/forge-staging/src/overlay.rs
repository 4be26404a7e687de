//! The overlay strategy: overlayfs with the snapshot's layers as read-only lower directories and
//! a per-workspace upper directory. Staging costs a mount, whatever the repository's size, and
//! `changes()` walks only the upper directory, where everything the agent wrote lands.

use std::collections::HashSet;
use std::ffi::CString;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::IoContext;
use crate::fsutil::{has_xattr, is_whiteout_device, process_start_time, xattr_is_yes};
use crate::rules::{Excluded, IgnoreRules};
use crate::scan::{Capture, child};
use crate::slot::{Slot, WorkspaceRecord, create_slot, install_setup, skip_nested, write_record};
use crate::stager::Shared;
use crate::{
    ChangeSet, OverlayRoute, RepoPath, SkipReason, Snapshot, Stager, StagerConfig, StagerKind,
    StagingError, Workspace,
};

/// `unshare` arguments for the user-namespace route: keep our own uid inside when util-linux
/// can (2.38+), else map it to root.
const UNSHARE_VARIANTS: [&[&str]; 2] = [
    &["--user", "--map-current-user", "--keep-caps", "--mount"],
    &["--user", "--map-root-user", "--mount"],
];

/// Stages workspaces as overlay mounts. See the module documentation.
#[derive(Debug)]
pub struct OverlayStager {
    shared: Arc<Shared>,
    route: OverlayRoute,
    unshare: &'static [&'static str],
}

impl OverlayStager {
    /// An overlay stager using the first route that works here: direct, user namespace, fuse.
    pub fn new(config: &StagerConfig) -> Result<Self, StagingError> {
        let mut reasons = Vec::new();
        for route in OverlayRoute::ALL {
            match Self::with_route(config, route) {
                Ok(stager) => return Ok(stager),
                Err(e) => reasons.push(format!("{route}: {e}")),
            }
        }
        Err(StagingError::Unsupported {
            strategy: "overlay",
            reason: reasons.join("; "),
        })
    }

    /// An overlay stager using `route`, after a trial mount shows it works here.
    pub fn with_route(config: &StagerConfig, route: OverlayRoute) -> Result<Self, StagingError> {
        let shared = Shared::new(config)?;
        let variants: &[&'static [&'static str]] = if route == OverlayRoute::UserNamespace {
            &UNSHARE_VARIANTS
        } else {
            &UNSHARE_VARIANTS[..1]
        };
        let mut last = None;
        for &unshare in variants {
            match probe(&shared, route, unshare) {
                Ok(()) => {
                    return Ok(Self {
                        shared,
                        route,
                        unshare,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| StagingError::Unsupported {
            strategy: "overlay",
            reason: format!("the {route} route was not tried"),
        }))
    }

    /// The route this stager mounts with.
    pub fn route(&self) -> OverlayRoute {
        self.route
    }
}

static PROBES: AtomicU64 = AtomicU64::new(0);

/// Mounts a one-file overlay and checks that reads see the lower layer and writes land in the
/// upper one.
fn probe(
    shared: &Shared,
    route: OverlayRoute,
    unshare: &'static [&'static str],
) -> Result<(), StagingError> {
    let unsupported = |reason: String| StagingError::Unsupported {
        strategy: "overlay",
        reason,
    };
    if route == OverlayRoute::Fuse && which("fuse-overlayfs").is_none() {
        return Err(unsupported("fuse-overlayfs is not installed".to_owned()));
    }
    let name = format!(
        "probe-overlay-{}-{}",
        std::process::id(),
        PROBES.fetch_add(1, Ordering::Relaxed)
    );
    let record = WorkspaceRecord {
        strategy: StagerKind::Overlay,
        route: Some(route),
        ..WorkspaceRecord::default()
    };
    let mut slot = create_slot(shared, &name, &record)?;
    let result = (|| {
        let (lower, upper, work, merged) = layout(&slot.dir);
        for d in [&lower, &upper, &work, &merged] {
            fs::create_dir(d).ctx("create directory", d)?;
        }
        fs::write(lower.join("probe"), b"forge").ctx("write", &lower)?;
        let mounted = mount(route, &[lower], &upper, &work, &merged, unshare)?;
        let view = mounted.host_path();
        let check = (|| {
            let seen = fs::read(view.join("probe")).ctx("read through the overlay", &view)?;
            fs::write(view.join("written"), b"x").ctx("write through the overlay", &view)?;
            if seen != b"forge" || !upper.join("written").exists() {
                return Err(unsupported(
                    "a trial mount did not behave as an overlay".to_owned(),
                ));
            }
            Ok(())
        })();
        let unmounted = mounted.unmount();
        check.and(unmounted)
    })();
    let removed = slot.release();
    result.and(removed)
}

fn layout(dir: &Path) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    (
        dir.join("lower"),
        dir.join("upper"),
        dir.join("work"),
        dir.join("merged"),
    )
}

impl Stager for OverlayStager {
    fn strategy(&self) -> &str {
        StagerKind::Overlay.name()
    }

    fn stage(&self, snapshot: &Snapshot, name: &str) -> Result<Box<dyn Workspace>, StagingError> {
        let lowers = snapshot.lower_dirs()?;
        let mut record = WorkspaceRecord {
            strategy: StagerKind::Overlay,
            route: Some(self.route),
            ..WorkspaceRecord::default()
        };
        let mut slot = create_slot(&self.shared, name, &record)?;
        let (_, upper, work, merged) = layout(&slot.dir);
        let mounted = (|| {
            for d in [&upper, &work, &merged] {
                fs::create_dir(d).ctx("create directory", d)?;
            }
            install_setup(&self.shared, snapshot, &upper)?;
            let mounted = mount(self.route, &lowers, &upper, &work, &merged, self.unshare)?;
            if let Some(holder) = &mounted.holder {
                record.holder = Some((holder.pid, process_start_time(holder.pid).unwrap_or(0)));
                if let Err(e) = write_record(&slot.dir, &record) {
                    let _ = mounted.unmount();
                    return Err(e);
                }
            }
            Ok(mounted)
        })();
        let mounted = match mounted {
            Ok(m) => m,
            Err(e) => {
                let _ = slot.release();
                return Err(e);
            }
        };
        Ok(Box::new(OverlayWorkspace {
            slot,
            host_path: mounted.host_path(),
            path: merged,
            snapshot: snapshot.clone(),
            shared: Arc::clone(&self.shared),
            mounted: Some(mounted),
        }))
    }
}

/// A workspace of the overlay strategy: its merged directory, mounted until disposed of.
#[derive(Debug)]
struct OverlayWorkspace {
    slot: Slot,
    path: PathBuf,
    host_path: PathBuf,
    snapshot: Snapshot,
    shared: Arc<Shared>,
    /// `None` once unmounted.
    mounted: Option<Mounted>,
}

impl OverlayWorkspace {
    fn teardown(&mut self) -> Result<(), StagingError> {
        let unmounted = self.mounted.take().map_or(Ok(()), Mounted::unmount);
        // A failed unmount leaves the files alone: `release` never crosses into a mount.
        let removed = self.slot.release();
        unmounted.and(removed)
    }
}

impl Workspace for OverlayWorkspace {
    fn name(&self) -> &str {
        &self.slot.name
    }

    fn strategy(&self) -> &str {
        StagerKind::Overlay.name()
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn host_path(&self) -> &Path {
        &self.host_path
    }

    fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    fn prepare_command(&self, cmd: &mut Command) -> Result<(), StagingError> {
        cmd.current_dir(&self.path)
            .env("FORGE_WORKSPACE", &self.path);
        match &self.mounted {
            Some(m) => m.enter(cmd),
            None => Err(disposed(&self.path)),
        }
    }

    fn needs_command_hook(&self) -> bool {
        self.mounted.as_ref().is_none_or(|m| m.holder.is_some())
    }

    fn changes(&self) -> Result<ChangeSet, StagingError> {
        let Some(m) = &self.mounted else {
            return Err(disposed(&self.path));
        };
        let mut set = changes(self, m)?;
        skip_nested(&self.snapshot, &mut set);
        Ok(set)
    }

    fn dispose(mut self: Box<Self>) -> Result<(), StagingError> {
        self.teardown()
    }
}

impl Drop for OverlayWorkspace {
    fn drop(&mut self) {
        if self.slot.is_held() {
            let _ = self.teardown();
        }
    }
}

fn disposed(path: &Path) -> StagingError {
    StagingError::io(
        "read",
        path,
        std::io::Error::other("the workspace was disposed of"),
    )
}

/// A mounted overlay.
#[derive(Debug)]
pub(crate) struct Mounted {
    pub(crate) route: OverlayRoute,
    merged: PathBuf,
    upper: PathBuf,
    holder: Option<Holder>,
}

/// The process that keeps a user namespace (and so its mount) alive: `cat` reading a pipe from
/// us, so it exits when we close the pipe or die.
#[derive(Debug)]
struct Holder {
    child: Child,
    stdin: Option<ChildStdin>,
    pid: u32,
}

/// The overlay mount options. Redirects, metacopy and the inode index are off so that every
/// change is a plain file, whiteout or opaque directory in the upper directory.
fn options(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    extra: &str,
) -> Result<String, StagingError> {
    let check = |p: &Path| -> Result<String, StagingError> {
        match p.to_str() {
            Some(s) if !s.contains([',', ':', '\\', '\n', '"']) => Ok(s.to_owned()),
            _ => Err(StagingError::Unsupported {
                strategy: "overlay",
                reason: format!(
                    "the path `{}` contains a character overlayfs options cannot hold \
                     (`,`, `:`, `\\`, a quote or a newline, or it is not UTF-8)",
                    p.display()
                ),
            }),
        }
    };
    let lower = lowers
        .iter()
        .map(|l| check(l))
        .collect::<Result<Vec<_>, _>>()?
        .join(":");
    let opts = format!(
        "lowerdir={lower},upperdir={},workdir={}{extra}",
        check(upper)?,
        check(work)?
    );
    // mount(2) takes one page of options; snapshot stacks stay far below it (see
    // `Snapshot`'s compaction), a very long run directory path may not.
    if opts.len() >= MOUNT_OPTIONS_MAX {
        return Err(StagingError::Unsupported {
            strategy: "overlay",
            reason: format!(
                "the overlay options for {} lower directories take {} bytes, more than the \
                 {MOUNT_OPTIONS_MAX} a mount accepts; move the repository (and its `.forge`) \
                 to a shorter path",
                lowers.len(),
                opts.len()
            ),
        });
    }
    Ok(opts)
}

/// The size of the options `mount(2)` accepts (one page, its terminating NUL included).
const MOUNT_OPTIONS_MAX: usize = 4096;

fn mount(
    route: OverlayRoute,
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    merged: &Path,
    unshare: &[&str],
) -> Result<Mounted, StagingError> {
    let mounted = |holder| Mounted {
        route,
        merged: merged.to_path_buf(),
        upper: upper.to_path_buf(),
        holder,
    };
    match route {
        OverlayRoute::Direct => {
            let opts = options(
                lowers,
                upper,
                work,
                ",redirect_dir=off,metacopy=off,index=off",
            )?;
            let data =
                CString::new(opts).map_err(|e| StagingError::io("mount", merged, e.into()))?;
            rustix::mount::mount(
                "overlay",
                merged,
                "overlay",
                rustix::mount::MountFlags::empty(),
                data.as_c_str(),
            )
            .ctx("mount an overlay on", merged)?;
            Ok(mounted(None))
        }
        OverlayRoute::UserNamespace => {
            let opts = options(lowers, upper, work, ",userxattr")?;
            let holder = spawn_holder(unshare, &opts, merged)?;
            Ok(mounted(Some(holder)))
        }
        OverlayRoute::Fuse => {
            let opts = options(lowers, upper, work, "")?;
            let mut cmd = Command::new("fuse-overlayfs");
            cmd.arg("-o").arg(opts).arg(merged).stdin(Stdio::null());
            crate::git::run(&mut cmd)?;
            Ok(mounted(None))
        }
    }
}

fn spawn_holder(unshare: &[&str], opts: &str, merged: &Path) -> Result<Holder, StagingError> {
    let mut cmd = Command::new("unshare");
    cmd.args(unshare)
        .arg("--")
        .arg("/bin/sh")
        .arg("-c")
        .arg(r#"mount -t overlay overlay -o "$1" "$2" || exit 1; echo ready; exec cat >/dev/null"#)
        .arg("forge-overlay")
        .arg(opts)
        .arg(merged)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let command = crate::git::describe(&cmd);
    let mut child = cmd.spawn().map_err(|e| StagingError::Command {
        command: command.clone(),
        message: format!("cannot start it: {e}"),
    })?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    if line.trim() == "ready" {
        let pid = child.id();
        return Ok(Holder {
            stdin: child.stdin.take(),
            child,
            pid,
        });
    }
    let _ = child.kill();
    let status = child.wait();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    Err(StagingError::Command {
        command,
        message: format!(
            "{}: {}",
            status.map_or_else(|e| e.to_string(), |s| s.to_string()),
            err.trim()
        ),
    })
}

impl Mounted {
    /// Where this process sees the merged tree.
    pub(crate) fn host_path(&self) -> PathBuf {
        match &self.holder {
            Some(h) => Path::new("/proc")
                .join(h.pid.to_string())
                .join("root")
                .join(self.merged.strip_prefix("/").unwrap_or(&self.merged)),
            None => self.merged.clone(),
        }
    }

    /// Makes `cmd` enter the holder's namespaces (user namespace route only).
    pub(crate) fn enter(&self, cmd: &mut Command) -> Result<(), StagingError> {
        let Some(holder) = &self.holder else {
            return Ok(());
        };
        let ns = |kind: &str| -> Result<OwnedFd, StagingError> {
            let path = PathBuf::from(format!("/proc/{}/ns/{kind}", holder.pid));
            File::open(&path)
                .map(OwnedFd::from)
                .ctx("open namespace", &path)
                .map_err(Into::into)
        };
        let (user, mnt) = (ns("user")?, ns("mnt")?);
        let dir = CString::new(self.merged.as_os_str().as_bytes())
            .map_err(|e| StagingError::io("enter", &self.merged, e.into()))?;
        enter_namespaces(cmd, user, mnt, dir);
        Ok(())
    }

    /// Unmounts (and, for the user-namespace route, ends the holder).
    pub(crate) fn unmount(self) -> Result<(), StagingError> {
        match self.holder {
            Some(mut holder) => {
                drop(holder.stdin.take());
                let _ = holder.child.kill();
                holder
                    .child
                    .wait()
                    .map(drop)
                    .ctx("wait for the namespace holder of", &self.merged)
                    .map_err(Into::into)
            }
            None => unmount_path(&self.merged, self.route == OverlayRoute::Fuse),
        }
    }
}

// `pre_exec` is unsafe because its closure runs in the child between `fork` and `exec`, where
// only async-signal-safe work is allowed. Ours makes three system calls through rustix (setns
// twice, then chdir) on values prepared before the fork: it allocates nothing and takes no lock.
#[allow(unsafe_code)]
fn enter_namespaces(cmd: &mut Command, user: OwnedFd, mnt: OwnedFd, dir: CString) {
    use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};
    let enter = move || -> std::io::Result<()> {
        move_into_link_name_space(user.as_fd(), Some(LinkNameSpaceType::User))?;
        move_into_link_name_space(mnt.as_fd(), Some(LinkNameSpaceType::Mount))?;
        // Entering a mount namespace moves the current directory to its root.
        rustix::process::chdir(dir.as_c_str())?;
        Ok(())
    };
    // SAFETY: see the comment above the function.
    unsafe {
        cmd.pre_exec(enter);
    }
}

/// Unmounts `path`: lazily if it is busy; through `fusermount3 -u` for a fuse mount we may not
/// unmount ourselves. Not being mounted is not an error.
pub(crate) fn unmount_path(path: &Path, fuse: bool) -> Result<(), StagingError> {
    use rustix::io::Errno;
    use rustix::mount::{UnmountFlags, unmount};
    match unmount(path, UnmountFlags::empty()) {
        Ok(()) | Err(Errno::INVAL | Errno::NOENT) => Ok(()),
        Err(Errno::BUSY) => unmount(path, UnmountFlags::DETACH)
            .ctx("unmount", path)
            .map_err(Into::into),
        Err(e) if fuse => {
            let tool = which("fusermount3").map_or("fusermount", |_| "fusermount3");
            let plain = crate::git::run(Command::new(tool).arg("-u").arg(path));
            if plain.is_ok() {
                return Ok(());
            }
            crate::git::run(Command::new(tool).arg("-uz").arg(path))
                .map(drop)
                .map_err(|_| StagingError::io("unmount", path, e.into()))
        }
        Err(e) => Err(StagingError::io("unmount", path, e.into())),
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

/// What changed: a walk of the upper directory only.
fn changes(ws: &OverlayWorkspace, m: &Mounted) -> Result<ChangeSet, StagingError> {
    let config = &ws.shared.config;
    let mut walk = UpperWalk {
        cap: Capture::new(&config.store, config.max_file_size),
        rules: IgnoreRules::at_start(&ws.snapshot, &config.store),
        snapshot: &ws.snapshot,
        excluded: &ws.shared.excluded,
        fuse: m.route == OverlayRoute::Fuse,
    };
    walk.dir(&m.upper, "", false)?;
    Ok(walk.cap.finish())
}

struct UpperWalk<'a> {
    cap: Capture<'a>,
    rules: IgnoreRules<'a>,
    snapshot: &'a Snapshot,
    excluded: &'a Excluded,
    fuse: bool,
}

impl UpperWalk<'_> {
    fn dir(&mut self, abs: &Path, rel: &str, parent_opaque: bool) -> Result<(), StagingError> {
        let opaque = parent_opaque || (!rel.is_empty() && self.is_opaque(abs));
        let mut present = HashSet::new();
        for entry in fs::read_dir(abs).ctx("list", abs)? {
            let entry = entry.ctx("list", abs)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                self.cap.out.skip(
                    child(rel, &name.to_string_lossy()),
                    SkipReason::InvalidName {
                        detail: "the name is not valid UTF-8".to_owned(),
                    },
                );
                continue;
            };
            if self.fuse && name.starts_with(".wh.") {
                // fuse-overlayfs's own forms: an opaque marker, or a whiteout named `.wh.<name>`.
                if name != ".wh..wh..opq" {
                    self.whiteout(&child(rel, &name[4..]));
                }
                continue;
            }
            let path = child(rel, name);
            if self.excluded.contains(&path) {
                continue;
            }
            let abs_entry = entry.path();
            let meta = fs::symlink_metadata(&abs_entry).ctx("stat", &abs_entry)?;
            if is_whiteout(&meta, &abs_entry) {
                self.whiteout(&path);
                continue;
            }
            present.insert(name.to_owned());
            if meta.is_dir() {
                // A directory where the snapshot has a file replaces it.
                if let Some((p, before)) = self.snapshot_entry(&path) {
                    self.cap.deleted(&p, &before);
                }
                if !self.snapshot.has_dir(&path) && self.rules.is_ignored(&path, true) {
                    continue;
                }
                self.dir(&abs_entry, &path, opaque)?;
                continue;
            }
            // A file where the snapshot has a directory replaces everything under it.
            self.delete_under(&path);
            let before = self.snapshot.get(&path);
            if before.is_none() && self.rules.is_ignored(&path, false) {
                continue;
            }
            match RepoPath::new(&path) {
                Ok(p) => self.cap.record(p, &abs_entry, &meta, before)?,
                Err(e) => self.cap.out.skip(
                    path,
                    SkipReason::InvalidName {
                        detail: e.to_string(),
                    },
                ),
            }
        }
        if opaque {
            // Nothing of the lower layers shows through an opaque directory: whatever the
            // snapshot has here and the upper directory does not re-provide is gone.
            let gone: Vec<_> = self
                .snapshot
                .under(rel)
                .filter(|(p, _)| {
                    let rest = if rel.is_empty() {
                        p.as_str()
                    } else {
                        &p.as_str()[rel.len() + 1..]
                    };
                    let first = rest.split('/').next().unwrap_or(rest);
                    !present.contains(first) && !self.excluded.contains(p.as_str())
                })
                .map(|(p, e)| (p.clone(), e.clone()))
                .collect();
            for (p, e) in gone {
                self.cap.deleted(&p, &e);
            }
        }
        Ok(())
    }

    fn snapshot_entry(&self, path: &str) -> Option<(RepoPath, crate::Entry)> {
        let entry = self.snapshot.get(path)?;
        Some((RepoPath::new(path).ok()?, entry.clone()))
    }

    fn delete_under(&mut self, path: &str) {
        let gone: Vec<_> = self
            .snapshot
            .under(path)
            .filter(|(p, _)| !self.excluded.contains(p.as_str()))
            .map(|(p, e)| (p.clone(), e.clone()))
            .collect();
        for (p, e) in gone {
            self.cap.deleted(&p, &e);
        }
    }

    fn whiteout(&mut self, path: &str) {
        if self.excluded.contains(path) {
            return;
        }
        if let Some((p, before)) = self.snapshot_entry(path) {
            self.cap.deleted(&p, &before);
        }
        self.delete_under(path);
    }

    fn is_opaque(&self, dir: &Path) -> bool {
        xattr_is_yes(dir, "trusted.overlay.opaque")
            || xattr_is_yes(dir, "user.overlay.opaque")
            || (self.fuse
                && (xattr_is_yes(dir, "user.fuseoverlayfs.opaque")
                    || dir.join(".wh..wh..opq").exists()))
    }
}

/// A whiteout: a 0/0 character device, or (overlayfs 6.7+) an empty file with the `whiteout`
/// extended attribute in the trusted or user namespace.
fn is_whiteout(meta: &fs::Metadata, path: &Path) -> bool {
    is_whiteout_device(meta)
        || (meta.is_file()
            && meta.len() == 0
            && (has_xattr(path, "trusted.overlay.whiteout")
                || has_xattr(path, "user.overlay.whiteout")))
}
