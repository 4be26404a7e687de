//! Folded run states kept between requests, and the runs overview built from them.
//!
//! `GET /api/runs/{id}` and `GET /api/overview` need a run's [`RunState`]. Folding a whole
//! journal per request would cost the journal's size every time the dashboard polls, so each
//! run's fold is kept with the journal position it reached and only the lines appended since
//! are read. A journal that shrank or was replaced (another inode) is folded again from the
//! start. Finished runs are listed from their `run_finished` line alone, without a fold.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::Timestamp;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::journal::{Position, Replay};
use crate::runs::RunInfo;
use crate::{
    Event, EventBus, EventKind, EventsError, RunId, RunPhase, RunState, RunSummary, TaskCounts,
};

/// One run as the dashboard's runs list shows it: what [`RunInfo`] reads from the journal's
/// first and last lines, plus the run's phase, task counts and conflicts.
///
/// Served as JSON by `GET /api/overview` (the [`RunInfo`] fields flattened into the object).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunOverview {
    /// The run's id, journal, plan, start, last seq and final status.
    #[serde(flatten)]
    pub info: RunInfo,
    /// Where the run is (from its fold, or from `run_finished` once it ended).
    pub phase: RunPhase,
    /// Tasks per phase. For a finished run, the totals of its `run_finished` summary.
    pub counts: TaskCounts,
    /// Merge conflicts met so far (resolved or not).
    pub conflicts: u32,
    /// When the run finished.
    pub finished_at: Option<Timestamp>,
    /// Wall time of a finished run in milliseconds (from its summary).
    pub duration_ms: Option<u64>,
    /// Why the run's journal could not be read, if it could not (the other fields then hold
    /// what [`RunInfo`] found).
    pub error: Option<String>,
}

impl RunOverview {
    /// The overview of a finished run, from the event that ended it.
    fn finished(info: RunInfo, last: &Event) -> Option<Self> {
        let EventKind::RunFinished { status, summary } = &last.kind else {
            return None;
        };
        Some(Self {
            counts: counts_of(summary, info.tasks),
            phase: (*status).into(),
            conflicts: summary.conflicts,
            finished_at: Some(last.ts),
            duration_ms: Some(summary.duration_ms),
            error: None,
            info,
        })
    }

    /// The overview of a run from its fold.
    fn folded(info: RunInfo, state: &RunState) -> Self {
        Self {
            phase: state.phase,
            counts: state.counts,
            conflicts: u32::try_from(state.conflicts.len()).unwrap_or(u32::MAX),
            finished_at: state.finished_at,
            duration_ms: state.summary.as_ref().map(|s| s.duration_ms),
            error: None,
            info,
        }
    }

    /// A run whose journal could not be folded.
    fn failed(info: RunInfo, error: &EventsError) -> Self {
        Self {
            phase: info.status.map_or(RunPhase::Pending, RunPhase::from),
            counts: TaskCounts {
                total: info.tasks.unwrap_or(0),
                ..TaskCounts::default()
            },
            conflicts: 0,
            finished_at: None,
            duration_ms: None,
            error: Some(error.to_string()),
            info,
        }
    }
}

fn counts_of(summary: &RunSummary, planned: Option<u32>) -> TaskCounts {
    let finished = summary.succeeded
        + summary.failed
        + summary.timed_out
        + summary.cancelled
        + summary.skipped;
    TaskCounts {
        total: planned.unwrap_or(0).max(finished),
        succeeded: summary.succeeded,
        failed: summary.failed,
        timed_out: summary.timed_out,
        cancelled: summary.cancelled,
        skipped: summary.skipped,
        ..TaskCounts::default()
    }
}

/// Where a run's events come from.
#[derive(Clone)]
pub(super) enum Source {
    /// A run of this process.
    Bus(EventBus),
    /// A journal, possibly being written by another process.
    File(PathBuf),
}

/// Folds kept at most: the least recently used is dropped beyond this.
const MAX_FOLDS: usize = 64;

/// The folds of the runs asked about recently.
#[derive(Default)]
pub(super) struct Folds {
    map: Mutex<FoldMap>,
}

#[derive(Default)]
struct FoldMap {
    folds: HashMap<RunId, (u64, Arc<Mutex<Fold>>)>,
    clock: u64,
}

impl Folds {
    /// The run's current state: its kept fold, brought up to date. Blocking (reads the journal).
    pub(super) fn state<T>(
        &self,
        run: &RunId,
        source: &Source,
        with: impl FnOnce(&RunState) -> T,
    ) -> Result<T, EventsError> {
        let fold = {
            let mut map = self.map.lock();
            map.clock += 1;
            let now = map.clock;
            match map.folds.get_mut(run) {
                Some((used, fold)) => {
                    *used = now;
                    Arc::clone(fold)
                }
                None => {
                    let fold = Arc::new(Mutex::new(Fold::default()));
                    map.folds.insert(run.clone(), (now, Arc::clone(&fold)));
                    if map.folds.len() > MAX_FOLDS
                        && let Some(oldest) = map
                            .folds
                            .iter()
                            .min_by_key(|(_, (used, _))| *used)
                            .map(|(id, _)| id.clone())
                    {
                        map.folds.remove(&oldest);
                    }
                    fold
                }
            }
        };
        let mut fold = fold.lock();
        match source {
            Source::File(path) => fold.refresh_file(path)?,
            Source::Bus(bus) => fold.refresh_bus(bus)?,
        }
        Ok(with(&fold.state))
    }

    /// Forgets the fold of `run` (a finished run is listed from its last line instead).
    pub(super) fn forget(&self, run: &RunId) {
        self.map.lock().folds.remove(run);
    }

    /// The overview of one listed run. Blocking.
    pub(super) fn overview(&self, info: RunInfo, source: &Source) -> RunOverview {
        if info.status.is_some()
            && let Source::File(path) = source
            && let Ok(Some(last)) = last_event(path)
            && let Some(overview) = RunOverview::finished(info.clone(), &last)
        {
            self.forget(&info.id);
            return overview;
        }
        let run = info.id.clone();
        match self.state(&run, source, |state| {
            RunOverview::folded(info.clone(), state)
        }) {
            Ok(overview) => overview,
            Err(e) => RunOverview::failed(info, &e),
        }
    }
}

/// One run's fold and how far into its journal it got.
struct Fold {
    state: RunState,
    /// Position after the last journal line folded.
    pos: Position,
    /// Identity of the journal file folded (device, inode).
    file: Option<(u64, u64)>,
}

impl Default for Fold {
    fn default() -> Self {
        Self {
            state: RunState::new(),
            pos: Position::START,
            file: None,
        }
    }
}

impl Fold {
    fn refresh_file(&mut self, path: &Path) -> Result<(), EventsError> {
        let file = File::open(path).map_err(|e| EventsError::io("open", path, e))?;
        let meta = file
            .metadata()
            .map_err(|e| EventsError::io("read", path, e))?;
        let id = Some(file_identity(&meta));
        if id != self.file || meta.len() < self.pos.offset {
            *self = Self {
                file: id,
                ..Self::default()
            };
        }
        if meta.len() == self.pos.offset {
            return Ok(());
        }
        let mut replay = Replay::at(
            path.to_path_buf(),
            file,
            self.pos,
            self.pos.prev_seq.saturating_add(1),
        )?;
        for event in &mut replay {
            // Events already folded are ignored by `apply`, so an error part-way loses nothing:
            // the next refresh starts from the last position reached without error.
            self.state.apply(&event?);
        }
        self.pos = replay.position();
        Ok(())
    }

    fn refresh_bus(&mut self, bus: &EventBus) -> Result<(), EventsError> {
        let last = bus.last_seq();
        if last > self.state.last_seq {
            for event in bus.events(self.state.last_seq + 1, last)? {
                self.state.apply(&event);
            }
        }
        Ok(())
    }
}

#[cfg(unix)]
fn file_identity(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

/// Elsewhere a replaced journal is noticed only when it is shorter.
#[cfg(not(unix))]
fn file_identity(_meta: &std::fs::Metadata) -> (u64, u64) {
    (0, 0)
}

/// The last complete event of the journal at `path`, read from its end (windows of growing
/// size, so a long last line is still found).
pub(super) fn last_event(path: &Path) -> Result<Option<Event>, EventsError> {
    let mut file = File::open(path).map_err(|e| EventsError::io("open", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| EventsError::io("read", path, e))?
        .len();
    let mut window: u64 = 4096;
    loop {
        let start = len.saturating_sub(window);
        let mut tail = Vec::new();
        file.seek(SeekFrom::Start(start))
            .and_then(|_| (&mut file).take(len - start).read_to_end(&mut tail))
            .map_err(|e| EventsError::io("read", path, e))?;
        // The last complete line: after the newline before the last one.
        let Some(end) = tail.iter().rposition(|&b| b == b'\n') else {
            if start == 0 {
                return Ok(None);
            }
            window = window.saturating_mul(8);
            continue;
        };
        match tail[..end].iter().rposition(|&b| b == b'\n') {
            Some(i) => return Ok(parse_line(&tail[i + 1..end])),
            None if start == 0 => return Ok(parse_line(&tail[..end])),
            None => window = window.saturating_mul(8),
        }
    }
}

fn parse_line(line: &[u8]) -> Option<Event> {
    Event::from_json(std::str::from_utf8(line).ok()?).ok()
}
