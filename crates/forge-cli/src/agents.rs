//! Agent profiles as the CLI uses them: the built-in ones, `[agents.*]` of `forge.toml`, and the
//! simulated agent run as this very executable (`forge sim-agent …`).

use forge_agents::Profiles;

use crate::config::Context;
use crate::error::{CliError, CliResult};

/// The profiles for this repository.
pub(crate) fn profiles(ctx: &Context) -> CliResult<Profiles> {
    let mut profiles = Profiles::builtin();
    if let (Some(path), Some(text)) = (&ctx.config.path, &ctx.config.text) {
        profiles.apply_config_source(text, path).map_err(|e| {
            CliError::usage(e.to_string())
                .hint("fix the `[agents]` tables of forge.toml (keys: program, args, format, env, install)")
        })?;
    }
    let exe = std::env::current_exe().map_err(|e| {
        CliError::failed(format!(
            "cannot find the forge executable for the simulated agent: {}",
            crate::error::io_reason(&e)
        ))
    })?;
    profiles.set_sim_program(exe, vec!["sim-agent".to_owned()]);
    Ok(profiles)
}

/// The names of every agent profile: built-in and from `forge.toml`.
pub(crate) fn configured_agent_names(ctx: &Context) -> CliResult<Vec<String>> {
    Ok(profiles(ctx)?.names().map(str::to_owned).collect())
}
