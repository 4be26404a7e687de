//! Which paths a workspace never reports: git's ignore rules, and Forge's own exclusions.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use ignore::Match;
use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::{BlobStore, Entry, RepoPath, Snapshot};

/// Git's ignore rules as they apply to a tree: the `.gitignore` file of every directory (read
/// lazily from the tree on disk, or from a snapshot), then the repository-wide excludes
/// (`$GIT_DIR/info/exclude`, then the user's global excludes file).
///
/// Follows git's semantics: the deepest `.gitignore` that has a matching pattern decides, the
/// last matching pattern within a file wins, `!` re-includes, and nothing under an ignored
/// directory can be re-included.
pub(crate) struct IgnoreRules<'a> {
    view: View<'a>,
    root: Gitignore,
    per_dir: HashMap<String, Gitignore>,
    dir_ignored: HashMap<String, bool>,
}

/// Where the `.gitignore` files are read from.
enum View<'a> {
    /// The tree as it is now.
    Disk(PathBuf),
    /// A snapshot (a workspace's start state), its contents in a blob store.
    Snapshot(&'a Snapshot, &'a BlobStore),
}

impl<'a> IgnoreRules<'a> {
    /// Rules for the tree at `view`, with the repository-wide `excludes` patterns (one per line).
    pub(crate) fn new(view: &Path, excludes: &str) -> Self {
        Self::with_view(View::Disk(view.to_path_buf()), excludes)
    }

    /// The rules a workspace started with: its snapshot's `.gitignore` files, whatever the task
    /// did to them since, so that a task's own `.gitignore` edit cannot hide what it wrote.
    pub(crate) fn at_start(snapshot: &'a Snapshot, store: &'a BlobStore) -> Self {
        Self::with_view(View::Snapshot(snapshot, store), snapshot.base().excludes())
    }

    fn with_view(view: View<'a>, excludes: &str) -> Self {
        Self {
            view,
            root: build(excludes),
            per_dir: HashMap::new(),
            dir_ignored: HashMap::new(),
        }
    }

    /// Whether `path` (repo-relative, `/`-separated) is ignored.
    pub(crate) fn is_ignored(&mut self, path: &str, is_dir: bool) -> bool {
        if let Some((parent, _)) = path.rsplit_once('/')
            && self.dir_is_ignored(parent)
        {
            return true;
        }
        self.decide(path, is_dir)
    }

    fn dir_is_ignored(&mut self, dir: &str) -> bool {
        if let Some(&known) = self.dir_ignored.get(dir) {
            return known;
        }
        let ignored = self.is_ignored(dir, true);
        self.dir_ignored.insert(dir.to_owned(), ignored);
        ignored
    }

    /// Consults the `.gitignore` files from `path`'s parent up to the root, then the excludes.
    fn decide(&mut self, path: &str, is_dir: bool) -> bool {
        let mut dir = path.rsplit_once('/').map_or("", |(d, _)| d);
        loop {
            let rel = if dir.is_empty() {
                path
            } else {
                &path[dir.len() + 1..]
            };
            match self.rules_of(dir).matched(rel, is_dir) {
                Match::Ignore(_) => return true,
                Match::Whitelist(_) => return false,
                Match::None => {}
            }
            if dir.is_empty() {
                break;
            }
            dir = dir.rsplit_once('/').map_or("", |(d, _)| d);
        }
        matches!(self.root.matched(path, is_dir), Match::Ignore(_))
    }

    fn rules_of(&mut self, dir: &str) -> &Gitignore {
        if !self.per_dir.contains_key(dir) {
            // Like git (since 2.32), a `.gitignore` that is a symlink is not read.
            let text = match &self.view {
                View::Disk(root) => {
                    let file = root.join(dir).join(".gitignore");
                    match fs::symlink_metadata(&file) {
                        Ok(m) if m.is_file() => fs::read(&file).unwrap_or_default(),
                        _ => Vec::new(),
                    }
                }
                View::Snapshot(snapshot, store) => {
                    let file = if dir.is_empty() {
                        ".gitignore".to_owned()
                    } else {
                        format!("{dir}/.gitignore")
                    };
                    match snapshot.get(&file) {
                        Some(Entry::File { hash, .. }) => store.read(hash).unwrap_or_default(),
                        _ => Vec::new(),
                    }
                }
            };
            let rules = build(&String::from_utf8_lossy(&text));
            self.per_dir.insert(dir.to_owned(), rules);
        }
        &self.per_dir[dir]
    }
}

fn build(text: &str) -> Gitignore {
    // Root `.`: patterns are matched against paths relative to the directory of the file, which
    // is what we pass; nothing is stripped.
    let mut builder = GitignoreBuilder::new(".");
    for line in text.lines() {
        // A pattern git cannot parse is ignored by git too.
        let _ = builder.add_line(None, line);
    }
    builder.build().unwrap_or_else(|_| Gitignore::empty())
}

/// Paths that are never part of a changeset, whatever the ignore rules say: anything inside a
/// `.git` directory (at any depth), Forge's `.forge/` at the top, and the workspace's shared
/// directories and copied-in files.
#[derive(Debug, Clone, Default)]
pub(crate) struct Excluded {
    local: Vec<String>,
}

impl Excluded {
    /// Exclusions for the given workspace-local paths (shared dirs, copied-in files).
    pub(crate) fn new<'a>(local: impl IntoIterator<Item = &'a RepoPath>) -> Self {
        Self {
            local: local.into_iter().map(|p| p.as_str().to_owned()).collect(),
        }
    }

    /// Whether `path` (repo-relative) is excluded.
    pub(crate) fn contains(&self, path: &str) -> bool {
        path.split('/').any(|s| s.eq_ignore_ascii_case(".git"))
            || path == ".forge"
            || path.starts_with(".forge/")
            || self.local.iter().any(|l| {
                path == l
                    || (path.len() > l.len()
                        && path.starts_with(l.as_str())
                        && path.as_bytes()[l.len()] == b'/')
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_rules_and_negation() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join(".gitignore"), "*.log\nbuild/\n!keep.log\n").unwrap();
        fs::write(root.join("a/.gitignore"), "!x.log\nsecret\n").unwrap();
        fs::write(root.join("a/b/.gitignore"), "*.tmp\n").unwrap();
        let mut rules = IgnoreRules::new(root, "*.excluded\n");
        for (path, dir, want) in [
            ("x.log", false, true),
            ("keep.log", false, false),
            ("a/x.log", false, false),
            ("a/y.log", false, true),
            ("a/secret", false, true),
            ("secret", false, false),
            ("a/b/z.tmp", false, true),
            ("z.tmp", false, false),
            ("build", true, true),
            ("build/keep.log", false, true),
            ("a/build/out", false, true),
            ("f.excluded", false, true),
            ("src/main.rs", false, false),
        ] {
            assert_eq!(rules.is_ignored(path, dir), want, "{path}");
        }
    }

    #[test]
    fn exclusions() {
        let ex = Excluded::new(&[RepoPath::new("node_modules").unwrap()]);
        for (path, want) in [
            (".git", true),
            ("sub/.git/config", true),
            (".forge/runs", true),
            ("docs/.forge", false),
            ("node_modules", true),
            ("node_modules/x/y", true),
            ("node_modules2", false),
            ("src/lib.rs", false),
        ] {
            assert_eq!(ex.contains(path), want, "{path}");
        }
    }
}
