//! A line diff that makes the same choices as git's `xdiff` with its default (Myers) algorithm.
//!
//! A 3-way merge can only give the same answer as `git merge-file` if its two diffs put every
//! hunk exactly where git puts it: an inserted line that could go above or below an identical
//! neighbour decides whether two changes touch (a conflict) or not. So this module reproduces
//! xdiff's behaviour step by step, written afresh in Rust:
//!
//! 1. common lines at both ends are set aside;
//! 2. lines that have no match in the other file are marked changed up front, and lines that
//!    occur very often in the other file (at least √n times, at most 1024) are marked changed
//!    too when they sit in a run of unmatched lines (the "discard" pass);
//! 3. Myers' O(ND) divide-and-conquer search on what remains, with xdiff's cut-offs: after an
//!    edit cost of 256 a long enough diagonal ("snake", 20 lines) is taken as a split point, and
//!    past √(N+M) (at least 256) the furthest-reaching path is taken;
//! 4. every group of changed lines is slid up and down across identical neighbours, merged
//!    with groups it touches, and left as low as possible unless it can line up with a change
//!    group of the other file (git's `xdl_change_compact` without the indent heuristic, which
//!    `git merge-file` does not use).
//!
//! The differential tests in `tests/` compare the merge built on this diff with the real
//! `git merge-file` byte for byte.

// Indices here follow the algorithm's signed arithmetic (diagonals are negative, sentinels sit
// at -1); they are always within the files' bounds when used, by the algorithm's invariants.
#![allow(clippy::cast_sign_loss, clippy::cast_possible_wrap)]

/// One hunk of a diff: `chg1` lines of the first file from `i1` replaced by `chg2` lines of the
/// second file from `i2` (either count may be zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hunk {
    pub(crate) i1: usize,
    pub(crate) i2: usize,
    pub(crate) chg1: usize,
    pub(crate) chg2: usize,
}

/// The hunks turning `a` into `b`, in order. Equal tokens mean equal lines.
pub(crate) fn diff(a: &[u32], b: &[u32]) -> Vec<Hunk> {
    let (mut marks_a, mut marks_b) = mark_changes(a, b);
    compact(&mut marks_a, a, &marks_b);
    compact(&mut marks_b, b, &marks_a);
    hunks(&marks_a, &marks_b)
}

/// Which lines of a file are changed, with a `false` sentinel before the first line and after
/// the last, so group walks need no bounds checks.
#[derive(Debug, Clone)]
struct Marks {
    flags: Vec<bool>,
}

impl Marks {
    fn new(len: usize) -> Self {
        Self {
            flags: vec![false; len + 2],
        }
    }

    /// Number of lines.
    fn len(&self) -> isize {
        self.flags.len() as isize - 2
    }

    /// Whether line `i` (-1 ..= len) is changed.
    fn get(&self, i: isize) -> bool {
        self.flags[(i + 1) as usize]
    }

    fn set(&mut self, i: isize, changed: bool) {
        self.flags[(i + 1) as usize] = changed;
    }
}

/// How a line of one file stands in the other file, for the discard pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presence {
    /// Never occurs there: certainly changed.
    No,
    /// Occurs there a reasonable number of times: given to the search.
    Yes,
    /// Occurs there very often: discarded when surrounded by unmatched lines.
    Maybe,
}

const MAX_EQ_LIMIT: usize = 1024;
const SIMSCAN_WINDOW: usize = 100;
const KPDIS_RUN: usize = 4;
const MAX_COST_MIN: isize = 256;
const HEUR_MIN_COST: isize = 256;
const SNAKE_CNT: isize = 20;
const K_HEUR: isize = 4;
const LINE_MAX: isize = isize::MAX;

/// A power of two near √n, the way xdiff estimates it (shifts only).
fn bogo_sqrt(mut n: usize) -> usize {
    let mut root = 1;
    while n > 0 {
        root <<= 1;
        n >>= 2;
    }
    root
}

/// Steps 1 to 3: the changed lines of both files, before sliding.
fn mark_changes(a: &[u32], b: &[u32]) -> (Marks, Marks) {
    let (n1, n2) = (a.len(), b.len());
    let mut marks_a = Marks::new(n1);
    let mut marks_b = Marks::new(n2);

    let common = n1.min(n2);
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take(common - prefix)
        .take_while(|(x, y)| x == y)
        .count();
    let (end_a, end_b) = (n1 - suffix, n2 - suffix);

    // Occurrences of each token in each whole file.
    let tokens = a.iter().chain(b).max().map_or(0, |&m| m as usize + 1);
    let mut count_a = vec![0u32; tokens];
    let mut count_b = vec![0u32; tokens];
    for &t in a {
        count_a[t as usize] += 1;
    }
    for &t in b {
        count_b[t as usize] += 1;
    }

    let kept_a = discard(a, prefix, end_a, &count_b, &mut marks_a);
    let kept_b = discard(b, prefix, end_b, &count_a, &mut marks_b);

    Myers::new(&kept_a, &kept_b).run(&kept_a, &kept_b, &mut marks_a, &mut marks_b);
    (marks_a, marks_b)
}

/// Lines `start..end` of `file` that go into the search, as (line index, token); the others
/// are marked changed now.
fn discard(
    file: &[u32],
    start: usize,
    end: usize,
    other_counts: &[u32],
    marks: &mut Marks,
) -> Vec<(usize, u32)> {
    let limit = bogo_sqrt(file.len()).min(MAX_EQ_LIMIT);
    let presence: Vec<Presence> = file[start..end]
        .iter()
        .map(|&t| match other_counts[t as usize] as usize {
            0 => Presence::No,
            n if n >= limit => Presence::Maybe,
            _ => Presence::Yes,
        })
        .collect();
    let mut kept = Vec::with_capacity(presence.len());
    for (offset, &p) in presence.iter().enumerate() {
        let keep = match p {
            Presence::Yes => true,
            Presence::Maybe => !in_unmatched_run(&presence, offset),
            Presence::No => false,
        };
        let line = start + offset;
        if keep {
            kept.push((line, file[line]));
        } else {
            marks.set(line as isize, true);
        }
    }
    kept
}

/// Whether the frequent line at `i` sits inside a run of unmatched and frequent lines with
/// unmatched lines on both sides, unmatched ones making up more than three quarters of it.
fn in_unmatched_run(presence: &[Presence], i: usize) -> bool {
    let lo = i.saturating_sub(SIMSCAN_WINDOW);
    let hi = (i + SIMSCAN_WINDOW).min(presence.len() - 1);
    let (mut unmatched_before, mut frequent_before) = (0, 1);
    for p in presence[lo..i].iter().rev() {
        match p {
            Presence::No => unmatched_before += 1,
            Presence::Maybe => frequent_before += 1,
            Presence::Yes => break,
        }
    }
    if unmatched_before == 0 {
        return false;
    }
    let (mut unmatched_after, mut frequent_after) = (0, 1);
    for p in &presence[i + 1..=hi] {
        match p {
            Presence::No => unmatched_after += 1,
            Presence::Maybe => frequent_after += 1,
            Presence::Yes => break,
        }
    }
    if unmatched_after == 0 {
        return false;
    }
    let unmatched = unmatched_before + unmatched_after;
    let frequent = frequent_before + frequent_after;
    frequent * KPDIS_RUN < frequent + unmatched
}

/// A split point of a box, and whether each half must be solved minimally.
#[derive(Debug, Clone, Copy)]
struct Split {
    i1: isize,
    i2: isize,
    min_lo: bool,
    min_hi: bool,
}

/// A box of the edit graph still to solve: lines `off1..lim1` against `off2..lim2`.
#[derive(Debug, Clone, Copy)]
struct Box {
    off1: isize,
    lim1: isize,
    off2: isize,
    lim2: isize,
    need_min: bool,
}

/// Myers' search with xdiff's cut-offs, on the lines that survived the discard pass.
struct Myers {
    /// Furthest x reached on each diagonal, forward and backward; index = diagonal + `origin`.
    forward: Vec<isize>,
    backward: Vec<isize>,
    origin: isize,
    max_cost: isize,
}

impl Myers {
    fn new(a: &[(usize, u32)], b: &[(usize, u32)]) -> Self {
        let diagonals = a.len() + b.len() + 3;
        Self {
            forward: vec![0; diagonals],
            backward: vec![0; diagonals],
            origin: b.len() as isize + 1,
            max_cost: (bogo_sqrt(diagonals) as isize).max(MAX_COST_MIN),
        }
    }

    fn run(
        &mut self,
        a: &[(usize, u32)],
        b: &[(usize, u32)],
        marks_a: &mut Marks,
        marks_b: &mut Marks,
    ) {
        let h1: Vec<u32> = a.iter().map(|&(_, t)| t).collect();
        let h2: Vec<u32> = b.iter().map(|&(_, t)| t).collect();
        let mut todo = vec![Box {
            off1: 0,
            lim1: h1.len() as isize,
            off2: 0,
            lim2: h2.len() as isize,
            need_min: false,
        }];
        while let Some(mut bx) = todo.pop() {
            // Shrink the box past the diagonals at both ends.
            while bx.off1 < bx.lim1
                && bx.off2 < bx.lim2
                && h1[bx.off1 as usize] == h2[bx.off2 as usize]
            {
                bx.off1 += 1;
                bx.off2 += 1;
            }
            while bx.off1 < bx.lim1
                && bx.off2 < bx.lim2
                && h1[bx.lim1 as usize - 1] == h2[bx.lim2 as usize - 1]
            {
                bx.lim1 -= 1;
                bx.lim2 -= 1;
            }
            if bx.off1 == bx.lim1 {
                for &(line, _) in &b[bx.off2 as usize..bx.lim2 as usize] {
                    marks_b.set(line as isize, true);
                }
            } else if bx.off2 == bx.lim2 {
                for &(line, _) in &a[bx.off1 as usize..bx.lim1 as usize] {
                    marks_a.set(line as isize, true);
                }
            } else {
                let split = self.split(&h1, &h2, bx);
                todo.push(Box {
                    off1: split.i1,
                    lim1: bx.lim1,
                    off2: split.i2,
                    lim2: bx.lim2,
                    need_min: split.min_hi,
                });
                todo.push(Box {
                    off1: bx.off1,
                    lim1: split.i1,
                    off2: bx.off2,
                    lim2: split.i2,
                    need_min: split.min_lo,
                });
            }
        }
    }

    fn kf(&self, d: isize) -> isize {
        self.forward[(d + self.origin) as usize]
    }

    fn set_kf(&mut self, d: isize, v: isize) {
        self.forward[(d + self.origin) as usize] = v;
    }

    fn kb(&self, d: isize) -> isize {
        self.backward[(d + self.origin) as usize]
    }

    fn set_kb(&mut self, d: isize, v: isize) {
        self.backward[(d + self.origin) as usize] = v;
    }

    /// Finds where to split the box: the middle snake of the forward and backward searches, or
    /// a heuristic point once the edit cost grows too large.
    #[allow(clippy::too_many_lines)]
    fn split(&mut self, h1: &[u32], h2: &[u32], bx: Box) -> Split {
        let Box {
            off1,
            lim1,
            off2,
            lim2,
            need_min,
        } = bx;
        let at1 = |i: isize| h1[i as usize];
        let at2 = |i: isize| h2[i as usize];
        let (dmin, dmax) = (off1 - lim2, lim1 - off2);
        let (forward_mid, backward_mid) = (off1 - off2, lim1 - lim2);
        let odd = (forward_mid - backward_mid) & 1 != 0;
        let (mut fmin, mut fmax) = (forward_mid, forward_mid);
        let (mut bmin, mut bmax) = (backward_mid, backward_mid);
        self.set_kf(forward_mid, off1);
        self.set_kb(backward_mid, lim1);

        let mut cost = 1;
        loop {
            let mut got_snake = false;

            // Widen the forward diagonal range by one (or narrow it at the box's edge).
            if fmin > dmin {
                fmin -= 1;
                self.set_kf(fmin - 1, -1);
            } else {
                fmin += 1;
            }
            if fmax < dmax {
                fmax += 1;
                self.set_kf(fmax + 1, -1);
            } else {
                fmax -= 1;
            }
            let mut d = fmax;
            while d >= fmin {
                let mut i1 = if self.kf(d - 1) >= self.kf(d + 1) {
                    self.kf(d - 1) + 1
                } else {
                    self.kf(d + 1)
                };
                let start = i1;
                let mut i2 = i1 - d;
                while i1 < lim1 && i2 < lim2 && at1(i1) == at2(i2) {
                    i1 += 1;
                    i2 += 1;
                }
                if i1 - start > SNAKE_CNT {
                    got_snake = true;
                }
                self.set_kf(d, i1);
                if odd && bmin <= d && d <= bmax && self.kb(d) <= i1 {
                    return Split {
                        i1,
                        i2,
                        min_lo: true,
                        min_hi: true,
                    };
                }
                d -= 2;
            }

            // The same backward from the box's end.
            if bmin > dmin {
                bmin -= 1;
                self.set_kb(bmin - 1, LINE_MAX);
            } else {
                bmin += 1;
            }
            if bmax < dmax {
                bmax += 1;
                self.set_kb(bmax + 1, LINE_MAX);
            } else {
                bmax -= 1;
            }
            let mut d = bmax;
            while d >= bmin {
                let mut i1 = if self.kb(d - 1) < self.kb(d + 1) {
                    self.kb(d - 1)
                } else {
                    self.kb(d + 1) - 1
                };
                let start = i1;
                let mut i2 = i1 - d;
                while i1 > off1 && i2 > off2 && at1(i1 - 1) == at2(i2 - 1) {
                    i1 -= 1;
                    i2 -= 1;
                }
                if start - i1 > SNAKE_CNT {
                    got_snake = true;
                }
                self.set_kb(d, i1);
                if !odd && fmin <= d && d <= fmax && i1 <= self.kf(d) {
                    return Split {
                        i1,
                        i2,
                        min_lo: true,
                        min_hi: true,
                    };
                }
                d -= 2;
            }

            if need_min {
                cost += 1;
                continue;
            }

            // Past the heuristic threshold, a diagonal that got far from the corner (penalized
            // by its distance from the middle diagonal) and ends in a long snake is good enough.
            if got_snake && cost > HEUR_MIN_COST {
                let mut best = 0;
                let mut found = None;
                let mut d = fmax;
                while d >= fmin {
                    let dd = (d - forward_mid).abs();
                    let i1 = self.kf(d);
                    let i2 = i1 - d;
                    let v = (i1 - off1) + (i2 - off2) - dd;
                    if v > K_HEUR * cost
                        && v > best
                        && off1 + SNAKE_CNT <= i1
                        && i1 < lim1
                        && off2 + SNAKE_CNT <= i2
                        && i2 < lim2
                    {
                        let mut k = 1;
                        while at1(i1 - k) == at2(i2 - k) {
                            if k == SNAKE_CNT {
                                best = v;
                                found = Some((i1, i2));
                                break;
                            }
                            k += 1;
                        }
                    }
                    d -= 2;
                }
                if let Some((i1, i2)) = found {
                    return Split {
                        i1,
                        i2,
                        min_lo: true,
                        min_hi: false,
                    };
                }

                let mut best = 0;
                let mut found = None;
                let mut d = bmax;
                while d >= bmin {
                    let dd = (d - backward_mid).abs();
                    let i1 = self.kb(d);
                    let i2 = i1 - d;
                    let v = (lim1 - i1) + (lim2 - i2) - dd;
                    if v > K_HEUR * cost
                        && v > best
                        && off1 < i1
                        && i1 <= lim1 - SNAKE_CNT
                        && off2 < i2
                        && i2 <= lim2 - SNAKE_CNT
                    {
                        let mut k = 0;
                        while at1(i1 + k) == at2(i2 + k) {
                            if k == SNAKE_CNT - 1 {
                                best = v;
                                found = Some((i1, i2));
                                break;
                            }
                            k += 1;
                        }
                    }
                    d -= 2;
                }
                if let Some((i1, i2)) = found {
                    return Split {
                        i1,
                        i2,
                        min_lo: false,
                        min_hi: true,
                    };
                }
            }

            // Enough: take the furthest-reaching path of either direction.
            if cost >= self.max_cost {
                let (mut fbest, mut fbest1) = (-1, -1);
                let mut d = fmax;
                while d >= fmin {
                    let mut i1 = self.kf(d).min(lim1);
                    let mut i2 = i1 - d;
                    if lim2 < i2 {
                        i1 = lim2 + d;
                        i2 = lim2;
                    }
                    if fbest < i1 + i2 {
                        fbest = i1 + i2;
                        fbest1 = i1;
                    }
                    d -= 2;
                }
                let (mut bbest, mut bbest1) = (LINE_MAX, LINE_MAX);
                let mut d = bmax;
                while d >= bmin {
                    let mut i1 = off1.max(self.kb(d));
                    let mut i2 = i1 - d;
                    if i2 < off2 {
                        i1 = off2 + d;
                        i2 = off2;
                    }
                    if i1 + i2 < bbest {
                        bbest = i1 + i2;
                        bbest1 = i1;
                    }
                    d -= 2;
                }
                return if (lim1 + lim2) - bbest < fbest - (off1 + off2) {
                    Split {
                        i1: fbest1,
                        i2: fbest - fbest1,
                        min_lo: true,
                        min_hi: false,
                    }
                } else {
                    Split {
                        i1: bbest1,
                        i2: bbest - bbest1,
                        min_lo: false,
                        min_hi: true,
                    }
                };
            }
            cost += 1;
        }
    }
}

/// A group of changed lines `start..end` (empty when `start == end`: the gap above line
/// `start`). Every position between two unchanged lines holds one group.
#[derive(Debug, Clone, Copy)]
struct Group {
    start: isize,
    end: isize,
}

impl Group {
    fn first(marks: &Marks) -> Self {
        let mut end = 0;
        while marks.get(end) {
            end += 1;
        }
        Self { start: 0, end }
    }

    fn next(&mut self, marks: &Marks) -> bool {
        if self.end == marks.len() {
            return false;
        }
        self.start = self.end + 1;
        self.end = self.start;
        while marks.get(self.end) {
            self.end += 1;
        }
        true
    }

    fn previous(&mut self, marks: &Marks) -> bool {
        if self.start == 0 {
            return false;
        }
        self.end = self.start - 1;
        self.start = self.end;
        while marks.get(self.start - 1) {
            self.start -= 1;
        }
        true
    }

    /// Slides the group one line down if the line after it equals its first line, absorbing a
    /// group it runs into.
    fn slide_down(&mut self, marks: &mut Marks, tokens: &[u32]) -> bool {
        if self.end < marks.len() && tokens[self.start as usize] == tokens[self.end as usize] {
            marks.set(self.start, false);
            self.start += 1;
            marks.set(self.end, true);
            self.end += 1;
            while marks.get(self.end) {
                self.end += 1;
            }
            true
        } else {
            false
        }
    }

    /// Slides the group one line up if the line before it equals its last line, absorbing a
    /// group it runs into.
    fn slide_up(&mut self, marks: &mut Marks, tokens: &[u32]) -> bool {
        if self.start > 0 && tokens[self.start as usize - 1] == tokens[self.end as usize - 1] {
            self.start -= 1;
            marks.set(self.start, true);
            self.end -= 1;
            marks.set(self.end, false);
            while marks.get(self.start - 1) {
                self.start -= 1;
            }
            true
        } else {
            false
        }
    }
}

/// Step 4: slides each group of changed lines of `marks` to its canonical place.
fn compact(marks: &mut Marks, tokens: &[u32], other: &Marks) {
    let mut g = Group::first(marks);
    let mut go = Group::first(other);
    loop {
        if g.end != g.start {
            let mut earliest_end;
            let mut end_matching_other;
            loop {
                let size = g.end - g.start;
                end_matching_other = None;
                // Up as far as possible (the other file's group walks along in step)...
                while g.slide_up(marks, tokens) {
                    go.previous(other);
                }
                earliest_end = g.end;
                if go.end > go.start {
                    end_matching_other = Some(g.end);
                }
                // ...then down as far as possible.
                while g.slide_down(marks, tokens) {
                    go.next(other);
                    if go.end > go.start {
                        end_matching_other = Some(g.end);
                    }
                }
                if size == g.end - g.start {
                    break;
                }
            }
            // The group sits as low as it can. If it can line up with a change in the other
            // file, move it back up to the last such place.
            if g.end != earliest_end && end_matching_other.is_some() {
                while go.end == go.start {
                    if !g.slide_up(marks, tokens) {
                        break;
                    }
                    go.previous(other);
                }
            }
        }
        if !g.next(marks) {
            break;
        }
        go.next(other);
    }
}

/// Collects the groups of changed lines of both files into hunks.
fn hunks(a: &Marks, b: &Marks) -> Vec<Hunk> {
    let mut out = Vec::new();
    let (mut i1, mut i2) = (a.len(), b.len());
    while i1 >= 0 || i2 >= 0 {
        if a.get(i1 - 1) || b.get(i2 - 1) {
            let (l1, l2) = (i1, i2);
            while a.get(i1 - 1) {
                i1 -= 1;
            }
            while b.get(i2 - 1) {
                i2 -= 1;
            }
            out.push(Hunk {
                i1: i1 as usize,
                i2: i2 as usize,
                chg1: (l1 - i1) as usize,
                chg2: (l2 - i2) as usize,
            });
        }
        i1 -= 1;
        i2 -= 1;
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn apply(a: &[u32], b: &[u32], hunks: &[Hunk]) -> Vec<u32> {
        let mut out = Vec::new();
        let mut pos = 0;
        for h in hunks {
            out.extend_from_slice(&a[pos..h.i1]);
            out.extend_from_slice(&b[h.i2..h.i2 + h.chg2]);
            pos = h.i1 + h.chg1;
        }
        out.extend_from_slice(&a[pos..]);
        out
    }

    #[test]
    fn bogo_sqrt_matches_xdiff() {
        assert_eq!(bogo_sqrt(0), 1);
        assert_eq!(bogo_sqrt(1), 2);
        assert_eq!(bogo_sqrt(100), 16);
        assert_eq!(bogo_sqrt(1 << 20), 2048);
    }

    #[test]
    fn simple_hunks() {
        assert!(diff(&[1, 2, 3], &[1, 2, 3]).is_empty());
        assert_eq!(
            diff(&[1, 2, 3], &[1, 4, 3]),
            [Hunk {
                i1: 1,
                i2: 1,
                chg1: 1,
                chg2: 1
            }]
        );
        assert_eq!(
            diff(&[], &[1, 2]),
            [Hunk {
                i1: 0,
                i2: 0,
                chg1: 0,
                chg2: 2
            }]
        );
    }

    #[test]
    fn insertion_slides_down_like_git() {
        // Inserting one more "a" into a run of "a" lines: git reports it after the run.
        let h = diff(&[1, 1, 2], &[1, 1, 1, 2]);
        assert_eq!(
            h,
            [Hunk {
                i1: 2,
                i2: 2,
                chg1: 0,
                chg2: 1
            }]
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Applying the hunks to the first file gives the second, and unchanged lines match.
        #[test]
        fn hunks_transform_a_into_b(
            a in prop::collection::vec(0u32..6, 0..60),
            b in prop::collection::vec(0u32..6, 0..60),
        ) {
            let h = diff(&a, &b);
            prop_assert_eq!(apply(&a, &b, &h), b.clone());
            for w in h.windows(2) {
                prop_assert!(w[0].i1 + w[0].chg1 < w[1].i1 && w[0].i2 + w[0].chg2 < w[1].i2);
            }
        }
    }
}
