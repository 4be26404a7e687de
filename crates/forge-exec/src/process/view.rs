//! Showing an attempt's workspace at the user's repository path.
//!
//! A workspace lives inside the user's repository (`.forge/runs/…`), and agents learn the
//! repository's path from everywhere (prompts, `CLAUDE.md`, stack traces, a parent `.git` found
//! by walking up). So the attempt gets a private mount namespace in which the repository path
//! *is* the workspace: `$PWD`, `cd ..` and back, absolute paths and `git -C <repo>` all land in
//! the workspace, and nothing the agent does reaches the user's files. In that namespace:
//!
//! - `<repo>` is the workspace (a bind of it, with its own `.git`: the workspace repository);
//! - `<repo>/.forge` is Forge's directory **read-only** (the prompt file, the snapshot layers
//!   the workspace's git objects point at), so the agent can read but never change a run;
//! - the base snapshot's `user/git` (under `.forge/bases/…`) is the user's git directory,
//!   **read-only**: the workspace repository reaches the user's objects and configuration
//!   there (see [`forge_staging::USER_GIT_LINK`], a symbolic link to the same directory outside
//!   the namespace), while the user's refs, index, hooks and config cannot be written. A git
//!   directory outside the repository (a linked worktree's) is made read-only where it is;
//! - when the attempt has its own PID namespace, `/proc` is that namespace's (mounted by its
//!   init), so the agent sees its own processes only and tools that need a private `/proc`
//!   (Codex's sandbox) work;
//! - `/tmp` is the attempt's own directory ([`RepoView::tmp`]; `TMPDIR` names it), as
//!   systemd's `PrivateTmp` gives a service: parallel agents share no temporary files, locks or
//!   sockets. Tools that coordinate through `/tmp` by process id cannot work across PID
//!   namespaces: Codex's sandbox registers the mount targets it makes in `/tmp` under its pid,
//!   and removed the targets of a Codex in another attempt, whose pid it could not see, while
//!   that one still needed them. What the agent's environment names under the host's `/tmp`
//!   stays there ([`RepoView::keep_named_in`]: a `HOME`, a configuration file's directory, an
//!   `SSH_AUTH_SOCK`'s, a `PATH` entry); where the repository itself lies under `/tmp`, its path
//!   is made in the private directory, and the workspace shows there as everywhere.
//!
//! The mounts are made by the attempt's leader before anything of the agent runs, with the new
//! mount API (`open_tree`, `move_mount`, `mount_setattr`: Linux 5.12): every tree is cloned
//! first, while the original paths still show the originals, then moved into place. Without
//! root the namespace comes with a user namespace mapping the user to itself; as root (on the
//! host, or in a user namespace) the mounts are then locked by entering one more user namespace,
//! so an agent running as root cannot unmount its view to reach what lies beneath.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

/// Which repository path shows the workspace (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoView {
    /// The user's repository (its top level).
    pub repo: PathBuf,
    /// Directories under `.forge/` that stay writable in the view (the agent's private state),
    /// at most [`RepoView::MAX_WRITABLE`].
    pub writable: Vec<PathBuf>,
    /// The base snapshot's link to the user's git directory
    /// ([`forge_staging::BaseSnapshot::user_git_link`]): the user's git directory is mounted
    /// read-only there.
    pub user_git: Option<PathBuf>,
    /// The attempt's own directory for temporary files, shown at `/tmp` in the view (see the
    /// module docs); none: the host's `/tmp`. Not where `/tmp` is a symbolic link or not a
    /// directory, nor where the repository is `/tmp` or holds it.
    pub tmp: Option<PathBuf>,
    /// Directories under the host's `/tmp` that stay visible (and writable, as on the host) in
    /// a view with its own `/tmp`, at most [`RepoView::MAX_KEPT`]: see
    /// [`RepoView::keep_named_in`].
    pub kept: Vec<PathBuf>,
}

impl RepoView {
    /// How many [`RepoView::writable`] directories a view can have.
    pub const MAX_WRITABLE: usize = 4;

    /// How many [`RepoView::kept`] directories a view can have.
    pub const MAX_KEPT: usize = 8;

    /// Keeps visible, in a view with its own `/tmp`, the directories under the host's `/tmp`
    /// that the agent's environment `env` names: each value, and each `:`-separated part of
    /// it, that is an absolute path below `/tmp` and exists (a directory itself, else the
    /// directory holding it: a configuration file's, an `SSH_AUTH_SOCK`'s). Not a path through
    /// a symbolic link (its clone would show the link's target where the view shows the
    /// workspace: the user's repository itself, if the link leads there), nor one inside the
    /// repository (the workspace is there); one holding the repository only where the
    /// repository's path has no link either (the workspace is then mounted over the
    /// repository in it). Nested ones are kept once; beyond [`RepoView::MAX_KEPT`] the
    /// shortest paths win.
    pub fn keep_named_in<'a>(
        &mut self,
        env: impl IntoIterator<Item = (&'a std::ffi::OsStr, &'a std::ffi::OsStr)>,
    ) {
        let tmp = Path::new(TMP);
        let repo = std::path::absolute(&self.repo).unwrap_or_else(|_| self.repo.clone());
        let repo_is_real = std::fs::canonicalize(&repo).is_ok_and(|real| real == repo);
        let mut found: Vec<PathBuf> = Vec::new();
        for (_, value) in env {
            for part in value.as_bytes().split(|&b| b == b':') {
                let path = Path::new(std::ffi::OsStr::from_bytes(part));
                if !path.starts_with(tmp)
                    || path == tmp
                    || path.components().any(|c| {
                        !matches!(
                            c,
                            std::path::Component::RootDir | std::path::Component::Normal(_)
                        )
                    })
                {
                    continue;
                }
                let dir = match std::fs::metadata(path) {
                    Ok(m) if m.is_dir() => path.to_path_buf(),
                    Ok(_) => match path.parent() {
                        Some(parent) if parent != tmp => parent.to_path_buf(),
                        _ => continue,
                    },
                    Err(_) => continue,
                };
                let unaliased = std::fs::canonicalize(&dir).is_ok_and(|real| real == dir);
                if unaliased && !dir.starts_with(&repo) && (repo_is_real || !repo.starts_with(&dir))
                {
                    found.push(dir);
                }
            }
        }
        found.append(&mut self.kept);
        // Shortest first: a directory comes before anything below it.
        found.sort_by(|a, b| a.as_os_str().len().cmp(&b.as_os_str().len()).then(a.cmp(b)));
        for dir in found {
            if self.kept.len() < Self::MAX_KEPT && !self.kept.iter().any(|k| dir.starts_with(k)) {
                self.kept.push(dir);
            }
        }
    }

    /// The view of `repo` (its top level).
    pub fn new(repo: impl Into<PathBuf>) -> Self {
        Self {
            repo: repo.into(),
            writable: Vec::new(),
            user_git: None,
            tmp: None,
            kept: Vec::new(),
        }
    }
}

/// The paths of one view as C strings, made before the fork.
pub(crate) struct Prepared {
    repo: CString,
    workspace: CString,
    /// The workspace's path as the mount table shows it (symbolic links resolved).
    keep: CString,
    forge: CString,
    forge_in_view: CString,
    user: CString,
    user_git: CString,
    /// The user's git directory, when the link to it exists.
    git_dir: Option<CString>,
    /// The same, when it lies outside the repository (made read-only where it is).
    git_outside: bool,
    /// Directories under `.forge` that stay writable.
    writable: Vec<CString>,
    /// The attempt's directory shown at `/tmp`, the directories to make in it before anything
    /// is mounted below `/tmp` (the repository's path and its parents, top down; the same for
    /// a git directory outside the repository and for each kept directory), and the host's
    /// directories kept visible ([`RepoView::kept`]).
    tmp: Option<(CString, Vec<CString>, Vec<CString>)>,
    /// The mount namespace the view starts from (see [`refresh_template`]), held while the
    /// view is set up.
    template: Option<Arc<OwnedFd>>,
}

fn c(path: &Path) -> std::io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("the path `{}` contains a NUL byte", path.display()),
        )
    })
}

impl Prepared {
    /// The paths for showing `workspace` at the view's repository path.
    pub(crate) fn new(view: &RepoView, workspace: &Path) -> std::io::Result<Self> {
        let repo = std::path::absolute(&view.repo)?;
        let forge = repo.join(crate::store::FORGE_DIR);
        let link = view
            .user_git
            .clone()
            .unwrap_or_else(|| forge.join("user/git"));
        let git_dir = std::fs::read_link(&link)
            .ok()
            .map(|target| link.parent().unwrap_or(&forge).join(target));
        let git_outside = git_dir.as_ref().is_some_and(|g| !g.starts_with(&repo));
        if view.writable.len() > RepoView::MAX_WRITABLE {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "at most {} writable directories in a repository view, {} asked for",
                    RepoView::MAX_WRITABLE,
                    view.writable.len()
                ),
            ));
        }
        let writable = view
            .writable
            .iter()
            .map(|w| std::path::absolute(w).and_then(|w| c(&w)))
            .collect::<std::io::Result<Vec<_>>>()?;
        // Only on a real directory `/tmp` (a mount does not follow a link), and not where the
        // workspace would hide it.
        let real_tmp = std::fs::symlink_metadata(TMP).is_ok_and(|m| m.is_dir());
        let tmp = match &view.tmp {
            Some(dir) if real_tmp && !Path::new(TMP).starts_with(&repo) => {
                let mut made = Vec::new();
                let outside = git_dir.as_deref().filter(|_| git_outside);
                let kept: Vec<&Path> = view
                    .kept
                    .iter()
                    .take(RepoView::MAX_KEPT)
                    .map(PathBuf::as_path)
                    .collect();
                for path in [Some(repo.as_path()), outside]
                    .into_iter()
                    .flatten()
                    .chain(kept.iter().copied())
                {
                    if let Ok(below) = path.strip_prefix(TMP) {
                        let mut at = PathBuf::from(TMP);
                        for part in below.components() {
                            at.push(part);
                            let dir = c(&at)?;
                            if !made.contains(&dir) {
                                made.push(dir);
                            }
                        }
                    }
                }
                let kept = kept
                    .into_iter()
                    .map(c)
                    .collect::<std::io::Result<Vec<_>>>()?;
                Some((c(&std::path::absolute(dir)?)?, made, kept))
            }
            _ => None,
        };
        Ok(Self {
            writable,
            tmp,
            repo: c(&repo)?,
            workspace: c(workspace)?,
            keep: c(&std::fs::canonicalize(workspace).unwrap_or_else(|_| workspace.to_path_buf()))?,
            forge: c(&forge)?,
            forge_in_view: c(&forge)?,
            user: c(link.parent().unwrap_or(&forge))?,
            user_git: c(&link)?,
            git_dir: git_dir.as_deref().map(c).transpose()?,
            git_outside,
            template: TEMPLATE.lock().fd.clone(),
        })
    }

    /// The repository path (the agent's working directory in the view).
    pub(crate) fn repo(&self) -> &std::ffi::CStr {
        &self.repo
    }

    /// The workspace's own path (outside the view).
    pub(crate) fn workspace(&self) -> &std::ffi::CStr {
        &self.workspace
    }

    /// `TMPDIR` in the view: `/tmp` when the attempt's own directory is mounted there.
    pub(crate) fn tmp_dir(&self) -> Option<&'static str> {
        self.tmp.as_ref().map(|_| TMP)
    }
}

/// Where the attempt's own directory for temporary files shows in its view.
const TMP: &str = "/tmp";

/// Makes `cmd` set the view up in its leader (after any hook that enters the workspace's own
/// namespaces, before the PID namespace's: see `contain.rs`).
//
// `pre_exec` runs between `fork` and `exec`, where only async-signal-safe work is allowed: the
// closure makes system calls (`unshare`, `mount`, `open_tree`, `move_mount`, `mount_setattr`,
// `mkdir`, `chdir`, `open`/`write`/`close`) on C strings prepared before the fork; it allocates
// nothing and takes no lock.
pub(crate) fn enter_view(cmd: &mut Command, view: Prepared) {
    // Where the workspace is outside the view: git's fsmonitor hook finds the overlay's upper
    // directory beside it (see `forge_staging::WORKSPACE_HOST_VAR`).
    cmd.env(
        forge_staging::WORKSPACE_HOST_VAR,
        std::ffi::OsStr::from_bytes(view.workspace.to_bytes()),
    );
    let hook = move || -> std::io::Result<()> {
        // SAFETY: see the comment above the function.
        unsafe { set_up(&view) }
    };
    // SAFETY: see the comment above the function.
    unsafe {
        cmd.pre_exec(hook);
    }
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOUNT_ATTR_RDONLY: u64 = 0x1;

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A detached copy of the mount tree at `path` (with everything mounted below it).
unsafe fn clone_tree(path: &std::ffi::CStr) -> std::io::Result<libc::c_int> {
    // SAFETY: `path` is NUL-terminated; the call only returns a descriptor.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | AT_RECURSIVE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    libc::c_int::try_from(fd).map_err(|_| std::io::Error::other("open_tree: bad descriptor"))
}

/// Makes the detached tree `fd` read-only, every mount of it.
unsafe fn read_only(fd: libc::c_int) -> std::io::Result<()> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `attr` outlives the call, its size is passed along, the path is an empty string.
    let done = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | AT_RECURSIVE,
            &raw const attr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if done < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Mounts the detached tree `fd` at `path`, and closes `fd`.
unsafe fn attach(fd: libc::c_int, path: &std::ffi::CStr) -> std::io::Result<()> {
    // SAFETY: both strings are NUL-terminated; `fd` is ours to close.
    unsafe {
        let done = libc::syscall(
            libc::SYS_move_mount,
            fd,
            c"".as_ptr(),
            libc::AT_FDCWD,
            path.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        );
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if done < 0 { Err(err) } else { Ok(()) }
    }
}

/// The directory whose mounts [`detach_forge_mounts`] drops: Forge's own directory in any
/// repository (workspaces of this run's other attempts, of other runs, gate workspaces).
const FORGE_MOUNTS: &[u8] = b"/.forge/";

/// Detaches from this (private) mount namespace every mount below a `.forge/` directory but
/// the one at `keep` (the attempt's own workspace).
///
/// The namespace starts as a copy of the host's mounts, workspaces of other attempts and runs
/// included. When one of them is disposed of on the host, its mount point directory is removed,
/// which detaches the copy here too, at any moment. A sandbox inside the agent that walks the
/// mount table and remounts every entry (Codex's `bwrap`) then fails on the entry that vanished
/// under it ("Can't bind mount … No such file or directory"). Without those mounts the table
/// the agent sees changes only by its own doing, and sibling workspaces are not visible.
///
/// Best effort: a mount that cannot be detached (locked in a user namespace) stays, and an
/// unreadable table leaves everything as it is. Async-signal-safe: it reads
/// `/proc/self/mountinfo` into stack buffers, noting the mount points to drop, then calls
/// `umount2` on each (detaching while reading would make the kernel skip lines). One read
/// suffices unless more mount points were found than [`FOUND`] holds; then the table is read
/// again, at most eight times. (Each read formats every mount's options, long for overlays
/// with many layers: at 50 attempts at once, reading it twice per attempt was ~4 % of the
/// attempts' CPU.)
unsafe fn detach_forge_mounts(keep: &[u8]) {
    for _ in 0..8 {
        // SAFETY: a NUL-terminated path; the descriptor is closed below.
        let fd = unsafe {
            libc::open(
                c"/proc/self/mountinfo".as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return;
        }
        let mut chunk = [0u8; 8192];
        let mut line = [0u8; 8192];
        let mut len = 0;
        // The mount points to drop, each NUL-terminated, one after another.
        let mut found = [0u8; FOUND];
        let mut used = 0;
        let mut overflow = false;
        loop {
            // SAFETY: `chunk` is writable for its length.
            let n = unsafe { libc::read(fd, chunk.as_mut_ptr().cast(), chunk.len()) };
            // SAFETY: reading this thread's errno.
            if n < 0 && unsafe { *libc::__errno_location() } == libc::EINTR {
                continue;
            }
            let Ok(n) = usize::try_from(n) else { break };
            if n == 0 {
                break;
            }
            for &byte in &chunk[..n] {
                if byte == b'\n' {
                    match forge_mount_point(&line[..len], keep, &mut found[used..]) {
                        Noted::Detach(size) => used += size,
                        Noted::Keep => {}
                        Noted::Full => overflow = true,
                    }
                    len = 0;
                } else if len < line.len() {
                    // A longer line keeps its start, where the mount point is.
                    line[len] = byte;
                    len += 1;
                }
            }
        }
        // SAFETY: `fd` is ours.
        unsafe { libc::close(fd) };
        let mut detached = 0;
        let mut at = 0;
        while at < used {
            let end = found[at..used]
                .iter()
                .position(|b| *b == 0)
                .map_or(used, |i| at + i);
            // SAFETY: `found[at..=end]` is a NUL-terminated path (see `forge_mount_point`).
            if unsafe {
                libc::umount2(
                    found[at..].as_ptr().cast(),
                    libc::MNT_DETACH | libc::UMOUNT_NOFOLLOW,
                )
            } == 0
            {
                detached += 1;
            }
            at = end + 1;
        }
        if !overflow || detached == 0 {
            return;
        }
    }
}

/// Room for the mount points one read of `mountinfo` notes (on the stack; ~180 workspaces'
/// paths of ~90 bytes: more take another read).
const FOUND: usize = 16 * 1024;

/// What [`forge_mount_point`] made of a line.
#[derive(Debug, PartialEq, Eq)]
enum Noted {
    /// A mount to detach: this many bytes (its path and a NUL) were written.
    Detach(usize),
    /// A mount to keep (or a line that names none).
    Keep,
    /// The mount point does not fit in what is left: another read notes it.
    Full,
}

/// The mount point of one `mountinfo` line, decoded and NUL-terminated into `out` when it lies
/// below [`FORGE_MOUNTS`] and is not `keep`.
fn forge_mount_point(line: &[u8], keep: &[u8], out: &mut [u8]) -> Noted {
    // `id parent major:minor root mount-point …`, the mount point with `\ooo` escapes.
    let Some(point) = line.split(|&b| b == b' ').nth(4) else {
        return Noted::Keep;
    };
    let mut n = 0;
    let mut i = 0;
    while i < point.len() {
        if n + 1 >= out.len() {
            // Too long for what is left: a later read notes it (or, longer than any buffer,
            // it stays).
            return if out.len() == FOUND {
                Noted::Keep
            } else {
                Noted::Full
            };
        }
        let escaped = point
            .get(i + 1..i + 4)
            .filter(|d| point[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        if let Some(d) = escaped {
            let value =
                u32::from(d[0] - b'0') << 6 | u32::from(d[1] - b'0') << 3 | u32::from(d[2] - b'0');
            let Ok(byte) = u8::try_from(value) else {
                return Noted::Keep;
            };
            out[n] = byte;
            i += 4;
        } else {
            out[n] = point[i];
            i += 1;
        }
        n += 1;
    }
    if out[..n] == *keep
        || !out[..n]
            .windows(FORGE_MOUNTS.len())
            .any(|w| w == FORGE_MOUNTS)
    {
        return Noted::Keep;
    }
    out[n] = 0;
    Noted::Detach(n + 1)
}

/// The template of this process's views: a private copy of its mount namespace without any
/// mount below a `.forge/` directory (see [`refresh_template`]).
static TEMPLATE: parking_lot::Mutex<Template> =
    parking_lot::Mutex::new(Template { runs: 0, fd: None });

/// The template and how many runs of this process use it.
struct Template {
    runs: usize,
    fd: Option<Arc<OwnedFd>>,
}

/// Makes a new template for the views set up from now on: a private mount namespace copied from
/// this process's, from which every mount below a `.forge/` directory (the workspaces of
/// running attempts, of other runs, leftovers) has been detached once. An attempt's view then
/// starts from a copy of it: without the template each attempt copied the host's namespace,
/// other attempts' overlays included, and detached those one by one (an `umount` each, each
/// waiting for an RCU grace period: at 50 attempts at once, ~70 ms of the run's start). Host
/// mounts made later are not in it: [`crate::ExecutionManager::run`] makes a new one at the
/// start of every run and drops it at the end (a copy of a mount keeps its file system in use
/// until then, as each attempt's own namespace does while it runs). Where it cannot be made,
/// or entered (no privilege to make a mount namespace here; a leader already in a workspace
/// holder's user namespace), views copy the host's namespace as before.
pub(crate) fn refresh_template() {
    let made = make_template().map(Arc::new);
    let mut template = TEMPLATE.lock();
    template.runs += 1;
    template.fd = made;
}

/// Ends a run's use of the template (see [`refresh_template`]): once no run uses it, views set
/// up from then on copy the host's namespace. A view being set up keeps the template it
/// started from.
pub(crate) fn drop_template() {
    let mut template = TEMPLATE.lock();
    template.runs = template.runs.saturating_sub(1);
    if template.runs == 0 {
        template.fd = None;
    }
}

/// What the template's maker (a clone sharing this process's memory and descriptor table)
/// hands back: the namespace's descriptor, or -1.
struct Maker {
    fd: AtomicI32,
}

fn make_template() -> Option<OwnedFd> {
    let maker = Maker {
        fd: AtomicI32::new(-1),
    };
    let stack = super::contain::Stack::new(128 * 1024);
    // SAFETY: `make_template_main` runs on its own stack in this memory while this thread
    // sleeps (`CLONE_VFORK`); it writes the atomic of `maker` (alive: owned here) only.
    let (pid, _) = unsafe {
        super::contain::clone_with_signals_blocked(
            make_template_main,
            stack.top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_FILES | libc::SIGCHLD,
            (&raw const maker).cast_mut().cast(),
        )
    };
    if pid <= 0 {
        // `CLONE_VM` refused (a seccomp filter, an old kernel): no template.
        return None;
    }
    let pid = rustix::process::Pid::from_raw(pid)?;
    while let Err(rustix::io::Errno::INTR) =
        rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty())
    {}
    let fd = maker.fd.load(Ordering::SeqCst);
    // SAFETY: the maker opened it in this process's (shared) descriptor table; owned here now.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The template's maker (see [`refresh_template`]). Async-signal-safe.
extern "C" fn make_template_main(data: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `data` is the `Maker` of the sleeping thread; system calls on static strings.
    unsafe {
        let maker = &*data.cast::<Maker>();
        super::contain::default_handlers(&super::spawn::RESET_SIGNALS);
        if libc::unshare(libc::CLONE_NEWNS) < 0
            || libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) < 0
        {
            libc::_exit(1);
        }
        detach_forge_mounts(b"");
        let fd = libc::open(
            c"/proc/self/ns/mnt".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        maker.fd.store(fd, Ordering::SeqCst);
        libc::_exit(0)
    }
}

/// Sets the view up in the calling process (the attempt's leader): a private mount namespace
/// in which the repository path shows the workspace (see the module docs). Async-signal-safe.
pub(super) unsafe fn set_up(view: &Prepared) -> std::io::Result<()> {
    // SAFETY: async-signal-safe system calls on prepared values (see `enter_view`).
    unsafe {
        let (uid, gid) = (libc::getuid(), libc::getgid());
        // From the template where there is one: the workspace's tree cloned here first (the
        // template has no workspace mounted), then a copy of the template entered, and the
        // workspace's own mount put back where it is on the host: git's fsmonitor hook finds
        // its upper directory from there (`FORGE_WORKSPACE_HOST`).
        let mut workspace = -1;
        if let Some(template) = &view.template {
            let own = clone_tree(&view.workspace)?;
            if libc::setns(template.as_raw_fd(), libc::CLONE_NEWNS) == 0 {
                // In the template itself now: a copy of it, or nothing.
                super::contain::check(libc::unshare(libc::CLONE_NEWNS))?;
                attach(own, &view.keep)?;
                // A clone of a shared mount is its peer: the workspace's, made private here
                // (everything else in the copy is already), so that nothing mounted in this
                // view spreads to the host's overlay, nor the other way.
                super::contain::check(libc::mount(
                    std::ptr::null(),
                    view.keep.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ))?;
                workspace = clone_tree(&view.keep)?;
            } else {
                libc::close(own);
            }
        }
        if workspace < 0 {
            if libc::unshare(libc::CLONE_NEWNS) < 0 {
                super::contain::check(libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS))?;
                super::contain::map_ids(uid, gid, false)?;
            }
            // Nothing mounted here may propagate back to the host.
            super::contain::check(libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            // Clone every tree while the paths still show the originals.
            workspace = clone_tree(&view.workspace)?;
            // Then drop the other workspaces' mounts from this namespace (see
            // `detach_forge_mounts`), so the `.forge` clone below carries none of them either.
            // The attempt's own stays where it is (see above).
            detach_forge_mounts(view.keep.to_bytes());
        }
        let forge = clone_tree(&view.forge)?;
        read_only(forge)?;
        let (git, git_here) = match &view.git_dir {
            Some(dir) => {
                let git = clone_tree(dir)?;
                read_only(git)?;
                let here = if view.git_outside {
                    let here = clone_tree(dir)?;
                    read_only(here)?;
                    Some((here, dir))
                } else {
                    None
                };
                (Some(git), here)
            }
            None => (None, None),
        };
        let mut writable = [-1; RepoView::MAX_WRITABLE];
        for (fd, dir) in writable.iter_mut().zip(&view.writable) {
            *fd = clone_tree(dir)?;
        }
        // Every tree is cloned: the attempt's own `/tmp` first, since everything else may be
        // mounted below it (then on directories made in it).
        mount_private_tmp(view)?;
        if let Some((here, dir)) = git_here {
            attach(here, dir)?;
        }
        attach(workspace, &view.repo)?;
        if libc::mkdir(view.forge_in_view.as_ptr(), 0o755) < 0
            && *libc::__errno_location() != libc::EEXIST
        {
            return Err(std::io::Error::last_os_error());
        }
        attach(forge, &view.forge_in_view)?;
        if let Some(git) = git {
            super::contain::check(libc::mount(
                c"tmpfs".as_ptr(),
                view.user.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                c"mode=755,size=64k".as_ptr().cast(),
            ))?;
            super::contain::check(libc::mkdir(view.user_git.as_ptr(), 0o755))?;
            attach(git, &view.user_git)?;
        }
        for (fd, dir) in writable.iter().zip(&view.writable) {
            attach(*fd, dir)?;
        }
        super::contain::check(libc::chdir(view.repo.as_ptr()))?;
        // Root (here) could unmount the view: lock it by entering a user namespace of its own,
        // whose copies of these mounts cannot be taken apart.
        if libc::geteuid() == 0 {
            let (uid, gid) = (libc::getuid(), libc::getgid());
            super::contain::check(libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS))?;
            super::contain::map_ids(uid, gid, true)?;
        }
        Ok(())
    }
}

/// Mounts the attempt's own directory at `/tmp` (see [`RepoView::tmp`]), makes the directories
/// mounts below `/tmp` need in it, and puts the host's kept directories back. Called by
/// [`set_up`] once every other tree is cloned. Async-signal-safe.
unsafe fn mount_private_tmp(view: &Prepared) -> std::io::Result<()> {
    let Some((dir, made, kept)) = &view.tmp else {
        return Ok(());
    };
    // SAFETY: async-signal-safe system calls on prepared values (see `enter_view`).
    unsafe {
        // Best effort: a directory gone since (a restarted SSH agent's) is left out.
        let mut fds = [-1; RepoView::MAX_KEPT];
        for (fd, path) in fds.iter_mut().zip(kept) {
            *fd = clone_tree(path).unwrap_or(-1);
        }
        let tmp = clone_tree(dir)?;
        attach(tmp, c"/tmp")?;
        for path in made {
            if libc::mkdir(path.as_ptr(), 0o755) < 0 && *libc::__errno_location() != libc::EEXIST {
                return Err(std::io::Error::last_os_error());
            }
        }
        for (fd, path) in fds.iter().zip(kept) {
            if *fd >= 0 {
                attach(*fd, path)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{FOUND, Noted, forge_mount_point};

    fn line(point: &str) -> Vec<u8> {
        format!("36 35 0:40 / {point} rw,relatime shared:1 - overlay overlay rw,lowerdir=/a:/b")
            .into_bytes()
    }

    #[test]
    fn mount_points_below_forge_are_noted_decoded_but_not_the_kept_one() {
        let mut out = [0u8; 64];
        let sibling = line("/r/.forge/runs/x/work/s\\0401/merged");
        assert_eq!(
            forge_mount_point(&sibling, b"/keep", &mut out),
            Noted::Detach(33)
        );
        assert_eq!(&out[..33], b"/r/.forge/runs/x/work/s 1/merged\0");
        let kept = line("/r/.forge/runs/x/work/s2/merged");
        assert_eq!(
            forge_mount_point(&kept, b"/r/.forge/runs/x/work/s2/merged", &mut out),
            Noted::Keep
        );
        assert_eq!(
            forge_mount_point(&line("/proc"), b"/keep", &mut out),
            Noted::Keep
        );
        assert_eq!(
            forge_mount_point(b"garbage", b"/keep", &mut out),
            Noted::Keep
        );
    }

    #[test]
    fn a_mount_point_that_does_not_fit_asks_for_another_read() {
        let mut out = [0u8; 10];
        let sibling = line("/r/.forge/runs/x/merged");
        assert_eq!(forge_mount_point(&sibling, b"/keep", &mut out), Noted::Full);
        // Longer than an empty buffer: it stays (no read could note it).
        let long = format!("/r/.forge/{}", "x".repeat(FOUND));
        let mut all = vec![0u8; FOUND];
        assert_eq!(
            forge_mount_point(&line(&long), b"/keep", &mut all),
            Noted::Keep
        );
    }

    #[test]
    fn the_directories_the_environment_names_under_tmp_are_kept_once() {
        use std::ffi::OsStr;
        let root = tempfile::Builder::new()
            .prefix("forge-kept")
            .tempdir_in("/tmp")
            .unwrap();
        let r = root.path();
        for d in [
            "home/.config",
            "bin",
            "sock",
            "repo/inner",
            "n0",
            "n1",
            "n2",
            "n3",
            "n4",
            "n5",
            "n6",
            "n7",
            "n8",
        ] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        std::fs::write(r.join("sock/agent.1"), "").unwrap();
        let s = |p: &str| r.join(p).into_os_string();
        let env = [
            ("HOME", s("home")),
            ("XDG_CONFIG_HOME", s("home/.config")),
            (
                "PATH",
                format!("/usr/bin:{}:/tmp", r.join("bin").display()).into(),
            ),
            ("SSH_AUTH_SOCK", s("sock/agent.1")),
            ("MISSING", s("nothing/here")),
            ("INSIDE", s("repo/inner")),
            ("UP", s("home/../bin")),
            ("TMPDIR", "/tmp".into()),
            ("OTHER", "/var/tmp/x".into()),
        ];
        let mut view = super::RepoView::new(r.join("repo"));
        view.keep_named_in(env.iter().map(|(k, v)| (OsStr::new(k), v.as_os_str())));
        assert_eq!(
            view.kept,
            vec![r.join("bin"), r.join("home"), r.join("sock")]
        );
        // At most MAX_KEPT, shortest first; the root of the test itself covers everything.
        let many: Vec<_> = (0..9).map(|i| s(&format!("n{i}"))).collect();
        let mut view = super::RepoView::new("/elsewhere");
        view.keep_named_in(many.iter().map(|v| (OsStr::new("V"), v.as_os_str())));
        assert_eq!(view.kept.len(), super::RepoView::MAX_KEPT);
        let root_too = r.as_os_str().to_owned();
        view.keep_named_in([(OsStr::new("ROOT"), root_too.as_os_str())]);
        assert_eq!(view.kept, vec![r.to_path_buf()]);
        // A path through a link is never kept (its clone would show the link's target, the
        // repository itself here); a directory holding the repository is.
        std::os::unix::fs::symlink(r.join("repo"), r.join("alias")).unwrap();
        std::os::unix::fs::symlink(r.join("home"), r.join("home-link")).unwrap();
        let mut view = super::RepoView::new(r.join("repo"));
        let (alias, link, holder) = (s("alias"), s("home-link"), r.as_os_str().to_owned());
        view.keep_named_in([
            (OsStr::new("A"), alias.as_os_str()),
            (OsStr::new("B"), link.as_os_str()),
        ]);
        assert_eq!(view.kept, Vec::<std::path::PathBuf>::new());
        view.keep_named_in([(OsStr::new("H"), holder.as_os_str())]);
        assert_eq!(view.kept, vec![r.to_path_buf()]);
    }
}
