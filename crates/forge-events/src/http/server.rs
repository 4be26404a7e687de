//! The server: binding under the access rule, and the accept loop that drives each connection
//! with hyper.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;

use super::auth::{check_exposure, require_loopback_host, require_token};
use super::{DEFAULT_HEADER_TIMEOUT, ServeOptions, router};
use crate::EventsError;

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
