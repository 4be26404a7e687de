//! Runners: where an attempt's agent runs.
//!
//! The pipeline keeps locks, integration, conflicts, the gate, the journal and apply; for the
//! middle of an attempt — *stage → agent → capture* — it calls an `AttemptRunner`: the start
//! tree (a [`forge_staging::Snapshot`]) goes in, live events come out as they happen, and a
//! verified [`forge_staging::ChangeSet`] (or the reason there is none) comes back, which the
//! pipeline then persists before the task is recorded as finished, whatever ran it.
//!
//! - `local` (the default): this machine, in a workspace of the run's stager, with per-task
//!   checks and session resume.
//! - [`ray`]: a node of a Ray cluster, through Ray's HTTP job API; `forge attempt` (the
//!   [`node`] module) runs the attempt there and talks back over the run's data channel.
//!
//! Another launcher (Kubernetes Jobs, Slurm) is one more module: it submits `forge attempt` as its
//! engine's job and shares the data channel of the Ray runner ([`ray::channel`]).

pub(crate) mod local;
pub mod node;
pub mod ray;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::ExecError;
use crate::manager::Shared;
use crate::manager::attempt::Attempt;

/// Where a run's attempts execute (`[runner]` in `forge.toml`, `forge run --runner`).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum RunnerConfig {
    /// On this machine (the default).
    #[default]
    Local,
    /// On a Ray cluster.
    Ray(RayConfig),
}

/// A Ray cluster to run attempts on.
#[derive(Debug, Clone, PartialEq)]
pub struct RayConfig {
    /// The cluster's dashboard, where its job API is (`http://127.0.0.1:8265`).
    pub address: String,
    /// Where this process serves the run's data channel (start trees out, output and changes
    /// in) to the nodes: an address they can reach. Port 0 picks a free one.
    pub listen: SocketAddr,
    /// The `forge` program on the nodes (a path, or a name on their `PATH`).
    pub forge: String,
    /// Environment variables every attempt's job gets (agents' credentials, `PATH`).
    pub env: BTreeMap<String, String>,
}

impl RayConfig {
    /// A cluster at `address` (`http://host:port`, or `ray://host:port` as `--runner` takes it),
    /// with the data channel on 127.0.0.1 and `forge` from the nodes' `PATH`.
    pub fn new(address: &str) -> Result<Self, ExecError> {
        let rest = address
            .strip_prefix("ray://")
            .or_else(|| address.strip_prefix("http://"))
            .ok_or_else(|| {
                ExecError::Config(format!(
                    "runner address `{address}` is not `ray://host:port` or `http://host:port` \
                     (the Ray dashboard, port 8265 by default)"
                ))
            })?;
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains('/') || !rest.contains(':') {
            return Err(ExecError::Config(format!(
                "runner address `{address}` needs a host and a port, such as ray://127.0.0.1:8265"
            )));
        }
        Ok(Self {
            address: format!("http://{rest}"),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            forge: "forge".to_owned(),
            env: BTreeMap::new(),
        })
    }
}

/// Runs the *stage → agent → capture* part of an attempt somewhere.
///
/// The attempt comes with its start tree (`Attempt::start`), prompt and the session it
/// continues; it goes back with its captured `ChangeSet` (`Attempt::changes`, every blob in the
/// run's store) or ended (failed, stopped, could not start, node lost), never holding a
/// workspace.
#[async_trait::async_trait]
pub(crate) trait AttemptRunner: Send + Sync {
    /// Runs one pass of the attempt, publishing the agent's progress as it comes.
    async fn run(&self, shared: &Arc<Shared>, attempt: Attempt) -> Attempt;

    /// Whether what a retried attempt continues reaches its agent: the previous attempt's
    /// changes put into the workspace, and the agent's own session (its state lives in the
    /// attempt's private folder on this machine). A runner that starts every attempt afresh
    /// elsewhere says no; the retry's prompt then carries the previous work instead.
    fn continues_attempts(&self) -> bool {
        true
    }

    /// Attempts (task, attempt number) that a dead process of this run left running where
    /// this runner can take them over: a resumed run runs them under the same number, and
    /// [`AttemptRunner::run`] reattaches instead of starting them again.
    fn reattachable(&self) -> Vec<(forge_events::TaskId, u32)> {
        Vec::new()
    }

    /// Runs the plan's gate on `tree` (the integrated tree) where this runner runs attempts
    /// (`[gate] on = "cluster"`), publishing `gate_started` / `gate_finished` per command as
    /// the local gate does.
    async fn gate(
        &self,
        shared: &Arc<Shared>,
        tree: Arc<forge_staging::Snapshot>,
        cancel: &crate::CancelHandle,
    ) -> Result<forge_merge::GateReport, ExecError> {
        let _ = (shared, tree, cancel);
        Err(ExecError::Config(
            "`[gate] on = \"cluster\"` needs a cluster runner (`[runner] kind = \"ray\"` in \
             forge.toml, or `--runner ray://host:port`)"
                .to_owned(),
        ))
    }
}
