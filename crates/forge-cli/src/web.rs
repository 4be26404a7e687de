//! The CLI's routes of the dashboard server (`forge serve`, `forge run --serve`), added to
//! forge-events' API under its access rule and cross-site guard:
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/runs/{id}/tasks/{task}/transcript?attempt=<n>` | the attempt's transcript (as `forge logs --json`) |
//! | `GET /api/runs/{id}/tasks/{task}/diff` | what the task changed, as `forge diff <run> <task>` (text) |
//! | `POST /api/runs/{id}/abort` | interrupts the run (as `forge abort --no-wait`) |
//! | `POST /api/runs/{id}/retry` | starts `forge retry <task> <run> --prompt <text> --no-apply` for a finished run: JSON body `{"task": "..", "prompt": ".."}`; answers `202` once it started (its events follow in the journal) |
//! | `POST /api/runs/{id}/apply` | applies a finished run: JSON body `{"tasks": [..], "conflicts": "keep" \| "markers" \| "ours" \| "theirs"}`, both optional (as `forge apply`) |
//!
//! Actions run this very executable (`forge abort`, `forge apply`), so they behave, journal
//! and fail exactly as on the command line; the answer is JSON `{ok, exit_code, output}`.

use std::sync::Arc;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use forge_events::{RunId, RunState};
use forge_exec::store::RunStore;
use serde::Deserialize;

use crate::config::Context;

/// What the routes offer, as `GET /api/features` lists it for the dashboard.
pub(crate) const FEATURES: &[&str] = &["transcript", "diff", "abort", "apply", "retry"];

/// The routes, for [`forge_events::http::ServeOptions::routes`].
pub(crate) fn routes(ctx: &Context) -> Router {
    let ctx = Arc::new(ctx.clone());
    Router::new()
        .route(
            "/api/runs/{id}/tasks/{task}/transcript",
            get(transcript_handler),
        )
        .route("/api/runs/{id}/tasks/{task}/diff", get(diff_handler))
        .route("/api/runs/{id}/abort", post(abort_handler))
        .route("/api/runs/{id}/apply", post(apply_handler))
        .route("/api/runs/{id}/retry", post(retry_handler))
        .with_state(ctx)
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// The run `id`, which must exist under this repository.
#[allow(clippy::result_large_err)] // the error is the HTTP answer itself, built once
fn run_of(ctx: &Context, id: &str) -> Result<RunId, Response> {
    let run: RunId = id
        .parse()
        .map_err(|_| error(StatusCode::BAD_REQUEST, &format!("`{id}` is not a run id")))?;
    if RunStore::new(&ctx.repo).exists(&run) {
        Ok(run)
    } else {
        Err(error(StatusCode::NOT_FOUND, &format!("no run {run}")))
    }
}

#[derive(Deserialize)]
struct AttemptQuery {
    attempt: Option<String>,
}

async fn transcript_handler(
    State(ctx): State<Arc<Context>>,
    UrlPath((id, task)): UrlPath<(String, String)>,
    Query(query): Query<AttemptQuery>,
) -> Response {
    let attempt = match query.attempt.as_deref().map(str::parse::<u32>) {
        None => None,
        Some(Ok(n)) if n > 0 => Some(n),
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "`attempt` must be a positive number",
            );
        }
    };
    let answer = tokio::task::spawn_blocking(move || {
        transcript_of(&ctx, &id, &task, attempt).unwrap_or_else(|r| r)
    })
    .await;
    answer.unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))
}

/// The answer of the transcript route.
#[allow(clippy::result_large_err)] // the error is the HTTP answer itself, built once
fn transcript_of(
    ctx: &Context,
    id: &str,
    task: &str,
    attempt: Option<u32>,
) -> Result<Response, Response> {
    let run = run_of(ctx, id)?;
    let state = RunState::from_journal(RunStore::new(&ctx.repo).journal(&run))
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))?;
    let Some(t) = state.task(task) else {
        return Err(error(
            StatusCode::NOT_FOUND,
            &format!("run {run} has no task `{task}`"),
        ));
    };
    let attempt = attempt.unwrap_or(t.attempt);
    if attempt == 0 {
        return Ok(Json(serde_json::json!({ "attempt": 0, "entries": [] })).into_response());
    }
    let transcript = crate::logs::read(ctx, &run, task, attempt).map_err(|e| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &e.render(crate::term::Style::plain()),
        )
    })?;
    let mut value = serde_json::to_value(&transcript)
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))?;
    value["attempt"] = attempt.into();
    Ok(Json(value).into_response())
}

async fn diff_handler(
    State(ctx): State<Arc<Context>>,
    UrlPath((id, task)): UrlPath<(String, String)>,
) -> Response {
    let run = match run_of(&ctx, &id) {
        Ok(run) => run,
        Err(r) => return r,
    };
    if forge_events::TaskId::new(task.as_str()).is_err() {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("`{task}` is not a task id"),
        );
    }
    let out = forge(&ctx, &["diff", run.as_str(), &task]).await;
    if out.ok {
        (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            out.output,
        )
            .into_response()
    } else {
        error(StatusCode::CONFLICT, out.output.trim())
    }
}

async fn abort_handler(State(ctx): State<Arc<Context>>, UrlPath(id): UrlPath<String>) -> Response {
    let run = match run_of(&ctx, &id) {
        Ok(run) => run,
        Err(r) => return r,
    };
    forge(&ctx, &["abort", run.as_str(), "--no-wait"])
        .await
        .into_response()
}

/// The body of `POST …/apply`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ApplyRequest {
    #[serde(default)]
    tasks: Vec<String>,
    conflicts: Option<String>,
}

async fn apply_handler(
    State(ctx): State<Arc<Context>>,
    UrlPath(id): UrlPath<String>,
    body: axum::body::Bytes,
) -> Response {
    let run = match run_of(&ctx, &id) {
        Ok(run) => run,
        Err(r) => return r,
    };
    let request: ApplyRequest = if body.is_empty() {
        ApplyRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "the body must be JSON {{\"tasks\": [..], \"conflicts\": \"keep|markers|ours|theirs|agent\"}}: {e}"
                    ),
                );
            }
        }
    };
    if let Some(bad) = request
        .tasks
        .iter()
        .find(|t| forge_events::TaskId::new(t.as_str()).is_err())
    {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("`{bad}` is not a task id"),
        );
    }
    if let Some(how) = &request.conflicts
        && !matches!(
            how.as_str(),
            "keep" | "markers" | "ours" | "theirs" | "agent"
        )
    {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("unknown conflict choice `{how}`: use keep, markers, ours, theirs or agent"),
        );
    }
    let mut args = vec!["apply".to_owned(), run.to_string()];
    if !request.tasks.is_empty() {
        args.push("--tasks".to_owned());
        args.push(request.tasks.join(","));
    }
    if let Some(how) = request.conflicts {
        args.push("--conflicts".to_owned());
        args.push(how);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    forge(&ctx, &args).await.into_response()
}

/// The body of `POST …/retry`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryBody {
    task: String,
    #[serde(default)]
    prompt: String,
}

async fn retry_handler(
    State(ctx): State<Arc<Context>>,
    UrlPath(id): UrlPath<String>,
    body: axum::body::Bytes,
) -> Response {
    let run = match run_of(&ctx, &id) {
        Ok(run) => run,
        Err(r) => return r,
    };
    let request: RetryBody = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "the body must be JSON {{\"task\": \"<id>\", \"prompt\": \"<added instructions>\"}}: {e}"
                ),
            );
        }
    };
    let state = match RunState::from_journal(RunStore::new(&ctx.repo).journal(&run)) {
        Ok(state) => state,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    if state.task(&request.task).is_none() {
        return error(
            StatusCode::NOT_FOUND,
            &format!("run {run} has no task `{}`", request.task),
        );
    }
    if !state.phase.is_finished() {
        return error(
            StatusCode::CONFLICT,
            &format!(
                "run {run} is still running; retry a task once it has finished (or abort it first)"
            ),
        );
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("cannot find the forge executable: {e}"),
            );
        }
    };
    // The retry runs on its own (minutes, perhaps): the answer says it started; its events
    // reach the page through the journal.
    let child = tokio::process::Command::new(exe)
        .arg("--repo")
        .arg(&ctx.repo)
        .args(["--color", "never", "retry", &request.task, run.as_str()])
        .args(["--prompt", &request.prompt, "--no-apply"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    match child {
        Ok(mut child) => {
            tokio::spawn(async move {
                let _ = child.wait().await;
            });
            let body = serde_json::json!({
                "ok": true,
                "exit_code": null,
                "output": format!("Retrying task {} of {run}; its events follow.", request.task),
            });
            (StatusCode::ACCEPTED, Json(body)).into_response()
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot start forge retry: {e}"),
        ),
    }
}

/// What a `forge` command run for an action said.
struct Outcome {
    ok: bool,
    exit_code: Option<i32>,
    output: String,
}

impl IntoResponse for Outcome {
    fn into_response(self) -> Response {
        let status = if self.ok {
            StatusCode::OK
        } else {
            StatusCode::CONFLICT
        };
        let body = serde_json::json!({
            "ok": self.ok,
            "exit_code": self.exit_code,
            "output": self.output,
        });
        (status, Json(body)).into_response()
    }
}

/// Runs this executable with `args` in the repository (no colours, no prompts) and collects
/// what it printed.
async fn forge(ctx: &Context, args: &[&str]) -> Outcome {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            return Outcome {
                ok: false,
                exit_code: None,
                output: format!("cannot find the forge executable: {e}"),
            };
        }
    };
    let out = tokio::process::Command::new(exe)
        .arg("--repo")
        .arg(&ctx.repo)
        .args(["--color", "never"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await;
    match out {
        Ok(out) => {
            let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
            output.push_str(&String::from_utf8_lossy(&out.stderr));
            Outcome {
                ok: out.status.success(),
                exit_code: out.status.code(),
                output,
            }
        }
        Err(e) => Outcome {
            ok: false,
            exit_code: None,
            output: format!("cannot run forge {}: {e}", args.join(" ")),
        },
    }
}
