//! The integrated tree as the snapshot tasks start from: one layer per integrated version,
//! stacked on the snapshot before it (see [`Snapshot::stack`]), so that making the next
//! snapshot costs what the last integration changed, not what the run integrated so far.

use std::sync::Arc;

use forge_staging::{Change, ChangeSet, Snapshot};

use super::{Shared, blocking};
use crate::ExecError;

/// The latest snapshot of the integrated tree. Older ones live as long as the workspaces
/// staged from them (each holds its snapshot); their layers stay on disk until the run ends
/// (or `forge gc` / a resume removes the run's `layers/` directory).
#[derive(Default)]
pub(crate) struct Snapshots {
    latest: Option<(u64, Arc<Snapshot>)>,
    /// Layer directories made so far: names are never reused within a run.
    made: u64,
}

impl Snapshots {
    /// Forgets the latest snapshot (its layers may then be removed).
    pub(crate) fn clear(&mut self) {
        self.latest = None;
    }
}

/// The integrated tree now, as a snapshot to stage from.
pub(crate) async fn current(shared: &Arc<Shared>) -> Result<Arc<Snapshot>, ExecError> {
    let shared = shared.clone();
    blocking(move || {
        let mut snapshots = shared.snapshots.lock();
        let state = shared.integration.lock();
        let integration = state.integration();
        let version = integration.version();
        if let Some((v, s)) = &snapshots.latest
            && *v == version
        {
            return Ok(s.clone());
        }
        let below = match &snapshots.latest {
            Some((_, s)) => s.clone(),
            None => Arc::new(Snapshot::from(integration.base().clone())),
        };
        let step = step_between(&below, &integration.delta());
        let snapshot = if version == 0 && step.is_empty() {
            below
        } else {
            let layers = shared.store.work_dir(&shared.run).join("layers");
            snapshots.made += 1;
            let dir = layers.join(format!("v{version}-{}", snapshots.made));
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(|e| ExecError::io("remove", &dir, e))?;
            }
            std::fs::create_dir_all(&layers).map_err(|e| ExecError::io("create", &layers, e))?;
            Arc::new(below.stack(&step, integration.store(), &dir)?)
        };
        snapshots.latest = Some((version, snapshot.clone()));
        Ok(snapshot)
    })
    .await?
}

/// What turns `below` into the base with `target` (a delta against the base) on top.
fn step_between(below: &Snapshot, target: &ChangeSet) -> ChangeSet {
    let mut step = ChangeSet::default();
    let mut note = |path: &forge_staging::RepoPath, now: Option<&forge_staging::Entry>| {
        let was = below.get(path.as_str());
        if was != now
            && let Some(change) = Change::between(was.cloned(), now.cloned())
        {
            step.insert(path.clone(), change);
        }
    };
    for (path, change) in target {
        note(path, change.after());
    }
    if let Some(delta) = below.delta() {
        for path in delta.paths() {
            if target.get(path.as_str()).is_none() {
                note(path, below.base().manifest().get(path.as_str()));
            }
        }
    }
    step
}
