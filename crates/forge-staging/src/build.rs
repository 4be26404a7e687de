//! Choosing a built-in strategy: [`StagerKind::build`], the one place that knows them all.

use crate::{
    BaseSnapshot, CopyStager, OverlayStager, ReflinkStager, Stager, StagerConfig, StagerKind,
    StagingError, WorktreeStager,
};

impl StagerKind {
    /// A stager of this kind for snapshots of `base`, after checking it can run here. `Auto`
    /// returns the first strategy that can: overlay (direct mount, then user namespace, then
    /// fuse-overlayfs), reflink, git worktree, copy.
    pub fn build(
        self,
        config: &StagerConfig,
        base: &BaseSnapshot,
    ) -> Result<Box<dyn Stager>, StagingError> {
        match self {
            Self::Overlay => Ok(Box::new(OverlayStager::new(config)?)),
            Self::Reflink => Ok(Box::new(ReflinkStager::new(config, base)?)),
            Self::Worktree => Ok(Box::new(WorktreeStager::new(config, base)?)),
            Self::Copy => Ok(Box::new(CopyStager::new(config)?)),
            Self::Auto => {
                let mut last = None;
                for kind in Self::STRATEGIES {
                    match kind.build(config, base) {
                        Ok(stager) => return Ok(stager),
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| StagingError::Unsupported {
                    strategy: "copy",
                    reason: "no strategy could be set up".to_owned(),
                }))
            }
        }
    }
}
