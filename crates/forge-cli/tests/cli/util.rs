//! Helpers: the real `forge` binary, temporary git repositories, plans of `sim` tasks.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `forge` binary under test, with a clean environment for configuration.
pub(crate) fn forge_cmd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_forge"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("FORGE_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env_remove("NO_COLOR")
        .env_remove("COLUMNS")
        .env_remove("PAGER")
        .stdin(Stdio::null());
    cmd
}

/// What a finished `forge` printed, as text.
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    pub(crate) fn from(out: Output) -> Self {
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    }

    /// Panics with both streams unless the exit code is `code`.
    pub(crate) fn expect(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "exit code {} (wanted {code})\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        // Errors are paragraphs, never a panic or a Debug dump.
        for text in [&self.stdout, &self.stderr] {
            assert!(!text.contains("panicked"), "{text}");
            assert!(!text.contains("RUST_BACKTRACE"), "{text}");
        }
        self
    }
}

/// A temporary git repository with one commit.
pub(crate) struct Repo {
    dir: tempfile::TempDir,
}

/// Tests that kill Forge on purpose (`kill -9`, no `forge gc` after) leave its workspace mounts
/// behind; unmount them so the temporary directory can go and the host's mount table does not
/// grow from one test run to the next.
impl Drop for Repo {
    fn drop(&mut self) {
        let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else {
            return;
        };
        let root = self.path().to_string_lossy().into_owned();
        let mut points: Vec<&str> = table
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .filter(|point| point.starts_with(&format!("{root}/")))
            .collect();
        points.sort_unstable();
        for point in points.iter().rev() {
            let _ = Command::new("umount")
                .args(["-l", point])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Repo {
    pub(crate) fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("forge-cli-test-")
            .tempdir()
            .unwrap();
        let repo = Self { dir };
        repo.git(&["init", "-q", "-b", "main"]);
        repo.git(&["config", "user.name", "Forge Test"]);
        repo.git(&["config", "user.email", "test@forge.invalid"]);
        repo.write("README.md", "# Test project\n");
        repo.write(".gitignore", ".forge/\n");
        repo.commit("init");
        repo
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    pub(crate) fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).unwrap()
    }

    pub(crate) fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .arg("-C")
            .arg(self.path())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub(crate) fn commit(&self, message: &str) {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
    }

    /// `forge <args>` in the repository.
    pub(crate) fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = forge_cmd();
        cmd.current_dir(self.path()).args(args);
        cmd
    }

    /// Runs `forge <args>` in the repository to its end.
    pub(crate) fn forge(&self, args: &[&str]) -> Run {
        Run::from(self.cmd(args).output().unwrap())
    }

    /// Writes a plan (committed, so the `head` base has it) and returns its file name.
    pub(crate) fn plan(&self, name: &str, text: &str) -> String {
        let file = format!("{name}.toml");
        self.write(&file, text);
        self.commit(&format!("plan {name}"));
        file
    }

    /// The run ids, newest first.
    pub(crate) fn runs(&self) -> Vec<String> {
        let out = self.forge(&["runs", "--json"]).expect(0);
        out.stdout
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["id"].as_str().unwrap().to_owned()
            })
            .collect()
    }
}

/// A `[[task]]` of the `sim` agent running `script` (one directive per line).
pub(crate) fn task(id: &str, extra: &str, script: &str) -> String {
    format!(
        "[[task]]\nid = \"{id}\"\nagent = \"sim\"\n{extra}\nprompt = '''\nTask {id}.\n\n```forge-sim\n{script}\n```\n'''\n\n"
    )
}

/// Waits until `cond` holds (polling), or panics after `secs`.
pub(crate) fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every line of `text` parsed as a JSON object.
pub(crate) fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))
        })
        .collect()
}

/// Sends SIGINT to a child process.
pub(crate) fn interrupt(pid: u32) {
    let pid = rustix::process::Pid::from_raw(i32::try_from(pid).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
}
