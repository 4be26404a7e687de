//! Changes shown for review: each changed path of a [`ChangeSet`] as hunks of lines (from the same
//! xdiff-compatible line diff the merge uses), rendered in `git diff`'s unified format, as
//! `git diff --stat`, or serialized (files and hunks) for programs.

use std::fmt::Write as _;

use forge_staging::{BlobStore, ChangeSet, Entry};
use serde::Serialize;

use crate::MergeError;
use crate::diff::diff;
use crate::text::{Interner, is_binary};

/// Lines of context around each change, as `git diff` shows by default.
pub const CONTEXT_LINES: usize = 3;

/// What happened to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    /// The path is new.
    Added,
    /// The path holds something else.
    Modified,
    /// The path is gone.
    Deleted,
}

/// The kind of one line of a hunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    /// Unchanged, shown for context.
    Context,
    /// Only in the old version.
    Removed,
    /// Only in the new version.
    Added,
}

/// One line of a hunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffLine {
    /// Context, removed or added.
    pub kind: LineKind,
    /// The line without its line ending (invalid UTF-8 replaced).
    pub text: String,
    /// The line is the file's last and has no line ending.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_newline: bool,
}

/// One hunk: lines `old_start..old_start+old_lines` (1-based) of the old version become lines
/// `new_start..new_start+new_lines` of the new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffHunk {
    /// First old line (the line before the hunk when `old_lines` is 0, as git writes it).
    pub old_start: usize,
    /// Number of old lines.
    pub old_lines: usize,
    /// First new line (the line before the hunk when `new_lines` is 0).
    pub new_start: usize,
    /// Number of new lines.
    pub new_lines: usize,
    /// The lines, in order.
    pub lines: Vec<DiffLine>,
}

/// The change of one path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileDiff {
    /// The repo-relative path.
    pub path: String,
    /// Added, modified or deleted.
    pub status: FileStatus,
    /// git's mode of the old version (`100644`, `100755`, `120000`), if it existed.
    pub old_mode: Option<String>,
    /// git's mode of the new version, if it exists.
    pub new_mode: Option<String>,
    /// Either version is binary: no hunks.
    pub binary: bool,
    /// Lines added.
    pub additions: usize,
    /// Lines removed.
    pub deletions: usize,
    /// The hunks (empty for a binary file or a change of mode only).
    pub hunks: Vec<DiffHunk>,
}

fn mode(entry: &Entry) -> &'static str {
    match entry {
        Entry::File {
            executable: true, ..
        } => "100755",
        Entry::File { .. } => "100644",
        Entry::Symlink { .. } => "120000",
    }
}

/// The bytes `entry` stands for: a file's content, a symlink's target.
fn content(store: &BlobStore, entry: &Entry) -> Result<Vec<u8>, MergeError> {
    Ok(match entry {
        Entry::File { hash, .. } => store.read(hash)?,
        Entry::Symlink { target, .. } => target.as_bytes().to_vec(),
    })
}

/// The diff of every path of `changes`, in path order, contents read from `store`.
pub fn diff_change_set(
    changes: &ChangeSet,
    store: &BlobStore,
) -> Result<Vec<FileDiff>, MergeError> {
    let mut files = Vec::with_capacity(changes.len());
    for (path, change) in changes.iter() {
        let before = change
            .before()
            .map(|e| content(store, e).map(|c| (e, c)))
            .transpose()?;
        let after = change
            .after()
            .map(|e| content(store, e).map(|c| (e, c)))
            .transpose()?;
        files.push(diff_file(
            path.as_str(),
            before.as_ref().map(|(e, c)| (*e, c.as_slice())),
            after.as_ref().map(|(e, c)| (*e, c.as_slice())),
        ));
    }
    Ok(files)
}

/// The diff of one path from `before` to `after` (each an entry and the bytes it stands for;
/// `None`: the path does not exist on that side).
pub fn diff_file(
    path: &str,
    before: Option<(&Entry, &[u8])>,
    after: Option<(&Entry, &[u8])>,
) -> FileDiff {
    let status = match (before, after) {
        (None, _) => FileStatus::Added,
        (_, None) => FileStatus::Deleted,
        _ => FileStatus::Modified,
    };
    let old = before.map_or(&[][..], |(_, c)| c);
    let new = after.map_or(&[][..], |(_, c)| c);
    let binary = is_binary(old) || is_binary(new);
    let mut file = FileDiff {
        path: path.to_owned(),
        status,
        old_mode: before.map(|(e, _)| mode(e).to_owned()),
        new_mode: after.map(|(e, _)| mode(e).to_owned()),
        binary,
        additions: 0,
        deletions: 0,
        hunks: Vec::new(),
    };
    if binary || old == new {
        return file;
    }
    file.hunks = hunks(old, new, CONTEXT_LINES);
    for line in file.hunks.iter().flat_map(|h| &h.lines) {
        match line.kind {
            LineKind::Added => file.additions += 1,
            LineKind::Removed => file.deletions += 1,
            LineKind::Context => {}
        }
    }
    file
}

/// The hunks turning `old` into `new`, with `context` lines around each change; changes whose
/// contexts touch or overlap share a hunk, as in git.
fn hunks(old: &[u8], new: &[u8], context: usize) -> Vec<DiffHunk> {
    let mut interner = Interner::default();
    let (fa, fb) = (interner.file(old), interner.file(new));
    let (a, b) = (&fa.lines, &fb.lines);
    let changes = diff(&fa.tokens, &fb.tokens);
    let mut out = Vec::new();
    let mut i = 0;
    while i < changes.len() {
        // Gather the changes whose contexts join.
        let mut j = i;
        while j + 1 < changes.len()
            && changes[j + 1].i1 - (changes[j].i1 + changes[j].chg1) <= 2 * context
        {
            j += 1;
        }
        let (first, last) = (changes[i], changes[j]);
        let old_from = first.i1.saturating_sub(context);
        let new_from = first.i2 - (first.i1 - old_from);
        let old_to = (last.i1 + last.chg1 + context).min(a.len());
        let new_to = last.i2 + last.chg2 + (old_to - (last.i1 + last.chg1));
        let mut lines = Vec::new();
        let line = |kind, bytes: &[u8]| {
            let no_newline = !bytes.ends_with(b"\n");
            let text = bytes.strip_suffix(b"\n").unwrap_or(bytes);
            DiffLine {
                kind,
                text: String::from_utf8_lossy(text).into_owned(),
                no_newline,
            }
        };
        let mut pos = old_from;
        for h in &changes[i..=j] {
            lines.extend(a[pos..h.i1].iter().map(|l| line(LineKind::Context, l)));
            lines.extend(
                a[h.i1..h.i1 + h.chg1]
                    .iter()
                    .map(|l| line(LineKind::Removed, l)),
            );
            lines.extend(
                b[h.i2..h.i2 + h.chg2]
                    .iter()
                    .map(|l| line(LineKind::Added, l)),
            );
            pos = h.i1 + h.chg1;
        }
        lines.extend(a[pos..old_to].iter().map(|l| line(LineKind::Context, l)));
        let start = |from: usize, count: usize| if count == 0 { from } else { from + 1 };
        out.push(DiffHunk {
            old_start: start(old_from, old_to - old_from),
            old_lines: old_to - old_from,
            new_start: start(new_from, new_to - new_from),
            new_lines: new_to - new_from,
            lines,
        });
        i = j + 1;
    }
    out
}

/// Terminal colors as `git diff` uses them by default.
struct Palette {
    meta: &'static str,
    frag: &'static str,
    old: &'static str,
    new: &'static str,
    reset: &'static str,
}

const COLORS: Palette = Palette {
    meta: "\x1b[1m",
    frag: "\x1b[36m",
    old: "\x1b[31m",
    new: "\x1b[32m",
    reset: "\x1b[m",
};

const PLAIN: Palette = Palette {
    meta: "",
    frag: "",
    old: "",
    new: "",
    reset: "",
};

impl FileDiff {
    /// The file's diff in `git diff`'s unified format (`diff --git` header, modes, `---`/`+++`,
    /// hunks), with git's default colors when `color` is set. There is no `index` line: Forge's
    /// content hashes are not git's object ids.
    pub fn render(&self, color: bool) -> String {
        let p = if color { &COLORS } else { &PLAIN };
        let mut s = String::new();
        let path = &self.path;
        let _ = writeln!(s, "{}diff --git a/{path} b/{path}{}", p.meta, p.reset);
        let header = |s: &mut String, line: String| {
            let _ = writeln!(s, "{}{line}{}", p.meta, p.reset);
        };
        match (&self.old_mode, &self.new_mode) {
            (None, Some(m)) => header(&mut s, format!("new file mode {m}")),
            (Some(m), None) => header(&mut s, format!("deleted file mode {m}")),
            (Some(o), Some(n)) if o != n => {
                header(&mut s, format!("old mode {o}"));
                header(&mut s, format!("new mode {n}"));
            }
            _ => {}
        }
        let old = if self.old_mode.is_some() {
            format!("a/{path}")
        } else {
            "/dev/null".to_owned()
        };
        let new = if self.new_mode.is_some() {
            format!("b/{path}")
        } else {
            "/dev/null".to_owned()
        };
        if self.binary {
            let _ = writeln!(s, "Binary files {old} and {new} differ");
            return s;
        }
        if self.hunks.is_empty() {
            return s;
        }
        header(&mut s, format!("--- {old}"));
        header(&mut s, format!("+++ {new}"));
        for h in &self.hunks {
            let range = |start: usize, count: usize| {
                if count == 1 {
                    format!("{start}")
                } else {
                    format!("{start},{count}")
                }
            };
            let _ = writeln!(
                s,
                "{}@@ -{} +{} @@{}",
                p.frag,
                range(h.old_start, h.old_lines),
                range(h.new_start, h.new_lines),
                p.reset
            );
            for line in &h.lines {
                let (sign, c) = match line.kind {
                    LineKind::Context => (' ', ""),
                    LineKind::Removed => ('-', p.old),
                    LineKind::Added => ('+', p.new),
                };
                let end = if c.is_empty() { "" } else { p.reset };
                let _ = writeln!(s, "{c}{sign}{}{end}", line.text);
                if line.no_newline {
                    s.push_str("\\ No newline at end of file\n");
                }
            }
        }
        s
    }
}

/// `git diff --stat`'s summary of `files`: one line per path with its count of changed lines
/// and a bar of `+` and `-` (scaled to at most 50 characters), then the totals.
pub fn render_stat(files: &[FileDiff], color: bool) -> String {
    const BAR: usize = 50;
    let p = if color { &COLORS } else { &PLAIN };
    let width = files
        .iter()
        .map(|f| f.path.chars().count())
        .max()
        .unwrap_or(0);
    let most = files
        .iter()
        .map(|f| f.additions + f.deletions)
        .max()
        .unwrap_or(0);
    let digits = most.max(1).to_string().len();
    let mut s = String::new();
    for f in files {
        let total = f.additions + f.deletions;
        if f.binary {
            let _ = writeln!(s, " {:width$} | Bin", f.path);
            continue;
        }
        let (plus, minus) = if most > BAR {
            let scale = |n: usize| (n * BAR).div_ceil(most);
            (scale(f.additions), scale(f.deletions))
        } else {
            (f.additions, f.deletions)
        };
        let _ = writeln!(
            s,
            " {:width$} | {total:>digits$} {}{}{}{}{}{}",
            f.path,
            p.new,
            "+".repeat(plus),
            if plus > 0 { p.reset } else { "" },
            p.old,
            "-".repeat(minus),
            if minus > 0 { p.reset } else { "" },
        );
    }
    let (add, del): (usize, usize) = files
        .iter()
        .fold((0, 0), |(a, d), f| (a + f.additions, d + f.deletions));
    let plural = |n: usize, one: &str, many: &str| {
        if n == 1 {
            format!("{n} {one}")
        } else {
            format!("{n} {many}")
        }
    };
    // Like git, a count of zero is left out (unless nothing changed at all).
    let _ = write!(
        s,
        " {}",
        plural(files.len(), "file changed", "files changed")
    );
    if add > 0 || del == 0 {
        let _ = write!(s, ", {}", plural(add, "insertion(+)", "insertions(+)"));
    }
    if del > 0 || add == 0 {
        let _ = write!(s, ", {}", plural(del, "deletion(-)", "deletions(-)"));
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hunks_join_when_contexts_touch_and_count_from_one() {
        let old = b"1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n14\n15\n16\n17\n18\n19\n20\n";
        let new =
            b"1\nTWO\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n14\n15\n16\n17\n18\nNINETEEN\n20\n";
        let h = hunks(old, new, 3);
        assert_eq!(h.len(), 2);
        assert_eq!((h[0].old_start, h[0].old_lines), (1, 5));
        assert_eq!((h[1].old_start, h[1].old_lines), (16, 5));
        let near = b"1\nTWO\n3\n4\n5\n6\n7\n8\nNINE\n10\n11\n12\n13\n14\n15\n16\n17\n18\n19\n20\n";
        assert_eq!(hunks(old, near, 3).len(), 1);
    }

    #[test]
    fn stat_leaves_out_a_zero_count_as_git_does() {
        let entry =
            |c: &[u8]| Entry::file(forge_staging::ContentHash::of(c), c.len() as u64, false);
        let new = b"a\nb\n";
        let added = diff_file("n.txt", None, Some((&entry(new), &new[..])));
        assert_eq!(
            render_stat(&[added], false),
            " n.txt | 2 ++\n 1 file changed, 2 insertions(+)\n"
        );
    }

    #[test]
    fn a_new_file_starts_at_zero() {
        let h = hunks(b"", b"a\nb", 3);
        assert_eq!(
            (
                h[0].old_start,
                h[0].old_lines,
                h[0].new_start,
                h[0].new_lines
            ),
            (0, 0, 1, 2)
        );
        assert!(h[0].lines[1].no_newline);
    }
}
