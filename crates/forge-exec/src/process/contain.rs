//! Containing an attempt's process tree: its own PID namespace, its own cgroup, limits.
//!
//! **PID namespace.** The attempt's leader (the process Forge spawns and waits on) enters a new
//! PID namespace and starts a tiny init (PID 1 there), which starts the agent itself. Forge's
//! address space is copied once per attempt. Where the spawn needs no hook of the caller's (the
//! manager's agents), the leader is a `clone(CLONE_VM | CLONE_VFORK)` of the spawning thread
//! that ends once the agent runs, and the init, a fork, becomes Forge's own child (see
//! `leader.rs`). Otherwise the leader is std's `fork` and lives as long as the attempt, and the
//! init and the agent are clones sharing its memory (see [`enter_pid_namespace`]). The init
//! waits for the agent only; when the agent is gone the init exits, and the kernel kills every
//! other process of the namespace (`setsid` children, double-forked daemons) before the
//! leader sees the init's end. So when Forge sees its child exit, nothing of the attempt is
//! alive and no pipe is held open. The agent keeps the attempt's process group, so Forge's
//! SIGINT → SIGTERM → SIGKILL escalation reaches it as before; the leader ignores the soft
//! signals (it only relays the agent's status) and SIGKILL ends the init with all of it.
//!
//! Without root the namespace comes with a user namespace mapping the user to itself. Where
//! neither is allowed, the attempt runs in its process group only (see [`pid_namespace_support`]).
//!
//! **Cgroups.** When a task asks for `memory` or `cpus`, the attempt gets a cgroup per needed
//! controller, on whichever hierarchy offers it: cgroup v2 where the controller can be enabled
//! below Forge's own cgroup, else the v1 hierarchy that mounts it (hosts with a hybrid layout
//! have both). The leader joins it before anything else, so the whole tree is in it; the cgroup
//! is swept (every member killed) and removed when the attempt ends.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::fs::File;
use std::io::Write as _;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Resource limits of one attempt, enforced by a cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// Most memory (bytes) the attempt's processes may use together; beyond it the kernel's
    /// OOM killer ends one of them and the attempt fails with that reason.
    pub memory: Option<u64>,
    /// CPU time as a number of CPUs (`1.5` = one and a half cores' worth per period).
    pub cpus: Option<f64>,
}

impl Limits {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.memory.is_some() || self.cpus.is_some()
    }
}

/// What this process may do to put an attempt in its own PID namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PidNamespaceSupport {
    /// `unshare(CLONE_NEWPID)` works as is (root, or already in a user namespace we own).
    Direct,
    /// Only together with a new user namespace (unprivileged).
    WithUserNamespace,
    /// Neither: attempts run in their process group only. Says why.
    Unavailable(String),
}

/// Probes once per process (by spawning `sh -c :` the way an attempt would be) whether PID
/// namespaces can be had, and how.
pub fn pid_namespace_support() -> &'static PidNamespaceSupport {
    static SUPPORT: OnceLock<PidNamespaceSupport> = OnceLock::new();
    SUPPORT.get_or_init(|| {
        let probe = |route: NsRoute| {
            let mut cmd = Command::new("sh");
            cmd.args(["-c", ":"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            enter_pid_namespace(&mut cmd, route, false)?;
            cmd.status()
        };
        match probe(NsRoute::Direct) {
            Ok(s) if s.success() => PidNamespaceSupport::Direct,
            first => match probe(NsRoute::WithUser) {
                Ok(s) if s.success() => PidNamespaceSupport::WithUserNamespace,
                second => PidNamespaceSupport::Unavailable(format!(
                    "a new PID namespace was refused ({}), also with a user namespace ({})",
                    describe(&first),
                    describe(&second)
                )),
            },
        }
    })
}

fn describe(r: &std::io::Result<std::process::ExitStatus>) -> String {
    match r {
        Ok(s) => s.to_string(),
        Err(e) => e.to_string(),
    }
}

/// How the leader enters its PID namespace.
#[derive(Debug, Clone, Copy)]
pub(crate) enum NsRoute {
    /// `unshare(CLONE_NEWPID)` only.
    Direct,
    /// That, or with a new user namespace where it alone is refused.
    WithUser,
}

impl NsRoute {
    /// The route [`pid_namespace_support`] found, if any.
    pub(crate) fn supported() -> Result<Self, String> {
        match pid_namespace_support() {
            PidNamespaceSupport::Direct => Ok(Self::Direct),
            PidNamespaceSupport::WithUserNamespace => Ok(Self::WithUser),
            PidNamespaceSupport::Unavailable(why) => Err(why.clone()),
        }
    }
}

/// Makes `cmd` run in a new PID namespace under a minimal init (see the module docs). Call it
/// after every other `pre_exec` hook and after the command's environment is complete: the
/// agent's program, arguments and environment are taken from `cmd` here, and the agent `exec`s
/// them itself (std's own `exec` runs only if the leader's hook fails).
///
/// Only the leader is a copy of Forge's address space (std's `fork`): the init is a
/// `clone(CLONE_VM)` of the leader on a stack prepared here, and the agent a
/// `clone(CLONE_VM | CLONE_VFORK)` of the init on another, so the page tables are copied once
/// per attempt, not three times, and no copy-on-write fault follows the later two. The leader
/// and the init share memory but touch only their own stacks and [`Agent`]'s status fields.
//
// `pre_exec` runs between `fork` and `exec`, where only async-signal-safe work is allowed:
// this closure calls `unshare`, `clone`, `waitpid`, `read`/`write`/`open`/`close`, `signal`,
// `kill` and `_exit` on values prepared before the fork; it allocates nothing and takes no lock.
///
/// With `own_proc` (the leader is in a private mount namespace: see `view.rs`), the init mounts
/// the namespace's own `/proc` before the agent starts.
///
/// An `exec` failure of the agent (a missing program) is the spawn's error, as with std.
pub(crate) fn enter_pid_namespace(
    cmd: &mut Command,
    route: NsRoute,
    own_proc: bool,
) -> std::io::Result<()> {
    // SAFETY: `getpid` has no preconditions.
    let forge = unsafe { libc::getpid() };
    let mut agent = Box::new(Agent::new(cmd, own_proc)?);
    let hook = move || -> std::io::Result<()> {
        // SAFETY: see the comment above the function; every call is async-signal-safe.
        unsafe {
            // Should Forge die (a crash, SIGKILL), the leader dies with it, and the init with
            // the leader: nothing of the attempt outlives the run. (The signal follows the
            // thread that spawned: a runtime worker, which lives as long as the runtime.)
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
            if libc::getppid() != forge {
                libc::_exit(137);
            }
            unshare_pid(route)?;
            let mut fds = [0 as libc::c_int; 2];
            check(libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC))?;
            let [read_end, write_end] = fds;
            agent.status = write_end;
            let top = agent.init_stack.top;
            let data: *mut Agent = &raw mut *agent;
            // PID 1 of the namespace, in this process's memory (see `init_main`). A kernel
            // (or a seccomp filter) that refuses `CLONE_VM` here gets a copy, as with `fork`.
            let mut init = libc::clone(init_main, top, libc::CLONE_VM | libc::SIGCHLD, data.cast());
            if init < 0 {
                init = libc::clone(init_main, top, libc::SIGCHLD, data.cast());
            }
            if init < 0 {
                let err = std::io::Error::last_os_error();
                libc::close(read_end);
                libc::close(write_end);
                return Err(err);
            }
            libc::close(write_end);
            // First word: whether the agent's `exec` worked (0) or its error.
            let Some(started) = read_word(read_end) else {
                // The init was killed before the agent ran (SIGKILL to the group).
                let status = wait_for(init);
                if libc::WIFSIGNALED(status) {
                    reraise(libc::WTERMSIG(status));
                }
                libc::_exit(127)
            };
            if started != 0 {
                // Std reports it as the spawn's error, on the pipe this hook still holds.
                wait_for(init);
                libc::close(read_end);
                return Err(std::io::Error::from_raw_os_error(started));
            }
            // The leader: relays the agent's status, holds nothing else open (std's exec-error
            // pipe included, so the spawn returns at once).
            close_all_but(&[read_end]);
            for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
                libc::signal(sig, libc::SIG_IGN);
            }
            let status = wait_for(init);
            let Some(agent) = read_word(read_end) else {
                // The init was killed (SIGKILL to the group): so is the attempt.
                if libc::WIFSIGNALED(status) {
                    reraise(libc::WTERMSIG(status));
                }
                libc::_exit(127)
            };
            if libc::WIFSIGNALED(agent) {
                reraise(libc::WTERMSIG(agent));
            }
            libc::_exit(libc::WEXITSTATUS(agent))
        }
    };
    // SAFETY: see the comment above the function.
    unsafe {
        cmd.pre_exec(hook);
    }
    Ok(())
}

/// Unshares the PID namespace for the calling process's next child, by `route`
/// (async-signal-safe). A hook before this one may have entered a user namespace where this
/// process is privileged (a workspace's): then the PID namespace needs no user namespace of its
/// own. Otherwise, unprivileged, one maps the user (as seen here) to itself.
pub(super) unsafe fn unshare_pid(route: NsRoute) -> std::io::Result<()> {
    // SAFETY: system calls on static paths and stack buffers.
    unsafe {
        let direct = libc::unshare(libc::CLONE_NEWPID);
        if direct < 0 {
            if matches!(route, NsRoute::Direct) {
                return Err(std::io::Error::last_os_error());
            }
            let (uid, gid) = (libc::getuid(), libc::getgid());
            check(libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWPID))?;
            let mut buf = [0u8; 40];
            write_file(c"/proc/self/setgroups".as_ptr(), b"deny")?;
            write_file(c"/proc/self/uid_map".as_ptr(), id_map(&mut buf, uid))?;
            write_file(c"/proc/self/gid_map".as_ptr(), id_map(&mut buf, gid))?;
        }
        Ok(())
    }
}

/// Mounts the PID namespace's own `/proc` (the init does, async-signal-safe). Where the host
/// refuses it (a container masking parts of `/proc` refuses a new one to a user namespace),
/// the agent runs on, contained, but sees the outer `/proc`; its log says so.
pub(super) unsafe fn mount_own_proc() {
    // SAFETY: static strings; `write` from a static buffer.
    unsafe {
        if libc::mount(
            c"proc".as_ptr(),
            c"/proc".as_ptr(),
            c"proc".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        ) < 0
        {
            let note: &[u8] = b"forge: this attempt's own /proc could not be mounted (the host refused it): the agent sees the host's /proc\n";
            libc::write(2, note.as_ptr().cast(), note.len());
        }
    }
}

/// Size of the init's stack: it calls a handful of system calls in shallow frames.
const INIT_STACK: usize = 64 * 1024;
/// Size of the agent's stack besides its `argv` (glibc's `execvp` keeps a path buffer and, for
/// a script, a copy of `argv` there; `posix_spawn` gives it the size of `argv` plus 32768 bytes).
const AGENT_STACK: usize = 64 * 1024;

/// Memory for a stack, never read through Rust references (only the cloned process uses it).
pub(super) struct Stack {
    _memory: Vec<std::mem::MaybeUninit<u128>>,
    /// The highest address (stacks grow down), 16-byte aligned.
    pub(super) top: *mut libc::c_void,
}

impl Stack {
    pub(super) fn new(bytes: usize) -> Self {
        let mut memory: Vec<std::mem::MaybeUninit<u128>> = Vec::with_capacity(bytes.div_ceil(16));
        let top = memory
            .as_mut_ptr()
            .wrapping_add(memory.capacity())
            .cast::<libc::c_void>();
        Self {
            _memory: memory,
            top,
        }
    }
}

/// What the init and the agent need, prepared before the leader's fork: the agent's program,
/// `argv` and `envp` as C strings, the two stacks, the status pipe, and where the agent leaves
/// its `exec` error.
struct Agent {
    program: CString,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    /// The strings `argv` and `envp` point at (besides `environ`'s own entries).
    _strings: Vec<CString>,
    init_stack: Stack,
    exec_stack: Stack,
    own_proc: bool,
    /// The status pipe's write end (set by the leader before the init is cloned).
    status: libc::c_int,
    /// The agent's `exec` error, 0 while none.
    exec_error: std::sync::atomic::AtomicI32,
}

// SAFETY: the raw pointers point into `_strings` (owned here) or at `environ`'s entries, which
// are only read; the value moves into the `pre_exec` hook once and is used by the child only.
unsafe impl Send for Agent {}
// SAFETY: as above; shared use is reading only (`exec_error` is atomic).
unsafe impl Sync for Agent {}

impl Agent {
    /// The agent's `exec` as std would do it for `cmd`: the program as `argv[0]`, its
    /// arguments, this process's environment with `cmd`'s changes.
    fn new(cmd: &Command, own_proc: bool) -> std::io::Result<Self> {
        use std::os::unix::ffi::OsStrExt as _;
        let c = |bytes: &[u8]| {
            CString::new(bytes).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "nul byte found in provided data (in `{}`)",
                        String::from_utf8_lossy(bytes)
                    ),
                )
            })
        };
        let program = c(cmd.get_program().as_bytes())?;
        let mut strings = Vec::with_capacity(cmd.get_args().len() + cmd.get_envs().len());
        for arg in cmd.get_args() {
            strings.push(c(arg.as_bytes())?);
        }
        let changed: Vec<(&[u8], Option<&std::ffi::OsStr>)> = cmd
            .get_envs()
            .map(|(name, value)| (name.as_bytes(), value))
            .collect();
        for (name, value) in &changed {
            if let Some(value) = value {
                let mut entry = Vec::with_capacity(name.len() + value.len() + 2);
                entry.extend_from_slice(name);
                entry.push(b'=');
                entry.extend_from_slice(value.as_bytes());
                strings.push(c(&entry)?);
            }
        }
        let arg_count = cmd.get_args().len();
        let mut argv = Vec::with_capacity(arg_count + 2);
        argv.push(program.as_ptr());
        argv.extend(strings[..arg_count].iter().map(|s| s.as_ptr()));
        argv.push(std::ptr::null());
        let mut envp = Vec::with_capacity(64 + strings.len() - arg_count);
        // SAFETY: `environ` is a null-terminated array of NUL-terminated strings, changed only
        // by `setenv`/`putenv`, which Rust marks unsafe on the promise that no other thread
        // reads the environment meanwhile (std's own spawn reads it the same way). The agent
        // reads the entries in the leader's copy of this memory, taken at its fork.
        unsafe {
            let mut entry = libc::environ;
            while !entry.is_null() && !(*entry).is_null() {
                let bytes = std::ffi::CStr::from_ptr(*entry).to_bytes();
                let name = bytes.split(|b| *b == b'=').next().unwrap_or(bytes);
                if !changed.iter().any(|(changed, _)| *changed == name) {
                    envp.push((*entry).cast_const());
                }
                entry = entry.add(1);
            }
        }
        envp.extend(strings[arg_count..].iter().map(|s| s.as_ptr()));
        envp.push(std::ptr::null());
        Ok(Self {
            program,
            exec_stack: Stack::new(AGENT_STACK + 8 * argv.len()),
            argv,
            envp,
            _strings: strings,
            init_stack: Stack::new(INIT_STACK),
            own_proc,
            status: -1,
            exec_error: std::sync::atomic::AtomicI32::new(0),
        })
    }
}

/// The init (PID 1 of the namespace), cloned by the leader into the leader's memory: mounts
/// the namespace's `/proc` when asked, clones the agent (see [`agent_main`]), reports its
/// `exec`, waits for it while reaping every orphan, reports its status and ends, which ends
/// the namespace (the kernel kills what is left in it).
extern "C" fn init_main(data: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `data` is the leader's `Agent`, alive until the leader exits (after the init);
    // every call is async-signal-safe and allocates nothing.
    unsafe {
        let agent = &*data.cast::<Agent>();
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if agent.own_proc {
            mount_own_proc();
        }
        // No handler may run in the agent while it shares this memory (as in `posix_spawn`).
        let mut all = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigfillset(all.as_mut_ptr());
        let mut before = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigprocmask(libc::SIG_SETMASK, all.as_ptr(), before.as_mut_ptr());
        // Runs until the agent `exec`s or exits (`CLONE_VFORK`). Where `CLONE_VM` is refused
        // the agent gets a copy instead: an `exec` error then shows as its exit 127.
        let pid = clone_agent(agent_main, agent.exec_stack.top, data);
        let clone_error = if pid < 0 {
            *libc::__errno_location()
        } else {
            0
        };
        libc::sigprocmask(libc::SIG_SETMASK, before.as_ptr(), std::ptr::null_mut());
        let error = if pid < 0 {
            clone_error
        } else {
            agent.exec_error.load(std::sync::atomic::Ordering::SeqCst)
        };
        if error != 0 {
            if pid > 0 {
                reap_until(pid);
            }
            write_word(agent.status, error);
            libc::_exit(127);
        }
        write_word(agent.status, 0);
        close_all_but(&[agent.status]);
        let status = reap_until(pid);
        write_word(agent.status, status);
        // Leaving ends the namespace: the kernel kills what is left in it.
        libc::_exit(0)
    }
}

/// The agent, cloned by the init into the same memory while the init waits (`CLONE_VFORK`):
/// signal handlers back to default, the signal mask emptied (std's child starts so), then the
/// program `exec`ed with `PATH` looked up in the agent's own environment, as std does.
extern "C" fn agent_main(data: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `data` is the leader's `Agent` (see `init_main`); the init is suspended until
    // this process `exec`s or exits; async-signal-safe calls only.
    unsafe {
        let agent = &*data.cast::<Agent>();
        default_handlers(&[]);
        let mut empty = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigemptyset(empty.as_mut_ptr());
        libc::sigprocmask(libc::SIG_SETMASK, empty.as_ptr(), std::ptr::null_mut());
        // `execvp` searches the `PATH` of `environ`: the agent's, as std sets it.
        libc::environ = agent.envp.as_ptr().cast_mut().cast();
        libc::execvp(agent.program.as_ptr(), agent.argv.as_ptr());
        agent.exec_error.store(
            *libc::__errno_location(),
            std::sync::atomic::Ordering::SeqCst,
        );
        libc::_exit(127)
    }
}

/// Clones `main` onto `stack` with `flags` (`CLONE_VM | CLONE_VFORK` and more), every signal
/// blocked around the clone so that no handler of this process runs in the child, which shares
/// its memory; the mask is restored once the clone returns. Returns the child's pid (or a
/// negative value) and the clone's errno.
///
/// # Safety
/// `stack` is the top of memory reserved for the child and alive until it `exec`s or exits;
/// `main` reads `data`, alive as long, and makes async-signal-safe calls only.
pub(super) unsafe fn clone_with_signals_blocked(
    main: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    stack: *mut libc::c_void,
    flags: libc::c_int,
    data: *mut libc::c_void,
) -> (libc::pid_t, libc::c_int) {
    // SAFETY: the signal sets are initialised by `sigfillset`/`pthread_sigmask` before use; the
    // caller vouches for `main`, `stack` and `data`.
    unsafe {
        let mut all = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigfillset(all.as_mut_ptr());
        let mut before = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        libc::pthread_sigmask(libc::SIG_SETMASK, all.as_ptr(), before.as_mut_ptr());
        let pid = libc::clone(main, stack, flags, data);
        let error = std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
        libc::pthread_sigmask(libc::SIG_SETMASK, before.as_ptr(), std::ptr::null_mut());
        (pid, error)
    }
}

/// Clones the agent into this process's memory (`CLONE_VM | CLONE_VFORK`): this process sleeps
/// until `main` `exec`s or exits. Where `CLONE_VM` is refused the agent gets a copy instead (an
/// `exec` error then shows as its exit 127). Async-signal-safe.
pub(super) unsafe fn clone_agent(
    main: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    stack: *mut libc::c_void,
    data: *mut libc::c_void,
) -> libc::pid_t {
    // SAFETY: `stack` is the top of memory reserved for the clone, `data` what `main` reads.
    unsafe {
        let pid = libc::clone(
            main,
            stack,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            data,
        );
        if pid >= 0 {
            return pid;
        }
        libc::clone(main, stack, libc::CLONE_VFORK | libc::SIGCHLD, data)
    }
}

/// Sets every signal with a handler back to its default action, and the signals in `also`
/// whatever they were (async-signal-safe): no handler of Forge's may run in a process sharing
/// its memory, nor be inherited by the agent.
pub(super) unsafe fn default_handlers(also: &[libc::c_int]) {
    // SAFETY: `sigaction` reads into a zeroed buffer; `signal` changes this process's handlers.
    unsafe {
        let mut action = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
        for sig in 1..=libc::SIGRTMAX() {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            if libc::sigaction(sig, std::ptr::null(), action.as_mut_ptr()) == 0 {
                let handler = (*action.as_ptr()).sa_sigaction;
                if (handler != libc::SIG_DFL && handler != libc::SIG_IGN) || also.contains(&sig) {
                    libc::signal(sig, libc::SIG_DFL);
                }
            }
        }
    }
}

/// Writes one status word to the leader.
pub(super) unsafe fn write_word(fd: libc::c_int, word: libc::c_int) {
    let bytes = word.to_ne_bytes();
    // SAFETY: `write` from a stack buffer that outlives the call.
    unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
}

/// Reads one status word from the init; `None` at end of file (the init ended without it).
pub(super) unsafe fn read_word(fd: libc::c_int) -> Option<libc::c_int> {
    let mut bytes = [0u8; 4];
    let mut at = 0;
    while at < bytes.len() {
        // SAFETY: the descriptor is open; `bytes` has room for what is asked.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        match rustix::io::read(fd, &mut bytes[at..]) {
            Ok(0) => return None,
            Ok(n) => at += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return None,
        }
    }
    Some(libc::c_int::from_ne_bytes(bytes))
}

/// Waits for the child `pid` (errors but `EINTR` end the wait) and returns its raw status.
/// Through rustix: no `errno`, which the leader and the init share.
unsafe fn wait_for(pid: libc::pid_t) -> libc::c_int {
    let Some(pid) = rustix::process::Pid::from_raw(pid) else {
        return 127 << 8;
    };
    loop {
        match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()) {
            Ok(Some((_, status))) => return status.as_raw(),
            Err(rustix::io::Errno::INTR) => {}
            Ok(None) | Err(_) => return 127 << 8,
        }
    }
}

/// Maps ids in the user namespace this process just created (async-signal-safe): with `all`,
/// every id to itself where the parent namespace allows it (root), else only `uid`/`gid` (as
/// seen before the namespace was made) to themselves.
pub(crate) unsafe fn map_ids(uid: libc::uid_t, gid: libc::gid_t, all: bool) -> std::io::Result<()> {
    const ALL: &[u8] = b"0 0 4294967295";
    // SAFETY: writes to this process's own `/proc` files from static or stack buffers.
    unsafe {
        if all
            && write_file(c"/proc/self/uid_map".as_ptr(), ALL).is_ok()
            && write_file(c"/proc/self/gid_map".as_ptr(), ALL).is_ok()
        {
            return Ok(());
        }
        let mut buf = [0u8; 40];
        write_file(c"/proc/self/setgroups".as_ptr(), b"deny")?;
        write_file(c"/proc/self/uid_map".as_ptr(), id_map(&mut buf, uid))?;
        write_file(c"/proc/self/gid_map".as_ptr(), id_map(&mut buf, gid))
    }
}

/// `"<id> <id> 1"` (a map of one id to itself) in `buf`, without allocating.
fn id_map(buf: &mut [u8; 40], id: u32) -> &[u8] {
    let mut digits = [0u8; 10];
    let mut n = id;
    let mut len = 0;
    loop {
        #[allow(clippy::cast_possible_truncation)] // a digit
        let digit = (n % 10) as u8;
        digits[len] = b'0' + digit;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut at = 0;
    for _ in 0..2 {
        for i in (0..len).rev() {
            buf[at] = digits[i];
            at += 1;
        }
        buf[at] = b' ';
        at += 1;
    }
    buf[at] = b'1';
    &buf[..=at]
}

/// Waits, as a namespace's init, for `agent` while reaping every orphan handed to it. Through
/// rustix: no `errno`, which the init shares with the leader.
pub(super) unsafe fn reap_until(agent: libc::pid_t) -> libc::c_int {
    loop {
        match rustix::process::wait(rustix::process::WaitOptions::empty()) {
            Ok(Some((pid, status))) if pid.as_raw_nonzero().get() == agent => {
                return status.as_raw();
            }
            Ok(Some(_)) | Err(rustix::io::Errno::INTR) => {}
            Ok(None) | Err(_) => return 127 << 8,
        }
    }
}

/// Resets the signals of [`spawn::RESET_SIGNALS`](super::spawn::RESET_SIGNALS) to their default
/// action in the child, as the `posix_spawn` fast path does with `POSIX_SPAWN_SETSIGDEF`.
pub(crate) fn default_signals(cmd: &mut Command) {
    let hook = || -> std::io::Result<()> {
        for sig in super::spawn::RESET_SIGNALS {
            // SAFETY: `signal` is async-signal-safe; between `fork` and `exec`.
            unsafe {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        Ok(())
    };
    // SAFETY: the hook makes async-signal-safe calls only.
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// Ends this process with `sig` as the agent ended, so Forge sees the same signal.
unsafe fn reraise(sig: libc::c_int) -> ! {
    // SAFETY: async-signal-safe calls only.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::kill(libc::getpid(), sig);
        libc::_exit(128 + sig)
    }
}

/// Closes every descriptor of this process except those in `keep` (at most four, any order).
pub(super) unsafe fn close_all_but(keep: &[RawFd]) {
    let mut kept = [-1 as RawFd; 4];
    let n = keep.len().min(kept.len());
    kept[..n].copy_from_slice(&keep[..n]);
    kept[..n].sort_unstable();
    let mut first = 0;
    for &fd in kept[..n].iter().chain(std::iter::once(&libc::c_int::MAX)) {
        let last = if fd == libc::c_int::MAX { fd } else { fd - 1 };
        if fd >= 0 && first <= last {
            // SAFETY: `close_range` only closes descriptors; where it is missing, `close` each.
            unsafe { close_range(first, last) };
        }
        first = fd.saturating_add(1).max(first);
    }
}

/// Closes the descriptors `first..=last` (async-signal-safe).
unsafe fn close_range(first: RawFd, last: RawFd) {
    // SAFETY: `close_range` only closes descriptors; where it is missing, `close` each.
    unsafe {
        #[allow(clippy::cast_sign_loss)] // both are non-negative here
        let done = libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            last as libc::c_uint,
            0 as libc::c_uint,
        ) == 0;
        if !done {
            for fd in first..=last.min(4095) {
                libc::close(fd);
            }
        }
    }
}

/// Writes `bytes` to the file at `path` (async-signal-safe).
unsafe fn write_file(path: *const libc::c_char, bytes: &[u8]) -> std::io::Result<()> {
    // SAFETY: `path` is a NUL-terminated string; the descriptor is closed before returning.
    unsafe {
        let fd = libc::open(path, libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let n = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if usize::try_from(n).ok() == Some(bytes.len()) {
            Ok(())
        } else {
            Err(err)
        }
    }
}

pub(crate) fn check(code: libc::c_int) -> std::io::Result<()> {
    if code < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Why an attempt's cgroup could not be set up.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot enforce {what}: {reason} (limits need a writable cgroup v2 with the controller enabled, or a v1 hierarchy mounting it; remove `memory`/`cpus` from the plan to run without limits)"
)]
pub struct CgroupError {
    /// The limit that needed it (`memory = 2G`, …).
    pub what: String,
    /// What was tried and how it failed.
    pub reason: String,
}

/// A controller Forge can limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Controller {
    Memory,
    Cpu,
}

impl Controller {
    fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Cpu => "cpu",
        }
    }
}

/// One cgroup directory of an attempt (one per hierarchy used).
#[derive(Debug)]
struct Dir {
    path: PathBuf,
    v2: bool,
}

/// The cgroup(s) of one attempt; swept and removed when dropped.
#[derive(Debug)]
pub struct AttemptCgroup {
    dirs: Vec<Dir>,
    memory: Option<usize>,
}

/// Where a controller lives for this process: `(directory of our own cgroup, is v2)`, v2
/// first, then the v1 hierarchy mounting it; or what was looked at.
fn own_cgroups(controller: Controller) -> Result<Vec<(PathBuf, bool)>, String> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    // (mount point, mount root, fstype, super options)
    let mounts: Vec<(&str, &str, &str, &str)> = mountinfo
        .lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let mut post = post.split(' ');
            let fstype = post.next()?;
            let _source = post.next()?;
            Some((
                *pre.get(4)?,
                *pre.get(3)?,
                fstype,
                post.next().unwrap_or(""),
            ))
        })
        .collect();
    let join = |mount: &str, root: &str, path: &str| {
        let rel = path
            .strip_prefix(root)
            .unwrap_or(path)
            .trim_start_matches('/');
        Path::new(mount).join(rel)
    };
    let mut tried = Vec::new();
    let mut found = Vec::new();
    // v2 first: the controller must be available to our cgroup's children.
    if let Some(path) = cgroups.lines().find_map(|l| l.strip_prefix("0::"))
        && let Some((mount, root, ..)) = mounts.iter().find(|m| m.2 == "cgroup2")
    {
        let dir = join(mount, root, path);
        let available = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
        if available.split_whitespace().any(|c| c == controller.name()) {
            found.push((dir, true));
        } else {
            tried.push(format!(
                "cgroup v2 at {} does not offer `{}`",
                dir.display(),
                controller.name()
            ));
        }
    }
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, Some(names), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if !names.split(',').any(|n| n == controller.name()) {
            continue;
        }
        if let Some((mount, root, ..)) = mounts
            .iter()
            .find(|m| m.2 == "cgroup" && m.3.split(',').any(|o| o == controller.name()))
        {
            found.push((join(mount, root, path), false));
        } else {
            tried.push(format!("no v1 mount of `{}`", controller.name()));
        }
    }
    if !found.is_empty() {
        return Ok(found);
    }
    if tried.is_empty() {
        tried.push(format!("no hierarchy offers `{}`", controller.name()));
    }
    Err(tried.join("; "))
}

impl AttemptCgroup {
    /// Creates the attempt's cgroup(s) named `name` for the limits asked for, and sets them.
    pub fn create(name: &str, limits: &Limits) -> Result<Self, CgroupError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let leaf = format!(
            "forge-{}-{}-{name}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let mut group = Self {
            dirs: Vec::new(),
            memory: None,
        };
        if let Some(bytes) = limits.memory {
            let what = format!("memory = {}", format_memory(bytes));
            let fail = |reason: String| CgroupError {
                what: what.clone(),
                reason,
            };
            let index = group.dir_for(Controller::Memory, &leaf).map_err(fail)?;
            let dir = &group.dirs[index];
            let set = if dir.v2 {
                write(&dir.path.join("memory.max"), &bytes.to_string()).map(|()| {
                    // No swapping around the limit (absent without swap accounting).
                    let _ = write(&dir.path.join("memory.swap.max"), "0");
                })
            } else {
                write(&dir.path.join("memory.limit_in_bytes"), &bytes.to_string()).map(|()| {
                    let _ = write(
                        &dir.path.join("memory.memsw.limit_in_bytes"),
                        &bytes.to_string(),
                    );
                })
            };
            set.map_err(fail)?;
            group.memory = Some(index);
        }
        if let Some(cpus) = limits.cpus {
            let what = format!("cpus = {cpus}");
            let fail = |reason: String| CgroupError {
                what: what.clone(),
                reason,
            };
            let period: u64 = 100_000;
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // validated > 0
            let quota = ((cpus * 100_000.0).round() as u64).max(1_000);
            let index = group.dir_for(Controller::Cpu, &leaf).map_err(fail)?;
            let dir = &group.dirs[index];
            let set = if dir.v2 {
                write(&dir.path.join("cpu.max"), &format!("{quota} {period}"))
            } else {
                write(&dir.path.join("cpu.cfs_period_us"), &period.to_string())
                    .and_then(|()| write(&dir.path.join("cpu.cfs_quota_us"), &quota.to_string()))
            };
            set.map_err(fail)?;
        }
        Ok(group)
    }

    /// The index of the attempt's directory holding `controller`, created if needed.
    fn dir_for(&mut self, controller: Controller, leaf: &str) -> Result<usize, String> {
        let mut failures = Vec::new();
        for (own, v2) in own_cgroups(controller)? {
            let path = own.join(leaf);
            if let Some(i) = self.dirs.iter().position(|d| d.path == path) {
                return Ok(i);
            }
            if v2 {
                // A v2 controller reaches a child only when enabled in the parent's subtree
                // (refused while the parent holds processes itself, unless it is the root).
                let subtree = own.join("cgroup.subtree_control");
                let enabled = std::fs::read_to_string(&subtree).unwrap_or_default();
                if !enabled.split_whitespace().any(|c| c == controller.name())
                    && let Err(e) = write(&subtree, &format!("+{}", controller.name()))
                {
                    failures.push(e);
                    continue;
                }
            }
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    self.dirs.push(Dir { path, v2 });
                    return Ok(self.dirs.len() - 1);
                }
                Err(e) => failures.push(format!("cannot create cgroup {}: {e}", path.display())),
            }
        }
        Err(failures.join("; "))
    }

    /// Opens each directory's `cgroup.procs` for the leader to join (see [`join_cgroups`]).
    pub(crate) fn procs_files(&self) -> std::io::Result<Vec<OwnedFd>> {
        self.dirs
            .iter()
            .map(|d| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(d.path.join("cgroup.procs"))
                    .map(OwnedFd::from)
            })
            .collect()
    }

    /// Whether the kernel's OOM killer ended a process of the attempt for its memory limit.
    pub fn memory_limit_hit(&self) -> bool {
        let Some(dir) = self.memory.and_then(|i| self.dirs.get(i)) else {
            return false;
        };
        let (file, key) = if dir.v2 {
            ("memory.events", "oom_kill")
        } else {
            ("memory.oom_control", "oom_kill")
        };
        let count = |text: &str| {
            text.lines().find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == key).then(|| v.trim().parse::<u64>().ok()).flatten()
            })
        };
        match std::fs::read_to_string(dir.path.join(file))
            .ok()
            .as_deref()
            .and_then(count)
        {
            Some(n) => n > 0,
            // Older v1 kernels count no kills: hitting the limit at all is the sign.
            None => std::fs::read_to_string(dir.path.join("memory.failcnt"))
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .is_some_and(|n| n > 0),
        }
    }

    /// Kills every process in the cgroup(s) until none is left. Returns whether they are empty.
    pub fn kill_all(&self) -> bool {
        let mut empty = true;
        for dir in &self.dirs {
            if dir.v2 && write(&dir.path.join("cgroup.kill"), "1").is_ok() {
                // Asynchronous: wait below like v1.
            }
            let mut gone = false;
            for _ in 0..500 {
                let procs =
                    std::fs::read_to_string(dir.path.join("cgroup.procs")).unwrap_or_default();
                let pids: Vec<i32> = procs.lines().filter_map(|l| l.parse().ok()).collect();
                if pids.is_empty() {
                    gone = true;
                    break;
                }
                for pid in pids {
                    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            empty &= gone;
        }
        empty
    }
}

impl Drop for AttemptCgroup {
    fn drop(&mut self) {
        self.kill_all();
        for dir in &self.dirs {
            let _ = std::fs::remove_dir(&dir.path);
        }
    }
}

/// Makes the leader join the attempt's cgroups first thing after the fork (writing `0` to a
/// `cgroup.procs` moves the writer), so every process it starts is in them.
//
// The closure only `write`s to descriptors opened before the fork: async-signal-safe.
pub(crate) fn join_cgroups(cmd: &mut Command, files: Vec<OwnedFd>) {
    let hook = move || -> std::io::Result<()> {
        for file in &files {
            // SAFETY: `write` on an open descriptor from a buffer that outlives the call.
            let n = unsafe { libc::write(file.as_raw_fd(), b"0".as_ptr().cast(), 1) };
            if n != 1 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // SAFETY: see the comment above the function.
    unsafe {
        cmd.pre_exec(hook);
    }
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    File::options()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| format!("cannot write `{value}` to {}: {e}", path.display()))
}

/// A memory size as people write it: `2G`, `512M`, `1.5G`, or bytes.
pub fn format_memory(bytes: u64) -> String {
    for (unit, scale) in [
        ("T", 1u64 << 40),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ] {
        if bytes >= scale {
            #[allow(clippy::cast_precision_loss)] // a readable figure
            let value = bytes as f64 / scale as f64;
            return if bytes.is_multiple_of(scale) {
                format!("{}{unit}", bytes / scale)
            } else {
                format!("{value:.1}{unit}")
            };
        }
    }
    format!("{bytes} bytes")
}

/// Parses a memory size: bytes, or a number with `K`, `M`, `G` or `T` (powers of 1024,
/// an optional `B`/`iB`): `"512M"`, `"2G"`, `"1.5G"`.
pub fn parse_memory(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    let body = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (number, unit) = match body.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => body.split_at(i),
        None => (body, ""),
    };
    let scale: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => {
            return Err(format!(
                "unknown unit `{unit}` in `{text}` (use K, M, G or T)"
            ));
        }
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a size (such as \"512M\" or \"2G\")"))?;
    #[allow(clippy::cast_precision_loss)] // sizes far below 2^53 bytes
    let bytes = value * scale as f64;
    if !bytes.is_finite() || bytes < f64::from(1u32 << 20) {
        return Err(format!("`{text}` is below the smallest memory limit, 1M"));
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // checked above
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_maps_and_memory_sizes() {
        let mut buf = [0u8; 40];
        assert_eq!(id_map(&mut buf, 0), b"0 0 1");
        assert_eq!(id_map(&mut buf, 65534), b"65534 65534 1");
        assert_eq!(
            id_map(&mut buf, u32::MAX),
            b"4294967295 4294967295 1".as_slice()
        );
        assert_eq!(parse_memory("2G"), Ok(2 << 30));
        assert_eq!(parse_memory("1.5g"), Ok(3 << 29));
        assert_eq!(parse_memory("512MiB"), Ok(512 << 20));
        assert_eq!(parse_memory("1048576"), Ok(1 << 20));
        assert!(parse_memory("2X").unwrap_err().contains("unknown unit `x`"));
        assert!(parse_memory("lots").is_err());
        assert!(parse_memory("10K").unwrap_err().contains("smallest"));
        assert_eq!(format_memory(2 << 30), "2G");
        assert_eq!(format_memory(64 << 20), "64M");
        assert_eq!(format_memory(3 << 29), "1.5G");
    }
}
