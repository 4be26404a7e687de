//! The SSE server (cargo feature `http`): runs, their folded state and their live events over
//! HTTP, and the web dashboard that shows them, for `forge serve` and `forge run --serve`.
//!
//! | route | answer |
//! |---|---|
//! | `GET /` | the web dashboard (one page; `/?run=<id>` opens a run) |
//! | `GET /assets/{name}` | the dashboard's script, style sheet and icon |
//! | `GET /api/runs` | the runs under the runs directory (and attached buses), as JSON [`RunInfo`](crate::RunInfo)s |
//! | `GET /api/overview` | the same runs with phase, task counts and conflicts, as JSON [`RunOverview`]s |
//! | `GET /api/runs/{id}` | the run's folded [`RunState`](crate::RunState) as JSON |
//! | `GET /api/runs/{id}/events` | Server-Sent Events: `id:` seq, `event:` type, `data:` the event JSON |
//! | `GET /api/runs/{id}/tasks/{task}/log` | a task attempt's `output.log` from a byte offset (below) |
//! | `GET /api/features` | what an embedder's routes offer ([`ServeOptions::routes`]), as a JSON list |
//!
//! The event stream replays from the journal, then goes live, without gaps or duplicates: it
//! starts after `Last-Event-ID` (what a reconnecting `EventSource` sends), else at `?from=<seq>`,
//! else at the first event. A malformed cursor is `400`, an unknown run `404`. The first chunk
//! is a `retry:` hint; a `: keep-alive` comment follows every [`ServeOptions::keep_alive`].
//!
//! # Delivery
//!
//! Each run being watched has one **hub**: a task that reads the run's events once — from an
//! [`EventBus`] attached with [`ServeOptions::attach`] (a run in this process), else by
//! following its journal (`tail -f` of a run written by another process, polled every
//! [`ServeOptions::poll_interval`]) — formats each as an SSE frame once, keeps recent frames in a
//! ring and broadcasts them. A client task wakes when a frame arrives and writes **every frame
//! waiting for it in one write**, so under load the number of writes per client stays low while
//! no frame waits for a timer. A client that falls behind the broadcast buffer notices the gap by
//! `seq` and fills it from the ring or the journal.
//!
//! `GET /api/runs/{id}` and `/api/overview` keep each run's fold between requests and read only
//! the journal lines appended since, so a page polling them costs what changed, not the
//! journal's size.
//!
//! # Task logs
//!
//! `GET /api/runs/{id}/tasks/{task}/log?attempt=<n>&offset=<byte>` answers the bytes of
//! `<run>/tasks/<task>/<n>/output.log` from `offset` on (at most 256 × 1024 bytes per request), as
//! `text/plain`, with headers `x-forge-log-start` (offset of the first byte returned),
//! `x-forge-log-offset` (the offset to ask for next), `x-forge-log-size` (the log's size) and
//! `x-forge-log-attempt`. Without `attempt` the latest attempt is read; `tail=<bytes>` instead of
//! `offset` starts that many bytes before the end, at a line start. A log not written yet reads
//! as empty (attempt `0` when the task has no attempt yet). Ids are validated, so no request
//! reaches outside the run directory: a bad task id is `400`, an unknown run `404`.
//!
//! # Dashboard
//!
//! `GET /` serves a web page embedded in the binary (`assets/`: plain HTML, CSS and script; no
//! build step, no CDN, no font or request from any other host; a strict
//! `Content-Security-Policy` allows this origin only). It lists the runs (`/api/overview`,
//! polled) and shows one run at `/?run=<id>`: the plan as a DAG (tasks in longest-path layers,
//! edges from `after`, colored by state, the critical path drawn thicker), the task table (state,
//! agent, attempt, latest activity, elapsed, tokens, cost), lock waits (who blocks whom),
//! merge conflicts (path, tasks, strategy), gate commands with test counts, the apply, and the
//! `output.log` of the selected task, followed by polling the log route. Where the server's
//! embedder offers them (`GET /api/features`, see [`ServeOptions::routes`]; `forge serve` does),
//! the log panel shows the task's transcript or diff instead, and the page acts on the run:
//! abort it while it runs; once it finished, apply all or chosen tasks, or retry one. A finished
//! run's page says so and does not reconnect when its stream ends.
//!
//! A run page loads the run's state once (`/api/runs/{id}`), then opens an `EventSource` on
//! `/api/runs/{id}/events?from=<last_seq + 1>` and folds every event into that state in the page
//! (a port of [`RunState::apply`](crate::RunState::apply)), skipping any seq it already has. The
//! browser's own reconnects send `Last-Event-ID`; when the browser gives a stream up (the server
//! answered an error), the page opens a new one from the seq after the last it folded. Either
//! way the page continues without gaps or duplicates and never reloads the state. Finished runs
//! show at once from their state.
//!
//! # Access
//!
//! The default address is [`DEFAULT_ADDR`] (`127.0.0.1:7317`, the port `forge serve` uses). [`Server::start`] binds loopback
//! addresses freely; any other address needs a token, and then every API request must carry it
//! or gets `401`: as `Authorization: Bearer <token>`, as the `forge_token` cookie, or once as a
//! `token=<token>` query parameter. A request that brings a valid query token is answered
//! `303 See Other` to the same URL without the token, with the cookie set: the token does not
//! stay in the browser's history or in the logs of what sits in between (an `EventSource`,
//! which cannot set headers, follows the redirect with the cookie). Tokens are compared in
//! constant time. The dashboard's page and assets hold no data and are served without a token:
//! the page takes the token once (from `#token=` or `?token=` in its address, or a form), keeps
//! it for the browser tab and sends it with every request.
//!
//! Mutating requests to an embedder's routes (any method but `GET`, `HEAD`, `OPTIONS`) are
//! refused with `403` when they come from another site ([`same_origin`]): their `Origin`, which
//! browsers send with every such request, must be this server's own, and `Sec-Fetch-Site` must
//! not be `cross-site`. The token cookie is `SameSite=Strict`, and the page sends the token in
//! the `Authorization` header, which no other site's page can set.
//!
//! A server without a token answers only requests whose `Host` is a loopback name
//! (`localhost`, `127.0.0.1` or another `127.x.y.z`, `[::1]`, with or without the port); any
//! other `Host` gets `403`. A web page on another site whose name was re-bound to 127.0.0.1
//! (DNS rebinding) therefore cannot read the runs. A token-protected server accepts any `Host`.
//!
//! Request heads are limited to 8192 bytes, and must arrive within
//! [`ServeOptions::header_timeout`] of the connection (or of the end of its previous answer),
//! else the connection is closed: clients that never finish their headers do not keep sockets.
//!
//! # Layout of this module
//!
//! `mod.rs` holds the settings and assembles the router; `auth` the access rule (token,
//! loopback `Host`, same-origin check); `routes` the API's handlers and their shared state;
//! `hub` one run's fan-out of its events; `sse` the framing and each client's stream;
//! `server` the accept loop; `fold`, `logs` and `dashboard` what their names say.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::{EventBus, EventsError};

mod auth;
mod dashboard;
mod fold;
mod hub;
mod logs;
mod routes;
mod server;
mod sse;

pub use auth::{check_exposure, require_loopback_host, require_token, same_origin};
pub use fold::RunOverview;
pub use routes::parse_last_event_id;
pub use server::{Server, serve};

use auth::{Guard, Token, check_token};
use routes::App;

/// Where `forge serve` listens unless told otherwise: loopback only, so no token is needed.
pub const DEFAULT_ADDR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    DEFAULT_PORT,
));

/// The port of [`DEFAULT_ADDR`].
pub const DEFAULT_PORT: u16 = 7317;

/// [`ServeOptions::header_timeout`] unless set otherwise.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of the SSE server.
#[derive(Clone)]
pub struct ServeOptions {
    /// The access token. Required to serve a non-loopback address; when set, every API request
    /// needs it (see the module docs: bearer header, `token` query parameter or cookie).
    pub token: Option<String>,
    /// Interval of `: keep-alive` comments (default 15 s).
    pub keep_alive: Duration,
    /// The reconnection delay suggested to clients with `retry:` (default 3 s).
    pub retry: Duration,
    /// How often the journal of a run written by another process is checked for new events
    /// (default 25 ms).
    pub poll_interval: Duration,
    /// Frames buffered per client before it lags and catches up from the ring (default 1024).
    pub capacity: usize,
    /// Recent frames each run's hub keeps for clients that lag (default 4096).
    pub ring: usize,
    /// Runs of this process, served from their bus (see [`ServeOptions::attach`]).
    pub buses: Vec<EventBus>,
    /// How long a connection may take to send a complete request head, counted from the
    /// connection (or the end of its previous answer) before it is closed (default 10 s).
    pub header_timeout: Duration,
    /// More API routes (an embedder's, such as the CLI's transcripts and actions), served under
    /// the same access rule as the API; their mutating requests (any method but `GET` and
    /// `HEAD`) are refused (`403`) when they come from another site (see [`same_origin`]).
    pub routes: Vec<Router>,
    /// What those routes offer, as the dashboard asks for it at `GET /api/features`
    /// (`transcript`, `diff`, `abort`, `apply`, …): the page shows a control only when the
    /// server has its route.
    pub features: Vec<String>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            token: None,
            keep_alive: Duration::from_secs(15),
            retry: Duration::from_secs(3),
            poll_interval: crate::DEFAULT_POLL_INTERVAL,
            capacity: 1024,
            ring: 4096,
            buses: Vec::new(),
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            routes: Vec::new(),
            features: Vec::new(),
        }
    }
}

impl fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeOptions")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("keep_alive", &self.keep_alive)
            .field("retry", &self.retry)
            .field("poll_interval", &self.poll_interval)
            .field("capacity", &self.capacity)
            .field("ring", &self.ring)
            .field("header_timeout", &self.header_timeout)
            .field("routes", &self.routes.len())
            .field("features", &self.features)
            .field(
                "buses",
                &self.buses.iter().map(EventBus::run).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl ServeOptions {
    /// Requires the token on every API request (an empty token means none).
    #[must_use]
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into()).filter(|t| !t.is_empty());
        self
    }

    /// Serves the run of `bus` from the bus itself (live events without polling), whether or
    /// not its journal is under the runs directory. The server keeps a handle to the bus, so
    /// end the run with [`EventBus::close`] rather than by dropping it.
    #[must_use]
    pub fn attach(mut self, bus: EventBus) -> Self {
        self.buses.push(bus);
        self
    }

    /// Adds API routes (see [`ServeOptions::routes`]) and names the features they offer.
    #[must_use]
    pub fn routes(mut self, routes: Router, features: &[&str]) -> Self {
        self.routes.push(routes);
        self.features
            .extend(features.iter().map(|f| (*f).to_owned()));
        self
    }
}

/// The routes (see the module docs) for the runs under `runs_dir` (a `.forge/runs` directory):
/// the API, protected by `opts.token` when set, and the dashboard, which is public.
///
/// Mount it in a larger app with [`Router::merge`]; protect the whole app with
/// [`require_token`] and serve it with [`Server::start_with`] to keep the access rule (the
/// dashboard is then opened once as `/?token=<token>`, which sets the cookie its assets need).
pub fn router(runs_dir: PathBuf, mut opts: ServeOptions) -> Router {
    let token = opts.token.clone().filter(|t| !t.is_empty());
    let app_routes = std::mem::take(&mut opts.routes);
    let features = Arc::new(std::mem::take(&mut opts.features));
    let api = routes::api(Arc::new(App::new(runs_dir, opts)));
    let api = api.route(
        "/api/features",
        get(move || {
            let features = Arc::clone(&features);
            async move { Json(features.as_ref().clone()) }
        }),
    );
    let api = app_routes.into_iter().fold(api, |api, extra| {
        api.merge(extra.layer(middleware::from_fn(same_origin)))
    });
    match token {
        Some(token) => {
            let token = Arc::new(Token::new(&token));
            let api = api.layer(middleware::from_fn_with_state(
                Guard {
                    token: Arc::clone(&token),
                    public: false,
                },
                check_token,
            ));
            // The page is public, but a token in its address is still taken into the cookie
            // and dropped from the address.
            let page = dashboard::routes().layer(middleware::from_fn_with_state(
                Guard {
                    token,
                    public: true,
                },
                check_token,
            ));
            page.merge(api)
        }
        None => dashboard::routes().merge(api),
    }
}

/// An error answer: status and a JSON `{"error": message}` body.
pub(super) enum ApiError {
    Events(EventsError),
    /// A malformed request parameter, with the message to answer.
    BadRequest(String),
}

impl From<EventsError> for ApiError {
    fn from(e: EventsError) -> Self {
        Self::Events(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Events(e) => {
                let status = match e {
                    EventsError::UnknownRun { .. } => StatusCode::NOT_FOUND,
                    EventsError::InvalidCursor { .. } | EventsError::InvalidId(_) => {
                        StatusCode::BAD_REQUEST
                    }
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                };
                error_response(status, &e.to_string())
            }
            Self::BadRequest(message) => error_response(StatusCode::BAD_REQUEST, &message),
        }
    }
}

pub(super) fn error_response(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EventsError> + Send + 'static,
) -> Result<T, EventsError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EventsError::io("read", "(blocking task)", io::Error::other(e)))?
}
