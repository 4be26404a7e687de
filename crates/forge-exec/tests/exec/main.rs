//! forge-exec through its public API: one test binary (link once), one module per area.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is a failed test

mod bases;
mod contain;
mod driver;
mod gate;
mod manager;
mod parts;
mod preview;
mod process;
mod sched;
