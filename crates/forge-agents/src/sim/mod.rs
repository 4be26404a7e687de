//! The simulated agent: a real program that stands in for the LLM.
//!
//! `forge sim-agent` (and this crate's `forge-sim-agent` binary, for tests and benchmarks)
//! reads its prompt, finds the first fenced block tagged `forge-sim`, and carries it out line by
//! line in its working directory, printing what it does as JSONL in a real agent's format
//! (`--format droid|claude|codex|gemini|amp|text`, default `droid`): an init event, a message
//! or tool-call event per step, and a final completion/result event, with plausible
//! deterministic token usage. Everything outside the block is ignored, so a real prompt can
//! carry a script for demos and tests.
//!
//! ```text
//! forge sim-agent [--format FORMAT] [--model NAME] [--resume SESSION] [-f FILE | PROMPT…]
//! ```
//!
//! `--resume SESSION` continues a session: the agent names `SESSION` as its session id instead of
//! a new one (as `claude --resume` does), so a retried task's attempt is seen to continue it.
//!
//! The prompt is the arguments (joined by spaces), the file given with `-f` (`-f -` is standard
//! input), or standard input when neither is given.
//!
//! # Directives
//!
//! ```text
//! say <text>                     assistant message
//! sleep <duration>               e.g. 200ms, 2s (the durations of plans)
//! write <path>                   the following lines up to a line `end` become the file's content
//! append <path> <text>           append one line
//! replace <path> <old> => <new>  replace the first occurrence of a literal string
//! delete <path>
//! chmod +x <path>                (or -x)
//! symlink <path> -> <target>
//! run <shell command>            `sh -c` in the working directory; a non-zero exit fails the agent
//! fail <code>                    exit with that code
//! fail-on-attempt <n> <code>     fail only when FORGE_ATTEMPT == n (the first attempt is 1)
//! hang                           sleep until killed (for timeout tests)
//! result <text>                  the final result text (`result` alone: the lines up to `end`)
//! ```
//!
//! Blank lines and lines starting with `#` are skipped. The block may be fenced with backticks or
//! tildes; a block left open runs to the end of the prompt. The whole script is parsed before
//! anything runs: an unknown directive or a bad path is an error naming its line and nothing is
//! done.
//!
//! Paths are relative to the working directory: absolute paths and `..` are refused, and so is
//! writing through a symlink that leads outside it (a symlink itself may point anywhere, as an
//! agent's could). The result text is the `result` directive's, else the last `say`, else
//! `Done.`; a prompt with no `forge-sim` block prints a result saying there is nothing to do.
//!
//! A failure is reported in the output format (an error event and, where the format has one,
//! an error result; in `text`, a line on standard error), not twice.
//!
//! # Exit codes
//!
//! `0` success; the code of `fail` / `fail-on-attempt`; `1` when a step fails (a `run` command
//! exits non-zero, a file is missing, a replaced text is not found); `2` for bad arguments, an
//! unreadable prompt or an invalid script.
//!
//! # Example
//!
//! ```
//! use forge_agents::sim;
//!
//! let dir = tempfile::tempdir()?;
//! let prompt = "Add a greeting.\n\n```forge-sim\nsay Adding it\nwrite hello.txt\nhi\nend\n```\n";
//! let (mut out, mut err) = (Vec::new(), Vec::new());
//! let code = sim::main_in(dir.path(), ["--format", "claude", prompt], &mut out, &mut err);
//! assert_eq!(code, 0);
//! assert_eq!(std::fs::read_to_string(dir.path().join("hello.txt"))?, "hi\n");
//! let last = String::from_utf8(out)?.lines().last().unwrap().to_owned();
//! assert!(last.starts_with(r#"{"type":"result","subtype":"success""#));
//!
//! // Scripts are checked before anything runs.
//! let err = sim::Script::parse("```forge-sim\nsay hi\nwirte x\n```").unwrap_err();
//! assert_eq!(err.to_string(), "line 3: unknown directive `wirte` (did you mean `write`?); \
//!     directives are say, sleep, write, append, replace, delete, chmod, symlink, run, fail, \
//!     fail-on-attempt, hang, result");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod emit;
mod script;

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub use script::{Directive, Script, ScriptError, SimPath, Step, find_block};

use crate::OutputFormat;
use emit::{Call, Emitter};

const USAGE: &str = "usage: forge sim-agent [--format droid|claude|codex|gemini|amp|text] [--model NAME] [--resume SESSION] [-f FILE | PROMPT...]";

/// Longest command output shown in a tool result (its tail is dropped).
const MAX_OUTPUT: usize = 64 * 1024;

/// Where the prompt comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Args(String),
    File(PathBuf),
    Stdin,
}

/// Parsed command-line options.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Options {
    format: OutputFormat,
    model: Option<String>,
    resume: Option<String>,
    source: Source,
}

enum ArgsError {
    Help,
    Bad(String),
}

fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Options, ArgsError> {
    let mut format = OutputFormat::Droid;
    let mut model = None;
    let mut resume = None;
    let mut file: Option<PathBuf> = None;
    let mut words: Vec<String> = Vec::new();
    let mut args = args.into_iter();
    let mut only_words = false;
    let text = |a: OsString| {
        a.into_string()
            .map_err(|a| ArgsError::Bad(format!("argument `{}` is not UTF-8", a.to_string_lossy())))
    };
    while let Some(arg) = args.next() {
        let arg = text(arg)?;
        if only_words {
            words.push(arg);
            continue;
        }
        let mut value = |name: &str, inline: Option<&str>| -> Result<String, ArgsError> {
            match inline {
                Some(v) => Ok(v.to_owned()),
                None => args
                    .next()
                    .ok_or_else(|| ArgsError::Bad(format!("`{name}` needs a value")))
                    .and_then(text),
            }
        };
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v)),
            _ => (arg.clone(), None),
        };
        match name.as_str() {
            "-h" | "--help" => return Err(ArgsError::Help),
            "--format" | "-o" | "--output-format" => {
                let v = value(&name, inline)?;
                format = match v.parse::<OutputFormat>() {
                    Ok(OutputFormat::Opencode) | Err(_) => {
                        return Err(ArgsError::Bad(format!(
                            "unknown format `{v}`; the simulated agent prints droid, claude, codex, gemini, amp or text"
                        )));
                    }
                    Ok(f) => f,
                };
            }
            "--model" | "-m" => model = Some(value(&name, inline)?),
            "--resume" => resume = Some(value(&name, inline)?),
            "-f" | "--file" => file = Some(PathBuf::from(value(&name, inline)?)),
            "--" => only_words = true,
            _ if arg.starts_with('-') && arg.len() > 1 => {
                return Err(ArgsError::Bad(format!("unknown option `{arg}`")));
            }
            _ => words.push(arg),
        }
    }
    let source = match (file, words.is_empty()) {
        (Some(_), false) => {
            return Err(ArgsError::Bad(
                "give the prompt either as arguments or with `-f`, not both".into(),
            ));
        }
        (Some(f), true) if f.as_os_str() == "-" => Source::Stdin,
        (Some(f), true) => Source::File(f),
        (None, false) => Source::Args(words.join(" ")),
        (None, true) => Source::Stdin,
    };
    Ok(Options {
        format,
        model,
        resume,
        source,
    })
}

fn read_prompt(source: &Source) -> Result<String, String> {
    match source {
        Source::Args(text) => Ok(text.clone()),
        Source::File(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the prompt file {}: {e}", path.display())),
        Source::Stdin => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| format!("cannot read the prompt from standard input: {e}"))?;
            Ok(text)
        }
    }
}

/// Runs the simulated agent in the process's current directory: `args` exclude the program
/// name; JSONL goes to `stdout`, diagnostics to `stderr`. Returns the exit code. Shared by the
/// `forge-sim-agent` binary and the CLI's `forge sim-agent`.
pub fn main(
    args: impl IntoIterator<Item = OsString>,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> i32 {
    match std::env::current_dir() {
        Ok(cwd) => main_in(&cwd, args, stdout, stderr),
        Err(e) => {
            let _ = writeln!(stderr, "forge sim-agent: no working directory: {e}");
            2
        }
    }
}

/// [`main`] working in `cwd` instead of the current directory.
pub fn main_in<A: Into<OsString>>(
    cwd: &Path,
    args: impl IntoIterator<Item = A>,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> i32 {
    let options = match parse_args(args.into_iter().map(Into::into)) {
        Ok(o) => o,
        Err(ArgsError::Help) => {
            let _ = writeln!(stdout, "{USAGE}");
            return 0;
        }
        Err(ArgsError::Bad(message)) => {
            let _ = writeln!(stderr, "forge sim-agent: {message}\n{USAGE}");
            return 2;
        }
    };
    let prompt = match read_prompt(&options.source) {
        Ok(p) => p,
        Err(message) => {
            let _ = writeln!(stderr, "forge sim-agent: {message}");
            return 2;
        }
    };
    let mut emitter = Emitter::new(
        options.format,
        stdout,
        stderr,
        cwd.display().to_string(),
        options.model,
        prompt.len(),
    );
    if let Some(session) = options.resume {
        emitter.continue_session(session);
    }
    emitter.init();
    let script = match Script::parse(&prompt) {
        Ok(Some(s)) => s,
        Ok(None) => {
            let text = "No forge-sim block in the prompt; nothing to do.";
            emitter.say(text);
            emitter.finish_ok(text);
            return 0;
        }
        Err(e) => {
            emitter.finish_err(&format!("invalid forge-sim script: {e}"));
            return 2;
        }
    };
    let attempt = std::env::var("FORGE_ATTEMPT").ok();
    match Runner::new(cwd.to_path_buf(), attempt).run(&script, &mut emitter) {
        Ok(result) => {
            emitter.finish_ok(&result);
            0
        }
        Err((message, code)) => {
            emitter.finish_err(&message);
            code
        }
    }
}

/// Carries out a script in a working directory.
struct Runner {
    cwd: PathBuf,
    /// The working directory with symlinks resolved: nothing may be written outside it.
    root: PathBuf,
    attempt: Option<String>,
}

/// Why the run stopped: a message and the exit code.
type Stop = (String, i32);

impl Runner {
    fn new(cwd: PathBuf, attempt: Option<String>) -> Self {
        let root = cwd.canonicalize().unwrap_or_else(|_| cwd.clone());
        Self { cwd, root, attempt }
    }

    fn run(&self, script: &Script, out: &mut Emitter<'_>) -> Result<String, Stop> {
        let mut result: Option<String> = None;
        let mut last_say: Option<&str> = None;
        for step in &script.steps {
            let line = step.line;
            let fail = |message: String| (format!("line {line}: {message}"), 1);
            match &step.directive {
                Directive::Say(text) => {
                    out.say(text);
                    last_say = Some(text);
                }
                Directive::Sleep(d) => {
                    out.flush();
                    std::thread::sleep(*d);
                }
                Directive::Result(text) => result = Some(text.clone()),
                Directive::Fail(code) => {
                    return Err((
                        format!("line {line}: failing with exit code {code}, as the script says"),
                        i32::from(*code),
                    ));
                }
                Directive::FailOnAttempt { attempt, code } => {
                    let current = match &self.attempt {
                        None => 1,
                        Some(a) => a.trim().parse::<u32>().map_err(|_| {
                            fail(format!("FORGE_ATTEMPT is `{a}`, not an attempt number"))
                        })?,
                    };
                    if current == *attempt {
                        return Err((
                            format!(
                                "line {line}: failing attempt {attempt} with exit code {code}, as the script says"
                            ),
                            i32::from(*code),
                        ));
                    }
                }
                Directive::Hang => {
                    out.flush();
                    loop {
                        std::thread::sleep(std::time::Duration::from_hours(1));
                    }
                }
                directive => self.tool_step(directive, out).map_err(fail)?,
            }
        }
        Ok(result
            .or_else(|| last_say.map(str::to_owned))
            .unwrap_or_else(|| "Done.".to_owned()))
    }

    /// A step that is a tool call: printed, carried out, its outcome printed.
    #[allow(clippy::too_many_lines)] // one arm per directive
    fn tool_step(&self, directive: &Directive, out: &mut Emitter<'_>) -> Result<(), String> {
        let abs = |p: &SimPath| self.cwd.join(p.as_str()).display().to_string();
        match directive {
            Directive::Write { path, content } => {
                let target = self.resolve(path, true)?;
                let created = std::fs::symlink_metadata(&target).is_err();
                let call = Call::Write {
                    path: path.as_str(),
                    abs: abs(path),
                    content,
                    created,
                };
                Self::step(out, &call, || {
                    if let Some(parent) = target.parent() {
                        std::fs::create_dir_all(parent)
                            .map_err(|e| format!("cannot create the directories of {path}: {e}"))?;
                    }
                    std::fs::write(&target, content)
                        .map_err(|e| format!("cannot write {path}: {e}"))?;
                    Ok(format!(
                        "{} {path} ({} bytes)",
                        if created { "Created" } else { "Wrote" },
                        content.len()
                    ))
                })
            }
            Directive::Append { path, text } => {
                let target = self.resolve(path, true)?;
                let call = Call::Edit {
                    path: path.as_str(),
                    abs: abs(path),
                    old: "",
                    new: format!("{text}\n"),
                };
                Self::step(out, &call, || {
                    let existing = match std::fs::read(&target) {
                        Ok(bytes) => Some(bytes),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                        Err(e) => return Err(format!("cannot read {path}: {e}")),
                    };
                    if existing.is_none()
                        && let Some(parent) = target.parent()
                    {
                        std::fs::create_dir_all(parent)
                            .map_err(|e| format!("cannot create the directories of {path}: {e}"))?;
                    }
                    let mut add = String::new();
                    if existing
                        .as_ref()
                        .is_some_and(|b| !b.is_empty() && !b.ends_with(b"\n"))
                    {
                        add.push('\n');
                    }
                    add.push_str(text);
                    add.push('\n');
                    let mut file = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&target)
                        .map_err(|e| format!("cannot open {path}: {e}"))?;
                    file.write_all(add.as_bytes())
                        .map_err(|e| format!("cannot append to {path}: {e}"))?;
                    Ok(format!("Appended a line to {path}"))
                })
            }
            Directive::Replace { path, old, new } => {
                let target = self.resolve(path, true)?;
                let call = Call::Edit {
                    path: path.as_str(),
                    abs: abs(path),
                    old,
                    new: new.clone(),
                };
                Self::step(out, &call, || {
                    let text = std::fs::read_to_string(&target)
                        .map_err(|e| format!("cannot read {path}: {e}"))?;
                    if !text.contains(old.as_str()) {
                        return Err(format!("`{old}` not found in {path}"));
                    }
                    std::fs::write(&target, text.replacen(old.as_str(), new, 1))
                        .map_err(|e| format!("cannot write {path}: {e}"))?;
                    Ok(format!("Edited {path}"))
                })
            }
            Directive::Delete(path) => {
                let target = self.resolve(path, false)?;
                let call = Call::Delete {
                    path: path.as_str(),
                    abs: abs(path),
                };
                Self::step(out, &call, || {
                    let meta = std::fs::symlink_metadata(&target)
                        .map_err(|e| format!("cannot delete {path}: {e}"))?;
                    if meta.is_dir() {
                        return Err(format!("cannot delete {path}: it is a directory"));
                    }
                    std::fs::remove_file(&target)
                        .map_err(|e| format!("cannot delete {path}: {e}"))?;
                    Ok(format!("Deleted {path}"))
                })
            }
            Directive::Chmod { path, executable } => {
                let target = self.resolve(path, true)?;
                let sign = if *executable { '+' } else { '-' };
                let call = Call::Shell {
                    command: format!("chmod {sign}x {path}"),
                };
                Self::step(out, &call, || {
                    use std::os::unix::fs::PermissionsExt;
                    let meta = std::fs::metadata(&target)
                        .map_err(|e| format!("cannot chmod {path}: {e}"))?;
                    let mut perms = meta.permissions();
                    let mode = perms.mode();
                    perms.set_mode(if *executable {
                        mode | 0o111
                    } else {
                        mode & !0o111
                    });
                    std::fs::set_permissions(&target, perms)
                        .map_err(|e| format!("cannot chmod {path}: {e}"))?;
                    Ok(String::new())
                })
            }
            Directive::Symlink { path, target } => {
                let link = self.resolve(path, false)?;
                let call = Call::Shell {
                    command: format!("ln -s {target} {path}"),
                };
                Self::step(out, &call, || {
                    if std::fs::symlink_metadata(&link).is_ok() {
                        return Err(format!(
                            "cannot create the symlink {path}: it already exists"
                        ));
                    }
                    if let Some(parent) = link.parent() {
                        std::fs::create_dir_all(parent)
                            .map_err(|e| format!("cannot create the directories of {path}: {e}"))?;
                    }
                    std::os::unix::fs::symlink(target, &link)
                        .map_err(|e| format!("cannot create the symlink {path}: {e}"))?;
                    Ok(String::new())
                })
            }
            Directive::Run(command) => self.run_command(command, out),
            Directive::Say(_)
            | Directive::Sleep(_)
            | Directive::Fail(_)
            | Directive::FailOnAttempt { .. }
            | Directive::Hang
            | Directive::Result(_) => Ok(()),
        }
    }

    /// Prints the call, does it, prints the outcome.
    fn step(
        out: &mut Emitter<'_>,
        call: &Call<'_>,
        action: impl FnOnce() -> Result<String, String>,
    ) -> Result<(), String> {
        let id = out.call(call);
        let outcome = action();
        out.call_done(&id, call, &outcome, None);
        outcome.map(drop)
    }

    fn run_command(&self, command: &str, out: &mut Emitter<'_>) -> Result<(), String> {
        let call = Call::Shell {
            command: command.to_owned(),
        };
        let id = out.call(&call);
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(&self.cwd)
            .stdin(std::process::Stdio::null())
            .output();
        let (outcome, code) = match output {
            Err(e) => (Err(format!("cannot run `sh -c {command}`: {e}")), None),
            Ok(o) => {
                let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&o.stderr));
                if text.len() > MAX_OUTPUT {
                    let mut cut = MAX_OUTPUT;
                    while !text.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    text.truncate(cut);
                    text.push_str("\n[output cut]");
                }
                let text = text.trim_end().to_owned();
                match o.status.code() {
                    Some(0) => (Ok(text), Some(0)),
                    Some(c) => (
                        Err(format!("`{command}` exited with code {c}\n{text}")),
                        Some(c),
                    ),
                    None => (
                        Err(format!("`{command}` was killed by a signal\n{text}")),
                        None,
                    ),
                }
            }
        };
        out.call_done(&id, &call, &outcome, code);
        outcome
            .map(drop)
            .map_err(|e| e.lines().next().unwrap_or_default().to_owned())
    }

    /// Where `path` is, refusing any way out of the working directory: each existing component
    /// that is a symlink must lead inside it. With `follow`, a symlink as the last component is
    /// followed too (writing through it); without, it is the link itself (deleting it).
    fn resolve(&self, path: &SimPath, follow: bool) -> Result<PathBuf, String> {
        let parts: Vec<&str> = path.as_str().split('/').collect();
        let mut current = self.root.clone();
        for (i, part) in parts.iter().enumerate() {
            let next = current.join(part);
            let last = i + 1 == parts.len();
            match std::fs::symlink_metadata(&next) {
                Ok(meta) if meta.file_type().is_symlink() && (follow || !last) => {
                    let shown = parts[..=i].join("/");
                    let target = next.canonicalize().map_err(|_| {
                        format!("`{shown}` is a symlink to something that does not exist")
                    })?;
                    if !target.starts_with(&self.root) {
                        return Err(format!(
                            "`{shown}` is a symlink that leads outside the working directory"
                        ));
                    }
                    current = target;
                }
                Ok(_) => current = next,
                Err(_) => {
                    // Nothing exists from here on: the rest is created under a checked directory.
                    current = next;
                    for rest in &parts[i + 1..] {
                        current.push(rest);
                    }
                    break;
                }
            }
        }
        Ok(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(args: &[&str]) -> Result<Options, String> {
        parse_args(args.iter().map(OsString::from)).map_err(|e| match e {
            ArgsError::Help => "help".to_owned(),
            ArgsError::Bad(m) => m,
        })
    }

    #[test]
    fn arguments() {
        assert_eq!(
            opts(&[]).unwrap(),
            Options {
                format: OutputFormat::Droid,
                model: None,
                resume: None,
                source: Source::Stdin
            }
        );
        let o = opts(&["--format=claude", "-m", "x", "fix", "it"]).unwrap();
        assert_eq!(o.format, OutputFormat::Claude);
        assert_eq!(o.model.as_deref(), Some("x"));
        assert_eq!(o.source, Source::Args("fix it".into()));
        let o = opts(&["--resume", "sim-1", "-f", "p.md"]).unwrap();
        assert_eq!(o.resume.as_deref(), Some("sim-1"));
        assert_eq!(
            opts(&["-f", "p.md"]).unwrap().source,
            Source::File("p.md".into())
        );
        assert_eq!(opts(&["-f", "-"]).unwrap().source, Source::Stdin);
        assert_eq!(
            opts(&["--", "-not-an-option"]).unwrap().source,
            Source::Args("-not-an-option".into())
        );
        assert_eq!(opts(&["-h"]).unwrap_err(), "help");
        assert!(
            opts(&["--format", "xml"])
                .unwrap_err()
                .contains("unknown format `xml`")
        );
        assert!(opts(&["--format", "opencode"]).is_err());
        assert!(opts(&["--format"]).unwrap_err().contains("needs a value"));
        assert!(
            opts(&["--bogus"])
                .unwrap_err()
                .contains("unknown option `--bogus`")
        );
        assert!(opts(&["-f", "a", "b"]).unwrap_err().contains("not both"));
    }

    #[test]
    fn resolve_refuses_symlinks_out() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::os::unix::fs::symlink("sub", dir.path().join("in")).unwrap();
        std::os::unix::fs::symlink("missing", dir.path().join("dangling")).unwrap();
        let r = Runner::new(dir.path().to_path_buf(), None);
        let p = |s: &str| SimPath::new(s).unwrap();
        assert!(
            r.resolve(&p("out/x"), true)
                .unwrap_err()
                .contains("leads outside")
        );
        assert!(
            r.resolve(&p("out"), true)
                .unwrap_err()
                .contains("leads outside")
        );
        // Deleting the link itself is fine.
        assert!(r.resolve(&p("out"), false).unwrap().ends_with("out"));
        assert!(
            r.resolve(&p("in/new/file"), true)
                .unwrap()
                .starts_with(dir.path().canonicalize().unwrap().join("sub"))
        );
        assert!(
            r.resolve(&p("dangling"), true)
                .unwrap_err()
                .contains("does not exist")
        );
    }
}
