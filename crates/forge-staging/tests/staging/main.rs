//! Integration tests of forge-staging through its public API, against real git, real mounts and
//! real file systems. One test binary (see STYLE.md): the modules below are its parts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod base;
mod common;
mod conformance;
mod delta;
mod git;
mod lifecycle;
mod stack;
