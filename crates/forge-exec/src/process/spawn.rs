//! The attempt's fast spawn: `posix_spawn` called directly, the child waited on through a pidfd.
//!
//! `std::process::Command` also ends in `posix_spawn`, but once any variable is added to the
//! child's environment it rebuilds the *whole* environment on every spawn (a map of every
//! variable, then a C string per entry: ~200 allocations for 40 variables), and each argument,
//! the program and the directory become fresh C strings on the way. Here the child's `envp` is
//! the parent's own `environ` entries (pointers, nothing copied) minus the overridden names,
//! followed by the overrides; the only allocations are the overrides' and the arguments' C
//! strings and two pointer arrays. The child gets what std would give it: its own process
//! group, an empty signal mask, `SIGPIPE` back to its default (Rust ignores it), standard
//! streams `dup2`ed into place, and its working directory (`posix_spawn_file_actions_addchdir_np`,
//! glibc ≥ 2.29).
//!
//! Whatever this path does not cover returns `Ok(None)` and the caller takes std's path: a
//! `PATH` lookup when the overrides change `PATH` (`posix_spawnp` searches the parent's), a
//! relative program with a `/` (it is ambiguous against the new working directory), a NUL
//! byte anywhere (std reports it), a standard stream on descriptors 0–2, and kernels without
//! pidfds.
//!
//! The child is reaped through its pidfd, which the runtime's reactor reports readable when
//! the child exits (`waitid(P_PIDFD)`), so there is no `SIGCHLD` handler and no shared reaper.
//! A child dropped before it was reaped has its group killed and is reaped off the runtime's
//! threads: nothing is left behind, not even a zombie.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, OsStr, c_char, c_int};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::process::{Pid, WaitId, WaitIdOptions};
use tokio::io::unix::AsyncFd;

use super::CommandSpec;

/// Set once `pidfd_open` is found missing: from then on every spawn takes std's path.
static NO_PIDFD: AtomicBool = AtomicBool::new(false);

/// Whether pidfds were found missing (every spawn then takes std's path).
pub(crate) fn pidfd_missing() -> bool {
    NO_PIDFD.load(Ordering::Relaxed)
}

/// How a process ended: its exit code or the signal that killed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exit {
    pub(crate) code: Option<i32>,
    pub(crate) signal: Option<i32>,
}

/// A child spawned by [`spawn`], leader of its own process group.
pub(crate) struct DirectChild {
    pid: Pid,
    /// `None` once reaped.
    pidfd: Option<AsyncFd<OwnedFd>>,
    exit: Option<Exit>,
}

impl DirectChild {
    /// The child's pid (and its group's id).
    pub(crate) fn pid(&self) -> Pid {
        self.pid
    }

    /// Waits for the child to exit and reaps it. Cancel-safe: dropping the future loses
    /// nothing, and after the first completion it returns the same exit at once.
    pub(crate) async fn wait(&mut self) -> std::io::Result<Exit> {
        loop {
            if let Some(exit) = self.exit {
                return Ok(exit);
            }
            let Some(pidfd) = &self.pidfd else {
                return Err(std::io::Error::other("child already reaped"));
            };
            let mut ready = pidfd.readable().await?;
            let exit = reap(pidfd.get_ref().as_fd(), WaitIdOptions::NOHANG)?;
            if exit.is_none() {
                ready.clear_ready();
                continue;
            }
            drop(ready);
            self.exit = exit;
            self.pidfd = None;
        }
    }
}

impl Drop for DirectChild {
    fn drop(&mut self) {
        let Some(pidfd) = self.pidfd.take() else {
            return;
        };
        // Not reaped: the attempt was abandoned mid-way. Its group goes, and the leader is
        // reaped without blocking the runtime (SIGKILL may take a moment to land).
        let _ = rustix::process::kill_process_group(self.pid, rustix::process::Signal::KILL);
        let pidfd = pidfd.into_inner();
        if let Ok(Some(_)) = reap(pidfd.as_fd(), WaitIdOptions::NOHANG) {
            return;
        }
        let wait = move || {
            let _ = reap(pidfd.as_fd(), WaitIdOptions::empty());
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(wait)),
            Err(_) => wait(),
        }
    }
}

/// `waitid(P_PIDFD, …, WEXITED | options)`, retried on `EINTR`.
fn reap(pidfd: BorrowedFd<'_>, options: WaitIdOptions) -> std::io::Result<Option<Exit>> {
    loop {
        match rustix::process::waitid(WaitId::PidFd(pidfd), WaitIdOptions::EXITED | options) {
            Ok(status) => {
                return Ok(status.map(|s| Exit {
                    code: s.exit_status(),
                    signal: s.terminating_signal(),
                }));
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Spawns `spec` with `overrides` added to its environment (after `spec.env`; later entries
/// win) and `stdio` as its standard input, output and error, in a new process group. Returns
/// `Ok(None)` when this path does not apply (see the module docs): nothing was spawned.
pub(crate) fn spawn(
    spec: &CommandSpec,
    overrides: &[(&OsStr, &OsStr)],
    stdio: [BorrowedFd<'_>; 3],
) -> std::io::Result<Option<DirectChild>> {
    if NO_PIDFD.load(Ordering::Relaxed)
        || stdio.iter().any(|fd| fd.as_raw_fd() <= 2)
        || tokio::runtime::Handle::try_current().is_err()
    {
        return Ok(None);
    }
    let program = spec.program.as_bytes();
    let search = !program.contains(&b'/');
    let all: Vec<(&OsStr, &OsStr)> = spec
        .env
        .iter()
        .map(|(k, v)| (k.as_os_str(), v.as_os_str()))
        .chain(overrides.iter().copied())
        .collect();
    if (search && all.iter().any(|(k, _)| *k == "PATH")) || (!search && !program.starts_with(b"/"))
    {
        return Ok(None);
    }
    let c = |bytes: &[u8]| CString::new(bytes).ok();
    let (Some(program), Some(cwd)) = (c(program), c(spec.cwd.as_os_str().as_bytes())) else {
        return Ok(None);
    };
    let mut c_args = Vec::with_capacity(spec.args.len());
    for arg in &spec.args {
        let Some(arg) = c(arg.as_bytes()) else {
            return Ok(None);
        };
        c_args.push(arg);
    }
    let Some(vars) = env_entries(&all) else {
        return Ok(None);
    };

    let mut argv: Vec<*mut c_char> = Vec::with_capacity(c_args.len() + 2);
    argv.push(program.as_ptr().cast_mut());
    argv.extend(c_args.iter().map(|a| a.as_ptr().cast_mut()));
    argv.push(std::ptr::null_mut());
    let names: Vec<&[u8]> = vars.iter().map(|(name, _)| *name).collect();
    let mut envp = inherited_env(&names);
    envp.extend(vars.iter().map(|(_, entry)| entry.as_ptr().cast_mut()));
    envp.push(std::ptr::null_mut());

    let pid = posix_spawn(&program, search, &cwd, stdio, &argv, &envp)?;
    watch(pid).map(Some)
}

/// The environment changes `all` (later entries winning) as `NAME=value` C strings with their
/// names, the last of each name only; `None` when a name is empty or holds `=`, or a string a
/// NUL byte (std reports those).
pub(crate) fn env_entries<'a>(all: &[(&'a OsStr, &OsStr)]) -> Option<Vec<(&'a [u8], CString)>> {
    let mut vars = Vec::with_capacity(all.len());
    for (i, (name, value)) in all.iter().enumerate() {
        let name = name.as_bytes();
        if name.is_empty() || name.contains(&b'=') {
            return None;
        }
        if all[i + 1..]
            .iter()
            .any(|(later, _)| later.as_bytes() == name)
        {
            continue;
        }
        let mut entry = Vec::with_capacity(name.len() + value.len() + 2);
        entry.extend_from_slice(name);
        entry.push(b'=');
        entry.extend_from_slice(value.as_bytes());
        vars.push((name, CString::new(entry).ok()?));
    }
    Some(vars)
}

/// Waits on the child `pid` of this process through a pidfd. Without a pidfd the child is
/// killed (its group) and reaped, and the error returned.
pub(crate) fn watch(pid: Pid) -> std::io::Result<DirectChild> {
    let pidfd = match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(e) => {
            if e == rustix::io::Errno::NOSYS {
                NO_PIDFD.store(true, Ordering::Relaxed);
            }
            // Without a pidfd the child cannot be waited on here: end it and reap it by pid.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
            return Err(e.into());
        }
    };
    // SAFETY: an `OwnedFd` is an open descriptor that stays open, and the same, until it is
    // dropped or taken back with `into_inner`.
    match unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) } {
        Ok(pidfd) => Ok(DirectChild {
            pid,
            pidfd: Some(pidfd),
            exit: None,
        }),
        Err(e) => {
            let (pidfd, e) = e.into_parts();
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            let _ = reap(pidfd.as_fd(), WaitIdOptions::empty());
            Err(e)
        }
    }
}

/// The parent's environment entries whose names are not in `overridden`, as pointers into
/// `environ` itself.
pub(crate) fn inherited_env(overridden: &[&[u8]]) -> Vec<*mut c_char> {
    let mut envp = Vec::with_capacity(64 + overridden.len());
    // SAFETY: `environ` is a null-terminated array of NUL-terminated strings. It is only
    // changed by `setenv`/`putenv`, which Rust marks unsafe (`std::env::set_var`) on the
    // promise that no other thread reads the environment meanwhile, the same promise every
    // `getenv` relies on. The pointers are used only until `posix_spawn` has returned, during
    // which this thread does not change the environment.
    unsafe {
        let mut entry = libc::environ;
        if entry.is_null() {
            return envp;
        }
        while !(*entry).is_null() {
            let bytes = CStr::from_ptr(*entry).to_bytes();
            let name = bytes.split(|b| *b == b'=').next().unwrap_or(bytes);
            if !overridden.contains(&name) {
                envp.push(*entry);
            }
            entry = entry.add(1);
        }
    }
    envp
}

/// Calls `posix_spawn` (`posix_spawnp` when `search`) with the attributes of an attempt.
fn posix_spawn(
    program: &CStr,
    search: bool,
    cwd: &CStr,
    stdio: [BorrowedFd<'_>; 3],
    argv: &[*mut c_char],
    envp: &[*mut c_char],
) -> std::io::Result<Pid> {
    let fds = stdio.map(|fd| fd.as_raw_fd());
    PREPARED.with(|cell| {
        let mut own = None;
        let mut cached = cell.try_borrow_mut();
        let slot = match cached.as_deref_mut() {
            Ok(slot) => slot,
            Err(_) => &mut own,
        };
        if !slot
            .as_ref()
            .is_some_and(|p| p.fds == fds && p.cwd.as_c_str() == cwd)
        {
            *slot = Some(Prepared::new(fds, cwd)?);
        }
        let Some(prepared) = slot.as_ref() else {
            return Err(std::io::Error::other("spawn attributes missing"));
        };
        let spawn = if search {
            libc::posix_spawnp
        } else {
            libc::posix_spawn
        };
        let mut pid: libc::pid_t = 0;
        // SAFETY: the file actions and attributes were initialised by `Prepared::new` and are
        // only read by the call; `argv` and `envp` are null-terminated arrays of pointers to
        // NUL-terminated strings that outlive the call (`program`, the arguments, the
        // overrides and the `environ` entries, see `inherited_env`); the descriptors the file
        // actions name are the ones in `stdio`, open for the duration of the call.
        check(unsafe {
            spawn(
                &raw mut pid,
                program.as_ptr(),
                &raw const prepared.actions.0,
                &raw const prepared.attr.0,
                argv.as_ptr(),
                envp.as_ptr(),
            )
        })?;
        Pid::from_raw(pid).ok_or_else(|| std::io::Error::other("posix_spawn returned no pid"))
    })
}

/// Signals every spawned agent starts with at their default action (see `Prepared::new`).
pub(crate) const RESET_SIGNALS: [libc::c_int; 3] = [libc::SIGPIPE, libc::SIGINT, libc::SIGTERM];

thread_local! {
    /// The last spawn's file actions and attributes, reused while the descriptors and the
    /// directory are the same (the usual case: pipes get the lowest free numbers, so one
    /// attempt after another gets the same ones). Building them costs allocations and six
    /// `getrlimit` calls (glibc checks each descriptor against the limit).
    static PREPARED: std::cell::RefCell<Option<Prepared>> = const { std::cell::RefCell::new(None) };
}

/// What `posix_spawn` is given besides the program: the file actions (standard streams
/// `dup2`ed into place, the working directory) and the attributes (own process group, empty
/// signal mask, default `SIGPIPE`).
struct Prepared {
    fds: [c_int; 3],
    cwd: CString,
    actions: Actions,
    attr: Attr,
}

impl Prepared {
    fn new(fds: [c_int; 3], cwd: &CStr) -> std::io::Result<Self> {
        // SAFETY: each object is initialised by its `_init` before any other use and then
        // owned by a guard that destroys it exactly once, also on early return; the sigsets
        // are initialised by `sigemptyset` before they are read.
        unsafe {
            let mut actions = MaybeUninit::<libc::posix_spawn_file_actions_t>::uninit();
            check(libc::posix_spawn_file_actions_init(actions.as_mut_ptr()))?;
            let mut actions = Actions(actions.assume_init());
            let mut attr = MaybeUninit::<libc::posix_spawnattr_t>::uninit();
            check(libc::posix_spawnattr_init(attr.as_mut_ptr()))?;
            let mut attr = Attr(attr.assume_init());
            for (fd, target) in fds.iter().zip(0..) {
                check(libc::posix_spawn_file_actions_adddup2(
                    &raw mut actions.0,
                    *fd,
                    target,
                ))?;
            }
            // glibc copies the path.
            check(libc::posix_spawn_file_actions_addchdir_np(
                &raw mut actions.0,
                cwd.as_ptr(),
            ))?;
            let mut empty = MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigemptyset(empty.as_mut_ptr());
            let empty = empty.assume_init();
            // Default handling in the child for SIGPIPE and for Forge's own stop signals, even
            // when Forge itself was started with them ignored (a background job of a script,
            // `nohup`): an agent that ignored SIGINT would only end at the SIGTERM escalation.
            // SIGHUP and SIGQUIT stay as inherited (`nohup` means the whole job).
            let mut pipe = empty;
            for sig in RESET_SIGNALS {
                libc::sigaddset(&raw mut pipe, sig);
            }
            check(libc::posix_spawnattr_setsigmask(
                &raw mut attr.0,
                &raw const empty,
            ))?;
            check(libc::posix_spawnattr_setsigdefault(
                &raw mut attr.0,
                &raw const pipe,
            ))?;
            check(libc::posix_spawnattr_setpgroup(&raw mut attr.0, 0))?;
            #[allow(clippy::cast_possible_truncation)] // the flags are small constants
            let flags = (libc::POSIX_SPAWN_SETPGROUP
                | libc::POSIX_SPAWN_SETSIGMASK
                | libc::POSIX_SPAWN_SETSIGDEF) as libc::c_short;
            check(libc::posix_spawnattr_setflags(&raw mut attr.0, flags))?;
            Ok(Self {
                fds,
                cwd: cwd.to_owned(),
                actions,
                attr,
            })
        }
    }
}

/// A libc return code as a result.
fn check(code: c_int) -> std::io::Result<()> {
    if code == 0 {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error(code))
    }
}

/// Destroys the file actions when dropped.
struct Actions(libc::posix_spawn_file_actions_t);

impl Drop for Actions {
    fn drop(&mut self) {
        // SAFETY: initialised by `posix_spawn_file_actions_init`, destroyed only here.
        unsafe {
            libc::posix_spawn_file_actions_destroy(&raw mut self.0);
        }
    }
}

/// Destroys the spawn attributes when dropped.
struct Attr(libc::posix_spawnattr_t);

impl Drop for Attr {
    fn drop(&mut self) {
        // SAFETY: initialised by `posix_spawnattr_init`, destroyed only here.
        unsafe {
            libc::posix_spawnattr_destroy(&raw mut self.0);
        }
    }
}
