//! Writing plan files (`forge split`, `forge plan`, `forge demo`) and loading them as
//! `forge run` does.

use std::path::Path;

use forge_exec::plan::{Plan, PlanFormat, PlanOptions};

use crate::config::Context;
use crate::error::{CliError, CliResult};

/// A TOML string literal (basic string, escaped).
pub(crate) fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// A TOML array of strings on one line.
pub(crate) fn toml_array(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| toml_string(s)).collect();
    format!("[{}]", inner.join(", "))
}

/// The options `forge run` validates plans with: the built-in agents plus those `forge.toml`
/// defines.
pub(crate) fn plan_options(ctx: &Context) -> CliResult<PlanOptions> {
    let mut opts = PlanOptions::default();
    for name in crate::agents::configured_agent_names(ctx)? {
        if !opts.agents.contains(&name) {
            opts.agents.push(name);
        }
    }
    Ok(opts)
}

/// Validates plan text as `forge run` would load it from `path`.
pub(crate) fn validate_text(ctx: &Context, text: &str, path: &Path) -> CliResult<Plan> {
    let opts = plan_options(ctx)?;
    Plan::parse(text, path, PlanFormat::Toml, &opts).map_err(CliError::from)
}

/// Loads and validates a plan file.
pub(crate) fn load(ctx: &Context, path: &Path) -> CliResult<Plan> {
    if !path.is_file() {
        return Err(
            CliError::usage(format!("no plan file at {}", path.display()))
                .hint("check the path; `forge plan \"<request>\"` or `forge split` can write one"),
        );
    }
    let opts = plan_options(ctx)?;
    Plan::load(path, &opts).map_err(CliError::from)
}

/// Writes `text` to `path` atomically ([`forge_staging::write_atomically`]), so a reader never
/// sees half a plan.
pub(crate) fn write_atomic(path: &Path, text: &str) -> CliResult<()> {
    forge_staging::write_atomically(path, text.as_bytes())
        .map_err(|e| CliError::io("save", path, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        for text in [
            "plain",
            "a \"b\"\nc",
            "tab\there",
            "ends with \"\"\"",
            "back\\slash",
        ] {
            let doc: toml::Table = toml::from_str(&format!("k = {}", toml_string(text))).unwrap();
            assert_eq!(doc["k"].as_str(), Some(text));
        }
        assert_eq!(
            toml_array(&["src/**".into(), "x".into()]),
            r#"["src/**", "x"]"#
        );
    }
}
