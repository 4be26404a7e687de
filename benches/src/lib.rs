//! Shared plumbing for Forge's benchmarks (see `shared/BENCHMARKS.md` and `benches/README.md`).
//!
//! Each area (`locks`, `events`, `staging`, `merge`, `sched`, `e2e`) is a binary `bench-<area>`
//! that measures Forge side by side with a peer in the same process run, prints a table and
//! writes `target/bench/<area>.json`. This library holds what they share: the [`Report`] and
//! [`Row`] written to JSON, medians, machine description and memory readings.

// Benchmarks report to the terminal.
#![allow(clippy::print_stdout)]

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

/// Which direction of a figure is an improvement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    /// Throughputs: ops/s, checks/s.
    Higher,
    /// Times and memory.
    Lower,
}

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Stable id named by the issue that asked for it, e.g. `uncontended_acquire_release`.
    pub id: String,
    /// Forge's figure.
    pub value: f64,
    /// Unit of `value` (`ops/s`, `ms`, `bytes`, `ratio`, …).
    pub unit: String,
    /// Which direction is better.
    pub better: Better,
    /// The peer measured in the same run, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The peer's figure in the same unit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_value: Option<f64>,
    /// Ours over the peer's, oriented so that > 1 means Forge is better.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// How many repetitions `value` is the median of.
    pub median_of: usize,
    /// The goal stated in the issue, as text (e.g. `>= 1000000`), for the table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goal: Option<String>,
    /// Extra figures of this row (e.g. `p50_ms`, `delivered_pct`).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Row {
    /// A row without a peer.
    pub fn new(id: &str, value: f64, unit: &str, better: Better, median_of: usize) -> Self {
        Self {
            id: id.to_owned(),
            value,
            unit: unit.to_owned(),
            better,
            peer: None,
            peer_value: None,
            ratio: None,
            median_of,
            goal: None,
            extra: serde_json::Map::new(),
        }
    }

    /// Adds the peer's figure and computes the ratio in the "> 1 is better" direction.
    #[must_use]
    pub fn peer(mut self, name: &str, peer_value: f64) -> Self {
        self.peer = Some(name.to_owned());
        self.peer_value = Some(peer_value);
        self.ratio = Some(match self.better {
            Better::Higher => self.value / peer_value,
            Better::Lower => peer_value / self.value,
        });
        self
    }

    /// Records the goal the issue states for this row.
    #[must_use]
    pub fn goal(mut self, goal: &str) -> Self {
        self.goal = Some(goal.to_owned());
        self
    }

    /// Adds an extra named figure.
    #[must_use]
    pub fn extra(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }
}

/// The result of one benchmark binary run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The area, e.g. `locks`.
    pub area: String,
    /// Whether this was a `--quick` run.
    pub quick: bool,
    /// CPU count and kernel, e.g. `2 cpus, Linux 6.18`.
    pub machine: String,
    /// The figures.
    pub rows: Vec<Row>,
}

impl Report {
    /// An empty report for `area`.
    pub fn new(area: &str, quick: bool) -> Self {
        Self {
            area: area.to_owned(),
            quick,
            machine: machine(),
            rows: Vec::new(),
        }
    }

    /// Adds a row and prints it at once, so long runs show progress.
    pub fn push(&mut self, row: Row) {
        println!("{}", format_row(&row));
        self.rows.push(row);
    }

    /// The report as a human table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "bench-{} ({}, {})\n",
            self.area,
            if self.quick { "quick" } else { "full" },
            self.machine
        );
        for row in &self.rows {
            let _ = writeln!(out, "{}", format_row(row));
        }
        out
    }

    /// Writes `<target>/bench/<area>.json` and returns its path. The target directory is
    /// `$CARGO_TARGET_DIR` if set, else the workspace's `target/`.
    pub fn write(&self) -> std::io::Result<PathBuf> {
        let dir = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(
                || {
                    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                        .join("..")
                        .join("target")
                },
                PathBuf::from,
            )
            .join("bench");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}.json", self.area));
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&path, json + "\n")?;
        Ok(path)
    }
}

fn format_row(row: &Row) -> String {
    let mut line = format!("{:<32} {:>14} {:<8}", row.id, human(row.value), row.unit);
    if let (Some(peer), Some(pv), Some(ratio)) = (&row.peer, row.peer_value, row.ratio) {
        let _ = write!(line, " | {peer}: {} | ratio {ratio:.2}", human(pv));
    }
    if let Some(goal) = &row.goal {
        let _ = write!(line, " | goal {goal}");
    }
    line
}

fn human(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// Whether `--quick` was passed on the command line.
pub fn quick_from_args() -> bool {
    std::env::args().skip(1).any(|a| a == "--quick")
}

/// The median of `samples` (the mean of the middle two for an even count); 0 when empty.
pub fn median(samples: &[f64]) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => f64::midpoint(s[n / 2 - 1], s[n / 2]),
    }
}

/// `N cpus, Linux <release>`.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(
        |_| std::env::consts::OS.to_owned(),
        |r| format!("Linux {}", r.trim()),
    );
    format!("{cpus} cpus, {kernel}")
}

/// A figure from `/proc/self/status` in bytes (`VmRSS` now, `VmHWM` peak), if readable.
fn proc_status_bytes(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// This process's resident set size now, in bytes.
pub fn current_rss_bytes() -> Option<u64> {
    proc_status_bytes("VmRSS:")
}

/// This process's peak resident set size, in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    proc_status_bytes("VmHWM:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_direction() {
        let fast = Row::new("x", 200.0, "ops/s", Better::Higher, 5).peer("p", 100.0);
        assert_eq!(fast.ratio, Some(2.0));
        let quick = Row::new("y", 5.0, "ms", Better::Lower, 5).peer("p", 10.0);
        assert_eq!(quick.ratio, Some(2.0));
    }

    #[test]
    fn medians() {
        assert!((median(&[3.0, 1.0, 2.0]) - 2.0).abs() < f64::EPSILON);
        assert!((median(&[4.0, 1.0, 2.0, 3.0]) - 2.5).abs() < f64::EPSILON);
        assert!(median(&[]).abs() < f64::EPSILON);
    }

    #[test]
    fn json_leaves_out_missing_peer() {
        let row = Row::new("z", 1.0, "ms", Better::Lower, 3).extra("p50_ms", 0.5);
        let json = serde_json::to_value(&row).unwrap();
        assert!(json.get("peer").is_none());
        assert_eq!(json["p50_ms"], 0.5);
        assert_eq!(json["better"], "lower");
    }

    #[test]
    fn memory_readings_exist_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(current_rss_bytes().unwrap() > 0);
            assert!(peak_rss_bytes().unwrap() >= current_rss_bytes().unwrap());
        }
    }
}
