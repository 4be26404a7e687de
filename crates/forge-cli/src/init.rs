//! `forge init`: slash commands for Factory's droid and Claude Code, specialist custom droids, and
//! a commented `forge.toml`.
//!
//! Formats, as each tool documents them:
//! - Factory custom slash commands: Markdown in `.factory/commands/<name>.md`, optional YAML
//!   front matter with `description` and `argument-hint`, `$ARGUMENTS` replaced by what follows
//!   the command (docs.factory.ai/cli/configuration/custom-slash-commands).
//! - Factory custom droids: Markdown in `.factory/droids/<name>.md` with YAML front matter `name`
//!   (lowercase letters, digits, `-`, `_`), `description`, `model` (`inherit` uses the session's)
//!   and `tools` (a list of tool ids), the body being the system prompt
//!   (docs.factory.ai/cli/configuration/custom-droids).
//! - Claude Code custom slash commands: Markdown in `.claude/commands/<name>.md`, front matter
//!   `description`, `argument-hint` and `allowed-tools` (e.g. `Bash(forge:*)`), `$ARGUMENTS` in the
//!   body (docs.anthropic.com/en/docs/claude-code/slash-commands).
//!
//! - MCP servers: Claude Code reads the project's servers from `.mcp.json`, droid from
//!   `.factory/mcp.json`; both take `{"mcpServers": {"<name>": {"type": "stdio", "command": …,
//!   "args": […]}}}`. `forge init` adds (only) `mcpServers.forge`, running `forge mcp`, and keeps
//!   every other key of an existing file.
//!
//! Idempotence: `.forge/init.json` records a hash of every file `forge init` wrote. Running it
//! again creates what is missing, updates files still exactly as written before (a newer Forge may
//! word them better), and leaves alone any file whose content differs from what was written — the
//! user changed it — unless `--force`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cli::InitArgs;
use crate::config::Context;
use crate::error::{CliError, CliResult, Exit};
use crate::plan_file::write_atomic;
use crate::term::Style;

/// Where the record of written files is kept, relative to the repository.
const MANIFEST: &str = ".forge/init.json";

/// The record of what `forge init` wrote.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    /// Path (repo-relative) → BLAKE3 hash (hex) of the content written.
    files: BTreeMap<String, String>,
}

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// It did not exist and was written.
    Created,
    /// It was as `forge init` last wrote it, and was rewritten with the current text.
    Updated,
    /// It already had the current text.
    Unchanged,
    /// It differs from what `forge init` wrote (the user's), and was left alone.
    Kept,
    /// It differed, and `--force` overwrote it.
    Overwritten,
    /// The file existed (another MCP server's configuration) and the `forge` server was added.
    Added,
}

/// One file `forge init` installs.
#[derive(Debug, Clone)]
pub(crate) struct FileSpec {
    /// Repo-relative path.
    pub(crate) path: String,
    /// Content.
    pub(crate) text: String,
}

fn hash(text: &[u8]) -> String {
    blake3::hash(text).to_hex().to_string()
}

/// The files for the chosen tools (both when neither flag is given), plus `forge.toml`.
pub(crate) fn files(droid: bool, claude: bool) -> Vec<FileSpec> {
    let (droid, claude) = if droid || claude {
        (droid, claude)
    } else {
        (true, true)
    };
    let mut out = vec![
        FileSpec {
            path: "forge.toml".to_owned(),
            text: FORGE_TOML.to_owned(),
        },
        FileSpec {
            path: ".forge/.gitignore".to_owned(),
            text:
                "# Forge's run store: runs, logs and content-addressed objects. Not for git.\n*\n"
                    .to_owned(),
        },
    ];
    if droid {
        for (name, description, hint, body) in COMMANDS {
            out.push(FileSpec {
                path: format!(".factory/commands/{name}.md"),
                text: format!(
                    "---\ndescription: {description}\nargument-hint: {hint}\n---\n\n{}",
                    body.replace("{agent}", "droid")
                ),
            });
        }
        for (name, description, tools, body) in DROIDS {
            out.push(FileSpec {
                path: format!(".factory/droids/{name}.md"),
                text: format!(
                    "---\nname: {name}\ndescription: {description}\nmodel: inherit\ntools: {tools}\n---\n\n{body}"
                ),
            });
        }
    }
    if claude {
        for (name, description, hint, body) in COMMANDS {
            out.push(FileSpec {
                path: format!(".claude/commands/{name}.md"),
                text: format!(
                    "---\ndescription: {description}\nargument-hint: {hint}\nallowed-tools: Bash(forge:*), Read, mcp__forge\n---\n\n{}",
                    body.replace("{agent}", "claude")
                ),
            });
        }
    }
    out
}

/// Installs `specs` and registers the `forge` MCP server in the configuration files `mcp`
/// (repo-relative), returning what happened to each.
pub(crate) fn install(
    repo: &Path,
    specs: &[FileSpec],
    mcp: &[&str],
    force: bool,
) -> CliResult<Vec<(String, Outcome)>> {
    let manifest_path = repo.join(MANIFEST);
    let mut manifest: Manifest = match std::fs::read(&manifest_path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            CliError::failed(format!("{} is damaged: {e}", manifest_path.display()))
                .hint("delete it; `forge init` then treats every existing file as yours (use --force to replace them)")
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Manifest::default(),
        Err(e) => return Err(CliError::io("read", &manifest_path, &e)),
    };
    let mut out = Vec::new();
    for spec in specs {
        let path: PathBuf = repo.join(&spec.path);
        let new_hash = hash(spec.text.as_bytes());
        let outcome = match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_atomic(&path, &spec.text)?;
                Outcome::Created
            }
            Err(e) => return Err(CliError::io("read", &path, &e)),
            Ok(current) => {
                let current_hash = hash(&current);
                if current_hash == new_hash {
                    Outcome::Unchanged
                } else if manifest.files.get(&spec.path) == Some(&current_hash) {
                    write_atomic(&path, &spec.text)?;
                    Outcome::Updated
                } else if force {
                    write_atomic(&path, &spec.text)?;
                    Outcome::Overwritten
                } else {
                    Outcome::Kept
                }
            }
        };
        if outcome != Outcome::Kept {
            manifest.files.insert(spec.path.clone(), new_hash);
        }
        out.push((spec.path.clone(), outcome));
    }
    for rel in mcp {
        let outcome = register_server(repo, rel, &mut manifest, force)?;
        out.push(((*rel).to_owned(), outcome));
    }
    let text = serde_json::to_string_pretty(&manifest)
        .map_err(|e| CliError::failed(format!("cannot encode {MANIFEST}: {e}")))?;
    write_atomic(&manifest_path, &(text + "\n"))?;
    Ok(out)
}

/// The name of Forge's MCP server in the hosts' configuration.
const MCP_SERVER: &str = "forge";

/// The hosts' MCP configuration files for the chosen tools (both when neither flag is given):
/// Claude Code's `.mcp.json`, droid's `.factory/mcp.json`.
pub(crate) fn mcp_configs(droid: bool, claude: bool) -> Vec<&'static str> {
    let both = !droid && !claude;
    let mut out = Vec::new();
    if claude || both {
        out.push(".mcp.json");
    }
    if droid || both {
        out.push(".factory/mcp.json");
    }
    out
}

/// The server's entry: `forge mcp` over stdio (`forge` found on `PATH`).
pub(crate) fn mcp_entry() -> serde_json::Value {
    serde_json::json!({"type": "stdio", "command": "forge", "args": ["mcp"]})
}

/// Adds (or updates) `mcpServers.forge` in the JSON file `rel`, keeping everything else in it.
/// An entry the user changed is kept unless `force`, as files are.
fn register_server(
    repo: &Path,
    rel: &str,
    manifest: &mut Manifest,
    force: bool,
) -> CliResult<Outcome> {
    let path = repo.join(rel);
    let key = format!("{rel}#mcpServers.{MCP_SERVER}");
    let entry = mcp_entry();
    let not_json = |why: String| {
        CliError::usage(format!("{} {why}", path.display())).hint(
            "fix it (it holds the MCP servers as {\"mcpServers\": {…}}) or move it away, then run \
             `forge init` again",
        )
    };
    let (mut doc, existed) = match std::fs::read(&path) {
        Ok(bytes) => (
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .map_err(|e| not_json(format!("is not valid JSON: {e}")))?,
            true,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (serde_json::json!({}), false),
        Err(e) => return Err(CliError::io("read", &path, &e)),
    };
    let Some(top) = doc.as_object_mut() else {
        return Err(not_json("is not a JSON object".to_owned()));
    };
    let servers = top
        .entry("mcpServers")
        .or_insert_with(|| serde_json::json!({}));
    let Some(servers) = servers.as_object_mut() else {
        return Err(not_json(
            "has an `mcpServers` that is not an object".to_owned(),
        ));
    };
    let new_hash = hash(entry.to_string().as_bytes());
    let outcome = match servers.get(MCP_SERVER) {
        None if existed => Outcome::Added,
        None => Outcome::Created,
        Some(current) if *current == entry => Outcome::Unchanged,
        Some(current)
            if manifest.files.get(&key) == Some(&hash(current.to_string().as_bytes())) =>
        {
            Outcome::Updated
        }
        Some(_) if force => Outcome::Overwritten,
        Some(_) => Outcome::Kept,
    };
    if matches!(
        outcome,
        Outcome::Added | Outcome::Created | Outcome::Updated | Outcome::Overwritten
    ) {
        servers.insert(MCP_SERVER.to_owned(), entry);
        let text = serde_json::to_string_pretty(&doc)
            .map_err(|e| CliError::failed(format!("cannot encode {}: {e}", path.display())))?;
        write_atomic(&path, &(text + "\n"))?;
    }
    if outcome != Outcome::Kept {
        manifest.files.insert(key, new_hash);
    }
    Ok(outcome)
}

/// `forge init`.
pub(crate) fn run(ctx: &Context, args: &InitArgs, style: Style) -> CliResult {
    let specs = files(args.droid, args.claude);
    let mcp = mcp_configs(args.droid, args.claude);
    let results = install(&ctx.repo, &specs, &mcp, args.force)?;
    let mut kept = 0;
    for (path, outcome) in &results {
        let (mark, word) = match outcome {
            Outcome::Created => (style.green("+"), "created"),
            Outcome::Updated => (style.green("~"), "updated"),
            Outcome::Unchanged => (style.dim("="), "unchanged"),
            Outcome::Overwritten => (style.yellow("!"), "overwritten (--force)"),
            Outcome::Added => (style.green("+"), "added the forge MCP server"),
            Outcome::Kept => {
                kept += 1;
                (style.yellow("·"), "kept: you changed it")
            }
        };
        outln!("{mark} {path:<40} {}", style.dim(word));
    }
    if kept > 0 {
        outln!("{kept} file(s) you changed were left alone; `forge init --force` replaces them.");
    }
    outln!(
        "\nIn droid or Claude Code: /forge-plan <request>, /forge-parallel <request>, /forge-status."
    );
    outln!(
        "Their MCP configuration ({}) starts `forge mcp`: the forge_* tools (forge must be on PATH).",
        mcp.join(", ")
    );
    Ok(Exit::Success)
}

/// Slash commands: name, description, argument hint, body (`{agent}` is the tool's agent).
const COMMANDS: [(&str, &str, &str, &str); 3] = [
    (
        "forge-parallel",
        "Do a request with several agents in parallel using Forge (plan, run, merge, test)",
        "<what you want done>",
        r#"Do the following request with several agents working in parallel, using the `forge` CLI
(Forge gives each agent its own workspace and file locks, merges the results, and runs the
project's tests before anything touches the working tree):

$ARGUMENTS

If the Forge MCP tools are available to you (forge_plan, forge_run, forge_wait, forge_diff,
forge_apply: the `forge` MCP server that `forge init` registers), use them rather than the shell:

1. forge_plan with the request above, agent "{agent}" and output ".forge/plan.toml". Show me
   its tasks in a few lines: what each writes, and their order. If it fails, show the error
   and stop.
2. forge_run with plan ".forge/plan.toml": it starts the run and returns its id at once.
3. forge_wait with that run (again if it times out) and report the summary it returns. For a
   failed task, read forge_logs and say why it failed; forge_diff shows what changed.
4. If it succeeded, ask me whether to apply. On yes, forge_apply with the run (branch: true
   for a branch `forge/<run>` instead of the working tree).

Otherwise, with the `forge` command:

1. Write a plan: run `forge plan --agent {agent} -o .forge/plan.toml "<the request above>"`
   (quote the request for the shell). It prints the plan as a table. If it fails, show the
   error and stop.
2. Show me the table in a few lines: the tasks, what each writes, and their order.
3. Run it without applying: `forge run .forge/plan.toml --no-apply`. This can take minutes;
   it prints one line per state change. Exit codes: 0 success, 1 tasks failed, 2 plan error,
   3 merge conflicts, 4 tests (the gate) failed, 130 interrupted.
4. Report the summary it prints. For a failed task, read `forge logs <task> <run>` and
   say why it failed.
5. If it succeeded, ask me whether to apply. On yes, run `forge apply <run>` (or
   `forge apply <run> --branch` to get a branch `forge/<run>` instead).
"#,
    ),
    (
        "forge-status",
        "Show the status of Forge runs in this repository",
        "[run]",
        r"Show the state of Forge runs in this repository.

1. Run `forge runs` to list the runs.
2. Run `forge status $ARGUMENTS` (no argument: the latest run) and summarize it: which tasks
   are done, running, waiting (and on whom), cancelled or failed, and whether the gate passed.
   It exits with the run's code (1 failed, 3 conflicts, 4 gate, 130 interrupted): a non-zero
   exit describes the run, the command itself worked.
3. For a failed task, run `forge logs <task> <run>` and explain the failure in one sentence.
",
    ),
    (
        "forge-plan",
        "Turn a request into a Forge plan (tasks, file claims, order) without running it",
        "<what you want done>",
        r#"Turn this request into a Forge plan, without running it:

$ARGUMENTS

Run `forge plan --agent {agent} -o plan.toml "<the request above>"` (quote it for the shell).
It asks a planner agent for a plan, validates it (file claims that overlap are put in order)
and writes `plan.toml`. Show me the table it prints and point out anything that looks wrong:
tasks that should be ordered, claims that are too broad, a missing test or docs task.
Then tell me to review `plan.toml` and start it with `forge run plan.toml`.
"#,
    ),
];

/// Specialist droids: name, description, tools, system prompt.
const DROIDS: [(&str, &str, &str, &str); 5] = [
    (
        "df-orchestrator",
        "Plans work for Forge, runs it with the forge CLI and reports the outcome",
        r#"["Read", "LS", "Grep", "Glob", "Create", "Edit", "Execute"]"#,
        r#"You coordinate parallel work with the `forge` CLI. You do not edit the project's code
yourself.

- Turn a request into a plan with `forge plan -o plan.toml "<request>"`, or write `plan.toml`
  by hand: one `[[task]]` per independent piece, each with the narrowest `writes` globs
  possible, `after` for real dependencies only, `appends` for shared files like CHANGELOG.md.
- Check it loads: `forge run plan.toml --no-apply` reports plan errors with file:line.
- Run it, then report the summary line, every failed task with the reason from
  `forge logs <task> <run>`, and what to do next. Never apply without the user's consent.
"#,
    ),
    (
        "df-backend",
        "Backend specialist: APIs, services, data models and their unit tests",
        r#"["Read", "LS", "Grep", "Glob", "Create", "Edit", "Execute"]"#,
        r"You are a backend engineer working on one task of a larger plan run by Forge. Other
agents work on other parts of the repository at the same time.

- Change only the files your task claims; files outside them are rejected at merge time.
- Follow the conventions of the surrounding code; keep public interfaces stable unless the
  task says otherwise.
- Run the project's build and the tests closest to your change before you finish.
- End with a short summary of what you changed and why.
",
    ),
    (
        "df-frontend",
        "Frontend specialist: UI components, pages, styles and client-side state",
        r#"["Read", "LS", "Grep", "Glob", "Create", "Edit", "Execute"]"#,
        r"You are a frontend engineer working on one task of a larger plan run by Forge. Other
agents work on other parts of the repository at the same time.

- Change only the files your task claims.
- Reuse the project's components and styles; keep the UI accessible (labels, focus, contrast).
- Run the project's lint and frontend tests before you finish.
- End with a short summary of what you changed.
",
    ),
    (
        "df-tester",
        "Test specialist: writes and fixes unit and integration tests",
        r#"["Read", "LS", "Grep", "Glob", "Create", "Edit", "Execute"]"#,
        r"You write tests for one task of a larger plan run by Forge.

- Change only the test files your task claims; never weaken or delete a test to make it
  pass.
- Cover the behaviour the task describes, including error cases, with tests that fail
  without the change.
- Run the tests you wrote and report their result.
",
    ),
    (
        "df-doc",
        "Documentation specialist: README, guides, API docs and the changelog",
        r#"["Read", "LS", "Grep", "Glob", "Create", "Edit"]"#,
        r"You write documentation for one task of a larger plan run by Forge.

- Change only the files your task claims; add to shared files such as CHANGELOG.md at the
  end, since other tasks append to them too.
- Document what the code does now, with short examples that work.
- End with a list of the pages you changed.
",
    ),
];

/// The commented `forge.toml`.
pub(crate) const FORGE_TOML: &str = r#"# forge.toml — Forge's settings for this repository. Every key is optional.
# Forge finds this file by walking up from the current directory. FORGE_* environment
# variables override it (FORGE_AGENT, FORGE_APPLY, FORGE_BIND, FORGE_TOKEN).

# The agent `forge plan` and `forge split` use: droid, claude, codex, gemini, opencode,
# amp, aider, shell, sim, or a profile defined below.
# agent = "droid"

[run]
# What `forge run` does with a result that passed: "ask" (on a terminal; keep it
# otherwise), "yes" (apply to the working tree), "no" (keep it in .forge/runs) or
# "branch" (commit it to forge/<run>).
# apply = "ask"

[serve]
# Where `forge serve` and `forge run --serve` listen. A non-loopback address needs a token.
# bind = "127.0.0.1:7317"
# token = "change-me"

# Agent profiles: change how a built-in agent is started, or define your own. In `args`,
# `{prompt}` is the task's prompt, `{prompt_file}` a file holding it, `{model}` the model.
# [agents.droid]
# args = ["exec", "--auto", "high", "-o", "stream-json", "-f", "{prompt_file}"]
#
# [agents.my-claude]
# program = "claude"
# args = ["-p", "{prompt}", "--output-format", "stream-json", "--verbose"]
# format = "claude"        # droid | claude | codex | gemini | opencode | amp | text
# install = "install Claude Code (npm install -g @anthropic-ai/claude-code)"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_matter_follows_each_tools_format() {
        let specs = files(false, false);
        let get = |p: &str| specs.iter().find(|s| s.path == p).unwrap().text.clone();
        let droid_cmd = get(".factory/commands/forge-parallel.md");
        assert!(droid_cmd.starts_with("---\ndescription: "), "{droid_cmd}");
        assert!(droid_cmd.contains("\nargument-hint: <what you want done>\n---\n"));
        assert!(droid_cmd.contains("$ARGUMENTS"));
        assert!(droid_cmd.contains("forge plan --agent droid"));
        let claude_cmd = get(".claude/commands/forge-parallel.md");
        assert!(claude_cmd.contains("\nallowed-tools: Bash(forge:*), Read, mcp__forge\n---\n"));
        assert!(claude_cmd.contains("forge_run with plan \".forge/plan.toml\""));
        assert!(claude_cmd.contains("forge plan --agent claude"));
        for name in ["orchestrator", "backend", "frontend", "tester", "doc"] {
            let d = get(&format!(".factory/droids/df-{name}.md"));
            assert!(
                d.starts_with(&format!("---\nname: df-{name}\ndescription: ")),
                "{d}"
            );
            assert!(d.contains("\nmodel: inherit\ntools: [\"Read\""), "{d}");
        }
        for status in [
            ".factory/commands/forge-status.md",
            ".claude/commands/forge-status.md",
        ] {
            assert!(get(status).contains("forge status $ARGUMENTS"));
        }
        // The commented forge.toml is valid TOML and valid configuration, and so is every
        // example in it once uncommented.
        crate::config::Config::parse(FORGE_TOML, Path::new("forge.toml")).unwrap();
        let uncommented = FORGE_TOML
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if rest.starts_with('[') || rest.contains(" = ") => rest,
                _ => l,
            })
            .fold(String::new(), |mut acc, l| {
                acc.push_str(l);
                acc.push('\n');
                acc
            });
        let config = crate::config::Config::parse(&uncommented, Path::new("forge.toml")).unwrap();
        assert_eq!(config.agent.as_deref(), Some("droid"));
        let mut profiles = forge_agents::Profiles::builtin();
        profiles
            .apply_config_source(&uncommented, Path::new("forge.toml"))
            .unwrap();
        assert!(profiles.get("my-claude").is_some());
    }

    #[test]
    fn flags_choose_the_tools() {
        let only_claude = files(false, true);
        assert!(only_claude.iter().all(|s| !s.path.starts_with(".factory")));
        assert!(only_claude.iter().any(|s| s.path == "forge.toml"));
        let only_droid = files(true, false);
        assert!(only_droid.iter().all(|s| !s.path.starts_with(".claude")));
    }

    #[test]
    fn reinstalling_keeps_user_changes_and_updates_pristine_files() {
        let dir = tempfile::tempdir().unwrap();
        let specs = vec![
            FileSpec {
                path: "a.md".into(),
                text: "one\n".into(),
            },
            FileSpec {
                path: "b.md".into(),
                text: "two\n".into(),
            },
        ];
        let r = install(dir.path(), &specs, &[], false).unwrap();
        assert!(r.iter().all(|(_, o)| *o == Outcome::Created));
        let r = install(dir.path(), &specs, &[], false).unwrap();
        assert!(r.iter().all(|(_, o)| *o == Outcome::Unchanged));

        // The user edits a.md; a newer Forge changes the text of both.
        std::fs::write(dir.path().join("a.md"), "mine\n").unwrap();
        let newer = vec![
            FileSpec {
                path: "a.md".into(),
                text: "one v2\n".into(),
            },
            FileSpec {
                path: "b.md".into(),
                text: "two v2\n".into(),
            },
        ];
        let r = install(dir.path(), &newer, &[], false).unwrap();
        assert_eq!(
            r,
            [
                ("a.md".to_owned(), Outcome::Kept),
                ("b.md".to_owned(), Outcome::Updated)
            ]
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.md")).unwrap(),
            "mine\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("b.md")).unwrap(),
            "two v2\n"
        );
        // Still the user's on the next run; --force replaces it.
        let r = install(dir.path(), &newer, &[], false).unwrap();
        assert_eq!(r[0].1, Outcome::Kept);
        let r = install(dir.path(), &newer, &[], true).unwrap();
        assert_eq!(r[0].1, Outcome::Overwritten);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.md")).unwrap(),
            "one v2\n"
        );
    }

    #[test]
    fn a_file_that_existed_before_init_is_the_users() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("forge.toml"), "agent = \"claude\"\n").unwrap();
        let specs = vec![FileSpec {
            path: "forge.toml".into(),
            text: FORGE_TOML.into(),
        }];
        let r = install(dir.path(), &specs, &[], false).unwrap();
        assert_eq!(r[0].1, Outcome::Kept);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("forge.toml")).unwrap(),
            "agent = \"claude\"\n"
        );
    }

    #[test]
    fn the_mcp_server_is_added_next_to_the_users_servers_once() {
        let dir = tempfile::tempdir().unwrap();
        let mine = r#"{"mcpServers": {"other": {"command": "x", "args": []}}, "extra": 1}"#;
        std::fs::write(dir.path().join(".mcp.json"), mine).unwrap();
        let r = install(dir.path(), &[], &[".mcp.json", ".factory/mcp.json"], false).unwrap();
        assert_eq!(
            r,
            [
                (".mcp.json".to_owned(), Outcome::Added),
                (".factory/mcp.json".to_owned(), Outcome::Created)
            ]
        );
        let read = |rel: &str| -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(dir.path().join(rel)).unwrap()).unwrap()
        };
        let doc = read(".mcp.json");
        assert_eq!(doc["mcpServers"]["forge"], mcp_entry());
        assert_eq!(doc["mcpServers"]["other"]["command"], "x");
        assert_eq!(doc["extra"], 1);
        assert_eq!(
            read(".factory/mcp.json")["mcpServers"]["forge"],
            mcp_entry()
        );
        let before = std::fs::read(dir.path().join(".mcp.json")).unwrap();
        let r = install(dir.path(), &[], &[".mcp.json"], false).unwrap();
        assert_eq!(r[0].1, Outcome::Unchanged);
        assert_eq!(std::fs::read(dir.path().join(".mcp.json")).unwrap(), before);

        // The user points the entry elsewhere: kept, unless --force.
        let mut doc = read(".mcp.json");
        doc["mcpServers"]["forge"]["command"] = "/opt/forge".into();
        std::fs::write(dir.path().join(".mcp.json"), doc.to_string()).unwrap();
        let r = install(dir.path(), &[], &[".mcp.json"], false).unwrap();
        assert_eq!(r[0].1, Outcome::Kept);
        assert_eq!(
            read(".mcp.json")["mcpServers"]["forge"]["command"],
            "/opt/forge"
        );
        let r = install(dir.path(), &[], &[".mcp.json"], true).unwrap();
        assert_eq!(r[0].1, Outcome::Overwritten);
        assert_eq!(read(".mcp.json")["mcpServers"]["forge"], mcp_entry());

        // A file that is not a JSON object is an error naming it, and is left alone.
        std::fs::write(dir.path().join(".mcp.json"), "[1, 2").unwrap();
        let err = install(dir.path(), &[], &[".mcp.json"], true).unwrap_err();
        assert!(err.what.contains(".mcp.json is not valid JSON"), "{err}");
        assert!(err.hint.unwrap().contains("mcpServers"));
        assert_eq!(
            std::fs::read_to_string(dir.path().join(".mcp.json")).unwrap(),
            "[1, 2"
        );
    }
}
