//! The local runner: attempts on this machine, as Forge always ran them.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use forge_events::{EventKind, EventSink as _, TaskStatus};
use forge_staging::Workspace;

use super::{AttemptRunner, Pass, Ran};
use crate::ExecError;
use crate::agent::{OutputFormat, OutputParser, PromptVars};
use crate::manager::pipeline::{OutputEvents, attempt_options, dispose, first_line};
use crate::manager::{Shared, blocking};
use crate::process::{AttemptEnv, run_process_in};
use crate::sched::TaskOutcome;

/// Stages the attempt's workspace with the run's stager, spawns the agent in it (its own
/// process group, and namespace where the host allows) and captures its changes.
pub(crate) struct LocalRunner;

#[async_trait::async_trait]
impl AttemptRunner for LocalRunner {
    #[allow(clippy::too_many_lines)] // stage, agent, capture, step by step
    async fn run(&self, shared: &Arc<Shared>, p: Pass<'_>) -> Result<Ran, ExecError> {
        let Pass {
            task,
            attempt,
            pass,
            prompt,
            snapshot,
            ctx,
            attempt_dir,
            profile,
        } = p;
        let name = if pass == 0 {
            format!("{}-{attempt}", task.id)
        } else {
            format!("{}-{attempt}-rerun{pass}", task.id)
        };
        let stager = shared.stager.clone();
        let ws: Workspace = {
            let _turn = shared.heavy.acquire().await;
            blocking(move || stager.stage(&snapshot, &name)).await??
        };
        if pass == 0 {
            shared.publish(
                &task.id,
                EventKind::TaskStarted {
                    attempt,
                    agent: task.agent.clone(),
                    workspace: ws.path().display().to_string(),
                    strategy: ws.kind().name().to_owned(),
                },
            );
        }
        // 3. The agent.
        let suffix = if pass == 0 {
            String::new()
        } else {
            format!("-rerun{pass}")
        };
        let prompt_file = attempt_dir.join(format!("prompt{suffix}.md"));
        std::fs::write(&prompt_file, prompt)
            .map_err(|e| ExecError::io("write", &prompt_file, e))?;
        let mut spec = profile
            .command(&PromptVars {
                prompt,
                prompt_file: &prompt_file,
                model: task.model.as_deref(),
            })
            .map_err(|e| ExecError::Agent(e.to_string()))?;
        ws.path().clone_into(&mut spec.cwd);
        spec.env
            .extend(task.env.iter().map(|(k, v)| (k.into(), v.into())));
        let log_path = attempt_dir.join(format!("output{suffix}.log"));
        let mut output = OutputEvents {
            shared,
            task: &task.id,
            parser: OutputParser::new(profile.format).with_workspace(ws.path()),
            text: profile.format == OutputFormat::Text,
            buf: Vec::new(),
            window: Instant::now(),
            in_window: 0,
            last_error: None,
            attempt,
            stop: ctx.cancel.child_token(),
            gave_up: None,
        };
        let stop = output.stop.clone();
        let env = AttemptEnv {
            run: &shared.run,
            task: task.id.as_str(),
            attempt,
        };
        let options = attempt_options(shared, task, profile.format);
        let exit = run_process_in(
            &spec,
            &env,
            &log_path,
            &mut |stream, line| output.line(stream, line),
            &stop,
            &ctx.kill,
            &options,
            Some(&|cmd| ws.prepare_command(cmd).map_err(std::io::Error::other)),
        )
        .await;
        output.finish();
        let last_error = output
            .last_error
            .take()
            .or_else(|| output.parser.last_stderr().map(str::to_owned));
        let gave_up = output.gave_up.take();
        let exit = match exit {
            Ok(exit) => exit,
            Err(e) => {
                dispose(ws).await;
                return Ok(Ran::Ended(TaskOutcome::failed(format!(
                    "could not start `{}` for agent `{}`: {e}",
                    spec.program.to_string_lossy(),
                    task.agent
                ))));
            }
        };
        if let Some(why) = &exit.no_namespace
            && !shared.warned_no_namespace.swap(true, Ordering::Relaxed)
        {
            let _ = shared.events.publish(
                None,
                EventKind::RunWarning {
                    message: format!(
                        "attempts run without their own PID namespace ({why}): a process an agent detaches with `setsid` can outlive its attempt; run as root or allow unprivileged user namespaces, or set `[isolation] require = true` to refuse"
                    ),
                },
            );
        }
        if let Some(reason) = gave_up
            && !ctx.cancel.is_cancelled()
        {
            dispose(ws).await;
            return Ok(Ran::Ended(TaskOutcome {
                status: TaskStatus::Failed,
                exit_code: exit.code,
                signal: exit.signal,
                files_changed: Vec::new(),
                message: Some(format!("the agent could not reach its model: {reason}")),
            }));
        }
        if exit.stopped || ctx.cancel.is_cancelled() {
            dispose(ws).await;
            return Ok(Ran::Ended(TaskOutcome {
                status: TaskStatus::Cancelled,
                exit_code: exit.code,
                signal: exit.signal,
                files_changed: Vec::new(),
                message: Some("stopped".into()),
            }));
        }
        if exit.code != Some(0) {
            dispose(ws).await;
            let what = match (exit.code, exit.signal) {
                _ if exit.memory_limit_hit => format!(
                    "killed by its memory limit ({}); raise `memory` for this task",
                    task.memory
                        .map_or_else(String::new, crate::process::format_memory)
                ),
                (_, Some(sig)) => format!("killed by signal {sig}"),
                (Some(code), _) => format!("exited with code {code}"),
                (None, None) => "ended without a status".to_owned(),
            };
            let message = match last_error {
                Some(err) => format!("{what}: {}", first_line(&err)),
                None => what,
            };
            return Ok(Ran::Ended(TaskOutcome {
                status: TaskStatus::Failed,
                exit_code: exit.code,
                signal: exit.signal,
                files_changed: Vec::new(),
                message: Some(message),
            }));
        }
        // 4. Capture, 5. persist: durable before anything is integrated or recorded.
        let turn = shared.heavy.acquire().await;
        let (ws, changes) = blocking(move || {
            let changes = ws.changes();
            (ws, changes)
        })
        .await?;
        drop(turn);
        dispose(ws).await;
        Ok(Ran::Changes(changes?))
    }
}
