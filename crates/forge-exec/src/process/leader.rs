//! The contained spawn without a copy of Forge: the attempt's leader is a
//! `clone(CLONE_VM | CLONE_VFORK)` of the spawning thread, as `posix_spawn` makes its child.
//!
//! `contain.rs` describes the attempt's process tree: a leader that sets the attempt up (its
//! cgroups, the repository view, a new PID namespace), an init (PID 1 of that namespace) and
//! the agent. Through `std::process::Command` the leader is a `fork` of Forge: the kernel copies
//! Forge's page tables for it, both processes then take a copy-on-write fault on every page
//! either writes, and the copy is torn down when the leader ends — the larger Forge's address
//! space, the more each attempt costs, and the spawning thread's other work waits meanwhile.
//!
//! Here no process of the attempt copies Forge's memory:
//!
//! 1. The spawning thread blocks every signal (no handler may run in a process that shares its
//!    memory) and clones the **leader** into its own memory with `CLONE_VFORK`: the thread
//!    sleeps until the leader exits. The leader resets every handled signal to its default,
//!    joins the cgroups, puts the standard streams in place, changes to the working directory,
//!    sets the view up and unshares the PID namespace — the same steps, on the same prepared
//!    values, as the `pre_exec` hooks of the std route.
//! 2. The leader clones the **init** with `CLONE_VM | CLONE_VFORK | CLONE_PARENT`: PID 1 of
//!    the new namespace and a child of the spawning thread, not of the leader. The init makes
//!    its own process group (the attempt's), asks for `SIGKILL` when Forge's thread dies,
//!    mounts the namespace's `/proc` when asked, and `exec`s the **init program**
//!    (`init/main.rs`, a few kilobytes without the standard library, built by `build.rs` and
//!    held in a sealed memory file by `init_program`), passing it the status pipe, Forge's
//!    report pipe, the agent's `PATH` candidates, `argv` and, as its own environment, the
//!    agent's.
//! 3. The init program forks the **agent**, which empties its signal mask and `execve`s the
//!    program; it reports the `exec` (or its error) to the leader on the status pipe, closes
//!    every other descriptor but the one to Forge, and the leader exits: the spawning thread
//!    wakes, reaps the leader and waits on the init through a pidfd.
//! 4. The init program waits for the agent while reaping the namespace's orphans, writes the
//!    agent's wait status to Forge's pipe and exits, which ends the namespace (the kernel kills
//!    what is left in it). Forge maps that status back to the agent's exit.
//!
//! No process of the attempt may share Forge's address space beyond the spawn itself: the
//! agent can see (and, as the same user, trace) its namespace's PID 1, and a memory limit's OOM
//! killer may pick it. A forked init (a copy of Forge, step 2 without the `exec`: it clones the
//! agent itself) would be safe too, but the kernel copies Forge's page tables for it, and both
//! take a copy-on-write fault on every page either writes while the attempt runs; it remains
//! the route where the init program is not built (a target it has no system calls for) or the
//! host refuses to run a memory file. Against the std route (a forked leader that lives as
//! long as the attempt and relays its status) this saves std's command set-up (its environment
//! rebuilt per spawn, its `exec` error pipe) and one process per attempt.
//!
//! A host that refuses `CLONE_VM` (a seccomp filter, an old kernel) gets the std route.
#![allow(unsafe_code)]

use std::ffi::{CString, OsStr, OsString, c_char, c_int};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt as _;
use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};

use super::contain::{self, NsRoute, Stack};
use super::init_program;
use super::spawn::{self, DirectChild, Exit};
use super::view;

/// Size of the leader's stack: the view's set-up keeps two 8-KiB buffers and a path on it.
const LEADER_STACK: usize = 256 * 1024;
/// Size of the init's stack: a handful of system calls in shallow frames.
const INIT_STACK: usize = 64 * 1024;
/// Size of the agent's stack before `execve`.
const AGENT_STACK: usize = 64 * 1024;

/// The step of the leader or the init that failed (for the spawn's error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
enum Step {
    None = 0,
    Cgroup = 1,
    Stdio = 2,
    Chdir = 3,
    View = 4,
    Namespace = 5,
    Init = 6,
    Exec = 7,
    /// The init ended before it reported the `exec` (killed).
    Killed = 8,
    /// The init could not `exec` the init program.
    InitProgram = 9,
}

impl Step {
    fn from_raw(raw: i32) -> Self {
        match raw {
            1 => Self::Cgroup,
            2 => Self::Stdio,
            3 => Self::Chdir,
            4 => Self::View,
            5 => Self::Namespace,
            6 => Self::Init,
            7 => Self::Exec,
            8 => Self::Killed,
            9 => Self::InitProgram,
            _ => Self::None,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Self::None | Self::Exec => "",
            Self::Cgroup => "joining the attempt's cgroup",
            Self::Stdio => "setting up the agent's standard streams",
            Self::Chdir => "changing to the workspace",
            Self::View => "showing the workspace at the repository path",
            Self::Namespace => "entering a new PID namespace",
            Self::Init => "starting the namespace's init",
            Self::Killed => "starting the agent",
            Self::InitProgram => "starting the namespace's init program",
        }
    }
}

/// Everything the leader, the init and the agent use, prepared before the clone. The leader
/// and the init (up to its `exec`) read the prepared fields and write the atomic ones while the
/// spawning thread sleeps; a forked init and its agent use their own copy.
pub(super) struct Shared {
    /// Where the agent's program may be, in `PATH` order (one path when it names a directory).
    candidates: Vec<CString>,
    /// `/bin/sh`'s `argv` for a candidate that is a script without `#!` (`ENOEXEC`), as
    /// `execvp` retries it: `sh`, the candidate (stored by the agent), the arguments, null.
    sh_argv: Vec<std::sync::atomic::AtomicPtr<c_char>>,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
    /// The strings `argv` and `envp` point at (besides `environ`'s own entries).
    _strings: Vec<CString>,
    cwd: CString,
    stdio: [RawFd; 3],
    cgroups: Vec<RawFd>,
    view: Option<view::Prepared>,
    route: NsRoute,
    own_proc: bool,
    /// Forge's pid, whose end the init checks for once it asked for its death signal.
    forge: libc::pid_t,
    leader_stack: Stack,
    init_stack: Stack,
    agent_stack: Stack,
    /// Set by the leader: the status pipe's write end, the pidfd of Forge.
    status: AtomicI32,
    forge_pidfd: AtomicI32,
    /// Results: the failed step and its error, the init's pid.
    failed: AtomicI32,
    error: AtomicI32,
    init: AtomicI32,
    /// The agent's `exec` error (0 while none; in the init's copy).
    exec_error: AtomicI32,
    /// The write end of the pipe on which the init reports the agent's wait status to Forge.
    report: RawFd,
    /// The init program's memory file (`init_program`), or -1: the init is a copy of Forge.
    init_program: RawFd,
    /// The init program's `argv` (see `init/main.rs`); its second entry points at
    /// `status_arg`, where the leader writes the status pipe's descriptor.
    init_argv: Vec<*const c_char>,
    status_arg: Box<[AtomicU8; 12]>,
    /// The init program's `exec` error (0 while none).
    init_exec_error: AtomicI32,
}

// SAFETY: the raw pointers point into `_strings` (owned here) or at `environ`'s entries, which
// are only read; shared use is reading the prepared fields and the atomics.
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

impl Shared {
    fn fail(&self, step: Step, error: c_int) {
        self.error.store(error, Ordering::SeqCst);
        self.failed.store(step as i32, Ordering::SeqCst);
    }
}

/// An attempt spawned here: the init, waited on through its pidfd, and the pipe on which it
/// reports the agent's wait status.
pub(super) struct ContainedChild {
    init: DirectChild,
    report: OwnedFd,
}

impl ContainedChild {
    /// The init's pid, which is also the attempt's process group.
    pub(super) fn pid(&self) -> rustix::process::Pid {
        self.init.pid()
    }

    /// Waits for the attempt to end: the agent's exit, or the signal that ended the init.
    pub(super) async fn wait(&mut self) -> std::io::Result<Exit> {
        let exit = self.init.wait().await?;
        if exit.signal.is_some() {
            return Ok(exit);
        }
        // The init is gone: its word is in the pipe, or it never wrote one.
        let mut word = [0u8; 4];
        let mut at = 0;
        while at < word.len() {
            match rustix::io::read(&self.report, &mut word[at..]) {
                Ok(0) | Err(_) => return Ok(exit),
                Ok(n) => at += n,
            }
        }
        let status = c_int::from_ne_bytes(word);
        Ok(if libc::WIFSIGNALED(status) {
            Exit {
                code: None,
                signal: Some(libc::WTERMSIG(status)),
            }
        } else {
            Exit {
                code: Some(libc::WEXITSTATUS(status)),
                signal: None,
            }
        })
    }
}

/// What [`spawn`] is asked to start.
pub(super) struct Request<'a> {
    pub(super) program: &'a OsStr,
    pub(super) args: &'a [OsString],
    pub(super) cwd: &'a std::path::Path,
    /// The environment's changes, later entries winning.
    pub(super) env: Vec<(&'a OsStr, &'a OsStr)>,
    pub(super) stdio: [BorrowedFd<'a>; 3],
    pub(super) cgroups: Vec<OwnedFd>,
    pub(super) view: Option<view::Prepared>,
    pub(super) route: NsRoute,
}

/// Spawns the attempt as the module docs say. `Ok(None)`: this route does not apply here
/// (nothing is left running); the caller takes the std route.
pub(super) fn spawn(mut request: Request<'_>) -> std::io::Result<Option<ContainedChild>> {
    if spawn::pidfd_missing()
        || request.stdio.iter().any(|fd| fd.as_raw_fd() <= 2)
        || tokio::runtime::Handle::try_current().is_err()
    {
        return Ok(None);
    }
    let view = request.view.take();
    // The init's report to this process: the read end stays here, the write end goes to the
    // init only (close-on-exec: the agent does not inherit it).
    let (report, report_in) = std::io::pipe()?;
    let Some(shared) = prepare(&request, view, report_in.as_raw_fd()) else {
        return Ok(None);
    };
    let data = (&raw const shared).cast_mut().cast::<libc::c_void>();
    // SAFETY: `leader_main` runs on its own prepared stack in this memory while this thread
    // sleeps (`CLONE_VFORK`), reads `shared` (alive: owned here) and writes its atomics only.
    let (leader, clone_error) = unsafe {
        contain::clone_with_signals_blocked(
            leader_main,
            shared.leader_stack.top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            data,
        )
    };
    drop(request.cgroups);
    drop(report_in);
    if leader <= 0 {
        // `CLONE_VM` refused (a seccomp filter, an old kernel): the std route. Out of
        // processes or memory: the spawn's error.
        return if matches!(clone_error, libc::EINVAL | libc::EPERM | libc::ENOSYS) {
            Ok(None)
        } else {
            Err(std::io::Error::from_raw_os_error(clone_error))
        };
    }
    let leader = rustix::process::Pid::from_raw(leader)
        .ok_or_else(|| std::io::Error::other("the attempt's leader has no pid"))?;
    let leader_ended = loop {
        match rustix::process::waitpid(Some(leader), rustix::process::WaitOptions::empty()) {
            Err(rustix::io::Errno::INTR) => {}
            Ok(Some((_, status))) => break status.exit_status() == Some(0),
            _ => break false,
        }
    };
    let init = rustix::process::Pid::from_raw(shared.init.load(Ordering::SeqCst));
    let mut step = Step::from_raw(shared.failed.load(Ordering::SeqCst));
    if step == Step::None && !leader_ended {
        // The leader was killed before the init reported: nothing says the agent runs.
        step = Step::Killed;
    }
    if step != Step::None {
        if let Some(init) = init {
            let _ = rustix::process::kill_process(init, rustix::process::Signal::KILL);
            while let Err(rustix::io::Errno::INTR) =
                rustix::process::waitpid(Some(init), rustix::process::WaitOptions::empty())
            {
            }
        }
        let errno = shared.error.load(Ordering::SeqCst);
        if step == Step::Init && matches!(errno, libc::EINVAL | libc::EPERM | libc::ENOSYS) {
            return Ok(None);
        }
        if step == Step::InitProgram
            && matches!(
                errno,
                libc::EACCES | libc::EPERM | libc::ENOSYS | libc::ENOEXEC | libc::EINVAL
            )
        {
            // This host does not run programs from memory files: the std route now, a copy of
            // Forge as the init from the next attempt on.
            init_program::refused();
            return Ok(None);
        }
        let error = std::io::Error::from_raw_os_error(errno);
        return Err(match step {
            Step::Exec | Step::None => error,
            Step::Killed => std::io::Error::other(format!(
                "{}: the attempt's init was killed before the agent ran",
                step.what()
            )),
            _ => std::io::Error::new(error.kind(), format!("{}: {error}", step.what())),
        });
    }
    let Some(init) = init else {
        return Err(std::io::Error::other("the attempt's init has no pid"));
    };
    Ok(Some(ContainedChild {
        init: spawn::watch(init)?,
        report: report.into(),
    }))
}

/// The values of [`Shared`] for `request`; `None` when a string holds a NUL byte (std reports
/// it).
fn prepare(request: &Request<'_>, view: Option<view::Prepared>, report: RawFd) -> Option<Shared> {
    let c = |bytes: &[u8]| CString::new(bytes).ok();
    let program = request.program.as_bytes();
    let (Some(program_c), Some(cwd)) = (c(program), c(request.cwd.as_os_str().as_bytes())) else {
        return None;
    };
    let mut strings = Vec::with_capacity(request.args.len() + request.env.len());
    for arg in request.args {
        strings.push(c(arg.as_bytes())?);
    }
    let arg_count = strings.len();
    let vars = spawn::env_entries(&request.env)?;
    let names: Vec<&[u8]> = vars.iter().map(|(name, _)| *name).collect();
    let path = vars
        .iter()
        .find(|(name, _)| *name == b"PATH")
        .map(|(_, entry)| entry.as_bytes()[b"PATH=".len()..].to_vec());
    strings.extend(vars.into_iter().map(|(_, entry)| entry));
    // Where `execvp` would look, in the agent's own `PATH` (glibc's default without one).
    let candidates = if program.contains(&b'/') {
        vec![program_c.clone()]
    } else {
        let path = path
            .or_else(|| std::env::var_os("PATH").map(|p| p.as_bytes().to_vec()))
            .unwrap_or_else(|| b"/bin:/usr/bin".to_vec());
        let mut candidates = Vec::new();
        for dir in path.split(|b| *b == b':') {
            let mut full = Vec::with_capacity(dir.len() + program.len() + 1);
            // An empty entry is the working directory.
            if !dir.is_empty() {
                full.extend_from_slice(dir);
                full.push(b'/');
            }
            full.extend_from_slice(program);
            if let Some(full) = c(&full) {
                candidates.push(full);
            }
        }
        candidates
    };
    let mut argv = Vec::with_capacity(arg_count + 2);
    argv.push(program_c.as_ptr());
    argv.extend(strings[..arg_count].iter().map(|s| s.as_ptr()));
    argv.push(std::ptr::null());
    let sh_argv = [c"/bin/sh".as_ptr(), std::ptr::null()]
        .into_iter()
        .chain(argv[1..].iter().copied())
        .map(|p| std::sync::atomic::AtomicPtr::new(p.cast_mut()))
        .collect();
    let mut envp: Vec<*const c_char> = spawn::inherited_env(&names)
        .into_iter()
        .map(<*mut c_char>::cast_const)
        .collect();
    envp.extend(strings[arg_count..].iter().map(|s| s.as_ptr()));
    envp.push(std::ptr::null());
    let status_arg: Box<[AtomicU8; 12]> = Box::default();
    let own_proc = view.is_some();
    let init_program = init_program::fd();
    let mut init_argv = Vec::new();
    if init_program.is_some() {
        // See `init/main.rs`: `forge-init STATUS REPORT N CANDIDATE... PROGRAM ARG...`, with
        // the agent's environment as its own (never in `argv`: every user can read that).
        let numbers = [
            c(report.to_string().as_bytes())?,
            c(candidates.len().to_string().as_bytes())?,
        ];
        init_argv.extend([c"forge-init".as_ptr(), status_arg.as_ptr().cast::<c_char>()]);
        init_argv.extend(numbers.iter().map(|n| n.as_ptr()));
        init_argv.extend(candidates.iter().map(|c| c.as_ptr()));
        init_argv.extend(argv.iter().copied());
        strings.extend(numbers);
    }
    strings.push(program_c);
    Some(Shared {
        candidates,
        sh_argv,
        agent_stack: Stack::new(AGENT_STACK + 8 * argv.len()),
        argv,
        envp,
        _strings: strings,
        cwd,
        stdio: request.stdio.map(|fd| fd.as_raw_fd()),
        cgroups: request.cgroups.iter().map(AsRawFd::as_raw_fd).collect(),
        own_proc,
        view,
        route: request.route,
        // SAFETY: `getpid` has no preconditions.
        forge: unsafe { libc::getpid() },
        leader_stack: Stack::new(LEADER_STACK),
        init_stack: Stack::new(INIT_STACK),
        status: AtomicI32::new(-1),
        forge_pidfd: AtomicI32::new(-1),
        failed: AtomicI32::new(0),
        error: AtomicI32::new(0),
        init: AtomicI32::new(0),
        exec_error: AtomicI32::new(0),
        report,
        init_program: init_program.unwrap_or(-1),
        init_argv,
        status_arg,
        init_exec_error: AtomicI32::new(0),
    })
}

/// The errno of the last failed call (the leader runs while the spawning thread sleeps).
fn errno() -> c_int {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// The leader (see the module docs). Runs in Forge's memory while the spawning thread sleeps.
extern "C" fn leader_main(data: *mut libc::c_void) -> c_int {
    // SAFETY: `data` is the spawn's `Shared`, alive while the spawning thread sleeps; every call
    // is async-signal-safe and allocates nothing.
    unsafe {
        let s = &*data.cast::<Shared>();
        // No handler of Forge's may run in a process sharing its memory, nor be inherited.
        contain::default_handlers(&spawn::RESET_SIGNALS);
        for fd in &s.cgroups {
            if libc::write(*fd, b"0".as_ptr().cast(), 1) != 1 {
                s.fail(Step::Cgroup, errno());
                libc::_exit(1);
            }
        }
        for (fd, target) in s.stdio.iter().zip(0..) {
            if libc::dup2(*fd, target) < 0 {
                s.fail(Step::Stdio, errno());
                libc::_exit(1);
            }
        }
        if libc::chdir(s.cwd.as_ptr()) < 0 {
            s.fail(Step::Chdir, errno());
            libc::_exit(1);
        }
        if let Some(view) = &s.view
            && let Err(e) = view::set_up(view)
        {
            s.fail(Step::View, e.raw_os_error().unwrap_or(libc::EIO));
            libc::_exit(1);
        }
        if let Err(e) = contain::unshare_pid(s.route) {
            s.fail(Step::Namespace, e.raw_os_error().unwrap_or(libc::EIO));
            libc::_exit(1);
        }
        // Forge's end is checked by the init once it asked for its death signal.
        let pidfd = libc::syscall(libc::SYS_pidfd_open, s.forge, 0);
        s.forge_pidfd
            .store(c_int::try_from(pidfd).unwrap_or(-1), Ordering::SeqCst);
        let mut fds = [0 as c_int; 2];
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) < 0 {
            s.fail(Step::Init, errno());
            libc::_exit(1);
        }
        let [read_end, write_end] = fds;
        s.status.store(write_end, Ordering::SeqCst);
        // PID 1 of the namespace, a child of the spawning thread (this process ends next): the
        // init program, `exec`ed by a clone in this memory (this process sleeps until then), or
        // else a copy of Forge. Never Forge's memory past the `exec` (see the module docs).
        let init = if s.init_program >= 0 {
            write_decimal(&s.status_arg, write_end);
            libc::clone(
                exec_init_main,
                s.init_stack.top,
                libc::CLONE_VM
                    | libc::CLONE_VFORK
                    | libc::CLONE_PARENT
                    | libc::CLONE_PARENT_SETTID
                    | libc::SIGCHLD,
                data,
                s.init.as_ptr(),
            )
        } else {
            libc::clone(
                init_main,
                s.init_stack.top,
                libc::CLONE_PARENT | libc::CLONE_PARENT_SETTID | libc::SIGCHLD,
                data,
                s.init.as_ptr(),
            )
        };
        if init < 0 {
            s.fail(Step::Init, errno());
            libc::_exit(1);
        }
        // The kernel wrote the pid there already (`CLONE_PARENT_SETTID`), before the init ran:
        // should this process be killed while it waits, Forge still finds the init to end.
        s.init.store(init, Ordering::SeqCst);
        let exec_error = s.init_exec_error.load(Ordering::SeqCst);
        if exec_error != 0 {
            s.fail(Step::InitProgram, exec_error);
            libc::_exit(1);
        }
        libc::close(write_end);
        match contain::read_word(read_end) {
            Some(0) => {}
            Some(error) => s.fail(Step::Exec, error),
            None => s.fail(Step::Killed, 0),
        }
        libc::_exit(0)
    }
}

/// Writes `value` (not negative) into `buf` as a NUL-terminated decimal (async-signal-safe).
fn write_decimal(buf: &[AtomicU8; 12], value: c_int) {
    let mut digits = [0u8; 11];
    let (mut rest, mut n) = (value.unsigned_abs(), 0);
    loop {
        digits[n] = b'0' + u8::try_from(rest % 10).unwrap_or(0);
        n += 1;
        rest /= 10;
        if rest == 0 || n == digits.len() {
            break;
        }
    }
    for (slot, digit) in buf.iter().zip(digits[..n].iter().rev()) {
        slot.store(*digit, Ordering::SeqCst);
    }
    buf[n].store(0, Ordering::SeqCst);
}

/// The first steps of the init on either route: its own process group (the attempt's), and
/// `SIGKILL` when Forge's spawning thread dies; ends the process if Forge has already died.
unsafe fn tie_to_forge(s: &Shared) {
    // SAFETY: async-signal-safe calls on this process and on Forge's pidfd.
    unsafe {
        libc::setpgid(0, 0);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        // Forge may have died before the death signal was asked for.
        let pidfd = s.forge_pidfd.load(Ordering::SeqCst);
        if pidfd < 0 {
            libc::_exit(137);
        }
        let mut poll = libc::pollfd {
            fd: pidfd,
            events: libc::POLLIN,
            revents: 0,
        };
        if libc::poll(&raw mut poll, 1, 0) != 0 {
            libc::_exit(137);
        }
    }
}

/// The init, cloned into Forge's memory while the leader sleeps, up to its `exec` of the init
/// program (`init/main.rs`), which does the rest: the status pipe and Forge's report pipe stay
/// open across the `exec`, nothing else of Forge's does (all close-on-exec).
extern "C" fn exec_init_main(data: *mut libc::c_void) -> c_int {
    // SAFETY: `data` is the spawn's `Shared`, alive while the leader and the spawning thread
    // sleep; async-signal-safe calls only, nothing allocated.
    unsafe {
        let s = &*data.cast::<Shared>();
        tie_to_forge(s);
        // Here, not in the program: an `exec` by a user other than root drops every
        // capability, and with them the right to mount.
        if s.own_proc {
            contain::mount_own_proc();
        }
        for fd in [s.status.load(Ordering::SeqCst), s.report] {
            libc::fcntl(fd, libc::F_SETFD, 0);
        }
        libc::syscall(
            libc::SYS_execveat,
            s.init_program,
            c"".as_ptr(),
            s.init_argv.as_ptr(),
            s.envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
        s.init_exec_error.store(errno(), Ordering::SeqCst);
        libc::_exit(127)
    }
}

/// The init (see the module docs), in its own copy of Forge's memory.
extern "C" fn init_main(data: *mut libc::c_void) -> c_int {
    // SAFETY: `data` is this process's copy of the spawn's `Shared`; every call is
    // async-signal-safe and allocates nothing.
    unsafe {
        let s = &*data.cast::<Shared>();
        let status = s.status.load(Ordering::SeqCst);
        tie_to_forge(s);
        if s.own_proc {
            contain::mount_own_proc();
        }
        // Every signal stays blocked here (the spawning thread blocked them); the agent
        // empties its mask.
        let pid = contain::clone_agent(agent_main, s.agent_stack.top, data);
        let error = if pid < 0 {
            errno()
        } else {
            s.exec_error.load(Ordering::SeqCst)
        };
        if error != 0 {
            if pid > 0 {
                contain::reap_until(pid);
            }
            contain::write_word(status, error);
            libc::_exit(127);
        }
        contain::close_all_but(&[status, s.report]);
        contain::write_word(status, 0);
        libc::close(status);
        let agent = contain::reap_until(pid);
        contain::write_word(s.report, agent);
        // Leaving ends the namespace: the kernel kills what is left in it.
        libc::_exit(0)
    }
}

/// The agent, cloned by the init into its memory while the init waits (`CLONE_VFORK`):
/// an empty signal mask (its handlers are the defaults already), then `execve` of each
/// candidate path in turn, as `execvp` searches `PATH`.
extern "C" fn agent_main(data: *mut libc::c_void) -> c_int {
    // SAFETY: `data` is the spawn's `Shared`; the init and the spawning thread sleep until this
    // process `exec`s or exits; async-signal-safe calls only.
    unsafe {
        let s = &*data.cast::<Shared>();
        let mut empty = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigemptyset(empty.as_mut_ptr());
        libc::sigprocmask(libc::SIG_SETMASK, empty.as_ptr(), std::ptr::null_mut());
        let mut error = libc::ENOENT;
        let mut denied = false;
        for path in &s.candidates {
            libc::execve(path.as_ptr(), s.argv.as_ptr(), s.envp.as_ptr());
            match errno() {
                libc::ENOEXEC => {
                    // A script without `#!`: `execvp` runs it with `/bin/sh`.
                    s.sh_argv[1].store(path.as_ptr().cast_mut(), Ordering::SeqCst);
                    libc::execve(
                        c"/bin/sh".as_ptr(),
                        s.sh_argv.as_ptr().cast::<*const c_char>(),
                        s.envp.as_ptr(),
                    );
                    error = errno();
                    denied = false;
                    break;
                }
                libc::EACCES => denied = true,
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
                other => {
                    error = other;
                    denied = false;
                    break;
                }
            }
        }
        if denied {
            error = libc::EACCES;
        }
        s.exec_error.store(error, Ordering::SeqCst);
        libc::_exit(127)
    }
}
