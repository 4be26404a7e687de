//! The simulated agent as a real program (`forge-sim-agent`) in real temporary directories:
//! every directive, failures, hanging until killed, refused paths, the ways to give a prompt,
//! and its output in every format read back by our parsers.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use forge_agents::{AgentEvent, OutputFormat, OutputParser, Profiles, PromptVars, Stream, Usage};

const SIM: &str = env!("CARGO_BIN_EXE_forge-sim-agent");

fn prompt(block: &str) -> String {
    format!(
        "Implement the feature.\n\nSome context for a real agent.\n\n```forge-sim\n{block}\n```\n\nMore text.\n"
    )
}

/// The line of `prompt(block)` on which the block's first line is.
const FIRST_LINE: usize = 6;

fn sim(dir: &Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(SIM);
    cmd.args(args)
        .current_dir(dir)
        .env_remove("FORGE_ATTEMPT")
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

/// Runs a script given as the prompt argument.
fn run_script(dir: &Path, format: &str, block: &str, env: &[(&str, &str)]) -> Output {
    sim(dir, &["--format", format, &prompt(block)], env, None)
}

type Step = (String, Option<String>, Vec<String>);

struct Parsed {
    progress: Vec<Step>,
    errors: Vec<String>,
    results: Vec<(String, bool)>,
    usage: Usage,
}

fn parse(format: OutputFormat, out: &Output, workspace: &Path) -> Parsed {
    let mut parser = OutputParser::new(format).with_workspace(workspace);
    let mut events = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        parser.line(Stream::Stdout, line, &mut events);
    }
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        parser.line(Stream::Stderr, line, &mut events);
    }
    parser.finish(&mut events);
    let mut parsed = Parsed {
        progress: Vec::new(),
        errors: Vec::new(),
        results: Vec::new(),
        usage: parser.usage_total(),
    };
    for e in events {
        match e {
            AgentEvent::Progress {
                message,
                tool,
                files,
            } => parsed.progress.push((message, tool, files)),
            AgentEvent::Error(m) => parsed.errors.push(m),
            AgentEvent::Result { text, is_error } => parsed.results.push((text, is_error)),
            AgentEvent::Usage { .. } | AgentEvent::Session(_) | AgentEvent::GiveUp(_) => {}
        }
    }
    parsed
}

fn say(text: &str) -> Step {
    (text.to_owned(), None, Vec::new())
}

fn tool(message: &str, tool: &str, files: &[&str]) -> Step {
    (
        message.to_owned(),
        Some(tool.to_owned()),
        files.iter().map(|f| (*f).to_owned()).collect(),
    )
}

/// Everything the output says went wrong: error events and error results.
fn failure(format: OutputFormat, out: &Output, workspace: &Path) -> String {
    let p = parse(format, out, workspace);
    let mut text = p.errors.join("\n");
    for (r, is_error) in p.results {
        if is_error {
            text.push('\n');
            text.push_str(&r);
        }
    }
    text
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const EVERY_STEP: &str = "say Adding auth
write src/auth.rs
pub fn login() {}
end
replace src/auth.rs login => sign_in
append CHANGELOG.md - auth
run echo built
delete old.txt
chmod +x run.sh
symlink link.rs -> src/auth.rs
sleep 10ms
result {\"ok\":true}";

fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("old.txt"), "old\n").unwrap();
    std::fs::write(dir.path().join("run.sh"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        dir.path().join("run.sh"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    dir
}

#[test]
fn every_directive_changes_real_files() {
    let dir = workspace();
    let d = dir.path();
    let out = run_script(d, "droid", EVERY_STEP, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(d.join("src/auth.rs")).unwrap(),
        "pub fn sign_in() {}\n"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("CHANGELOG.md")).unwrap(),
        "- auth\n"
    );
    assert!(!d.join("old.txt").exists());
    let mode = std::fs::metadata(d.join("run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "{mode:o}");
    assert_eq!(
        std::fs::read_link(d.join("link.rs")).unwrap(),
        Path::new("src/auth.rs")
    );
    let p = parse(OutputFormat::Droid, &out, d);
    assert_eq!(
        p.progress,
        [
            say("Adding auth"),
            tool("Create src/auth.rs", "write", &["src/auth.rs"]),
            tool("Edit src/auth.rs", "edit", &["src/auth.rs"]),
            tool("Edit CHANGELOG.md", "edit", &["CHANGELOG.md"]),
            tool("Run echo built", "bash", &[]),
            tool("Delete old.txt", "edit", &["old.txt"]),
            tool("Run chmod +x run.sh", "bash", &[]),
            tool("Run ln -s src/auth.rs link.rs", "bash", &[]),
        ]
    );
    assert_eq!(p.results, [("{\"ok\":true}".to_owned(), false)]);
    assert!(p.usage.tokens_in > 0 && p.usage.tokens_out > 0);

    // Appending to a file without a final newline starts a new line; `chmod -x` clears the bits;
    // a second `write` overwrites; `run` sees the working directory.
    let out = run_script(
        d,
        "text",
        "write notes.txt\nfirst\nend\nrun printf 'no newline' >> notes.txt\nappend notes.txt second\nchmod -x run.sh\nwrite src/auth.rs\nend\nrun test -e link.rs && echo here",
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(d.join("notes.txt")).unwrap(),
        "first\nno newline\nsecond\n"
    );
    let mode = std::fs::metadata(d.join("run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0);
    assert_eq!(std::fs::read_to_string(d.join("src/auth.rs")).unwrap(), "");
    assert!(String::from_utf8_lossy(&out.stdout).contains("\nhere\n"));
}

#[test]
fn every_format_reads_back_with_our_parser() {
    let json_formats = [
        OutputFormat::Droid,
        OutputFormat::Claude,
        OutputFormat::Codex,
        OutputFormat::Gemini,
        OutputFormat::Amp,
    ];
    let mut totals = Vec::new();
    for format in json_formats.into_iter().chain([OutputFormat::Text]) {
        let dir = workspace();
        let out = run_script(dir.path(), format.name(), EVERY_STEP, &[]);
        assert!(out.status.success(), "{format}: {}", stderr(&out));
        let p = parse(format, &out, dir.path());
        let ok = "{\"ok\":true}";
        let create = || match format {
            OutputFormat::Droid => tool("Create src/auth.rs", "write", &["src/auth.rs"]),
            OutputFormat::Codex => tool("Create src/auth.rs", "edit", &["src/auth.rs"]),
            _ => tool("Write src/auth.rs", "write", &["src/auth.rs"]),
        };
        let delete = match format {
            OutputFormat::Droid | OutputFormat::Codex => {
                tool("Delete old.txt", "edit", &["old.txt"])
            }
            _ => tool("Run rm old.txt", "bash", &[]),
        };
        let mut want = vec![
            say("Adding auth"),
            create(),
            tool("Edit src/auth.rs", "edit", &["src/auth.rs"]),
            tool("Edit CHANGELOG.md", "edit", &["CHANGELOG.md"]),
            tool("Run echo built", "bash", &[]),
            delete,
            tool("Run chmod +x run.sh", "bash", &[]),
            tool("Run ln -s src/auth.rs link.rs", "bash", &[]),
        ];
        if matches!(format, OutputFormat::Codex | OutputFormat::Gemini) {
            want.push(say(ok));
        }
        if format == OutputFormat::Text {
            want = [
                "Adding auth",
                "Create src/auth.rs",
                "Edit src/auth.rs",
                "Edit CHANGELOG.md",
                "Run echo built",
                "built",
                "Delete old.txt",
                "Run chmod +x run.sh",
                "Run ln -s src/auth.rs link.rs",
                ok,
            ]
            .into_iter()
            .map(say)
            .collect();
        }
        assert_eq!(p.progress, want, "{format}");
        assert!(p.errors.is_empty(), "{format}: {:?}", p.errors);
        if format == OutputFormat::Text {
            assert_eq!(p.results.len(), 1);
            assert!(p.results[0].0.ends_with(ok));
        } else {
            assert_eq!(p.results, [(ok.to_owned(), false)], "{format}");
            totals.push((format, p.usage));
        }
    }
    // The same script costs the same tokens in every format: nothing counted twice.
    let (_, first) = totals[0];
    assert!(first.tokens_in > 1_000 && first.tokens_out > 10);
    for (format, usage) in &totals {
        assert_eq!(
            (usage.tokens_in, usage.tokens_out),
            (first.tokens_in, first.tokens_out),
            "{format}"
        );
        let has_cost = matches!(format, OutputFormat::Claude | OutputFormat::Amp);
        assert_eq!(usage.cost_usd.is_some(), has_cost, "{format}");
    }
    // Deterministic: the same script again gives the same usage.
    let dir = workspace();
    let again = parse(
        OutputFormat::Claude,
        &run_script(dir.path(), "claude", EVERY_STEP, &[]),
        dir.path(),
    );
    assert_eq!(again.usage, totals[1].1);
}

#[test]
fn fail_and_fail_on_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = run_script(d, "claude", "say trying\nfail 7\nwrite never.txt\nend", &[]);
    assert_eq!(out.status.code(), Some(7));
    assert!(!d.join("never.txt").exists());
    let p = parse(OutputFormat::Claude, &out, d);
    assert_eq!(p.results.len(), 1);
    assert!(p.results[0].1, "an error result");
    assert!(
        p.results[0].0.contains(&format!(
            "line {}: failing with exit code 7",
            FIRST_LINE + 1
        )),
        "{:?}",
        p.results
    );

    let script = "write before.txt\nend\nfail-on-attempt 2 3\nwrite after.txt\nend";
    for (attempt, code) in [(None, 0), (Some("1"), 0), (Some("2"), 3), (Some("3"), 0)] {
        let _ = std::fs::remove_file(d.join("after.txt"));
        let env: Vec<(&str, &str)> = attempt.map(|a| ("FORGE_ATTEMPT", a)).into_iter().collect();
        let out = run_script(d, "droid", script, &env);
        assert_eq!(
            out.status.code(),
            Some(code),
            "attempt {attempt:?}: {}",
            stderr(&out)
        );
        assert!(d.join("before.txt").exists());
        assert_eq!(
            d.join("after.txt").exists(),
            code == 0,
            "attempt {attempt:?}"
        );
        if code != 0 {
            let p = parse(OutputFormat::Droid, &out, d);
            assert_eq!(p.errors.len(), 1, "{:?}", p.errors);
            assert!(p.errors[0].contains("failing attempt 2 with exit code 3"));
        }
    }
    // The first attempt is 1 when FORGE_ATTEMPT is not set.
    let out = run_script(d, "droid", "fail-on-attempt 1 9", &[]);
    assert_eq!(out.status.code(), Some(9));
    let out = run_script(d, "droid", "fail-on-attempt 1 9", &[("FORGE_ATTEMPT", "x")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(failure(OutputFormat::Droid, &out, d).contains("FORGE_ATTEMPT is `x`"));
}

#[test]
fn a_failing_command_fails_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = run_script(
        d,
        "codex",
        "run echo about to fail; exit 4\nwrite never.txt\nend",
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(!d.join("never.txt").exists());
    let p = parse(OutputFormat::Codex, &out, d);
    assert_eq!(
        p.progress,
        [
            tool("Run echo about to fail; exit 4", "bash", &[]),
            tool(
                "Run echo about to fail; exit 4 failed: exit code 4",
                "bash",
                &[]
            ),
        ]
    );
    assert_eq!(p.results.len(), 1);
    assert!(p.results[0].1);
    assert!(
        p.results[0]
            .0
            .contains("`echo about to fail; exit 4` exited with code 4"),
        "{:?}",
        p.results
    );
    // A missing file to replace in is a failed step too.
    let out = run_script(d, "gemini", "replace missing.txt a => b", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(failure(OutputFormat::Gemini, &out, d).contains("cannot read missing.txt"));
    std::fs::write(d.join("a.txt"), "abc").unwrap();
    let out = run_script(d, "gemini", "replace a.txt zzz => b", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(failure(OutputFormat::Gemini, &out, d).contains("`zzz` not found in a.txt"));
    // In the text format, the failure is on standard error.
    let out = run_script(d, "text", "replace a.txt zzz => b", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("error: line 6: `zzz` not found in a.txt"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(d.join("a.txt")).unwrap(), "abc");
}

#[test]
fn hang_sleeps_until_interrupted() {
    use std::io::BufRead;
    use std::os::unix::process::ExitStatusExt;

    let dir = tempfile::tempdir().unwrap();
    let prompt_file = dir.path().join("prompt.md");
    std::fs::write(
        &prompt_file,
        prompt("say waiting for ever\nhang\nwrite never.txt\nend"),
    )
    .unwrap();
    // SIGINT at its default action, as Forge starts agents: a test run from a script's
    // background job (or `nohup`) would otherwise hand down SIGINT ignored.
    let mut child = Command::new("env")
        .arg("--default-signal=INT")
        .arg(SIM)
        .arg("-f")
        .arg(&prompt_file)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The message before `hang` arrives while it hangs; then an interrupt (what a timeout
    // sends first) ends it.
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("output before hanging").unwrap();
        if line.contains("waiting for ever") {
            break;
        }
    }
    assert_eq!(child.try_wait().unwrap(), None, "it hangs");
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(2),
        "SIGINT ends it: default signal handling"
    );
    assert!(!dir.path().join("never.txt").exists());
}

#[test]
fn an_unknown_directive_names_its_line_and_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = run_script(
        d,
        "droid",
        "write first.txt\nend\nsay hi\nwirte second.txt",
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(!d.join("first.txt").exists(), "parsed before anything runs");
    let line = FIRST_LINE + 3;
    let err = failure(OutputFormat::Droid, &out, d);
    assert!(
        err.contains(&format!(
            "line {line}: unknown directive `wirte` (did you mean `write`?)"
        )),
        "{err}"
    );
    let p = parse(OutputFormat::Droid, &out, d);
    assert_eq!(p.errors.len(), 1);
    assert!(p.errors[0].contains(&format!("line {line}: unknown directive")));
}

#[test]
fn paths_leaving_the_working_directory_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(outside.path().join("secret.txt"), "keep").unwrap();
    for (block, want) in [
        ("write /tmp/forge-sim-escape.txt\nx\nend", "is absolute"),
        ("append ../escape.txt x", "leaves the working directory"),
        ("delete a/../../escape.txt", "leaves the working directory"),
    ] {
        let out = run_script(d, "droid", block, &[]);
        assert_eq!(out.status.code(), Some(2), "{block}");
        let err = failure(OutputFormat::Droid, &out, d);
        assert!(err.contains(&format!("line {FIRST_LINE}: ")), "{err}");
        assert!(err.contains(want), "{block}: {err}");
    }
    assert!(!Path::new("/tmp/forge-sim-escape.txt").exists());

    // Symlinks that lead outside are not written through, as a directory or as the file.
    std::os::unix::fs::symlink(outside.path(), d.join("out")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), d.join("secret")).unwrap();
    for block in [
        "write out/new.txt\nx\nend",
        "append secret more",
        "replace secret keep => lost",
        "chmod +x secret",
        "delete out/secret.txt",
        "symlink out/link -> x",
    ] {
        let out = run_script(d, "claude", block, &[]);
        assert_eq!(out.status.code(), Some(1), "{block}: {}", stderr(&out));
        let err = failure(OutputFormat::Claude, &out, d);
        assert!(
            err.contains("is a symlink that leads outside the working directory"),
            "{block}: {err}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(outside.path().join("secret.txt")).unwrap(),
        "keep"
    );
    let left: Vec<_> = std::fs::read_dir(outside.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "nothing was created outside");
    // The link itself may be deleted, and links inside are followed.
    std::fs::create_dir(d.join("sub")).unwrap();
    std::os::unix::fs::symlink("sub", d.join("inside")).unwrap();
    let out = run_script(
        d,
        "droid",
        "delete secret\nwrite inside/f.txt\nok\nend",
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::symlink_metadata(d.join("secret")).is_err());
    assert_eq!(
        std::fs::read_to_string(d.join("sub/f.txt")).unwrap(),
        "ok\n"
    );
}

#[test]
fn the_prompt_comes_from_an_argument_a_file_or_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let text = prompt("say hello\nresult done");
    let file = d.join("prompt.md");
    std::fs::write(&file, &text).unwrap();
    let file = file.to_str().unwrap();
    for (args, stdin) in [
        (vec![text.as_str()], None),
        (vec!["-f", file], None),
        (vec!["--file", file], None),
        (vec![], Some(text.as_str())),
        (vec!["-f", "-"], Some(text.as_str())),
    ] {
        let out = sim(d, &args, &[], stdin);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let p = parse(OutputFormat::Droid, &out, d);
        assert_eq!(p.progress, [say("hello")], "{args:?}");
        assert_eq!(p.results, [("done".to_owned(), false)], "{args:?}");
    }
    // Several words are one prompt.
    let out = sim(d, &["no", "script", "here"], &[], None);
    assert!(out.status.success());
    let p = parse(OutputFormat::Droid, &out, d);
    assert_eq!(
        p.results,
        [(
            "No forge-sim block in the prompt; nothing to do.".to_owned(),
            false
        )]
    );
    // Mistakes on the command line.
    let out = sim(d, &["-f", "/nonexistent/prompt.md"], &[], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot read the prompt file /nonexistent/prompt.md"));
    let out = sim(d, &["--format", "yaml", "x"], &[], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown format `yaml`") && stderr(&out).contains("usage:"));
    let out = sim(d, &["--help"], &[], None);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("usage: forge sim-agent"));
}

#[test]
fn the_sim_profile_runs_the_simulated_agent() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut profiles = Profiles::builtin();
    profiles.set_sim_program(SIM, Vec::new());
    let resolved = profiles.check_available(["sim"]).unwrap();
    assert_eq!(resolved["sim"], Path::new(SIM));
    let profile = profiles.get("sim").unwrap();
    let text = prompt("say from the profile\nwrite x.txt\nx\nend");
    let prompt_file = d.join(".prompt.md");
    std::fs::write(&prompt_file, &text).unwrap();
    let spec = profile
        .command(&PromptVars {
            prompt: &text,
            prompt_file: &prompt_file,
            model: Some("ignored-by-this-profile"),
        })
        .unwrap();
    let out = Command::new(&spec.program)
        .args(&spec.args)
        .current_dir(d)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let p = parse(profile.format, &out, d);
    assert_eq!(
        p.progress,
        [
            say("from the profile"),
            tool("Create x.txt", "write", &["x.txt"])
        ]
    );
    assert_eq!(p.results, [("from the profile".to_owned(), false)]);
}
