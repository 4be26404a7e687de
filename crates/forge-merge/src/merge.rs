//! Merging one path three ways: what kind of entry it is (file, symlink, absent), its content
//! (line by line for text) and its exec bit; and settling a conflict with the path's strategy.

use std::path::Path;
use std::time::Duration;

use forge_staging::{BlobStore, ContentHash, Entry, RepoPath};

use crate::driver::{CommandRunner, DriverInput, DriverResult, run_driver};
use crate::text::{ConflictRegion, ConflictStyle, Favor, TextMergeOptions, split_lines};
use crate::{
    Conflict, ConflictHunk, ConflictKind, MergeError, MergeStrategy, Party, is_binary, merge_text,
};

/// Settles conflicts for the [`MergeStrategy::Agent`] strategy.
///
/// forge-merge cannot run agents itself (it depends on no process manager): the caller plugs one
/// in here. Without a resolver, an `agent` conflict makes the outcome ask for the task to be
/// re-run on top of the integrated tree ([`crate::IntegrationStatus::NeedsRerun`]), which is what
/// forge-exec's `ExecutionManager` does with the conflict described to the agent.
pub trait Resolver: Send + Sync {
    /// Settles one conflict, or says it cannot.
    fn resolve(&self, request: &ResolveRequest<'_>) -> Result<Resolution, MergeError>;
}

/// A conflict handed to a [`Resolver`], with the contents involved (`None` where that version
/// is absent or not a regular file).
#[derive(Debug)]
pub struct ResolveRequest<'a> {
    /// The conflict: path, kind, tasks, hunks.
    pub conflict: &'a Conflict,
    /// The common ancestor's content.
    pub base: Option<&'a [u8]>,
    /// The first side's content (the task earlier in task order).
    pub first: Option<&'a [u8]>,
    /// The second side's content.
    pub second: Option<&'a [u8]>,
    /// The whole file with diff3 markers, for text conflicts.
    pub marked: Option<&'a [u8]>,
}

/// What a [`Resolver`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The path becomes a regular file with this content.
    Content(Vec<u8>),
    /// The path is deleted.
    Delete,
    /// Re-run the finishing task on top of the integrated tree.
    Rerun,
    /// Not settled, with the reason; the integrated tree keeps its side.
    Unresolved(String),
}

/// One side of a merge: what it holds at the path, and who made it so (for markers and reports).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Side<'a> {
    pub(crate) entry: Option<&'a Entry>,
    pub(crate) label: &'a str,
}

/// How a conflict is settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Settle {
    /// The path gets this entry (`None`: deleted).
    Take(Option<Entry>),
    /// The path keeps what the integrated tree (or the working tree) holds.
    Keep,
    /// The finishing task must run again on top of the integrated tree.
    Rerun,
}

/// The result of merging one path.
#[derive(Debug)]
pub(crate) enum PathResult {
    /// No conflict: the entry the path gets (`None`: absent).
    Clean(Option<Entry>),
    /// A conflict, and how the strategy settled it.
    Conflict { conflict: Conflict, settle: Settle },
}

/// Everything a path merge needs besides the three versions.
pub(crate) struct PathMerger<'a> {
    pub(crate) store: &'a BlobStore,
    /// Where merge drivers run (the repository's top directory).
    pub(crate) repo: &'a Path,
    pub(crate) resolver: Option<&'a dyn Resolver>,
    pub(crate) driver_timeout: Duration,
    /// What runs merge drivers.
    pub(crate) driver_runner: &'a dyn CommandRunner,
}

/// The exec bit of a merged file: agreed, or both sides added the file with different bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exec {
    Agreed(bool),
    Clash { first: bool, second: bool },
}

impl Exec {
    fn merge(base: Option<bool>, first: bool, second: bool) -> Self {
        match base {
            Some(b) => Self::Agreed(if first == b { second } else { first }),
            None if first == second => Self::Agreed(first),
            None => Self::Clash { first, second },
        }
    }

    /// The bit a resolution takes: the favoured side's when they clash, else the agreed one.
    fn pick(self, favor: Favor) -> bool {
        match (self, favor) {
            (Self::Agreed(e), _) => e,
            (Self::Clash { first, .. }, Favor::Ours) => first,
            (Self::Clash { second, .. }, Favor::Theirs) => second,
            (Self::Clash { first, second }, Favor::Union) => first || second,
        }
    }
}

/// A regular file's hash and exec bit.
fn as_file(entry: &Entry) -> Option<(ContentHash, bool)> {
    match entry {
        Entry::File {
            hash, executable, ..
        } => Some((*hash, *executable)),
        Entry::Symlink { .. } => None,
    }
}

/// The three contents of a file conflict.
struct Contents {
    base: Vec<u8>,
    first: Vec<u8>,
    second: Vec<u8>,
    has_base: bool,
}

impl PathMerger<'_> {
    /// Merges `first` and `second`, both derived from `base`, at `path`.
    ///
    /// `tasks` lists the tasks involved for the report (integrated earlier first, the finishing
    /// task last); a conflict is settled by `strategy`.
    pub(crate) fn merge(
        &self,
        path: &RepoPath,
        base: Option<&Entry>,
        first: Side<'_>,
        second: Side<'_>,
        strategy: &MergeStrategy,
        tasks: Vec<Party>,
    ) -> Result<PathResult, MergeError> {
        let clean = |entry: Option<&Entry>| PathResult::Clean(entry.cloned());
        if first.entry == second.entry || second.entry == base {
            return Ok(clean(first.entry));
        }
        if first.entry == base {
            return Ok(clean(second.entry));
        }
        let base_file = match base {
            None => Some(None),
            Some(b) => as_file(b).map(Some),
        };
        let files = (
            base_file,
            first.entry.and_then(as_file),
            second.entry.and_then(as_file),
        );
        let (Some(base_file), Some(f1), Some(f2)) = files else {
            let kind = if first.entry.is_none() || second.entry.is_none() {
                ConflictKind::ModifyDelete
            } else {
                ConflictKind::Symlink
            };
            let conflict = Conflict::new(path.clone(), kind, tasks, strategy.clone());
            return self.settle_whole(conflict, strategy, first, second, None);
        };

        self.merge_files(path, base_file, f1, f2, first, second, strategy, tasks)
    }

    /// Merges two regular files (`f1`, `f2`: hash and exec bit; `base_file` likewise, `None`
    /// when both sides added the path).
    #[allow(clippy::too_many_arguments)]
    fn merge_files(
        &self,
        path: &RepoPath,
        base_file: Option<(ContentHash, bool)>,
        f1: (ContentHash, bool),
        f2: (ContentHash, bool),
        first: Side<'_>,
        second: Side<'_>,
        strategy: &MergeStrategy,
        tasks: Vec<Party>,
    ) -> Result<PathResult, MergeError> {
        let exec = Exec::merge(base_file.map(|(_, e)| e), f1.1, f2.1);
        let file = |hash, size, executable| Some(Entry::file(hash, size, executable));
        if f1.0 == f2.0 {
            return match exec {
                Exec::Agreed(e) => Ok(PathResult::Clean(file(
                    f1.0,
                    first.entry.map_or(0, Entry::size),
                    e,
                ))),
                Exec::Clash { .. } => {
                    let mut conflict =
                        Conflict::new(path.clone(), ConflictKind::AddAdd, tasks, strategy.clone());
                    conflict.note = Some("same content, different exec bits".to_owned());
                    self.settle_whole(conflict, strategy, first, second, None)
                }
            };
        }
        if let Some((base_hash, base_exec)) = base_file {
            // With a base, the exec bits always agree: whichever side kept the base's bit
            // takes the other side's.
            let e = if f1.1 == base_exec { f2.1 } else { f1.1 };
            if base_hash == f1.0 {
                return Ok(PathResult::Clean(file(
                    f2.0,
                    second.entry.map_or(0, Entry::size),
                    e,
                )));
            }
            if base_hash == f2.0 {
                return Ok(PathResult::Clean(file(
                    f1.0,
                    first.entry.map_or(0, Entry::size),
                    e,
                )));
            }
        }

        let contents = Contents {
            base: match base_file {
                Some((h, _)) => self.store.read(&h)?,
                None => Vec::new(),
            },
            first: self.store.read(&f1.0)?,
            second: self.store.read(&f2.0)?,
            has_base: base_file.is_some(),
        };
        let binary =
            is_binary(&contents.base) || is_binary(&contents.first) || is_binary(&contents.second);
        if !binary && let Exec::Agreed(e) = exec {
            let merged = merge_text(
                &contents.base,
                &contents.first,
                &contents.second,
                &TextMergeOptions::default(),
            );
            if merged.is_clean() {
                let hash = self.store.write(&merged.content)?;
                return Ok(PathResult::Clean(file(
                    hash,
                    merged.content.len() as u64,
                    e,
                )));
            }
        }
        let kind = if base_file.is_none() {
            ConflictKind::AddAdd
        } else if binary {
            ConflictKind::Binary
        } else {
            ConflictKind::Content
        };
        let mut conflict = Conflict::new(path.clone(), kind, tasks, strategy.clone());
        let mut marked = None;
        if !binary {
            let m = merge_text(
                &contents.base,
                &contents.first,
                &contents.second,
                &TextMergeOptions {
                    style: ConflictStyle::Diff3,
                    ..TextMergeOptions::labelled(first.label, "base", second.label)
                },
            );
            conflict.hunks = hunks(&m.regions, &contents, first.label, second.label);
            conflict.marked = Some(self.store.write(&m.content)?);
            marked = Some(m.content);
        }
        self.settle_files(
            conflict,
            strategy,
            first,
            second,
            &contents,
            exec,
            binary,
            marked.as_deref(),
        )
    }

    /// Settles a conflict between two regular files.
    #[allow(clippy::too_many_arguments)]
    fn settle_files(
        &self,
        mut conflict: Conflict,
        strategy: &MergeStrategy,
        first: Side<'_>,
        second: Side<'_>,
        contents: &Contents,
        exec: Exec,
        binary: bool,
        marked: Option<&[u8]>,
    ) -> Result<PathResult, MergeError> {
        let favor = match strategy {
            MergeStrategy::Ours => Some(Favor::Ours),
            MergeStrategy::Theirs => Some(Favor::Theirs),
            MergeStrategy::Union => Some(Favor::Union),
            _ => None,
        };
        let settle = match (strategy, favor) {
            (_, Some(Favor::Union)) if binary => {
                conflict.note = Some("`union` merges text files only".to_owned());
                Settle::Keep
            }
            (_, Some(Favor::Ours)) if binary => Settle::Take(first.entry.cloned()),
            (_, Some(Favor::Theirs)) if binary => Settle::Take(second.entry.cloned()),
            (_, Some(favor)) => {
                let m = merge_text(
                    &contents.base,
                    &contents.first,
                    &contents.second,
                    &TextMergeOptions {
                        favor: Some(favor),
                        ..TextMergeOptions::default()
                    },
                );
                self.take_content(&m.content, exec.pick(favor))?
            }
            (MergeStrategy::Driver(command), _) => {
                let input = DriverInput {
                    path: &conflict.path,
                    base: &contents.base,
                    first: &contents.first,
                    second: &contents.second,
                    labels: ["base", first.label, second.label],
                };
                match run_driver(
                    command,
                    self.repo,
                    &input,
                    self.driver_timeout,
                    self.driver_runner,
                )? {
                    DriverResult::Resolved(content) => {
                        self.take_content(&content, exec.pick(Favor::Union))?
                    }
                    DriverResult::Failed(why) => {
                        conflict.note = Some(why);
                        Settle::Keep
                    }
                }
            }
            (MergeStrategy::Agent, _) => {
                let request = ResolveRequest {
                    conflict: &conflict,
                    base: contents.has_base.then_some(contents.base.as_slice()),
                    first: Some(&contents.first),
                    second: Some(&contents.second),
                    marked,
                };
                let (settle, note) = self.ask_agent(&request, exec.pick(Favor::Ours))?;
                conflict.note = note;
                settle
            }
            _ => Settle::Keep,
        };
        conflict.resolved = matches!(settle, Settle::Take(_));
        Ok(PathResult::Conflict { conflict, settle })
    }

    /// Settles a conflict that is not between two regular files' contents: a side is taken
    /// whole, or nothing.
    fn settle_whole(
        &self,
        mut conflict: Conflict,
        strategy: &MergeStrategy,
        first: Side<'_>,
        second: Side<'_>,
        base: Option<&[u8]>,
    ) -> Result<PathResult, MergeError> {
        let read = |side: Side<'_>| -> Result<Option<Vec<u8>>, MergeError> {
            match side.entry.and_then(as_file) {
                Some((hash, _)) => Ok(Some(self.store.read(&hash)?)),
                None => Ok(None),
            }
        };
        let settle = match strategy {
            MergeStrategy::Fail => Settle::Keep,
            MergeStrategy::Ours => Settle::Take(first.entry.cloned()),
            MergeStrategy::Theirs => Settle::Take(second.entry.cloned()),
            MergeStrategy::Union => {
                conflict.note = Some("`union` merges the lines of two text files only".to_owned());
                Settle::Keep
            }
            MergeStrategy::Driver(_) => {
                conflict.note =
                    Some("merge drivers merge the contents of two regular files only".to_owned());
                Settle::Keep
            }
            MergeStrategy::Agent => {
                let (c1, c2) = (read(first)?, read(second)?);
                let request = ResolveRequest {
                    conflict: &conflict,
                    base,
                    first: c1.as_deref(),
                    second: c2.as_deref(),
                    marked: None,
                };
                let exec = first
                    .entry
                    .or(second.entry)
                    .is_some_and(Entry::is_executable);
                let (settle, note) = self.ask_agent(&request, exec)?;
                conflict.note = note;
                settle
            }
        };
        conflict.resolved = matches!(settle, Settle::Take(_));
        Ok(PathResult::Conflict { conflict, settle })
    }

    fn ask_agent(
        &self,
        request: &ResolveRequest<'_>,
        executable: bool,
    ) -> Result<(Settle, Option<String>), MergeError> {
        let Some(resolver) = self.resolver else {
            return Ok((Settle::Rerun, None));
        };
        Ok(match resolver.resolve(request)? {
            Resolution::Content(content) => (self.take_content(&content, executable)?, None),
            Resolution::Delete => (Settle::Take(None), None),
            Resolution::Rerun => (Settle::Rerun, None),
            Resolution::Unresolved(why) => (Settle::Keep, Some(why)),
        })
    }

    fn take_content(&self, content: &[u8], executable: bool) -> Result<Settle, MergeError> {
        let hash = self.store.write(content)?;
        Ok(Settle::Take(Some(Entry::file(
            hash,
            content.len() as u64,
            executable,
        ))))
    }
}

/// The conflict's hunks, from a diff3 merge's regions.
fn hunks(regions: &[ConflictRegion], c: &Contents, first: &str, second: &str) -> Vec<ConflictHunk> {
    let (base, ours, theirs) = (
        split_lines(&c.base),
        split_lines(&c.first),
        split_lines(&c.second),
    );
    regions
        .iter()
        .map(|r| {
            let mut text = Vec::new();
            let mut block = |marker: &str, lines: &[&[u8]]| {
                text.extend_from_slice(marker.as_bytes());
                text.push(b'\n');
                for line in lines {
                    text.extend_from_slice(line);
                }
                if lines.last().is_some_and(|l| l.last() != Some(&b'\n')) {
                    text.push(b'\n');
                }
            };
            block(&format!("<<<<<<< {first}"), &ours[r.ours.clone()]);
            block("||||||| base", &base[r.base.clone()]);
            block("=======", &theirs[r.theirs.clone()]);
            text.extend_from_slice(format!(">>>>>>> {second}\n").as_bytes());
            ConflictHunk {
                base: r.base.clone(),
                first: r.ours.clone(),
                second: r.theirs.clone(),
                text: truncate(String::from_utf8_lossy(&text).into_owned()),
            }
        })
        .collect()
}

fn truncate(mut text: String) -> String {
    if text.len() > ConflictHunk::TEXT_LIMIT {
        let mut cut = ConflictHunk::TEXT_LIMIT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        _dir: tempfile::TempDir,
        store: BlobStore,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path().join("objects")).unwrap();
        Fixture { _dir: dir, store }
    }

    impl Fixture {
        fn file(&self, content: &str, exec: bool) -> Entry {
            let h = self.store.write(content.as_bytes()).unwrap();
            Entry::file(h, content.len() as u64, exec)
        }

        fn merger(&self) -> PathMerger<'_> {
            PathMerger {
                store: &self.store,
                repo: Path::new("/"),
                resolver: None,
                driver_timeout: Duration::from_secs(10),
                driver_runner: &crate::StandaloneRunner,
            }
        }

        fn run(
            &self,
            base: Option<&Entry>,
            a: Option<&Entry>,
            b: Option<&Entry>,
            strategy: &MergeStrategy,
        ) -> PathResult {
            self.merger()
                .merge(
                    &RepoPath::new("f.txt").unwrap(),
                    base,
                    Side {
                        entry: a,
                        label: "t1",
                    },
                    Side {
                        entry: b,
                        label: "t2",
                    },
                    strategy,
                    vec![
                        Party::Task(crate::TaskId::new("t1").unwrap()),
                        Party::Task(crate::TaskId::new("t2").unwrap()),
                    ],
                )
                .unwrap()
        }

        fn content(&self, e: &Entry) -> String {
            String::from_utf8(self.store.read(&e.hash()).unwrap()).unwrap()
        }
    }

    #[test]
    fn exec_bits_merge_independently_of_content() {
        let f = fixture();
        let base = f.file("a\nb\nc\nd\n", false);
        let ours = f.file("A\nb\nc\nd\n", true);
        let theirs = f.file("a\nb\nc\nD\n", false);
        let PathResult::Clean(Some(e)) = f.run(
            Some(&base),
            Some(&ours),
            Some(&theirs),
            &MergeStrategy::Fail,
        ) else {
            panic!()
        };
        assert!(e.is_executable());
        assert_eq!(f.content(&e), "A\nb\nc\nD\n");
    }

    #[test]
    fn kinds_of_conflict() {
        let f = fixture();
        let base = f.file("a\n", false);
        let m1 = f.file("x\n", false);
        let m2 = f.file("y\n", false);
        let link = Entry::symlink("target");
        let kind = |r: PathResult| match r {
            PathResult::Conflict { conflict, settle } => (conflict.kind, settle),
            PathResult::Clean(_) => panic!("clean"),
        };
        assert_eq!(
            kind(f.run(Some(&base), Some(&m1), None, &MergeStrategy::Fail)),
            (ConflictKind::ModifyDelete, Settle::Keep)
        );
        assert_eq!(
            kind(f.run(None, Some(&m1), Some(&m2), &MergeStrategy::Fail)).0,
            ConflictKind::AddAdd
        );
        assert_eq!(
            kind(f.run(Some(&base), Some(&link), Some(&m2), &MergeStrategy::Fail)).0,
            ConflictKind::Symlink
        );
        let bin = f.file("\0binary", false);
        let bin2 = f.file("\0other", false);
        assert_eq!(
            kind(f.run(Some(&bin), Some(&m1), Some(&bin2), &MergeStrategy::Theirs)),
            (ConflictKind::Binary, Settle::Take(Some(bin2.clone())))
        );
        // Exec-only clash of two identical additions.
        let x = f.file("same\n", true);
        let y = f.file("same\n", false);
        assert_eq!(
            kind(f.run(None, Some(&x), Some(&y), &MergeStrategy::Fail)).0,
            ConflictKind::AddAdd
        );
        // Without a resolver, `agent` asks for a re-run.
        assert_eq!(
            kind(f.run(Some(&base), Some(&m1), Some(&m2), &MergeStrategy::Agent)).1,
            Settle::Rerun
        );
        // Identical changes and deletions on both sides are clean.
        assert!(matches!(
            f.run(Some(&base), None, None, &MergeStrategy::Fail),
            PathResult::Clean(None)
        ));
    }

    #[test]
    fn text_conflicts_carry_diff3_hunks_and_settle_by_strategy() {
        let f = fixture();
        let base = f.file("head\nmid\ntail\n", false);
        let a = f.file("head\nA\ntail\n", false);
        let b = f.file("head\nB\ntail\n", false);
        let PathResult::Conflict { conflict, settle } =
            f.run(Some(&base), Some(&a), Some(&b), &MergeStrategy::Fail)
        else {
            panic!()
        };
        assert_eq!(settle, Settle::Keep);
        assert!(!conflict.resolved);
        assert_eq!(
            conflict.hunks[0].text,
            "<<<<<<< t1\nA\n||||||| base\nmid\n=======\nB\n>>>>>>> t2\n"
        );
        assert_eq!(
            String::from_utf8(f.store.read(&conflict.marked.unwrap()).unwrap()).unwrap(),
            "head\n<<<<<<< t1\nA\n||||||| base\nmid\n=======\nB\n>>>>>>> t2\ntail\n"
        );
        for (strategy, want) in [
            (MergeStrategy::Ours, "head\nA\ntail\n"),
            (MergeStrategy::Theirs, "head\nB\ntail\n"),
            (MergeStrategy::Union, "head\nA\nB\ntail\n"),
            (
                MergeStrategy::Driver("printf 'from driver\\n' > %A".into()),
                "from driver\n",
            ),
        ] {
            let PathResult::Conflict {
                conflict,
                settle: Settle::Take(Some(e)),
            } = f.run(Some(&base), Some(&a), Some(&b), &strategy)
            else {
                panic!("{strategy}")
            };
            assert!(conflict.resolved);
            assert_eq!(conflict.strategy, strategy);
            assert_eq!(f.content(&e), want);
        }
        let PathResult::Conflict { conflict, settle } = f.run(
            Some(&base),
            Some(&a),
            Some(&b),
            &MergeStrategy::Driver("exit 1".into()),
        ) else {
            panic!()
        };
        assert_eq!(settle, Settle::Keep);
        assert!(conflict.note.unwrap().contains("exited with 1"));
    }

    #[test]
    fn a_resolver_settles_agent_conflicts() {
        struct Concat;
        impl Resolver for Concat {
            fn resolve(&self, r: &ResolveRequest<'_>) -> Result<Resolution, MergeError> {
                assert!(r.marked.unwrap().starts_with(b"<<<<<<< t1"));
                let mut out = r.first.unwrap().to_vec();
                out.extend_from_slice(r.second.unwrap());
                Ok(Resolution::Content(out))
            }
        }
        let fx = fixture();
        let base = fx.file("x\n", false);
        let a = fx.file("a\n", false);
        let b = fx.file("b\n", false);
        let mut merger = fx.merger();
        merger.resolver = Some(&Concat);
        let r = merger
            .merge(
                &RepoPath::new("f").unwrap(),
                Some(&base),
                Side {
                    entry: Some(&a),
                    label: "t1",
                },
                Side {
                    entry: Some(&b),
                    label: "t2",
                },
                &MergeStrategy::Agent,
                vec![],
            )
            .unwrap();
        let PathResult::Conflict {
            settle: Settle::Take(Some(e)),
            ..
        } = r
        else {
            panic!()
        };
        assert_eq!(fx.content(&e), "a\nb\n");
    }
}
