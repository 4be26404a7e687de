//! The `forge` binary, run as a user runs it: real git repositories, the `sim` agent, real
//! processes, real terminals (a pseudo-terminal for the live table).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is a failed test

mod basics;
mod dashboard;
mod demo;
mod init;
mod plan;
mod run;
mod runs;
mod silence;
mod split;
mod tty;
mod util;
mod workspace_git;
