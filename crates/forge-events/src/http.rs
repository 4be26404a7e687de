//! The SSE server (cargo feature `http`): runs, their folded state and their live events over
//! HTTP, and the web dashboard that shows them, for `forge serve` and `forge run --serve`.
//!
//! | route | answer |
//! |---|---|
//! | `GET /` | the web dashboard (one page; `/?run=<id>` opens a run) |
//! | `GET /assets/{name}` | the dashboard's script, style sheet and icon |
//! | `GET /api/runs` | the runs under the runs directory (and attached buses), as JSON [`RunInfo`]s |
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

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use parking_lot::Mutex;
use serde::Deserialize;
use tokio::sync::broadcast;

use crate::journal::{Follow, Position, Replay, seek_hint};
use crate::runs::{RunInfo, journal_path, list_runs, run_info};
use crate::{Event, EventBus, EventsError, RunId, Subscription, TaskId};

mod dashboard;
mod fold;
mod logs;

pub use fold::RunOverview;

use fold::{Folds, Source};

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
    let app = Arc::new(App {
        runs_dir,
        buses: opts
            .buses
            .iter()
            .map(|bus| (bus.run().clone(), bus.clone()))
            .collect(),
        settings: opts,
        hubs: tokio::sync::Mutex::new(HashMap::new()),
        folds: Folds::default(),
    });
    let api = Router::new()
        .route("/api/runs", get(list_handler))
        .route("/api/overview", get(overview_handler))
        .route("/api/runs/{id}", get(state_handler))
        .route("/api/runs/{id}/events", get(events_handler))
        .route("/api/runs/{id}/tasks/{task}/log", get(log_handler))
        .with_state(app);
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

/// The cookie that carries the token after a `?token=` was accepted (hex-encoded, so any token
/// is a valid cookie value).
const TOKEN_COOKIE: &str = "forge_token";

/// Wraps `router` so every request needs the token — as `Authorization: Bearer <token>`, a
/// `token` query parameter or the `forge_token` cookie, compared in constant time; others get
/// `401`. A request that brought the token as a query parameter is answered with a redirect
/// (`303`) to its URL without the token, with the cookie set (`HttpOnly`, `SameSite=Strict`):
/// the token is given once and then kept out of addresses.
pub fn require_token(router: Router, token: &str) -> Router {
    let guard = Guard {
        token: Arc::new(Token::new(token)),
        public: false,
    };
    router.layer(middleware::from_fn_with_state(guard, check_token))
}

/// Wraps `router` so it answers only requests whose `Host` names this machine's loopback
/// interface (`localhost`, `127.x.y.z`, `[::1]`, any port); others get `403`. [`Server::start`]
/// and [`Server::start_with`] apply it to every server without a token: a page on another
/// site whose name was re-bound to 127.0.0.1 (DNS rebinding) sends its own name as `Host`.
pub fn require_loopback_host(router: Router) -> Router {
    router.layer(middleware::from_fn(check_host))
}

/// Refuses (`403`) a mutating request (any method but `GET`, `HEAD` and `OPTIONS`) sent by a
/// page of another site: its `Origin` (which browsers send with every such request) must be
/// this server's own `http://<Host>`, and a browser's `Sec-Fetch-Site` must not say
/// `cross-site`. Clients that are not browsers send no `Origin` and pass (they still need the
/// token when the server has one). With the token in a `SameSite=Strict` cookie or in a header
/// only the dashboard's own script can send, this keeps other sites from acting on runs.
pub async fn same_origin(request: Request, next: Next) -> Response {
    use axum::http::Method;
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    let headers = request.headers();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let cross_site = headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site");
    let origin_ok = match headers.get(header::ORIGIN) {
        None => true,
        Some(origin) => match (origin.to_str().ok(), host) {
            (Some(origin), Some(host)) => {
                origin
                    .strip_prefix("http://")
                    .or_else(|| origin.strip_prefix("https://"))
                    == Some(host)
            }
            _ => false,
        },
    };
    if cross_site || !origin_ok {
        return error_response(
            StatusCode::FORBIDDEN,
            "cross-site request refused: actions on runs are accepted only from this server's own dashboard",
        );
    }
    next.run(request).await
}

/// Whether a `Host` header value names the loopback interface.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        // `[v6]` or `[v6]:port`
        Some(rest) => match rest.split_once(']') {
            Some((v6, port)) if port.is_empty() || port.strip_prefix(':').is_some_and(is_port) => {
                return v6
                    .parse::<std::net::Ipv6Addr>()
                    .is_ok_and(|ip| ip.is_loopback());
            }
            _ => return false,
        },
        None => match host.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return false,
            None => host,
        },
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A port number as a `Host` header gives it (1 to 5 digits).
fn is_port(port: &str) -> bool {
    !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
}

async fn check_host(request: Request, next: Next) -> Response {
    // An absolute-form request names its host in the target, which then counts over `Host`.
    let host = request
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            request
                .headers()
                .get(header::HOST)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        });
    match host {
        Some(host) if is_loopback_host(&host) => next.run(request).await,
        Some(host) => error_response(
            StatusCode::FORBIDDEN,
            &format!(
                "host `{}` is not served: without a token this server answers only loopback \
                 names (localhost, 127.0.0.1, [::1]); open it as http://127.0.0.1:<port>/, or \
                 start it with a token (forge serve --token <secret>)",
                host.chars().take(128).collect::<String>()
            ),
        ),
        None => error_response(
            StatusCode::FORBIDDEN,
            "a `Host` header is required: without a token this server answers only requests \
             for localhost, 127.0.0.1 or [::1]",
        ),
    }
}

/// The expected token, and its cookie form.
struct Token {
    raw: Box<[u8]>,
    hex: Box<[u8]>,
}

/// The token check's settings: the token, and whether requests without it still pass (the
/// dashboard's page, which holds no data).
#[derive(Clone)]
struct Guard {
    token: Arc<Token>,
    public: bool,
}

/// How a request proved it has the token.
#[derive(PartialEq, Eq)]
enum Proof {
    Header,
    Cookie,
    Query,
}

/// The query parameter that may carry the token.
#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

impl Token {
    fn new(token: &str) -> Self {
        Self {
            raw: token.as_bytes().into(),
            hex: hex_encode(token.as_bytes()).into_bytes().into(),
        }
    }

    fn proof(&self, request: &Request) -> Option<Proof> {
        let eq = constant_time_eq::constant_time_eq;
        let headers = request.headers();
        if headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .filter_map(|v| v.as_bytes().strip_prefix(b"Bearer "))
            .any(|given| eq(given, &self.raw))
        {
            return Some(Proof::Header);
        }
        let cookie_prefix = format!("{TOKEN_COOKIE}=");
        if headers
            .get_all(header::COOKIE)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
            .filter_map(|pair| pair.trim_ascii().strip_prefix(cookie_prefix.as_bytes()))
            .any(|given| eq(given, &self.hex))
        {
            return Some(Proof::Cookie);
        }
        let query = Query::<TokenQuery>::try_from_uri(request.uri()).ok()?;
        let given = query.0.token?;
        eq(given.as_bytes(), &self.raw).then_some(Proof::Query)
    }
}

fn hex_encode(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

async fn check_token(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let token = &guard.token;
    match token.proof(&request) {
        Some(Proof::Query) => {
            let location = without_token(request.uri());
            let mut response = match HeaderValue::from_str(&location) {
                Ok(location) => {
                    let mut response = StatusCode::SEE_OTHER.into_response();
                    response.headers_mut().insert(header::LOCATION, location);
                    response
                        .headers_mut()
                        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                    response
                }
                // Cannot happen (the address came in as a valid URI); answer rather than loop.
                Err(_) => next.run(request).await,
            };
            let cookie = format!(
                "{TOKEN_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
                String::from_utf8_lossy(&token.hex)
            );
            if let Ok(cookie) = HeaderValue::from_str(&cookie) {
                response.headers_mut().append(header::SET_COOKIE, cookie);
            }
            response
        }
        Some(Proof::Header | Proof::Cookie) => next.run(request).await,
        None if guard.public => next.run(request).await,
        None => {
            let mut response = error_response(
                StatusCode::UNAUTHORIZED,
                "missing or wrong token: send `Authorization: Bearer <token>` (or `?token=<token>`)",
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

/// The path and query of `uri` without its `token` parameters (the target of the redirect
/// after a query token was taken).
fn without_token(uri: &axum::http::Uri) -> String {
    let kept: Vec<&str> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|pair| {
            !pair.is_empty() && form_decode(pair.split('=').next().unwrap_or("")) != "token"
        })
        .collect();
    if kept.is_empty() {
        uri.path().to_owned()
    } else {
        format!("{}?{}", uri.path(), kept.join("&"))
    }
}

/// Decodes a form-encoded query key (`+` is a space, `%XX` a byte).
fn form_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The access rule: loopback addresses may be served without a token, others may not.
pub fn check_exposure(addr: SocketAddr, token: Option<&str>) -> Result<(), EventsError> {
    let has_token = token.is_some_and(|t| !t.is_empty());
    if addr.ip().is_loopback() || has_token {
        Ok(())
    } else {
        Err(EventsError::TokenRequired { addr })
    }
}

/// A running SSE server.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<io::Result<()>>,
}

impl Server {
    /// Serves [`router`]`(runs_dir, opts)` on `addr` (port 0 picks a free port), under the
    /// access rule ([`check_exposure`]). Must be called within a tokio runtime.
    pub async fn start(
        addr: SocketAddr,
        runs_dir: PathBuf,
        opts: ServeOptions,
    ) -> Result<Self, EventsError> {
        check_exposure(addr, opts.token.as_deref())?;
        let header_timeout = opts.header_timeout;
        let open = opts.token.as_deref().is_none_or(str::is_empty);
        let app = router(runs_dir, opts);
        let app = if open {
            require_loopback_host(app)
        } else {
            app
        };
        Self::bind(addr, app, header_timeout).await
    }

    /// Serves any app (e.g. [`router`] merged with dashboard routes) on `addr` under the access
    /// rule; with a token, the whole app requires it.
    pub async fn start_with(
        addr: SocketAddr,
        app: Router,
        token: Option<&str>,
    ) -> Result<Self, EventsError> {
        check_exposure(addr, token)?;
        let app = match token.filter(|t| !t.is_empty()) {
            Some(token) => require_token(app, token),
            None => require_loopback_host(app),
        };
        Self::bind(addr, app, DEFAULT_HEADER_TIMEOUT).await
    }

    async fn bind(
        addr: SocketAddr,
        app: Router,
        header_timeout: Duration,
    ) -> Result<Self, EventsError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| EventsError::Serve { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| EventsError::Serve { addr, source })?;
        let task = tokio::spawn(accept_loop(listener, app, header_timeout));
        Ok(Self { addr: local, task })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Runs until the server fails.
    pub async fn wait(self) -> Result<(), EventsError> {
        let addr = self.addr;
        match self.task.await {
            Ok(result) => result.map_err(|source| EventsError::Serve { addr, source }),
            Err(e) => Err(EventsError::Serve {
                addr,
                source: io::Error::other(e),
            }),
        }
    }

    /// Stops serving and drops every connection (event streams never end by themselves, so a
    /// graceful drain would wait forever).
    pub fn shutdown(self) {
        self.task.abort();
    }
}

/// Accepts connections and serves each as HTTP/1.1 with `app`, on its own task.
///
/// Connections are driven by hyper directly rather than `axum::serve`: the router is shared by
/// reference (not rebuilt per connection), the read buffer is capped at hyper's minimum, and
/// no HTTP/2 detection buffer is kept — what an idle event stream costs is mostly these
/// buffers. `TCP_NODELAY` is set: frames are small and their latency matters. The connection
/// tasks belong to this loop's task set, so stopping the loop ([`Server::shutdown`]) drops
/// every connection with it: clients see the server go away and reconnect.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: Router,
    header_timeout: Duration,
) -> io::Result<()> {
    let mut http1 = hyper::server::conn::http1::Builder::new();
    // Request heads larger than 8 KiB are refused (431); ours are a line and a few headers.
    http1.max_buf_size(MAX_REQUEST_HEAD);
    // A client that never finishes its head is cut off (hyper counts from when it starts
    // waiting for a head, so an idle keep-alive connection ends too; a streaming answer does not).
    http1
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            // Reap finished connections as they end.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let Ok((stream, _)) = accepted else {
            // Out of file descriptors, or a connection reset before accept: keep serving.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let connection = http1.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        connections.spawn(async move {
            // A client going away mid-stream is normal for event streams.
            let _ = connection.await;
        });
    }
}

/// The largest request head accepted (hyper's minimum read buffer).
const MAX_REQUEST_HEAD: usize = 8192;

/// Serves the runs under `runs_dir` on `addr` until the server fails (see [`Server::start`]).
pub async fn serve(
    addr: SocketAddr,
    runs_dir: PathBuf,
    opts: ServeOptions,
) -> Result<(), EventsError> {
    Server::start(addr, runs_dir, opts).await?.wait().await
}

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

/// Shared state of the routes.
struct App {
    runs_dir: PathBuf,
    settings: ServeOptions,
    buses: HashMap<RunId, EventBus>,
    hubs: tokio::sync::Mutex<HashMap<RunId, Weak<Hub>>>,
    folds: Folds,
}

impl App {
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

/// An error answer: status and a JSON `{"error": message}` body.
enum ApiError {
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

fn error_response(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EventsError> + Send + 'static,
) -> Result<T, EventsError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EventsError::io("read", "(blocking task)", io::Error::other(e)))?
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
    let retry = app.settings.retry.as_millis();
    let client = Client {
        hub,
        rx,
        last: from.saturating_sub(1),
        replaying: true,
        hello: Some(Bytes::from(format!("retry: {retry}\n\n"))),
        done: false,
    };
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

/// One event formatted for SSE (or, with seq 0, a keep-alive comment).
#[derive(Clone, Debug)]
struct Frame {
    seq: u64,
    bytes: Bytes,
}

const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

impl Frame {
    fn of(event: &Event) -> Self {
        let name = event.type_name();
        // A foreign journal's type could hold a line break and forge a field: not passed on.
        let name = if name.bytes().any(|b| b == b'\n' || b == b'\r') {
            "unknown"
        } else {
            name
        };
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(b"id: ");
        buf.extend_from_slice(event.seq.to_string().as_bytes());
        buf.extend_from_slice(b"\nevent: ");
        buf.extend_from_slice(name.as_bytes());
        buf.extend_from_slice(b"\ndata: ");
        event.write_json(&mut buf);
        buf.extend_from_slice(b"\n\n");
        Self {
            seq: event.seq,
            bytes: Bytes::from(buf),
        }
    }

    fn keep_alive() -> Self {
        Self {
            seq: 0,
            bytes: Bytes::from_static(KEEP_ALIVE),
        }
    }
}

/// Frames a client takes per catch-up step.
const CATCH_UP_FRAMES: usize = 1024;

/// A client writes at most about this many bytes at once.
const MAX_CHUNK: usize = 256 * 1024;

/// One run's fan-out point: reads its events once, frames them once, broadcasts them.
struct Hub {
    run: RunId,
    source: Source,
    tx: broadcast::Sender<Frame>,
    /// Recent frames, and the seq of the last event the pump published (every later event
    /// will come through the broadcast).
    ring: Mutex<Ring>,
    /// `ring.pumped`, readable without the lock: a client that has it needs no more now.
    head: AtomicU64,
    ring_cap: usize,
    /// Sparse index of the journal (for file sources).
    index: Mutex<Vec<Position>>,
    failed: Mutex<Option<String>>,
    pump: Mutex<Option<tokio::task::AbortHandle>>,
}

/// A hub's recent frames.
struct Ring {
    frames: VecDeque<Frame>,
    pumped: u64,
}

/// What a hub reads from.
enum Upstream {
    Bus(Subscription),
    File(Follow),
    Ended,
}

impl Upstream {
    async fn next(&mut self) -> Result<Option<(Option<Position>, Arc<Event>)>, EventsError> {
        match self {
            Self::Bus(sub) => Ok(sub.recv().await?.map(|event| (None, event))),
            Self::File(follow) => follow
                .next_positioned()
                .await
                .map(|(pos, event)| Some((Some(pos), Arc::new(event)))),
            Self::Ended => std::future::pending().await,
        }
    }
}

impl Hub {
    async fn start(
        run: RunId,
        source: Source,
        settings: &ServeOptions,
    ) -> Result<Arc<Self>, EventsError> {
        let (upstream, index, pumped) = match &source {
            Source::Bus(bus) => {
                let sub = bus.subscribe();
                let head = sub.last_seq();
                (Upstream::Bus(sub), Vec::new(), head)
            }
            Source::File(path) => {
                let scan_path = path.clone();
                let (end, index) = blocking(move || scan(&scan_path)).await?;
                let follow = Follow::starting_at(path.clone(), end, 0)?
                    .poll_interval(settings.poll_interval);
                (Upstream::File(follow), index, end.prev_seq)
            }
        };
        let (tx, _) = broadcast::channel(settings.capacity.max(1));
        let hub = Arc::new(Self {
            run,
            source,
            tx,
            ring: Mutex::new(Ring {
                frames: VecDeque::new(),
                pumped,
            }),
            head: AtomicU64::new(pumped),
            ring_cap: settings.ring.max(1),
            index: Mutex::new(index),
            failed: Mutex::new(None),
            pump: Mutex::new(None),
        });
        let task = tokio::spawn(pump(Arc::downgrade(&hub), upstream, settings.keep_alive));
        *hub.pump.lock() = Some(task.abort_handle());
        Ok(hub)
    }

    fn publish(&self, position: Option<Position>, event: &Event) {
        let frame = Frame::of(event);
        if let Some(position) = position {
            let mut index = self.index.lock();
            if index
                .last()
                .is_none_or(|p| position.prev_seq >= p.prev_seq + 256)
            {
                index.push(position);
            }
        }
        let mut ring = self.ring.lock();
        if ring.frames.len() >= self.ring_cap {
            ring.frames.pop_front();
        }
        ring.frames.push_back(frame.clone());
        ring.pumped = frame.seq;
        self.head.store(frame.seq, Ordering::Release);
        // Sent under the ring's lock so ring, `pumped` and broadcast agree: a client that
        // subscribed before reading `pumped` receives every later frame.
        let _ = self.tx.send(frame);
    }

    /// Up to `max` frames from `from` on, for a client subscribed to the broadcast: from the
    /// ring if it reaches back that far, none if the pump has not got that far (the broadcast
    /// will bring them), else read from the source.
    async fn range(self: &Arc<Self>, from: u64, max: usize) -> Result<Vec<Frame>, EventsError> {
        {
            let ring = self.ring.lock();
            if from > ring.pumped {
                return Ok(Vec::new());
            }
            if let Some(first) = ring.frames.front().map(|f| f.seq)
                && first <= from
            {
                let skip = usize::try_from(from - first).unwrap_or(usize::MAX);
                return Ok(ring.frames.iter().skip(skip).take(max).cloned().collect());
            }
        }
        if let Source::Bus(bus) = &self.source
            && let Some(events) = bus.events_in_memory(from, u64::MAX, max as u64)
        {
            return Ok(events.iter().map(|e| Frame::of(e)).collect());
        }
        let hub = Arc::clone(self);
        blocking(move || hub.read_source(from, max)).await
    }

    fn read_source(&self, from: u64, max: usize) -> Result<Vec<Frame>, EventsError> {
        match &self.source {
            Source::Bus(bus) => {
                let to = from.saturating_add(max as u64 - 1);
                Ok(bus.events(from, to)?.iter().map(|e| Frame::of(e)).collect())
            }
            Source::File(path) => {
                let hint = seek_hint(&self.index.lock(), from);
                let file =
                    std::fs::File::open(path).map_err(|e| EventsError::io("open", path, e))?;
                Replay::at(path.clone(), file, hint, from)?
                    .take(max)
                    .map(|event| event.map(|e| Frame::of(&e)))
                    .collect()
            }
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        if let Some(pump) = self.pump.lock().take() {
            pump.abort();
        }
    }
}

/// Reads a journal once to find its end and build a sparse index (seqs only, no full parse).
fn scan(path: &Path) -> Result<(Position, Vec<Position>), EventsError> {
    let file = std::fs::File::open(path).map_err(|e| EventsError::io("open", path, e))?;
    let mut replay = Replay::new(path.to_path_buf(), file, Position::START, u64::MAX).with_index();
    if let Some(Err(e)) = replay.next() {
        return Err(e);
    }
    Ok((replay.position(), replay.take_index()))
}

/// The hub's task: relays upstream events and sends keep-alives, until the hub is dropped.
async fn pump(hub: Weak<Hub>, mut upstream: Upstream, keep_alive: Duration) {
    let start = tokio::time::Instant::now() + keep_alive;
    let mut tick = tokio::time::interval_at(start, keep_alive);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            next = upstream.next() => {
                let Some(hub) = hub.upgrade() else { return };
                match next {
                    Ok(Some((position, event))) => hub.publish(position, &event),
                    // The bus closed: nothing more will come; keep the clients alive.
                    Ok(None) => upstream = Upstream::Ended,
                    Err(e) => {
                        *hub.failed.lock() = Some(format!("run `{}`: {e}", hub.run));
                        return;
                    }
                }
            }
            _ = tick.tick() => {
                let Some(hub) = hub.upgrade() else { return };
                let _ = hub.tx.send(Frame::keep_alive());
            }
        }
    }
}

/// One connected client's position in its run's stream.
struct Client {
    hub: Arc<Hub>,
    rx: broadcast::Receiver<Frame>,
    /// Seq of the last event written to the client.
    last: u64,
    /// Still replaying history before going live.
    replaying: bool,
    hello: Option<Bytes>,
    done: bool,
}

/// The bytes of one write: a single frame as is, several concatenated.
#[derive(Default)]
struct Chunk {
    one: Option<Bytes>,
    many: Vec<u8>,
}

impl Chunk {
    fn push(&mut self, bytes: &Bytes) {
        if self.many.is_empty() {
            match self.one.take() {
                None => {
                    self.one = Some(bytes.clone());
                    return;
                }
                Some(first) => self.many.extend_from_slice(&first),
            }
        }
        self.many.extend_from_slice(bytes);
    }

    fn len(&self) -> usize {
        self.one.as_ref().map_or(self.many.len(), Bytes::len)
    }

    fn take(self) -> Option<Bytes> {
        match self.one {
            Some(one) => Some(one),
            None if self.many.is_empty() => None,
            None => Some(Bytes::from(self.many)),
        }
    }
}

impl Client {
    async fn next_chunk(&mut self) -> Option<Result<Bytes, io::Error>> {
        if let Some(hello) = self.hello.take() {
            return Some(Ok(hello));
        }
        if self.done {
            return None;
        }
        match self.next_frames().await {
            Ok(Some(bytes)) => Some(Ok(bytes)),
            Ok(None) => None,
            Err(e) => {
                // Ends the response; the client reconnects with Last-Event-ID and resumes.
                self.done = true;
                Some(Err(io::Error::other(e)))
            }
        }
    }

    async fn next_frames(&mut self) -> Result<Option<Bytes>, EventsError> {
        loop {
            if self.replaying {
                let frames = self.hub.range(self.last + 1, CATCH_UP_FRAMES).await?;
                if frames.len() < CATCH_UP_FRAMES {
                    self.replaying = false;
                }
                let mut chunk = Chunk::default();
                for frame in &frames {
                    if frame.seq == self.last + 1 {
                        chunk.push(&frame.bytes);
                        self.last = frame.seq;
                    }
                }
                if let Some(bytes) = chunk.take() {
                    return Ok(Some(bytes));
                }
                continue;
            }
            let first = match self.rx.recv().await {
                Ok(frame) => frame,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return Ok(None),
            };
            let mut chunk = Chunk::default();
            self.take(first, &mut chunk).await?;
            // Everything else already waiting goes into the same write. (A client that has
            // the newest frame skips the look: an empty broadcast costs a contended lock.)
            while chunk.len() < MAX_CHUNK && self.last < self.hub.head.load(Ordering::Acquire) {
                match self.rx.try_recv() {
                    Ok(frame) => self.take(frame, &mut chunk).await?,
                    Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                    Err(_) => break,
                }
            }
            if let Some(bytes) = chunk.take() {
                return Ok(Some(bytes));
            }
        }
    }

    async fn take(&mut self, frame: Frame, chunk: &mut Chunk) -> Result<(), EventsError> {
        if frame.seq == 0 {
            chunk.push(&frame.bytes);
            return Ok(());
        }
        if frame.seq <= self.last {
            return Ok(());
        }
        while frame.seq > self.last + 1 {
            // A gap (this client lagged): fill it from the ring or the journal.
            let from = self.last + 1;
            let frames = self.hub.range(from, CATCH_UP_FRAMES).await?;
            let before = self.last;
            for f in frames.iter().take_while(|f| f.seq < frame.seq) {
                if f.seq == self.last + 1 {
                    chunk.push(&f.bytes);
                    self.last = f.seq;
                }
            }
            if self.last == before {
                return Err(EventsError::Missing {
                    run: self.hub.run.to_string(),
                    from,
                    to: frame.seq - 1,
                });
            }
        }
        chunk.push(&frame.bytes);
        self.last = frame.seq;
        Ok(())
    }
}
