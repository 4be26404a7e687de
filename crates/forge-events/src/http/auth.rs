//! The access rule: the token (bearer header, cookie or a one-time query parameter), the
//! loopback `Host` check of servers without a token, and the same-origin check of mutating
//! requests (see the module docs of [`crate::http`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error_response;
use crate::EventsError;

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
/// interface (`localhost`, `127.x.y.z`, `[::1]`, any port); others get `403`. [`Server::start`](super::Server::start)
/// and [`Server::start_with`](super::Server::start_with) apply it to every server without a token: a page on another
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
pub(super) struct Token {
    raw: Box<[u8]>,
    hex: Box<[u8]>,
}

/// The token check's settings: the token, and whether requests without it still pass (the
/// dashboard's page, which holds no data).
#[derive(Clone)]
pub(super) struct Guard {
    pub(super) token: Arc<Token>,
    pub(super) public: bool,
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
    pub(super) fn new(token: &str) -> Self {
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

pub(super) async fn check_token(
    State(guard): State<Guard>,
    request: Request,
    next: Next,
) -> Response {
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
