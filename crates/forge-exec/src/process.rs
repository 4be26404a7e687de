//! Running a command as an attempt: its own process group, output read line by line into the
//! attempt's log and a parser, and the whole group stopped on timeout or cancel.
//!
//! Spawning uses `process_group(0)` and no `pre_exec`, so std takes the `posix_spawn` path.
//! Stopping escalates SIGINT → grace → SIGTERM → grace → SIGKILL on the *group*, and the runner
//! does not return until no process of the group is left (checked in `/proc`), so grandchildren
//! that ignore signals do not outlive their task. (A process that leaves the group with
//! `setsid` escapes this; agents run inside a workspace namespace can be contained further.)

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use forge_events::{OutputStream, RunId, TaskStatus};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use crate::plan::Task;
use crate::sched::{AttemptContext, TaskOutcome, TaskRunner};

/// What to spawn for an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSpec {
    /// The program (looked up on `PATH` when it has no `/`).
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// The working directory (also `FORGE_WORKSPACE`).
    pub cwd: PathBuf,
    /// Extra environment.
    pub env: Vec<(OsString, OsString)>,
}

impl CommandSpec {
    /// `sh -c <script>` in `cwd`: what the `shell` agent runs.
    pub fn shell(script: &str, cwd: &Path) -> Self {
        Self {
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
            cwd: cwd.to_path_buf(),
            env: Vec::new(),
        }
    }
}

/// Finds an executable on `PATH` (or checks a path containing `/`), as `execvp` would.
///
/// Resolve agent binaries once before a run: a missing one is then a clear error up front, and
/// each spawn skips the `PATH` search (on a long `PATH`, a dozen failed `execve`s per spawn).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| {
            m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
        })
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|p| executable(p))
}

/// Limits and timings of process attempts.
#[derive(Debug, Clone)]
pub struct ProcessOptions {
    /// After SIGINT, how long before SIGTERM.
    pub interrupt_grace: Duration,
    /// After SIGTERM, how long before SIGKILL.
    pub terminate_grace: Duration,
    /// Longer lines are cut here (the rest of the line is dropped, the cut is marked).
    pub max_line: usize,
    /// The log file stops growing here (a final line says so); output is still parsed.
    pub max_log_bytes: u64,
}

impl Default for ProcessOptions {
    fn default() -> Self {
        Self {
            interrupt_grace: Duration::from_secs(5),
            terminate_grace: Duration::from_secs(5),
            max_line: 64 * 1024,
            max_log_bytes: 256 * 1024 * 1024,
        }
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessExit {
    /// Exit code, if it exited.
    pub code: Option<i32>,
    /// Signal that killed it, if one did.
    pub signal: Option<i32>,
    /// Whether Forge stopped it (timeout or cancel).
    pub stopped: bool,
}

/// The identity of an attempt, given to the process as `FORGE_*` variables.
#[derive(Debug, Clone)]
pub struct AttemptEnv<'a> {
    /// `FORGE_RUN_ID`.
    pub run: &'a RunId,
    /// `FORGE_TASK_ID`.
    pub task: &'a str,
    /// `FORGE_ATTEMPT`.
    pub attempt: u32,
}

/// Spawns `spec`, feeds each output line to the log at `log_path` and to `on_line`, and waits
/// for the process and its whole group. `cancel` stops it gracefully, `kill` at once.
pub async fn run_process(
    spec: &CommandSpec,
    env: &AttemptEnv<'_>,
    log_path: &Path,
    on_line: &mut (dyn FnMut(OutputStream, &str) + Send),
    cancel: &CancellationToken,
    kill: &CancellationToken,
    options: &ProcessOptions,
) -> std::io::Result<ProcessExit> {
    run_process_in(spec, env, log_path, on_line, cancel, kill, options, &|_| {
        Ok(())
    })
    .await
}

/// A hook that sets a command up before it is spawned (such as
/// `forge_staging::Workspace::prepare_command`, which may enter a namespace).
pub type PrepareCommand<'a> = dyn Fn(&mut std::process::Command) -> std::io::Result<()> + Sync + 'a;

/// [`run_process`], with `prepare` called on the command after Forge set it up (arguments,
/// `FORGE_*` variables, process group) and before the standard streams are set and it is
/// spawned: how a workspace puts the process in its directory (and namespace).
#[allow(clippy::too_many_arguments)] // the pieces of one attempt, each given by a different part
pub async fn run_process_in(
    spec: &CommandSpec,
    env: &AttemptEnv<'_>,
    log_path: &Path,
    on_line: &mut (dyn FnMut(OutputStream, &str) + Send),
    cancel: &CancellationToken,
    kill: &CancellationToken,
    options: &ProcessOptions,
    prepare: &PrepareCommand<'_>,
) -> std::io::Result<ProcessExit> {
    let mut log = LogFile::new(log_path, options.max_log_bytes);
    let mut command = std::process::Command::new(&spec.program);
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    command
        .args(&spec.args)
        .current_dir(&spec.cwd)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .env("FORGE_RUN_ID", env.run.as_str())
        .env("FORGE_TASK_ID", env.task)
        .env("FORGE_ATTEMPT", env.attempt.to_string())
        .env("FORGE_WORKSPACE", &spec.cwd);
    prepare(&mut command)?;
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = tokio::process::Command::from(command).spawn()?;
    let pgid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(rustix::process::Pid::from_raw);
    let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(std::io::Error::other("child has no output pipes"));
    };
    let mut out = LineSplitter::new(OutputStream::Stdout, options.max_line);
    let mut err = LineSplitter::new(OutputStream::Stderr, options.max_line);
    let (mut out_buf, mut err_buf) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    let (mut out_open, mut err_open) = (true, true);
    let mut status: Option<std::process::ExitStatus> = None;
    let mut stopped = false;
    let mut killed = false;
    // Once the group is seen empty it stays empty: only members can create members.
    let mut group_gone = pgid.is_none();
    // Escalation: next signal and when.
    let mut escalation: Option<(rustix::process::Signal, tokio::time::Instant)> = None;
    let mut emit = |stream: OutputStream, line: &str, log: &mut LogFile| {
        log.line(line);
        on_line(stream, line);
    };
    while out_open || err_open || status.is_none() {
        let next_signal_at = escalation.map(|(_, at)| at);
        tokio::select! {
            n = stdout.read(&mut out_buf), if out_open => match n {
                Ok(0) | Err(_) => {
                    out_open = false;
                    if let Some(rest) = out.finish() { emit(OutputStream::Stdout, &rest, &mut log); }
                }
                Ok(n) => out.feed(&out_buf[..n], |s, l| emit(s, l, &mut log)),
            },
            n = stderr.read(&mut err_buf), if err_open => match n {
                Ok(0) | Err(_) => {
                    err_open = false;
                    if let Some(rest) = err.finish() { emit(OutputStream::Stderr, &rest, &mut log); }
                }
                Ok(n) => err.feed(&err_buf[..n], |s, l| emit(s, l, &mut log)),
            },
            s = child.wait(), if status.is_none() => {
                status = Some(s?);
                // The leader is gone; whatever it left behind in its group goes too, or the
                // pipes (inherited by grandchildren) would never close.
                if let Some(pgid) = pgid {
                    group_gone = end_group(pgid, options.terminate_grace.min(Duration::from_millis(500))).await;
                }
            },
            () = cancel.cancelled(), if !stopped && status.is_none() => {
                stopped = true;
                if let Some(pgid) = pgid {
                    let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::INT);
                }
                escalation = Some((rustix::process::Signal::TERM, tokio::time::Instant::now() + options.interrupt_grace));
            },
            () = kill.cancelled(), if !killed && status.is_none() => {
                stopped = true;
                killed = true;
                if let Some(pgid) = pgid {
                    let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
                }
                // Repeat the kill shortly in case a member was forking at that moment.
                escalation = Some((rustix::process::Signal::KILL, tokio::time::Instant::now() + Duration::from_millis(100)));
            },
            () = async { if let Some(at) = next_signal_at { tokio::time::sleep_until(at).await } }, if next_signal_at.is_some() && status.is_none() => {
                if let (Some(pgid), Some((signal, _))) = (pgid, escalation) {
                    let _ = rustix::process::kill_process_group(pgid, signal);
                    escalation = (signal == rustix::process::Signal::TERM)
                        .then(|| (rustix::process::Signal::KILL, tokio::time::Instant::now() + options.terminate_grace));
                }
            },
        }
    }
    if let Some(pgid) = pgid
        && !group_gone
    {
        end_group(pgid, Duration::ZERO).await;
    }
    log.finish()?;
    let status = status.ok_or_else(|| std::io::Error::other("process status lost"))?;
    Ok(ProcessExit {
        code: status.code(),
        signal: std::os::unix::process::ExitStatusExt::signal(&status),
        stopped,
    })
}

/// Terminates what is left of a process group: SIGTERM, up to `grace` for it to go, then
/// SIGKILL until no member is left. Returns whether the group is empty.
async fn end_group(pgid: rustix::process::Pid, grace: Duration) -> bool {
    if !group_alive(pgid) {
        return true;
    }
    if !grace.is_zero() {
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::TERM);
        let until = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < until && group_alive(pgid) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    for _ in 0..500 {
        if !group_alive(pgid) {
            return true;
        }
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    !group_alive(pgid)
}

/// Whether any live (non-zombie) process is in group `pgid`. `kill(-pgid, 0)` answers first;
/// when it finds members, `/proc` tells live ones from zombies waiting for their reaper.
pub fn group_alive(pgid: rustix::process::Pid) -> bool {
    // The common case costs one system call: no member at all, not even a zombie.
    if rustix::process::test_kill_process_group(pgid) == Err(rustix::io::Errno::SRCH) {
        return false;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    let want = pgid.as_raw_nonzero().get();
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...: comm may contain spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|f| f.parse::<i32>().ok());
        if pgrp == Some(want) && state != Some("Z") && state != Some("X") {
            return true;
        }
    }
    false
}

/// Splits a byte stream into lines without holding more than `max` bytes of a line.
struct LineSplitter {
    stream: OutputStream,
    max: usize,
    partial: Vec<u8>,
    /// Dropping the rest of an over-long line until its newline.
    skipping: bool,
}

impl LineSplitter {
    fn new(stream: OutputStream, max: usize) -> Self {
        Self {
            stream,
            max: max.max(16),
            partial: Vec::new(),
            skipping: false,
        }
    }

    fn feed(&mut self, mut bytes: &[u8], mut emit: impl FnMut(OutputStream, &str)) {
        while !bytes.is_empty() {
            let newline = bytes.iter().position(|&b| b == b'\n');
            let (chunk, rest, ends) = match newline {
                Some(i) => (&bytes[..i], &bytes[i + 1..], true),
                None => (bytes, &[][..], false),
            };
            if !self.skipping {
                let room = self.max - self.partial.len();
                if chunk.len() > room {
                    self.partial.extend_from_slice(&chunk[..room]);
                    let mut line = String::from_utf8_lossy(&self.partial).into_owned();
                    line.push_str(" …[line cut]");
                    emit(self.stream, &line);
                    self.partial.clear();
                    self.skipping = !ends;
                } else {
                    self.partial.extend_from_slice(chunk);
                    if ends {
                        let line = String::from_utf8_lossy(&self.partial);
                        emit(self.stream, line.trim_end_matches('\r'));
                        self.partial.clear();
                    }
                }
            } else if ends {
                self.skipping = false;
            }
            bytes = rest;
        }
    }

    fn finish(&mut self) -> Option<String> {
        if self.partial.is_empty() {
            return None;
        }
        let line = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        Some(line)
    }
}

/// The attempt's `output.log`, capped. Created (with its directories) on the first line, so an
/// attempt that prints nothing costs no inode; readers treat a missing log as empty.
struct LogFile {
    path: PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
    written: u64,
    cap: u64,
    capped: bool,
    error: Option<std::io::Error>,
}

impl LogFile {
    fn new(path: &Path, cap: u64) -> Self {
        Self {
            path: path.to_path_buf(),
            file: None,
            written: 0,
            cap,
            capped: false,
            error: None,
        }
    }

    fn open(&mut self) -> Option<&mut std::io::BufWriter<std::fs::File>> {
        if self.file.is_none() && self.error.is_none() {
            let opened = self
                .path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::File::create(&self.path));
            match opened {
                Ok(f) => self.file = Some(std::io::BufWriter::with_capacity(64 * 1024, f)),
                Err(e) => self.error = Some(e),
            }
        }
        self.file.as_mut()
    }

    fn line(&mut self, line: &str) {
        if self.capped || self.error.is_some() {
            return;
        }
        let len = line.len() as u64 + 1;
        let over = self.written + len > self.cap;
        let cap = self.cap;
        let Some(file) = self.open() else { return };
        let result = if over {
            writeln!(
                file,
                "[forge: output.log reached its limit of {cap} bytes; later output is not logged]"
            )
        } else {
            writeln!(file, "{line}")
        };
        if let Err(e) = result {
            self.error = Some(e);
        }
        if over {
            self.capped = true;
        } else {
            self.written += len;
        }
    }

    fn finish(mut self) -> std::io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.file.as_mut().map_or(Ok(()), std::io::Write::flush)
    }
}

/// Builds the command of an attempt.
pub type CommandFactory = dyn Fn(&Task, u32) -> Result<CommandSpec, String> + Send + Sync;

/// Called with every output line of an attempt.
pub type LineHandler = dyn Fn(&AttemptContext, OutputStream, &str) + Send + Sync;

/// The default [`TaskRunner`] for commands: each attempt spawns a process (by default the
/// task's prompt as a `sh -c` script in `workdir`, which is the `shell` agent), logs its output
/// to `<logs>/<task>/<attempt>/output.log` and hands each line to a handler.
pub struct ProcessRunner {
    run: RunId,
    logs: PathBuf,
    factory: Arc<CommandFactory>,
    on_line: Option<Arc<LineHandler>>,
    options: ProcessOptions,
}

impl ProcessRunner {
    /// Runs each task's prompt with `sh -c` in `workdir`; logs go under `logs`.
    pub fn shell(run: RunId, workdir: PathBuf, logs: PathBuf) -> Self {
        let factory = move |task: &Task, _attempt: u32| {
            let mut spec = CommandSpec::shell(&task.prompt, &workdir);
            spec.env = task.env.iter().map(|(k, v)| (k.into(), v.into())).collect();
            Ok(spec)
        };
        Self::new(run, logs, Arc::new(factory))
    }

    /// Runs what `factory` builds for each attempt.
    pub fn new(run: RunId, logs: PathBuf, factory: Arc<CommandFactory>) -> Self {
        Self {
            run,
            logs,
            factory,
            on_line: None,
            options: ProcessOptions::default(),
        }
    }

    /// Hands every output line to `handler` (e.g. an agent's JSONL parser).
    #[must_use]
    pub fn on_line(mut self, handler: Arc<LineHandler>) -> Self {
        self.on_line = Some(handler);
        self
    }

    /// Changes limits and grace periods.
    #[must_use]
    pub fn options(mut self, options: ProcessOptions) -> Self {
        self.options = options;
        self
    }

    /// `<logs>/<task>/<attempt>/output.log`.
    pub fn log_path(&self, task: &Task, attempt: u32) -> PathBuf {
        self.logs
            .join(task.id.as_str())
            .join(attempt.to_string())
            .join("output.log")
    }
}

#[async_trait::async_trait]
impl TaskRunner for ProcessRunner {
    async fn run(&self, task: &Task, attempt: u32, ctx: AttemptContext) -> TaskOutcome {
        let spec = match (self.factory)(task, attempt) {
            Ok(spec) => spec,
            Err(e) => return TaskOutcome::failed(e),
        };
        ctx.started(&task.agent, &spec.cwd.to_string_lossy(), "none");
        let handler = self.on_line.clone();
        let ctx_for_lines = ctx.clone();
        let mut on_line = move |stream: OutputStream, line: &str| {
            if let Some(h) = &handler {
                h(&ctx_for_lines, stream, line);
            }
        };
        let env = AttemptEnv {
            run: &self.run,
            task: task.id.as_str(),
            attempt,
        };
        let log = self.log_path(task, attempt);
        match run_process(
            &spec,
            &env,
            &log,
            &mut on_line,
            &ctx.cancel,
            &ctx.kill,
            &self.options,
        )
        .await
        {
            Ok(exit) => {
                let status = if exit.stopped {
                    TaskStatus::Cancelled
                } else if exit.code == Some(0) {
                    TaskStatus::Succeeded
                } else {
                    TaskStatus::Failed
                };
                TaskOutcome {
                    status,
                    exit_code: exit.code,
                    signal: exit.signal,
                    files_changed: Vec::new(),
                    message: None,
                }
            }
            Err(e) => TaskOutcome::failed(format!(
                "cannot run `{}`: {e}",
                spec.program.to_string_lossy()
            )),
        }
    }

    fn reports_start(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(max: usize, chunks: &[&[u8]]) -> Vec<String> {
        let mut s = LineSplitter::new(OutputStream::Stdout, max);
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, |_, l| out.push(l.to_owned()));
        }
        out.extend(s.finish());
        out
    }

    #[test]
    fn programs_are_found_on_path() {
        let sh = find_program("sh").expect("sh is installed");
        assert!(sh.is_absolute() && sh.ends_with("sh"));
        assert_eq!(find_program("/bin/sh"), Some(PathBuf::from("/bin/sh")));
        assert_eq!(find_program("no-such-program-forge"), None);
        assert_eq!(find_program("/etc/hostname-not-executable"), None);
    }

    #[test]
    fn lines_across_chunks_and_cut_lines() {
        assert_eq!(
            split(100, &[b"ab", b"c\nd", b"e\r\n", b"tail"]),
            ["abc", "de", "tail"]
        );
        let long = vec![b'x'; 40];
        let got = split(16, &[&long, b"\nnext\n"]);
        assert_eq!(got.len(), 2);
        assert!(got[0].starts_with(&"x".repeat(16)) && got[0].ends_with("[line cut]"));
        assert_eq!(got[1], "next");
        assert_eq!(split(100, &[b"\xff\xfe ok\n"]), ["\u{fffd}\u{fffd} ok"]);
    }
}
