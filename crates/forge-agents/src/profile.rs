//! Profiles: how each agent CLI is started, and the registry of them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{AgentError, AgentHome, OutputFormat, did_you_mean};
use crate::{CommandLine, find_program};

/// The variable of `resume` that stands for the session to continue.
const SESSION_VAR: &str = "{session}";

/// The longest single argument Linux accepts (`MAX_ARG_STRLEN`, terminating NUL included).
const MAX_ARG_BYTES: usize = 128 * 1024;

/// How to start one agent.
///
/// `args` are templates: `{prompt}` is the prompt text, `{prompt_file}` the path of a file holding
/// it, `{model}` the model asked for; `{{` and `}}` are literal braces. An argument that uses a
/// variable with no value (no model was asked for) is left out, and so is the argument just
/// before it when that one is an option (starts with `-`) and uses no variable: `--model {model}`
/// disappears as a pair, `--model={model}` as one argument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Profile {
    /// The profile name (`droid`, `claude`, … or one from `forge.toml`).
    pub name: String,
    /// The program, looked up on `PATH` unless it contains a `/`.
    pub program: String,
    /// Argument templates.
    pub args: Vec<String>,
    /// What the agent prints, which selects the parser.
    pub format: OutputFormat,
    /// Extra environment for the agent.
    pub env: BTreeMap<String, String>,
    /// How to install the program, for the "not found" error (`install … (https://…)`).
    pub install: String,
    /// Argument templates that continue one of the agent's own sessions instead of starting a
    /// new one (a retried task, check feedback), inserted into `args` before the prompt (see
    /// [`Profile::resume_command`]): the same variables as `args` plus `{session}`, the session
    /// id the agent named (`task_session`). Empty: the CLI cannot, and a new attempt gets the
    /// previous one's final message and diff in its prompt.
    pub resume: Vec<String>,
    /// Where the CLI keeps its state: each task gets a private directory there, seeded from the
    /// user's (see `state.rs`). `None`: the CLI's state is not moved.
    pub home: Option<super::AgentHome>,
}

/// The values substituted into a profile's argument templates.
#[derive(Debug, Clone, Copy)]
pub struct PromptVars<'a> {
    /// The prompt text (`{prompt}`).
    pub prompt: &'a str,
    /// A file holding the prompt (`{prompt_file}`).
    pub prompt_file: &'a Path,
    /// The model asked for (`{model}`); `None` or empty leaves out the arguments that use it.
    pub model: Option<&'a str>,
}

/// A template variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Prompt,
    PromptFile,
    Model,
}

/// A piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(Var),
}

/// Parses an argument template into text and variables.
fn parse_template(template: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        text.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("{{") {
            text.push('{');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("}}") {
            text.push('}');
            rest = after;
        } else if tail.starts_with('}') {
            return Err("a `}` without its `{` (write `}}` for a literal brace)".into());
        } else {
            let Some(end) = tail.find('}') else {
                return Err("a `{` without its `}` (write `{{` for a literal brace)".into());
            };
            let var = match &tail[1..end] {
                "prompt" => Var::Prompt,
                "prompt_file" => Var::PromptFile,
                "model" => Var::Model,
                other => {
                    return Err(format!(
                        "unknown variable `{{{other}}}`; use {{prompt}}, {{prompt_file}} or {{model}}"
                    ));
                }
            };
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(Piece::Var(var));
            rest = &tail[end + 1..];
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

impl Profile {
    /// A profile with no extra environment.
    pub fn new(
        name: impl Into<String>,
        program: impl Into<String>,
        args: &[&str],
        format: OutputFormat,
        install: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            program: program.into(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            format,
            env: BTreeMap::new(),
            install: install.into(),
            resume: Vec::new(),
            home: None,
        }
    }

    /// The same profile with `resume` set.
    #[must_use]
    pub fn with_resume(mut self, args: &[&str]) -> Self {
        self.resume = args.iter().map(|a| (*a).to_owned()).collect();
        self
    }

    /// Whether the profile can continue one of the agent's sessions (it has `resume`).
    pub fn can_resume(&self) -> bool {
        !self.resume.is_empty()
    }

    /// Where `resume` goes in `args`: before the prompt — the first argument that uses
    /// `{prompt}` or `{prompt_file}`, together with the `--` or the option (`-f`) just before
    /// it unless it is an option itself (`--prompt={prompt}`) — or at the end when no argument
    /// holds the prompt.
    fn resume_at(&self) -> usize {
        let Some(at) = self
            .args
            .iter()
            .position(|a| a.contains("{prompt}") || a.contains("{prompt_file}"))
        else {
            return self.args.len();
        };
        // `--prompt={prompt}` is its own option; `{prompt}` alone goes with `--` or `-f` before it.
        if self.args[at].starts_with('-') {
            return at;
        }
        match at.checked_sub(1).map(|i| self.args[i].as_str()) {
            Some(before) if before.starts_with('-') && !before.contains('{') => at - 1,
            _ => at,
        }
    }

    /// The command line that continues `session` with `vars.prompt` as the next message: `args`
    /// with `resume` inserted before the prompt and `{session}` standing for `session`
    /// (`claude -p … --resume <session> -- <prompt>`); `None` when the profile has no `resume`.
    pub fn resume_command(
        &self,
        vars: &PromptVars<'_>,
        session: &str,
    ) -> Result<Option<CommandLine>, AgentError> {
        if self.resume.is_empty() {
            return Ok(None);
        }
        let escaped = session.replace('{', "{{").replace('}', "}}");
        let mut args = self.args.clone();
        let at = self.resume_at();
        args.splice(
            at..at,
            self.resume.iter().map(|a| a.replace(SESSION_VAR, &escaped)),
        );
        let probe = Profile {
            args,
            resume: Vec::new(),
            ..self.clone()
        };
        probe.command(vars).map(Some)
    }

    /// The simulated agent run as `program leading_args… --format <format> -f {prompt_file}`
    /// (the CLI passes its own executable and `["sim-agent"]`; tests pass the
    /// `forge-sim-agent` binary and no leading arguments).
    pub fn sim(
        name: impl Into<String>,
        program: impl Into<PathBuf>,
        leading_args: Vec<String>,
        format: OutputFormat,
    ) -> Self {
        let mut args = leading_args;
        args.extend([
            "--format".to_owned(),
            format.name().to_owned(),
            "-f".to_owned(),
            "{prompt_file}".to_owned(),
        ]);
        Self {
            name: name.into(),
            program: program.into().to_string_lossy().into_owned(),
            args,
            format,
            env: BTreeMap::new(),
            install: "the simulated agent ships with forge: put `forge` on PATH".to_owned(),
            resume: vec!["--resume".to_owned(), SESSION_VAR.to_owned()],
            home: None,
        }
    }

    /// Checks that every argument template parses (`{session}` is allowed in `resume`).
    pub fn validate(&self) -> Result<(), AgentError> {
        for template in &self.resume {
            parse_template(&template.replace(SESSION_VAR, "")).map_err(|reason| {
                AgentError::Template {
                    agent: self.name.clone(),
                    template: template.clone(),
                    reason,
                }
            })?;
        }
        for template in &self.args {
            parse_template(template).map_err(|reason| AgentError::Template {
                agent: self.name.clone(),
                template: template.clone(),
                reason,
            })?;
        }
        Ok(())
    }

    /// The command line with `{prompt}`, `{prompt_file}` and `{model}` substituted; `env` holds
    /// the profile's environment. The caller runs it in the directory the agent works in.
    pub fn command(&self, vars: &PromptVars<'_>) -> Result<CommandLine, AgentError> {
        let model = vars.model.filter(|m| !m.is_empty());
        let prompt_file = vars.prompt_file.to_string_lossy();
        let mut args: Vec<std::ffi::OsString> = Vec::with_capacity(self.args.len());
        // Whether the last argument pushed is a plain option from the previous template, which
        // goes with an argument that is left out.
        let mut plain_option_last = false;
        for template in &self.args {
            let pieces = parse_template(template).map_err(|reason| AgentError::Template {
                agent: self.name.clone(),
                template: template.clone(),
                reason,
            })?;
            let uses_var = pieces.iter().any(|p| matches!(p, Piece::Var(_)));
            if model.is_none() && pieces.contains(&Piece::Var(Var::Model)) {
                if plain_option_last {
                    args.pop();
                }
                plain_option_last = false;
                continue;
            }
            let mut arg = String::new();
            for piece in &pieces {
                match piece {
                    Piece::Text(t) => arg.push_str(t),
                    Piece::Var(Var::Prompt) => arg.push_str(vars.prompt),
                    Piece::Var(Var::PromptFile) => arg.push_str(&prompt_file),
                    Piece::Var(Var::Model) => arg.push_str(model.unwrap_or_default()),
                }
            }
            if arg.len() >= MAX_ARG_BYTES {
                return Err(AgentError::ArgumentTooLong {
                    agent: self.name.clone(),
                    bytes: arg.len(),
                    limit: MAX_ARG_BYTES - 1,
                });
            }
            if arg.contains('\0') {
                return Err(AgentError::Template {
                    agent: self.name.clone(),
                    template: template.clone(),
                    reason: "the value contains a NUL byte, which no argument can hold".into(),
                });
            }
            plain_option_last = !uses_var && arg.starts_with('-');
            args.push(arg.into());
        }
        Ok(CommandLine {
            program: self.program.clone().into(),
            args,
            env: self.env.iter().map(|(k, v)| (k.into(), v.into())).collect(),
        })
    }

    /// Resolves the program on `PATH` (or checks a path containing `/`).
    pub fn locate(&self) -> Result<PathBuf, AgentError> {
        find_program(&self.program).ok_or_else(|| AgentError::NotFound {
            agent: self.name.clone(),
            program: self.program.clone(),
            hint: self.install.clone(),
        })
    }
}

/// The registry of agent profiles: the built-in ones plus those of `forge.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profiles {
    profiles: BTreeMap<String, Profile>,
}

impl Default for Profiles {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Profiles {
    /// The built-in profiles: `droid`, `claude`, `codex`, `gemini`, `opencode`, `amp`, `aider`,
    /// `shell` and `sim` (the simulated agent, run as `forge sim-agent`).
    ///
    /// An agent runs unattended in its own workspace, which is its sandbox: it may edit files
    /// and run the project's commands (build, tests) there without asking. Claude Code runs
    /// with `--permission-mode acceptEdits --allowedTools Bash` (its `bypassPermissions` is
    /// refused as root), Codex with `--sandbox workspace-write` (its own sandbox: commands run,
    /// writes stay in the workspace, no network), Gemini CLI with `--approval-mode yolo` and
    /// `--skip-trust` (Forge's workspaces are folders it has never seen), droid with
    /// `--auto medium` (edits, builds and tests; no irreversible commands), opencode with its
    /// defaults (everything allowed). No prompt can be read as an option: it follows `--`, is
    /// glued to its option (`--prompt=…`), or is passed as a file.
    ///
    /// Claude Code (`--resume`), Codex (`exec resume`), Gemini CLI (`--resume`), opencode
    /// (`--session`) and the simulated agent (`--resume`) have a `resume` template: a retried
    /// attempt continues their session (Gemini and opencode key sessions to the project
    /// directory, which every attempt sees at the repository's own path). droid has none: `droid
    /// exec -s <id>` fetches the session from Factory's service (offline it exits with "Failed
    /// to fetch session"), so a retried droid attempt gets the previous one's final message and
    /// diff in its prompt.
    #[allow(clippy::too_many_lines)] // the table of built-in agents
    pub fn builtin() -> Self {
        use OutputFormat::{Amp, Claude, Codex, Droid, Gemini, Opencode, Text};
        let all = [
            Profile::new(
                "droid",
                "droid",
                &[
                    "exec",
                    "--auto",
                    "medium",
                    "-o",
                    "stream-json",
                    "--model",
                    "{model}",
                    "-f",
                    "{prompt_file}",
                ],
                Droid,
                "install Factory's droid CLI (`curl -fsSL https://app.factory.ai/cli | sh`, see https://docs.factory.ai/cli)",
            ),
            Profile::new(
                "claude",
                "claude",
                &[
                    "-p",
                    "--output-format",
                    "stream-json",
                    "--verbose",
                    "--permission-mode",
                    "acceptEdits",
                    "--allowedTools",
                    "Bash",
                    "--model",
                    "{model}",
                    "--",
                    "{prompt}",
                ],
                Claude,
                "install Claude Code (`npm install -g @anthropic-ai/claude-code`)",
            )
            .with_resume(&["--resume", "{session}"]),
            Profile::new(
                "codex",
                "codex",
                &[
                    "exec",
                    "--json",
                    "--sandbox",
                    "workspace-write",
                    "--skip-git-repo-check",
                    "--model",
                    "{model}",
                    "--",
                    "{prompt}",
                ],
                Codex,
                "install the Codex CLI (`npm install -g @openai/codex`)",
            )
            .with_resume(&["resume", "{session}"]),
            Profile::new(
                "gemini",
                "gemini",
                &[
                    "--skip-trust",
                    "--prompt={prompt}",
                    "-o",
                    "stream-json",
                    "--approval-mode",
                    "yolo",
                    "--model",
                    "{model}",
                ],
                Gemini,
                "install the Gemini CLI (`npm install -g @google/gemini-cli`)",
            )
            .with_resume(&["--resume", "{session}"]),
            Profile::new(
                "opencode",
                "opencode",
                &[
                    "run",
                    "--format",
                    "json",
                    "--print-logs",
                    "--log-level",
                    "ERROR",
                    "--model",
                    "{model}",
                    "--",
                    "{prompt}",
                ],
                Opencode,
                "install opencode (`npm install -g opencode-ai`)",
            )
            .with_resume(&["--session", "{session}"]),
            Profile::new(
                "amp",
                "amp",
                &["--stream-json", "--execute={prompt}"],
                Amp,
                "install Amp (`npm install -g @sourcegraph/amp`)",
            ),
            Profile::new(
                "aider",
                "aider",
                &[
                    "--message-file",
                    "{prompt_file}",
                    "--yes-always",
                    "--no-auto-commits",
                    "--no-pretty",
                    "--model",
                    "{model}",
                ],
                Text,
                "install aider (`python -m pip install aider-install && aider-install`)",
            ),
            Profile::new(
                "shell",
                "sh",
                &["-c", "--", "{prompt}"],
                Text,
                "install a POSIX shell as `sh`",
            ),
            Profile::sim("sim", "forge", vec!["sim-agent".to_owned()], Droid),
        ];
        let mut profiles: BTreeMap<String, Profile> =
            all.into_iter().map(|p| (p.name.clone(), p)).collect();
        // Private agent state per task (see `state.rs`): the variable each CLI honours, and the
        // files it needs to authenticate.
        let homes = [
            (
                "droid",
                AgentHome::new(
                    "FACTORY_HOME_OVERRIDE",
                    "",
                    ".factory",
                    &["settings.json", "config.json", "auth.json"],
                ),
            ),
            (
                "claude",
                AgentHome::new(
                    "CLAUDE_CONFIG_DIR",
                    ".claude",
                    "",
                    &[".credentials.json", "settings.json", ".claude.json"],
                ),
            ),
            (
                "codex",
                AgentHome::new("CODEX_HOME", ".codex", "", &["auth.json", "config.toml"]),
            ),
            (
                "gemini",
                AgentHome::new(
                    "GEMINI_CLI_HOME",
                    "",
                    ".gemini",
                    &[
                        "settings.json",
                        "oauth_creds.json",
                        "google_accounts.json",
                        ".env",
                    ],
                ),
            ),
            (
                "opencode",
                AgentHome::new("XDG_DATA_HOME", ".local/share", "opencode", &["auth.json"]),
            ),
        ];
        for (name, home) in homes {
            if let Some(profile) = profiles.get_mut(name) {
                profile.home = Some(home);
            }
        }
        // Claude Code retries a failing model call ten times with backoff (minutes); three
        // retries say "the model is down" in seconds, in its own words.
        if let Some(claude) = profiles.get_mut("claude") {
            claude
                .env
                .insert("CLAUDE_CODE_MAX_RETRIES".to_owned(), "3".to_owned());
        }
        // droid prints nothing while it retries a failing model call (about four minutes against
        // HTTP 500); its log, sent to standard error, records each failed call, which the droid
        // parser counts (see `format/droid.rs`).
        if let Some(droid) = profiles.get_mut("droid") {
            droid
                .env
                .insert("FACTORY_LOG_FILE".to_owned(), "/dev/stderr".to_owned());
        }
        Self { profiles }
    }

    /// The profile called `name`.
    pub fn get(&self, name: &str) -> Option<&Profile> {
        self.profiles.get(name)
    }

    /// The profile called `name`, or an error naming the known ones.
    pub fn require(&self, name: &str) -> Result<&Profile, AgentError> {
        self.get(name).ok_or_else(|| AgentError::UnknownProfile {
            name: name.to_owned(),
            suggestion: did_you_mean(name, self.names()).map(str::to_owned),
            known: self.names().collect::<Vec<_>>().join(", "),
        })
    }

    /// Every profile name, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.profiles.keys().map(String::as_str)
    }

    /// Every profile, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &Profile> {
        self.profiles.values()
    }

    /// Adds a profile (or replaces the one of the same name), returning the replaced one.
    pub fn insert(&mut self, profile: Profile) -> Result<Option<Profile>, AgentError> {
        profile.validate()?;
        Ok(self.profiles.insert(profile.name.clone(), profile))
    }

    /// Where the `sim` profile's program is: the CLI passes its own executable and
    /// `["sim-agent"]`, tests pass `env!("CARGO_BIN_EXE_forge-sim-agent")` and no leading
    /// arguments. The profile keeps its format (`--format` follows it).
    pub fn set_sim_program(&mut self, program: impl Into<PathBuf>, leading_args: Vec<String>) {
        let format = self
            .profiles
            .get("sim")
            .map_or(OutputFormat::Droid, |p| p.format);
        let env = self
            .profiles
            .get("sim")
            .map(|p| p.env.clone())
            .unwrap_or_default();
        let mut sim = Profile::sim("sim", program, leading_args, format);
        sim.env = env;
        self.profiles.insert("sim".to_owned(), sim);
    }

    /// Checks that every distinct agent named is known and its program resolvable, reporting
    /// every missing one at once. Returns each agent's resolved program, so spawns can skip the
    /// `PATH` search.
    pub fn check_available<'a>(
        &self,
        agents: impl IntoIterator<Item = &'a str>,
    ) -> Result<BTreeMap<String, PathBuf>, AgentError> {
        let mut found = BTreeMap::new();
        let mut errors = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for name in agents {
            if !seen.insert(name) {
                continue;
            }
            match self.require(name).and_then(Profile::locate) {
                Ok(path) => {
                    found.insert(name.to_owned(), path);
                }
                Err(e) => errors.push(e),
            }
        }
        match errors.len() {
            0 => Ok(found),
            1 => Err(errors.remove(0)),
            _ => Err(AgentError::Unavailable(errors)),
        }
    }

    /// Mutable access for [`super::config`].
    pub(super) fn map_mut(&mut self) -> &mut BTreeMap<String, Profile> {
        &mut self.profiles
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(model: Option<&str>) -> PromptVars<'_> {
        PromptVars {
            prompt: "do it",
            prompt_file: Path::new("/tmp/prompt.md"),
            model,
        }
    }

    fn args(p: &Profile, model: Option<&str>) -> Vec<String> {
        p.command(&vars(model))
            .unwrap()
            .args
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn every_builtin_is_valid_and_passes_the_prompt() {
        let profiles = Profiles::builtin();
        let names: Vec<&str> = profiles.names().collect();
        assert_eq!(
            names,
            [
                "aider", "amp", "claude", "codex", "droid", "gemini", "opencode", "shell", "sim"
            ]
        );
        for p in profiles.iter() {
            p.validate().unwrap();
            let a = args(p, None);
            assert!(
                a.iter()
                    .any(|x| x.ends_with("do it") || x == "/tmp/prompt.md"),
                "{}: {a:?}",
                p.name
            );
            assert!(!a.iter().any(|x| x == "--model"), "{}: {a:?}", p.name);
        }
    }

    #[test]
    fn builtin_command_lines() {
        let p = Profiles::builtin();
        assert_eq!(
            args(p.get("droid").unwrap(), Some("gpt-5")),
            [
                "exec",
                "--auto",
                "medium",
                "-o",
                "stream-json",
                "--model",
                "gpt-5",
                "-f",
                "/tmp/prompt.md"
            ]
        );
        assert_eq!(
            args(p.get("claude").unwrap(), None),
            [
                "-p",
                "--output-format",
                "stream-json",
                "--verbose",
                "--permission-mode",
                "acceptEdits",
                "--allowedTools",
                "Bash",
                "--",
                "do it"
            ]
        );
        assert_eq!(args(p.get("shell").unwrap(), None), ["-c", "--", "do it"]);
        assert_eq!(
            args(p.get("sim").unwrap(), None),
            ["sim-agent", "--format", "droid", "-f", "/tmp/prompt.md"]
        );
        let spec = p.get("shell").unwrap().command(&vars(None)).unwrap();
        assert_eq!(spec.program, "sh");
    }

    /// A prompt that starts with `-` (a markdown list) is never an option: every built-in
    /// profile passes it after `--`, glued to its option (`--prompt=…`), or in a file. The real
    /// CLIs are driven with such a prompt in forge-cli's agent tests.
    #[test]
    fn a_prompt_starting_with_a_dash_is_never_an_option() {
        let profiles = Profiles::builtin();
        let v = PromptVars {
            prompt: "- add tests\n- keep it short",
            prompt_file: Path::new("/tmp/prompt.md"),
            model: Some("m"),
        };
        for p in profiles.iter() {
            let a: Vec<String> = p
                .command(&v)
                .unwrap()
                .args
                .into_iter()
                .map(|a| a.into_string().unwrap())
                .collect();
            let safe = match a.iter().position(|x| x == v.prompt) {
                Some(i) => a[..i].iter().any(|x| x == "--"),
                None => a
                    .iter()
                    .any(|x| x == "/tmp/prompt.md" || x.ends_with(&format!("={}", v.prompt))),
            };
            assert!(safe, "{}: {a:?}", p.name);
        }
    }

    #[test]
    fn templates_drop_absent_model_with_its_option() {
        let mut p = Profile::new(
            "x",
            "x",
            &[
                "--model",
                "{model}",
                "--m={model}",
                "-v",
                "--flag",
                "{prompt}",
                "{{literal}}",
            ],
            OutputFormat::Text,
            "",
        );
        assert_eq!(args(&p, None), ["-v", "--flag", "do it", "{literal}"]);
        assert_eq!(args(&p, Some("")), ["-v", "--flag", "do it", "{literal}"]);
        assert_eq!(
            args(&p, Some("m1")),
            [
                "--model",
                "m1",
                "--m=m1",
                "-v",
                "--flag",
                "do it",
                "{literal}"
            ]
        );
        // An option that itself uses a variable is not taken along.
        p.args = vec!["--p={prompt}".into(), "{model}".into()];
        assert_eq!(args(&p, None), ["--p=do it"]);
        // A positional before the model stays.
        p.args = vec!["run".into(), "{model}".into()];
        assert_eq!(args(&p, None), ["run"]);
    }

    #[test]
    fn bad_templates_are_errors_naming_them() {
        for (t, want) in [
            ("{nope}", "unknown variable `{nope}`"),
            ("{prompt", "without its `}`"),
            ("a}", "without its `{`"),
        ] {
            let p = Profile::new("x", "x", &[t], OutputFormat::Text, "");
            let e = p.command(&vars(None)).unwrap_err();
            assert!(
                matches!(&e, AgentError::Template { template, .. } if template == t),
                "{e:?}"
            );
            assert!(e.to_string().contains(want), "{e}");
            assert!(p.validate().is_err());
        }
    }

    #[test]
    fn huge_prompts_are_refused_before_spawning() {
        let p = Profiles::builtin();
        let big = "x".repeat(MAX_ARG_BYTES);
        let v = PromptVars {
            prompt: &big,
            ..vars(None)
        };
        let e = p.get("claude").unwrap().command(&v).unwrap_err();
        assert!(matches!(e, AgentError::ArgumentTooLong { bytes, .. } if bytes == MAX_ARG_BYTES));
        assert!(e.to_string().contains("{prompt_file}"), "{e}");
        // Profiles that read the prompt from its file do not care.
        p.get("droid").unwrap().command(&v).unwrap();
    }

    #[test]
    fn locate_and_check_available() {
        let mut p = Profiles::builtin();
        assert!(p.get("shell").unwrap().locate().unwrap().ends_with("sh"));
        let mut missing = Profile::new(
            "ghost",
            "forge-no-such-agent",
            &["{prompt}"],
            OutputFormat::Text,
            "install ghost",
        );
        p.insert(missing.clone()).unwrap();
        missing.name = "ghost2".into();
        missing.program = "/nonexistent/forge-agent".into();
        p.insert(missing).unwrap();
        let found = p.check_available(["shell", "shell"]).unwrap();
        assert_eq!(found.len(), 1);
        let e = p
            .check_available(["shell", "ghost", "ghost2", "clade"])
            .unwrap_err();
        let AgentError::Unavailable(list) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(list.len(), 3);
        let text = e.to_string();
        assert!(
            text.contains("`forge-no-such-agent` not found on PATH (agent `ghost`); install ghost"),
            "{text}"
        );
        assert!(
            text.contains("`/nonexistent/forge-agent` does not exist"),
            "{text}"
        );
        assert!(
            text.contains("unknown agent `clade` (did you mean `claude`?)"),
            "{text}"
        );
        let one = p.check_available(["ghost"]).unwrap_err();
        assert!(matches!(one, AgentError::NotFound { .. }));
    }

    #[test]
    fn sim_program_can_be_moved() {
        let mut p = Profiles::builtin();
        p.set_sim_program("/opt/forge-sim-agent", vec![]);
        let sim = p.get("sim").unwrap();
        assert_eq!(sim.program, "/opt/forge-sim-agent");
        assert_eq!(
            args(sim, Some("m")),
            ["--format", "droid", "-f", "/tmp/prompt.md"]
        );
    }
}
