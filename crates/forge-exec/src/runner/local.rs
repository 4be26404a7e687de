//! The local runner: an attempt's *stage → agent → (per-task checks) → capture* on this
//! machine, in a workspace of the run's stager.
//!
//! A failed check sends the agent round again in a workspace holding what it did so far,
//! continuing its session where its profile can (`check_rounds` times); a retried attempt
//! starts from its previous attempt's work and session the same way.

use std::sync::Arc;

use super::AttemptRunner;
use crate::manager::Shared;
use crate::manager::attempt::{Attempt, agent, capture, stage};
use crate::manager::check::{self, Checked};

/// Runs attempts on this machine (the default runner).
pub(crate) struct LocalRunner;

#[async_trait::async_trait]
impl AttemptRunner for LocalRunner {
    async fn run(&self, shared: &Arc<Shared>, mut a: Attempt) -> Attempt {
        loop {
            a = stage::stage(shared, a).await;
            if !a.is_over() {
                a = agent::run(shared, a).await;
            }
            if !a.is_over() && !a.task.check.is_empty() {
                match check::round(shared, a).await {
                    Checked::Done(next) => a = next,
                    Checked::Again(next) => {
                        a = next;
                        continue;
                    }
                }
            }
            if !a.is_over() {
                a = capture::capture(shared, a).await;
            }
            // Whatever ended the attempt, its workspace goes with it.
            return capture::release(a).await;
        }
    }
}
