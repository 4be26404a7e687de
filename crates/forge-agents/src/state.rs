//! Private agent state: each task's agent keeps its state (sessions, databases, caches of its
//! own) in a directory of the task's own instead of the user's, seeded with what the user's
//! CLI needs to authenticate.
//!
//! Several copies of one CLI sharing its state directory interfere: parallel `opencode run`s
//! fail with "database is locked", codex users report concurrent runs mixing sessions. A
//! profile's [`AgentHome`] names the variable that moves the CLI's state (`CODEX_HOME`,
//! `CLAUDE_CONFIG_DIR`, `GEMINI_CLI_HOME`, opencode's `XDG_DATA_HOME`, droid's
//! `FACTORY_HOME_OVERRIDE`); Forge points it at `<run>/tasks/<task>/home` (one per task, so a
//! retry continues the task's own sessions) and copies the listed files (credentials and
//! configuration) from the user's directory into it before each attempt, and removes those
//! copies after it. Only that variable changes: `HOME` stays the user's, so the tools an agent
//! runs (git, cargo, npm) keep their configuration and caches.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Where an agent CLI keeps its state, and which of the user's files it needs there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentHome {
    /// The variable that moves the CLI's state (`CODEX_HOME`, …).
    pub var: String,
    /// What the variable stands for when the user has not set it, relative to `HOME`
    /// (`.codex`; empty for `HOME` itself).
    pub default: String,
    /// Where the CLI's files are below the variable's directory (`.gemini` below
    /// `GEMINI_CLI_HOME`; empty for the directory itself).
    pub sub: String,
    /// Files (relative to `<dir>/<sub>`) copied from the user's into the private directory
    /// before each attempt, and removed after it. A file missing there is looked for one
    /// directory up (`~/.claude.json` beside `~/.claude`); a file missing both places is skipped.
    pub seed: Vec<String>,
}

impl AgentHome {
    /// A home moved by `var` (standing for `~/<default>` when unset), the CLI's files in `sub`
    /// below it, seeded with `seed`.
    pub fn new(var: &str, default: &str, sub: &str, seed: &[&str]) -> Self {
        Self {
            var: var.to_owned(),
            default: default.to_owned(),
            sub: sub.to_owned(),
            seed: seed.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// The user's directory the variable stands for: the variable's value in `env` (the
    /// agent's environment: profile and task) or Forge's, else `<default>` under `HOME` (the
    /// agent's, else Forge's).
    fn user_dir(&self, env: &BTreeMap<String, String>) -> Option<PathBuf> {
        if let Some(v) = env.get(&self.var).filter(|v| !v.is_empty()) {
            return Some(PathBuf::from(v));
        }
        if let Some(v) = std::env::var_os(&self.var).filter(|v| !v.is_empty()) {
            return Some(PathBuf::from(v));
        }
        let home = env
            .get("HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(PathBuf::from))?;
        Some(home.join(&self.default))
    }

    /// Makes `dir` the private state directory (creating it), copies the seed files into it,
    /// and returns what to add to the agent's environment. `env` is the task's environment
    /// (which may point the variable at the user's directory).
    pub fn prepare(
        &self,
        dir: &Path,
        env: &BTreeMap<String, String>,
    ) -> Result<PrivateState, std::io::Error> {
        let own = dir.join(&self.sub);
        std::fs::create_dir_all(&own).map_err(|e| context(&e, "create", &own))?;
        let mut seeded = Vec::new();
        if let Some(user) = self.user_dir(env) {
            let user = user.join(&self.sub);
            for file in &self.seed {
                let from = [user.join(file), user.join("..").join(file)]
                    .into_iter()
                    .find(|p| p.is_file());
                let Some(from) = from else { continue };
                let to = own.join(file);
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| context(&e, "create", parent))?;
                }
                std::fs::copy(&from, &to).map_err(|e| context(&e, "copy into", &to))?;
                seeded.push(to);
            }
        }
        Ok(PrivateState {
            var: self.var.clone().into(),
            dir: dir.to_path_buf(),
            seeded,
        })
    }
}

fn context(e: &std::io::Error, what: &str, path: &Path) -> std::io::Error {
    std::io::Error::new(
        e.kind(),
        format!(
            "cannot {what} {} (the agent's private state): {e}",
            path.display()
        ),
    )
}

/// An attempt's private agent state, made by [`AgentHome::prepare`].
#[derive(Debug)]
pub struct PrivateState {
    var: OsString,
    dir: PathBuf,
    seeded: Vec<PathBuf>,
}

impl PrivateState {
    /// The variable and its value for the agent's environment.
    pub fn env(&self) -> (OsString, OsString) {
        (self.var.clone(), self.dir.clone().into_os_string())
    }

    /// The directory (which the agent must be able to write).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Removes the seeded copies (the user's credentials do not stay in the run's directory).
    pub fn finish(self) {
        for file in self.seeded {
            let _ = std::fs::remove_file(file);
        }
    }
}

impl crate::Profile {
    /// Prepares the private state of an attempt of this profile in `dir` (Forge uses
    /// `<run>/tasks/<task>/home`, shared by the task's attempts one at a time, so that a retry
    /// finds the task's sessions). `env` is the caller's extra environment for the agent, which
    /// may point the variable at the user's directory. `None` when the profile's state is not
    /// moved.
    pub fn private_state(
        &self,
        dir: &Path,
        env: &BTreeMap<String, String>,
    ) -> Result<Option<PrivateState>, std::io::Error> {
        let Some(home) = &self.home else {
            return Ok(None);
        };
        let mut all = self.env.clone();
        all.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
        home.prepare(dir, &all).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_from_the_users_directory_and_removes_the_copies() {
        let user = tempfile::tempdir().unwrap();
        let run = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(user.path().join("state/.cli")).unwrap();
        std::fs::write(user.path().join("state/.cli/auth.json"), "secret").unwrap();
        std::fs::write(user.path().join("state/beside.json"), "b").unwrap();
        let home = AgentHome::new(
            "FORGE_TEST_STATE_VAR",
            ".never",
            ".cli",
            &["auth.json", "beside.json", "missing.json"],
        );
        let mut env = BTreeMap::new();
        env.insert(
            "FORGE_TEST_STATE_VAR".to_owned(),
            user.path().join("state").display().to_string(),
        );
        let dir = run.path().join("home");
        let state = home.prepare(&dir, &env).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join(".cli/auth.json")).unwrap(),
            "secret"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join(".cli/beside.json")).unwrap(),
            "b"
        );
        assert!(!dir.join(".cli/missing.json").exists());
        assert_eq!(
            state.env(),
            ("FORGE_TEST_STATE_VAR".into(), dir.clone().into_os_string())
        );
        state.finish();
        assert!(!dir.join(".cli/auth.json").exists());
        assert!(dir.join(".cli").is_dir());
    }
}
