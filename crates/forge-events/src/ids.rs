//! Task and run ids live in `forge-types`, below every crate that names them.

pub use forge_types::{RunId, TaskId};
