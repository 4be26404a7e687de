//! Server-Sent Events: one event as a frame (formatted once, shared by every client), and one
//! client's stream, which replays, then goes live, writing every frame waiting for it at once.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use tokio::sync::broadcast;

use super::hub::Hub;
use crate::{Event, EventsError};

/// One event formatted for SSE (or, with seq 0, a keep-alive comment).
#[derive(Clone, Debug)]
pub(super) struct Frame {
    pub(super) seq: u64,
    pub(super) bytes: Bytes,
}

const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

impl Frame {
    pub(super) fn of(event: &Event) -> Self {
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

    pub(super) fn keep_alive() -> Self {
        Self {
            seq: 0,
            bytes: Bytes::from_static(KEEP_ALIVE),
        }
    }
}

/// Frames a client takes per catch-up step.
pub(super) const CATCH_UP_FRAMES: usize = 1024;

/// A client writes at most about this many bytes at once.
const MAX_CHUNK: usize = 256 * 1024;

/// One connected client's position in its run's stream.
pub(super) struct Client {
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
    /// A client of `hub` receiving `rx`, whose stream starts with the `retry:` hint and then
    /// the events from seq `from` on.
    pub(super) fn new(
        hub: Arc<Hub>,
        rx: broadcast::Receiver<Frame>,
        from: u64,
        retry: std::time::Duration,
    ) -> Self {
        let retry = retry.as_millis();
        Self {
            hub,
            rx,
            last: from.saturating_sub(1),
            replaying: true,
            hello: Some(Bytes::from(format!("retry: {retry}\n\n"))),
            done: false,
        }
    }

    pub(super) async fn next_chunk(&mut self) -> Option<Result<Bytes, io::Error>> {
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
