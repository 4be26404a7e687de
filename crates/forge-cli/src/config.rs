//! Where the repository is and what `forge.toml` and the `FORGE_*` variables say.
//!
//! `forge.toml` is found by walking up from the current directory (or from `--repo`). The CLI
//! reads its own keys here (`agent`, `[run] apply`, `[serve] bind/token`); the rest of the file
//! (agent profiles, workspaces, merge, gate) belongs to the engine, which gets the file's path.
//! Environment variables override the file: `FORGE_AGENT`, `FORGE_APPLY`, `FORGE_BIND`,
//! `FORGE_TOKEN` (`FORGE_REPO` and `FORGE_COLOR` are read by the argument parser).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{CliError, CliResult, io_reason};

/// The name of the configuration file.
pub(crate) const CONFIG_FILE: &str = "forge.toml";

/// What to do with a run's result when no flag says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum ApplyDefault {
    /// Ask on a terminal; keep it in the run store otherwise.
    #[default]
    Ask,
    /// Apply to the working tree.
    Yes,
    /// Keep it in the run store.
    No,
    /// Commit it to `forge/<run>`.
    Branch,
}

impl ApplyDefault {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "ask" => Some(Self::Ask),
            "yes" => Some(Self::Yes),
            "no" => Some(Self::No),
            "branch" => Some(Self::Branch),
            _ => None,
        }
    }
}

/// The CLI's settings, from `forge.toml` and the environment.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// The `forge.toml` found, if any.
    pub(crate) path: Option<PathBuf>,
    /// Its text, read once: the `[agents]` tables are read from it too (with `file:line:col`
    /// in errors), so every part of one command sees the same version of the file.
    pub(crate) text: Option<String>,
    /// Default agent of `forge plan` and `forge split`.
    pub(crate) agent: Option<String>,
    /// What `forge run` does with the result when no flag says.
    pub(crate) apply: ApplyDefault,
    /// Address of `forge serve`.
    pub(crate) bind: Option<SocketAddr>,
    /// Token of `forge serve`.
    pub(crate) token: Option<String>,
    /// The `notify` command: run when a run ends or waits for an answer (see `notify`).
    pub(crate) notify: Option<String>,
    /// Whether the terminal bell rings then (`[run] bell`, default true).
    pub(crate) bell: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            path: None,
            text: None,
            agent: None,
            apply: ApplyDefault::default(),
            bind: None,
            token: None,
            notify: None,
            bell: true,
        }
    }
}

/// The repository and configuration a command works with.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    /// The repository's root directory (absolute).
    pub(crate) repo: PathBuf,
    /// The settings.
    pub(crate) config: Config,
    /// Whether `repo` is a git work tree (else it is where `forge.toml` is, or the current
    /// directory).
    pub(crate) in_git: bool,
}

impl Context {
    /// Finds the repository from `--repo` (or the current directory) and loads the settings.
    pub(crate) fn discover(repo_flag: Option<&Path>) -> CliResult<Self> {
        let cwd = std::env::current_dir().map_err(|e| {
            CliError::failed(format!(
                "cannot read the current directory: {}",
                io_reason(&e)
            ))
        })?;
        let start = match repo_flag {
            Some(dir) => {
                let dir = cwd.join(dir);
                if !dir.is_dir() {
                    return Err(CliError::usage(format!(
                        "--repo {}: no such directory",
                        dir.display()
                    ))
                    .hint("give the path of a repository, or leave --repo out to use the current directory"));
                }
                dir
            }
            None => cwd,
        };
        let config_path = find_upwards(&start, CONFIG_FILE);
        let top = git_toplevel(&start);
        let in_git = top.is_some();
        let repo = match top {
            Some(top) => top,
            None => config_path
                .as_deref()
                .and_then(Path::parent)
                .map_or_else(|| start.clone(), Path::to_path_buf),
        };
        let mut config = match &config_path {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        config.apply_env(|key| std::env::var(key).ok())?;
        Ok(Self {
            repo,
            config,
            in_git,
        })
    }

    /// The error for a command that needs runs, in a directory that is no git repository and
    /// has none.
    pub(crate) fn not_a_repository(&self) -> CliError {
        CliError::usage(format!(
            "{} is not inside a git repository, so it has no Forge runs",
            self.repo.display()
        ))
        .hint("run forge inside your repository, or point at it with `--repo DIR`")
    }

    /// The `.forge/runs` directory of the repository.
    pub(crate) fn runs_dir(&self) -> PathBuf {
        forge_events::layout::runs_dir(&self.repo)
    }
}

/// The first `dir/name` that exists, from `start` up to the root.
pub(crate) fn find_upwards(start: &Path, name: &str) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The top directory of the git work tree around `dir`, if any.
fn git_toplevel(dir: &Path) -> Option<PathBuf> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "--show-toplevel"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let top = PathBuf::from(text.trim_end_matches(['\n', '\r']));
    top.is_dir().then_some(top)
}

impl Config {
    /// Reads the CLI's keys from the `forge.toml` at `path`.
    pub(crate) fn load(path: &Path) -> CliResult<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| CliError::io("read", path, &e))?;
        Self::parse(&text, path)
    }

    /// Reads the CLI's keys from `forge.toml` text.
    pub(crate) fn parse(text: &str, path: &Path) -> CliResult<Self> {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            CliError::usage(format!(
                "{} is not valid TOML: {}",
                path.display(),
                e.message()
            ))
            .report(e.to_string())
            .hint("fix the file, or move it away to use the defaults")
        })?;
        let bad = |key: &str, want: &str| {
            CliError::usage(format!("{}: `{key}` must be {want}", path.display()))
                .hint("fix the value in forge.toml, or remove the key to use the default")
        };
        let mut config = Config {
            path: Some(path.to_path_buf()),
            text: Some(text.to_owned()),
            ..Config::default()
        };
        if let Some(agent) = table.get("agent") {
            config.agent = Some(
                agent
                    .as_str()
                    .ok_or_else(|| bad("agent", "a string (an agent profile)"))?
                    .to_owned(),
            );
        }
        if let Some(notify) = table.get("notify") {
            config.notify = Some(
                notify
                    .as_str()
                    .ok_or_else(|| bad("notify", "a string (a shell command)"))?
                    .to_owned(),
            )
            .filter(|c| !c.trim().is_empty());
        }
        if let Some(run) = table.get("run") {
            let run = run.as_table().ok_or_else(|| bad("run", "a table"))?;
            if let Some(bell) = run.get("bell") {
                config.bell = bell
                    .as_bool()
                    .ok_or_else(|| bad("run.bell", "true or false"))?;
            }
            if let Some(apply) = run.get("apply") {
                config.apply = apply
                    .as_str()
                    .and_then(ApplyDefault::parse)
                    .ok_or_else(|| {
                        bad("run.apply", "one of \"ask\", \"yes\", \"no\", \"branch\"")
                    })?;
            }
        }
        if let Some(serve) = table.get("serve") {
            let serve = serve.as_table().ok_or_else(|| bad("serve", "a table"))?;
            if let Some(bind) = serve.get("bind") {
                config.bind =
                    Some(bind.as_str().and_then(|b| b.parse().ok()).ok_or_else(|| {
                        bad("serve.bind", "an address such as \"127.0.0.1:7317\"")
                    })?);
            }
            if let Some(token) = serve.get("token") {
                config.token = Some(
                    token
                        .as_str()
                        .ok_or_else(|| bad("serve.token", "a string"))?
                        .to_owned(),
                )
                .filter(|t| !t.is_empty());
            }
        }
        Ok(config)
    }

    /// Applies `FORGE_*` overrides read through `var`.
    pub(crate) fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> CliResult<()> {
        if let Some(agent) = var("FORGE_AGENT").filter(|a| !a.is_empty()) {
            self.agent = Some(agent);
        }
        if let Some(apply) = var("FORGE_APPLY").filter(|a| !a.is_empty()) {
            self.apply = ApplyDefault::parse(&apply).ok_or_else(|| {
                CliError::usage(format!(
                    "FORGE_APPLY={apply}: expected one of ask, yes, no, branch"
                ))
            })?;
        }
        if let Some(bind) = var("FORGE_BIND").filter(|b| !b.is_empty()) {
            self.bind = Some(bind.parse().map_err(|_| {
                CliError::usage(format!(
                    "FORGE_BIND={bind}: expected an address such as 127.0.0.1:7317"
                ))
            })?);
        }
        if let Some(token) = var("FORGE_TOKEN").filter(|t| !t.is_empty()) {
            self.token = Some(token);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_cli_keys_and_ignores_the_engines() {
        let text = r#"
            agent = "claude"
            [run]
            apply = "branch"
            [serve]
            bind = "127.0.0.1:9000"
            token = "s3cret"
            [agents.droid]
            command = ["droid", "exec"]
        "#;
        let c = Config::parse(text, Path::new("forge.toml")).unwrap();
        assert_eq!(c.agent.as_deref(), Some("claude"));
        assert_eq!(c.apply, ApplyDefault::Branch);
        assert_eq!(c.bind, Some("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(c.token.as_deref(), Some("s3cret"));
    }

    #[test]
    fn bad_values_name_the_file_and_key() {
        let err =
            Config::parse("[run]\napply = \"maybe\"\n", Path::new("/r/forge.toml")).unwrap_err();
        assert_eq!(err.exit, crate::error::Exit::Usage);
        assert!(
            err.what.contains("/r/forge.toml: `run.apply`"),
            "{}",
            err.what
        );
        let err = Config::parse("agent = [", Path::new("forge.toml")).unwrap_err();
        assert!(
            err.what.starts_with("forge.toml is not valid TOML"),
            "{}",
            err.what
        );
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut c = Config::parse("agent = \"droid\"\n", Path::new("forge.toml")).unwrap();
        c.apply_env(|k| match k {
            "FORGE_AGENT" => Some("codex".into()),
            "FORGE_APPLY" => Some("yes".into()),
            "FORGE_BIND" => Some("127.0.0.1:1".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.agent.as_deref(), Some("codex"));
        assert_eq!(c.apply, ApplyDefault::Yes);
        assert_eq!(c.bind, Some("127.0.0.1:1".parse().unwrap()));
        let err = c.apply_env(|k| (k == "FORGE_APPLY").then(|| "sometimes".into()));
        assert!(err.is_err());
    }

    #[test]
    fn the_config_file_is_found_walking_up() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        std::fs::create_dir_all(&deep).unwrap();
        assert_eq!(find_upwards(&deep, "forge-test-nothing.toml"), None);
        std::fs::write(dir.path().join("a/forge.toml"), "").unwrap();
        assert_eq!(
            find_upwards(&deep, CONFIG_FILE),
            Some(dir.path().join("a/forge.toml"))
        );
    }
}
