//! Splitting a file set into N tasks along directory boundaries, so that no two tasks' write
//! claims overlap (what `forge split` writes a plan from).
//!
//! The files form a directory tree weighted by file count (or bytes). Work starts as one
//! unit, the whole tree; while some unit weighs more than a fair share (total / N), or there
//! are fewer units than workers, the heaviest such unit is replaced by its parts: one unit per
//! subdirectory and one for the files directly in it. Only as a last resort (a single directory
//! holding more than a fair share of files directly) is a directory's own file list cut in two.
//! The units are then dealt out largest first to the least-loaded worker (LPT scheduling, within
//! 4/3 of the best possible maximum for the units). Each worker's task writes exactly its units:
//! `dir/**` for a subtree, `dir/*` for a directory's own files, the files themselves for a cut
//! list — so no two tasks' write claims overlap and the plan needs no ordering.
//!
//! ```
//! use forge_exec::plan::split::{Balance, FileEntry, partition};
//!
//! let files = ["api/a.rs", "api/b.rs", "web/c.ts", "web/d.ts"]
//!     .map(|p| FileEntry { path: p.to_owned(), bytes: 100 });
//! let workers = partition(files.to_vec(), 2, Balance::Files);
//! assert_eq!(workers.len(), 2);
//! assert_eq!(workers[0].claims(), ["api/**"]);
//! assert_eq!(workers[1].claims(), ["web/**"]);
//! ```

use std::collections::BTreeMap;

/// What a worker's load counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balance {
    /// The number of files.
    #[default]
    Files,
    /// Their total size in bytes.
    Bytes,
}

/// One matching file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Repo-relative, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// A directory of the matching files.
#[derive(Debug, Default)]
struct Dir {
    /// Files directly in it.
    files: Vec<FileEntry>,
    /// Subdirectories by name.
    dirs: BTreeMap<String, Dir>,
}

impl Dir {
    fn insert(&mut self, file: FileEntry) {
        let mut node = self;
        let mut parts: Vec<&str> = file.path.split('/').collect();
        parts.pop();
        for part in parts {
            node = node.dirs.entry(part.to_owned()).or_default();
        }
        node.files.push(file);
    }

    fn weight(&self, by: Balance) -> u64 {
        self.files.iter().map(|f| weigh(f, by)).sum::<u64>()
            + self.dirs.values().map(|d| d.weight(by)).sum::<u64>()
    }

    fn count(&self) -> usize {
        self.files.len() + self.dirs.values().map(Dir::count).sum::<usize>()
    }

    fn collect(&self, out: &mut Vec<FileEntry>) {
        out.extend(self.files.iter().cloned());
        for d in self.dirs.values() {
            d.collect(out);
        }
    }

    fn at(&self, path: &str) -> Option<&Dir> {
        if path.is_empty() {
            return Some(self);
        }
        path.split('/').try_fold(self, |d, part| d.dirs.get(part))
    }
}

fn weigh(file: &FileEntry, by: Balance) -> u64 {
    match by {
        Balance::Files => 1,
        // Empty files still take an agent's attention.
        Balance::Bytes => file.bytes.max(1),
    }
}

/// A piece of work one task takes whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unit {
    /// Everything under a directory (`""` is the repository root).
    Subtree(String),
    /// Every matching file directly in a directory.
    DirFiles(String),
    /// Some of the files directly in a directory (a cut list).
    Files(Vec<FileEntry>),
}

impl Unit {
    /// The write claims of the unit.
    pub fn claims(&self) -> Vec<String> {
        match self {
            Unit::Subtree(dir) if dir.is_empty() => vec!["**".to_owned()],
            Unit::Subtree(dir) => vec![format!("{dir}/**")],
            Unit::DirFiles(dir) if dir.is_empty() => vec!["*".to_owned()],
            Unit::DirFiles(dir) => vec![format!("{dir}/*")],
            Unit::Files(files) => files.iter().map(|f| f.path.clone()).collect(),
        }
    }

    /// The directory the unit lies in (`""` for the repository root).
    pub fn dir(&self) -> String {
        match self {
            Unit::Subtree(dir) | Unit::DirFiles(dir) => dir.clone(),
            Unit::Files(files) => files
                .first()
                .and_then(|f| f.path.rsplit_once('/'))
                .map(|(dir, _)| dir.to_owned())
                .unwrap_or_default(),
        }
    }

    fn sort_key(&self) -> String {
        match self {
            Unit::Files(files) => files.first().map(|f| f.path.clone()).unwrap_or_default(),
            other => other.dir(),
        }
    }
}

/// A unit with what it holds.
#[derive(Debug, Clone)]
struct Weighed {
    unit: Unit,
    files: Vec<FileEntry>,
    weight: u64,
}

/// The tasks of a split.
#[derive(Debug, Clone)]
pub struct Worker {
    /// The units, sorted by path.
    pub units: Vec<Unit>,
    /// The matching files it covers, sorted.
    pub files: Vec<FileEntry>,
    /// Its load (files or bytes).
    pub weight: u64,
}

impl Worker {
    /// Its write claims.
    pub fn claims(&self) -> Vec<String> {
        self.units.iter().flat_map(Unit::claims).collect()
    }

    /// Its directories (the `{dir}` of the prompt template).
    pub fn dirs(&self) -> Vec<String> {
        let mut dirs: Vec<String> = self
            .units
            .iter()
            .map(|u| {
                let d = u.dir();
                if d.is_empty() { ".".to_owned() } else { d }
            })
            .collect();
        dirs.dedup();
        dirs
    }
}

/// Partitions `files` into at most `workers` workers (see the module docs).
pub fn partition(files: Vec<FileEntry>, workers: usize, by: Balance) -> Vec<Worker> {
    let workers = workers.max(1);
    let mut root = Dir::default();
    for f in files {
        root.insert(f);
    }
    if root.count() == 0 {
        return Vec::new();
    }
    let total = root.weight(by);
    let fair = total.div_ceil(workers as u64);
    let mut units = vec![weighed(&root, Unit::Subtree(String::new()), by)];
    loop {
        let pick = |need: &dyn Fn(&Weighed) -> bool| {
            units
                .iter()
                .enumerate()
                .filter(|(_, u)| need(u) && splittable(&root, &u.unit))
                .max_by_key(|(i, u)| (u.weight, std::cmp::Reverse(*i)))
                .map(|(i, _)| i)
        };
        let heavy = pick(&|u: &Weighed| u.weight > fair);
        let chosen = heavy.or_else(|| {
            if units.len() < workers {
                pick(&|_: &Weighed| true)
            } else {
                None
            }
        });
        let Some(i) = chosen else { break };
        let unit = units.swap_remove(i);
        units.extend(split_unit(&root, unit, by));
    }
    // Deal the units out; while the heaviest worker is more than 10 % over a fair share, cut
    // its largest splittable unit and deal again.
    let groups = loop {
        let groups = deal(&mut units, workers);
        let heaviest = groups
            .iter()
            .max_by_key(|g| g.iter().map(|&i| units[i].weight).sum::<u64>());
        let load: u64 = heaviest.map_or(0, |g| g.iter().map(|&i| units[i].weight).sum());
        if load.saturating_mul(10) <= fair.saturating_mul(11) {
            break groups;
        }
        let cut = heaviest.and_then(|g| {
            g.iter()
                .copied()
                .filter(|&i| splittable(&root, &units[i].unit))
                .max_by_key(|&i| units[i].weight)
        });
        match cut {
            Some(i) => {
                let unit = units.swap_remove(i);
                units.extend(split_unit(&root, unit, by));
            }
            None => break groups,
        }
    };
    let mut out: Vec<Worker> = groups
        .into_iter()
        .filter(|g| !g.is_empty())
        .map(|g| {
            let mut w = Worker {
                units: Vec::new(),
                files: Vec::new(),
                weight: 0,
            };
            for i in g {
                w.weight += units[i].weight;
                w.units.push(units[i].unit.clone());
                w.files.extend(units[i].files.iter().cloned());
            }
            w.units = merge_cut_lists(std::mem::take(&mut w.units));
            w.files.sort_by(|a, b| a.path.cmp(&b.path));
            w
        })
        .collect();
    out.sort_by(|a, b| a.units[0].sort_key().cmp(&b.units[0].sort_key()));
    out
}

/// A worker's units sorted by path, with cut lists of one directory joined into one.
fn merge_cut_lists(units: Vec<Unit>) -> Vec<Unit> {
    let mut out: Vec<Unit> = Vec::with_capacity(units.len());
    let mut lists: BTreeMap<String, Vec<FileEntry>> = BTreeMap::new();
    for u in units {
        match u {
            Unit::Files(files) => {
                let dir = Unit::Files(files.clone()).dir();
                lists.entry(dir).or_default().extend(files);
            }
            other => out.push(other),
        }
    }
    for (_, mut files) in lists {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        out.push(Unit::Files(files));
    }
    out.sort_by_key(Unit::sort_key);
    out
}

/// LPT: the units, largest first (ties by path), each to the least-loaded of `workers` groups.
/// Sorts `units` in that order and returns the indices each group got.
fn deal(units: &mut [Weighed], workers: usize) -> Vec<Vec<usize>> {
    units.sort_by(|a, b| {
        b.weight
            .cmp(&a.weight)
            .then_with(|| a.unit.sort_key().cmp(&b.unit.sort_key()))
    });
    let mut groups: Vec<(u64, Vec<usize>)> = vec![(0, Vec::new()); workers.min(units.len())];
    for (i, u) in units.iter().enumerate() {
        if let Some(g) = groups.iter_mut().min_by_key(|g| g.0) {
            g.0 += u.weight;
            g.1.push(i);
        }
    }
    groups.into_iter().map(|(_, g)| g).collect()
}

/// A subtree with no files of its own and one subdirectory claims no more than that
/// subdirectory: name the deepest such directory, so claims are as narrow as the files.
fn narrow(root: &Dir, mut dir: String) -> String {
    while let Some(d) = root.at(&dir) {
        if !d.files.is_empty() || d.dirs.len() != 1 {
            break;
        }
        let Some(only) = d.dirs.keys().next() else {
            break;
        };
        dir = if dir.is_empty() {
            only.clone()
        } else {
            format!("{dir}/{only}")
        };
    }
    dir
}

fn weighed(root: &Dir, unit: Unit, by: Balance) -> Weighed {
    let unit = match unit {
        Unit::Subtree(dir) => Unit::Subtree(narrow(root, dir)),
        other => other,
    };
    let mut files = Vec::new();
    match &unit {
        Unit::Subtree(dir) => {
            if let Some(d) = root.at(dir) {
                d.collect(&mut files);
            }
        }
        Unit::DirFiles(dir) => {
            if let Some(d) = root.at(dir) {
                files.extend(d.files.iter().cloned());
            }
        }
        Unit::Files(list) => files.extend(list.iter().cloned()),
    }
    let weight = files.iter().map(|f| weigh(f, by)).sum();
    Weighed {
        unit,
        files,
        weight,
    }
}

fn splittable(root: &Dir, unit: &Unit) -> bool {
    match unit {
        Unit::Subtree(dir) => root
            .at(dir)
            .is_some_and(|d| !d.dirs.is_empty() || d.files.len() > 1),
        Unit::DirFiles(dir) => root.at(dir).is_some_and(|d| d.files.len() > 1),
        Unit::Files(files) => files.len() > 1,
    }
}

fn split_unit(root: &Dir, unit: Weighed, by: Balance) -> Vec<Weighed> {
    let join = |dir: &str, name: &str| {
        if dir.is_empty() {
            name.to_owned()
        } else {
            format!("{dir}/{name}")
        }
    };
    match unit.unit {
        Unit::Subtree(dir) => {
            let Some(d) = root.at(&dir) else {
                return Vec::new();
            };
            let mut parts: Vec<Weighed> = d
                .dirs
                .keys()
                .map(|name| weighed(root, Unit::Subtree(join(&dir, name)), by))
                .collect();
            if !d.files.is_empty() {
                parts.push(weighed(root, Unit::DirFiles(dir.clone()), by));
            }
            parts
        }
        Unit::DirFiles(_) | Unit::Files(_) => {
            // Cut the list in two halves of about equal weight, in path order.
            let mut files = unit.files;
            files.sort_by(|a, b| a.path.cmp(&b.path));
            let half = unit.weight / 2;
            let mut acc = 0;
            let mut cut = 1;
            for (i, f) in files.iter().enumerate() {
                acc += weigh(f, by);
                if acc >= half {
                    cut = (i + 1).clamp(1, files.len() - 1);
                    break;
                }
            }
            let second = files.split_off(cut);
            vec![
                weighed(root, Unit::Files(files), by),
                weighed(root, Unit::Files(second), by),
            ]
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use forge_locks::Pattern;
    use proptest::prelude::*;

    fn files(paths: &[&str]) -> Vec<FileEntry> {
        paths
            .iter()
            .map(|p| FileEntry {
                path: (*p).to_owned(),
                bytes: 10,
            })
            .collect()
    }

    fn claims_never_overlap(workers: &[Worker]) {
        let sets: Vec<Vec<Pattern>> = workers
            .iter()
            .map(|w| {
                w.claims()
                    .iter()
                    .map(|c| Pattern::new(c).unwrap())
                    .collect()
            })
            .collect();
        for (i, a) in sets.iter().enumerate() {
            for b in &sets[i + 1..] {
                for pa in a {
                    for pb in b {
                        assert!(!pa.overlaps(pb), "{pa} overlaps {pb}");
                    }
                }
            }
        }
    }

    #[test]
    fn directories_are_kept_whole_when_they_fit() {
        let mut paths = Vec::new();
        let names: Vec<String> = (0..60)
            .map(|i| format!("src/api/f{i}.rs"))
            .chain((0..30).map(|i| format!("src/db/f{i}.rs")))
            .chain((0..30).map(|i| format!("src/ui/f{i}.rs")))
            .collect();
        paths.extend(names.iter().map(String::as_str));
        let w = partition(files(&paths), 2, Balance::Files);
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].claims(), ["src/api/**"]);
        assert_eq!(w[0].files.len(), 60);
        assert_eq!(w[1].claims(), ["src/db/**", "src/ui/**"]);
        claims_never_overlap(&w);
    }

    #[test]
    fn a_flat_directory_is_cut_as_a_last_resort() {
        let names: Vec<String> = (0..10).map(|i| format!("f{i}.txt")).collect();
        let paths: Vec<&str> = names.iter().map(String::as_str).collect();
        let w = partition(files(&paths), 3, Balance::Files);
        assert_eq!(w.len(), 3);
        let sizes: Vec<usize> = w.iter().map(|w| w.files.len()).collect();
        assert!(sizes.iter().all(|&s| (3..=4).contains(&s)), "{sizes:?}");
        claims_never_overlap(&w);
    }

    #[test]
    fn fewer_units_than_workers_gives_fewer_tasks() {
        let w = partition(files(&["a/x.rs"]), 4, Balance::Files);
        assert_eq!(w.len(), 1);
        assert!(partition(Vec::new(), 4, Balance::Files).is_empty());
    }

    #[test]
    fn root_files_and_subtrees_do_not_overlap() {
        let w = partition(
            files(&[
                "README.md",
                "build.rs",
                "src/a.rs",
                "src/b.rs",
                "src/x/c.rs",
            ]),
            3,
            Balance::Files,
        );
        claims_never_overlap(&w);
        let all: usize = w.iter().map(|w| w.files.len()).sum();
        assert_eq!(all, 5);
    }

    #[test]
    fn bytes_balance_weighs_sizes() {
        let mut f = files(&["big/a", "small/b", "small/c", "small/d"]);
        f[0].bytes = 1000;
        let w = partition(f, 2, Balance::Bytes);
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].claims(), ["big/**"]);
        assert_eq!(w[1].files.len(), 3);
    }

    fn tree() -> impl Strategy<Value = Vec<FileEntry>> {
        let segment = prop::sample::select(vec!["a", "b", "c", "d", "e"]);
        let path = (prop::collection::vec(segment, 0..4), 0u32..40, 1u64..5000).prop_map(
            |(dirs, n, bytes)| {
                let mut p = dirs.join("/");
                if !p.is_empty() {
                    p.push('/');
                }
                p.push('f');
                p.push_str(&n.to_string());
                p.push_str(".rs");
                FileEntry { path: p, bytes }
            },
        );
        prop::collection::vec(path, 1..200).prop_map(|mut v| {
            v.sort_by(|a, b| a.path.cmp(&b.path));
            v.dedup_by(|a, b| a.path == b.path);
            v
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        /// Every file goes to exactly one worker, claims never overlap, each worker's files
        /// match its own claims, and the heaviest worker is within one unit of a fair share.
        #[test]
        fn partitions_are_exact_disjoint_and_balanced(
            input in tree(),
            n in 1usize..9,
            bytes in any::<bool>(),
        ) {
            let by = if bytes { Balance::Bytes } else { Balance::Files };
            let total: u64 = input.iter().map(|f| weigh(f, by)).sum();
            let heaviest_file = input.iter().map(|f| weigh(f, by)).max().unwrap_or(0);
            let workers = partition(input.clone(), n, by);
            prop_assert!(!workers.is_empty() && workers.len() <= n);
            let mut seen: Vec<String> = workers
                .iter()
                .flat_map(|w| w.files.iter().map(|f| f.path.clone()))
                .collect();
            seen.sort();
            let mut want: Vec<String> = input.iter().map(|f| f.path.clone()).collect();
            want.sort();
            prop_assert_eq!(seen, want);
            claims_never_overlap(&workers);
            for w in &workers {
                let claims: Vec<Pattern> =
                    w.claims().iter().map(|c| Pattern::new(c).unwrap()).collect();
                for f in &w.files {
                    prop_assert!(claims.iter().any(|c| c.matches(&f.path)), "{} unclaimed", f.path);
                }
            }
            let fair = total.div_ceil(n as u64);
            let max = workers.iter().map(|w| w.weight).max().unwrap_or(0);
            // No unit heavier than a fair share remains unless it is one file, and LPT adds at
            // most one unit to a worker already at or below the fair share.
            prop_assert!(max <= fair + fair.max(heaviest_file), "max {max}, fair {fair}");
        }
    }
}
