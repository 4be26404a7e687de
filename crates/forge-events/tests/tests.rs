//! Integration tests of forge-events through its public API (one test binary, modules in `it/`).
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Test data builders are long lists, and small test counts are cast freely.
#![allow(
    clippy::too_many_lines,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap
)]

mod it {
    mod bus;
    mod common;
    mod fuzz;
    mod journal;
    mod schema;
    #[cfg(feature = "http")]
    mod sse;
    mod state;
}
