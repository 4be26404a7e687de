//! The `[agents.<name>]` tables of `forge.toml`: new profiles and overrides of built-in ones.
//!
//! ```toml
//! [agents.droid]                 # override fields of a built-in profile
//! args = ["exec", "--auto", "high", "-o", "stream-json", "-f", "{prompt_file}"]
//!
//! [agents.my-claude]             # a new profile: `program` is required
//! program = "/opt/claude/bin/claude"
//! args = ["-p", "{prompt}", "--output-format", "stream-json", "--verbose"]
//! format = "claude"              # droid | claude | codex | gemini | opencode | amp | text
//! env = { CLAUDE_CONFIG_DIR = "/opt/claude/config" }
//! install = "install Claude Code from the team share"
//! resume = ["--resume", "{session}"]
//! ```
//!
//! `resume` holds the arguments that continue the agent's own session (`{session}`) when a task
//! is retried or its check fails; they are inserted into `args` before the prompt (before the
//! argument holding `{prompt}` or `{prompt_file}`, and the `--` or option just before it).
//! `resume = []` says the CLI cannot (a new session then gets the previous attempt's final
//! message and diff). The key `resume_args` of earlier versions (a whole command line) is an
//! error naming `resume`.
//!
//! A new profile's `args` default to `["{prompt}"]` and its `format` to `text`.

use std::ops::Range;
use std::path::Path;

use super::profile::Profile;
use super::{AgentError, OutputFormat, Profiles, did_you_mean};

const KEYS: &[&str] = &[
    "program", "args", "format", "env", "install", "resume", "home_var", "seed",
];

/// Where in the `[agents]` table a problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum At {
    /// The agent's table itself.
    Table,
    /// A key of it.
    Key(String),
    /// A key's value.
    Value(String),
    /// An element of a key's array value.
    Element(String, usize),
}

#[derive(Debug)]
struct Problem {
    agent: String,
    at: At,
    message: String,
}

impl Problem {
    fn new(agent: &str, at: At, message: String) -> Self {
        Self {
            agent: agent.to_owned(),
            at,
            message,
        }
    }

    fn into_error(self, location: Option<String>) -> AgentError {
        let key = match &self.at {
            At::Table => None,
            At::Key(k) | At::Value(k) | At::Element(k, _) => Some(k.clone()),
        };
        AgentError::Config {
            location,
            agent: self.agent,
            key,
            message: self.message,
        }
    }
}

fn type_name(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a datetime",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Profiles {
    /// Applies the `[agents]` table of `forge.toml` (the value of its `agents` key): each
    /// `[agents.<name>]` adds a profile or overrides fields of an existing one (`program`,
    /// `args`, `format`, `env`, `install`, `resume`). Unknown keys, wrong types, bad templates and unknown
    /// formats are errors naming the agent and key; nothing is changed unless all is well.
    /// [`Profiles::apply_config_source`] also gives `file:line:col`.
    pub fn apply_config(&mut self, agents: &toml::Table) -> Result<(), AgentError> {
        let mut staged = self.clone();
        staged.apply_table(agents).map_err(|p| p.into_error(None))?;
        *self = staged;
        Ok(())
    }

    /// Applies the `[agents]` tables of a whole `forge.toml` document (other top-level keys are
    /// left to their owners), with errors located as `path:line:col`.
    pub fn apply_config_source(&mut self, text: &str, path: &Path) -> Result<(), AgentError> {
        let doc: toml::Table = toml::from_str(text).map_err(|e| AgentError::Config {
            location: Some(locate(path, text, e.span())),
            agent: String::new(),
            key: None,
            message: format!("invalid TOML: {}", e.message().trim_end()),
        })?;
        let Some(agents) = doc.get("agents") else {
            return Ok(());
        };
        let Some(agents) = agents.as_table() else {
            return Err(AgentError::Config {
                location: Some(locate(path, text, top_key_span(text, "agents"))),
                agent: String::new(),
                key: Some("agents".to_owned()),
                message: format!(
                    "`agents` must be tables of agent profiles (`[agents.<name>]`), found {}",
                    type_name(&doc["agents"])
                ),
            });
        };
        let mut staged = self.clone();
        if let Err(problem) = staged.apply_table(agents) {
            let span = problem_span(text, &problem);
            return Err(problem.into_error(Some(locate(path, text, span))));
        }
        *self = staged;
        Ok(())
    }

    fn apply_table(&mut self, agents: &toml::Table) -> Result<(), Problem> {
        for (name, value) in agents {
            if !valid_name(name) {
                return Err(Problem::new(
                    name,
                    At::Table,
                    format!("agent name `{name}` may only use letters, digits, `-`, `_` and `.`"),
                ));
            }
            let Some(table) = value.as_table() else {
                return Err(Problem::new(
                    name,
                    At::Table,
                    format!(
                        "[agents.{name}] must be a table, found {}",
                        type_name(value)
                    ),
                ));
            };
            let existing = self.get(name).cloned();
            let is_new = existing.is_none();
            let mut profile = existing.unwrap_or_else(|| {
                Profile::new(name.clone(), "", &["{prompt}"], OutputFormat::Text, "")
            });
            for (key, value) in table {
                apply_key(&mut profile, key, value)?;
            }
            if is_new && !table.contains_key("program") {
                return Err(Problem::new(
                    name,
                    At::Table,
                    format!(
                        "[agents.{name}] defines a new agent, so it needs `program` (built-in agents: {})",
                        self.names().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            if profile.install.is_empty() {
                profile.install = format!("install `{}`", profile.program);
            }
            self.map_mut().insert(name.clone(), profile);
        }
        Ok(())
    }
}

#[allow(clippy::too_many_lines)] // one arm per key, each with its checks
fn apply_key(profile: &mut Profile, key: &str, value: &toml::Value) -> Result<(), Problem> {
    let name = profile.name.clone();
    let expected = |what: &str| {
        Problem::new(
            &name,
            At::Value(key.to_owned()),
            format!(
                "[agents.{name}] `{key}` must be {what}, found {}",
                type_name(value)
            ),
        )
    };
    match key {
        "program" => {
            let program = value.as_str().ok_or_else(|| expected("a string"))?;
            if program.trim().is_empty() {
                return Err(Problem::new(
                    &name,
                    At::Value(key.to_owned()),
                    format!("[agents.{name}] `program` is empty"),
                ));
            }
            program.clone_into(&mut profile.program);
        }
        "resume_args" => {
            return Err(Problem::new(
                &name,
                At::Key(key.to_owned()),
                format!(
                    "[agents.{name}] `resume_args` is replaced by `resume`: only the arguments that continue a session, which Forge inserts before the prompt (e.g. `resume = [\"--resume\", \"{{session}}\"]`)"
                ),
            ));
        }
        "args" | "resume" => {
            let items = value
                .as_array()
                .ok_or_else(|| expected("an array of strings"))?;
            let mut args = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let Some(arg) = item.as_str() else {
                    return Err(Problem::new(
                        &name,
                        At::Element(key.to_owned(), i),
                        format!(
                            "[agents.{name}] `{key}` must hold strings, found {}",
                            type_name(item)
                        ),
                    ));
                };
                args.push(arg.to_owned());
            }
            let probe = if key == "args" {
                Profile {
                    args: args.clone(),
                    ..profile.clone()
                }
            } else {
                Profile {
                    resume: args.clone(),
                    ..profile.clone()
                }
            };
            if let Err(AgentError::Template {
                template, reason, ..
            }) = probe.validate()
            {
                let i = args.iter().position(|a| *a == template).unwrap_or(0);
                return Err(Problem::new(
                    &name,
                    At::Element(key.to_owned(), i),
                    format!("[agents.{name}] argument `{template}`: {reason}"),
                ));
            }
            if key == "args" {
                profile.args = args;
            } else {
                profile.resume = args;
            }
        }
        "format" => {
            let text = value.as_str().ok_or_else(|| expected("a string"))?;
            profile.format = text.parse().map_err(|e: AgentError| {
                Problem::new(
                    &name,
                    At::Value(key.to_owned()),
                    format!("[agents.{name}] {e}"),
                )
            })?;
        }
        "env" => {
            let table = value
                .as_table()
                .ok_or_else(|| expected("a table of strings"))?;
            let mut env = std::collections::BTreeMap::new();
            for (k, v) in table {
                let Some(v) = v.as_str() else {
                    return Err(Problem::new(
                        &name,
                        At::Value(key.to_owned()),
                        format!(
                            "[agents.{name}] `env.{k}` must be a string, found {}",
                            type_name(v)
                        ),
                    ));
                };
                env.insert(k.clone(), v.to_owned());
            }
            profile.env = env;
        }
        "install" => {
            value
                .as_str()
                .ok_or_else(|| expected("a string"))?
                .clone_into(&mut profile.install);
        }
        "home_var" => {
            let var = value.as_str().ok_or_else(|| expected("a string"))?;
            if var.is_empty() || var.contains('=') {
                return Err(Problem::new(
                    &name,
                    At::Value(key.to_owned()),
                    format!("[agents.{name}] `home_var` must be a variable name, found `{var}`"),
                ));
            }
            let seed = profile.home.take().map(|h| h.seed).unwrap_or_default();
            profile.home = Some(super::AgentHome {
                var: var.to_owned(),
                default: String::new(),
                sub: String::new(),
                seed,
            });
        }
        "seed" => {
            let items = value
                .as_array()
                .ok_or_else(|| expected("an array of relative paths"))?;
            let mut seed = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let file = item.as_str().filter(|f| {
                    let p = Path::new(f);
                    !f.is_empty()
                        && p.is_relative()
                        && p.components()
                            .all(|c| matches!(c, std::path::Component::Normal(_)))
                });
                let Some(file) = file else {
                    return Err(Problem::new(
                        &name,
                        At::Element(key.to_owned(), i),
                        format!(
                            "[agents.{name}] `seed` must hold relative paths without `..` (files of the CLI's state directory), found {item}"
                        ),
                    ));
                };
                seed.push(file.to_owned());
            }
            // A profile with no variable of its own gets a private `HOME`.
            let home = profile
                .home
                .get_or_insert_with(|| super::AgentHome::new("HOME", "", "", &[]));
            home.seed = seed;
        }
        other => {
            let hint = did_you_mean(other, KEYS.iter().copied())
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            return Err(Problem::new(
                &name,
                At::Key(other.to_owned()),
                format!(
                    "unknown key `{other}` in [agents.{name}]{hint}; known keys: {}",
                    KEYS.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// `path:line:col` of a byte offset (or just the path).
fn locate(path: &Path, text: &str, span: Option<Range<usize>>) -> String {
    let Some(span) = span else {
        return path.display().to_string();
    };
    let at = span.start.min(text.len());
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("{}:{line}:{col}", path.display())
}

type DeTable<'i> = toml::de::DeTable<'i>;
type DeValue<'i> = toml::de::DeValue<'i>;

fn entry<'a, 'i>(
    table: &'a DeTable<'i>,
    key: &str,
) -> Option<(
    &'a toml::Spanned<std::borrow::Cow<'i, str>>,
    &'a toml::Spanned<DeValue<'i>>,
)> {
    table.iter().find(|(k, _)| k.get_ref() == key)
}

fn top_key_span(text: &str, key: &str) -> Option<Range<usize>> {
    let doc = DeTable::parse(text).ok()?;
    entry(doc.get_ref(), key).map(|(k, _)| k.span())
}

/// The span a problem points at, found in a spanned parse of the same text.
fn problem_span(text: &str, problem: &Problem) -> Option<Range<usize>> {
    let doc = DeTable::parse(text).ok()?;
    let (_, agents) = entry(doc.get_ref(), "agents")?;
    let DeValue::Table(agents) = agents.get_ref() else {
        return None;
    };
    let (agent_key, agent) = entry(agents, &problem.agent)?;
    let DeValue::Table(fields) = agent.get_ref() else {
        return Some(agent_key.span());
    };
    let field = |k: &str| entry(fields, k);
    match &problem.at {
        At::Table => Some(agent_key.span()),
        At::Key(k) => field(k).map(|(k, _)| k.span()),
        At::Value(k) => field(k).map(|(_, v)| v.span()),
        At::Element(k, i) => field(k).map(|(_, v)| match v.get_ref() {
            DeValue::Array(items) => items.get(*i).map_or(v.span(), toml::Spanned::span),
            _ => v.span(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(text: &str) -> Result<Profiles, AgentError> {
        let mut p = Profiles::builtin();
        p.apply_config_source(text, Path::new("forge.toml"))?;
        Ok(p)
    }

    #[test]
    fn overrides_and_new_profiles() {
        let p = apply(
            "[defaults]\nagent = \"x\"\n\n[agents.droid]\nargs = [\"exec\", \"-f\", \"{prompt_file}\"]\nenv = { A = \"1\" }\n\n[agents.mine]\nprogram = \"/opt/mine\"\nformat = \"codex\"\n",
        )
        .unwrap();
        let droid = p.get("droid").unwrap();
        assert_eq!(droid.args, ["exec", "-f", "{prompt_file}"]);
        assert_eq!(droid.program, "droid");
        assert_eq!(droid.format, OutputFormat::Droid);
        assert_eq!(droid.env["A"], "1");
        let mine = p.get("mine").unwrap();
        assert_eq!(mine.program, "/opt/mine");
        assert_eq!(mine.args, ["{prompt}"]);
        assert_eq!(mine.format, OutputFormat::Codex);
        assert_eq!(mine.install, "install `/opt/mine`");
        // No [agents] at all is fine.
        assert_eq!(
            apply("[gate]\ncommands = []\n").unwrap(),
            Profiles::builtin()
        );
    }

    #[test]
    fn errors_name_file_line_agent_and_key() {
        let cases = [
            (
                "[agents.droid]\nprogam = \"x\"\n",
                "forge.toml:2:1: unknown key `progam` in [agents.droid] (did you mean `program`?)",
            ),
            (
                "[agents.droid]\nformat = \"xml\"\n",
                "forge.toml:2:10: [agents.droid] unknown output format `xml`",
            ),
            (
                "[agents.droid]\nargs = [\"a\", \"{modle}\"]\n",
                "forge.toml:2:14: [agents.droid] argument `{modle}`: unknown variable `{modle}`",
            ),
            (
                "[agents.droid]\nargs = [\"a\", 3]\n",
                "forge.toml:2:14: [agents.droid] `args` must hold strings, found an integer",
            ),
            (
                "\n[agents.new]\nargs = []\n",
                "forge.toml:2:9: [agents.new] defines a new agent, so it needs `program`",
            ),
            (
                "[agents.x]\nprogram = 1\n",
                "forge.toml:2:11: [agents.x] `program` must be a string, found an integer",
            ),
            (
                "agents = 3\n",
                "forge.toml:1:1: `agents` must be tables of agent profiles",
            ),
            ("[agents.x\n", "forge.toml:1:"),
        ];
        for (text, want) in cases {
            let e = apply(text).unwrap_err();
            let msg = e.to_string();
            assert!(msg.starts_with(want), "{text:?}\n got: {msg}\nwant: {want}");
        }
    }

    #[test]
    fn seed_files_and_home_variables() {
        let p = apply(
            "[agents.codex]\nseed = [\"auth.json\", \"sub/token\"]\n\
             [agents.mine]\nprogram = \"mine\"\nseed = [\".mine/token\"]\n\
             [agents.other]\nprogram = \"other\"\nhome_var = \"OTHER_HOME\"\nseed = [\"t\"]\n",
        )
        .unwrap();
        let codex = p.get("codex").unwrap().home.clone().unwrap();
        assert_eq!(codex.var, "CODEX_HOME");
        assert_eq!(codex.seed, ["auth.json", "sub/token"]);
        let mine = p.get("mine").unwrap().home.clone().unwrap();
        assert_eq!(
            (mine.var.as_str(), mine.seed.as_slice()),
            ("HOME", &[".mine/token".to_owned()][..])
        );
        let other = p.get("other").unwrap().home.clone().unwrap();
        assert_eq!(
            (other.var.as_str(), other.seed.as_slice()),
            ("OTHER_HOME", &["t".to_owned()][..])
        );
        let e = apply("[agents.codex]\nseed = [\"../escape\"]\n").unwrap_err();
        assert!(e.to_string().contains("relative paths without `..`"), "{e}");
        let e = apply("[agents.codex]\nhome_var = \"A=B\"\n").unwrap_err();
        assert!(e.to_string().contains("must be a variable name"), "{e}");
    }

    #[test]
    fn table_api_reports_without_location_and_changes_nothing_on_error() {
        let mut p = Profiles::builtin();
        let table: toml::Table =
            toml::from_str("[ok]\nprogram = \"ok\"\n[bad]\nprogram = \"b\"\nwat = 1\n").unwrap();
        let e = p.apply_config(&table).unwrap_err();
        assert_eq!(
            e,
            AgentError::Config {
                location: None,
                agent: "bad".into(),
                key: Some("wat".into()),
                message: "unknown key `wat` in [agents.bad]; known keys: program, args, format, env, install, resume, home_var, seed".into(),
            }
        );
        assert!(p.get("ok").is_none(), "all or nothing");
        let table: toml::Table = toml::from_str("[claude]\nprogram = \"/x/claude\"\n").unwrap();
        p.apply_config(&table).unwrap();
        assert_eq!(p.get("claude").unwrap().program, "/x/claude");
        assert_eq!(p.get("claude").unwrap().format, OutputFormat::Claude);
    }
}
