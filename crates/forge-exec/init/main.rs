//! `forge-init`: PID 1 of a contained attempt's PID namespace.
//!
//! Forge's attempt leader starts this program (from a sealed memory file, see
//! `src/process/leader.rs`) as the first process of the attempt's namespace, so that no
//! process of the attempt holds a copy of Forge's memory. `build.rs` builds it without the
//! standard library or a C library (system calls directly, for `x86_64` and `aarch64`), linked
//! statically: a few kilobytes, started in microseconds.
//!
//! `argv`: `forge-init STATUS REPORT N CANDIDATE... PROGRAM ARG...`, where `STATUS` and
//! `REPORT` are descriptors (the leader's pipe, then Forge's) and the `N` candidates are where
//! the program may be, in `PATH` order. The environment is the agent's (in `envp`, which only
//! the same user can read, never in `argv`, which every user can). The namespace's `/proc` is
//! mounted before this program starts: it runs without capabilities when Forge does.
//!
//! It forks the agent, which empties its signal mask and `execve`s each candidate in turn (a
//! script without `#!` runs with `/bin/sh`, as `execvp` runs it). It writes `0` or the `exec`
//! error to `STATUS`, closes every descriptor but `REPORT`, reaps every process of the
//! namespace until the agent ends, writes the agent's wait status to `REPORT` and exits, which
//! ends the namespace.
#![no_std]
#![no_main]

use core::ffi::c_char;

const ENOENT: isize = 2;
const EINTR: isize = 4;
const ENOEXEC: isize = 8;
const EACCES: isize = 13;
const ENODEV: isize = 19;
const ENOTDIR: isize = 20;
const EINVAL: isize = 22;
const ETIMEDOUT: isize = 110;
const ESTALE: isize = 116;
const O_CLOEXEC: usize = 0o2_000_000;
const SIG_SETMASK: usize = 2;
const SIGCHLD: usize = 17;
const PR_SET_NAME: usize = 15;

#[cfg(target_arch = "x86_64")]
mod sys {
    pub const READ: usize = 0;
    pub const WRITE: usize = 1;
    pub const CLOSE: usize = 3;
    pub const RT_SIGPROCMASK: usize = 14;
    pub const CLONE: usize = 56;
    pub const EXECVE: usize = 59;
    pub const WAIT4: usize = 61;
    pub const EXIT_GROUP: usize = 231;
    pub const PIPE2: usize = 293;
    pub const PRCTL: usize = 157;
    pub const CLOSE_RANGE: usize = 436;

    /// A system call with up to five arguments; the kernel's return (`-errno` on failure).
    pub unsafe fn call(n: usize, a: [usize; 5]) -> isize {
        let ret: isize;
        // SAFETY: the caller passes arguments the call `n` accepts.
        unsafe {
            core::arch::asm!(
                "syscall",
                inlateout("rax") n as isize => ret,
                in("rdi") a[0], in("rsi") a[1], in("rdx") a[2], in("r10") a[3], in("r8") a[4],
                lateout("rcx") _, lateout("r11") _,
                options(nostack),
            );
        }
        ret
    }

    core::arch::global_asm!(
        ".globl _start",
        "_start:",
        "mov rdi, rsp",
        "and rsp, -16",
        "call {entry}",
        "ud2",
        entry = sym super::start,
    );
}

#[cfg(target_arch = "aarch64")]
mod sys {
    pub const READ: usize = 63;
    pub const WRITE: usize = 64;
    pub const CLOSE: usize = 57;
    pub const RT_SIGPROCMASK: usize = 135;
    pub const CLONE: usize = 220;
    pub const EXECVE: usize = 221;
    pub const WAIT4: usize = 260;
    pub const EXIT_GROUP: usize = 94;
    pub const PIPE2: usize = 59;
    pub const PRCTL: usize = 167;
    pub const CLOSE_RANGE: usize = 436;

    /// A system call with up to five arguments; the kernel's return (`-errno` on failure).
    pub unsafe fn call(n: usize, a: [usize; 5]) -> isize {
        let ret: isize;
        // SAFETY: the caller passes arguments the call `n` accepts.
        unsafe {
            core::arch::asm!(
                "svc 0",
                in("x8") n,
                inlateout("x0") a[0] as isize => ret,
                in("x1") a[1], in("x2") a[2], in("x3") a[3], in("x4") a[4],
                options(nostack),
            );
        }
        ret
    }

    core::arch::global_asm!(
        ".globl _start",
        "_start:",
        "mov x0, sp",
        "bl {entry}",
        "brk #0",
        entry = sym super::start,
    );
}

/// A system call with up to five arguments; the kernel's return (`-errno` on failure).
fn call(n: usize, a: [usize; 5]) -> isize {
    // SAFETY: every call below passes valid descriptors, strings and buffers.
    unsafe { sys::call(n, a) }
}

fn exit(code: usize) -> ! {
    call(sys::EXIT_GROUP, [code, 0, 0, 0, 0]);
    loop {}
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    exit(127)
}

/// A decimal number from a C string; `None` for anything else.
fn number(s: *const c_char) -> Option<usize> {
    if s.is_null() {
        return None;
    }
    let (mut value, mut at, mut digits) = (0usize, s, 0);
    // SAFETY: `s` is a NUL-terminated argument string.
    unsafe {
        while *at != 0 {
            let digit = (*at as u8).checked_sub(b'0').filter(|d| *d <= 9)?;
            value = value.checked_mul(10)?.checked_add(usize::from(digit))?;
            at = at.add(1);
            digits += 1;
        }
    }
    (digits > 0 && value <= i32::MAX as usize).then_some(value)
}

fn write_word(fd: usize, word: i32) {
    let bytes = word.to_ne_bytes();
    call(sys::WRITE, [fd, bytes.as_ptr() as usize, bytes.len(), 0, 0]);
}

/// One word from `fd`; `None` at end of file.
fn read_word(fd: usize) -> Option<i32> {
    let mut bytes = [0u8; 4];
    let mut at = 0;
    while at < bytes.len() {
        let n = call(
            sys::READ,
            [fd, bytes[at..].as_mut_ptr() as usize, 4 - at, 0, 0],
        );
        match n {
            0 => return None,
            n if n == -EINTR => {}
            n if n < 0 => return None,
            n => at += n.unsigned_abs(),
        }
    }
    Some(i32::from_ne_bytes(bytes))
}

/// Fails the start: the error to the leader, then the exit.
fn fail(status: usize, error: isize) -> ! {
    write_word(status, i32::try_from(error).unwrap_or(i32::MAX));
    exit(127)
}

/// Waits for `pid` (any child with `-1`); the pid that ended and its raw status, or `None`
/// when there is nothing to wait for.
fn wait(pid: isize) -> Option<(isize, i32)> {
    let mut raw = 0i32;
    loop {
        let ended = call(sys::WAIT4, [pid as usize, (&raw mut raw) as usize, 0, 0, 0]);
        if ended > 0 {
            return Some((ended, raw));
        }
        if ended != -EINTR {
            return None;
        }
    }
}

/// The program's entry, from `_start`: `sp` points at `argc`, then `argv`, then `envp`.
unsafe extern "C" fn start(sp: *const usize) -> ! {
    // SAFETY: the kernel's initial stack: `argc`, `argc` argument pointers and a null, the
    // environment's pointers and a null.
    let (argc, argv, envp) = unsafe {
        let argc = *sp;
        let argv = sp.add(1) as *mut *const c_char;
        (argc, argv, argv.add(argc + 1))
    };
    let arg = |i: usize| {
        if i < argc {
            // SAFETY: within `argv`'s `argc` entries.
            unsafe { *argv.add(i) }
        } else {
            core::ptr::null()
        }
    };
    // Its name in `ps` (an `exec` of a memory file names the process after the descriptor).
    call(
        sys::PRCTL,
        [PR_SET_NAME, c"forge-init".as_ptr() as usize, 0, 0, 0],
    );
    let Some(status) = number(arg(1)) else {
        exit(127)
    };
    let (Some(report), Some(candidates)) = (number(arg(2)), number(arg(3))) else {
        fail(status, EINVAL)
    };
    // Where the program's `argv` starts (it ends with `argv`'s null).
    let program = candidates.saturating_add(4);
    if program >= argc {
        fail(status, EINVAL);
    }
    let mut fds = [0i32; 2];
    let piped = call(sys::PIPE2, [fds.as_mut_ptr() as usize, O_CLOEXEC, 0, 0, 0]);
    if piped < 0 {
        fail(status, -piped);
    }
    let (exec_read, exec_write) = (fds[0] as usize, fds[1] as usize);
    let pid = call(sys::CLONE, [SIGCHLD, 0, 0, 0, 0]);
    if pid < 0 {
        fail(status, -pid);
    }
    if pid == 0 {
        // The agent: no blocked signal, no descriptor of Forge's.
        let empty = 0u64;
        call(
            sys::RT_SIGPROCMASK,
            [SIG_SETMASK, (&raw const empty) as usize, 0, 8, 0],
        );
        call(sys::CLOSE, [exec_read, 0, 0, 0, 0]);
        call(sys::CLOSE, [status, 0, 0, 0, 0]);
        call(sys::CLOSE, [report, 0, 0, 0, 0]);
        // SAFETY: `program < argc`: the program and its arguments, then `argv`'s null.
        let agent_argv = unsafe { argv.add(program) };
        let (mut error, mut denied) = (ENOENT, false);
        for i in 4..program {
            let path = arg(i);
            let failed = -call(
                sys::EXECVE,
                [path as usize, agent_argv as usize, envp as usize, 0, 0],
            );
            match failed {
                ENOEXEC => {
                    // A script without `#!`: `execvp` runs it with `/bin/sh`.
                    // SAFETY: `program - 1` (a candidate's or `N`'s slot, read already) and
                    // `program` are within `argv`, this process's own copy.
                    unsafe {
                        *argv.add(program - 1) = c"/bin/sh".as_ptr();
                        *argv.add(program) = path;
                    }
                    let sh = c"/bin/sh".as_ptr() as usize;
                    // SAFETY: as above.
                    let sh_argv = unsafe { argv.add(program - 1) } as usize;
                    error = -call(sys::EXECVE, [sh, sh_argv, envp as usize, 0, 0]);
                    denied = false;
                    break;
                }
                EACCES => denied = true,
                ENOENT | ENOTDIR | ESTALE | ENODEV | ETIMEDOUT => {}
                other => {
                    error = other;
                    denied = false;
                    break;
                }
            }
        }
        if denied {
            error = EACCES;
        }
        write_word(exec_write, i32::try_from(error).unwrap_or(i32::MAX));
        exit(127);
    }
    call(sys::CLOSE, [exec_write, 0, 0, 0, 0]);
    if let Some(error) = read_word(exec_read) {
        wait(pid);
        fail(status, error as isize);
    }
    call(sys::CLOSE, [exec_read, 0, 0, 0, 0]);
    // Nothing of the agent's (its standard streams) stays open here.
    let (low, high) = (status.min(report), status.max(report));
    let close_range = |first: usize, last: usize| {
        if first <= last && call(sys::CLOSE_RANGE, [first, last, 0, 0, 0]) < 0 {
            // No `close_range` (before Linux 5.9, or a filter refusing it): one by one, up to
            // a bound past any descriptor an agent's launcher holds.
            for fd in first..=last.min(4095) {
                call(sys::CLOSE, [fd, 0, 0, 0, 0]);
            }
        }
    };
    if low > 0 {
        close_range(0, low - 1);
    }
    if high > low + 1 {
        close_range(low + 1, high - 1);
    }
    close_range(high + 1, u32::MAX as usize);
    write_word(status, 0);
    call(sys::CLOSE, [status, 0, 0, 0, 0]);
    // Every orphan of the namespace comes here; the agent's end is the attempt's.
    let agent = loop {
        match wait(-1) {
            Some((ended, raw)) if ended == pid => break raw,
            Some(_) => {}
            None => break 127 << 8,
        }
    };
    write_word(report, agent);
    exit(0)
}
