//! The simulated agent as its own program, for tests and benchmarks (the CLI
//! offers the same as `forge sim-agent`). See [`forge_agents::sim`].

use std::process::ExitCode;

fn main() -> ExitCode {
    let code = forge_agents::sim::main(
        std::env::args_os().skip(1),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
