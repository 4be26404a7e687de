//! Test counts from the output of test runners: cargo test, cargo nextest, pytest, go test
//! (`-v` lines and gotestsum), jest, vitest, node's test runner, and the plain
//! `N passed, N failed` line.

use std::fmt;
use std::ops::AddAssign;

use serde::{Deserialize, Serialize};

/// How many tests passed, failed and were skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TestCounts {
    /// Tests that passed.
    pub passed: u64,
    /// Tests that failed (errors and time-outs included).
    pub failed: u64,
    /// Tests that were skipped or ignored.
    pub skipped: u64,
}

impl TestCounts {
    /// Tests that ran: passed and failed.
    pub fn ran(&self) -> u64 {
        self.passed + self.failed
    }
}

impl AddAssign for TestCounts {
    fn add_assign(&mut self, o: Self) {
        self.passed += o.passed;
        self.failed += o.failed;
        self.skipped += o.skipped;
    }
}

impl fmt::Display for TestCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} passed, {} failed", self.passed, self.failed)?;
        if self.skipped > 0 {
            write!(f, ", {} skipped", self.skipped)?;
        }
        Ok(())
    }
}

/// The test counts `output` reports, if a known test runner's summary is in it.
pub fn parse_test_counts(output: &str) -> Option<TestCounts> {
    let mut p = TestCountParser::default();
    for line in output.lines() {
        p.line(line);
    }
    p.finish()
}

/// Reads output line by line and keeps what each runner's summary lines say: the streaming
/// form of [`parse_test_counts`], for a command's output as it comes.
#[derive(Debug, Default)]
pub struct TestCountParser {
    nextest: Option<TestCounts>,
    cargo: Option<TestCounts>,
    pytest: Option<TestCounts>,
    jest: Option<TestCounts>,
    vitest: Option<TestCounts>,
    gotestsum: Option<TestCounts>,
    go_verbose: Option<TestCounts>,
    node: Option<TestCounts>,
    plain: Option<TestCounts>,
}

fn add(slot: &mut Option<TestCounts>, c: TestCounts) {
    *slot.get_or_insert_with(TestCounts::default) += c;
}

impl TestCountParser {
    /// Feeds one line of output (with or without its line ending, colours allowed).
    pub fn line(&mut self, raw: &str) {
        let clean = strip_ansi(raw);
        let line = clean.trim();
        if line.is_empty() {
            return;
        }
        if let Some(rest) = line.strip_prefix("test result: ") {
            if let Some(c) = cargo(rest) {
                add(&mut self.cargo, c);
            }
        } else if let Some(c) = nextest(line) {
            add(&mut self.nextest, c);
        } else if let Some(c) = pytest(line) {
            add(&mut self.pytest, c);
        } else if let Some(rest) = line.strip_prefix("Tests:") {
            if let Some(c) = counted_list(rest.split(','), &["total"]) {
                add(&mut self.jest, c);
            }
        } else if let Some(c) = vitest(line) {
            add(&mut self.vitest, c);
        } else if let Some(rest) = line.strip_prefix("DONE ") {
            if let Some(c) = gotestsum(rest) {
                add(&mut self.gotestsum, c);
            }
        } else if let Some(c) = go_verbose(line) {
            add(&mut self.go_verbose, c);
        } else if let Some(c) = node(line) {
            add(&mut self.node, c);
        } else if let Some(c) = plain(line) {
            add(&mut self.plain, c);
        }
    }

    /// The counts of the most specific runner seen.
    pub fn finish(self) -> Option<TestCounts> {
        self.nextest
            .or(self.cargo)
            .or(self.pytest)
            .or(self.jest)
            .or(self.vitest)
            .or(self.gotestsum)
            .or(self.go_verbose)
            .or(self.node)
            .or(self.plain)
    }
}

/// Removes ANSI escape sequences (colours) from a line.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// `12 passed` → (12, "passed").
fn count_word(item: &str) -> Option<(u64, &str)> {
    let mut words = item.split_whitespace();
    let n = words.next()?.parse().ok()?;
    let word = words.next()?;
    Some((n, word))
}

/// Adds a runner's counted word to `c`; returns false for words it does not know.
fn tally(c: &mut TestCounts, n: u64, word: &str) -> bool {
    match word.trim_end_matches([',', ';', '.']) {
        "passed" | "pass" | "passing" | "xpassed" => c.passed += n,
        "failed" | "fail" | "failing" | "failures" | "failure" | "error" | "errors" | "timed" => {
            c.failed += n;
        }
        "skipped" | "skip" | "ignored" | "pending" | "todo" | "xfailed" | "deselected" => {
            c.skipped += n;
        }
        _ => return false,
    }
    true
}

/// A list of `N word` items; words in `ignore` (such as `total`) are allowed and skipped.
fn counted_list<'a>(items: impl Iterator<Item = &'a str>, ignore: &[&str]) -> Option<TestCounts> {
    let mut c = TestCounts::default();
    let mut any = false;
    for item in items {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let (n, word) = count_word(item)?;
        if ignore.contains(&word) {
            continue;
        }
        if !tally(&mut c, n, word) {
            return None;
        }
        any = true;
    }
    any.then_some(c)
}

/// cargo test: `ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s`.
fn cargo(rest: &str) -> Option<TestCounts> {
    let (_, counts) = rest.split_once(". ")?;
    let mut c = TestCounts::default();
    for item in counts.split(';') {
        if let Some((n, word)) = count_word(item) {
            tally(&mut c, n, word);
        }
    }
    Some(c)
}

/// nextest: `Summary [   0.006s] 12 tests run: 10 passed, 2 failed, 1 skipped`.
fn nextest(line: &str) -> Option<TestCounts> {
    let rest = line.strip_prefix("Summary")?;
    let (_, list) = rest
        .split_once("tests run:")
        .or_else(|| rest.split_once("test run:"))?;
    let mut c = TestCounts::default();
    for item in list.split(',') {
        let (n, word) = count_word(item)?;
        tally(&mut c, n, word);
    }
    Some(c)
}

/// pytest: `===== 3 failed, 12 passed, 2 skipped in 0.52s =====` (or without the rules, `-q`).
fn pytest(line: &str) -> Option<TestCounts> {
    let inner = line.trim_matches('=').trim();
    let (list, time) = inner.rsplit_once(" in ")?;
    let time = time.split_whitespace().next()?;
    if !(time.ends_with('s') && time[..time.len() - 1].parse::<f64>().is_ok()) {
        return None;
    }
    counted_list(list.split(','), &["warning", "warnings", "rerun", "reruns"])
}

/// vitest: `Tests  11 passed | 1 failed (12)`.
fn vitest(line: &str) -> Option<TestCounts> {
    let rest = line.strip_prefix("Tests ")?;
    let list = rest.rsplit_once('(').map_or(rest, |(l, _)| l);
    counted_list(list.split('|'), &[])
}

/// gotestsum: `DONE 12 tests, 1 skipped, 2 failures in 0.512s`.
fn gotestsum(rest: &str) -> Option<TestCounts> {
    let list = rest.rsplit_once(" in ").map_or(rest, |(l, _)| l);
    let mut items = list.split(',');
    let (total, word) = count_word(items.next()?)?;
    if !word.starts_with("test") {
        return None;
    }
    let mut c = counted_list(items, &[]).unwrap_or_default();
    c.passed = total.saturating_sub(c.failed + c.skipped);
    Some(c)
}

/// go test -v: `--- PASS: TestX (0.00s)`, also for subtests (indented).
fn go_verbose(line: &str) -> Option<TestCounts> {
    let rest = line.strip_prefix("--- ")?;
    let mut c = TestCounts::default();
    if rest.starts_with("PASS:") {
        c.passed = 1;
    } else if rest.starts_with("FAIL:") {
        c.failed = 1;
    } else if rest.starts_with("SKIP:") {
        c.skipped = 1;
    } else {
        return None;
    }
    Some(c)
}

/// node --test: TAP `# pass 12` or the spec reporter's `ℹ pass 12`.
fn node(line: &str) -> Option<TestCounts> {
    let rest = line
        .strip_prefix("# ")
        .or_else(|| line.strip_prefix("ℹ "))?;
    let (word, n) = rest.split_once(' ')?;
    let n: u64 = n.trim().parse().ok()?;
    let mut c = TestCounts::default();
    match word {
        "pass" => c.passed = n,
        "fail" => c.failed = n,
        "skipped" | "todo" => c.skipped = n,
        _ => return None,
    }
    Some(c)
}

/// `N passed, N failed` alone on a line, optionally `, N skipped`, optionally after one word and
/// a colon (`Result: 3 passed, 0 failed`).
fn plain(line: &str) -> Option<TestCounts> {
    let body = match line.split_once(':') {
        Some((word, rest)) if !word.trim().contains(char::is_whitespace) => rest.trim(),
        _ => line,
    };
    let items: Vec<&str> = body.split(',').map(str::trim).collect();
    let words: Vec<&str> = items
        .iter()
        .filter_map(|i| count_word(i).map(|(_, w)| w))
        .collect();
    if items.len() != words.len()
        || !(words == ["passed", "failed"] || words == ["passed", "failed", "skipped"])
    {
        return None;
    }
    if items.iter().any(|i| i.split_whitespace().count() != 2) {
        return None;
    }
    counted_list(items.into_iter(), &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::unnecessary_wraps)]
    fn counts(passed: u64, failed: u64, skipped: u64) -> Option<TestCounts> {
        Some(TestCounts {
            passed,
            failed,
            skipped,
        })
    }

    #[test]
    fn cargo_test_sums_every_binary() {
        let out = "running 3 tests\ntest a ... ok\n\ntest result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s\n\n   Doc-tests x\ntest result: FAILED. 4 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.10s\n";
        assert_eq!(parse_test_counts(out), counts(7, 2, 1));
    }

    #[test]
    fn nextest_wins_over_its_own_cargo_like_lines() {
        let out = "        PASS [   0.004s] crate tests::a\n------------\n     Summary [   0.006s] 12 tests run: 10 passed, 2 failed, 1 skipped\n";
        assert_eq!(parse_test_counts(out), counts(10, 2, 1));
        assert_eq!(
            parse_test_counts("Summary [ 1.0s] 3 tests run: 2 passed, 1 timed out, 0 skipped"),
            counts(2, 1, 0)
        );
    }

    #[test]
    fn pytest_summaries() {
        assert_eq!(
            parse_test_counts("===== 3 failed, 12 passed, 2 skipped, 1 warning in 0.52s ====="),
            counts(12, 3, 2)
        );
        assert_eq!(parse_test_counts("12 passed in 0.01s"), counts(12, 0, 0));
        assert_eq!(
            parse_test_counts(
                "\u{1b}[32m===== 1 passed, 1 error, 1 xfailed in 1.2s (0:00:01) =====\u{1b}[0m"
            ),
            counts(1, 1, 1)
        );
        assert_eq!(parse_test_counts("went in 5s"), None);
    }

    #[test]
    fn jest_and_vitest() {
        assert_eq!(
            parse_test_counts("Tests:       1 failed, 1 skipped, 11 passed, 13 total"),
            counts(11, 1, 1)
        );
        assert_eq!(
            parse_test_counts(
                " Test Files  2 passed (2)\n      Tests  11 passed | 1 failed (12)\n"
            ),
            counts(11, 1, 0)
        );
    }

    #[test]
    fn go_test() {
        let verbose = "=== RUN   TestA\n--- PASS: TestA (0.00s)\n=== RUN   TestB\n    --- PASS: TestB/sub (0.00s)\n--- FAIL: TestB (0.00s)\n--- SKIP: TestC (0.00s)\nFAIL\n";
        assert_eq!(parse_test_counts(verbose), counts(2, 1, 1));
        assert_eq!(
            parse_test_counts("DONE 12 tests, 1 skipped, 2 failures in 0.512s"),
            counts(9, 2, 1)
        );
    }

    #[test]
    fn node_test_runner() {
        assert_eq!(
            parse_test_counts(
                "# tests 5\n# suites 0\n# pass 4\n# fail 1\n# cancelled 0\n# skipped 0\n"
            ),
            counts(4, 1, 0)
        );
        assert_eq!(parse_test_counts("ℹ pass 3\nℹ fail 0\n"), counts(3, 0, 0));
    }

    #[test]
    fn plain_line() {
        assert_eq!(parse_test_counts("5 passed, 1 failed"), counts(5, 1, 0));
        assert_eq!(
            parse_test_counts("Result: 5 passed, 0 failed, 2 skipped"),
            counts(5, 0, 2)
        );
        assert_eq!(parse_test_counts("we passed, then failed"), None);
        assert_eq!(parse_test_counts("5 passed"), None);
        assert_eq!(parse_test_counts("nothing to see"), None);
    }
}
