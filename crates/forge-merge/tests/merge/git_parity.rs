//! "Same answer as git": our line merge against the real `git merge-file` on generated inputs.

use forge_merge::{ConflictStyle, Favor, TextMergeOptions, merge_text};
use proptest::prelude::*;

use crate::common::git_merge_file;

/// Words that repeat a lot, so diffs have many equally good alignments (where git's choices
/// matter) and frequent lines (where its discard pass matters).
const WORDS: &[&str] = &["a", "b", "c", "{", "}", "", "  x = 1;", "fn f()", "d", "e"];

#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, usize),
    Delete(usize),
    Replace(usize, usize),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec(
        prop_oneof![
            (any::<usize>(), 0..WORDS.len() + 20).prop_map(|(at, w)| Edit::Insert(at, w)),
            any::<usize>().prop_map(Edit::Delete),
            (any::<usize>(), 0..WORDS.len() + 20).prop_map(|(at, w)| Edit::Replace(at, w)),
        ],
        0..6,
    )
}

fn word(w: usize) -> String {
    WORDS
        .get(w)
        .map_or_else(|| format!("new {w}"), |s| (*s).to_owned())
}

fn apply(lines: &[String], edits: &[Edit]) -> Vec<String> {
    let mut out = lines.to_vec();
    for e in edits {
        match *e {
            Edit::Insert(at, w) => {
                let at = at % (out.len() + 1);
                out.insert(at, word(w));
            }
            Edit::Delete(at) if !out.is_empty() => {
                let at = at % out.len();
                out.remove(at);
            }
            Edit::Replace(at, w) if !out.is_empty() => {
                let at = at % out.len();
                out[at] = word(w);
            }
            _ => {}
        }
    }
    out
}

/// How lines end: 0 LF, 1 CRLF, 2 mixed; and whether the last line has an ending.
fn render(lines: &[String], eol: u8, final_newline: bool, seed: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        out.extend_from_slice(line.as_bytes());
        let last = i + 1 == lines.len();
        if last && !final_newline {
            break;
        }
        let crlf = match eol {
            0 => false,
            1 => true,
            _ => (i + seed).is_multiple_of(3),
        };
        out.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
    }
    out
}

fn options(mode: u8) -> (TextMergeOptions, Vec<&'static str>) {
    let mut o = TextMergeOptions::labelled("ours", "base", "theirs");
    let args = match mode {
        0 => vec![],
        1 => {
            o.style = ConflictStyle::Diff3;
            vec!["--diff3"]
        }
        2 => {
            o.style = ConflictStyle::ZealousDiff3;
            vec!["--zdiff3"]
        }
        3 => {
            o.favor = Some(Favor::Ours);
            vec!["--ours"]
        }
        4 => {
            o.favor = Some(Favor::Theirs);
            vec!["--theirs"]
        }
        _ => {
            o.favor = Some(Favor::Union);
            vec!["--union"]
        }
    };
    (o, args)
}

fn check(base: &[u8], ours: &[u8], theirs: &[u8], mode: u8) -> Result<(), TestCaseError> {
    let (opts, args) = options(mode);
    let ours_merge = merge_text(base, ours, theirs, &opts);
    let (git_out, git_code) = git_merge_file(base, ours, theirs, &args);
    prop_assert_eq!(
        String::from_utf8_lossy(&ours_merge.content),
        String::from_utf8_lossy(&git_out),
        "args {:?}",
        args
    );
    prop_assert_eq!(&ours_merge.content, &git_out);
    prop_assert_eq!(
        ours_merge.conflicts().min(127),
        usize::try_from(git_code).unwrap()
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Small files over a few repeating words, every style and favour, LF, CRLF and mixed line
    /// endings, with and without a final newline: same bytes and same conflict count as git.
    #[test]
    fn small_merges_equal_git(
        base in prop::collection::vec(0..WORDS.len(), 0..30),
        e1 in edits(),
        e2 in edits(),
        eol in 0u8..3,
        nl in prop::array::uniform3(any::<bool>()),
        mode in 0u8..6,
        seed in 0usize..3,
    ) {
        let base: Vec<String> = base.into_iter().map(word).collect();
        let ours = apply(&base, &e1);
        let theirs = apply(&base, &e2);
        check(
            &render(&base, eol, nl[0], seed),
            &render(&ours, eol, nl[1], seed + 1),
            &render(&theirs, eol, nl[2], seed + 2),
            mode,
        )?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Large files with many edits, so that xdiff's discard pass and its cost cut-offs (past an
    /// edit cost of 256) come into play.
    #[test]
    fn large_merges_equal_git(
        base in prop::collection::vec(0usize..60, 1500..3000),
        n1 in 0usize..600,
        n2 in 0usize..600,
        seed in any::<u64>(),
        mode in 0u8..2,
    ) {
        let words: Vec<String> = base.iter().map(|w| format!("line {w}")).collect();
        let mut rng = seed;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            usize::try_from(rng % 1_000_003).unwrap()
        };
        let mut side = |n: usize| {
            let e: Vec<Edit> = (0..n)
                .map(|_| match next() % 3 {
                    0 => Edit::Insert(next(), next() % 80),
                    1 => Edit::Delete(next()),
                    _ => Edit::Replace(next(), next() % 80),
                })
                .collect();
            apply(&words, &e)
        };
        let (ours, theirs) = (side(n1), side(n2));
        check(
            &render(&words, 0, true, 0),
            &render(&ours, 0, true, 0),
            &render(&theirs, 0, true, 0),
            mode,
        )?;
    }
}

/// Two unrelated files: the search gives up at its cost limit and takes the furthest path.
#[test]
fn unrelated_files_equal_git() {
    let mk = |seed: u64, n: usize| -> Vec<u8> {
        let mut x = seed;
        let mut out = Vec::new();
        for _ in 0..n {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            out.extend_from_slice(format!("w{}\n", (x >> 33) % 40).as_bytes());
        }
        out
    };
    for seed in 0..4 {
        let base = mk(seed, 3000);
        let ours = mk(seed + 100, 2800);
        let theirs = mk(seed + 200, 3100);
        check(&base, &ours, &theirs, 0).unwrap();
        check(&base, &ours, &base, 1).unwrap();
    }
}

/// A file of `n` lines where about `blank_pct` % are blank lines (frequent everywhere) and the
/// rest are numbered; `offset` starts the numbering so two files can share or not share lines.
fn blanky(n: usize, blank_pct: u64, offset: usize, seed: u64) -> Vec<String> {
    let mut x = seed | 1;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x % 100 < blank_pct {
                String::new()
            } else {
                format!("item {}", i + offset)
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Files full of blank lines with runs of rewritten lines: the discard pass decides which
    /// blank lines may anchor the alignment, and so where hunks start and end.
    #[test]
    fn frequent_lines_equal_git(
        n in 80usize..700,
        blank_pct in 20u64..60,
        seed in any::<u64>(),
        runs1 in prop::collection::vec((any::<usize>(), 1usize..12, 0u64..60), 1..8),
        runs2 in prop::collection::vec((any::<usize>(), 1usize..250, 0u64..60), 1..4),
        mode in 0u8..2,
    ) {
        let base = blanky(n, blank_pct, 0, seed);
        let rewrite = |runs: &[(usize, usize, u64)], tag: usize| {
            let mut side = base.clone();
            for (k, &(at, len, pct)) in runs.iter().enumerate() {
                let at = at % side.len();
                let end = (at + len).min(side.len());
                let fresh = blanky(end - at, pct, 100_000 * (tag + 1) + 1000 * k, seed ^ at as u64);
                side.splice(at..end, fresh);
            }
            side
        };
        let (ours, theirs) = (rewrite(&runs1, 1), rewrite(&runs2, 2));
        check(
            &render(&base, 0, true, 0),
            &render(&ours, 0, true, 0),
            &render(&theirs, 0, true, 0),
            mode,
        )?;
    }
}

/// Files large enough (over 2^15 lines each) that the search's cost limit exceeds 256, so the
/// "long snake" heuristic is what splits the work: lines from a vocabulary of 500 (each kept by
/// the discard pass, and each with many possible partners), rewritten in blocks between runs of
/// unchanged lines longer than 20.
#[test]
fn huge_files_equal_git() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rand = move |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    let base: Vec<String> = (0..36_000).map(|_| format!("v{}", rand(500))).collect();
    let mut rewrite = |period: usize, width: usize| {
        let mut side = base.clone();
        let mut at = 0;
        while at + width <= side.len() {
            for line in &mut side[at..at + width] {
                *line = format!("v{}", rand(500));
            }
            at += period;
        }
        side
    };
    let ours = rewrite(70, 25);
    let theirs = rewrite(90, 20);
    check(
        &render(&base, 0, true, 0),
        &render(&ours, 0, true, 0),
        &render(&theirs, 0, true, 0),
        0,
    )
    .unwrap();
}
