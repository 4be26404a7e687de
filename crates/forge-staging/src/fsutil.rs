//! File-system helpers shared by the strategies.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::IoContext;
use crate::{BlobStore, ChangeSet, Entry, StagingError};

/// Writes `path` so that a reader (or a crash) sees the old content or the new, never a mix: a
/// temporary file beside it (a name unique to this process and call, so concurrent writers do
/// not share one), synced, renamed over `path`, then the directory synced. Creates the parent
/// directory when missing. The error names the step and file that failed.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("state/result.json");
/// forge_staging::write_atomically(&path, b"{}")?;
/// assert_eq!(std::fs::read(&path)?, b"{}");
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn write_atomically(path: &Path, content: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let step = |what: &str, p: &Path, e: io::Error| {
        io::Error::new(e.kind(), format!("{what} {}: {e}", p.display()))
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| step("create", dir, e))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = PathBuf::from(tmp);
    let written = fs::File::create(&tmp)
        .and_then(|mut file| {
            file.write_all(content)?;
            file.sync_all()
        })
        .map_err(|e| step("write", &tmp, e))
        .and_then(|()| fs::rename(&tmp, path).map_err(|e| step("rename into place", path, e)));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| step("sync directory", dir, e))
}

/// The path that leads from directory `from` to `to`, both absolute and free of `.`/`..`
/// (`../../a` from `/x/y/z` to `/x/a`): what a record kept in a repository stores, so that the
/// repository can be moved or copied with it.
pub fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let (from, to): (Vec<_>, Vec<_>) = (from.components().collect(), to.components().collect());
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to[common..] {
        out.push(c);
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// The inverse of [`relative_path`]: `stored` read from a record in directory `dir` (an
/// absolute `stored`, written by older versions, is returned as it is), resolved on disk when
/// it exists.
pub fn resolve_path(dir: &Path, stored: &Path) -> PathBuf {
    if stored.is_absolute() {
        return stored.to_path_buf();
    }
    let joined = dir.join(stored);
    fs::canonicalize(&joined).unwrap_or(joined)
}

/// Writes the new side of `changes` into the tree at `root`: afterwards each changed path holds
/// its new entry (file contents from `blobs`, checked against their hashes), or nothing.
/// Whatever stood there goes, a file or a symlink standing where a parent directory must be is
/// replaced by a directory, and a symlink in the tree is never followed: a deletion below one
/// finds nothing, so a workspace whose `src` became a link to `/etc` cannot make this write or
/// delete anything outside `root`.
///
/// ```
/// use forge_staging::{BlobStore, Change, ChangeSet, ContentHash, Entry, RepoPath};
/// let dir = tempfile::tempdir()?;
/// let blobs = BlobStore::open(dir.path().join("blobs"))?;
/// let hash = blobs.write(b"fn main() {}\n")?;
/// let tree = dir.path().join("tree");
/// std::fs::create_dir(&tree)?;
/// let changes: ChangeSet = [(
///     RepoPath::new("src/main.rs")?,
///     Change::Added(Entry::file(hash, 13, false)),
/// )]
/// .into_iter()
/// .collect();
/// forge_staging::write_changes(&tree, &changes, &blobs)?;
/// assert_eq!(std::fs::read(tree.join("src/main.rs"))?, b"fn main() {}\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_changes(
    root: &Path,
    changes: &ChangeSet,
    blobs: &BlobStore,
) -> Result<(), StagingError> {
    for (path, change) in changes.iter() {
        clear_path(root, path.as_str())?;
        let Some(entry) = change.after() else {
            continue;
        };
        make_parents(root, path.as_str())?;
        let dest = root.join(path.as_str());
        match entry {
            Entry::File {
                hash, executable, ..
            } => blobs.copy_to(hash, &dest, *executable)?,
            Entry::Symlink { target, .. } => {
                std::os::unix::fs::symlink(target.as_path(), &dest).ctx("create symlink", &dest)?;
            }
        }
    }
    Ok(())
}

/// Removes whatever stands at `path` in the tree at `root` (a directory with all it holds),
/// unless a parent of it is not a directory: then nothing is there.
pub(crate) fn clear_path(root: &Path, path: &str) -> Result<(), StagingError> {
    if RealDirs::new(root).hold(path) {
        remove_tree(&root.join(path))?;
    }
    Ok(())
}

/// Makes every parent of `path` in the tree at `root` a directory: missing ones are created,
/// and a file or symlink standing where one must be is replaced (never followed).
pub(crate) fn make_parents(root: &Path, path: &str) -> Result<(), StagingError> {
    let Some((parent, _)) = path.rsplit_once('/') else {
        return Ok(());
    };
    let mut dir = root.to_path_buf();
    for seg in parent.split('/') {
        dir.push(seg);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                fs::remove_file(&dir).ctx("remove", &dir)?;
                fs::create_dir(&dir).ctx("create directory", &dir)?;
            }
            Err(_) => fs::create_dir(&dir).ctx("create directory", &dir)?,
        }
    }
    Ok(())
}

/// The directories of a tree found to be real directories, so that a path below them can be
/// looked at without following a symlink that took a directory's place (an agent may replace
/// `src` by a link to `/etc`, or to a link to itself: `src/lib.rs` is then nowhere in the tree,
/// not a file elsewhere or an error).
pub(crate) struct RealDirs<'a> {
    root: &'a Path,
    known: HashSet<String>,
}

impl<'a> RealDirs<'a> {
    /// Nothing known yet about the tree at `root`.
    pub(crate) fn new(root: &'a Path) -> Self {
        Self {
            root,
            known: HashSet::new(),
        }
    }

    /// Whether every ancestor of `path` (relative to the root) is a directory, not a symlink,
    /// a file or nothing.
    pub(crate) fn hold(&mut self, path: &str) -> bool {
        let Some((parent, _)) = path.rsplit_once('/') else {
            return true;
        };
        if self.known.contains(parent) {
            return true;
        }
        let ends = parent
            .match_indices('/')
            .map(|(i, _)| i)
            .chain(std::iter::once(parent.len()));
        for end in ends {
            let dir = &parent[..end];
            if self.known.contains(dir) {
                continue;
            }
            if !fs::symlink_metadata(self.root.join(dir)).is_ok_and(|m| m.is_dir()) {
                return false;
            }
            self.known.insert(dir.to_owned());
        }
        true
    }

    /// What stands at `path` (not following a final symlink), or `None` when nothing does:
    /// missing, or below something that is not a directory.
    pub(crate) fn lstat(&mut self, path: &str) -> io::Result<Option<fs::Metadata>> {
        if !self.hold(path) {
            return Ok(None);
        }
        match fs::symlink_metadata(self.root.join(path)) {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Removes the tree at `path` (if it exists) without ever crossing into another file system: a
/// directory still mounted below `path` is an error, so a failed unmount can never cause the
/// files of a mounted workspace (or anything else) to be deleted. Directories without write or
/// search permission (overlayfs leaves `work/work` at mode 000) are opened up first.
pub(crate) fn remove_tree(path: &Path) -> Result<(), StagingError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        // Nothing there (a path under a file is nowhere either).
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(());
        }
        Err(e) => return Err(StagingError::io("stat", path, e)),
    };
    if !meta.is_dir() {
        return fs::remove_file(path)
            .ctx("remove", path)
            .map_err(Into::into);
    }
    remove_dir_on(path, meta.dev())
}

fn remove_dir_on(dir: &Path, dev: u64) -> Result<(), StagingError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .ctx("open up permissions of", dir)?;
            fs::read_dir(dir).ctx("list", dir)?
        }
        Err(e) => return Err(StagingError::io("list", dir, e)),
    };
    for entry in entries {
        let entry = entry.ctx("list", dir)?;
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).ctx("stat", &path)?;
        if meta.is_dir() {
            if meta.dev() != dev {
                return Err(StagingError::io(
                    "remove",
                    &path,
                    io::Error::other("a file system is still mounted there"),
                ));
            }
            remove_dir_on(&path, dev)?;
        } else {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                        .ctx("open up permissions of", dir)?;
                    fs::remove_file(&path).ctx("remove", &path)?;
                }
                Err(e) => return Err(StagingError::io("remove", &path, e)),
            }
        }
    }
    fs::remove_dir(dir)
        .ctx("remove directory", dir)
        .map_err(Into::into)
}

/// A mount listed in `/proc/self/mountinfo`.
#[derive(Debug, Clone)]
pub(crate) struct MountPoint {
    /// Where it is mounted.
    pub(crate) path: PathBuf,
    /// The file-system type (`overlay`, `fuse.fuse-overlayfs`, …).
    pub(crate) fs_type: String,
}

/// The mounts of this process's mount namespace at or under `root`, deepest first.
pub(crate) fn mounts_under(root: &Path) -> Vec<MountPoint> {
    mounts_of_process_under("self", root)
}

/// The mounts of process `pid`'s mount namespace (`self` for ours) at or under `root`,
/// deepest first.
pub(crate) fn mounts_of_process_under(pid: &str, root: &Path) -> Vec<MountPoint> {
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/mountinfo")) else {
        return Vec::new();
    };
    let mut found: Vec<MountPoint> = text
        .lines()
        .filter_map(parse_mountinfo_line)
        .filter(|m| m.path.starts_with(root))
        .collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.path.components().count()));
    found
}

/// Parses one line of `mountinfo(5)`: field 5 is the mount point (octal-escaped), and the file
/// system type follows the ` - ` separator.
fn parse_mountinfo_line(line: &str) -> Option<MountPoint> {
    let (before, after) = line.split_once(" - ")?;
    let mount_point = before.split(' ').nth(4)?;
    let fs_type = after.split(' ').next()?;
    Some(MountPoint {
        path: PathBuf::from(unescape_octal(mount_point)),
        fs_type: fs_type.to_owned(),
    })
}

fn unescape_octal(s: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..=i + 3]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    std::ffi::OsString::from_vec(out)
}

/// Creates an overlayfs whiteout (a character device 0/0) at `path`. Unprivileged processes may
/// create this one device since Linux 5.8.
pub(crate) fn make_whiteout(path: &Path) -> rustix::io::Result<()> {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        rustix::fs::makedev(0, 0),
    )
}

/// Whether the file type and device number make a whiteout.
pub(crate) fn is_whiteout_device(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Whether the extended attribute `name` of `path` (not followed) starts with `y`.
pub(crate) fn xattr_is_yes(path: &Path, name: &str) -> bool {
    let mut buf = [0u8; 8];
    matches!(rustix::fs::lgetxattr(path, name, &mut buf), Ok(n) if n >= 1 && buf[0].eq_ignore_ascii_case(&b'y'))
}

/// Whether the extended attribute `name` of `path` (not followed) exists.
pub(crate) fn has_xattr(path: &Path, name: &str) -> bool {
    rustix::fs::lgetxattr(path, name, &mut [0u8; 0]).is_ok()
}

/// A process's start time (field 22 of `/proc/<pid>/stat`), to tell a live process from a
/// later one that reuses its id.
pub(crate) fn process_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// Runs `f` on every item with up to `threads` worker threads, returning results in order.
pub(crate) fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(4);
    if threads <= 1 || items.len() < 64 {
        return items.iter().map(&f).collect();
    }
    let next = AtomicUsize::new(0);
    let mut parts: Vec<Vec<(usize, R)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        out.push((i, f(item)));
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let mut all: Vec<(usize, R)> = parts.drain(..).flatten().collect();
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, r)| r).collect()
}

/// Creates `dir` and its missing parents below `root`, giving each new directory the mode of
/// the same directory in `like` when it exists there (so an overlay's upper directory does not
/// change the mode the agent sees).
pub(crate) fn create_dirs_like(root: &Path, rel: &str, like: &Path) -> Result<(), StagingError> {
    if rel.is_empty() {
        return Ok(());
    }
    let mut cur = root.to_path_buf();
    let mut model = like.to_path_buf();
    for seg in rel.split('/') {
        cur.push(seg);
        model.push(seg);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) => {
                return Err(StagingError::io(
                    "create directory",
                    &cur,
                    io::Error::from(io::ErrorKind::AlreadyExists),
                ));
            }
            Err(_) => {}
        }
        fs::create_dir(&cur).ctx("create directory", &cur)?;
        if let Ok(m) = fs::metadata(&model)
            && m.is_dir()
        {
            let _ = fs::set_permissions(&cur, fs::Permissions::from_mode(m.mode() & 0o7777));
        }
    }
    Ok(())
}

#[cfg(test)]
mod relative_tests {
    use super::*;

    #[test]
    fn relative_paths_lead_back() {
        for (from, to, want) in [
            ("/r/.forge/runs/x/base", "/r", "../../../.."),
            ("/a/b", "/a/c/d", "../c/d"),
            ("/a", "/a", "."),
            ("/a/b", "/", "../.."),
        ] {
            assert_eq!(
                relative_path(Path::new(from), Path::new(to)),
                Path::new(want)
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("x/y");
        fs::create_dir_all(&deep).unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        let deep = fs::canonicalize(&deep).unwrap();
        assert_eq!(resolve_path(&deep, &relative_path(&deep, &root)), root);
        assert_eq!(resolve_path(&deep, Path::new("/abs")), Path::new("/abs"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines() {
        let m = parse_mountinfo_line(
            "42 27 0:39 / /tmp/a\\040b/m rw,nodev - fuse.fuse-overlayfs fuse-overlayfs rw",
        )
        .unwrap();
        assert_eq!(m.path, PathBuf::from("/tmp/a b/m"));
        assert_eq!(m.fs_type, "fuse.fuse-overlayfs");
        assert!(parse_mountinfo_line("garbage").is_none());
    }

    /// A tree: `dir` is a link to a directory outside holding `a.txt`, `loop` a link to
    /// itself, `keep/x` a file.
    fn linked_tree() -> (tempfile::TempDir, PathBuf, PathBuf, BlobStore) {
        let tmp = tempfile::tempdir().unwrap();
        let (tree, outside) = (tmp.path().join("tree"), tmp.path().join("outside"));
        fs::create_dir_all(tree.join("keep")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("a.txt"), b"outside\n").unwrap();
        fs::write(tree.join("keep/x"), b"x\n").unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("dir")).unwrap();
        std::os::unix::fs::symlink("loop", tree.join("loop")).unwrap();
        let blobs = BlobStore::open(tmp.path().join("blobs")).unwrap();
        (tmp, tree, outside, blobs)
    }

    #[test]
    fn real_dirs_never_follow_a_link() {
        let (_tmp, tree, _outside, _blobs) = linked_tree();
        let mut dirs = RealDirs::new(&tree);
        assert!(dirs.hold("top.txt"));
        assert!(dirs.hold("keep/x"));
        assert!(!dirs.hold("dir/a.txt"), "through a link to a directory");
        assert!(!dirs.hold("loop/a.txt"), "through a link to itself");
        assert!(!dirs.hold("keep/x/y"), "below a file");
        assert!(!dirs.hold("missing/y"));
        assert!(dirs.lstat("dir/a.txt").unwrap().is_none());
        assert!(dirs.lstat("loop/a/b").unwrap().is_none());
        assert!(dirs.lstat("dir").unwrap().unwrap().file_type().is_symlink());
        assert!(dirs.lstat("keep/x").unwrap().unwrap().is_file());
    }

    #[test]
    fn write_changes_stays_inside_the_tree() {
        use crate::{Change, ContentHash, RepoPath};
        let (_tmp, tree, outside, blobs) = linked_tree();
        let hash = blobs.write(b"new\n").unwrap();
        let new = Entry::file(hash, 4, true);
        let old = Entry::file(ContentHash::of(b"outside\n"), 8, false);
        let changes: ChangeSet = [
            ("dir/a.txt", Change::Deleted(old.clone())),
            ("loop/a.txt", Change::Deleted(old.clone())),
            ("keep/x/y", Change::Added(new.clone())),
            ("dir/b.txt", Change::Added(new.clone())),
            ("link", Change::Added(Entry::symlink("keep"))),
        ]
        .into_iter()
        .map(|(p, c)| (RepoPath::new(p).unwrap(), c))
        .collect();
        write_changes(&tree, &changes, &blobs).unwrap();
        // Nothing outside changed; the link gave way to a directory holding the new file.
        assert_eq!(fs::read(outside.join("a.txt")).unwrap(), b"outside\n");
        assert!(!outside.join("b.txt").exists());
        assert!(fs::symlink_metadata(tree.join("dir")).unwrap().is_dir());
        assert_eq!(fs::read(tree.join("dir/b.txt")).unwrap(), b"new\n");
        let mode = fs::metadata(tree.join("dir/b.txt"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111);
        // The file `keep/x` gave way to a directory; the loop stays as it was.
        assert_eq!(fs::read(tree.join("keep/x/y")).unwrap(), b"new\n");
        assert_eq!(fs::read_link(tree.join("loop")).unwrap(), Path::new("loop"));
        assert_eq!(fs::read_link(tree.join("link")).unwrap(), Path::new("keep"));
        // A deletion removes what it names, a directory with all it holds.
        let changes: ChangeSet = [("keep", Change::Deleted(old))]
            .into_iter()
            .map(|(p, c)| (RepoPath::new(p).unwrap(), c))
            .collect();
        write_changes(&tree, &changes, &blobs).unwrap();
        assert!(!tree.join("keep").exists());
    }

    /// Paths where files, directories and links take turns.
    const PATHS: [&str; 6] = ["a", "a/b", "a/b/c", "a/d", "e", "e/f"];

    /// What a path holds before or after: 0 nothing, 1–2 a file with that content, 3 a link
    /// to the directory outside, 4 a link to itself.
    fn entry_for(what: u8, path: &str, blobs: &BlobStore, outside: &Path) -> Option<Entry> {
        match what {
            1 | 2 => {
                let content = format!("{what} {path}\n");
                let hash = blobs.write(content.as_bytes()).unwrap();
                Some(Entry::file(hash, content.len() as u64, what == 2))
            }
            3 => Some(Entry::symlink(outside.join(path).to_str().unwrap_or("/"))),
            4 => Some(Entry::symlink(path.rsplit('/').next().unwrap_or(path))),
            _ => None,
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Whatever the tree holds and whatever the changes say, writing them changes nothing
        /// outside the tree, and each changed path ends up holding its new entry (or, when a
        /// later path needs it as a directory, a directory).
        #[test]
        fn write_changes_holds_the_new_side(
            start in proptest::collection::vec(0u8..5, PATHS.len()),
            next in proptest::collection::vec(proptest::option::of(0u8..5), PATHS.len()),
        ) {
            use crate::{Change, RepoPath};
            let tmp = tempfile::tempdir().unwrap();
            let (tree, outside) = (tmp.path().join("tree"), tmp.path().join("outside"));
            let blobs = BlobStore::open(tmp.path().join("blobs")).unwrap();
            for name in PATHS {
                fs::create_dir_all(outside.join(name)).unwrap();
                fs::write(outside.join(name).join("z"), b"outside").unwrap();
            }
            fs::create_dir_all(&tree).unwrap();
            for (path, what) in PATHS.iter().zip(&start) {
                let dest = tree.join(path);
                if *what == 0 || make_parents(&tree, path).is_err() {
                    continue;
                }
                let _ = remove_tree(&dest);
                match entry_for(*what, path, &blobs, &outside) {
                    Some(Entry::File { hash, executable, .. }) => {
                        blobs.copy_to(&hash, &dest, executable).unwrap();
                    }
                    Some(Entry::Symlink { target, .. }) => {
                        std::os::unix::fs::symlink(target.as_path(), &dest).unwrap();
                    }
                    None => {}
                }
            }
            let old = entry_for(1, "old", &blobs, &outside).unwrap();
            let changes: ChangeSet = PATHS
                .iter()
                .zip(&next)
                .filter_map(|(path, what)| {
                    let change = match entry_for((*what)?, path, &blobs, &outside) {
                        Some(after) => Change::Added(after),
                        None => Change::Deleted(old.clone()),
                    };
                    Some((RepoPath::new(path).unwrap(), change))
                })
                .collect();
            let outside_before = crate::fsutil::tests::listing(&outside);
            write_changes(&tree, &changes, &blobs).unwrap();
            proptest::prop_assert_eq!(crate::fsutil::tests::listing(&outside), outside_before);
            let mut dirs = RealDirs::new(&tree);
            for (path, change) in changes.iter() {
                let path = path.as_str();
                let later_below = changes.iter().any(|(q, c)| {
                    c.after().is_some() && q.as_str().len() > path.len()
                        && q.as_str().starts_with(path)
                        && q.as_str().as_bytes()[path.len()] == b'/'
                });
                let seen = dirs.lstat(path).unwrap();
                match (change.after(), seen) {
                    (_, Some(meta)) if later_below => proptest::prop_assert!(meta.is_dir()),
                    (None, seen) => proptest::prop_assert!(seen.is_none(), "{path} deleted"),
                    (Some(Entry::File { hash, executable, .. }), Some(meta)) => {
                        proptest::prop_assert!(meta.is_file(), "{path}");
                        let content = fs::read(tree.join(path)).unwrap();
                        proptest::prop_assert_eq!(crate::ContentHash::of(&content), *hash);
                        proptest::prop_assert_eq!(meta.permissions().mode() & 0o100 != 0, *executable);
                    }
                    (Some(Entry::Symlink { target, .. }), Some(meta)) => {
                        proptest::prop_assert!(meta.file_type().is_symlink(), "{path}");
                        proptest::prop_assert_eq!(
                            fs::read_link(tree.join(path)).unwrap(),
                            target.as_path().to_path_buf()
                        );
                    }
                    (Some(_), None) => proptest::prop_assert!(false, "{path} missing"),
                }
            }
        }
    }

    /// Every path under `root` with its kind and content, not following links.
    fn listing(root: &Path) -> Vec<(PathBuf, String)> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let meta = fs::symlink_metadata(&path).unwrap();
                let what = if meta.is_dir() {
                    stack.push(path.clone());
                    "dir".to_owned()
                } else if meta.file_type().is_symlink() {
                    format!("-> {}", fs::read_link(&path).unwrap().display())
                } else {
                    String::from_utf8_lossy(&fs::read(&path).unwrap()).into_owned()
                };
                out.push((path, what));
            }
        }
        out.sort();
        out
    }

    #[test]
    fn remove_tree_opens_locked_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let locked = dir.path().join("t/work/work");
        fs::create_dir_all(&locked).unwrap();
        fs::write(locked.join("f"), b"x").unwrap();
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
        remove_tree(&dir.path().join("t")).unwrap();
        assert!(!dir.path().join("t").exists());
        remove_tree(&dir.path().join("t")).unwrap();
    }

    #[test]
    fn par_map_keeps_order() {
        let items: Vec<u32> = (0..1000).collect();
        assert_eq!(
            par_map(&items, |x| x * 2),
            (0..1000).map(|x| x * 2).collect::<Vec<_>>()
        );
    }
}
