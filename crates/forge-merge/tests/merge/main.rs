//! Integration tests of forge-merge, through its public API, against real git, real processes
//! and real file systems. One test binary (see STYLE.md): each area is a module.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// Test fixtures favour short names and plain string building over the lints' preferences.
#![allow(
    clippy::format_collect,
    clippy::many_single_char_names,
    clippy::type_complexity,
    clippy::cast_possible_truncation,
    clippy::items_after_statements
)]

mod apply;
mod branch;
mod common;
mod git_parity;
mod integrate;
mod settle;
mod unified;
