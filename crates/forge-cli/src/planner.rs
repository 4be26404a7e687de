//! `forge plan "<request>"`: a planner agent turns a request into a plan.
//!
//! The agent runs in a throwaway workspace staged from the repository (the same staging as
//! tasks), so whatever its profile allows, it cannot change the user's files: it reads, then
//! answers. Its prompt holds the request, a compact summary of the repository (files with
//! sizes, capped) and the plan schema. The JSON plan is taken from its final answer, validated
//! with overlapping write claims put in order, and written as TOML for review. An answer that is
//! not a valid plan is an error that shows what came back; nothing is written then.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use forge_agents::{AgentEvent, OutputParser, Profile, Profiles, PromptVars, Stream};
use forge_events::{OutputStream, RunId};
use forge_exec::plan::{ConflictPolicy, Plan, PlanFormat, PlanOptions};
use forge_exec::process::{AttemptEnv, CommandSpec, ProcessExit, ProcessOptions, run_process_in};
use forge_exec::store::RunStore;
use forge_staging::{
    BaseMode, BaseSnapshot, BlobStore, Snapshot, StagerConfig, StagerKind, Workspace,
};
use tokio_util::sync::CancellationToken;

use crate::cli::PlanArgs;
use crate::config::Context;
use crate::error::{CliError, CliResult, Exit};
use crate::plan_file;
use crate::render::format;
use crate::term::{self, Style, pad, truncate};

/// Most files listed in the repository summary.
const MAX_TREE_FILES: usize = 400;
/// Most bytes of the repository summary.
const MAX_TREE_BYTES: usize = 24 * 1024;
/// Most characters of a bad answer shown back.
const MAX_SHOWN: usize = 4000;

/// `forge plan`.
pub(crate) async fn run(ctx: &Context, args: &PlanArgs, style: Style) -> CliResult {
    let output =
        std::env::current_dir().map_or_else(|_| args.output.clone(), |cwd| cwd.join(&args.output));
    if output.exists() && !args.force {
        return Err(
            CliError::usage(format!("{} already exists", output.display()))
                .hint("choose another file with -o, or pass --force to overwrite it"),
        );
    }
    if args.request.trim().is_empty() {
        return Err(CliError::usage("the request is empty")
            .hint("say what you want done: forge plan \"add user authentication\""));
    }
    let profiles = crate::agents::profiles(ctx)?;
    let agent = args
        .agent
        .clone()
        .or_else(|| ctx.config.agent.clone())
        .unwrap_or_else(|| "droid".to_owned());
    let task_agent = args.task_agent.clone().unwrap_or_else(|| agent.clone());
    profiles
        .check_available([agent.as_str(), task_agent.as_str()])
        .map_err(|e| CliError::usage(e.to_string()).hint(missing_agent_hint(&profiles, &agent)))?;

    let summary = repo_summary(&ctx.repo)?;
    let prompt = planner_prompt(&args.request, &summary, &task_agent);
    let answer = ask_planner(ctx, &profiles, &agent, &prompt, style).await?;

    let mut opts = plan_file::plan_options(ctx)?;
    opts.conflicts = ConflictPolicy::Serialize;
    let (json, mut plan, answer) = match check_answer(&answer.text, &task_agent, &opts) {
        Ok((json, plan)) => (json, plan, answer),
        Err(invalid) => {
            // One repair round: the planner sees its answer and what is wrong with it.
            outln!(
                "{}",
                style.dim(&format!(
                    "The planner's answer was not a valid plan ({}); asking it to repair it.",
                    invalid.what
                ))
            );
            let repair = repair_prompt(&prompt, &answer.text, &invalid.details);
            let second = ask_planner(ctx, &profiles, &agent, &repair, style).await?;
            match check_answer(&second.text, &task_agent, &opts) {
                Ok((json, plan)) => (json, plan, second),
                Err(again) => {
                    return Err(CliError::usage(format!(
                        "the planner ({agent}) answered with {} twice, the second time after \
                         being shown the problems; nothing was written",
                        again.what
                    ))
                    .report(format!(
                        "{}\n\nIt answered:\n{}",
                        again.details,
                        truncate_block(&second.text)
                    ))
                    .hint(
                        "run it again, or write the plan yourself (`forge split` makes simple ones)",
                    ));
                }
            }
        }
    };
    let added = added_edges(&json, &plan);
    plan.source = None;
    let mut text = format!(
        "# Written by `forge plan` ({agent}) for:\n{}\n# Review it, then: forge run {}\n\n",
        comment_block(&args.request),
        args.output.display()
    );
    text.push_str(&plan.to_toml());
    // What `forge run` will load: check it round-trips before writing.
    plan_file::validate_text(ctx, &text, &output)?;
    plan_file::write_atomic(&output, &text)?;

    print_table(&plan, style);
    for (task, after) in &added {
        outln!(
            "{}",
            style.dim(&format!(
                "Ordered {task} after {after}: their write claims overlap."
            ))
        );
    }
    if answer.discarded > 0 {
        outln!(
            "{}",
            style.dim(&format!(
                "The planner changed {} in its sandbox; they were discarded.",
                format::plural(answer.discarded as u64, "file")
            ))
        );
    }
    outln!(
        "Wrote {}. Review it, then run it with: forge run {}",
        output.display(),
        crate::split::shell_quote(&args.output.display().to_string())
    );
    Ok(Exit::Success)
}

/// What to do when the planner (or the plan's task agent) is not installed: name agents that
/// are, never the missing one.
fn missing_agent_hint(profiles: &Profiles, wanted: &str) -> String {
    let installed: Vec<&str> = profiles
        .iter()
        .filter(|p| !matches!(p.name.as_str(), "sim" | "shell") && p.name != wanted)
        .filter(|p| p.locate().is_ok())
        .map(|p| p.name.as_str())
        .collect();
    match installed.first() {
        Some(first) => format!(
            "installed here: {}; choose one with --agent {first} (and --task-agent for the plan's tasks)",
            installed.join(", ")
        ),
        None => "no agent CLI is installed here; install one, or write the plan yourself (`forge split` writes one for uniform work)".to_owned(),
    }
}

/// Why a planner's answer is not a plan.
struct Invalid {
    /// `no JSON plan`, `an invalid plan (2 problems)`.
    what: String,
    /// The problems, rendered as plan errors are.
    details: String,
}

/// The plan in a planner's answer, validated (overlapping writes put in order).
fn check_answer(
    text: &str,
    task_agent: &str,
    opts: &PlanOptions,
) -> Result<(String, Plan), Invalid> {
    let Some(json) = extract_json(text) else {
        return Err(Invalid {
            what: "no JSON plan".to_owned(),
            details: "The answer holds no JSON object (expected one in a ```json block)."
                .to_owned(),
        });
    };
    let json = normalize(&json, task_agent);
    let source = Path::new("planner-answer.json");
    match Plan::parse(&json, source, PlanFormat::Json, opts) {
        Ok(plan) => Ok((json, plan)),
        Err(err) => Err(Invalid {
            what: format!(
                "an invalid plan ({})",
                format::plural(err.problems.len() as u64, "problem")
            ),
            details: err.render(),
        }),
    }
}

/// The prompt of the repair round: the first prompt, the answer, and what is wrong with it.
fn repair_prompt(prompt: &str, answer: &str, problems: &str) -> String {
    format!(
        "{prompt}\n## Your previous answer\n\n{}\n\n## What is wrong with it\n\n{problems}\n\n\
         Answer again with the whole corrected plan, one JSON object in a ```json block.\n",
        truncate_block(answer)
    )
}

/// A TOML comment of `text`, one `# ` per line.
fn comment_block(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.trim().is_empty() {
                "#".to_owned()
            } else {
                format!("#   {l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn truncate_block(text: &str) -> String {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return "(nothing)".to_owned();
    }
    if trimmed.chars().count() <= MAX_SHOWN {
        return trimmed.to_owned();
    }
    let cut: String = trimmed.chars().take(MAX_SHOWN).collect();
    format!("{cut}\n… ({} characters in all)", trimmed.chars().count())
}

/// The repository as the planner sees it: files with sizes, git-ignored files left out, capped.
pub(crate) fn repo_summary(repo: &Path) -> CliResult<String> {
    let files = crate::split::matching_files(repo, &["**".to_owned()])?;
    let total: u64 = files.iter().map(|f| f.bytes).sum();
    let mut out = String::new();
    let mut listed = 0;
    for f in &files {
        if listed >= MAX_TREE_FILES || out.len() >= MAX_TREE_BYTES {
            break;
        }
        let _ = writeln!(out, "{} ({})", f.path, crate::split::human_bytes(f.bytes));
        listed += 1;
    }
    if listed < files.len() {
        let _ = writeln!(
            out,
            "… and {} more files ({} in all)",
            files.len() - listed,
            crate::split::human_bytes(total)
        );
    }
    if files.is_empty() {
        out.push_str("(no files yet)\n");
    }
    Ok(out)
}

/// The planner's prompt: the request, the repository, the schema and the rules.
pub(crate) fn planner_prompt(request: &str, tree: &str, task_agent: &str) -> String {
    format!(
        r#"You are the planner of Forge, a tool that runs several coding agents on one repository at
the same time, each in its own workspace, then merges their changes and runs the tests.
Do not change any file. Read what you need, then answer with a plan.

## The request

{request}

## The repository (files and sizes; ignored files are not listed)

{tree}
## The plan

Answer with one JSON object in a ```json block, and nothing after it:

```json
{{
  "name": "short-name",
  "concurrency": 4,
  "defaults": {{ "agent": "{task_agent}" }},
  "task": [
    {{
      "id": "backend",
      "prompt": "What this agent must do, precisely, as you would brief an engineer.",
      "writes": ["src/api/**"],
      "reads": ["src/models/**"],
      "appends": ["CHANGELOG.md"],
      "after": []
    }}
  ],
  "gate": {{ "commands": ["the project's test command"] }}
}}
```

Rules:
- Split the work into independent tasks that can run at the same time; 2 to 8 tasks.
- `id`: letters, digits, `-`, `_`. `after`: ids of tasks whose result this one needs.
- `writes`: gitignore-style globs relative to the repository root (`*` stays in one
  directory, `**` spans directories), as narrow as possible. Two tasks may not write the
  same files unless one runs `after` the other.
- `appends`: files several tasks add to (a changelog); they are merged line by line.
- `gate.commands`: the commands that build and test this project, if it has any.
"#
    )
}

/// What the planner answered.
struct Answer {
    text: String,
    /// Files it changed in its sandbox (thrown away).
    discarded: usize,
}

/// Runs the planner agent in a throwaway workspace and returns its final answer.
async fn ask_planner(
    ctx: &Context,
    profiles: &Profiles,
    agent: &str,
    prompt: &str,
    style: Style,
) -> CliResult<Answer> {
    let profile = profiles
        .require(agent)
        .map_err(|e| CliError::usage(e.to_string()))?
        .clone();
    let store = RunStore::new(&ctx.repo);
    let planner_root = store.root().join("planner");
    std::fs::create_dir_all(&planner_root)
        .map_err(|e| CliError::io("create", &planner_root, &e))?;
    let scratch = tempfile::Builder::new()
        .prefix("plan-")
        .tempdir_in(&planner_root)
        .map_err(|e| CliError::io("create a directory in", &planner_root, &e))?;
    let prompt_file = scratch.path().join("prompt.md");
    std::fs::write(&prompt_file, prompt).map_err(|e| CliError::io("write", &prompt_file, &e))?;

    let status = Status::new(style, agent);
    status.show("reading the repository");
    let ws = stage(ctx, &store, scratch.path()).await?;
    let result = converse(&profile, &*ws, prompt, scratch.path(), &status).await;
    status.clear();
    let discarded = ws.changes().map_or(0, |c| c.paths().len());
    let _ = tokio::task::spawn_blocking(move || ws.dispose()).await;
    let (text, exit, failed, errors, stderr_tail) = result?;
    match text {
        Some(text) if exit.code == Some(0) && !failed => Ok(Answer { text, discarded }),
        other => {
            let what = match (exit.code, exit.signal) {
                (Some(code), _) if code != 0 => format!("exited with code {code}"),
                (None, Some(signal)) => format!("was killed by signal {signal}"),
                (None, None) => "was killed by a signal".to_owned(),
                _ => "reported an error".to_owned(),
            };
            let mut report = String::new();
            if let Some(text) = other {
                let _ = write!(report, "Its answer:\n{}\n", truncate_block(&text));
            }
            if !errors.is_empty() {
                let _ = write!(report, "It reported:\n{}\n", errors.join("\n"));
            }
            if !stderr_tail.is_empty() {
                let _ = write!(
                    report,
                    "Its last error output:\n{}\n",
                    stderr_tail.join("\n")
                );
            }
            let err = CliError::failed(format!(
                "the planner ({agent}) {what} without a plan; nothing was written"
            ))
            .hint(format!(
                "check that `{agent}` works on its own, or pick another with --agent"
            ));
            Err(if report.is_empty() {
                err
            } else {
                err.report(report)
            })
        }
    }
}

/// A throwaway workspace staged from the repository's working tree.
async fn stage(ctx: &Context, store: &RunStore, scratch: &Path) -> CliResult<Box<dyn Workspace>> {
    let (repo, root, objects) = (ctx.repo.clone(), scratch.to_path_buf(), store.objects_dir());
    let ws = tokio::task::spawn_blocking(move || -> Result<_, String> {
        let blobs = BlobStore::open(&objects).map_err(|e| e.to_string())?;
        let base = BaseSnapshot::capture(&repo, BaseMode::Worktree, &root.join("base"), &blobs)
            .map_err(|e| e.to_string())?;
        let config = StagerConfig::new(root.join("work"), blobs);
        let stager = StagerKind::Auto
            .build(&config, &base)
            .map_err(|e| e.to_string())?;
        let snapshot = Snapshot::from(Arc::new(base));
        let ws = stager
            .stage(&snapshot, "planner")
            .map_err(|e| e.to_string())?;
        Ok((ws, stager))
    })
    .await
    .map_err(|e| CliError::failed(format!("the planner's workspace could not be made: {e}")))?
    .map_err(|e| CliError::failed(format!("cannot stage a workspace for the planner: {e}")))?;
    // The stager is only needed to make the workspace.
    Ok(ws.0)
}

/// What the planner said: its result, how it ended, whether it reported failure, its errors
/// and the end of its stderr.
type Conversation = (Option<String>, ProcessExit, bool, Vec<String>, Vec<String>);

/// Runs the planner in `ws` and reads what it prints to its end, through the process-group
/// runner the run's agents use: its own process group and, where the host allows, its own PID
/// namespace (whatever it starts, `setsid` children included, ends with it; output held open
/// by a leftover is read for a bounded time only). Ctrl-C stops it with the runner's
/// escalation (SIGINT, grace, SIGTERM, grace, SIGKILL); a second Ctrl-C kills it at once.
/// Its environment has `FORGE_RUN_ID` (its scratch directory's name), `FORGE_TASK_ID=planner`
/// and `FORGE_ATTEMPT=1`; its output is logged to `planner.log` in the scratch directory.
async fn converse(
    profile: &Profile,
    ws: &dyn Workspace,
    prompt: &str,
    scratch: &Path,
    status: &Status,
) -> CliResult<Conversation> {
    let prompt_file = scratch.join("prompt.md");
    let mut spec = CommandSpec::from(
        profile
            .command(&PromptVars {
                prompt,
                prompt_file: &prompt_file,
                model: None,
            })
            .map_err(|e| CliError::usage(e.to_string()))?,
    );
    // `PWD` and `OLDPWD` (which agents such as opencode trust over `getcwd`) follow it.
    spec.cwd = ws.path().to_path_buf();
    let run = scratch
        .file_name()
        .and_then(|n| RunId::new(n.to_string_lossy()).ok())
        .ok_or_else(|| {
            CliError::failed(format!(
                "the planner's scratch directory {} has no usable name",
                scratch.display()
            ))
        })?;
    let env = AttemptEnv {
        run: &run,
        task: "planner",
        attempt: 1,
    };
    let mut parser = OutputParser::new(profile.format).with_workspace(ws.path());
    let mut stderr_tail: Vec<String> = Vec::new();
    let mut events = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    status.show("thinking");
    let mut on_line = |stream: OutputStream, line: &str| {
        let agent_stream = match stream {
            OutputStream::Stdout => Stream::Stdout,
            OutputStream::Stderr => Stream::Stderr,
        };
        parser.line(agent_stream, line, &mut events);
        if stream == OutputStream::Stderr {
            stderr_tail.push(line.to_owned());
            if stderr_tail.len() > 20 {
                stderr_tail.remove(0);
            }
        }
        for e in events.drain(..) {
            match e {
                AgentEvent::Progress { message, .. } => status.show(&message),
                AgentEvent::Error(message) => errors.push(message),
                _ => {}
            }
        }
    };
    let prepare =
        |cmd: &mut std::process::Command| ws.prepare_command(cmd).map_err(std::io::Error::other);
    let (ended, interrupted) = run_stoppable(
        &spec,
        &env,
        &scratch.join("planner.log"),
        &mut on_line,
        &prepare,
    )
    .await;
    if interrupted {
        return Err(CliError::failed(
            "interrupted; the planner was stopped and nothing was written",
        )
        .exit(Exit::Interrupted));
    }
    let exit = ended.map_err(|e| {
        CliError::usage(format!(
            "cannot start the planner `{}`: {}",
            spec.program.to_string_lossy(),
            crate::error::io_reason(&e)
        ))
    })?;
    parser.finish(&mut events);
    errors.extend(events.drain(..).filter_map(|e| match e {
        AgentEvent::Error(m) => Some(m),
        _ => None,
    }));
    Ok((
        parser.result().map(str::to_owned),
        exit,
        parser.result_is_error(),
        errors,
        stderr_tail,
    ))
}

/// Runs the planner contained (its own PID namespace where the host has one) until it ends;
/// Ctrl-C stops it with the runner's escalation, a second Ctrl-C kills it. Returns how it
/// ended and whether it was interrupted.
async fn run_stoppable(
    spec: &forge_exec::CommandSpec,
    env: &AttemptEnv<'_>,
    log: &Path,
    on_line: &mut (dyn FnMut(OutputStream, &str) + Send),
    prepare: &forge_exec::process::PrepareCommand<'_>,
) -> (std::io::Result<ProcessExit>, bool) {
    let options = ProcessOptions {
        pid_namespace: true,
        ..ProcessOptions::default()
    };
    let (cancel, kill) = (CancellationToken::new(), CancellationToken::new());
    // Listening before the spawn: a Ctrl-C as soon as the planner runs stops it, never Forge.
    let mut ctrl_c = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
    {
        Ok(ctrl_c) => ctrl_c,
        Err(e) => return (Err(e), false),
    };
    let running = run_process_in(
        spec,
        env,
        log,
        on_line,
        &cancel,
        &kill,
        &options,
        Some(prepare),
    );
    tokio::pin!(running);
    let mut interrupted = false;
    loop {
        tokio::select! {
            ended = &mut running => return (ended, interrupted),
            _ = ctrl_c.recv() => {
                if interrupted {
                    kill.cancel();
                } else {
                    interrupted = true;
                    cancel.cancel();
                }
            }
        }
    }
}

/// A one-line status of the planner on a terminal's stderr.
struct Status {
    on: bool,
    agent: String,
    style: Style,
}

impl Status {
    fn new(style: Style, agent: &str) -> Self {
        Self {
            on: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            agent: agent.to_owned(),
            style,
        }
    }

    fn show(&self, what: &str) {
        if self.on {
            let width = term::width().unwrap_or(80).saturating_sub(1);
            let line = truncate(&format!("planner ({}): {what}", self.agent), width);
            err!("\r\x1b[2K{}", self.style.dim(&line));
        }
    }

    fn clear(&self) {
        if self.on {
            err!("\r\x1b[2K");
        }
    }
}

/// The JSON object in an answer: a fenced `json` block, else the first balanced `{…}`.
pub(crate) fn extract_json(text: &str) -> Option<String> {
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if let Some(info) = t.strip_prefix("```")
            && matches!(info.trim(), "json" | "jsonc" | "JSON")
        {
            let body: Vec<&str> = lines
                .by_ref()
                .take_while(|l| !l.trim_start().starts_with("```"))
                .collect();
            return Some(body.join("\n"));
        }
    }
    let start = text.find('{')?;
    let (mut depth, mut in_str, mut escaped) = (0usize, false, false);
    for (i, c) in text[start..].char_indices() {
        if in_str {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(text[start..=start + i].to_owned());
                }
            }
            _ => {}
        }
    }
    None
}

/// Small, common slips of planners, fixed before validation: `tasks` for `task`, and a default
/// agent when none is given.
pub(crate) fn normalize(json: &str, task_agent: &str) -> String {
    let Ok(serde_json::Value::Object(mut doc)) = serde_json::from_str::<serde_json::Value>(json)
    else {
        // Leave it to the validator to say what is wrong, with positions.
        return json.to_owned();
    };
    if !doc.contains_key("task")
        && let Some(tasks) = doc.remove("tasks")
    {
        doc.insert("task".into(), tasks);
    }
    let defaults = doc
        .entry("defaults")
        .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
    if let serde_json::Value::Object(d) = defaults
        && !d.contains_key("agent")
    {
        d.insert("agent".into(), serde_json::Value::String(task_agent.into()));
    }
    serde_json::to_string_pretty(&serde_json::Value::Object(doc))
        .unwrap_or_else(|_| json.to_owned())
}

/// The plan as a table.
fn print_table(plan: &Plan, style: Style) {
    outln!(
        "{} {} ({}, concurrency {})",
        style.bold("Plan"),
        plan.name,
        format::plural(plan.tasks.len() as u64, "task"),
        plan.concurrency
    );
    let id_w = plan
        .tasks
        .iter()
        .map(|t| t.id.as_str().len())
        .max()
        .unwrap_or(4)
        .max(4);
    let agent_w = plan
        .tasks
        .iter()
        .map(|t| t.agent.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let after_w = plan
        .tasks
        .iter()
        .map(|t| after_text(t).len())
        .max()
        .unwrap_or(5)
        .clamp(5, 30);
    let writes_w = plan
        .tasks
        .iter()
        .map(|t| writes_text(t).len())
        .max()
        .unwrap_or(6)
        .clamp(6, 40);
    let width = term::width().unwrap_or(100).saturating_sub(1);
    let prompt_w = width
        .saturating_sub(id_w + agent_w + after_w + writes_w + 8)
        .max(20);
    outln!(
        "{}",
        style.bold(&format!(
            "{} {} {} {} PROMPT",
            pad("TASK", id_w),
            pad("AGENT", agent_w),
            pad("AFTER", after_w),
            pad("WRITES", writes_w)
        ))
    );
    for t in &plan.tasks {
        outln!(
            "{} {} {} {} {}",
            pad(t.id.as_str(), id_w),
            pad(&t.agent, agent_w),
            pad(&after_text(t), after_w),
            pad(&writes_text(t), writes_w),
            truncate(t.prompt.lines().next().unwrap_or(""), prompt_w)
        );
    }
    if !plan.gate.commands.is_empty() {
        outln!("Gate: {}", plan.gate.commands.join(", "));
    }
}

fn after_text(t: &forge_exec::Task) -> String {
    if t.after.is_empty() {
        "-".to_owned()
    } else {
        t.after
            .iter()
            .map(forge_events::TaskId::as_str)
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn writes_text(t: &forge_exec::Task) -> String {
    let mut all: Vec<String> = t
        .writes
        .iter()
        .map(|c| c.pattern.as_str().to_owned())
        .collect();
    all.extend(t.appends.iter().map(|c| format!("+{}", c.pattern.as_str())));
    if all.is_empty() {
        "-".to_owned()
    } else {
        all.join(",")
    }
}

/// The `after` edges the plan has that the planner's JSON did not: those added to order
/// overlapping write claims.
fn added_edges(json: &str, plan: &Plan) -> Vec<(String, String)> {
    let doc: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    let given = |id: &str| -> Vec<String> {
        doc["task"]
            .as_array()
            .and_then(|tasks| tasks.iter().find(|t| t["id"] == id))
            .and_then(|t| t["after"].as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for t in &plan.tasks {
        let before = given(t.id.as_str());
        for a in &t.after {
            if !before.iter().any(|b| b == a.as_str()) {
                out.push((t.id.as_str().to_owned(), a.as_str().to_owned()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_found_in_a_fence_or_bare() {
        let fenced = "Here is the plan:\n```json\n{\"name\": \"a\"}\n```\nDone.";
        assert_eq!(extract_json(fenced).unwrap(), "{\"name\": \"a\"}");
        let bare = "Plan: {\"name\": \"x}\", \"task\": [{\"id\": \"a\"}]} trailing";
        assert_eq!(
            extract_json(bare).unwrap(),
            "{\"name\": \"x}\", \"task\": [{\"id\": \"a\"}]}"
        );
        assert_eq!(extract_json("no plan here"), None);
    }

    #[test]
    fn common_slips_are_fixed() {
        let fixed = normalize(r#"{"tasks": [{"id": "a", "prompt": "p"}]}"#, "sim");
        let v: serde_json::Value = serde_json::from_str(&fixed).unwrap();
        assert!(v.get("task").is_some());
        assert_eq!(v["defaults"]["agent"], "sim");
        // Not JSON: left as is for the validator to report.
        assert_eq!(normalize("{oops", "sim"), "{oops");
    }

    #[test]
    fn the_prompt_holds_request_tree_and_schema() {
        let p = planner_prompt("add auth", "src/a.rs (10 B)\n", "droid");
        assert!(p.contains("add auth"));
        assert!(p.contains("src/a.rs (10 B)"));
        assert!(p.contains("\"task\": ["));
        assert!(p.contains("\"agent\": \"droid\""));
    }
}
