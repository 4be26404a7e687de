//! forge-agents through its public API: one test binary (link once), one module per area.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is a failed test

mod agents;
mod real_outputs;
mod sim;
mod transcripts;
