//! `forge demo`: the first thing to try. A small project with a real test script in a new git
//! repository, a plan of five simulated agents ("add user authentication": models, backend,
//! frontend, tests, docs), run with the full live view, gated on the project's tests and
//! applied. The agents are simulated (`agent = "sim"`: real processes editing real files in real
//! workspaces, printing a real agent's JSON); everything else is the real engine.
//!
//! What it shows: dependencies (`backend` after `models`), two tasks appending to `CHANGELOG.md`
//! at the same time (`backend` and `frontend`), merged by `union`, a task that fails once and is
//! retried (`tests`), a lock wait (`docs` reads the tests that `tests` is writing), and the gate
//! counting the project's tests. It takes about ten seconds.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cli::{ApplyFlags, DemoArgs, OutputFlags};
use crate::config::{Config, Context};
use crate::error::{CliError, CliResult, Exit};
use crate::run::{Start, execute};
use crate::term::Style;

/// The sample project: path and content.
pub(crate) const FILES: &[(&str, &str)] = &[
    (
        "README.md",
        "# Tiny users\n\nA small user store written in POSIX shell.\n\n## Usage\n\n    . src/models/users.sh\n    add_user alice <hash>\n\n## Tests\n\n    sh test.sh\n",
    ),
    ("CHANGELOG.md", "# Changelog\n\n## Unreleased\n\n"),
    (
        "src/models/users.sh",
        r#"# User records: one `name:password-hash` line per user in $USERS_DB.

users_db() { printf '%s\n' "${USERS_DB:-./users.db}"; }

user_exists() { grep -q "^$1:" "$(users_db)" 2>/dev/null; }

add_user() {
    user_exists "$1" && return 1
    printf '%s:%s\n' "$1" "$2" >> "$(users_db)"
}
"#,
    ),
    (
        "tests/lib.sh",
        r#"# A tiny test helper: `check <name> <command…>` prints `ok <name>` or `FAIL <name>`.
check() {
    name=$1
    shift
    if "$@" >/dev/null 2>&1; then
        printf 'ok   %s\n' "$name"
    else
        printf 'FAIL %s\n' "$name"
    fi
}

not() { ! "$@"; }
"#,
    ),
    (
        "tests/test_users.sh",
        r#". src/models/users.sh
. tests/lib.sh
USERS_DB=$(mktemp)
export USERS_DB

check "a new user is added" add_user alice h1
check "the user exists" user_exists alice
check "a user is added once" not add_user alice h2
check "an unknown user does not exist" not user_exists bob
rm -f "$USERS_DB"
"#,
    ),
    (
        "test.sh",
        r#"#!/bin/sh
# Runs every tests/test_*.sh and counts the `ok` and `FAIL` lines they print.
cd "$(dirname "$0")" || exit 2
pass=0
fail=0
for t in tests/test_*.sh; do
    out=$(sh "$t" 2>&1)
    printf '%s\n' "$out"
    p=$(printf '%s\n' "$out" | grep -c '^ok ')
    f=$(printf '%s\n' "$out" | grep -c '^FAIL ')
    pass=$((pass + p))
    fail=$((fail + f))
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
"#,
    ),
];

/// The demo's plan: five `sim` tasks with realistic pauses.
pub(crate) const PLAN: &str = r#"# The plan `forge demo` runs: "add user authentication" by five (simulated) agents.
name = "demo-auth"
concurrency = 4
base = "head"

[defaults]
agent = "sim"

[[task]]
id = "models"
prompt = '''
Add sessions to the user model: create, look up and end a session.

```forge-sim
say Reading the user model
sleep 400ms
say Sessions need a store next to the users
sleep 500ms
write src/models/sessions.sh
# Sessions: one `token:name` line per session in $SESSIONS_DB.
sessions_db() { printf '%s\n' "${SESSIONS_DB:-./sessions.db}"; }
new_session() {
    token="tok-$1-$(printf '%s' "$1$$" | cksum | cut -d' ' -f1)"
    printf '%s:%s\n' "$token" "$1" >> "$(sessions_db)"
    printf '%s\n' "$token"
}
session_user() { grep "^$1:" "$(sessions_db)" 2>/dev/null | head -n 1 | cut -d: -f2; }
end
sleep 400ms
say Sessions are stored one per line
```
'''
writes = ["src/models/**"]

[[task]]
id = "backend"
prompt = '''
Add registration and login with password hashing, on top of the user model.

```forge-sim
say Reading src/models/users.sh and sessions.sh
sleep 500ms
write src/auth/auth.sh
# Registration and login. Needs src/models/users.sh and src/models/sessions.sh.
hash_password() { printf '%s' "$1" | cksum | cut -d' ' -f1; }
register() { add_user "$1" "$(hash_password "$2")"; }
login() {
    grep -q "^$1:$(hash_password "$2")\$" "$(users_db)" 2>/dev/null || return 1
    new_session "$1"
}
end
sleep 600ms
say Login returns a session token
append CHANGELOG.md - Backend: registration and login with hashed passwords.
sleep 300ms
```
'''
after = ["models"]
writes = ["src/auth/**"]
appends = ["CHANGELOG.md"]

[[task]]
id = "frontend"
prompt = '''
Add a login page that posts the user's name and password.

```forge-sim
say Sketching the login form
sleep 1s
write web/login.html
<!doctype html>
<title>Sign in</title>
<form id="login">
  <label>Name <input name="name" autocomplete="username" required></label>
  <label>Password <input name="password" type="password" autocomplete="current-password" required></label>
  <button>Sign in</button>
</form>
<script src="login.js"></script>
end
sleep 900ms
write web/login.js
document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = new FormData(event.target);
  const res = await fetch("/login", { method: "POST", body });
  document.body.dataset.state = res.ok ? "signed-in" : "error";
});
end
sleep 500ms
append CHANGELOG.md - Frontend: a sign-in page.
say The form posts to /login
```
'''
writes = ["web/**"]
appends = ["CHANGELOG.md"]

[[task]]
id = "tests"
after = ["backend"]
retries = 1
prompt = '''
Write tests for registration and login, and run the test suite.

```forge-sim
say Writing tests for login
sleep 400ms
write tests/test_auth.sh
. src/models/users.sh
. src/models/sessions.sh
. src/auth/auth.sh
. tests/lib.sh
USERS_DB=$(mktemp)
SESSIONS_DB=$(mktemp)
export USERS_DB SESSIONS_DB

check "a user registers" register alice s3cret
check "a user registers once" not register alice other
check "login with the right password" login alice s3cret
check "login with a wrong password fails" not login alice wrong
check "login of an unknown user fails" not login bob s3cret
check "a session names its user" test "$(session_user "$(login alice s3cret)")" = alice
rm -f "$USERS_DB" "$SESSIONS_DB"
end
sleep 800ms
run sh test.sh
fail-on-attempt 1 1
say All tests pass
```
'''
writes = ["tests/**"]

[[task]]
id = "docs"
after = ["backend", "frontend"]
reads = ["tests/**"]
prompt = '''
Document registration and login, with examples from the tests.

```forge-sim
say Reading the new auth code
sleep 500ms
write docs/auth.md
# Registration and login

    . src/models/users.sh
    . src/models/sessions.sh
    . src/auth/auth.sh
    register alice s3cret          # stores a hash of the password
    login alice s3cret             # prints a session token
    session_user "$token"          # who a token belongs to

The sign-in page is `web/login.html`; it posts to `/login`.
end
sleep 400ms
replace README.md A small user store written in POSIX shell. => A small user store written in POSIX shell, with registration and login (see docs/auth.md).
say README points to the new guide
```
'''
writes = ["docs/**", "README.md"]

[gate]
commands = ["sh test.sh"]
"#;

/// Writes the sample project into `dir` and commits it.
pub(crate) fn create_sample(dir: &Path) -> CliResult<()> {
    std::fs::create_dir_all(dir).map_err(|e| CliError::io("create", dir, &e))?;
    if std::fs::read_dir(dir)
        .map_err(|e| CliError::io("read", dir, &e))?
        .next()
        .is_some()
    {
        return Err(CliError::usage(format!(
            "{} is not empty; the demo needs an empty directory",
            dir.display()
        ))
        .hint("give a new directory with --dir, or leave --dir out to use a temporary one"));
    }
    for (path, text) in FILES {
        let full = dir.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).map_err(|e| CliError::io("create", parent, &e))?;
        }
        std::fs::write(&full, text).map_err(|e| CliError::io("write", &full, &e))?;
    }
    let plan = dir.join("plan.toml");
    std::fs::write(&plan, PLAN).map_err(|e| CliError::io("write", &plan, &e))?;
    let gitignore = dir.join(".gitignore");
    std::fs::write(&gitignore, "*.db\n.forge/\n")
        .map_err(|e| CliError::io("write", &gitignore, &e))?;
    git(dir, &["init", "-q", "-b", "main"])?;
    git(dir, &["add", "-A"])?;
    git(
        dir,
        &[
            "-c",
            "user.name=Forge demo",
            "-c",
            "user.email=demo@forge.invalid",
            "commit",
            "-q",
            "-m",
            "Tiny users: a user store in POSIX shell",
        ],
    )?;
    Ok(())
}

fn git(dir: &Path, args: &[&str]) -> CliResult<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .map_err(|e| {
            CliError::failed(format!("cannot run git: {}", crate::error::io_reason(&e)))
                .hint("the demo needs git installed and on PATH")
        })?;
    if !out.status.success() {
        return Err(CliError::failed(format!(
            "`git {}` failed in {}: {}",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `forge demo`.
pub(crate) async fn run(args: &DemoArgs, style: Style) -> CliResult {
    let (dir, temp): (PathBuf, Option<tempfile::TempDir>) = match &args.dir {
        Some(d) => {
            let d = std::env::current_dir().map_or_else(|_| d.clone(), |cwd| cwd.join(d));
            (d, None)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("forge-demo-")
                .tempdir()
                .map_err(|e| CliError::io("create a directory in", &std::env::temp_dir(), &e))?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    create_sample(&dir)?;
    let dir = std::fs::canonicalize(&dir).map_err(|e| CliError::io("open", &dir, &e))?;
    let keep = args.keep || args.dir.is_some();
    if !args.json {
        outln!(
            "{} A sample project in {}: five simulated agents add user authentication.\n",
            style.bold("forge demo"),
            dir.display()
        );
    }
    let ctx = Context {
        repo: dir.clone(),
        config: Config::default(),
        in_git: true,
    };
    let plan = crate::plan_file::load(&ctx, &dir.join("plan.toml"))?;
    let profiles = crate::agents::profiles(&ctx)?;
    let flags = ApplyFlags {
        yes: true,
        no_apply: false,
        branch: false,
    };
    let output = OutputFlags {
        json: args.json,
        serve: None,
    };
    let exit = execute(
        &ctx,
        Start::New(Box::new(plan)),
        profiles,
        &flags,
        &output,
        style,
    )
    .await?;
    if args.json {
        if keep {
            errln!("The sample project is in {}.", dir.display());
        }
        return Ok(exit);
    }
    if exit == Exit::Success {
        let stat = git(&dir, &["status", "--short"]).unwrap_or_default();
        if !stat.trim().is_empty() {
            outln!("\nThe working tree now has the agents' work (git status --short):");
            for line in stat.lines() {
                outln!("  {line}");
            }
        }
    }
    if keep {
        let run = crate::runs::resolve_run(&ctx, None)
            .map(|r| r.to_string())
            .unwrap_or_default();
        outln!("\n{}", style.bold("Where to look:"));
        outln!("  cd {}", dir.display());
        outln!("  git diff                      # what the agents changed");
        outln!("  sh test.sh                    # the tests the gate ran");
        outln!("  cat plan.toml                 # the plan: tasks, claims, order");
        outln!("  forge status {run}   # the run's table");
        outln!("  forge logs tests {run} --attempt 1   # the attempt that failed");
        outln!("  forge serve                   # the dashboard");
    } else {
        outln!("\nThe sample project was removed. `forge demo --keep` keeps it to look around.");
    }
    if let Some(temp) = temp {
        if keep {
            let _ = temp.keep();
        } else {
            // Removing it may fail on files an agent left read-only; the OS cleans temp dirs.
            let _ = temp.close();
        }
    }
    Ok(exit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_plan_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Context {
            repo: dir.path().to_path_buf(),
            config: Config::default(),
            in_git: false,
        };
        let plan = crate::plan_file::validate_text(&ctx, PLAN, Path::new("plan.toml")).unwrap();
        assert_eq!(plan.tasks.len(), 5);
        assert!(plan.tasks.iter().all(|t| t.agent == "sim"));
        let appenders = plan.tasks.iter().filter(|t| !t.appends.is_empty()).count();
        assert_eq!(appenders, 2);
        let tests = plan
            .tasks
            .iter()
            .find(|t| t.id.as_str() == "tests")
            .unwrap();
        assert_eq!(tests.retries, 1);
        assert!(tests.prompt.contains("fail-on-attempt 1 1"));
    }

    #[test]
    fn the_sample_tests_pass_before_the_agents() {
        let dir = tempfile::tempdir().unwrap();
        create_sample(dir.path()).unwrap();
        let out = Command::new("sh")
            .arg("test.sh")
            .current_dir(dir.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("4 passed, 0 failed"), "{text}");
    }
}
