//! Claim patterns: validation, normalization, compilation to DFAs, exact overlap.
//!
//! A pattern is translated to an anchored regex by `globset` (the gitignore dialect with `*` kept
//! within a segment) and compiled once to a dense DFA by `regex-automata`. Two patterns overlap
//! iff the product of their DFAs and a third DFA describing normalized paths (non-empty segments,
//! no `.` or `..`) reaches a state where all three accept. A breadth-first walk of that product
//! over the joint byte classes decides it exactly, and the path it walks is the shortest common
//! path, which is what error messages show.
//!
//! Most pairs never reach the automata: patterns are interned (equal texts share one compiled
//! DFA), literal prefixes that diverge prove disjointness, and a literal path against a glob is a
//! single DFA run.

use std::collections::VecDeque;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, OnceLock, Weak};

use parking_lot::Mutex;
use regex_automata::dfa::{Automaton, StartKind, dense};
use regex_automata::util::primitives::StateID;
use regex_automata::util::start;
use regex_automata::{Anchored, util::syntax};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::LockError;

/// Bytes that make a pattern a glob rather than a literal path.
const GLOB_META: &[u8] = b"*?[{\\";

/// A validated, normalized, repo-relative path glob.
///
/// Syntax is gitignore's: `*` and `?` stay within one path segment, `**` as a whole segment spans
/// any number of segments, `[a-z]` / `[!a-z]` are classes, `{a,b}` alternatives, `\` escapes.
/// Patterns are anchored at the repository root (`*.rs` means top-level `.rs` files; write
/// `**/*.rs` for all of them). A trailing `/` means the whole subtree: `src/api/` is `src/api/**`.
/// A pattern without glob characters names exactly one file.
///
/// Normalization removes `./` segments and repeated `/`. Rejected: empty patterns, absolute paths,
/// `..` segments, anything inside `.git/` or `.forge/`, NUL bytes and malformed globs.
///
/// Patterns are cheap to clone (a reference count) and interned: parsing the same text twice
/// yields patterns sharing one compiled automaton, built on first use.
#[derive(Clone)]
pub struct Pattern(Arc<Inner>);

struct Inner {
    text: Box<str>,
    /// Unique per interned pattern: keys the overlap cache (addresses could be reused).
    id: u64,
    /// No glob metacharacters: the pattern is one path.
    literal: bool,
    /// Length of the literal prefix (bytes before the first metacharacter).
    prefix_len: usize,
    /// Length of the leading complete literal segments (for indexing), without a trailing `/`.
    key_len: usize,
    /// Those segments as interned ids: the index's trie is keyed by them.
    dir_ids: Box<[u32]>,
    /// Compiled on first use; boxed so that patterns never compared stay small.
    dfa: OnceLock<Option<Box<dense::DFA<Vec<u32>>>>>,
}

impl Pattern {
    /// Parses and normalizes a pattern.
    pub fn new(pattern: &str) -> Result<Self, LockError> {
        let text = normalize(pattern)?;
        Ok(intern(text))
    }

    /// The normalized pattern text, e.g. `src/api/**` for the input `./src//api/`.
    pub fn as_str(&self) -> &str {
        &self.0.text
    }

    /// Whether the pattern has no glob characters, i.e. names exactly one path.
    pub fn is_literal(&self) -> bool {
        self.0.literal
    }

    /// The leading segments that contain no glob characters, joined by `/` (`src/api` for
    /// `src/api/**/*.rs`, empty for `**/*.rs`). Every path the pattern matches starts with them.
    pub fn literal_dir(&self) -> &str {
        &self.0.text[..self.0.key_len]
    }

    /// The literal directory's segments as interned ids (empty at the root).
    pub(crate) fn dir_ids(&self) -> &[u32] {
        &self.0.dir_ids
    }

    /// Whether `path` (repo-relative, `/`-separated) matches the pattern.
    pub fn matches(&self, path: &str) -> bool {
        if self.0.literal {
            return *self.0.text == *path;
        }
        if !path
            .as_bytes()
            .starts_with(&self.0.text.as_bytes()[..self.0.prefix_len])
        {
            return false;
        }
        match self.dfa() {
            Some(dfa) => dfa_accepts(dfa, path.as_bytes()),
            None => false,
        }
    }

    /// Whether some normalized path matches both patterns. Decided exactly.
    ///
    /// ```
    /// use forge_locks::Pattern;
    /// let p = |s| Pattern::new(s).unwrap();
    /// assert!(!p("src/**/*.ts").overlaps(&p("src/**/*.md")));
    /// assert!(p("src/**").overlaps(&p("src/api/x.rs")));
    /// assert!(!p("*.rs").overlaps(&p("src/*.rs")));
    /// ```
    pub fn overlaps(&self, other: &Pattern) -> bool {
        if Arc::ptr_eq(&self.0, &other.0) {
            return true;
        }
        if let Some(known) = self.quick_overlap(other) {
            return known;
        }
        let key = if self.0.id < other.0.id {
            (self.0.id, other.0.id)
        } else {
            (other.0.id, self.0.id)
        };
        if let Some(&known) = OVERLAPS.lock().get(&key) {
            return known;
        }
        let found = self.search_common(other, false).is_some();
        let mut cache = OVERLAPS.lock();
        if cache.len() >= OVERLAP_CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, found);
        found
    }

    /// A concrete path both patterns match (the shortest, preferring readable characters), or
    /// `None` if they do not overlap. Used in error messages: "both claim `src/a.rs`".
    ///
    /// ```
    /// use forge_locks::Pattern;
    /// let p = |s| Pattern::new(s).unwrap();
    /// assert_eq!(p("src/**").example_common_path(&p("**/*.rs")).as_deref(), Some("src/a.rs"));
    /// assert_eq!(p("*.rs").example_common_path(&p("src/*.rs")), None);
    /// ```
    pub fn example_common_path(&self, other: &Pattern) -> Option<String> {
        if self.0.literal {
            return other.matches(&self.0.text).then(|| self.0.text.to_string());
        }
        if other.0.literal {
            return self
                .matches(&other.0.text)
                .then(|| other.0.text.to_string());
        }
        if self.quick_overlap(other) == Some(false) {
            return None;
        }
        self.search_common(other, true)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Answers without automata when the literal parts decide.
    fn quick_overlap(&self, other: &Pattern) -> Option<bool> {
        let (a, b) = (&self.0, &other.0);
        if a.literal && b.literal {
            return Some(a.text == b.text);
        }
        if a.literal {
            return Some(other.matches(&a.text));
        }
        if b.literal {
            return Some(self.matches(&b.text));
        }
        let (pa, pb) = (
            &a.text.as_bytes()[..a.prefix_len],
            &b.text.as_bytes()[..b.prefix_len],
        );
        if !pa.starts_with(pb) && !pb.starts_with(pa) {
            return Some(false);
        }
        None
    }

    fn dfa(&self) -> Option<&dense::DFA<Vec<u32>>> {
        self.0
            .dfa
            .get_or_init(|| compile_regex(&glob_regex(&self.0.text)?).map(Box::new))
            .as_deref()
    }

    /// Breadth-first search of the product automaton; returns the path when `want_path`.
    /// Paths are first sought without hidden segments (`src/a.ts` reads better than
    /// `src/.ts`), then among all normalized paths.
    fn search_common(&self, other: &Pattern, want_path: bool) -> Option<Vec<u8>> {
        let (Some(a), Some(b)) = (self.dfa(), other.dfa()) else {
            return None;
        };
        if want_path
            && let Some(plain) = plain_path_dfa()
            && let Some(path) = product_search([a, b, plain], true)
        {
            return Some(path);
        }
        product_search([a, b, valid_path_dfa()?], want_path)
    }
}

fn glob_regex(text: &str) -> Option<String> {
    globset::GlobBuilder::new(text)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .ok()
        .map(|g| g.regex().to_owned())
}

fn compile_regex(regex: &str) -> Option<dense::DFA<Vec<u32>>> {
    dense::Builder::new()
        .syntax(
            syntax::Config::new()
                .utf8(false)
                .unicode(false)
                .dot_matches_new_line(true),
        )
        .thompson(regex_automata::nfa::thompson::Config::new().utf8(false))
        .configure(dense::Config::new().start_kind(StartKind::Anchored))
        .build(regex)
        .ok()
}

/// Normalized repo-relative paths: non-empty segments separated by single `/`, none of them `.`
/// or `..`. Intersecting with this keeps `a/*/b` from "overlapping" `a//b`.
fn valid_path_dfa() -> Option<&'static dense::DFA<Vec<u32>>> {
    static VALID: LazyLock<Option<dense::DFA<Vec<u32>>>> = LazyLock::new(|| {
        let segment = r"(?:[^/.][^/]*|\.[^/.][^/]*|\.\.[^/]+)";
        compile_regex(&format!(r"(?-u)^{segment}(?:/{segment})*$"))
    });
    VALID.as_ref()
}

/// Normalized paths without hidden (dot-first) segments: preferred for examples.
fn plain_path_dfa() -> Option<&'static dense::DFA<Vec<u32>>> {
    static PLAIN: LazyLock<Option<dense::DFA<Vec<u32>>>> =
        LazyLock::new(|| compile_regex(r"(?-u)^[^/.][^/]*(?:/[^/.][^/]*)*$"));
    PLAIN.as_ref()
}

fn start_state(dfa: &dense::DFA<Vec<u32>>) -> Option<StateID> {
    dfa.start_state(&start::Config::new().anchored(Anchored::Yes))
        .ok()
}

fn dfa_accepts(dfa: &dense::DFA<Vec<u32>>, bytes: &[u8]) -> bool {
    let Some(mut state) = start_state(dfa) else {
        return false;
    };
    for &b in bytes {
        state = dfa.next_state(state, b);
        if dfa.is_dead_state(state) {
            return false;
        }
    }
    dfa.is_match_state(dfa.next_eoi_state(state))
}

/// Bytes in the order we like to show them in example paths.
static BYTE_PREFERENCE: LazyLock<[u8; 256]> = LazyLock::new(|| {
    let mut order: Vec<u8> = Vec::with_capacity(256);
    order.extend(b'a'..=b'z');
    order.extend(b'0'..=b'9');
    order.extend(b"._-/");
    order.extend(b'A'..=b'Z');
    order.extend(
        (0x21..0x7f)
            .filter(|b: &u8| !order.contains(b))
            .collect::<Vec<_>>(),
    );
    order.extend(
        (0u8..=255)
            .filter(|b| !order.contains(b))
            .collect::<Vec<_>>(),
    );
    let mut out = [0u8; 256];
    out.copy_from_slice(&order);
    out
});

/// One representative byte per joint equivalence class of the given DFAs, readable ones first.
fn joint_representatives<const N: usize>(dfas: [&dense::DFA<Vec<u32>>; N]) -> Vec<u8> {
    let mut seen: FxHashSet<[u8; N]> = FxHashSet::default();
    let mut reps = Vec::new();
    for &byte in BYTE_PREFERENCE.iter() {
        let key = dfas.map(|d| d.byte_classes().get(byte));
        if seen.insert(key) {
            reps.push(byte);
        }
    }
    reps
}

fn product_search<const N: usize>(
    dfas: [&dense::DFA<Vec<u32>>; N],
    want_path: bool,
) -> Option<Vec<u8>> {
    let mut start = [StateID::ZERO; N];
    for (slot, dfa) in start.iter_mut().zip(dfas) {
        *slot = start_state(dfa)?;
    }
    let reps = joint_representatives(dfas);
    let accepts = |states: &[StateID; N]| {
        states
            .iter()
            .zip(dfas)
            .all(|(&s, d)| d.is_match_state(d.next_eoi_state(s)))
    };
    // Parent links (state tuple -> (previous tuple, byte)) only when a path is wanted.
    let mut parents: FxHashMap<[StateID; N], ([StateID; N], u8)> = FxHashMap::default();
    let mut seen: FxHashSet<[StateID; N]> = FxHashSet::default();
    let mut queue = VecDeque::new();
    seen.insert(start);
    queue.push_back(start);
    while let Some(states) = queue.pop_front() {
        if accepts(&states) {
            if !want_path {
                return Some(Vec::new());
            }
            let mut path = Vec::new();
            let mut cur = states;
            while let Some(&(prev, byte)) = parents.get(&cur) {
                path.push(byte);
                cur = prev;
            }
            path.reverse();
            return Some(path);
        }
        'bytes: for &byte in &reps {
            let mut next = states;
            for (slot, dfa) in next.iter_mut().zip(dfas) {
                *slot = dfa.next_state(*slot, byte);
                if dfa.is_dead_state(*slot) {
                    continue 'bytes;
                }
            }
            if seen.insert(next) {
                if want_path {
                    parents.insert(next, (states, byte));
                }
                queue.push_back(next);
            }
        }
    }
    None
}

/// Validates and normalizes pattern text.
fn normalize(pattern: &str) -> Result<String, LockError> {
    let invalid = |reason: &str| LockError::InvalidPattern {
        pattern: pattern.to_owned(),
        reason: reason.to_owned(),
    };
    if pattern.trim().is_empty() {
        return Err(invalid("the pattern is empty"));
    }
    if pattern.contains('\0') {
        return Err(invalid("the pattern contains a NUL byte"));
    }
    if pattern.starts_with('/') || pattern.starts_with('\\') || has_drive_prefix(pattern) {
        return Err(invalid(
            "absolute paths are not allowed; write the path relative to the repository root",
        ));
    }
    // Already normal (the usual case): no empty, `.` or `..` segment, no trailing `/`.
    let clean = !pattern.ends_with('/')
        && pattern.split('/').all(|seg| {
            !seg.is_empty() && seg != "." && seg != ".." && !seg.eq_ignore_ascii_case(".git")
        })
        && !pattern.starts_with(".forge/")
        && pattern != ".forge";
    if clean {
        return check_syntax(pattern.to_owned(), invalid);
    }
    let subtree = pattern.ends_with('/');
    let mut segments: Vec<&str> = Vec::new();
    for segment in pattern.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Err(invalid("`..` segments are not allowed")),
            s if s.eq_ignore_ascii_case(".git") => {
                return Err(invalid("paths inside `.git/` cannot be claimed"));
            }
            s => segments.push(s),
        }
    }
    if segments.first() == Some(&".forge") {
        return Err(invalid("paths inside `.forge/` cannot be claimed"));
    }
    if segments.is_empty() {
        return Err(invalid("the pattern names no path"));
    }
    if subtree && segments.last() != Some(&"**") {
        segments.push("**");
    }
    check_syntax(segments.join("/"), invalid)
}

/// Literal paths and literal subtrees (`dir/**`) are always well-formed; anything else is
/// checked by globset, whose dialect it is.
fn check_syntax(text: String, invalid: impl Fn(&str) -> LockError) -> Result<String, LockError> {
    let literal_part = text.strip_suffix("/**").unwrap_or(&text);
    if literal_part.bytes().any(|b| GLOB_META.contains(&b)) {
        globset::GlobBuilder::new(&text)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| invalid(&e.kind().to_string()))?;
    }
    Ok(text)
}

/// `C:` style prefixes: refused so that a Windows absolute path is not taken for a relative one.
fn has_drive_prefix(pattern: &str) -> bool {
    let b = pattern.as_bytes();
    b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':'
}

/// Interned patterns by text. Entries are weak, so dropping every copy of a pattern frees it;
/// dead entries are swept when the table doubles.
struct Interner {
    map: FxHashMap<Box<str>, Weak<Inner>>,
    sweep_at: usize,
}

static INTERNER: LazyLock<Mutex<Interner>> = LazyLock::new(|| {
    Mutex::new(Interner {
        map: FxHashMap::default(),
        sweep_at: 1024,
    })
});

/// Overlap answers between interned patterns, by pattern id (cleared when full).
static OVERLAPS: LazyLock<Mutex<FxHashMap<(u64, u64), bool>>> =
    LazyLock::new(|| Mutex::new(FxHashMap::default()));
const OVERLAP_CACHE_MAX: usize = 1 << 16;

/// Interned path segments (directory and file names of literal directories). Like a symbol
/// table it only grows: it holds each distinct name once.
static SEGMENTS: LazyLock<Mutex<FxHashMap<Box<str>, u32>>> =
    LazyLock::new(|| Mutex::new(FxHashMap::default()));

fn segment_id(segment: &str) -> u32 {
    let mut segments = SEGMENTS.lock();
    if let Some(&id) = segments.get(segment) {
        return id;
    }
    let id = u32::try_from(segments.len()).unwrap_or(u32::MAX);
    segments.insert(segment.into(), id);
    id
}

fn intern(text: String) -> Pattern {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    let mut interner = INTERNER.lock();
    if let Some(inner) = interner.map.get(text.as_str()).and_then(Weak::upgrade) {
        return Pattern(inner);
    }
    let bytes = text.as_bytes();
    let prefix_len = bytes
        .iter()
        .position(|b| GLOB_META.contains(b))
        .unwrap_or(bytes.len());
    let literal = prefix_len == bytes.len();
    let key_len = if literal {
        bytes.len()
    } else {
        bytes[..prefix_len]
            .iter()
            .rposition(|&b| b == b'/')
            .unwrap_or(0)
    };
    let dir_ids: Box<[u32]> = if key_len == 0 {
        Box::default()
    } else {
        text[..key_len].split('/').map(segment_id).collect()
    };
    let inner = Arc::new(Inner {
        text: text.into_boxed_str(),
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        literal,
        prefix_len,
        key_len,
        dir_ids,
        dfa: OnceLock::new(),
    });
    interner
        .map
        .insert(inner.text.clone(), Arc::downgrade(&inner));
    if interner.map.len() >= interner.sweep_at {
        interner.map.retain(|_, weak| weak.strong_count() > 0);
        interner.sweep_at = (interner.map.len() * 2).max(1024);
    }
    Pattern(inner)
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.text == other.0.text
    }
}

impl Eq for Pattern {}

impl Hash for Pattern {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.text.hash(state);
    }
}

impl PartialOrd for Pattern {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pattern {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.text.cmp(&other.0.text)
    }
}

impl FromStr for Pattern {
    type Err = LockError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.text)
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0.text, f)
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.text)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        Pattern::new(s).unwrap()
    }

    #[test]
    fn normalizes() {
        for (input, want) in [
            ("src/main.rs", "src/main.rs"),
            ("./src//api/", "src/api/**"),
            ("src/api/**", "src/api/**"),
            ("src/api/**/", "src/api/**"),
            ("{a,b}/**", "{a,b}/**"),
            ("docs/./*.md", "docs/*.md"),
        ] {
            assert_eq!(p(input).as_str(), want, "{input}");
        }
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "  ",
            "/etc/passwd",
            "\\x",
            "C:/x",
            "a/../b",
            "..",
            ".git/config",
            "a/.GIT/x",
            ".forge/runs",
            ".",
            "./",
            "a\0b",
            "src/[a",
            "{a,b",
        ] {
            let err = Pattern::new(bad).unwrap_err();
            assert!(
                matches!(&err, LockError::InvalidPattern { pattern, .. } if pattern == bad),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn interned_patterns_share_state() {
        let a = p("src/**/*.rs");
        let b = p("./src/**/*.rs");
        assert!(Arc::ptr_eq(&a.0, &b.0));
        assert_eq!(a, b);
    }

    #[test]
    fn literal_parts() {
        assert!(p("src/main.rs").is_literal());
        assert_eq!(p("src/main.rs").literal_dir(), "src/main.rs");
        assert_eq!(p("src/api/**/*.rs").literal_dir(), "src/api");
        assert_eq!(p("src/a*.rs").literal_dir(), "src");
        assert_eq!(p("**/*.rs").literal_dir(), "");
        assert_eq!(p("{a,b}/x").literal_dir(), "");
        assert!(!p("a\\*b").is_literal());
    }

    #[test]
    fn matching() {
        let cases = [
            ("src/main.rs", "src/main.rs", true),
            ("src/main.rs", "src/main.rsx", false),
            ("src/**", "src/api/x.rs", true),
            ("src/**", "src", false),
            ("src/api/", "src/api/deep/x", true),
            ("*.rs", "main.rs", true),
            ("*.rs", "src/main.rs", false),
            ("**/*.rs", "main.rs", true),
            ("**/*.rs", "a/b/c.rs", true),
            ("src/**/*.ts", "src/x.ts", true),
            ("src/**/*.ts", "src/a/b/x.ts", true),
            ("src/**/*.ts", "src/a/b/x.md", false),
            ("{a,b}/**", "b/x", true),
            ("{a,b}/**", "c/x", false),
            ("docs/?.md", "docs/a.md", true),
            ("docs/?.md", "docs/ab.md", false),
            ("[a-c]x", "bx", true),
            ("[!a-c]x", "dx", true),
            ("[!a-c]x", "ax", false),
            ("a/*/b", "a/x/b", true),
            ("a/*/b", "a/x/y/b", false),
            ("a\\*b", "a*b", true),
            ("a\\*b", "axb", false),
            ("line\nbreak/**", "line\nbreak/x", true),
            ("**", "anything/at/all", true),
        ];
        for (pattern, path, want) in cases {
            assert_eq!(p(pattern).matches(path), want, "{pattern} ~ {path}");
        }
    }

    #[test]
    fn overlap_examples_from_the_issue() {
        assert!(!p("src/**/*.ts").overlaps(&p("src/**/*.md")));
        assert!(p("src/**").overlaps(&p("src/api/x.rs")));
        assert!(p("src/api/x.rs").overlaps(&p("src/**")));
        assert!(!p("*.rs").overlaps(&p("src/*.rs")));
    }

    #[test]
    fn overlap_more_cases() {
        let cases = [
            ("src/**", "src/api/**", true),
            ("src/api/**", "src/apix/**", false),
            ("**/*.rs", "src/*.rs", true),
            ("**/*.rs", "**/*.md", false),
            ("{a,b}/**", "b/c/d", true),
            ("{a,b}/**", "c/**", false),
            ("docs/*.md", "docs/guide/*.md", false),
            ("docs/*.md", "docs/[a-m]*", true),
            ("a/*/b", "a/b", false),
            ("x?", "?y", true),
            ("[ab]", "[bc]", true),
            ("[ab]", "[cd]", false),
            ("**/x", "x", true),
            ("src/**/mod.rs", "src/*/mod.rs", true),
            ("*", "**/*.rs", true),
            ("*", "a/*", false),
        ];
        for (a, b, want) in cases {
            assert_eq!(p(a).overlaps(&p(b)), want, "{a} vs {b}");
            assert_eq!(p(b).overlaps(&p(a)), want, "{b} vs {a}");
            let example = p(a).example_common_path(&p(b));
            assert_eq!(example.is_some(), want, "{a} vs {b}: {example:?}");
            if let Some(path) = example {
                assert!(
                    p(a).matches(&path) && p(b).matches(&path),
                    "{a} vs {b}: {path}"
                );
            }
        }
    }

    #[test]
    fn examples_are_readable() {
        assert_eq!(
            p("src/**/*.ts").example_common_path(&p("src/*")).as_deref(),
            Some("src/a.ts")
        );
        assert_eq!(
            p("{a,b}/**").example_common_path(&p("*/x")).as_deref(),
            Some("a/x")
        );
        assert_eq!(
            p("src/a.rs").example_common_path(&p("src/**")).as_deref(),
            Some("src/a.rs")
        );
    }
}
