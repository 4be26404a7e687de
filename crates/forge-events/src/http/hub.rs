//! One run's hub: reads the run's events once (from its bus or by following its journal),
//! frames each once, keeps recent frames in a ring and broadcasts them to the clients.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::broadcast;

use super::fold::Source;
use super::sse::Frame;
use super::{ServeOptions, blocking};
use crate::journal::{Follow, Position, Replay, seek_hint};
use crate::{Event, EventsError, RunId, Subscription};

/// One run's fan-out point: reads its events once, frames them once, broadcasts them.
pub(super) struct Hub {
    pub(super) run: RunId,
    source: Source,
    pub(super) tx: broadcast::Sender<Frame>,
    /// Recent frames, and the seq of the last event the pump published (every later event
    /// will come through the broadcast).
    ring: Mutex<Ring>,
    /// `ring.pumped`, readable without the lock: a client that has it needs no more now.
    pub(super) head: AtomicU64,
    ring_cap: usize,
    /// Sparse index of the journal (for file sources).
    index: Mutex<Vec<Position>>,
    pub(super) failed: Mutex<Option<String>>,
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
    pub(super) async fn start(
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
    pub(super) async fn range(
        self: &Arc<Self>,
        from: u64,
        max: usize,
    ) -> Result<Vec<Frame>, EventsError> {
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
