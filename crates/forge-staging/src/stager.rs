use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::IoContext;
use crate::rules::Excluded;
use crate::{BlobStore, RepoPath, StagingError};

/// A staging strategy, by name (`auto`, `overlay`, `reflink`, `worktree`, `copy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StagerKind {
    /// The first of the others, in their order, that works here.
    #[default]
    Auto,
    /// overlayfs over the base snapshot: O(1) to stage, changes found in the upper directory.
    Overlay,
    /// Copy-on-write clones of every file (XFS, btrfs, APFS…): no data copied.
    Reflink,
    /// A checkout made by git itself (`git checkout-index`), with a repository of its own.
    Worktree,
    /// A plain recursive copy: always works.
    Copy,
}

impl StagerKind {
    /// The four strategies, in the order `Auto` tries them.
    pub const STRATEGIES: [StagerKind; 4] =
        [Self::Overlay, Self::Reflink, Self::Worktree, Self::Copy];

    /// The strategy's name, as used in benchmark ids and plans.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Overlay => "overlay",
            Self::Reflink => "reflink",
            Self::Worktree => "worktree",
            Self::Copy => "copy",
        }
    }
}

impl FromStr for StagerKind {
    type Err = StagingError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Auto]
            .into_iter()
            .chain(Self::STRATEGIES)
            .find(|k| k.name() == s)
            .ok_or_else(|| StagingError::UnknownStrategy(s.to_owned()))
    }
}

impl fmt::Display for StagerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How an overlay is mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverlayRoute {
    /// `mount(2)` in this process's mount namespace (needs `CAP_SYS_ADMIN`).
    Direct,
    /// Inside an unprivileged user + mount namespace (Linux 5.11 or later, the `userxattr`
    /// option), held by a small `unshare` process; agents enter it through
    /// [`crate::Workspace::prepare_command`].
    UserNamespace,
    /// `fuse-overlayfs`, where it is installed and `/dev/fuse` is usable.
    Fuse,
}

impl OverlayRoute {
    /// The routes in the order [`crate::OverlayStager::new`] tries them.
    pub const ALL: [OverlayRoute; 3] = [Self::Direct, Self::UserNamespace, Self::Fuse];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct mount",
            Self::UserNamespace => "user namespace",
            Self::Fuse => "fuse-overlayfs",
        }
    }
}

impl fmt::Display for OverlayRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a shared directory is made available in each workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShareMode {
    /// A symlink to the repository's directory: every workspace uses the same files.
    #[default]
    Symlink,
    /// A copy-on-write clone of the directory per workspace where the file system supports it
    /// (isolated, no data copied); a symlink where it does not.
    Clone,
}

/// A directory of the user's repository (such as `node_modules` or `target`) made available in
/// every workspace so agents can build without reinstalling. Never part of a changeset.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SharedDir {
    /// The directory, relative to the repository. Skipped when it does not exist there.
    pub path: RepoPath,
    /// How it is shared.
    #[serde(default)]
    pub mode: ShareMode,
}

/// What every stager of a run needs.
#[derive(Debug, Clone)]
pub struct StagerConfig {
    /// The run's directory: workspaces are made in `<run_root>/workspaces/`.
    pub run_root: PathBuf,
    /// Where changesets' blobs are written.
    pub store: BlobStore,
    /// Directories shared into every workspace.
    pub share: Vec<SharedDir>,
    /// Untracked files or directories (such as `.env`) copied from the repository into every
    /// workspace. Never part of a changeset.
    pub copy_in: Vec<RepoPath>,
    /// Files larger than this many bytes are reported in [`crate::ChangeSet::skipped`] rather
    /// than captured. Default: 100 `MiB`.
    pub max_file_size: u64,
}

/// The default [`StagerConfig::max_file_size`]: 100 `MiB`.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 100 << 20;

impl StagerConfig {
    /// A configuration with no shared dirs, no copied-in files and the default size limit.
    pub fn new(run_root: impl Into<PathBuf>, store: BlobStore) -> Self {
        Self {
            run_root: run_root.into(),
            store,
            share: Vec::new(),
            copy_in: Vec::new(),
            max_file_size: DEFAULT_MAX_FILE_SIZE,
        }
    }
}

/// The configuration as the strategies use it: paths resolved, exclusions computed.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: StagerConfig,
    pub(crate) workspaces: PathBuf,
    pub(crate) excluded: Excluded,
}

impl Shared {
    pub(crate) fn new(config: &StagerConfig) -> Result<Arc<Self>, StagingError> {
        let workspaces = config.run_root.join("workspaces");
        fs::create_dir_all(&workspaces).ctx("create directory", &workspaces)?;
        let workspaces = fs::canonicalize(&workspaces).ctx("resolve", &workspaces)?;
        let mut config = config.clone();
        config.run_root = workspaces
            .parent()
            .map_or_else(|| config.run_root.clone(), Path::to_path_buf);
        let excluded = Excluded::new(
            config
                .share
                .iter()
                .map(|s| &s.path)
                .chain(config.copy_in.iter()),
        );
        Ok(Arc::new(Self {
            config,
            workspaces,
            excluded,
        }))
    }
}
