use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Errors of the events crate.
///
/// Every variant names what it is about (the journal path and line, the id, the address), so the
/// CLI can print it as is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventsError {
    /// An identifier (run or task id) is not acceptable.
    #[error(transparent)]
    InvalidId(#[from] forge_types::IdError),

    /// One serialized event (a JSON object) could not be read.
    #[error("invalid event: {reason}")]
    InvalidEvent {
        /// What is wrong with it, from the JSON parser or the schema.
        reason: String,
    },

    /// Reading or writing a journal (or listing a runs directory) failed.
    #[error("cannot {action} `{}`: {source}", path.display())]
    Io {
        /// What was being done: `open`, `read`, `append to`, `sync`, …
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// A complete line of a journal is not a valid event (a torn *last* line is not an error).
    #[error("corrupt journal `{}` at line {line}: {reason}", path.display())]
    Corrupt {
        /// The journal file.
        path: PathBuf,
        /// The 1-based line number.
        line: u64,
        /// What is wrong with the line.
        reason: String,
    },

    /// The journal is already open for writing (by another bus, or another process).
    #[error("journal `{}` is already being written by another bus or process", path.display())]
    Locked {
        /// The journal file.
        path: PathBuf,
    },

    /// A journal holds events of another run than the bus it was opened for.
    #[error("journal `{}` belongs to run `{found}`, not `{expected}`", path.display())]
    RunMismatch {
        /// The journal file.
        path: PathBuf,
        /// The run the bus was created for.
        expected: String,
        /// The run named by the journal's events.
        found: String,
    },

    /// An event was appended out of `seq` order (the bus assigns seqs; this is a caller bug).
    #[error("cannot append seq {seq} to journal `{}`: its last seq is {last_seq}", path.display())]
    OutOfOrder {
        /// The journal file.
        path: PathBuf,
        /// The seq of the refused event.
        seq: u64,
        /// The journal's last seq.
        last_seq: u64,
    },

    /// Events a reader needs are in neither the bus's memory nor its journal.
    #[error("events {from}..={to} of run `{run}` are missing from its journal")]
    Missing {
        /// The run.
        run: String,
        /// First missing seq.
        from: u64,
        /// Last missing seq.
        to: u64,
    },

    /// The bus was closed: nothing more can be published to it.
    #[error("the event bus of run `{run}` is closed")]
    Closed {
        /// The run whose bus is closed.
        run: String,
    },

    /// A `Last-Event-ID` header or `from` query parameter is not an event sequence number.
    #[error("invalid {what} `{value}`: expected an event sequence number (a non-negative integer)")]
    InvalidCursor {
        /// `"Last-Event-ID"` or `"from"`.
        what: &'static str,
        /// The offending value (lossily decoded, cut to 64 characters).
        value: String,
    },

    /// No run with that id exists under the runs directory (nor is one attached to the server).
    #[error("unknown run `{run}`")]
    UnknownRun {
        /// The requested run id, as given.
        run: String,
    },

    /// Serving on a non-loopback address was asked for without an access token.
    #[error(
        "refusing to serve on {addr} without a token: only loopback addresses may be served without `Authorization: Bearer <token>`"
    )]
    TokenRequired {
        /// The requested address.
        addr: SocketAddr,
    },

    /// The SSE server could not bind or serve its address.
    #[error("cannot serve on {addr}: {source}")]
    Serve {
        /// The requested address.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

impl EventsError {
    /// Wraps an I/O error with what was being done to which path.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
