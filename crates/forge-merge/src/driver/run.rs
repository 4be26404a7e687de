//! Running a merge driver's command: the [`CommandRunner`] seam, and [`StandaloneRunner`], the
//! implementation forge-merge uses on its own.
//!
//! A program that embeds forge-merge alone gets drivers run by [`StandaloneRunner`]: `sh -c` in
//! its own process group, its output captured, a time limit, and the whole group killed when it
//! is over. Forge itself installs the process runner that also runs its agents and the gate
//! (`forge_exec::driver`, with the run's `FORGE_RUN_ID` and containment) through
//! [`crate::Integration::with_command_runner`]; forge-merge depends on no process runner.

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};

/// A merge driver's command: `sh -c <line>` in `dir`, with stdin from `/dev/null` and stdout
/// and stderr read together.
#[derive(Debug, Clone, Copy)]
pub struct ShellCommand<'a> {
    /// The command line, placeholders already filled in.
    pub line: &'a str,
    /// The directory it runs in (the repository's top directory).
    pub dir: &'a Path,
    /// How long it may run; then it and everything it started are stopped.
    pub timeout: Option<Duration>,
    /// How much of the end of its output to keep, in bytes.
    pub keep: usize,
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandEnd {
    /// It exited with this code.
    Exited(i32),
    /// A signal killed it.
    Signaled(i32),
    /// It ran out of time and was stopped.
    TimedOut,
}

/// A finished command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutcome {
    /// How it ended.
    pub ended: CommandEnd,
    /// The end of its combined stdout and stderr (at most [`ShellCommand::keep`] bytes).
    pub output: Vec<u8>,
}

/// Runs merge drivers' commands: what an [`crate::Integration`] calls for a `driver:<command>`
/// strategy. One method; [`StandaloneRunner`] is the default.
pub trait CommandRunner: Send + Sync {
    /// Runs `command` to its end, and returns only when no process it started is left (a
    /// leftover would hold the output open). An error only when it could not be started.
    fn run(&self, command: &ShellCommand<'_>) -> std::io::Result<CommandOutcome>;
}

/// How long the stand-alone runner lets a command ignore SIGINT, then SIGTERM, before the
/// next signal.
const GRACE: Duration = Duration::from_millis(1500);

/// The stand-alone fallback [`CommandRunner`], used unless another is installed: the command
/// in a new process group of its own; after its time limit the group gets SIGINT, SIGTERM,
/// then SIGKILL (1.5 s apart); when the command exits, whatever it left running in its group
/// is killed, so nothing holds the output pipe open. A process that leaves the group
/// (`setsid`) escapes it: Forge's own runner, installed by forge-exec, contains those too.
#[derive(Debug, Clone, Copy, Default)]
pub struct StandaloneRunner;

impl CommandRunner for StandaloneRunner {
    fn run(&self, command: &ShellCommand<'_>) -> std::io::Result<CommandOutcome> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(command.line).current_dir(command.dir);
        run(cmd, command.timeout, command.keep)
    }
}

/// Runs `cmd` with stdin from `/dev/null` and stdout and stderr into one pipe, in a new process
/// group (see [`StandaloneRunner`]).
fn run(
    mut cmd: Command,
    timeout: Option<Duration>,
    keep: usize,
) -> std::io::Result<CommandOutcome> {
    use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};

    let (mut reader, writer) = std::io::pipe()?;
    cmd.stdin(Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer)
        .process_group(0);
    let start = Instant::now();
    let mut child = cmd.spawn()?;
    // Close this process's copies of the pipe's write end, or the reader never sees EOF.
    drop(cmd);
    let pid = Pid::from_child(&child);

    std::thread::scope(|scope| {
        let collector = scope.spawn(move || {
            let mut tail = Vec::new();
            let mut buf = vec![0u8; 64 << 10];
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > keep * 2 {
                    tail.drain(..tail.len() - keep);
                }
            }
            if tail.len() > keep {
                tail.drain(..tail.len() - keep);
            }
            tail
        });

        let deadline = timeout.map(|t| start + t);
        let mut pause = Duration::from_millis(1);
        let mut timed_out = false;
        let mut next_signal = Signal::INT;
        let mut signal_at = deadline;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) => {}
                Err(e) => break Err(e),
            }
            let now = Instant::now();
            if let Some(at) = signal_at
                && now >= at
            {
                timed_out = true;
                let _ = kill_process_group(pid, next_signal);
                (next_signal, signal_at) = if next_signal == Signal::INT {
                    (Signal::TERM, Some(now + GRACE))
                } else if next_signal == Signal::TERM {
                    (Signal::KILL, Some(now + GRACE))
                } else {
                    (Signal::KILL, Some(now + GRACE * 4))
                };
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(25));
        };
        // Whatever the command left behind in its group goes too.
        let _ = kill_process_group(pid, Signal::KILL);
        let output = collector
            .join()
            .unwrap_or_else(|_| b"<output lost>".to_vec());
        let status = status?;
        let ended = if timed_out {
            CommandEnd::TimedOut
        } else if let Some(code) = status.code() {
            CommandEnd::Exited(code)
        } else {
            CommandEnd::Signaled(status.signal().unwrap_or(0))
        };
        Ok(CommandOutcome { ended, output })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use forge_testkit::procs::group_is_gone;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c").arg(script);
        c
    }

    #[test]
    fn captures_both_streams_and_the_exit_code() {
        let f = run(sh("echo out; echo err >&2; exit 3"), None, 1 << 20).unwrap();
        assert_eq!(f.ended, CommandEnd::Exited(3));
        assert_eq!(String::from_utf8_lossy(&f.output), "out\nerr\n");
    }

    /// Runs `script` with `$$` (the process group's id) written to a file first, and returns
    /// how it ended with that group id.
    fn run_recording_group(script: &str, timeout: Option<Duration>) -> (CommandOutcome, i32) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgid");
        let script = format!("echo $$ > '{}'; {script}", file.display());
        let f = run(sh(&script), timeout, 1024).unwrap();
        let pgid = std::fs::read_to_string(&file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        (f, pgid)
    }

    #[test]
    fn times_out_and_kills_the_group() {
        let (f, pgid) = run_recording_group(
            "sleep 30 & sleep 30; echo never",
            Some(Duration::from_millis(200)),
        );
        assert_eq!(f.ended, CommandEnd::TimedOut);
        assert!(!String::from_utf8_lossy(&f.output).contains("never"));
        assert!(
            group_is_gone(pgid),
            "a process of the timed-out group is alive"
        );
    }

    #[test]
    fn a_background_child_does_not_hold_the_output_open() {
        // The first background child holds the output pipe and would print "late"; the second
        // has let go of it but lives on. Both are killed with the group when the shell exits.
        let (f, pgid) = run_recording_group(
            "(sleep 3; echo late) & (exec sleep 30 >/dev/null 2>&1) & echo done",
            None,
        );
        assert_eq!(f.ended, CommandEnd::Exited(0));
        assert_eq!(String::from_utf8_lossy(&f.output), "done\n");
        assert!(
            group_is_gone(pgid),
            "the background child outlived the command"
        );
    }

    #[test]
    fn keeps_only_the_tail() {
        let f = run(sh("seq 1 100000"), None, 100).unwrap();
        assert!(f.output.len() <= 100);
        assert!(String::from_utf8_lossy(&f.output).ends_with("100000\n"));
    }
}
