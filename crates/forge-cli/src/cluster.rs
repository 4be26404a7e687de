//! Running attempts on a cluster: `[runner]` in `forge.toml`, `forge run --runner`, and the
//! hidden `forge attempt` that a cluster job runs on its node.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use forge_exec::runner::node::{NodeAttempt, run_attempt};
use forge_exec::{RayConfig, RunnerConfig};

use crate::config::Context;
use crate::error::{CliError, CliResult};

/// `[runner]` of `forge.toml`:
///
/// ```toml
/// [runner]
/// kind = "ray"                          # or "local" (the default)
/// address = "http://127.0.0.1:8265"     # the Ray dashboard (its job API)
/// listen = "127.0.0.1:0"                # the run's data channel, where the nodes reach it
/// forge = "forge"                       # the forge program on the nodes
/// env = { ANTHROPIC_API_KEY = "…" }     # given to every attempt's job
/// ```
pub(crate) fn parse_runner(table: &toml::Table, file: &str) -> CliResult<RunnerConfig> {
    let Some(runner) = table.get("runner") else {
        return Ok(RunnerConfig::Local);
    };
    let bad = |key: &str, want: &str| {
        CliError::usage(format!("{file}: `runner.{key}` must be {want}"))
            .hint("fix the value in forge.toml, or remove [runner] to run attempts on this machine")
    };
    let runner = runner.as_table().ok_or_else(|| bad("", "a table"))?;
    for key in runner.keys() {
        if !["kind", "address", "listen", "forge", "env"].contains(&key.as_str()) {
            return Err(bad(
                key,
                "one of kind, address, listen, forge, env (unknown key)",
            ));
        }
    }
    let kind = match runner.get("kind") {
        None => "local",
        Some(k) => k
            .as_str()
            .ok_or_else(|| bad("kind", "\"local\" or \"ray\""))?,
    };
    match kind {
        "local" => Ok(RunnerConfig::Local),
        "ray" => {
            let address = runner
                .get("address")
                .and_then(toml::Value::as_str)
                .ok_or_else(|| {
                    bad(
                        "address",
                        "the Ray dashboard's URL, such as \"http://127.0.0.1:8265\"",
                    )
                })?;
            let mut config = RayConfig::new(address).map_err(|e| bad("address", &e.to_string()))?;
            if let Some(listen) = runner.get("listen") {
                config.listen = listen
                    .as_str()
                    .and_then(|l| l.parse().ok())
                    .ok_or_else(|| bad("listen", "an address such as \"10.0.0.5:7400\""))?;
            }
            if let Some(forge) = runner.get("forge") {
                forge
                    .as_str()
                    .filter(|f| !f.is_empty())
                    .ok_or_else(|| bad("forge", "the forge program on the nodes"))?
                    .clone_into(&mut config.forge);
            }
            if let Some(env) = runner.get("env") {
                let env = env
                    .as_table()
                    .ok_or_else(|| bad("env", "a table of strings"))?;
                for (k, v) in env {
                    let v = v
                        .as_str()
                        .ok_or_else(|| bad(&format!("env.{k}"), "a string"))?;
                    config.env.insert(k.clone(), v.to_owned());
                }
            }
            Ok(RunnerConfig::Ray(config))
        }
        other => Err(bad(
            "kind",
            &format!("\"local\" or \"ray\", not \"{other}\""),
        )),
    }
}

/// The context with `--runner` (`local`, or `ray://host:port`) over `forge.toml`'s.
pub(crate) fn with_runner(ctx: &Context, flag: Option<&str>) -> CliResult<Context> {
    let mut ctx = ctx.clone();
    match flag {
        None => {}
        Some("local") => ctx.config.runner = RunnerConfig::Local,
        Some(url) => {
            let mut config = RayConfig::new(url).map_err(|e| {
                CliError::usage(format!("--runner {url}: {e}"))
                    .hint("give `--runner ray://host:port` (the Ray dashboard) or `--runner local`")
            })?;
            // What forge.toml says of the channel and the nodes still holds.
            if let RunnerConfig::Ray(from_file) = &ctx.config.runner {
                config.listen = from_file.listen;
                config.forge.clone_from(&from_file.forge);
                config.env.clone_from(&from_file.env);
            }
            ctx.config.runner = RunnerConfig::Ray(config);
        }
    }
    Ok(ctx)
}

/// `forge attempt`: run one attempt of a run on this node (started by a cluster job).
#[derive(Debug, Parser)]
#[command(name = "forge attempt")]
struct AttemptArgs {
    /// The run's data channel (`http://host:port`).
    #[arg(long)]
    server: String,
    /// The attempt's key.
    #[arg(long)]
    key: String,
    /// The node's blob cache (default: `$FORGE_NODE_CACHE`, else `~/.cache/forge/node-objects`).
    #[arg(long)]
    cache: Option<PathBuf>,
}

/// Runs `forge attempt` with its raw arguments; the token comes from `FORGE_ATTEMPT_TOKEN`.
#[allow(clippy::print_stderr)] // the job's log is where a node says what went wrong
pub(crate) fn attempt_main(args: &[OsString]) -> ExitCode {
    let args = match AttemptArgs::try_parse_from(
        std::iter::once(OsString::from("forge attempt")).chain(args.iter().cloned()),
    ) {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(2);
        }
    };
    let Some(token) = std::env::var("FORGE_ATTEMPT_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
    else {
        eprintln!("error: forge attempt: FORGE_ATTEMPT_TOKEN is not set (the cluster job sets it)");
        return ExitCode::from(2);
    };
    let cache = args
        .cache
        .or_else(|| std::env::var_os("FORGE_NODE_CACHE").map(PathBuf::from))
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/forge/node-objects"))
        })
        .unwrap_or_else(|| std::env::temp_dir().join("forge-node-objects"));
    let at = NodeAttempt {
        server: args.server,
        key: args.key,
        token,
        cache,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: forge attempt: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run_attempt(&at)) {
        Ok(report) => {
            eprintln!(
                "forge attempt: {} of {} start-tree blobs fetched (the rest from the node's \
                 cache); the agent exited with {:?}",
                report.fetched, report.files, report.exit_code
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> CliResult<RunnerConfig> {
        parse_runner(&toml::from_str(text).unwrap(), "forge.toml")
    }

    #[test]
    fn runner_table_reads_ray_and_defaults_to_local() {
        assert_eq!(parse("").unwrap(), RunnerConfig::Local);
        let RunnerConfig::Ray(ray) = parse(
            "[runner]\nkind = \"ray\"\naddress = \"http://10.0.0.1:8265/\"\nlisten = \"10.0.0.5:7400\"\nforge = \"/opt/forge\"\nenv = { KEY = \"v\" }\n",
        )
        .unwrap() else {
            panic!("not ray")
        };
        assert_eq!(ray.address, "http://10.0.0.1:8265");
        assert_eq!(ray.listen, "10.0.0.5:7400".parse().unwrap());
        assert_eq!(ray.forge, "/opt/forge");
        assert_eq!(ray.env.get("KEY").map(String::as_str), Some("v"));
    }

    #[test]
    fn bad_runner_values_name_the_key() {
        for (text, want) in [
            (
                "[runner]\nkind = \"slurm\"\n",
                "`runner.kind` must be \"local\" or \"ray\", not \"slurm\"",
            ),
            (
                "[runner]\nkind = \"ray\"\n",
                "`runner.address` must be the Ray dashboard's URL",
            ),
            (
                "[runner]\nkind = \"ray\"\naddress = \"8265\"\n",
                "is not `ray://host:port`",
            ),
            (
                "[runner]\nkind = \"ray\"\naddress = \"ray://h:1\"\nlisten = \"x\"\n",
                "`runner.listen` must be an address",
            ),
            (
                "[runner]\nadress = \"x\"\n",
                "`runner.adress` must be one of kind, address",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.what.contains(want), "{want}: {}", err.what);
        }
    }
}
