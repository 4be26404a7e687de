//! Test support for Forge: a scripted model server that the real agent CLIs talk to.
//!
//! Forge drives agent CLIs (Claude Code, Codex, Gemini CLI, opencode, droid) as child processes
//! and parses what they print. Their output formats, their options, their error and retry
//! behaviour only show when the real programs run; the model behind them is what a test must
//! control. [`ModelServer`] is that model: an HTTP server on `127.0.0.1` (a random port) that
//! speaks, with streaming, the APIs the CLIs use — Anthropic Messages (with token counting),
//! OpenAI Responses and Chat Completions, and Gemini `generateContent` /
//! `streamGenerateContent?alt=sse` — and answers from a [`Script`]: per model call, text or a
//! call of one of the CLI's own tools, with the token usage to report, or an HTTP error. It
//! records every request ([`Recorded`]) so a test can assert what the agent was told: its
//! prompt, the tools it offered, its session.
//!
//! The server keeps no conversation state: which turn a request gets is the number of model
//! answers already in its history, and which conversation it belongs to is a phrase of its
//! prompt. Several agents (the tasks of one plan) can therefore use one server at once.
//!
//! [`agents`] knows how to point each CLI at the server in a private home directory, and where
//! the pinned CLIs are installed (`.ci/agents/`). [`sim_agent`] builds and finds the simulated
//! agent's program for tests outside `forge-agents`.
//!
//! ```
//! use forge_testkit::{ModelServer, Script, Turn};
//! use serde_json::json;
//!
//! let script = Script::new().when(
//!     "add a greeting",
//!     vec![
//!         Turn::tool("Write", json!({"file_path": "{cwd}/hello.txt", "content": "hi\n"})),
//!         Turn::text("Wrote hello.txt.").usage(1200, 30),
//!     ],
//! );
//! let server = ModelServer::start(script).unwrap();
//! assert!(server.url().starts_with("http://127.0.0.1:"));
//! assert!(server.requests().is_empty());
//! ```

pub mod agents;
pub mod hostile;
pub mod procs;
pub mod ray;
mod script;
mod sim;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::IntoResponse;
use parking_lot::Mutex;
use serde_json::Value;

pub use script::{Reply, Script, Turn};
pub use sim::sim_agent;
pub use wire::Api;

use wire::Conversation;

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The API it was made to.
    pub api: Api,
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body as JSON (`Null` if it was not JSON).
    pub body: Value,
    /// The user's messages (text), joined by newlines.
    pub user_text: String,
    /// The system prompt or instructions.
    pub system_text: String,
    /// The names of the tools offered.
    pub tools: Vec<String>,
    /// How many model answers the request's history held.
    pub answered: usize,
    /// The HTTP status the server answered with.
    pub status: u16,
    /// The token usage the answer reported (input, output); zero for errors and side APIs.
    pub usage: (u64, u64),
}

impl Recorded {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The agent's session id as the request carries it: Claude Code's
    /// `x-claude-code-session-id`, Codex's `session_id` / `conversation_id` headers, or a
    /// `session_id` in the body's `metadata.user_id`.
    pub fn session(&self) -> Option<String> {
        for name in [
            "x-claude-code-session-id",
            "session-id",
            "session_id",
            "conversation_id",
            "x-session-id",
        ] {
            if let Some(v) = self.header(name) {
                return Some(v.to_owned());
            }
        }
        let user_id = self
            .body
            .pointer("/metadata/user_id")
            .and_then(Value::as_str)?;
        let parsed: Value = serde_json::from_str(user_id).ok()?;
        parsed
            .get("session_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// Whether the request is a model call (not a token count or a model list).
    pub fn is_model_call(&self) -> bool {
        matches!(
            self.api,
            Api::Anthropic | Api::Responses | Api::Chat | Api::Gemini
        )
    }

    /// The agent's working directory as the request states it (system prompt or environment
    /// context), if it does.
    pub fn cwd(&self) -> Option<String> {
        Conversation {
            user_text: self.user_text.clone(),
            system_text: self.system_text.clone(),
            ..Conversation::default()
        }
        .cwd()
    }
}

struct State {
    script: Mutex<Script>,
    requests: Mutex<Vec<Recorded>>,
    seq: AtomicU64,
}

/// The scripted model server; it stops when dropped.
pub struct ModelServer {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for ModelServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl ModelServer {
    /// Starts a server on `127.0.0.1` (a free port) on a thread of its own.
    pub fn start(script: Script) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            script: Mutex::new(script),
            requests: Mutex::new(Vec::new()),
            seq: AtomicU64::new(0),
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let served = state.clone();
        let thread = std::thread::Builder::new()
            .name("forge-model-server".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let app = axum::Router::new().fallback(
                        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                            let state = served.clone();
                            async move { handle(&state, &method, &uri, &headers, &body) }
                        },
                    );
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = rx.await;
                        })
                        .await;
                });
            })?;
        Ok(Self {
            addr,
            state,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the script (for the requests from now on).
    pub fn set_script(&self, script: Script) {
        *self.state.script.lock() = script;
    }

    /// Every request so far, in order of arrival.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().clone()
    }

    /// The model calls so far (token counts, model lists and unknown paths left out).
    pub fn model_calls(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(Recorded::is_model_call)
            .collect()
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn handle(
    state: &State,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> axum::response::Response {
    let path = uri.path().to_owned();
    let api = Api::of(method.as_str(), &path);
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let conv = Conversation::read(api, &json);
    // Gemini names the model and whether to stream in the path.
    let (model_from_path, stream_from_path) = match path.rsplit_once("/models/") {
        Some((_, rest)) => {
            let (model, action) = rest.split_once(':').unwrap_or((rest, ""));
            (Some(model.to_owned()), action == "streamGenerateContent")
        }
        None => (None, false),
    };
    let seq = state.seq.fetch_add(1, Ordering::Relaxed) + 1;
    let answer = state
        .script
        .lock()
        .answer(&conv.user_text, conv.answered, !conv.tools.is_empty());
    let answer = match api {
        // Token counts and model lists never fail unless the model is down for everyone.
        Api::AnthropicCountTokens | Api::GeminiCountTokens | Api::Models => match answer {
            a @ script::Answer::Turn(Turn {
                reply: Reply::Fail { .. },
                ..
            }) => a,
            _ => script::Answer::Side(String::new()),
        },
        _ => answer,
    };
    let response = wire::respond(
        api,
        &json,
        &conv,
        answer,
        seq,
        model_from_path.as_deref(),
        stream_from_path,
    );
    state.requests.lock().push(Recorded {
        api,
        method: method.as_str().to_owned(),
        path,
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: json,
        user_text: conv.user_text,
        system_text: conv.system_text,
        tools: conv.tools,
        answered: conv.answered,
        status: response.status,
        usage: response.usage,
    });
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [
            (header::CONTENT_TYPE, response.content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        response.body,
    )
        .into_response()
}
