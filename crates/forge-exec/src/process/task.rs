//! [`ProcessRunner`]: the [`TaskRunner`] that runs each attempt as a command.

use std::path::PathBuf;
use std::sync::Arc;

use forge_events::{OutputStream, RunId, TaskStatus};

use super::{AttemptEnv, CommandSpec, ProcessOptions, run_process};
use crate::plan::Task;
use crate::sched::{AttemptContext, TaskOutcome, TaskRunner};

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
        forge_events::layout::attempt_log(&self.logs.join(task.id.as_str()), attempt)
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
