//! Telling the user that a run ended or waits for an answer: the terminal bell (when standard
//! error is a terminal; `[run] bell = false` in forge.toml turns it off) and the optional
//! `notify` command of forge.toml, run with `sh -c` and these variables:
//!
//! | variable | value |
//! |---|---|
//! | `FORGE_NOTIFY_EVENT` | `finished` (the run ended) or `waiting` (a prompt waits for an answer) |
//! | `FORGE_RUN_ID` | the run |
//! | `FORGE_RUN_STATUS` | `succeeded`, `failed`, `cancelled` (`finished`); empty for `waiting` |
//! | `FORGE_NOTIFY_MESSAGE` | one line for a person, e.g. `Forge run auth-… succeeded` |
//!
//! A notifier that fails or takes long never fails the run: it is reported as a warning, and
//! one still running after [`WAIT`] is left to finish on its own.

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::time::{Duration, Instant};

use forge_events::RunId;

use crate::config::Context;

/// How long Forge waits for the `notify` command before going on without it.
pub(crate) const WAIT: Duration = Duration::from_secs(5);

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// The run ended with this status (`succeeded`, `failed`, `cancelled`).
    Finished(&'static str),
    /// A prompt waits for the user's answer.
    Waiting,
}

/// Rings the bell and runs the `notify` command for `event` of `run`.
pub(crate) fn notify(ctx: &Context, run: &RunId, event: Event) {
    if ctx.config.bell && std::io::stderr().is_terminal() {
        let mut err = std::io::stderr();
        let _ = err.write_all(b"\x07");
        let _ = err.flush();
    }
    let Some(command) = ctx.config.notify.as_deref() else {
        return;
    };
    let (name, status, message) = match event {
        Event::Finished(status) => ("finished", status, format!("Forge run {run} {status}")),
        Event::Waiting => (
            "waiting",
            "",
            format!("Forge run {run} waits for your answer"),
        ),
    };
    if let Err(warning) = run_command(ctx, command, run, name, status, &message) {
        errln!("warning: the notify command of forge.toml {warning}");
    }
}

fn run_command(
    ctx: &Context,
    command: &str,
    run: &RunId,
    event: &str,
    status: &str,
    message: &str,
) -> Result<(), String> {
    let mut child = std::process::Command::new("sh")
        .args(["-c", command])
        .current_dir(&ctx.repo)
        .env("FORGE_NOTIFY_EVENT", event)
        .env("FORGE_RUN_ID", run.as_str())
        .env("FORGE_RUN_STATUS", status)
        .env("FORGE_NOTIFY_MESSAGE", message)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("(`{command}`) could not start: {e}"))?;
    let deadline = Instant::now() + WAIT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                let mut text = String::new();
                if let Some(mut err) = child.stderr.take() {
                    let _ = err.read_to_string(&mut text);
                }
                let text = text.trim();
                let code = status
                    .code()
                    .map_or_else(|| "a signal".to_owned(), |c| format!("code {c}"));
                return Err(if text.is_empty() {
                    format!("(`{command}`) exited with {code}")
                } else {
                    format!("(`{command}`) exited with {code}: {text}")
                });
            }
            Ok(None) if Instant::now() >= deadline => {
                return Err(format!(
                    "(`{command}`) still runs after {}s; Forge goes on without it",
                    WAIT.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("(`{command}`): {e}")),
        }
    }
}
