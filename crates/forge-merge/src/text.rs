//! Three-way merge of text files, line by line, with the same result as `git merge-file`.
//!
//! The merge walks the two diffs (base → ours, base → theirs, from [`crate::diff`]) side by side:
//! a hunk only one side has is taken; hunks of both sides that overlap or touch are a conflict
//! unless they are identical. Like git's default (`XDL_MERGE_ZEALOUS_ALNUM`), a conflict is then
//! narrowed by diffing the two sides against each other (common lines leave the conflict), and
//! conflicts separated by at most three lines, or by lines without a letter or digit, are joined.
//! The `diff3` style shows the base and skips the narrowing, as git does. Conflict markers take
//! the file's line ending (CRLF when the surrounding lines use it).

use std::ops::Range;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::diff::{Hunk, diff};

/// How conflicting hunks are written (git's `merge.conflictStyle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictStyle {
    /// `<<<<<<<`, `=======`, `>>>>>>>` around the two sides, conflicts narrowed to the lines
    /// that really differ.
    #[default]
    Merge,
    /// Also the base between `|||||||` and `=======`; conflicts are not narrowed.
    Diff3,
    /// Like `Diff3`, but lines common to both sides at the start and end of a conflict are
    /// moved out of it.
    ZealousDiff3,
}

/// Which side a conflicting hunk is settled with (git's `--ours`, `--theirs`, `--union`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Favor {
    /// The first side's lines.
    Ours,
    /// The second side's lines.
    Theirs,
    /// Both sides' lines, the first side's first.
    Union,
}

/// Options of [`merge_text`]. The default is `git merge-file`'s: merge style, no favoured side,
/// markers of 7 characters, no labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextMergeOptions {
    /// How conflicts are written.
    pub style: ConflictStyle,
    /// Settle conflicting hunks with one side (or both) instead of writing markers.
    pub favor: Option<Favor>,
    /// Length of the conflict markers (git's `--marker-size`); 0 means 7.
    pub marker_size: usize,
    /// Text after `<<<<<<<`.
    pub ours_label: Option<String>,
    /// Text after `|||||||` (diff3 styles).
    pub base_label: Option<String>,
    /// Text after `>>>>>>>`.
    pub theirs_label: Option<String>,
}

impl Default for TextMergeOptions {
    fn default() -> Self {
        Self {
            style: ConflictStyle::Merge,
            favor: None,
            marker_size: DEFAULT_MARKER_SIZE,
            ours_label: None,
            base_label: None,
            theirs_label: None,
        }
    }
}

impl TextMergeOptions {
    /// Default options with the three labels set, as `git merge-file -L ours -L base -L theirs`.
    pub fn labelled(ours: &str, base: &str, theirs: &str) -> Self {
        Self {
            ours_label: Some(ours.to_owned()),
            base_label: Some(base.to_owned()),
            theirs_label: Some(theirs.to_owned()),
            ..Self::default()
        }
    }
}

/// The default length of conflict markers.
pub const DEFAULT_MARKER_SIZE: usize = 7;

/// Where the two sides clash, as 0-based line ranges of each input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictRegion {
    /// The base's lines the region replaces (for a narrowed conflict: those of the whole
    /// overlapping change it was narrowed from).
    pub base: Range<usize>,
    /// The first side's lines.
    pub ours: Range<usize>,
    /// The second side's lines.
    pub theirs: Range<usize>,
    /// Whether [`TextMergeOptions::favor`] settled it (no markers were written).
    pub resolved: bool,
}

/// The result of [`merge_text`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextMerge {
    /// The merged file; with unresolved conflicts, it holds conflict markers.
    pub content: Vec<u8>,
    /// Every conflicting region, in order, resolved or not.
    pub regions: Vec<ConflictRegion>,
}

impl TextMerge {
    /// The number of conflicts written with markers (`git merge-file`'s exit code, uncapped).
    pub fn conflicts(&self) -> usize {
        self.regions.iter().filter(|r| !r.resolved).count()
    }

    /// Whether the merge needs no one's attention: no markers were written.
    pub fn is_clean(&self) -> bool {
        self.conflicts() == 0
    }
}

/// Whether git would treat `content` as binary (and refuse to merge it line by line): a NUL
/// byte in the first 8000 bytes.
pub fn is_binary(content: &[u8]) -> bool {
    content[..content.len().min(8000)].contains(&0)
}

/// Merges `ours` and `theirs`, both derived from `base`, line by line, as
/// `git merge-file -p ours base theirs` does (with the options' style, favour and labels).
///
/// Lines are compared byte for byte, line endings included. The inputs are not checked for
/// being text: see [`is_binary`].
pub fn merge_text(
    base: &[u8],
    ours: &[u8],
    theirs: &[u8],
    options: &TextMergeOptions,
) -> TextMerge {
    let mut interner = Interner::default();
    let base_f = interner.file(base);
    let ours_f = interner.file(ours);
    let theirs_f = interner.file(theirs);
    let script1 = diff(&base_f.tokens, &ours_f.tokens);
    let script2 = diff(&base_f.tokens, &theirs_f.tokens);
    if script1.is_empty() {
        return TextMerge {
            content: theirs.to_vec(),
            regions: Vec::new(),
        };
    }
    if script2.is_empty() {
        return TextMerge {
            content: ours.to_vec(),
            regions: Vec::new(),
        };
    }
    let files = Files {
        base: &base_f,
        ours: &ours_f,
        theirs: &theirs_f,
    };
    let mut merges = combine(&files, &script1, &script2);
    match options.style {
        ConflictStyle::ZealousDiff3 => trim_common_ends(&files, &mut merges),
        ConflictStyle::Merge => {
            merges = narrow(&files, merges);
            join_close_conflicts(&files, &mut merges);
        }
        ConflictStyle::Diff3 => {}
    }
    let regions = merges
        .iter()
        .filter(|m| m.mode == CONFLICT)
        .map(|m| ConflictRegion {
            base: to_range(m.i0, m.chg0),
            ours: to_range(m.i1, m.chg1),
            theirs: to_range(m.i2, m.chg2),
            resolved: options.favor.is_some(),
        })
        .collect();
    TextMerge {
        content: write(&files, &merges, options),
        regions,
    }
}

#[allow(clippy::cast_sign_loss)]
fn to_range(start: isize, len: isize) -> Range<usize> {
    start as usize..(start + len) as usize
}

/// Gives every distinct line a small number, so lines compare as integers.
#[derive(Default)]
pub(crate) struct Interner<'a> {
    ids: FxHashMap<&'a [u8], u32>,
}

/// A file split into lines (each with its line terminator), and each line's number.
pub(crate) struct File<'a> {
    pub(crate) lines: Vec<&'a [u8]>,
    pub(crate) tokens: Vec<u32>,
}

impl<'a> Interner<'a> {
    pub(crate) fn file(&mut self, content: &'a [u8]) -> File<'a> {
        let lines = split_lines(content);
        let tokens = lines
            .iter()
            .map(|line| {
                let next = u32::try_from(self.ids.len()).unwrap_or(u32::MAX);
                *self.ids.entry(line).or_insert(next)
            })
            .collect();
        File { lines, tokens }
    }
}

/// The lines of `content`, each ending with its `\n` except possibly the last.
pub(crate) fn split_lines(content: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::with_capacity(content.len() / 32 + 1);
    let mut rest = content;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let (line, tail) = rest.split_at(end);
        lines.push(line);
        rest = tail;
    }
    lines
}

struct Files<'f, 'a> {
    base: &'f File<'a>,
    ours: &'f File<'a>,
    theirs: &'f File<'a>,
}

const CONFLICT: u8 = 0;
const TAKE_OURS: u8 = 1;
const TAKE_THEIRS: u8 = 2;
const IDENTICAL: u8 = 4;

/// One region of the merge: base lines `i0..i0+chg0` become ours' `i1..i1+chg1` and theirs'
/// `i2..i2+chg2`; `mode` says which to take (or that it is a conflict).
#[derive(Debug, Clone, Copy)]
struct Region {
    mode: u8,
    i0: isize,
    chg0: isize,
    i1: isize,
    chg1: isize,
    i2: isize,
    chg2: isize,
}

#[allow(clippy::cast_possible_wrap)]
fn signed(h: &Hunk) -> (isize, isize, isize, isize) {
    (
        h.i1 as isize,
        h.chg1 as isize,
        h.i2 as isize,
        h.chg2 as isize,
    )
}

/// Adds a region, folding it into the previous one when they touch on either side (a region
/// touching one of the other mode becomes a conflict).
fn append(list: &mut Vec<Region>, r: Region) {
    if let Some(m) = list.last_mut()
        && (r.i1 <= m.i1 + m.chg1 || r.i2 <= m.i2 + m.chg2)
    {
        if r.mode != m.mode {
            m.mode = CONFLICT;
        }
        m.chg0 = r.i0 + r.chg0 - m.i0;
        m.chg1 = r.i1 + r.chg1 - m.i1;
        m.chg2 = r.i2 + r.chg2 - m.i2;
        return;
    }
    list.push(r);
}

#[allow(clippy::cast_possible_wrap)]
fn len_isize(v: &[&[u8]]) -> isize {
    v.len() as isize
}

/// The conflict region covering two overlapping hunks: the union of their base ranges, and the
/// corresponding lines of each side.
fn overlap(h1: &Hunk, h2: &Hunk) -> Region {
    let (x1, xc1, x2, xc2) = signed(h1);
    let (y1, yc1, y2, yc2) = signed(h2);
    let off = x1 - y1;
    let ffo = off + xc1 - yc1;
    let (mut i0, mut i1, mut i2) = (x1, x2, y2);
    if off > 0 {
        i0 -= off;
        i1 -= off;
    } else {
        i2 += off;
    }
    let mut chg0 = x1 + xc1 - i0;
    let mut chg1 = x2 + xc2 - i1;
    let mut chg2 = y2 + yc2 - i2;
    if ffo < 0 {
        chg0 -= ffo;
        chg1 -= ffo;
    } else {
        chg2 += ffo;
    }
    Region {
        mode: CONFLICT,
        i0,
        chg0,
        i1,
        chg1,
        i2,
        chg2,
    }
}

/// Walks both scripts in base order and lists the regions of the merge.
fn combine(files: &Files<'_, '_>, s1: &[Hunk], s2: &[Hunk]) -> Vec<Region> {
    let mut out = Vec::new();
    let (mut a, mut b) = (0, 0);
    while a < s1.len() && b < s2.len() {
        let (x1, xc1, x2, xc2) = signed(&s1[a]);
        let (y1, yc1, y2, yc2) = signed(&s2[b]);
        if x1 + xc1 < y1 {
            append(
                &mut out,
                Region {
                    mode: TAKE_OURS,
                    i0: x1,
                    chg0: xc1,
                    i1: x2,
                    chg1: xc2,
                    i2: y2 - y1 + x1,
                    chg2: xc1,
                },
            );
            a += 1;
            continue;
        }
        if y1 + yc1 < x1 {
            append(
                &mut out,
                Region {
                    mode: TAKE_THEIRS,
                    i0: y1,
                    chg0: yc1,
                    i1: x2 - x1 + y1,
                    chg1: yc1,
                    i2: y2,
                    chg2: yc2,
                },
            );
            b += 1;
            continue;
        }
        // Identical changes on both sides are taken once, not a conflict.
        let identical = x1 == y1
            && xc1 == yc1
            && xc2 == yc2
            && files.ours.tokens[s1[a].i2..s1[a].i2 + s1[a].chg2]
                == files.theirs.tokens[s2[b].i2..s2[b].i2 + s2[b].chg2];
        if !identical {
            append(&mut out, overlap(&s1[a], &s2[b]));
        }
        let end1 = x1 + xc1;
        let end2 = y1 + yc1;
        if end1 >= end2 {
            b += 1;
        }
        if end2 >= end1 {
            a += 1;
        }
    }
    let base_len = len_isize(&files.base.lines);
    for h in &s1[a..] {
        let (x1, xc1, x2, xc2) = signed(h);
        append(
            &mut out,
            Region {
                mode: TAKE_OURS,
                i0: x1,
                chg0: xc1,
                i1: x2,
                chg1: xc2,
                i2: x1 + len_isize(&files.theirs.lines) - base_len,
                chg2: xc1,
            },
        );
    }
    for h in &s2[b..] {
        let (y1, yc1, y2, yc2) = signed(h);
        append(
            &mut out,
            Region {
                mode: TAKE_THEIRS,
                i0: y1,
                chg0: yc1,
                i1: y1 + len_isize(&files.ours.lines) - base_len,
                chg1: yc1,
                i2: y2,
                chg2: yc2,
            },
        );
    }
    out
}

#[allow(clippy::cast_sign_loss)]
fn slice<'f>(f: &'f File<'_>, start: isize, len: isize) -> &'f [u32] {
    &f.tokens[start as usize..(start + len) as usize]
}

/// Narrows each conflict to the lines where the two sides really differ, by diffing them.
fn narrow(files: &Files<'_, '_>, merges: Vec<Region>) -> Vec<Region> {
    let mut out = Vec::with_capacity(merges.len());
    for m in merges {
        if m.mode != CONFLICT || m.chg1 == 0 || m.chg2 == 0 {
            out.push(m);
            continue;
        }
        let script = diff(
            slice(files.ours, m.i1, m.chg1),
            slice(files.theirs, m.i2, m.chg2),
        );
        if script.is_empty() {
            out.push(Region {
                mode: IDENTICAL,
                ..m
            });
            continue;
        }
        for h in &script {
            let (h1, hc1, h2, hc2) = signed(h);
            out.push(Region {
                mode: CONFLICT,
                i1: m.i1 + h1,
                chg1: hc1,
                i2: m.i2 + h2,
                chg2: hc2,
                ..m
            });
        }
    }
    out
}

/// zdiff3: moves lines common to both sides at a conflict's ends out of it.
fn trim_common_ends(files: &Files<'_, '_>, merges: &mut [Region]) {
    let (o, t) = (&files.ours.tokens, &files.theirs.tokens);
    #[allow(clippy::cast_sign_loss)]
    let at = |v: &[u32], i: isize| v[i as usize];
    for m in merges.iter_mut().filter(|m| m.mode == CONFLICT) {
        while m.chg1 > 0 && m.chg2 > 0 && at(o, m.i1) == at(t, m.i2) {
            m.chg1 -= 1;
            m.chg2 -= 1;
            m.i1 += 1;
            m.i2 += 1;
        }
        while m.chg1 > 0 && m.chg2 > 0 && at(o, m.i1 + m.chg1 - 1) == at(t, m.i2 + m.chg2 - 1) {
            m.chg1 -= 1;
            m.chg2 -= 1;
        }
    }
}

/// Joins two conflicts when at most three lines, or only lines without a letter or a digit,
/// separate them: one bigger conflict reads better than two with a sliver between.
fn join_close_conflicts(files: &Files<'_, '_>, merges: &mut Vec<Region>) {
    let mut i = 0;
    while i + 1 < merges.len() {
        let (m, next) = (merges[i], merges[i + 1]);
        let (begin, end) = (m.i1 + m.chg1, next.i1);
        #[allow(clippy::cast_sign_loss)]
        let gap = &files.ours.lines[begin as usize..end as usize];
        let keep_apart = m.mode != CONFLICT
            || next.mode != CONFLICT
            || (end - begin > 3
                && gap
                    .iter()
                    .any(|line| line.iter().any(u8::is_ascii_alphanumeric)));
        if keep_apart {
            i += 1;
        } else {
            merges[i].chg1 = next.i1 + next.chg1 - m.i1;
            merges[i].chg2 = next.i2 + next.chg2 - m.i2;
            merges.remove(i + 1);
        }
    }
}

/// Whether line `i` of `lines` ends in CRLF: `Some(true/false)`, or `None` when it cannot tell
/// (an empty file, or a lone last line without a line ending).
fn ends_in_crlf(lines: &[&[u8]], i: usize) -> Option<bool> {
    let crlf = |line: &[u8]| line.len() > 1 && line[line.len() - 2] == b'\r';
    if i + 1 < lines.len() {
        return Some(crlf(lines[i]));
    }
    let last = lines.get(i)?;
    if last.last() == Some(&b'\n') {
        return Some(crlf(last));
    }
    if i == 0 {
        return None;
    }
    Some(crlf(lines[i - 1]))
}

/// Whether markers and added line endings of region `m` take a CR: only when ours (before the
/// region), theirs (likewise) and the base (its first line) are not known to use LF.
#[allow(clippy::cast_sign_loss)]
fn needs_cr(files: &Files<'_, '_>, m: &Region) -> bool {
    let before = |i: isize| if i > 0 { i as usize - 1 } else { 0 };
    ends_in_crlf(&files.ours.lines, before(m.i1)) != Some(false)
        && ends_in_crlf(&files.theirs.lines, before(m.i2)) != Some(false)
        && ends_in_crlf(&files.base.lines, 0) == Some(true)
}

/// Appends `count` lines from `start`, and a line ending after the last one if it has none and
/// `add_nl` is set.
#[allow(clippy::cast_sign_loss)]
fn copy_lines(
    out: &mut Vec<u8>,
    lines: &[&[u8]],
    start: isize,
    count: isize,
    cr: bool,
    add_nl: bool,
) {
    if count < 1 {
        return;
    }
    let range = &lines[start as usize..(start + count) as usize];
    for line in range {
        out.extend_from_slice(line);
    }
    if add_nl && range.last().is_some_and(|l| l.last() != Some(&b'\n')) {
        if cr {
            out.push(b'\r');
        }
        out.push(b'\n');
    }
}

fn marker(out: &mut Vec<u8>, ch: u8, size: usize, label: Option<&str>, cr: bool) {
    out.extend(std::iter::repeat_n(ch, size));
    if let Some(label) = label {
        out.push(b' ');
        out.extend_from_slice(label.as_bytes());
    }
    if cr {
        out.push(b'\r');
    }
    out.push(b'\n');
}

/// Writes the merged file.
fn write(files: &Files<'_, '_>, merges: &[Region], options: &TextMergeOptions) -> Vec<u8> {
    let (ours, theirs, base) = (&files.ours.lines, &files.theirs.lines, &files.base.lines);
    let size = if options.marker_size == 0 {
        DEFAULT_MARKER_SIZE
    } else {
        options.marker_size
    };
    let favor = match options.favor {
        None => CONFLICT,
        Some(Favor::Ours) => TAKE_OURS,
        Some(Favor::Theirs) => TAKE_THEIRS,
        Some(Favor::Union) => TAKE_OURS | TAKE_THEIRS,
    };
    let mut out = Vec::with_capacity(files.ours.lines.len().max(1) * 40);
    let mut i = 0;
    for m in merges {
        let mode = if m.mode == CONFLICT { favor } else { m.mode };
        if mode == CONFLICT {
            let cr = needs_cr(files, m);
            copy_lines(&mut out, ours, i, m.i1 - i, false, false);
            marker(&mut out, b'<', size, options.ours_label.as_deref(), cr);
            copy_lines(&mut out, ours, m.i1, m.chg1, cr, true);
            if options.style != ConflictStyle::Merge {
                marker(&mut out, b'|', size, options.base_label.as_deref(), cr);
                copy_lines(&mut out, base, m.i0, m.chg0, cr, true);
            }
            marker(&mut out, b'=', size, None, cr);
            copy_lines(&mut out, theirs, m.i2, m.chg2, cr, true);
            marker(&mut out, b'>', size, options.theirs_label.as_deref(), cr);
        } else if mode & (TAKE_OURS | TAKE_THEIRS) != 0 {
            copy_lines(&mut out, ours, i, m.i1 - i, false, false);
            if mode & TAKE_OURS != 0 {
                let cr = needs_cr(files, m);
                copy_lines(&mut out, ours, m.i1, m.chg1, cr, mode & TAKE_THEIRS != 0);
            }
            if mode & TAKE_THEIRS != 0 {
                copy_lines(&mut out, theirs, m.i2, m.chg2, false, false);
            }
        } else {
            continue;
        }
        i = m.i1 + m.chg1;
    }
    copy_lines(&mut out, ours, i, len_isize(ours) - i, false, false);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merge(base: &str, ours: &str, theirs: &str) -> (String, usize) {
        let m = merge_text(
            base.as_bytes(),
            ours.as_bytes(),
            theirs.as_bytes(),
            &TextMergeOptions::labelled("ours", "base", "theirs"),
        );
        (String::from_utf8(m.content.clone()).unwrap(), m.conflicts())
    }

    #[test]
    fn disjoint_changes_merge() {
        let base = "a\nb\nc\nd\ne\n";
        assert_eq!(
            merge(base, "A\nb\nc\nd\ne\n", "a\nb\nc\nd\nE\n"),
            ("A\nb\nc\nd\nE\n".to_owned(), 0)
        );
    }

    #[test]
    fn identical_changes_are_not_conflicts() {
        let base = "a\nb\nc\n";
        assert_eq!(
            merge(base, "a\nB\nc\n", "a\nB\nc\n"),
            ("a\nB\nc\n".to_owned(), 0)
        );
    }

    #[test]
    fn adjacent_changes_conflict_like_git() {
        let (out, n) = merge("a\nb\nc\nd\n", "a\nB\nc\nd\n", "a\nb\nC\nd\n");
        assert_eq!(n, 1);
        assert_eq!(
            out,
            "a\n<<<<<<< ours\nB\nc\n=======\nb\nC\n>>>>>>> theirs\nd\n"
        );
    }

    #[test]
    fn one_side_unchanged_returns_the_other_verbatim() {
        assert_eq!(merge("a\n", "a\n", "b"), ("b".to_owned(), 0));
        assert_eq!(merge("a\n", "x\r\n", "a\n"), ("x\r\n".to_owned(), 0));
    }

    #[test]
    fn diff3_shows_the_base_and_crlf_markers() {
        let m = merge_text(
            b"a\r\nb\r\nc\r\n",
            b"a\r\nX\r\nc\r\n",
            b"a\r\nY\r\nc\r\n",
            &TextMergeOptions {
                style: ConflictStyle::Diff3,
                ..TextMergeOptions::labelled("t1", "base", "t2")
            },
        );
        assert_eq!(
            String::from_utf8(m.content).unwrap(),
            "a\r\n<<<<<<< t1\r\nX\r\n||||||| base\r\nb\r\n=======\r\nY\r\n>>>>>>> t2\r\nc\r\n"
        );
        assert_eq!(
            m.regions,
            [ConflictRegion {
                base: 1..2,
                ours: 1..2,
                theirs: 1..2,
                resolved: false
            }]
        );
    }

    #[test]
    fn union_keeps_both_sides() {
        let m = merge_text(
            b"# Changes\n",
            b"# Changes\n- a\n",
            b"# Changes\n- b",
            &TextMergeOptions {
                favor: Some(Favor::Union),
                ..TextMergeOptions::default()
            },
        );
        assert_eq!(m.content, b"# Changes\n- a\n- b");
        assert!(m.is_clean());
        assert!(m.regions[0].resolved);
    }

    #[test]
    fn binary_detection() {
        assert!(is_binary(b"abc\0def"));
        assert!(!is_binary(b"plain text\n"));
        let mut late = vec![b'a'; 9000];
        late[8500] = 0;
        assert!(!is_binary(&late));
    }

    #[test]
    fn lines_keep_their_endings() {
        assert_eq!(split_lines(b"a\nb\r\nc"), [&b"a\n"[..], b"b\r\n", b"c"]);
        assert!(split_lines(b"").is_empty());
    }
}
