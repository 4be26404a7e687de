//! Finding runs under a `.forge/runs` directory without reading whole journals.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{Event, EventKind, EventsError, RunId, RunStatus};

pub use crate::layout::JOURNAL_FILE;

/// How far from the end of a journal [`run_info`] looks for its last event.
const TAIL_WINDOW: u64 = 256 * 1024;

/// What a runs listing shows about one run: read from the first and last lines of its journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The run.
    pub id: RunId,
    /// Its journal.
    pub journal: PathBuf,
    /// Size of the journal in bytes.
    pub bytes: u64,
    /// When the journal was last written.
    pub modified: Option<Timestamp>,
    /// The plan's name, from `run_started`.
    pub plan: Option<String>,
    /// Tasks in the plan, from `run_started`.
    pub tasks: Option<u32>,
    /// When the run started.
    pub started_at: Option<Timestamp>,
    /// Seq of its last event.
    pub last_seq: u64,
    /// Time of its last event.
    pub updated_at: Option<Timestamp>,
    /// How it ended: from its last `run_finished`, unless a `run_started` (a resume) came
    /// after it. Events that follow the end (`apply_finished`) do not change it.
    pub status: Option<RunStatus>,
}

/// The journal path of `run` under `runs_dir` (`<runs_dir>/<run>/events.jsonl`).
pub fn journal_path(runs_dir: &Path, run: &RunId) -> PathBuf {
    crate::layout::RunDir::new(runs_dir, run).journal()
}

/// Every run under `runs_dir` (directories whose name is a valid run id and that hold an
/// `events.jsonl`), most recently written first. A missing `runs_dir` is an empty list; a journal
/// whose first or last line is damaged is listed with what could be read.
pub fn list_runs(runs_dir: &Path) -> Result<Vec<RunInfo>, EventsError> {
    let entries = match std::fs::read_dir(runs_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(EventsError::io("list", runs_dir, e)),
    };
    let mut runs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| EventsError::io("list", runs_dir, e))?;
        let Some(id) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<RunId>().ok())
        else {
            continue;
        };
        let journal = entry.path().join(JOURNAL_FILE);
        if !journal.is_file() {
            continue;
        }
        runs.push(run_info(id, &journal)?);
    }
    runs.sort_by(|a, b| b.modified.cmp(&a.modified).then_with(|| a.id.cmp(&b.id)));
    Ok(runs)
}

/// Reads what [`RunInfo`] shows from the journal of `id` at `journal`.
pub fn run_info(id: RunId, journal: &Path) -> Result<RunInfo, EventsError> {
    let mut file = File::open(journal).map_err(|e| EventsError::io("open", journal, e))?;
    let meta = file
        .metadata()
        .map_err(|e| EventsError::io("read", journal, e))?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|m| Timestamp::try_from(m).ok());
    let mut info = RunInfo {
        id,
        journal: journal.to_path_buf(),
        bytes: meta.len(),
        modified,
        plan: None,
        tasks: None,
        started_at: None,
        last_seq: 0,
        updated_at: None,
        status: None,
    };
    let mut first = Vec::new();
    BufReader::new(&mut file)
        .read_until(b'\n', &mut first)
        .map_err(|e| EventsError::io("read", journal, e))?;
    if let Some(event) = complete_event(&first)
        && let EventKind::RunStarted { plan, tasks, .. } = &event.kind
    {
        info.plan = Some(plan.clone());
        info.tasks = Some(*tasks);
        info.started_at = Some(event.ts);
    }
    let start = meta.len().saturating_sub(TAIL_WINDOW);
    let mut tail = Vec::new();
    file.seek(SeekFrom::Start(start))
        .and_then(|_| file.take(TAIL_WINDOW).read_to_end(&mut tail))
        .map_err(|e| EventsError::io("read", journal, e))?;
    // The complete lines of the tail (the first may be cut when the tail does not start the file).
    let Some(end) = tail.iter().rposition(|&b| b == b'\n') else {
        return Ok(info);
    };
    let mut lines = tail[..=end].split_inclusive(|&b| b == b'\n');
    if start > 0 {
        lines.next();
    }
    // The last event dates the run; the last run-level start or end says where it is (only
    // lines naming one are parsed).
    let lines: Vec<&[u8]> = lines.collect();
    for (i, line) in lines.iter().enumerate() {
        let last = i + 1 == lines.len();
        if !last && !mentions(line, b"\"run_finished\"") && !mentions(line, b"\"run_started\"") {
            continue;
        }
        let Some(event) = complete_event(line) else {
            continue;
        };
        if last {
            info.last_seq = event.seq;
            info.updated_at = Some(event.ts);
        }
        match event.kind {
            EventKind::RunFinished { status, .. } => info.status = Some(status),
            EventKind::RunStarted { .. } => info.status = None,
            _ => {}
        }
    }
    Ok(info)
}

/// Whether `needle` occurs in `line`.
fn mentions(line: &[u8], needle: &[u8]) -> bool {
    line.windows(needle.len()).any(|w| w == needle)
}

fn complete_event(line: &[u8]) -> Option<Event> {
    let line = line.strip_suffix(b"\n")?;
    Event::from_json(std::str::from_utf8(line).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RunSummary;

    fn line(run: &RunId, seq: u64, kind: EventKind) -> String {
        let mut text = Event::new(run.clone(), seq, None, kind).to_json();
        text.push('\n');
        text
    }

    #[test]
    fn the_status_is_the_last_start_or_end_not_the_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let run: RunId = "r-1".parse().unwrap();
        let path = dir.path().join(JOURNAL_FILE);
        let started = EventKind::RunStarted {
            plan: "p".into(),
            plan_hash: "h".into(),
            tasks: 1,
            concurrency: 1,
            base: "head".into(),
        };
        let mut text = line(&run, 1, started.clone());
        text.push_str(&line(
            &run,
            2,
            EventKind::RunFinished {
                status: RunStatus::Succeeded,
                summary: RunSummary::default(),
            },
        ));
        // An apply after the run's end does not make it unfinished.
        text.push_str(&line(
            &run,
            3,
            EventKind::ApplyFinished {
                target: "worktree".into(),
                files: vec!["a".into()],
                conflicts: vec![],
                branch: None,
                commit: None,
                tasks: vec![],
            },
        ));
        std::fs::write(&path, &text).unwrap();
        let info = run_info(run.clone(), &path).unwrap();
        assert_eq!(info.status, Some(RunStatus::Succeeded));
        assert_eq!(info.last_seq, 3);
        // A resume starts it again.
        text.push_str(&line(&run, 4, started));
        std::fs::write(&path, &text).unwrap();
        assert_eq!(run_info(run, &path).unwrap().status, None);
    }
}
