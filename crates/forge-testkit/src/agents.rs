//! The real agent CLIs: where the pinned ones are installed, and how each is pointed at a
//! [`crate::ModelServer`] from a private home directory.
//!
//! `.ci/agents/package.json` pins the versions; `.ci/run` installs them with npm into
//! `target/agents/` and puts `target/agents/node_modules/.bin` on `PATH`. Tests look there
//! (or at `FORGE_AGENTS_BIN`) first, then on `PATH`. A test whose CLI is missing skips with the
//! reason unless `FORGE_REQUIRE_AGENTS=1`, which CI sets: then it fails.

use std::path::{Path, PathBuf};

/// The model name the CLIs are configured with.
pub const MODEL: &str = "scripted-model";

/// The model Codex is configured with: one it knows (with an unknown one it warns on every run
/// and offers no `apply_patch` tool).
pub const CODEX_MODEL: &str = "gpt-5.5";

/// The API key the CLIs are given (the server accepts any).
pub const API_KEY: &str = "forge-test-key";

/// Whether a missing agent CLI fails the test (`FORGE_REQUIRE_AGENTS=1`) instead of skipping it.
pub fn required() -> bool {
    std::env::var("FORGE_REQUIRE_AGENTS").is_ok_and(|v| v == "1")
}

/// The folder of the pinned CLIs' programs: `FORGE_AGENTS_BIN`, else
/// `<workspace>/target/agents/node_modules/.bin` when it exists.
pub fn bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("FORGE_AGENTS_BIN") {
        return Some(PathBuf::from(dir));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    );
    let dir = target.join("agents/node_modules/.bin");
    dir.is_dir().then_some(dir)
}

/// The program of agent CLI `program` (`claude`, `codex`, `gemini`, `opencode`, `droid`): in
/// [`bin_dir`], else on `PATH`.
pub fn find(program: &str) -> Option<PathBuf> {
    if let Some(p) = bin_dir().map(|d| d.join(program)).filter(|p| p.is_file()) {
        return Some(p);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

/// The program of `program`, or `None` after printing why the test is skipped.
///
/// # Panics
///
/// When the program is missing and `FORGE_REQUIRE_AGENTS=1` (CI): the test fails.
#[allow(clippy::print_stderr)] // a skipped test says why, on the test's stderr
pub fn require(program: &str) -> Option<PathBuf> {
    if let Some(p) = find(program) {
        return Some(p);
    }
    assert!(
        !required(),
        "FORGE_REQUIRE_AGENTS=1 but `{program}` is not installed: run .ci/run, or \
         `npm install --no-save` in target/agents after copying .ci/agents/package*.json there"
    );
    eprintln!(
        "skipped: `{program}` is not installed (`npm install --no-save` in target/agents with \
         .ci/agents/package*.json, or put it on PATH)"
    );
    None
}

/// A private home for one agent CLI pointed at a model server: the files it reads are
/// written under `home`, and [`Setup::env`] is what the agent's environment needs.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Environment variables to give the agent (through `forge`'s environment).
    pub env: Vec<(String, String)>,
    /// The model to name in the plan (`model = "…"`), when the CLI needs one there.
    pub plan_model: Option<String>,
}

/// Writes `text` to `home/rel`, creating folders.
fn write(home: &Path, rel: &str, text: &str) -> std::io::Result<()> {
    let path = home.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text)
}

/// Points agent `agent` (a Forge profile name) at the model server `url` from the private
/// home `home`.
pub fn setup(agent: &str, url: &str, home: &Path) -> std::io::Result<Setup> {
    std::fs::create_dir_all(home)?;
    let home_s = home.display().to_string();
    let mut env = vec![
        ("HOME".to_owned(), home_s.clone()),
        ("XDG_CONFIG_HOME".to_owned(), format!("{home_s}/.config")),
        ("XDG_DATA_HOME".to_owned(), format!("{home_s}/.local/share")),
        ("XDG_CACHE_HOME".to_owned(), format!("{home_s}/.cache")),
        (
            "XDG_STATE_HOME".to_owned(),
            format!("{home_s}/.local/state"),
        ),
    ];
    let mut plan_model = None;
    let pairs: Vec<(&str, String)> = match agent {
        "claude" => vec![
            ("ANTHROPIC_BASE_URL", url.to_owned()),
            ("ANTHROPIC_API_KEY", API_KEY.to_owned()),
            ("ANTHROPIC_MODEL", MODEL.to_owned()),
            ("ANTHROPIC_SMALL_FAST_MODEL", MODEL.to_owned()),
            ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".to_owned()),
            ("DISABLE_AUTOUPDATER", "1".to_owned()),
            ("CLAUDE_CONFIG_DIR", format!("{home_s}/.claude")),
        ],
        "codex" => {
            write(
                home,
                ".codex/config.toml",
                &format!(
                    "model = \"{CODEX_MODEL}\"\nmodel_provider = \"forge\"\n\n[model_providers.forge]\n\
                     name = \"Forge scripted model\"\nbase_url = \"{url}/v1\"\nwire_api = \"responses\"\n\
                     env_key = \"FORGE_TEST_OPENAI_KEY\"\n"
                ),
            )?;
            vec![
                ("CODEX_HOME", format!("{home_s}/.codex")),
                ("FORGE_TEST_OPENAI_KEY", API_KEY.to_owned()),
            ]
        }
        "gemini" => {
            write(
                home,
                ".gemini/settings.json",
                r#"{"security":{"auth":{"selectedType":"gemini-api-key"}},"privacy":{"usageStatisticsEnabled":false},"telemetry":{"enabled":false}}"#,
            )?;
            vec![
                ("GOOGLE_GEMINI_BASE_URL", url.to_owned()),
                ("GEMINI_API_KEY", API_KEY.to_owned()),
                ("GEMINI_MODEL", MODEL.to_owned()),
            ]
        }
        "opencode" => {
            let config = serde_json::json!({
                "$schema": "https://opencode.ai/config.json",
                "autoupdate": false,
                "share": "disabled",
                "provider": {"forge": {
                    "npm": "@ai-sdk/openai-compatible",
                    "name": "Forge scripted model",
                    "options": {"baseURL": format!("{url}/v1"), "apiKey": API_KEY},
                    "models": {MODEL: {"name": "Scripted model"}},
                }},
                "model": format!("forge/{MODEL}"),
            });
            write(home, ".config/opencode/opencode.json", &config.to_string())?;
            vec![
                ("OPENCODE_DISABLE_MODELS_FETCH", "1".to_owned()),
                ("OPENCODE_DISABLE_AUTOUPDATE", "1".to_owned()),
                (
                    "OPENCODE_CONFIG",
                    format!("{home_s}/.config/opencode/opencode.json"),
                ),
            ]
        }
        "droid" => {
            let settings = serde_json::json!({
                "customModels": [{
                    "model": MODEL,
                    "displayName": "Scripted model",
                    "baseUrl": url,
                    "apiKey": API_KEY,
                    "provider": "anthropic",
                    "maxOutputTokens": 4096,
                }],
                // The model of a droid started without `--model` (`forge plan --agent droid`):
                // the scripted one, so droid runs offline.
                "sessionDefaultSettings": {"model": format!("custom:{MODEL}")},
            });
            write(home, ".factory/settings.json", &settings.to_string())?;
            plan_model = Some(format!("custom:{MODEL}"));
            vec![("FACTORY_API_KEY", API_KEY.to_owned())]
        }
        _ => Vec::new(),
    };
    env.extend(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)));
    Ok(Setup { env, plan_model })
}
