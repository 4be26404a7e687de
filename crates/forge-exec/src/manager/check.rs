//! Per-task checks (`check = ["cargo check -p api"]`): commands run in the task's own workspace
//! right after its agent exits and before its changes are integrated. A failure goes back to
//! the same agent session (the profile's `resume`) with the command's output trimmed to
//! what matters, for `check_rounds` tries; then the attempt fails. The gate stays the final
//! word on the integrated tree.

use std::fmt::Write as _;
use std::sync::Arc;

use forge_events::{EventKind, OutputStream};
use forge_staging::Workspace;

use super::Shared;
use super::attempt::{Attempt, capture};
use crate::ExecError;
use crate::plan::Task;
use crate::process::{AttemptEnv, CommandSpec, run_process_in};
use crate::sched::{AttemptContext, TaskOutcome};

/// Lines of a failing command's output kept around each error line, after it.
const CONTEXT_AFTER: usize = 3;
/// Error blocks kept at most.
const MAX_BLOCKS: usize = 12;
/// Last lines always kept (the summary most runners print at the end).
const TAIL_LINES: usize = 15;
/// The most trimmed output fed back, in bytes.
const MAX_FEEDBACK: usize = 8 * 1024;
/// The most output a check keeps in memory, in bytes (the log has it all).
const MAX_KEPT: usize = 512 * 1024;

/// How a task's checks went.
#[derive(Debug)]
pub(crate) enum CheckOutcome {
    /// Every command passed (or the task has none).
    Passed,
    /// A command failed: which, how, and its output trimmed for the agent.
    Failed {
        /// The command line.
        command: String,
        /// Its exit code, or the signal, in words.
        how: String,
        /// Its output, trimmed to what matters.
        output: String,
    },
    /// The attempt was stopped while a check ran.
    Stopped,
}

/// Where a round of checks leaves the attempt.
pub(crate) enum Checked {
    /// The checks passed, or the attempt ended: it goes on (or stops) as it is.
    Done(Attempt),
    /// A check failed with rounds left: the agent runs again from what it did so far, told why.
    Again(Attempt),
}

/// One round of the task's checks in the attempt's workspace, after its agent succeeded.
pub(crate) async fn round(shared: &Arc<Shared>, mut a: Attempt) -> Checked {
    a.check_round += 1;
    let ran = match &a.workspace {
        Some(ws) => run_checks(shared, &a.task, a.number, a.check_round, &**ws, &a.ctx).await,
        None => Err(ExecError::Store(format!(
            "attempt {} of `{}` has no workspace to check",
            a.number,
            a.id()
        ))),
    };
    let (command, how, output) = match ran {
        Ok(CheckOutcome::Passed) => return Checked::Done(a),
        Ok(CheckOutcome::Stopped) => return Checked::Done(a.cancel("stopped while its check ran")),
        Err(e) => return Checked::Done(a.fail(&e)),
        Ok(CheckOutcome::Failed {
            command,
            how,
            output,
        }) => (command, how, output),
    };
    if a.check_round > a.task.check_rounds {
        let rounds = a.task.check_rounds;
        a = capture::keep_for_retry(shared, a).await;
        return Checked::Done(a.end(TaskOutcome::failed(format!(
            "its check `{command}` failed ({how}){}",
            if rounds > 0 {
                format!(" after {rounds} round(s) of feedback to the agent")
            } else {
                String::new()
            }
        ))));
    }
    let text = feedback(&command, &how, &output);
    // The agent goes on from where it is: same session where it can, same files.
    if let Some(ws) = a.workspace.take() {
        match capture::changes_and_dispose(shared, ws).await {
            Ok(changes) => a.restore = Some(changes),
            Err(e) => return Checked::Done(a.fail(&e)),
        }
    }
    let continued = a
        .agent_session
        .take()
        .or_else(|| a.session.clone())
        .filter(|_| a.profile.can_resume());
    a.prompt = match &continued {
        Some(_) => text,
        None => format!(
            "{}\n\n---\nYour changes so far are in the workspace.\n{text}",
            a.task.prompt
        ),
    };
    a.session = continued;
    Checked::Again(a)
}

/// Runs the task's checks, in order, in `ws`; the first failure ends them. `round` counts from 1.
pub(crate) async fn run_checks(
    shared: &Shared,
    task: &Task,
    attempt: u32,
    round: u32,
    ws: &dyn Workspace,
    ctx: &AttemptContext,
) -> Result<CheckOutcome, ExecError> {
    let dir = shared
        .store
        .attempt_dir(&shared.run, task.id.as_str(), attempt);
    for (i, command) in task.check.iter().enumerate() {
        let spec = CommandSpec {
            program: "sh".into(),
            args: vec!["-c".into(), command.into()],
            cwd: ws.path().to_path_buf(),
            env: task.env.iter().map(|(k, v)| (k.into(), v.into())).collect(),
        };
        let env = AttemptEnv {
            run: &shared.run,
            task: task.id.as_str(),
            attempt,
        };
        let log = dir.join(format!("check-{round}-{}.log", i + 1));
        let mut kept = String::new();
        let mut on_line = |_: OutputStream, line: &str| {
            if kept.len() < MAX_KEPT {
                kept.push_str(line);
                kept.push('\n');
            }
        };
        let exit = run_process_in(
            &spec,
            &env,
            &log,
            &mut on_line,
            &ctx.cancel,
            &ctx.kill,
            &shared.process,
            Some(&|cmd| ws.prepare_command(cmd).map_err(std::io::Error::other)),
        )
        .await
        .map_err(|e| ExecError::io("run the check of", &log, e))?;
        if exit.stopped || ctx.cancel.is_cancelled() {
            return Ok(CheckOutcome::Stopped);
        }
        let passed = exit.code == Some(0);
        shared.publish(
            &task.id,
            EventKind::TaskCheck {
                attempt,
                command: command.clone(),
                passed,
                exit_code: exit.code,
                round,
            },
        );
        if !passed {
            let how = match (exit.code, exit.signal) {
                (_, Some(sig)) => format!("killed by signal {sig}"),
                (Some(code), _) => format!("exit code {code}"),
                (None, None) => "ended without a status".to_owned(),
            };
            return Ok(CheckOutcome::Failed {
                command: command.clone(),
                how,
                output: trim_failure_output(&kept),
            });
        }
    }
    Ok(CheckOutcome::Passed)
}

/// What the agent is told when a check failed.
pub(crate) fn feedback(command: &str, how: &str, output: &str) -> String {
    let mut text = format!(
        "Forge: after your changes, the check `{command}` failed ({how}). Fix what it reports; \
         the check runs again when you finish."
    );
    if !output.trim().is_empty() {
        let _ = write!(text, " Its output, trimmed:\n\n```\n{output}```\n");
    }
    text
}

/// A failing command's output cut to what a reader needs first: the lines that name errors and
/// failing tests (with a few lines after each), then the last lines (where runners summarize).
/// Output with no such line keeps its last lines only.
pub(crate) fn trim_failure_output(output: &str) -> String {
    let lines: Vec<&str> = output.lines().collect();
    let mut keep = vec![false; lines.len()];
    let mut blocks = 0;
    for (i, line) in lines.iter().enumerate() {
        if blocks >= MAX_BLOCKS {
            break;
        }
        if is_error_line(line) && !keep[i] {
            blocks += 1;
            for k in keep.iter_mut().skip(i).take(CONTEXT_AFTER + 1) {
                *k = true;
            }
        }
    }
    for k in keep.iter_mut().rev().take(TAIL_LINES) {
        *k = true;
    }
    let mut out = String::new();
    let mut gap = false;
    for (line, kept) in lines.iter().zip(&keep) {
        if !kept {
            gap = true;
            continue;
        }
        if gap && !out.is_empty() {
            out.push_str("…\n");
        }
        gap = false;
        if out.len() + line.len() + 1 > MAX_FEEDBACK {
            out.push_str("… (cut)\n");
            break;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Whether a line names an error or a failing test, in the words of the common runners
/// (cargo/rustc, pytest, jest/vitest, go test, node's test runner, compilers, shells).
fn is_error_line(line: &str) -> bool {
    let t = line.trim_start();
    let lower = t.to_ascii_lowercase();
    lower.starts_with("error")
        || lower.contains(": error")
        || t.contains("FAILED")
        || t.starts_with("FAIL ")
        || t.starts_with("--- FAIL")
        || t.starts_with("not ok ")
        || t.starts_with("✗")
        || t.starts_with("×")
        || t.starts_with("● ")
        || t.starts_with("E  ")
        || t.contains("panicked at")
        || t.contains("AssertionError")
        || t.contains("Traceback (most recent call last)")
        || lower.contains("command not found")
        || lower.contains("no such file or directory")
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::trim_failure_output;

    #[test]
    fn keeps_errors_and_the_tail_and_marks_what_it_left_out() {
        let mut text = String::new();
        for i in 0..100 {
            let _ = writeln!(text, "   Compiling crate{i} v0.1.0");
        }
        text.push_str("error[E0425]: cannot find value `x` in this scope\n --> src/lib.rs:3:5\n");
        for i in 0..50 {
            let _ = writeln!(text, "noise {i}");
        }
        text.push_str("test tests::adds ... FAILED\n");
        for i in 0..50 {
            let _ = writeln!(text, "more {i}");
        }
        text.push_str("test result: FAILED. 1 passed; 1 failed\n");
        let trimmed = trim_failure_output(&text);
        assert!(
            trimmed.contains("error[E0425]: cannot find value `x`"),
            "{trimmed}"
        );
        assert!(trimmed.contains(" --> src/lib.rs:3:5"), "{trimmed}");
        assert!(trimmed.contains("test tests::adds ... FAILED"), "{trimmed}");
        assert!(
            trimmed.contains("test result: FAILED. 1 passed; 1 failed"),
            "{trimmed}"
        );
        assert!(!trimmed.contains("Compiling crate5 "), "{trimmed}");
        assert!(trimmed.contains("…\n"), "{trimmed}");
        assert!(trimmed.lines().count() < 40, "{trimmed}");
    }

    #[test]
    fn output_without_errors_keeps_its_last_lines() {
        let mut text = String::new();
        for i in 0..40 {
            let _ = writeln!(text, "line {i}");
        }
        let trimmed = trim_failure_output(&text);
        assert!(trimmed.starts_with("line 25\n"), "{trimmed}");
        assert!(trimmed.ends_with("line 39\n"), "{trimmed}");
    }
}
