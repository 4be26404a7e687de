//! The event bus: assigns `seq`, journals, and fans events out to subscribers that never lose
//! any.

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tokio::sync::Notify;

use crate::journal::{DEFAULT_BATCH_WINDOW, Journal, Position, Replay};
use crate::{Event, EventKind, EventsError, RunId, TaskId};

/// What producers need: somewhere to publish events.
///
/// Object-safe, so the engine holds an `Arc<dyn EventSink>` and tests swap in a [`VecSink`].
/// The sink stamps each event with its run, the time and the next `seq`.
pub trait EventSink: Send + Sync {
    /// Publishes `kind` (about `task`, if any) and returns the `seq` it was given.
    ///
    /// Never waits for readers. A state transition ([`EventKind::is_transition`]) is durable
    /// when this returns; an error means it may not be (the event was still published and stays
    /// queued for the journal).
    fn publish(&self, task: Option<TaskId>, kind: EventKind) -> Result<u64, EventsError>;

    /// Publishes a run-level event (no task).
    fn publish_run(&self, kind: EventKind) -> Result<u64, EventsError> {
        self.publish(None, kind)
    }

    /// Publishes an event about `task`.
    fn publish_task(&self, task: &TaskId, kind: EventKind) -> Result<u64, EventsError> {
        self.publish(Some(task.clone()), kind)
    }
}

impl<T: EventSink + ?Sized> EventSink for Arc<T> {
    fn publish(&self, task: Option<TaskId>, kind: EventKind) -> Result<u64, EventsError> {
        (**self).publish(task, kind)
    }
}

/// An [`EventSink`] that keeps every event in memory: for tests of producers.
#[derive(Debug)]
pub struct VecSink {
    run: RunId,
    events: Mutex<Vec<Event>>,
}

impl VecSink {
    /// An empty sink for `run`; seqs start at 1.
    pub fn new(run: RunId) -> Self {
        Self {
            run,
            events: Mutex::new(Vec::new()),
        }
    }

    /// A copy of the events published so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().clone()
    }

    /// The `type` names of the events published so far, in order.
    pub fn types(&self) -> Vec<String> {
        self.events
            .lock()
            .iter()
            .map(|e| e.type_name().to_owned())
            .collect()
    }
}

impl EventSink for VecSink {
    fn publish(&self, task: Option<TaskId>, kind: EventKind) -> Result<u64, EventsError> {
        let mut events = self.events.lock();
        let seq = events.len() as u64 + 1;
        events.push(Event::new(self.run.clone(), seq, task, kind));
        Ok(seq)
    }
}

/// Tuning of an [`EventBus`].
#[derive(Debug, Clone)]
pub struct BusOptions {
    /// Recent events always kept in memory (default 4096): the live stream subscribers read
    /// from, and what a new subscriber can replay without reading the journal.
    pub tail: usize,
    /// Most events kept in memory for subscribers that are behind (default 131072). A
    /// subscriber further behind than that catches up from the journal, losing nothing. A bus
    /// without a journal keeps every event instead.
    pub retain: usize,
    /// How long batched events may wait before they are written (default 50 ms; at most 100 ms
    /// is the contract).
    pub batch_window: Duration,
}

impl Default for BusOptions {
    fn default() -> Self {
        Self {
            tail: 4096,
            retain: 131_072,
            batch_window: DEFAULT_BATCH_WINDOW,
        }
    }
}

/// Events a subscriber takes from memory per lock, and from the journal per catch-up step
/// (bounds the memory of a far-behind reader).
const BATCH: usize = 256;
const CATCH_UP_CHUNK: u64 = 1024;

/// Catch-ups read the journal in aligned blocks of this many events, and keep the last
/// [`CACHED_BLOCKS`] of them.
const BLOCK: u64 = 1024;
const CACHED_BLOCKS: usize = 8;

/// A run of consecutive events read from the journal.
type Block = Arc<[Arc<Event>]>;

/// The per-run event bus: the one place events are published.
///
/// [`EventBus::publish`] stamps the event (`seq`, time), appends it to the in-memory tail that
/// subscribers read, and hands it to the journal, all without waiting for any reader.
/// Transitions are fsynced before it returns; other events are written by a background flusher
/// within the batch window.
///
/// Subscribers ([`EventBus::subscribe`], [`EventBus::subscribe_from`]) each keep a cursor (the
/// last `seq` they returned) into the shared tail and take every event after it in batches, so
/// they get every event exactly once, in `seq` order. A subscriber that falls more than
/// [`BusOptions::tail`] events behind reads the missing events from the journal, then continues
/// from memory.
///
/// Cloning is cheap and shares the bus; it closes when [`EventBus::close`] is called or the
/// last clone is dropped (subscribers then receive what remains and end).
#[derive(Debug, Clone)]
pub struct EventBus {
    handle: Arc<Handle>,
}

#[derive(Debug)]
struct Handle {
    shared: Arc<Shared>,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    run: RunId,
    core: Mutex<Core>,
    /// Woken on every publish and on close.
    notify: Notify,
    /// The journal while the bus is open (closing drops it, releasing its lock).
    journal: Mutex<Option<Journal>>,
    /// Its path, if the bus journals.
    journal_path: Option<PathBuf>,
    /// Recently read journal blocks (see [`Shared::journal_block`]).
    blocks: Mutex<VecDeque<(u64, Block)>>,
    batch_window: Duration,
    flush: Mutex<FlushSignal>,
    flush_cv: Condvar,
}

#[derive(Debug)]
struct Core {
    next_seq: u64,
    /// The most recent events, contiguous in seq.
    tail: VecDeque<Arc<Event>>,
    /// Events kept regardless of subscribers.
    tail_cap: usize,
    /// Events kept at most, for subscribers that are behind.
    retain_cap: usize,
    /// Each subscriber's id and the last seq it took from the tail: events after the slowest
    /// one are kept (up to `retain_cap`) so it need not read the journal.
    cursors: Vec<(u64, u64)>,
    next_cursor: u64,
    /// Published, not yet handed to the journal.
    pending: Vec<Arc<Event>>,
    closed: bool,
}

impl Core {
    /// Makes room for one more event: drops the oldest unless a subscriber still needs it (and
    /// the retain limit is not reached).
    fn trim(&mut self) {
        if self.tail.len() < self.tail_cap {
            return;
        }
        let slowest = self.cursors.iter().map(|&(_, last)| last).min();
        while self.tail.len() >= self.tail_cap {
            let needed = self
                .tail
                .front()
                .is_some_and(|e| slowest.is_some_and(|s| e.seq > s));
            if needed && self.tail.len() < self.retain_cap {
                break;
            }
            self.tail.pop_front();
        }
    }
}

#[derive(Debug, Default)]
struct FlushSignal {
    since: Option<Instant>,
    closed: bool,
}

/// What a subscriber finds after its cursor.
enum Take {
    /// Events were copied out.
    Got,
    /// The cursor is older than the tail: read the journal up to this seq.
    Behind(u64),
    /// Nothing new (and whether the bus is closed).
    Nothing { closed: bool },
}

impl EventBus {
    /// A bus for `run` that keeps its events in memory only (every event, for catch-ups). For
    /// tests and embedding; a real run journals (see [`EventBus::open`]).
    pub fn in_memory(run: RunId, options: &BusOptions) -> Self {
        let shared = Shared::new(run, None, 1, options, (usize::MAX, usize::MAX));
        Self {
            handle: Arc::new(Handle {
                shared: Arc::new(shared),
                flusher: Mutex::new(None),
            }),
        }
    }

    /// A bus for `run` journaling to `path` (usually `.forge/runs/<run>/events.jsonl`), created
    /// if missing. An existing journal is validated (see [`Journal::open`]) and the bus goes on
    /// from its last `seq`: this is how a run resumes.
    pub fn open(
        run: RunId,
        path: impl AsRef<Path>,
        options: &BusOptions,
    ) -> Result<Self, EventsError> {
        Self::open_with(run, path, options, |_| {})
    }

    /// Like [`EventBus::open`], handing every event already in the journal to `on_event` (to
    /// fold the state of a resuming run while the journal is read once).
    pub fn open_with(
        run: RunId,
        path: impl AsRef<Path>,
        options: &BusOptions,
        on_event: impl FnMut(&Event),
    ) -> Result<Self, EventsError> {
        let mut journal = Journal::open_with(path.as_ref(), on_event)?;
        if let Some(found) = journal.run()
            && *found != run
        {
            return Err(EventsError::RunMismatch {
                path: journal.path().to_path_buf(),
                expected: run.to_string(),
                found: found.to_string(),
            });
        }
        journal.set_batch_window(options.batch_window);
        let next_seq = journal.last_seq() + 1;
        let shared = Arc::new(Shared::new(
            run,
            Some(journal),
            next_seq,
            options,
            (options.tail.max(1), options.retain.max(options.tail).max(1)),
        ));
        let thread_shared = Arc::clone(&shared);
        let flusher = std::thread::Builder::new()
            .name(format!("forge-events-flush-{}", shared.run))
            .spawn(move || thread_shared.flusher_loop())
            .map_err(|e| EventsError::io("start the flusher of", path.as_ref(), e))?;
        Ok(Self {
            handle: Arc::new(Handle {
                shared,
                flusher: Mutex::new(Some(flusher)),
            }),
        })
    }

    /// The run this bus belongs to.
    pub fn run(&self) -> &RunId {
        &self.handle.shared.run
    }

    /// The journal file, if the bus has one.
    pub fn journal_path(&self) -> Option<&Path> {
        self.handle.shared.journal_path.as_deref()
    }

    /// Seq of the last event published (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.handle.shared.last_seq()
    }

    /// Whether the bus is closed.
    pub fn is_closed(&self) -> bool {
        self.handle.shared.core.lock().closed
    }

    /// Publishes `kind` about `task` and returns its `seq` (see [`EventSink::publish`]).
    pub fn publish(&self, task: Option<TaskId>, kind: EventKind) -> Result<u64, EventsError> {
        self.handle.shared.publish(task, kind)
    }

    /// A subscription to events published from now on.
    pub fn subscribe(&self) -> Subscription {
        Shared::subscribe(&self.handle.shared, None)
    }

    /// A subscription that first replays the events from `from_seq` on (from memory or the
    /// journal), then continues live: no gaps, no duplicates.
    pub fn subscribe_from(&self, from_seq: u64) -> Subscription {
        Shared::subscribe(&self.handle.shared, Some(from_seq))
    }

    /// The published events with `from <= seq <= to`, from memory or the journal (blocking file
    /// I/O in the latter case).
    pub fn events(&self, from: u64, to: u64) -> Result<Vec<Arc<Event>>, EventsError> {
        self.handle.shared.range(from, to, u64::MAX)
    }

    /// Writes and fsyncs every published event.
    pub fn flush(&self) -> Result<(), EventsError> {
        self.handle.shared.persist(u64::MAX)
    }

    /// The published events with `from <= seq <= to` (at most `max`) if memory still holds
    /// them, without file I/O.
    #[cfg(feature = "http")]
    pub(crate) fn events_in_memory(&self, from: u64, to: u64, max: u64) -> Option<Vec<Arc<Event>>> {
        self.handle.shared.range_in_memory(from, to, max)
    }

    /// Closes the bus: later publishes fail with [`EventsError::Closed`], subscribers receive
    /// what was published and then end, and the journal is written and fsynced.
    pub fn close(&self) -> Result<(), EventsError> {
        self.handle.close()
    }
}

impl EventSink for EventBus {
    fn publish(&self, task: Option<TaskId>, kind: EventKind) -> Result<u64, EventsError> {
        self.handle.shared.publish(task, kind)
    }
}

impl Handle {
    fn close(&self) -> Result<(), EventsError> {
        self.shared.core.lock().closed = true;
        self.shared.notify.notify_waiters();
        let result = self.shared.persist(u64::MAX);
        {
            let mut signal = self.shared.flush.lock();
            signal.closed = true;
            self.shared.flush_cv.notify_all();
        }
        if let Some(flusher) = self.flusher.lock().take() {
            let _ = flusher.join();
        }
        if result.is_ok() {
            // Everything is on disk: let the journal go (and its lock, so the run can be
            // reopened). After a failed sync it stays, so a later `flush` can retry.
            self.shared.journal.lock().take();
        }
        result
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

impl Shared {
    fn new(
        run: RunId,
        journal: Option<Journal>,
        next_seq: u64,
        options: &BusOptions,
        (tail_cap, retain_cap): (usize, usize),
    ) -> Self {
        let journal_path = journal.as_ref().map(|j| j.path().to_path_buf());
        Self {
            run,
            core: Mutex::new(Core {
                next_seq,
                tail: VecDeque::new(),
                tail_cap,
                retain_cap,
                cursors: Vec::new(),
                next_cursor: 0,
                pending: Vec::new(),
                closed: false,
            }),
            notify: Notify::new(),
            journal: Mutex::new(journal),
            journal_path,
            blocks: Mutex::new(VecDeque::new()),
            batch_window: options.batch_window,
            flush: Mutex::new(FlushSignal::default()),
            flush_cv: Condvar::new(),
        }
    }

    pub(crate) fn last_seq(&self) -> u64 {
        self.core.lock().next_seq - 1
    }

    fn publish(&self, task: Option<TaskId>, kind: EventKind) -> Result<u64, EventsError> {
        let transition = kind.is_transition();
        let journaled = self.journal_path.is_some();
        // Allocated before taking the lock; seq and time are stamped under it, so both follow
        // publish order.
        let mut event = Arc::new(Event {
            v: crate::EVENT_VERSION,
            seq: 0,
            ts: jiff::Timestamp::UNIX_EPOCH,
            run: self.run.clone(),
            task,
            kind,
            extra: serde_json::Map::new(),
        });
        let (seq, wake_flusher) = {
            let mut core = self.core.lock();
            if core.closed {
                return Err(EventsError::Closed {
                    run: self.run.to_string(),
                });
            }
            let seq = core.next_seq;
            core.next_seq += 1;
            if let Some(fresh) = Arc::get_mut(&mut event) {
                fresh.seq = seq;
                fresh.ts = crate::now_millis();
            }
            let wake = journaled && core.pending.is_empty() && !transition;
            if journaled {
                core.pending.push(Arc::clone(&event));
            }
            core.trim();
            core.tail.push_back(event);
            (seq, wake)
        };
        self.notify.notify_waiters();
        if transition && journaled {
            self.persist(seq)?;
        } else if wake_flusher {
            let mut signal = self.flush.lock();
            if signal.since.is_none() {
                signal.since = Some(Instant::now());
                self.flush_cv.notify_one();
            }
        }
        Ok(seq)
    }

    /// Hands pending events to the journal and fsyncs it so that `seq` (and everything before
    /// it) is durable. Concurrent callers share one fsync (group commit).
    fn persist(&self, seq: u64) -> Result<(), EventsError> {
        let mut journal = self.journal.lock();
        let Some(journal) = journal.as_mut() else {
            return Ok(());
        };
        if journal.synced_seq() >= seq {
            return Ok(());
        }
        self.hand_over(journal)?;
        journal.sync()
    }

    /// Moves pending events into the journal's batch (under the journal's lock, so the file
    /// stays in seq order).
    fn hand_over(&self, journal: &mut Journal) -> Result<(), EventsError> {
        let pending = std::mem::take(&mut self.core.lock().pending);
        for event in &pending {
            journal.push(event)?;
        }
        Ok(())
    }

    /// Hands pending events to the journal and writes them (no fsync).
    fn write_pending(&self) -> Result<(), EventsError> {
        let mut journal = self.journal.lock();
        let Some(journal) = journal.as_mut() else {
            return Ok(());
        };
        self.hand_over(journal)?;
        journal.flush()
    }

    /// The background writer of batched events: sleeps until a batch exists, waits until it is
    /// `batch_window` old, writes it.
    fn flusher_loop(&self) {
        let mut signal = self.flush.lock();
        loop {
            if signal.closed {
                return;
            }
            let Some(since) = signal.since else {
                self.flush_cv.wait(&mut signal);
                continue;
            };
            let deadline = since + self.batch_window;
            if Instant::now() < deadline {
                let _ = self.flush_cv.wait_until(&mut signal, deadline);
                continue;
            }
            signal.since = None;
            drop(signal);
            let result = self.write_pending();
            signal = self.flush.lock();
            if result.is_err() {
                // The events stay batched and are retried after another window; a transition's
                // `publish` (or `flush`, `close`) retries at once and reports the error.
                signal.since.get_or_insert_with(Instant::now);
            }
        }
    }

    pub(crate) fn subscribe(self: &Arc<Self>, from: Option<u64>) -> Subscription {
        let mut core = self.core.lock();
        let head = core.next_seq - 1;
        let last = match from {
            Some(from) => from.saturating_sub(1).min(head),
            None => head,
        };
        let id = core.next_cursor;
        core.next_cursor += 1;
        core.cursors.push((id, last));
        drop(core);
        Subscription {
            shared: Arc::clone(self),
            id,
            last,
            batch: VecDeque::new(),
        }
    }

    /// Copies up to [`BATCH`] events after `last` from the tail into `out`, recording how far
    /// subscriber `id` has taken.
    fn take(&self, id: u64, last: u64, out: &mut VecDeque<Arc<Event>>) -> Take {
        let mut core = self.core.lock();
        let head = core.next_seq - 1;
        if last >= head {
            return Take::Nothing {
                closed: core.closed,
            };
        }
        match core.tail.front().map(|e| e.seq) {
            Some(first) if first <= last + 1 => {
                let skip = usize::try_from(last + 1 - first).unwrap_or(usize::MAX);
                out.extend(core.tail.iter().skip(skip).take(BATCH).cloned());
                let taken = out.back().map_or(last, |e| e.seq);
                if let Some(cursor) = core.cursors.iter_mut().find(|(c, _)| *c == id) {
                    cursor.1 = taken;
                }
                Take::Got
            }
            Some(first) => Take::Behind(first - 1),
            None => Take::Behind(head),
        }
    }

    /// Like [`Shared::range`] without touching the journal: `None` if memory does not reach
    /// back to `from`.
    pub(crate) fn range_in_memory(&self, from: u64, to: u64, max: u64) -> Option<Vec<Arc<Event>>> {
        let core = self.core.lock();
        let to = to
            .min(from.saturating_add(max).saturating_sub(1))
            .min(core.next_seq - 1);
        if to < from {
            return Some(Vec::new());
        }
        let first = core.tail.front()?.seq;
        if first > from {
            return None;
        }
        let skip = usize::try_from(from - first).unwrap_or(usize::MAX);
        let take = usize::try_from(to - from + 1).unwrap_or(usize::MAX);
        Some(core.tail.iter().skip(skip).take(take).cloned().collect())
    }

    /// Events with `from <= seq <= to`, at most `max` of them: from the in-memory tail if it
    /// reaches back far enough, else from the journal.
    pub(crate) fn range(
        &self,
        from: u64,
        to: u64,
        max: u64,
    ) -> Result<Vec<Arc<Event>>, EventsError> {
        if let Some(events) = self.range_in_memory(from, to, max) {
            return Ok(events);
        }
        let to = to.min(from.saturating_add(max).saturating_sub(1));
        let mut out = Vec::new();
        let mut seq = from;
        while seq <= to {
            let start = (seq - 1) / BLOCK * BLOCK + 1;
            let block = self.journal_block(start)?;
            let before = out.len();
            out.extend(
                block
                    .iter()
                    .filter(|e| e.seq >= seq && e.seq <= to)
                    .cloned(),
            );
            match out.last() {
                Some(last) if out.len() > before => seq = last.seq + 1,
                _ => break,
            }
        }
        if out.first().is_none_or(|e| e.seq != from) {
            return Err(EventsError::Missing {
                run: self.run.to_string(),
                from,
                to,
            });
        }
        Ok(out)
    }

    /// The events `start ..= start + BLOCK - 1` read from the journal. Full blocks are cached, so
    /// several subscribers catching up over the same stretch parse it once.
    fn journal_block(&self, start: u64) -> Result<Block, EventsError> {
        let Some(path) = &self.journal_path else {
            return Err(EventsError::Missing {
                run: self.run.to_string(),
                from: start,
                to: start + BLOCK - 1,
            });
        };
        // Held while reading: others catching up over this block wait and then find it cached.
        let mut cache = self.blocks.lock();
        if let Some((_, block)) = cache.iter().find(|(s, _)| *s == start) {
            return Ok(Arc::clone(block));
        }
        // Everything published must be in the file before it is read.
        let hint = match self.journal.lock().as_mut() {
            Some(journal) => {
                self.hand_over(journal)?;
                journal.flush()?;
                journal.seek_hint(start)
            }
            // Closed: everything is on disk; read from the start.
            None => Position::START,
        };
        let file = File::open(path).map_err(|e| EventsError::io("open", path, e))?;
        let end = start + BLOCK - 1;
        let mut events = Vec::with_capacity(usize::try_from(BLOCK).unwrap_or(0));
        for event in Replay::at(path.clone(), file, hint, start)? {
            let event = event?;
            if event.seq > end {
                break;
            }
            events.push(Arc::new(event));
        }
        let block: Block = events.into();
        if block.len() as u64 == BLOCK {
            if cache.len() >= CACHED_BLOCKS {
                cache.pop_front();
            }
            cache.push_back((start, Arc::clone(&block)));
        }
        Ok(block)
    }
}

/// A reader of one bus: every event exactly once, in `seq` order (see [`EventBus`]).
#[derive(Debug)]
pub struct Subscription {
    shared: Arc<Shared>,
    /// This subscriber's cursor id in the bus.
    id: u64,
    /// Seq of the last event returned.
    last: u64,
    /// Events taken from the bus, not yet returned.
    batch: VecDeque<Arc<Event>>,
}

impl Subscription {
    /// The next event; `Ok(None)` once the bus is closed and every event has been returned.
    ///
    /// Cancel-safe: if the future is dropped, no event is lost or repeated. An error comes from
    /// reading the journal during a catch-up; calling again retries.
    pub async fn recv(&mut self) -> Result<Option<Arc<Event>>, EventsError> {
        loop {
            if let Some(event) = self.pop() {
                return Ok(Some(event));
            }
            // Registered before looking, so a publish in between still wakes us.
            let shared = Arc::clone(&self.shared);
            let notified = shared.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match shared.take(self.id, self.last, &mut self.batch) {
                Take::Got => {}
                Take::Behind(to) => self.catch_up(to).await?,
                Take::Nothing { closed: true } => return Ok(None),
                Take::Nothing { closed: false } => notified.await,
            }
        }
    }

    /// The next event if one is available without waiting for a publish (may read the journal
    /// to catch up). `Ok(None)` means none right now — or the end; see
    /// [`Subscription::is_finished`].
    pub fn try_recv(&mut self) -> Result<Option<Arc<Event>>, EventsError> {
        loop {
            if let Some(event) = self.pop() {
                return Ok(Some(event));
            }
            match self.shared.take(self.id, self.last, &mut self.batch) {
                Take::Got => {}
                Take::Behind(to) => {
                    self.fill(to, self.shared.range(self.last + 1, to, CATCH_UP_CHUNK)?)?;
                }
                Take::Nothing { .. } => return Ok(None),
            }
        }
    }

    /// Whether the bus is closed and every event has been returned.
    pub fn is_finished(&self) -> bool {
        self.batch.is_empty() && {
            let core = self.shared.core.lock();
            core.closed && self.last >= core.next_seq - 1
        }
    }

    /// Seq of the last event returned (or the position the subscription started after).
    pub fn last_seq(&self) -> u64 {
        self.last
    }

    fn pop(&mut self) -> Option<Arc<Event>> {
        while let Some(event) = self.batch.pop_front() {
            if event.seq > self.last {
                self.last = event.seq;
                return Some(event);
            }
        }
        None
    }

    /// Reads the next chunk of `last+1 ..= to` from the journal on a blocking thread.
    async fn catch_up(&mut self, to: u64) -> Result<(), EventsError> {
        let from = self.last + 1;
        let shared = Arc::clone(&self.shared);
        let events = tokio::task::spawn_blocking(move || shared.range(from, to, CATCH_UP_CHUNK))
            .await
            .map_err(|e| {
                let path = self.shared.journal_path.clone().unwrap_or_default();
                EventsError::io("read", path, std::io::Error::other(e))
            })??;
        self.fill(to, events)
    }

    fn fill(&mut self, to: u64, events: Vec<Arc<Event>>) -> Result<(), EventsError> {
        let from = self.last + 1;
        if events.first().is_none_or(|e| e.seq != from) {
            return Err(EventsError::Missing {
                run: self.shared.run.to_string(),
                from,
                to,
            });
        }
        self.batch.extend(events);
        Ok(())
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.shared
            .core
            .lock()
            .cursors
            .retain(|&(id, _)| id != self.id);
    }
}
