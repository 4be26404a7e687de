//! `forge mcp`: Forge as a Model Context Protocol server over stdio, so an agent host (Claude
//! Code, droid) plans, runs and watches parallel work through typed tools instead of shell
//! commands.
//!
//! The tools are the commands a user types, with the same checks and messages:
//! - `forge_validate`, `forge_status`, `forge_wait` and the resources read the plan parser and
//!   the run's journal in this process (they print nothing);
//! - `forge_plan`, `forge_diff`, `forge_apply`, `forge_logs` and `forge_abort` run the `forge`
//!   command as a child ([`child`] says why), and read its JSON or the run's journal after it;
//! - `forge_run` starts `forge run --no-apply --json` detached (its own process group), and
//!   `forge_retry` `forge retry` likewise: an ordinary journaled, resumable run that
//!   `forge status` and the dashboard show, and that goes on when the host closes the server.
//!   They return the run's id as soon as the run's first event names it.
//!
//! A bad request (an unknown run, an invalid plan, a path outside the repository) is a tool
//! error carrying Forge's message and hint ([`ToolError`]); the server goes on.

mod child;
mod error;
mod params;
mod status;

use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    Implementation, ListResourceTemplatesResult, ListResourcesResult, PaginatedRequestParams,
    ProgressNotificationParam, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult,
    Resource, ResourceContents, ResourceTemplate, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{Json, RoleServer, ServerHandler, ServiceExt as _, tool, tool_handler, tool_router};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _};

pub(crate) use error::ToolError;
use params::{
    AbortParams, AbortResult, ApplyParams, ApplyResult, DiffParams, DiffResult, LogsParams,
    LogsResult, PlanParams, PlanResult, PlanTask, RetryParams, RetryStarted, RunParams, RunStarted,
    StatusParams, ValidateParams, ValidateResult, WaitParams, WaitResult,
};
use status::{Liveness, RunStatus};

use crate::config::Context;
use crate::error::{CliError, CliResult, Exit};

/// The URI of the list of runs.
const RUNS_URI: &str = "forge://runs";
/// The URI of one run's state: `forge://runs/<run>`.
const RUN_URI_PREFIX: &str = "forge://runs/";
/// How often `forge_wait` looks at the journal.
const WAIT_POLL: Duration = Duration::from_millis(200);
/// `forge_wait`'s timeout when the request gives none, and the most it may ask for.
const WAIT_DEFAULT_SECS: u64 = 600;
const WAIT_MAX_SECS: u64 = 3600;
/// How long `forge_run` waits for the run's first event.
const START_TIMEOUT: Duration = Duration::from_mins(2);
/// `forge_logs`' limit when the request gives none.
const LOGS_DEFAULT_BYTES: usize = 64 * 1024;
/// How much of a detached run's stderr is kept to report why it did not start.
const STDERR_KEEP: usize = 16 * 1024;

/// What the server tells the host about itself.
const INSTRUCTIONS: &str = "Forge runs several AI coding agents on this repository in parallel, \
each in its own workspace with file locks, merges their changes, gates them on the project's \
tests and applies the result only when asked. Typical flow: forge_plan (a request becomes a \
validated plan; or write one and check it with forge_validate), forge_run (returns the run id \
at once), forge_wait (progress while it runs; the summary at the end), forge_diff to review, \
then forge_apply (all tasks or some; or a branch). forge_status, forge_logs and forge_abort \
look at or stop a run; forge_retry runs a failed task again with feedback. Run ids may be \
shortened to a unique prefix; no run means the latest.";

/// `forge mcp`: serves the tools on stdin/stdout until the host closes the connection.
pub(crate) async fn serve(ctx: &Context) -> CliResult {
    let server = ForgeServer::new(ctx.clone());
    let service = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| CliError::failed(format!("the MCP connection could not start: {e}")))?;
    service
        .waiting()
        .await
        .map_err(|e| CliError::failed(format!("the MCP server stopped: {e}")))?;
    Ok(Exit::Success)
}

/// The server: the repository it serves, and its tools.
#[derive(Clone)]
pub(crate) struct ForgeServer {
    ctx: Arc<Context>,
    tool_router: ToolRouter<Self>,
}

impl ForgeServer {
    /// A server for the repository of `ctx`.
    pub(crate) fn new(ctx: Context) -> Self {
        Self {
            ctx: Arc::new(ctx),
            tool_router: Self::tool_router(),
        }
    }

    fn repo(&self) -> &Path {
        &self.ctx.repo
    }

    /// Resolves a run on a blocking thread (it lists the run store).
    async fn resolve(&self, run: Option<String>) -> Result<forge_events::RunId, ToolError> {
        if let Some(given) = &run {
            check_word("run", given)?;
        }
        let ctx = self.ctx.clone();
        blocking(move || status::resolve(&ctx, run.as_deref())).await
    }

    /// A run's state, folded on a blocking thread.
    async fn status_of(&self, run: &forge_events::RunId) -> Result<RunStatus, ToolError> {
        let ctx = self.ctx.clone();
        let run = run.clone();
        blocking(move || status::read(&ctx, &run)).await
    }

    /// Waits until the journal of `run` holds event `seq` (a run prints an event as it
    /// journals it; the next tool reads the journal, which must not be behind what was
    /// returned).
    async fn until_journaled(&self, run: &str, seq: u64) -> Result<(), ToolError> {
        let id = self.resolve(Some(run.to_owned())).await?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.status_of(&id).await?.last_seq >= seq {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ToolError::new(format!(
                    "run {run} started but its journal did not record it within {} s",
                    START_TIMEOUT.as_secs()
                ))
                .hint("forge_status shows the run once its journal is written"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A path the request names, as a file inside the repository: relative to it (or absolute
    /// inside it), never through `..` out of it, never into `.git/`.
    fn repo_file(&self, what: &str, given: &str) -> Result<PathBuf, ToolError> {
        repo_file(self.repo(), what, given)
    }
}

#[tool_router(router = tool_router)]
impl ForgeServer {
    /// Turns a request into a validated plan with a planner agent (read-only).
    #[tool(
        name = "forge_plan",
        description = "Turn a request into a validated Forge plan (tasks, file claims, order) \
        with a planner agent that changes nothing. Returns the plan as TOML and its tasks; \
        writes it to `output` (a path in the repository) when given. Start it with forge_run."
    )]
    async fn forge_plan(
        &self,
        Parameters(p): Parameters<PlanParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<PlanResult>, ToolError> {
        if p.request.trim().is_empty() {
            return Err(ToolError::new("the request is empty")
                .hint("say what you want done, e.g. \"add user authentication\""));
        }
        let written = p
            .output
            .as_deref()
            .map(|o| self.repo_file("output", o))
            .transpose()?;
        // Without `output`, the planner writes to a scratch file that is read and removed.
        let scratch = match &written {
            Some(_) => None,
            None => Some(scratch_file(self.repo(), "plan-", ".toml")?),
        };
        let target = written
            .clone()
            .or_else(|| scratch.as_ref().map(|s| s.path().to_path_buf()))
            .unwrap_or_default();
        let mut args = vec!["plan".to_owned(), "-o".to_owned(), path_arg(&target)];
        if p.force || scratch.is_some() {
            args.push("--force".to_owned());
        }
        for (flag, value) in [("--agent", &p.agent), ("--task-agent", &p.task_agent)] {
            if let Some(v) = value {
                check_word(&flag[2..], v)?;
                args.extend([flag.to_owned(), v.clone()]);
            }
        }
        args.extend(["--".to_owned(), p.request.clone()]);
        let out = child::run(self.repo(), &args, ctx.ct.cancelled()).await?;
        if out.code != 0 {
            return Err(out.error("plan"));
        }
        let text = std::fs::read_to_string(&target).map_err(|e| {
            ToolError::new(format!(
                "`forge plan` succeeded but its plan {} cannot be read: {}",
                target.display(),
                crate::error::io_reason(&e)
            ))
        })?;
        let plan = crate::plan_file::validate_text(&self.ctx, &text, &target)?;
        // A scratch file is gone once read: its header names the file to write instead.
        let text = if scratch.is_some() {
            text.replace(&path_arg(&target), "plan.toml")
        } else {
            text
        };
        Ok(Json(PlanResult {
            name: plan.name.clone(),
            path: written.map(|w| self.relative(&w)),
            tasks: plan.tasks.iter().map(PlanTask::of).collect(),
            plan: text,
            output: out.stdout.trim_end().to_owned(),
        }))
    }

    /// Validates a plan's text.
    #[tool(
        name = "forge_validate",
        description = "Validate a Forge plan (TOML, or JSON with format = \"json\") without \
        running it. Returns whether it is valid, and each problem with its line and column."
    )]
    async fn forge_validate(
        &self,
        Parameters(p): Parameters<ValidateParams>,
    ) -> Result<Json<ValidateResult>, ToolError> {
        let json = match p.format.as_deref() {
            None | Some("toml") => false,
            Some("json") => true,
            Some(other) => {
                return Err(ToolError::new(format!("unknown plan format `{other}`"))
                    .hint("use \"toml\" (the default) or \"json\""));
            }
        };
        let ctx = self.ctx.clone();
        let result = blocking(move || Ok(params::validate(&ctx, &p.plan, json))).await?;
        Ok(Json(result?))
    }

    /// Starts a run in the background.
    #[tool(
        name = "forge_run",
        description = "Start a Forge run of a plan (`plan`: a plan file in the repository, or \
        `plan_text`: the plan itself) in the background, and return its id at once. The run \
        keeps its result in the run store: review it with forge_diff, apply it with \
        forge_apply. Follow it with forge_wait or forge_status."
    )]
    async fn forge_run(
        &self,
        Parameters(p): Parameters<RunParams>,
    ) -> Result<Json<RunStarted>, ToolError> {
        let plan = match (&p.plan, &p.plan_text) {
            (Some(path), None) => {
                let file = self.repo_file("plan", path)?;
                if !file.is_file() {
                    return Err(
                        ToolError::new(format!("no plan file at {}", file.display())).hint(
                            "give a plan file in the repository, or the plan itself as plan_text",
                        ),
                    );
                }
                file
            }
            (None, Some(text)) => {
                // Checked here, so its problems come with the lines of the text as given.
                let ctx = self.ctx.clone();
                let body = text.clone();
                let checked = blocking(move || Ok(params::validate(&ctx, &body, false))).await??;
                if !checked.valid {
                    return Err(ToolError {
                        what: format!(
                            "the plan has {} problem(s); nothing was started",
                            checked.errors.len()
                        ),
                        report: checked.report,
                        hint: Some(
                            "fix the plan (forge_validate shows each problem) and start it again"
                                .to_owned(),
                        ),
                    });
                }
                // The file is named after the plan, in characters safe in a file name.
                let name: String = checked
                    .name
                    .unwrap_or_default()
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
                    .take(40)
                    .collect();
                let stem = if name.is_empty() {
                    "mcp".to_owned()
                } else {
                    name
                };
                let file = self.ctx.repo.join(".forge/mcp").join(format!(
                    "{stem}-{}.toml",
                    &blake3::hash(text.as_bytes()).to_hex()[..12]
                ));
                crate::plan_file::write_atomic(&file, text)?;
                file
            }
            _ => {
                return Err(ToolError::new(
                    "give exactly one of `plan` (a plan file) and `plan_text` (the plan itself)",
                ));
            }
        };
        let mut args = vec![
            "run".to_owned(),
            path_arg(&plan),
            "--no-apply".to_owned(),
            "--json".to_owned(),
        ];
        if let Some(jobs) = p.jobs {
            args.extend(["--jobs".to_owned(), jobs.to_string()]);
        }
        let (run, seq, pid) = start_detached(self.repo(), &args).await?;
        self.until_journaled(&run, seq).await?;
        Ok(Json(RunStarted {
            run,
            plan: self.relative(&plan),
            pid,
        }))
    }

    /// The state of a run.
    #[tool(
        name = "forge_status",
        description = "The state of a Forge run (default: the latest): its tasks with their \
        state, activity and tokens, merge conflicts, the gate, the apply, and its summary."
    )]
    async fn forge_status(
        &self,
        Parameters(p): Parameters<StatusParams>,
    ) -> Result<Json<RunStatus>, ToolError> {
        let run = self.resolve(p.run).await?;
        Ok(Json(self.status_of(&run).await?))
    }

    /// Waits for a run to end, with progress notifications.
    #[tool(
        name = "forge_wait",
        description = "Wait until a Forge run (default: the latest) ends, or `timeout_secs` \
        pass (default 600, at most 3600). Sends a progress notification whenever the run \
        moves. Returns the run's state and summary; `finished` is false on a timeout."
    )]
    async fn forge_wait(
        &self,
        Parameters(p): Parameters<WaitParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<WaitResult>, ToolError> {
        let run = self.resolve(p.run).await?;
        let secs = p
            .timeout_secs
            .unwrap_or(WAIT_DEFAULT_SECS)
            .min(WAIT_MAX_SECS);
        let deadline = Instant::now() + Duration::from_secs(secs);
        let token = ctx.meta.get_progress_token();
        let mut notified = None;
        loop {
            let status = self.status_of(&run).await?;
            if let Some(token) = &token
                && notified != Some(status.last_seq)
            {
                notified = Some(status.last_seq);
                let progress = f64::from(u32::try_from(status.last_seq).unwrap_or(u32::MAX));
                // A host that went away is noticed by the cancellation below.
                let _ = ctx
                    .peer
                    .notify_progress(
                        ProgressNotificationParam::new(token.clone(), progress)
                            .with_message(progress_message(&status)),
                    )
                    .await;
            }
            let timed_out = Instant::now() >= deadline;
            if status.liveness != Liveness::Running || timed_out {
                return Ok(Json(WaitResult {
                    finished: status.liveness == Liveness::Finished,
                    timed_out: timed_out && status.liveness == Liveness::Running,
                    status,
                }));
            }
            tokio::select! {
                () = ctx.ct.cancelled() => {
                    return Err(ToolError::new(format!("the wait for run {run} was cancelled; the run goes on"))
                        .hint("forge_status shows where it is"));
                }
                () = tokio::time::sleep(WAIT_POLL) => {}
            }
        }
    }

    /// A task's transcript.
    #[tool(
        name = "forge_logs",
        description = "The output of a task's attempt (default: its latest) in a Forge run \
        (default: the latest): what its agent printed, at most `max_bytes` (default 65536) \
        from the end."
    )]
    async fn forge_logs(
        &self,
        Parameters(p): Parameters<LogsParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<LogsResult>, ToolError> {
        check_word("task", &p.task)?;
        let run = self.resolve(p.run).await?;
        let mut args = vec!["logs".to_owned(), p.task.clone(), run.to_string()];
        if let Some(n) = p.attempt {
            args.extend(["--attempt".to_owned(), n.to_string()]);
        }
        let out = child::run(self.repo(), &args, ctx.ct.cancelled()).await?;
        if out.code != 0 {
            return Err(out.error("logs"));
        }
        let max = p.max_bytes.unwrap_or(LOGS_DEFAULT_BYTES).max(1);
        let total = out.stdout.len();
        let text = tail(&out.stdout, max).to_owned();
        Ok(Json(LogsResult {
            run: run.to_string(),
            task: p.task,
            truncated: text.len() < total,
            total_bytes: total,
            text,
        }))
    }

    /// What a run or some of its tasks changed.
    #[tool(
        name = "forge_diff",
        description = "What a Forge run (default: the latest) changed against its base, or \
        what some of its tasks changed (`tasks`), optionally only under `paths`: the files \
        and their hunks, as `forge diff --json` gives them, and the unified diff."
    )]
    async fn forge_diff(
        &self,
        Parameters(p): Parameters<DiffParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<DiffResult>, ToolError> {
        let run = self.resolve(p.run).await?;
        let mut words = vec![run.to_string()];
        for task in &p.tasks {
            check_word("task", task)?;
            words.push(task.clone());
        }
        let mut paths = Vec::new();
        for path in &p.paths {
            let file = self.repo_file("path", path)?;
            paths.push(self.relative(&file));
        }
        let mut json_args = vec!["diff".to_owned(), "--json".to_owned()];
        json_args.extend(words.iter().cloned());
        let mut patch_args = vec!["diff".to_owned()];
        patch_args.extend(words);
        if !paths.is_empty() {
            json_args.push("--".to_owned());
            json_args.extend(paths.iter().cloned());
            patch_args.push("--".to_owned());
            patch_args.extend(paths);
        }
        let out = child::run(self.repo(), &json_args, ctx.ct.cancelled()).await?;
        if out.code != 0 {
            return Err(out.error("diff"));
        }
        let files: serde_json::Value = serde_json::from_str(out.stdout.trim()).map_err(|e| {
            ToolError::new(format!(
                "`forge diff --json` printed something else than JSON: {e}"
            ))
        })?;
        let patch = child::run(self.repo(), &patch_args, ctx.ct.cancelled()).await?;
        if patch.code != 0 {
            return Err(patch.error("diff"));
        }
        Ok(Json(DiffResult {
            run: run.to_string(),
            tasks: p.tasks,
            diff: files,
            patch: patch.stdout,
        }))
    }

    /// Applies a run's result.
    #[tool(
        name = "forge_apply",
        description = "Apply the result of a finished Forge run (default: the latest) to the \
        working tree, or commit it to the branch forge/<run> (`branch`). `tasks`: only these \
        tasks and those they depend on. `conflicts`: where the user's own edits clash, as \
        `forge apply --conflicts` takes it (keep, markers, ours, theirs; or HOW=PATH)."
    )]
    async fn forge_apply(
        &self,
        Parameters(p): Parameters<ApplyParams>,
    ) -> Result<Json<ApplyResult>, ToolError> {
        let run = self.resolve(p.run).await?;
        let mut args = vec!["apply".to_owned(), run.to_string()];
        if p.branch {
            args.push("--branch".to_owned());
        }
        if !p.tasks.is_empty() {
            for task in &p.tasks {
                check_word("task", task)?;
            }
            args.push(format!("--tasks={}", p.tasks.join(",")));
        }
        for c in &p.conflicts {
            check_word("conflicts", c)?;
            args.push(format!("--conflicts={c}"));
        }
        // An apply runs to its end (it is short, and journaled to be finished or undone).
        let out = child::run(self.repo(), &args, std::future::pending()).await?;
        // 3: applied, with clashes left as the user had them; anything else non-zero failed.
        if out.code != 0 && out.code != i32::from(Exit::Conflicts.code()) {
            return Err(out.error("apply"));
        }
        let status = self.status_of(&run).await?;
        Ok(Json(ApplyResult {
            run: run.to_string(),
            exit_code: out.code,
            output: out.stdout.trim_end().to_owned(),
            applied: status.applied,
            summary: status.summary,
        }))
    }

    /// Runs one task again with feedback.
    #[tool(
        name = "forge_retry",
        description = "Run one task of a finished, failed or interrupted Forge run (default: \
        the latest) again with feedback (`prompt`: instructions added to its prompt; its agent \
        continues its session where it can), then the tasks depending on it; every other \
        task's result is kept. Starts in the background and returns at once: follow it with \
        forge_wait on the same run."
    )]
    async fn forge_retry(
        &self,
        Parameters(p): Parameters<RetryParams>,
    ) -> Result<Json<RetryStarted>, ToolError> {
        check_word("task", &p.task)?;
        let run = self.resolve(p.run).await?;
        let mut args = vec!["retry".to_owned(), p.task.clone(), run.to_string()];
        if let Some(prompt) = &p.prompt {
            args.push(format!("--prompt={prompt}"));
        }
        args.extend(["--no-apply".to_owned(), "--json".to_owned()]);
        let (run, seq, pid) = start_detached(self.repo(), &args).await?;
        self.until_journaled(&run, seq).await?;
        Ok(Json(RetryStarted {
            run,
            task: p.task,
            pid,
        }))
    }

    /// Interrupts a run.
    #[tool(
        name = "forge_abort",
        description = "Interrupt a running Forge run (default: the latest): its tasks are \
        cancelled cleanly and it stays resumable (`forge resume <run>`). Returns once it \
        stopped."
    )]
    async fn forge_abort(
        &self,
        Parameters(p): Parameters<AbortParams>,
    ) -> Result<Json<AbortResult>, ToolError> {
        let run = self.resolve(p.run).await?;
        let abort = ["abort".to_owned(), run.to_string()];
        let out = child::run(self.repo(), &abort, std::future::pending()).await?;
        if out.code != 0 {
            return Err(out.error("abort"));
        }
        let status = self.status_of(&run).await?;
        Ok(Json(AbortResult {
            run: run.to_string(),
            output: out.stdout.trim_end().to_owned(),
            status,
        }))
    }
}

impl ForgeServer {
    /// `path` relative to the repository, `/`-separated (as given when it is not inside).
    fn relative(&self, path: &Path) -> String {
        path.strip_prefix(self.repo())
            .unwrap_or(path)
            .to_string_lossy()
            .replace('\\', "/")
    }

    fn resource_error(err: &ToolError) -> rmcp::ErrorData {
        rmcp::ErrorData::invalid_params(err.text(), None)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for ForgeServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(
            Implementation::new("forge", env!("CARGO_PKG_VERSION")).with_title("Forge"),
        )
        .with_instructions(INSTRUCTIONS)
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, rmcp::ErrorData> {
        let ctx = self.ctx.clone();
        let runs = blocking(move || status::list(&ctx))
            .await
            .map_err(|e| Self::resource_error(&e))?;
        let mut resources = vec![
            Resource::new(RUNS_URI, "runs")
                .with_title("Forge runs")
                .with_description("The runs of this repository, most recent first")
                .with_mime_type("application/json"),
        ];
        resources.extend(runs.iter().map(|r| {
            Resource::new(format!("{RUN_URI_PREFIX}{}", r.id), r.id.clone())
                .with_title(format!(
                    "Forge run {} ({})",
                    r.id,
                    r.plan.as_deref().unwrap_or("unnamed plan")
                ))
                .with_description("The run's state: tasks, conflicts, gate, apply, summary")
                .with_mime_type("application/json")
        }));
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, rmcp::ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new(format!("{RUN_URI_PREFIX}{{run}}"), "run")
                .with_description("A run's state (a run id or a unique prefix of one)")
                .with_mime_type("application/json"),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, rmcp::ErrorData> {
        let uri = request.uri.as_str();
        let value = if uri == RUNS_URI {
            let ctx = self.ctx.clone();
            let runs = blocking(move || status::list(&ctx))
                .await
                .map_err(|e| Self::resource_error(&e))?;
            serde_json::to_string_pretty(&runs)
        } else if let Some(run) = uri.strip_prefix(RUN_URI_PREFIX) {
            let run = self
                .resolve(Some(run.to_owned()))
                .await
                .map_err(|e| rmcp::ErrorData::resource_not_found(e.text(), None))?;
            let state = self
                .status_of(&run)
                .await
                .map_err(|e| Self::resource_error(&e))?;
            serde_json::to_string_pretty(&state)
        } else {
            return Err(rmcp::ErrorData::resource_not_found(
                format!("no resource `{uri}`: Forge serves {RUNS_URI} and {RUN_URI_PREFIX}<run>"),
                None,
            ));
        }
        .map_err(|e| rmcp::ErrorData::internal_error(format!("cannot encode {uri}: {e}"), None))?;
        Ok(ReadResourceResult::new(vec![
            ResourceContents::text(value, uri).with_mime_type("application/json"),
        ])
        .into())
    }
}

/// Runs `f` on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ToolError> + Send + 'static,
) -> Result<T, ToolError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ToolError::new(format!("an internal task failed: {e}")))?
}

/// Refuses a value that the command line would take for a flag.
fn check_word(what: &str, value: &str) -> Result<(), ToolError> {
    if value.is_empty() || value.starts_with('-') {
        return Err(
            ToolError::new(format!("invalid {what} `{value}`")).hint(format!(
                "a {what} is a name, not empty and not starting with `-`"
            )),
        );
    }
    Ok(())
}

/// A path as a command-line argument.
fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// `given` as a file inside `repo` (see [`ForgeServer::repo_file`]).
fn repo_file(repo: &Path, what: &str, given: &str) -> Result<PathBuf, ToolError> {
    let escape = || {
        ToolError::new(format!(
            "the {what} `{given}` is outside the repository {}",
            repo.display()
        ))
        .hint("give a path inside the repository, relative to its root")
    };
    if given.trim().is_empty() {
        return Err(ToolError::new(format!("the {what} is empty"))
            .hint("give a path relative to the repository's root"));
    }
    let given_path = Path::new(given);
    let relative = if given_path.is_absolute() {
        given_path.strip_prefix(repo).map_err(|_| escape())?
    } else {
        given_path
    };
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in relative.components() {
        match c {
            Component::Normal(p) => parts.push(p),
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(escape());
                }
            }
            Component::RootDir | Component::Prefix(_) => return Err(escape()),
        }
    }
    if parts.first().is_some_and(|p| *p == ".git") {
        return Err(
            ToolError::new(format!("the {what} `{given}` is inside .git/"))
                .hint("give a path to a file of the project"),
        );
    }
    if parts.is_empty() {
        return Err(
            ToolError::new(format!("the {what} `{given}` is the repository itself"))
                .hint("give a path to a file inside it"),
        );
    }
    let path: PathBuf = parts.iter().fold(repo.to_path_buf(), |p, c| p.join(c));
    // A symbolic link on the way must not lead out either.
    let mut existing = path.as_path();
    while !existing.exists() {
        match existing.parent() {
            Some(parent) => existing = parent,
            None => break,
        }
    }
    if let (Ok(real), Ok(root)) = (existing.canonicalize(), repo.canonicalize())
        && !real.starts_with(&root)
    {
        return Err(escape());
    }
    Ok(path)
}

/// A new empty scratch file in `<repo>/.forge/mcp/`.
fn scratch_file(
    repo: &Path,
    prefix: &str,
    suffix: &str,
) -> Result<tempfile::NamedTempFile, ToolError> {
    let dir = repo.join(".forge/mcp");
    std::fs::create_dir_all(&dir).map_err(|e| ToolError::from(CliError::io("create", &dir, &e)))?;
    tempfile::Builder::new()
        .prefix(prefix)
        .suffix(suffix)
        .tempfile_in(&dir)
        .map_err(|e| ToolError::from(CliError::io("write in", &dir, &e)))
}

/// The last `max` bytes of `text` (on a character boundary).
fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// What a progress notification says: tasks done, and who runs.
fn progress_message(status: &RunStatus) -> String {
    let running: Vec<&str> = status
        .tasks
        .iter()
        .filter(|t| t.status == "running")
        .map(|t| t.id.as_str())
        .collect();
    let mut text = format!(
        "{}/{} tasks done ({})",
        status.done_tasks, status.total_tasks, status.phase
    );
    if !running.is_empty() {
        text.push_str("; running: ");
        text.push_str(&running.join(", "));
    }
    text
}

/// Starts `forge <args>` (a `run` or `retry`) detached in its own process group, and returns
/// the run's id and the seq of its first JSON event, and its process id. It goes on after the
/// server ends.
async fn start_detached(repo: &Path, args: &[String]) -> Result<(String, u64, u32), ToolError> {
    let mut cmd = child::command(repo, args)?;
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut proc = cmd
        .spawn()
        .map_err(|e| ToolError::new(format!("cannot start `forge run`: {e}")))?;
    let pid = proc.id().unwrap_or_default();
    let (Some(stdout), Some(mut stderr)) = (proc.stdout.take(), proc.stderr.take()) else {
        return Err(ToolError::new(
            "`forge run` started without its output pipes",
        ));
    };
    // Its stderr is read all along (a full pipe would stop it), keeping the end.
    let kept = Arc::new(Kept::default());
    let kept_w = kept.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf).await {
            if n == 0 {
                break;
            }
            kept_w.push(&buf[..n]);
        }
    });
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let found = tokio::time::timeout(START_TIMEOUT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && let Some(run) = v.get("run").and_then(|r| r.as_str())
            {
                let seq = v
                    .get("seq")
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(0);
                return Some((run.to_owned(), seq));
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some((run, seq))) => {
            // The rest of its event stream is read and dropped while the server lives (the
            // journal has it); then the run goes on without a reader.
            tokio::spawn(async move {
                while let Ok(Some(_)) = lines.next_line().await {}
                let _ = proc.wait().await;
            });
            Ok((run, seq, pid))
        }
        Ok(None) => {
            let status = proc.wait().await.ok().and_then(|s| s.code()).unwrap_or(-1);
            // Let the reader take the last of stderr.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let out = child::Output {
                code: status,
                stdout: String::new(),
                stderr: kept.text(),
            };
            Err(out.error("run"))
        }
        Err(_) => Err(ToolError::new(format!(
            "`forge run` (process {pid}) did not report its run within {} s; it may still be starting",
            START_TIMEOUT.as_secs()
        ))
        .hint("forge_status (or `forge runs`) shows it once it started")),
    }
}

/// The end of a child's stderr (the last [`STDERR_KEEP`] bytes), kept while it is read.
#[derive(Debug, Default)]
struct Kept(std::sync::Mutex<Vec<u8>>);

impl Kept {
    fn push(&self, bytes: &[u8]) {
        let mut kept = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        kept.extend_from_slice(bytes);
        let excess = kept.len().saturating_sub(STDERR_KEEP);
        kept.drain(..excess);
    }

    fn text(&self) -> String {
        let kept = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        String::from_utf8_lossy(&kept).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_repository() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path();
        assert_eq!(
            repo_file(repo, "plan", "plans/a.toml").unwrap(),
            repo.join("plans/a.toml")
        );
        assert_eq!(
            repo_file(repo, "plan", "x/../a.toml").unwrap(),
            repo.join("a.toml")
        );
        let inside = repo.join("b.toml");
        assert_eq!(
            repo_file(repo, "plan", inside.to_str().unwrap()).unwrap(),
            inside
        );
        for bad in [
            "../a.toml",
            "x/../../a.toml",
            "/etc/passwd",
            ".git/config",
            "",
            ".",
        ] {
            let err = repo_file(repo, "plan", bad).unwrap_err();
            assert!(err.hint.is_some(), "{bad}: {err:?}");
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/tmp", repo.join("out")).unwrap();
            let err = repo_file(repo, "plan", "out/p.toml").unwrap_err();
            assert!(err.what.contains("outside the repository"), "{err:?}");
        }
    }

    #[test]
    fn logs_are_cut_from_the_end_on_a_character_boundary() {
        assert_eq!(tail("abc", 10), "abc");
        assert_eq!(tail("abcdef", 3), "def");
        assert_eq!(tail("aé", 1), "");
        assert_eq!(tail("aéb", 2), "b");
    }
}
