//! The data channel between a run and its attempts on other machines: an HTTP server in the
//! orchestrating `forge`, on the address the user configured, every request authenticated by the
//! run's token (a bearer token, compared in constant time).
//!
//! - `GET /v1/attempts/{key}`: the attempt's [`Order`] (command, start tree as a manifest).
//! - `GET /v1/blobs/{hash}`: a blob of a start tree; a node asks only for blobs its cache lacks.
//! - `POST /v1/attempts/{key}/output`: lines the agent printed ([`OutputLine`]s), as they come.
//! - `PUT /v1/blobs/{hash}`: a blob of the changes; refused unless its content has that hash.
//! - `POST /v1/attempts/{key}/result`: how the agent ended and its [`ChangeSet`].
//!
//! An attempt not open in this process answers 404: a node keeps its lines and its result and
//! tries again, so a run resumed after its process died (same address, same token, kept in the
//! run's `runner.json`) takes them when it reattaches to the job.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use forge_events::OutputStream;
use forge_staging::{BlobStore, ChangeSet, ContentHash, Manifest};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::ExecError;

/// What a node needs to run an attempt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    /// The run's id.
    pub run: String,
    /// The task's id.
    pub task: String,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// The agent's program; `None` means the node's own `forge` (the simulated agent).
    pub program: Option<String>,
    /// Its arguments; [`PROMPT_FILE`] stands for the prompt file the node writes.
    pub args: Vec<String>,
    /// Its environment, on top of the node's.
    pub env: Vec<(String, String)>,
    /// The prompt, written to the node's prompt file.
    pub prompt: String,
    /// The start tree.
    pub tree: Manifest,
    /// Whether the node captures and sends back what the program changed (an attempt); the
    /// gate's commands (`[gate] on = "cluster"`) change nothing that is kept.
    #[serde(default = "yes")]
    pub capture: bool,
}

fn yes() -> bool {
    true
}

/// Stands for the node's prompt file in [`Order::args`].
pub const PROMPT_FILE: &str = "@FORGE_PROMPT_FILE@";

/// A line the agent printed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutputLine {
    /// `stdout` or `stderr`.
    pub stream: OutputStream,
    /// The line, without its newline.
    pub line: String,
}

/// How an attempt ended on its node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeResult {
    /// The node's address.
    pub node: String,
    /// The agent's exit code, if it exited.
    pub exit_code: Option<i32>,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// Whether the node stopped it (the job was stopped).
    pub stopped: bool,
    /// Why the attempt could not run, when it could not.
    pub error: Option<String>,
    /// Its changes against the start tree (empty unless it exited 0).
    pub changes: ChangeSet,
}

/// The receiving ends of one attempt's messages.
pub(crate) struct Inbox {
    pub(crate) output: mpsc::UnboundedReceiver<OutputLine>,
    pub(crate) result: oneshot::Receiver<NodeResult>,
}

struct Slot {
    order: Arc<Order>,
    output: mpsc::UnboundedSender<OutputLine>,
    result: Option<oneshot::Sender<NodeResult>>,
}

struct Inner {
    token: String,
    blobs: BlobStore,
    attempts: Mutex<HashMap<String, Slot>>,
    blobs_served: AtomicU64,
}

/// The running server.
pub(crate) struct Channel {
    inner: Arc<Inner>,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Channel {
    /// Listens on `listen` (only there) with `token` (a fresh one when `None`: a resumed run
    /// passes its dead process's, so that jobs still running reach it); blobs come from and go
    /// to `blobs`.
    pub(crate) async fn start(
        listen: SocketAddr,
        blobs: BlobStore,
        token: Option<String>,
    ) -> Result<Self, ExecError> {
        let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
            ExecError::Config(format!(
                "the runner's data channel cannot listen on {listen}: {e}; set `[runner] listen` \
                 to an address of this machine that the nodes can reach"
            ))
        })?;
        let addr = listener
            .local_addr()
            .map_err(|e| ExecError::Config(format!("the data channel's address: {e}")))?;
        let inner = Arc::new(Inner {
            token: match token {
                Some(token) => token,
                None => new_token()?,
            },
            blobs,
            attempts: Mutex::new(HashMap::new()),
            blobs_served: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/v1/attempts/{key}", get(order))
            .route("/v1/attempts/{key}/output", post(output))
            .route("/v1/attempts/{key}/result", post(result))
            .route("/v1/blobs/{hash}", get(blob).put(put_blob))
            .with_state(inner.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            inner,
            addr,
            server,
        })
    }

    /// `http://host:port` as the nodes reach it.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The run's token.
    pub(crate) fn token(&self) -> &str {
        &self.inner.token
    }

    /// Makes `order` available under `key`; its messages arrive in the returned inbox.
    pub(crate) fn open(&self, key: &str, order: Order) -> Inbox {
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (res_tx, res_rx) = oneshot::channel();
        self.inner.attempts.lock().insert(
            key.to_owned(),
            Slot {
                order: Arc::new(order),
                output: out_tx,
                result: Some(res_tx),
            },
        );
        Inbox {
            output: out_rx,
            result: res_rx,
        }
    }

    /// Forgets `key`: later messages for it are refused.
    pub(crate) fn close(&self, key: &str) {
        self.inner.attempts.lock().remove(key);
    }
}

/// 64 random hexadecimal digits.
pub(crate) fn new_token() -> Result<String, ExecError> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .map_err(|e| ExecError::Config(format!("no random bytes for the run's token: {e}")))?;
    Ok(bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = std::fmt::Write::write_fmt(&mut s, format_args!("{b:02x}"));
        s
    }))
}

fn authorized(inner: &Inner, headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| constant_time_eq::constant_time_eq(t.as_bytes(), inner.token.as_bytes()))
}

fn refuse(code: StatusCode, why: &str) -> Response {
    (code, why.to_owned()).into_response()
}

async fn order(
    State(inner): State<Arc<Inner>>,
    UrlPath(key): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&inner, &headers) {
        return refuse(StatusCode::UNAUTHORIZED, "a valid run token is required");
    }
    let order = inner.attempts.lock().get(&key).map(|s| s.order.clone());
    match order {
        Some(order) => axum::Json(&*order).into_response(),
        None => refuse(StatusCode::NOT_FOUND, "no such attempt in this run"),
    }
}

async fn output(
    State(inner): State<Arc<Inner>>,
    UrlPath(key): UrlPath<String>,
    headers: HeaderMap,
    axum::Json(lines): axum::Json<Vec<OutputLine>>,
) -> Response {
    if !authorized(&inner, &headers) {
        return refuse(StatusCode::UNAUTHORIZED, "a valid run token is required");
    }
    let tx = inner.attempts.lock().get(&key).map(|s| s.output.clone());
    let Some(tx) = tx else {
        // Not open (yet): a resumed run opens it when it reattaches; the node keeps its lines.
        return refuse(StatusCode::NOT_FOUND, "no such attempt open in this run");
    };
    for line in lines {
        let _ = tx.send(line);
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn result(
    State(inner): State<Arc<Inner>>,
    UrlPath(key): UrlPath<String>,
    headers: HeaderMap,
    axum::Json(result): axum::Json<NodeResult>,
) -> Response {
    if !authorized(&inner, &headers) {
        return refuse(StatusCode::UNAUTHORIZED, "a valid run token is required");
    }
    let tx = inner.attempts.lock().get_mut(&key).map(|s| s.result.take());
    match tx {
        Some(Some(tx)) => {
            let _ = tx.send(result);
            StatusCode::NO_CONTENT.into_response()
        }
        Some(None) => refuse(StatusCode::GONE, "the attempt already has a result"),
        // Not open (yet): a resumed run opens it when it reattaches; the node tries again.
        None => refuse(StatusCode::NOT_FOUND, "no such attempt open in this run"),
    }
}

async fn blob(
    State(inner): State<Arc<Inner>>,
    UrlPath(hash): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&inner, &headers) {
        return refuse(StatusCode::UNAUTHORIZED, "a valid run token is required");
    }
    let Ok(hash) = hash.parse::<ContentHash>() else {
        return refuse(StatusCode::BAD_REQUEST, "not a content hash");
    };
    let blobs = inner.blobs.clone();
    match tokio::task::spawn_blocking(move || blobs.read(&hash)).await {
        Ok(Ok(content)) => {
            inner.blobs_served.fetch_add(1, Ordering::Relaxed);
            content.into_response()
        }
        _ => refuse(StatusCode::NOT_FOUND, "no such blob"),
    }
}

async fn put_blob(
    State(inner): State<Arc<Inner>>,
    UrlPath(hash): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorized(&inner, &headers) {
        return refuse(StatusCode::UNAUTHORIZED, "a valid run token is required");
    }
    let Ok(hash) = hash.parse::<ContentHash>() else {
        return refuse(StatusCode::BAD_REQUEST, "not a content hash");
    };
    if ContentHash::of(&body) != hash {
        return refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the content does not have that hash",
        );
    }
    let blobs = inner.blobs.clone();
    match tokio::task::spawn_blocking(move || blobs.write(&body)).await {
        Ok(Ok(_)) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(e)) => refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}
