//! `forge`: run several AI coding agents on one repository in parallel, safely.
//!
//! This binary is thin glue: it parses arguments, renders what the engine reports, and asks the
//! user before touching their files. All logic lives in the library crates (`forge-exec` and below).

// The command line's job is to print.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

/// Run several AI coding agents on one repository in parallel, safely.
///
/// Forge turns a plan into a DAG of tasks, gives each agent an isolated workspace and file locks,
/// merges what they changed with real conflict detection, gates the result on your tests and
/// applies it atomically.
#[derive(Debug, Parser)]
#[command(name = "forge", version, about, long_about)]
struct Cli {}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    // No subcommands exist yet: say so rather than pretending to do work.
    let mut command = Cli::command();
    if let Err(err) = command.print_help() {
        eprintln!("forge: cannot print help: {err}");
        return ExitCode::FAILURE;
    }
    println!("\nNo subcommands are available yet in this version.");
    ExitCode::SUCCESS
}
