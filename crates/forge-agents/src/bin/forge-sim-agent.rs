//! The simulated agent as its own program, for forge-exec's tests and the benchmarks (the CLI
//! offers the same as `forge sim-agent`). See [`forge_exec::sim`].

use std::process::ExitCode;

fn main() -> ExitCode {
    let code = forge_exec::sim::main(
        std::env::args_os().skip(1),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
