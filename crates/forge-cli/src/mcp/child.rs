//! Running `forge` subcommands as child processes of the server.
//!
//! Why children and not calls: the server's stdout is the MCP channel, and the commands
//! (`plan`, `diff`, `apply`, `logs`, `abort`) print their results there; a child has its own
//! stdout. A child is also the unit of cancellation (a cancelled tool call kills it) and of
//! failure (whatever goes wrong in it, the server goes on). Each tool is thereby exactly the
//! command a user would type, with the same checks, messages and hints.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};

use super::ToolError;

/// What a finished `forge` child printed.
#[derive(Debug)]
pub(crate) struct Output {
    /// Its exit code (-1 when a signal ended it).
    pub(crate) code: i32,
    /// Its standard output.
    pub(crate) stdout: String,
    /// Its standard error.
    pub(crate) stderr: String,
}

impl Output {
    /// The child's error report as a tool error: Forge's `error:` and `hint:` lines (with the
    /// report before them, such as a plan's caret diagnostics).
    pub(crate) fn error(&self, doing: &str) -> ToolError {
        ToolError::from_report(&self.stderr).unwrap_or_else(|| {
            ToolError::new(format!(
                "`forge {doing}` exited with code {} and said nothing on stderr{}",
                self.code,
                if self.stdout.trim().is_empty() {
                    String::new()
                } else {
                    format!("; it printed: {}", self.stdout.trim())
                }
            ))
        })
    }
}

/// The program to run: this very binary.
pub(crate) fn program() -> Result<PathBuf, ToolError> {
    std::env::current_exe().map_err(|e| {
        ToolError::new(format!("cannot find the forge program itself: {e}"))
            .hint("start `forge mcp` by a path that stays valid while it runs")
    })
}

/// `forge --repo <repo> --color never <args>` with stdin closed, in `repo`.
pub(crate) fn command(repo: &Path, args: &[String]) -> Result<tokio::process::Command, ToolError> {
    let mut cmd = tokio::process::Command::new(program()?);
    cmd.arg("--repo")
        .arg(repo)
        .args(["--color", "never"])
        .args(args)
        .current_dir(repo)
        .env_remove("FORGE_REPO")
        .env_remove("FORGE_COLOR")
        .stdin(Stdio::null());
    Ok(cmd)
}

/// How long a cancelled child has after its SIGINT to stop on its own before it is killed.
const GRACE: Duration = Duration::from_secs(10);

/// Runs `forge <args>` in `repo` to its end, or until `cancelled` completes (the tool call was
/// cancelled): then the child gets SIGINT, as Ctrl-C (a planner stops its agent cleanly),
/// and is killed if it is still there after [`GRACE`].
pub(crate) async fn run(
    repo: &Path,
    args: &[String],
    cancelled: impl Future<Output = ()>,
) -> Result<Output, ToolError> {
    let mut cmd = command(repo, args)?;
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let what = args.first().map_or("", String::as_str);
    let child = cmd
        .spawn()
        .map_err(|e| ToolError::new(format!("cannot start `forge {what}`: {e}")))?;
    let pid = child.id();
    let output = child.wait_with_output();
    tokio::pin!(output);
    let out = tokio::select! {
        out = &mut output => out,
        () = cancelled => {
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()).and_then(Pid::from_raw) {
                let _ = kill_process(pid, Signal::INT);
            }
            // Dropping the wait (after the grace) kills the child.
            let _ = tokio::time::timeout(GRACE, &mut output).await;
            return Err(ToolError::new(format!("`forge {what}` was cancelled and stopped")));
        }
    }
    .map_err(|e| ToolError::new(format!("`forge {what}` could not be read: {e}")))?;
    Ok(Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}
