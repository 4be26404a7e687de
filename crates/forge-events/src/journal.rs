//! The journal: a run's events as append-only JSONL, its durable copy and source of truth.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::{Event, EventsError, RunId};

/// How long a batched (non-transition) event may wait in memory before it is written.
pub const DEFAULT_BATCH_WINDOW: Duration = Duration::from_millis(50);

/// A batch is written early once it holds this many bytes.
const MAX_BATCH_BYTES: usize = 256 * 1024;

/// One sparse index entry is kept every this many events, so a replay from the middle of a long
/// journal seeks instead of scanning from the start.
const INDEX_STRIDE: u64 = 256;

/// Where to start reading a journal: a byte offset at the start of a line, its 1-based line
/// number and the seq of the event just before it (0 at the start of the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Position {
    pub(crate) offset: u64,
    pub(crate) line: u64,
    pub(crate) prev_seq: u64,
}

impl Position {
    pub(crate) const START: Self = Self {
        offset: 0,
        line: 1,
        prev_seq: 0,
    };
}

/// The writing end of a run's journal (`.forge/runs/<run>/events.jsonl`).
///
/// Durability policy: a state transition ([`Event::is_transition`]) is written and fsynced, with
/// everything batched before it, before [`Journal::append`] returns. Other events (progress,
/// output, usage, …) are batched in memory and written in one `write(2)` once the batch is
/// [`DEFAULT_BATCH_WINDOW`] old or large; [`crate::EventBus`] runs a flusher thread so a batch
/// never waits longer than the window, even when no further event comes.
///
/// Opening an existing journal validates it: a torn last line (a crash in the middle of a write)
/// is cut off, any other damage is an error naming the line. A journal has one writer at a
/// time: it is locked (`flock`) while open, and opening it again fails with
/// [`EventsError::Locked`]. Readers ([`replay`], [`follow`]) take no lock.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    run: Option<RunId>,
    /// Bytes of complete lines on disk (written, maybe not yet fsynced).
    len: u64,
    /// Complete lines on disk.
    lines: u64,
    /// Seq of the last event appended (in `buf` or on disk); 0 when empty.
    last_seq: u64,
    /// Seq of the last event written to the file.
    written_seq: u64,
    /// Seq of the last event known to be fsynced.
    synced_seq: u64,
    /// Serialized lines not yet written.
    buf: Vec<u8>,
    buf_lines: u64,
    buf_since: Option<Instant>,
    batch_window: Duration,
    recovered_torn_bytes: u64,
    /// Sparse seq -> position index (every [`INDEX_STRIDE`] events).
    index: Vec<Position>,
}

impl Journal {
    /// Opens the journal at `path` for appending, creating it (and its parent directories) if
    /// missing. An existing journal is read and validated first; see [`Journal::open_with`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, EventsError> {
        Self::open_with(path, |_| {})
    }

    /// Like [`Journal::open`], handing every event already in the journal to `on_event` (so a
    /// resuming run can fold its [`crate::RunState`] while the journal is validated, reading it
    /// once).
    pub fn open_with(
        path: impl AsRef<Path>,
        mut on_event: impl FnMut(&Event),
    ) -> Result<Self, EventsError> {
        let path = path.as_ref().to_path_buf();
        let existed = path.exists();
        if !existed && let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| EventsError::io("create directory", parent, e))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| EventsError::io("open", &path, e))?;
        // One writer per journal: a second `forge run`/resume on the same run must not
        // interleave lines. The lock goes with the file handle (and with the process).
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(EventsError::Locked { path });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(EventsError::io("lock", &path, e));
            }
        }
        let mut journal = Self {
            path,
            file,
            run: None,
            len: 0,
            lines: 0,
            last_seq: 0,
            written_seq: 0,
            synced_seq: 0,
            buf: Vec::new(),
            buf_lines: 0,
            buf_since: None,
            batch_window: DEFAULT_BATCH_WINDOW,
            recovered_torn_bytes: 0,
            index: Vec::new(),
        };
        if existed {
            journal.recover(&mut on_event)?;
        } else {
            sync_parent_dir(&journal.path)?;
        }
        Ok(journal)
    }

    /// Reads the existing file, checks every complete line and cuts off a torn tail.
    fn recover(&mut self, on_event: &mut dyn FnMut(&Event)) -> Result<(), EventsError> {
        let reader = File::open(&self.path).map_err(|e| EventsError::io("open", &self.path, e))?;
        let mut replay = Replay::new(self.path.clone(), reader, Position::START, 0);
        while let Some(event) = replay.next() {
            let event = event?;
            // The reader checked that every event is of the first one's run.
            if self.run.is_none() {
                self.run = Some(event.run.clone());
            }
            if self.index_due(event.seq) {
                self.index.push(replay.last_line_start);
            }
            on_event(&event);
        }
        self.len = replay.pos.offset;
        self.lines = replay.pos.line - 1;
        self.last_seq = replay.pos.prev_seq;
        self.written_seq = self.last_seq;
        self.synced_seq = self.last_seq;
        let actual = self
            .file
            .metadata()
            .map_err(|e| EventsError::io("read", &self.path, e))?
            .len();
        if actual > self.len {
            self.recovered_torn_bytes = actual - self.len;
            self.file
                .set_len(self.len)
                .map_err(|e| EventsError::io("truncate the torn last line of", &self.path, e))?;
            self.file
                .sync_all()
                .map_err(|e| EventsError::io("sync", &self.path, e))?;
        }
        Ok(())
    }

    fn index_due(&self, seq: u64) -> bool {
        self.index.is_empty()
            || self
                .index
                .last()
                .is_some_and(|p| seq > p.prev_seq + INDEX_STRIDE)
    }

    /// Sets how long batched events may wait before they are written (default
    /// [`DEFAULT_BATCH_WINDOW`]; the issue's bound is 100 ms).
    pub fn set_batch_window(&mut self, window: Duration) {
        self.batch_window = window;
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The run whose events the journal holds, once it holds any.
    pub fn run(&self) -> Option<&RunId> {
        self.run.as_ref()
    }

    /// Seq of the last event appended (0 for an empty journal).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Seq of the last event known to be on disk and fsynced.
    pub fn synced_seq(&self) -> u64 {
        self.synced_seq
    }

    /// How many bytes of a torn last line [`Journal::open`] cut off (0 if the file was whole).
    pub fn recovered_torn_bytes(&self) -> u64 {
        self.recovered_torn_bytes
    }

    /// When the oldest batched, unwritten event was appended, if any is waiting.
    pub fn pending_since(&self) -> Option<Instant> {
        self.buf_since
    }

    /// Appends `event` under the durability policy: a transition is written and fsynced (with
    /// every batched event before it) before this returns; other events are batched.
    ///
    /// Events must come in increasing `seq` order and all belong to one run. If writing fails,
    /// the event stays batched (nothing is lost) and the error is returned; the next write
    /// retries.
    pub fn append(&mut self, event: &Event) -> Result<(), EventsError> {
        self.push(event)?;
        if event.is_transition() {
            self.sync()
        } else if self.buf.len() >= MAX_BATCH_BYTES
            || self
                .buf_since
                .is_some_and(|since| since.elapsed() >= self.batch_window)
        {
            self.flush()
        } else {
            Ok(())
        }
    }

    /// Adds `event` to the batch without writing anything.
    pub(crate) fn push(&mut self, event: &Event) -> Result<(), EventsError> {
        if event.seq <= self.last_seq {
            return Err(EventsError::OutOfOrder {
                path: self.path.clone(),
                seq: event.seq,
                last_seq: self.last_seq,
            });
        }
        match &self.run {
            Some(run) if *run != event.run => {
                return Err(EventsError::RunMismatch {
                    path: self.path.clone(),
                    expected: run.to_string(),
                    found: event.run.to_string(),
                });
            }
            Some(_) => {}
            None => self.run = Some(event.run.clone()),
        }
        if self.index_due(event.seq) {
            self.index.push(Position {
                offset: self.len + self.buf.len() as u64,
                line: self.lines + self.buf_lines + 1,
                prev_seq: self.last_seq,
            });
        }
        event.write_json(&mut self.buf);
        self.buf.push(b'\n');
        self.buf_lines += 1;
        self.buf_since.get_or_insert_with(Instant::now);
        self.last_seq = event.seq;
        Ok(())
    }

    /// Writes every batched event to the file (one `write(2)`), without fsync. On failure the
    /// file is cut back to its last complete line and the batch is kept.
    pub fn flush(&mut self) -> Result<(), EventsError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.file.write_all(&self.buf) {
            // Never leave half a batch behind: a later append would follow a torn line.
            let _ = self.file.set_len(self.len);
            return Err(EventsError::io("append to", &self.path, e));
        }
        self.len += self.buf.len() as u64;
        self.lines += self.buf_lines;
        self.buf.clear();
        self.buf_lines = 0;
        self.buf_since = None;
        self.written_seq = self.last_seq;
        Ok(())
    }

    /// Writes every batched event and fsyncs the file.
    pub fn sync(&mut self) -> Result<(), EventsError> {
        self.flush()?;
        if self.synced_seq < self.written_seq {
            self.file
                .sync_data()
                .map_err(|e| EventsError::io("sync", &self.path, e))?;
            self.synced_seq = self.written_seq;
        }
        Ok(())
    }

    /// Where a reader looking for `from_seq` can start: the last indexed line at or before it.
    pub(crate) fn seek_hint(&self, from_seq: u64) -> Position {
        seek_hint(&self.index, from_seq)
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // Best effort: the owner had its chance to see errors through `sync`.
        let _ = self.sync();
    }
}

/// The last indexed line start at or before the event `from_seq`.
pub(crate) fn seek_hint(index: &[Position], from_seq: u64) -> Position {
    let i = index.partition_point(|p| p.prev_seq < from_seq);
    i.checked_sub(1)
        .and_then(|i| index.get(i))
        .copied()
        .unwrap_or(Position::START)
}

/// Fsyncs the directory holding `path`, so a newly created file's entry survives a crash.
fn sync_parent_dir(path: &Path) -> Result<(), EventsError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match File::open(parent).and_then(|dir| dir.sync_all()) {
        Ok(()) => Ok(()),
        // Some file systems do not support fsync on directories; the file itself is fine.
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => Ok(()),
        Err(e) => Err(EventsError::io("sync directory", parent, e)),
    }
}

/// Reads the events of the journal at `path` with `seq >= from_seq`, in order.
///
/// A torn last line is ignored; any other damaged line ends the iteration with
/// [`EventsError::Corrupt`] naming its line. Lines before `from_seq` are only checked to be JSON
/// with a `seq`, not parsed whole.
///
/// ```
/// # use forge_events::{Journal, Event, EventKind, RunId};
/// # let dir = tempfile::tempdir()?;
/// let path = dir.path().join("events.jsonl");
/// let run: RunId = "r1".parse()?;
/// let mut journal = Journal::open(&path)?;
/// for seq in 1..=3 {
///     let kind = EventKind::GateStarted { command: format!("step {seq}") };
///     journal.append(&Event::new(run.clone(), seq, None, kind))?;
/// }
/// journal.sync()?;
/// let seqs: Vec<u64> = forge_events::replay(&path, 2)?.map(|e| e.map(|e| e.seq)).collect::<Result<_, _>>()?;
/// assert_eq!(seqs, [2, 3]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn replay(path: impl AsRef<Path>, from_seq: u64) -> Result<Replay<File>, EventsError> {
    let path = path.as_ref().to_path_buf();
    let file = File::open(&path).map_err(|e| EventsError::io("open", &path, e))?;
    Ok(Replay::new(path, file, Position::START, from_seq))
}

/// Reads every event of the journal at `path` (see [`replay`]).
pub fn read_journal(path: impl AsRef<Path>) -> Result<Vec<Event>, EventsError> {
    replay(path, 0)?.collect()
}

/// Reads the events in `bytes` (the contents of a journal): what [`replay`] does for a file.
/// `name` is used in errors. Useful for journals held in memory and for fuzzing.
pub fn read_journal_bytes(name: &Path, bytes: &[u8]) -> Result<Vec<Event>, EventsError> {
    Replay::new(name.to_path_buf(), bytes, Position::START, 0).collect()
}

/// An iterator over a journal's events (see [`replay`]).
#[derive(Debug)]
pub struct Replay<R> {
    path: PathBuf,
    reader: BufReader<R>,
    from_seq: u64,
    /// Position after the last complete line read.
    pos: Position,
    /// Position of the start of the last line returned.
    last_line_start: Position,
    line: Vec<u8>,
    done: bool,
    /// A sparse index of line starts, when asked for (see [`Replay::with_index`]).
    index: Option<Vec<Position>>,
    /// The run of the first event read: every other must match.
    run: Option<RunId>,
}

/// Just the seq of a line, for skipping lines before `from_seq` cheaply.
#[derive(Deserialize)]
struct SeqOnly {
    seq: u64,
}

impl<R: Read> Replay<R> {
    pub(crate) fn new(path: PathBuf, reader: R, pos: Position, from_seq: u64) -> Self {
        Self {
            path,
            reader: BufReader::with_capacity(64 * 1024, reader),
            from_seq,
            pos,
            last_line_start: pos,
            line: Vec::new(),
            done: false,
            index: None,
            run: None,
        }
    }

    /// Also records a sparse index of line starts (one per [`INDEX_STRIDE`] events).
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn with_index(mut self) -> Self {
        self.index = Some(Vec::new());
        self
    }

    /// The sparse index recorded so far.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn take_index(&mut self) -> Vec<Position> {
        self.index.take().unwrap_or_default()
    }

    /// Position after the last complete line read.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn position(&self) -> Position {
        self.pos
    }

    fn note_line(&mut self, start: Position) {
        if let Some(index) = &mut self.index
            && index
                .last()
                .is_none_or(|p| start.prev_seq >= p.prev_seq + INDEX_STRIDE)
        {
            index.push(start);
        }
    }

    fn corrupt(&mut self, line: u64, reason: String) -> Result<Event, EventsError> {
        self.done = true;
        Err(EventsError::Corrupt {
            path: self.path.clone(),
            line,
            reason,
        })
    }

    /// The seq of the last event read, or of the last event before the start position.
    pub fn last_seq(&self) -> u64 {
        self.pos.prev_seq
    }
}

impl<R: Read + Seek> Replay<R> {
    /// Starts reading at `pos` (a line start found through a sparse index).
    pub(crate) fn at(
        path: PathBuf,
        mut reader: R,
        pos: Position,
        from_seq: u64,
    ) -> Result<Self, EventsError> {
        reader
            .seek(SeekFrom::Start(pos.offset))
            .map_err(|e| EventsError::io("read", &path, e))?;
        Ok(Self::new(path, reader, pos, from_seq))
    }
}

impl<R: Read> Iterator for Replay<R> {
    type Item = Result<Event, EventsError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            self.line.clear();
            let n = match self.reader.read_until(b'\n', &mut self.line) {
                Ok(n) => n,
                Err(e) => {
                    self.done = true;
                    return Some(Err(EventsError::io("read", &self.path, e)));
                }
            };
            if n == 0 || self.line.last() != Some(&b'\n') {
                // End of file, possibly after a torn last line: ignored (the writer never
                // acknowledged it).
                self.done = true;
                return None;
            }
            let line_no = self.pos.line;
            let start = self.pos;
            self.pos.offset += n as u64;
            self.pos.line += 1;
            let text = match std::str::from_utf8(&self.line[..n - 1]) {
                Ok(text) => text,
                Err(e) => return Some(self.corrupt(line_no, format!("not UTF-8: {e}"))),
            };
            if text.trim().is_empty() {
                continue;
            }
            let prev = self.pos.prev_seq;
            if self.from_seq > prev + 1 {
                // Still before from_seq: check the seq only.
                let seq = match serde_json::from_str::<SeqOnly>(text) {
                    Ok(head) => head.seq,
                    Err(e) => return Some(self.corrupt(line_no, e.to_string())),
                };
                if seq <= prev {
                    return Some(
                        self.corrupt(line_no, format!("seq {seq} does not follow seq {prev}")),
                    );
                }
                if seq < self.from_seq {
                    self.note_line(start);
                    self.pos.prev_seq = seq;
                    continue;
                }
            }
            let event = match Event::from_json(text) {
                Ok(event) => event,
                Err(e) => return Some(self.corrupt(line_no, e.to_string())),
            };
            match &self.run {
                Some(run) if *run != event.run => {
                    let reason =
                        format!("event of run `{}` in a journal of run `{run}`", event.run);
                    return Some(self.corrupt(line_no, reason));
                }
                Some(_) => {}
                None => self.run = Some(event.run.clone()),
            }
            if event.seq <= prev {
                return Some(self.corrupt(
                    line_no,
                    format!("seq {} does not follow seq {prev}", event.seq),
                ));
            }
            self.note_line(start);
            self.pos.prev_seq = event.seq;
            self.last_line_start = start;
            if event.seq >= self.from_seq {
                return Some(Ok(event));
            }
        }
        None
    }
}

/// Follows a journal as it grows (`tail -f`), for `forge status --follow` and the SSE server.
///
/// Created by [`follow`]. Reads what is in the file, then polls for appended lines; a line
/// being written (no newline yet) is left until it is complete. Cancel-safe: dropping a
/// [`Follow::next`] future loses nothing.
#[derive(Debug)]
pub struct Follow {
    path: PathBuf,
    file: File,
    pos: Position,
    from_seq: u64,
    poll: Duration,
    /// Events read but not yet returned, with the position of their line.
    queue: std::collections::VecDeque<(Position, Event)>,
}

/// Follows the journal at `path` from `from_seq` (see [`Follow`]). The file must exist.
pub fn follow(path: impl AsRef<Path>, from_seq: u64) -> Result<Follow, EventsError> {
    Follow::starting_at(path.as_ref().to_path_buf(), Position::START, from_seq)
}

/// The default interval at which [`Follow`] looks for new lines.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Most bytes [`Follow`] reads in one step, so catching up on a long journal stays responsive.
const FOLLOW_CHUNK: u64 = 1024 * 1024;

impl Follow {
    pub(crate) fn starting_at(
        path: PathBuf,
        pos: Position,
        from_seq: u64,
    ) -> Result<Self, EventsError> {
        let file = File::open(&path).map_err(|e| EventsError::io("open", &path, e))?;
        Ok(Self {
            path,
            file,
            pos,
            from_seq,
            poll: DEFAULT_POLL_INTERVAL,
            queue: std::collections::VecDeque::new(),
        })
    }

    /// Sets how often the file is checked for new lines (default [`DEFAULT_POLL_INTERVAL`]).
    #[must_use]
    pub fn poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// The seq of the last event read from the file.
    pub fn last_seq(&self) -> u64 {
        self.pos.prev_seq
    }

    /// The next event, waiting for it to be appended if need be.
    pub async fn next(&mut self) -> Result<Event, EventsError> {
        self.next_positioned().await.map(|(_, event)| event)
    }

    /// The next event and where its line starts.
    pub(crate) async fn next_positioned(&mut self) -> Result<(Position, Event), EventsError> {
        loop {
            if self.queue.is_empty() {
                self.read_available()?;
            }
            if let Some(next) = self.queue.pop_front() {
                return Ok(next);
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// The next event if one is in the file now, without waiting. Reads the file (blocking I/O
    /// of at most 1 `MiB`).
    pub fn try_next(&mut self) -> Result<Option<Event>, EventsError> {
        if self.queue.is_empty() {
            self.read_available()?;
        }
        Ok(self.queue.pop_front().map(|(_, event)| event))
    }

    /// Every event in the file now, without waiting (may be called repeatedly).
    pub fn drain(&mut self) -> Result<Vec<Event>, EventsError> {
        let mut out: Vec<Event> = self.queue.drain(..).map(|(_, e)| e).collect();
        loop {
            let before = self.pos.offset;
            self.read_available()?;
            out.extend(self.queue.drain(..).map(|(_, e)| e));
            if self.pos.offset == before {
                return Ok(out);
            }
        }
    }

    fn read_available(&mut self) -> Result<(), EventsError> {
        let len = self
            .file
            .metadata()
            .map_err(|e| EventsError::io("read", &self.path, e))?
            .len();
        if len < self.pos.offset {
            return Err(EventsError::Corrupt {
                path: self.path.clone(),
                line: self.pos.line,
                reason: format!(
                    "the journal shrank to {len} bytes while being followed at byte {}",
                    self.pos.offset
                ),
            });
        }
        if len == self.pos.offset {
            return Ok(());
        }
        let want = (len - self.pos.offset).min(FOLLOW_CHUNK);
        let mut chunk = Vec::with_capacity(usize::try_from(want).unwrap_or(0));
        (&self.file)
            .seek(SeekFrom::Start(self.pos.offset))
            .and_then(|_| (&self.file).take(want).read_to_end(&mut chunk))
            .map_err(|e| EventsError::io("read", &self.path, e))?;
        // Only complete lines; a longer line than one chunk is read whole.
        let complete = match memchr_last_newline(&chunk) {
            Some(i) => i + 1,
            None if want < len - self.pos.offset => {
                chunk.clear();
                (&self.file)
                    .seek(SeekFrom::Start(self.pos.offset))
                    .and_then(|_| {
                        let mut r = BufReader::new(&self.file);
                        r.read_until(b'\n', &mut chunk)
                    })
                    .map_err(|e| EventsError::io("read", &self.path, e))?;
                if chunk.last() == Some(&b'\n') {
                    chunk.len()
                } else {
                    0
                }
            }
            None => 0,
        };
        if complete == 0 {
            return Ok(());
        }
        let mut replay = Replay::new(
            self.path.clone(),
            &chunk[..complete],
            self.pos,
            self.from_seq,
        );
        let mut good = self.pos;
        while let Some(event) = replay.next() {
            match event {
                Ok(event) => {
                    self.queue.push_back((replay.last_line_start, event));
                    good = replay.pos;
                }
                Err(e) => {
                    // Deliver what came before the damage; the next read stops at it again.
                    self.pos = good;
                    return if self.queue.is_empty() {
                        Err(e)
                    } else {
                        Ok(())
                    };
                }
            }
        }
        self.pos = replay.pos;
        Ok(())
    }
}

fn memchr_last_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().rposition(|&b| b == b'\n')
}
