//! The API's handlers (runs, overview, state, events, task logs) and the state they share.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::fold::{Folds, RunOverview, Source};
use super::hub::Hub;
use super::sse::Client;
use super::{ApiError, ServeOptions, blocking, logs};
use crate::runs::{RunInfo, journal_path, list_runs, run_info};
use crate::{EventBus, EventsError, RunId, TaskId};

/// Parses a `Last-Event-ID` value: an event seq, ASCII whitespace around it ignored. `Ok(None)`
/// for an empty value (no cursor).
pub fn parse_last_event_id(value: &[u8]) -> Result<Option<u64>, EventsError> {
    parse_cursor("Last-Event-ID", value)
}

fn parse_cursor(what: &'static str, value: &[u8]) -> Result<Option<u64>, EventsError> {
    let trimmed = value.trim_ascii();
    if trimmed.is_empty() {
        return Ok(None);
    }
    let invalid = || {
        let text = String::from_utf8_lossy(value);
        EventsError::InvalidCursor {
            what,
            value: text.chars().take(64).collect(),
        }
    };
    if !trimmed.iter().all(u8::is_ascii_digit) {
        return Err(invalid());
    }
    std::str::from_utf8(trimmed)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(Some)
        .ok_or_else(invalid)
}

/// The API's own routes, on `app`.
pub(super) fn api(app: Arc<App>) -> Router {
    Router::new()
        .route("/api/runs", get(list_handler))
        .route("/api/overview", get(overview_handler))
        .route("/api/runs/{id}", get(state_handler))
        .route("/api/runs/{id}/events", get(events_handler))
        .route("/api/runs/{id}/tasks/{task}/log", get(log_handler))
        .with_state(app)
}

/// Shared state of the routes.
pub(super) struct App {
    runs_dir: PathBuf,
    settings: ServeOptions,
    buses: HashMap<RunId, EventBus>,
    hubs: tokio::sync::Mutex<HashMap<RunId, Weak<Hub>>>,
    folds: Folds,
}

impl App {
    pub(super) fn new(runs_dir: PathBuf, settings: ServeOptions) -> Self {
        Self {
            runs_dir,
            buses: settings
                .buses
                .iter()
                .map(|bus| (bus.run().clone(), bus.clone()))
                .collect(),
            settings,
            hubs: tokio::sync::Mutex::new(HashMap::new()),
            folds: Folds::default(),
        }
    }

    fn locate(&self, id: &str) -> Result<(RunId, Source), EventsError> {
        let unknown = || EventsError::UnknownRun {
            run: id.chars().take(128).collect(),
        };
        let run: RunId = id.parse().map_err(|_| unknown())?;
        if let Some(bus) = self.buses.get(&run) {
            return Ok((run, Source::Bus(bus.clone())));
        }
        let path = journal_path(&self.runs_dir, &run);
        if path.is_file() {
            Ok((run, Source::File(path)))
        } else {
            Err(unknown())
        }
    }

    /// The directory holding the run's `tasks/` logs: beside its journal.
    fn run_dir(&self, run: &RunId, source: &Source) -> Option<PathBuf> {
        match source {
            Source::File(path) => path.parent().map(Path::to_path_buf),
            Source::Bus(bus) => match bus.journal_path() {
                Some(path) => path.parent().map(Path::to_path_buf),
                None => Some(self.runs_dir.join(run.as_str())),
            },
        }
    }

    /// The runs under the runs directory and the attached ones, most recent first, each with
    /// where its events come from.
    async fn runs(&self) -> Result<Vec<(RunInfo, Source)>, EventsError> {
        let runs_dir = self.runs_dir.clone();
        let listed = blocking(move || list_runs(&runs_dir)).await?;
        let mut runs: Vec<(RunInfo, Source)> = listed
            .into_iter()
            .map(|info| {
                let source = match self.buses.get(&info.id) {
                    Some(bus) => Source::Bus(bus.clone()),
                    None => Source::File(info.journal.clone()),
                };
                (info, source)
            })
            .collect();
        for (id, bus) in &self.buses {
            if runs.iter().any(|(r, _)| r.id == *id) {
                continue;
            }
            let info = match bus.journal_path() {
                Some(path) => {
                    let (id, path) = (id.clone(), path.to_path_buf());
                    blocking(move || run_info(id, &path)).await?
                }
                None => RunInfo {
                    id: id.clone(),
                    journal: PathBuf::new(),
                    bytes: 0,
                    modified: None,
                    plan: None,
                    tasks: None,
                    started_at: None,
                    last_seq: bus.last_seq(),
                    updated_at: None,
                    status: None,
                },
            };
            runs.insert(0, (info, Source::Bus(bus.clone())));
        }
        Ok(runs)
    }

    async fn hub(&self, run: RunId, source: Source) -> Result<Arc<Hub>, EventsError> {
        let mut hubs = self.hubs.lock().await;
        if let Some(hub) = hubs.get(&run).and_then(Weak::upgrade)
            && hub.failed.lock().is_none()
        {
            return Ok(hub);
        }
        let hub = Hub::start(run.clone(), source, &self.settings).await?;
        hubs.retain(|_, hub| hub.strong_count() > 0);
        hubs.insert(run, Arc::downgrade(&hub));
        Ok(hub)
    }
}

async fn list_handler(State(app): State<Arc<App>>) -> Result<Json<Vec<RunInfo>>, ApiError> {
    let runs = app.runs().await?;
    Ok(Json(runs.into_iter().map(|(info, _)| info).collect()))
}

async fn overview_handler(State(app): State<Arc<App>>) -> Result<Json<Vec<RunOverview>>, ApiError> {
    let runs = app.runs().await?;
    let overview = blocking(move || {
        Ok(runs
            .into_iter()
            .map(|(info, source)| app.folds.overview(info, &source))
            .collect())
    })
    .await?;
    Ok(Json(overview))
}

/// The run's folded [`RunState`](crate::RunState) as JSON, serialized while its fold is locked
/// (no copy of the state).
async fn state_handler(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let (run, source) = app.locate(&id)?;
    let json = blocking(move || {
        app.folds.state(&run, &source, |state| {
            serde_json::to_vec(state).map_err(|e| EventsError::InvalidEvent {
                reason: e.to_string(),
            })
        })?
    })
    .await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        json,
    )
        .into_response())
}

/// The query of the log route.
#[derive(Deserialize)]
struct LogQuery {
    attempt: Option<String>,
    offset: Option<String>,
    tail: Option<String>,
}

/// A non-negative integer query parameter, or a clear `400`.
fn number<T: std::str::FromStr>(what: &str, value: Option<&String>) -> Result<Option<T>, ApiError> {
    let Some(text) = value else { return Ok(None) };
    let parsed = text
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| text.parse::<T>().ok())
        .flatten();
    match parsed {
        Some(n) => Ok(Some(n)),
        None => Err(ApiError::BadRequest(format!(
            "invalid {what} `{}`: expected a non-negative integer",
            text.chars().take(64).collect::<String>()
        ))),
    }
}

async fn log_handler(
    State(app): State<Arc<App>>,
    UrlPath((id, task)): UrlPath<(String, String)>,
    Query(query): Query<LogQuery>,
) -> Result<Response, ApiError> {
    let (run, source) = app.locate(&id)?;
    let task: TaskId = task.parse().map_err(EventsError::from)?;
    let attempt = number::<u32>("attempt", query.attempt.as_ref())?;
    let offset = number::<u64>("offset", query.offset.as_ref())?;
    let tail = number::<u64>("tail", query.tail.as_ref())?;
    let start = match (offset, tail) {
        (Some(offset), _) => logs::Start::Offset(offset),
        (None, Some(tail)) => logs::Start::Tail(tail),
        (None, None) => logs::Start::Offset(0),
    };
    let run_dir = app
        .run_dir(&run, &source)
        .ok_or_else(|| EventsError::UnknownRun {
            run: run.to_string(),
        })?;
    let dir = logs::task_dir(&run_dir, &task);
    let chunk = blocking(move || {
        logs::read(&dir, attempt, start).map_err(|e| EventsError::io("read the log in", dir, e))
    })
    .await?;
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (
            header::HeaderName::from_static("x-forge-log-attempt"),
            HeaderValue::from(chunk.attempt),
        ),
        (
            header::HeaderName::from_static("x-forge-log-start"),
            HeaderValue::from(chunk.start),
        ),
        (
            header::HeaderName::from_static("x-forge-log-offset"),
            HeaderValue::from(chunk.next()),
        ),
        (
            header::HeaderName::from_static("x-forge-log-size"),
            HeaderValue::from(chunk.size),
        ),
    ];
    Ok((headers, chunk.bytes).into_response())
}

/// The query of the events route.
#[derive(Deserialize)]
struct EventsQuery {
    from: Option<String>,
}

async fn events_handler(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
    Query(query): Query<EventsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (run, source) = app.locate(&id)?;
    let from = match headers.get("last-event-id") {
        Some(value) => parse_last_event_id(value.as_bytes())?.map(|seq| seq.saturating_add(1)),
        None => None,
    };
    let from = match (from, &query.from) {
        (Some(from), _) => from,
        (None, Some(text)) => parse_cursor("from", text.as_bytes())?.unwrap_or(1),
        (None, None) => 1,
    };
    let hub = app.hub(run, source).await?;
    let rx = hub.tx.subscribe();
    let client = Client::new(hub, rx, from, app.settings.retry);
    let stream = futures::stream::unfold(client, |mut client| async move {
        client.next_chunk().await.map(|chunk| (chunk, client))
    });
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::HeaderName::from_static("x-accel-buffering"),
            HeaderValue::from_static("no"),
        ),
    ];
    Ok((headers, Body::from_stream(stream)).into_response())
}
