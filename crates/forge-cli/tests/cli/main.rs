//! The `forge` binary, run as a user runs it: real git repositories, the `sim` agent, real
//! processes, real terminals (a pseudo-terminal for the live table).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is a failed test

mod add;
mod adhoc;
mod agents;
mod basics;
mod bisect;
mod budget;
mod candidates;
mod checks;
mod conflicts;
mod conflicts_agent;
mod contain;
mod dashboard;
mod dashboard_actions;
mod demo;
mod init;
mod logs;
mod mcp;
mod mcp_agents;
mod notify;
mod partial;
mod plan;
mod preview;
mod push;
mod ray;
mod retry;
mod review;
mod run;
mod runs;
mod silence;
mod split;
mod task_conflicts;
mod truth;
mod tty;
mod util;
mod workspace_git;
