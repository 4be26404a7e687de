//! `forge serve`: the SSE API (and dashboard) of forge-events for the runs of this repository.

use std::net::SocketAddr;

use forge_events::EventsError;
use forge_events::http::{ServeOptions, Server};

use crate::cli::ServeArgs;
use crate::config::Context;
use crate::error::{CliError, CliResult, Exit};
use crate::term::Style;

/// The address and options to serve with: flags, then `forge.toml` / `FORGE_*`, then defaults.
pub(crate) fn options(
    ctx: &Context,
    bind: Option<SocketAddr>,
    token: Option<String>,
) -> (SocketAddr, ServeOptions) {
    let addr = bind
        .or(ctx.config.bind)
        .unwrap_or(forge_events::http::DEFAULT_ADDR);
    let mut opts = ServeOptions::default().routes(crate::web::routes(ctx), crate::web::FEATURES);
    if let Some(token) = token.or_else(|| ctx.config.token.clone()) {
        opts = opts.token(token);
    }
    (addr, opts)
}

/// Starts the server, turning its errors into advice.
pub(crate) async fn start(
    ctx: &Context,
    addr: SocketAddr,
    opts: ServeOptions,
) -> CliResult<Server> {
    Server::start(addr, ctx.runs_dir(), opts)
        .await
        .map_err(|e| match e {
            EventsError::TokenRequired { addr } => CliError::usage(format!(
                "serving {addr} without a token would let anyone on the network read your runs"
            ))
            .hint("pass --token <secret> (or set FORGE_TOKEN), or bind a loopback address such as 127.0.0.1:7317"),
            other => CliError::failed(other.to_string())
                .hint("choose another address with --bind, e.g. --bind 127.0.0.1:0 for any free port"),
        })
}

/// `forge serve`.
pub(crate) async fn run(ctx: &Context, args: &ServeArgs, style: Style) -> CliResult {
    let (addr, opts) = options(ctx, args.bind, args.token.clone());
    let with_token = opts.token.is_some();
    let server = start(ctx, addr, opts).await?;
    let url = format!("http://{}", server.local_addr());
    // Listen for Ctrl-C before saying where the server is: a signal sent by whoever reads that
    // line must not find the default action (death) still in place.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| CliError::failed(format!("cannot listen for Ctrl-C: {e}")))?;
    outln!(
        "Serving the runs of {} at {} (dashboard: {url}/, API: {url}/api/runs){}",
        ctx.repo.display(),
        style.bold(&url),
        if with_token {
            "; requests need `Authorization: Bearer <token>`"
        } else {
            ""
        }
    );
    outln!("{}", style.dim("Press Ctrl-C to stop."));
    tokio::select! {
        result = server.wait() => {
            result.map_err(|e| CliError::failed(e.to_string()))?;
            Ok(Exit::Success)
        }
        _ = interrupt.recv() => {
            outln!("Stopped.");
            Ok(Exit::Success)
        }
    }
}
