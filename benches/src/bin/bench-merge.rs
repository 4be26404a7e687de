//! bench-merge: the merge queue's three costs, side by side with `git merge-file` where there
//! is a peer.
//!
//! - `merge3_throughput`: MB/s (base + ours + theirs bytes) of clean 3-way text merges of
//!   generated files with scattered edits, in process, against `git merge-file -p` on the same
//!   inputs in the same run (A B A B). git's figure is reported with its process start (as a
//!   merge tool really pays it) and without (its time minus the median time of `git merge-file`
//!   on three empty files); `ratio` uses the latter, `ratio_with_spawn` the former. Every
//!   output is checked equal to git's.
//! - `integrate_100x100`: 100 changesets of 100 files each, 10 % of each changeset's files also
//!   changed by another changeset (in other lines, so they merge cleanly), integrated one after
//!   another; ms.
//! - `apply_10k`: 10,000 changed files applied to a working tree atomically (read and check
//!   each file against the base, temporary files, one `syncfs`, journal, renames, `syncfs`);
//!   ms. `non_atomic_write_ms` is the time to just write as many files in place (which is how
//!   each repetition puts the base back), for scale.
//!
//! `--quick` uses smaller merge inputs and fewer repetitions; the integrate and apply sizes are
//! the full ones in both modes.

#![allow(clippy::print_stdout, clippy::print_stderr)]
// Byte counts and sample counts fit f64's 52-bit mantissa by far.
#![allow(clippy::cast_precision_loss)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use forge_benches::{Better, Report, Row, median, quick_from_args};
use forge_merge::{
    ApplyOptions, GateReport, Integration, IntegrationStatus, TaskId, TextMergeOptions,
    apply_to_worktree, merge_text,
};
use forge_staging::{BaseMode, BaseSnapshot, BlobStore, Change, ChangeSet, Entry, RepoPath};

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let quick = quick_from_args();
    let mut report = Report::new("merge", quick);
    merge3_throughput(quick, &mut report)?;
    integrate_100x100(quick, &mut report)?;
    apply_10k(quick, &mut report)?;
    let path = report.write()?;
    println!("\n{}", report.table());
    println!("wrote {}", path.display());
    Ok(())
}

/// A small deterministic generator (xorshift), so every run merges the same files.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A source-like file of `lines` lines, and two edited versions: every ~`spacing` lines one
/// side replaces, inserts or deletes a line, alternating sides, so edits never touch.
fn generate(lines: usize, spacing: usize, seed: u64) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut rng = Rng(seed | 1);
    let words = [
        "let", "value", "count", "self", "return", "match", "items", "push", "len", "config",
    ];
    let base: Vec<String> = (0..lines)
        .map(|i| {
            let indent = "    ".repeat(usize::try_from(rng.below(3)).unwrap_or(0));
            let mut line = format!("{indent}// {i}:");
            for _ in 0..5 + rng.below(6) {
                let w = words[usize::try_from(rng.below(words.len() as u64)).unwrap_or(0)];
                let _ = write!(line, " {w}");
            }
            line
        })
        .collect();
    let mut ours = Vec::with_capacity(lines);
    let mut theirs = Vec::with_capacity(lines);
    for (i, line) in base.iter().enumerate() {
        let slot = i / spacing;
        let edit_here = i % spacing == spacing / 2;
        let (edited, other) = if slot.is_multiple_of(2) {
            (&mut ours, &mut theirs)
        } else {
            (&mut theirs, &mut ours)
        };
        other.push(line.clone());
        if edit_here {
            match rng.below(3) {
                0 => edited.push(format!("{line} // edited")),
                1 => {
                    edited.push(line.clone());
                    edited.push(format!("    inserted after {i}"));
                }
                _ => {}
            }
        } else {
            edited.push(line.clone());
        }
    }
    let join = |v: &[String]| -> Vec<u8> {
        let mut out = String::with_capacity(v.len() * 48);
        for l in v {
            out.push_str(l);
            out.push('\n');
        }
        out.into_bytes()
    };
    (join(&base), join(&ours), join(&theirs))
}

/// Runs `git merge-file -p ours base theirs` in `dir`; returns its output and the wall time.
fn git_merge_file(dir: &Path) -> Result<(Vec<u8>, f64), Error> {
    let start = Instant::now();
    let out = Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .args(["merge-file", "-p", "ours", "base", "theirs"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()?;
    let secs = start.elapsed().as_secs_f64();
    if out.status.code().is_none_or(|c| c < 0) {
        return Err(format!("git merge-file failed: {}", out.status).into());
    }
    Ok((out.stdout, secs))
}

fn write_triple(dir: &Path, base: &[u8], ours: &[u8], theirs: &[u8]) -> Result<(), Error> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("base"), base)?;
    std::fs::write(dir.join("ours"), ours)?;
    std::fs::write(dir.join("theirs"), theirs)?;
    Ok(())
}

fn merge3_throughput(quick: bool, report: &mut Report) -> Result<(), Error> {
    let (lines, reps) = if quick { (20_000, 7) } else { (80_000, 11) };
    let tmp = tempfile::tempdir()?;
    let inputs = tmp.path().join("inputs");
    let empty = tmp.path().join("empty");
    let (base, ours, theirs) = generate(lines, 40, 7);
    write_triple(&inputs, &base, &ours, &theirs)?;
    write_triple(&empty, b"", b"", b"")?;
    let bytes = (base.len() + ours.len() + theirs.len()) as f64;
    let options = TextMergeOptions::default();

    // Warm up both (page cache, allocator, git's binary).
    let ours_out = merge_text(&base, &ours, &theirs, &options);
    let (git_out, _) = git_merge_file(&inputs)?;
    let equal = ours_out.content == git_out && ours_out.is_clean();

    let (mut ours_s, mut git_s, mut spawn_s) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps {
        let start = Instant::now();
        let m = merge_text(&base, &ours, &theirs, &options);
        ours_s.push(start.elapsed().as_secs_f64());
        std::hint::black_box(m);
        git_s.push(git_merge_file(&inputs)?.1);
        spawn_s.push(git_merge_file(&empty)?.1);
    }
    let (ours_t, git_t, spawn_t) = (median(&ours_s), median(&git_s), median(&spawn_s));
    let git_work = (git_t - spawn_t).max(1e-9);
    let mbps = |secs: f64| bytes / secs / 1e6;
    report.push(
        Row::new(
            "merge3_throughput",
            mbps(ours_t),
            "MB/s",
            Better::Higher,
            reps,
        )
        .peer("git merge-file (spawn excluded)", mbps(git_work))
        .goal(">= 1 (ratio, spawn excluded)")
        .extra("ratio_with_spawn", mbps(ours_t) / mbps(git_t))
        .extra("git_with_spawn_mbps", mbps(git_t))
        .extra("git_spawn_ms", spawn_t * 1e3)
        .extra("input_bytes", bytes)
        .extra("lines", lines as f64)
        .extra("outputs_equal_git", equal),
    );
    if !equal {
        eprintln!("warning: our merge output differs from git merge-file's");
    }
    Ok(())
}

/// A repository directory with `files` (path, content), and its base snapshot and store.
struct Run {
    _tmp: tempfile::TempDir,
    repo: PathBuf,
    dir: PathBuf,
    store: BlobStore,
    base: Arc<BaseSnapshot>,
}

fn make_run(files: &[(String, String)]) -> Result<Run, Error> {
    let tmp = tempfile::tempdir()?;
    let repo = tmp.path().join("repo");
    let run = tmp.path().join("run");
    for (path, content) in files {
        let p = repo.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(p, content)?;
    }
    std::fs::create_dir_all(&run)?;
    let store = BlobStore::open(run.join("objects"))?;
    let base = Arc::new(BaseSnapshot::capture(
        &repo,
        BaseMode::Worktree,
        &run.join("base"),
        &store,
    )?);
    Ok(Run {
        _tmp: tmp,
        repo,
        dir: run,
        store,
        base,
    })
}

fn numbered(prefix: &str, n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        let _ = writeln!(
            s,
            "{prefix} line {i} with some text to make it look like code"
        );
    }
    s
}

/// `text` with line `i` replaced.
fn replace_line(text: &str, i: usize, with: &str) -> String {
    let mut out = String::with_capacity(text.len() + with.len());
    for (k, l) in text.lines().enumerate() {
        out.push_str(if k == i { with } else { l });
        out.push('\n');
    }
    out
}

fn integrate_100x100(quick: bool, report: &mut Report) -> Result<(), Error> {
    const TASKS: usize = 100;
    const PER_TASK: usize = 100;
    const SHARED_PER_TASK: usize = 10;
    let reps = if quick { 3 } else { 5 };
    // Task t owns 90 files and shares 10: shared file j is changed by tasks j/10 and
    // (j/10 + 1) % 100 (one edits line 5, the other line 30).
    let mut files = Vec::new();
    for t in 0..TASKS {
        for k in 0..PER_TASK - SHARED_PER_TASK {
            files.push((format!("t{t}/f{k}.rs"), numbered("own", 40)));
        }
    }
    let shared = TASKS * SHARED_PER_TASK / 2;
    for j in 0..shared {
        files.push((format!("shared/s{j}.rs"), numbered("shared", 40)));
    }
    let run = make_run(&files)?;
    let entry_of = |content: &str| -> Result<Entry, Error> {
        Ok(Entry::file(
            run.store.write(content.as_bytes())?,
            content.len() as u64,
            false,
        ))
    };
    let mut changesets = Vec::new();
    for t in 0..TASKS {
        let mut set = ChangeSet::default();
        for k in 0..PER_TASK - SHARED_PER_TASK {
            let path = format!("t{t}/f{k}.rs");
            let text = replace_line(&numbered("own", 40), 10, &format!("task {t} edit"));
            let before = run.base.manifest().get(&path).cloned().ok_or("missing")?;
            set.insert(
                RepoPath::new(&path)?,
                Change::Modified {
                    before,
                    after: entry_of(&text)?,
                },
            );
        }
        // Shared files: 5 where this task edits line 5, 5 where it edits line 30.
        let mine = (0..SHARED_PER_TASK / 2).map(|k| (t * SHARED_PER_TASK / 2 + k, 5));
        let prev = (t + TASKS - 1) % TASKS;
        let theirs = (0..SHARED_PER_TASK / 2).map(|k| (prev * SHARED_PER_TASK / 2 + k, 30));
        for (j, line) in mine.chain(theirs) {
            let path = format!("shared/s{j}.rs");
            let text = replace_line(&numbered("shared", 40), line, &format!("task {t} edit"));
            let before = run.base.manifest().get(&path).cloned().ok_or("missing")?;
            set.insert(
                RepoPath::new(&path)?,
                Change::Modified {
                    before,
                    after: entry_of(&text)?,
                },
            );
        }
        changesets.push(set);
    }
    let mut samples = Vec::new();
    let (mut merged, mut conflicts) = (0, 0);
    for _ in 0..reps {
        let mut integration = Integration::new(run.base.clone(), run.store.clone());
        let start = Instant::now();
        for (t, set) in changesets.iter().enumerate() {
            let o = integration.integrate(&TaskId::new(format!("t{t}"))?, set, t as u64)?;
            if o.status != IntegrationStatus::Integrated {
                return Err(format!("task {t} did not integrate cleanly: {o}").into());
            }
            merged += o.merged.len();
            conflicts += o.conflicts.len();
        }
        samples.push(start.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(integration.version());
    }
    report.push(
        Row::new(
            "integrate_100x100",
            median(&samples),
            "ms",
            Better::Lower,
            reps,
        )
        .extra("changesets", TASKS as f64)
        .extra("files_per_changeset", PER_TASK as f64)
        .extra("merged_paths_per_run", (merged / reps) as f64)
        .extra("conflicts", conflicts as f64),
    );
    Ok(())
}

fn apply_10k(quick: bool, report: &mut Report) -> Result<(), Error> {
    const FILES: usize = 10_000;
    let reps = if quick { 3 } else { 5 };
    let files: Vec<(String, String)> = (0..FILES)
        .map(|k| {
            (
                format!("d{}/f{k}.txt", k % 100),
                format!("old content {k}\n"),
            )
        })
        .collect();
    let run = make_run(&files)?;
    let mut set = ChangeSet::default();
    for (path, _) in &files {
        let text = format!("new content of {path}\n");
        let before = run.base.manifest().get(path).cloned().ok_or("missing")?;
        let after = Entry::file(run.store.write(text.as_bytes())?, text.len() as u64, false);
        set.insert(RepoPath::new(path)?, Change::Modified { before, after });
    }
    let mut integration = Integration::new(run.base.clone(), run.store.clone());
    integration.integrate(&TaskId::new("all")?, &set, 0)?;
    let (mut samples, mut plain) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let start = Instant::now();
        let applied = apply_to_worktree(
            &integration,
            &ApplyOptions::new(run.dir.join("apply")),
            &GateReport::not_run(),
        )?;
        samples.push(start.elapsed().as_secs_f64() * 1e3);
        if applied.written.len() != FILES {
            return Err(format!("applied {} files, not {FILES}", applied.written.len()).into());
        }
        // Back to the base for the next repetition: the same number of writes, in place,
        // without any of the safety (and timed, for scale).
        let start = Instant::now();
        for (path, content) in &files {
            std::fs::write(run.repo.join(path), content)?;
        }
        plain.push(start.elapsed().as_secs_f64() * 1e3);
    }
    report.push(
        Row::new("apply_10k", median(&samples), "ms", Better::Lower, reps)
            .extra("files", FILES as f64)
            .extra("non_atomic_write_ms", median(&plain)),
    );
    Ok(())
}
