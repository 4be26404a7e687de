//! forge-exec through its public API: one test binary (link once), one module per area.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is a failed test

mod agents;
mod bases;
mod contain;
mod manager;
mod preview;
mod process;
mod real_outputs;
mod sched;
mod sim;
mod transcripts;
