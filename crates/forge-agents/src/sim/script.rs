//! The `forge-sim` block of a prompt, parsed into steps. Parsing is complete before anything
//! runs, so a script with a mistake does nothing at all.

use std::fmt;
use std::time::Duration;

use crate::HumanDuration;

/// Every directive, for messages.
const DIRECTIVES: &[&str] = &[
    "say",
    "sleep",
    "write",
    "append",
    "replace",
    "delete",
    "chmod",
    "symlink",
    "run",
    "fail",
    "fail-on-attempt",
    "hang",
    "result",
];

/// A script error, naming the line of the prompt it is on (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptError {
    /// The line of the prompt.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ScriptError {}

/// A path inside the working directory: relative, `/`-separated, without `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimPath(String);

impl SimPath {
    /// Checks and normalizes a path as written in a script.
    pub fn new(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("a path is needed".into());
        }
        if text.contains('\0') {
            return Err("a path cannot contain a NUL byte".into());
        }
        if text.starts_with('/') {
            return Err(format!(
                "`{text}` is absolute; paths are relative to the working directory"
            ));
        }
        let mut parts = Vec::new();
        for part in text.split('/') {
            match part {
                "" | "." => {}
                ".." => return Err(format!("`{text}` leaves the working directory")),
                p => parts.push(p),
            }
        }
        if parts.is_empty() {
            return Err(format!("`{text}` names the working directory itself"));
        }
        Ok(Self(parts.join("/")))
    }

    /// The normalized path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Directive {
    /// `say <text>`: an assistant message.
    Say(String),
    /// `sleep <duration>`.
    Sleep(Duration),
    /// `write <path>` and the lines up to `end`: the file's content.
    Write {
        /// The file.
        path: SimPath,
        /// Its new content.
        content: String,
    },
    /// `append <path> <text>`: one line added to the file.
    Append {
        /// The file.
        path: SimPath,
        /// The line.
        text: String,
    },
    /// `replace <path> <old> => <new>`: the first occurrence of a literal string.
    Replace {
        /// The file.
        path: SimPath,
        /// What to find.
        old: String,
        /// What to put instead.
        new: String,
    },
    /// `delete <path>`.
    Delete(SimPath),
    /// `chmod +x <path>` (or `-x`).
    Chmod {
        /// The file.
        path: SimPath,
        /// `+x` or `-x`.
        executable: bool,
    },
    /// `symlink <path> -> <target>`.
    Symlink {
        /// The link to create.
        path: SimPath,
        /// What it points to, as written.
        target: String,
    },
    /// `run <shell command>`.
    Run(String),
    /// `fail <code>`.
    Fail(u8),
    /// `fail-on-attempt <n> <code>`: fail only when `FORGE_ATTEMPT` is `n`.
    FailOnAttempt {
        /// The attempt (1 is the first).
        attempt: u32,
        /// The exit code.
        code: u8,
    },
    /// `hang`: sleep until killed.
    Hang,
    /// `result <text>` (or `result` and the lines up to `end`): the final result text.
    Result(String),
}

/// A directive and the prompt line it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// 1-based line of the prompt.
    pub line: usize,
    /// What to do.
    pub directive: Directive,
}

/// A parsed `forge-sim` block.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Script {
    /// The steps, in order.
    pub steps: Vec<Step>,
}

/// An opening fence: its character, length and info string.
fn opening_fence(line: &str) -> Option<(char, usize, &str)> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let rest = &line[indent..];
    let ch = rest.chars().next().filter(|c| matches!(c, '`' | '~'))?;
    let len = rest.chars().take_while(|&c| c == ch).count();
    if len < 3 {
        return None;
    }
    let info = rest[len..].trim();
    if ch == '`' && info.contains('`') {
        return None;
    }
    Some((ch, len, info))
}

fn closes(line: &str, ch: char, len: usize) -> bool {
    let indent = line.len() - line.trim_start_matches(' ').len();
    let rest = line[indent..].trim_end();
    indent <= 3 && rest.len() >= len && rest.chars().all(|c| c == ch)
}

/// The first fenced block tagged `forge-sim`: the prompt line number of its first content line
/// and its lines. A block left open runs to the end of the prompt.
pub fn find_block(prompt: &str) -> Option<(usize, Vec<&str>)> {
    let mut lines = prompt.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        let Some((ch, len, info)) = opening_fence(line) else {
            continue;
        };
        let tagged = info.split_whitespace().next() == Some("forge-sim");
        let mut body = Vec::new();
        for (_, l) in lines.by_ref() {
            if closes(l, ch, len) {
                break;
            }
            if tagged {
                body.push(l);
            }
        }
        if tagged {
            return Some((i + 2, body));
        }
    }
    None
}

fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim();
    match text.find(char::is_whitespace) {
        Some(i) => (&text[..i], text[i..].trim_start()),
        None => (text, ""),
    }
}

impl Script {
    /// Parses the first `forge-sim` block of `prompt`; `Ok(None)` if there is none.
    #[allow(clippy::too_many_lines)] // one arm per directive
    pub fn parse(prompt: &str) -> Result<Option<Self>, ScriptError> {
        let Some((first, lines)) = find_block(prompt) else {
            return Ok(None);
        };
        let mut steps = Vec::new();
        let mut i = 0;
        while i < lines.len() {
            let line = first + i;
            let text = lines[i].trim();
            i += 1;
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            let err = |message: String| ScriptError { line, message };
            let (word, rest) = split_word(text);
            let path = |p: &str| SimPath::new(p).map_err(|m| err(format!("`{word}`: {m}")));
            // The lines up to `end`, for `write` and a multi-line `result`.
            let mut body = |what: &str| -> Result<String, ScriptError> {
                let start = i;
                while i < lines.len() && lines[i].trim() != "end" {
                    i += 1;
                }
                if i == lines.len() {
                    return Err(err(format!("`{what}` has no closing `end` line")));
                }
                let content = &lines[start..i];
                i += 1;
                Ok(if content.is_empty() {
                    String::new()
                } else {
                    content.join("\n") + "\n"
                })
            };
            let directive = match word {
                "say" => {
                    if rest.is_empty() {
                        return Err(err("`say` needs the text to say".into()));
                    }
                    Directive::Say(rest.to_owned())
                }
                "sleep" => {
                    let d: HumanDuration = rest
                        .parse()
                        .map_err(|e: crate::DurationError| err(format!("`sleep`: {e}")))?;
                    Directive::Sleep(d.as_duration())
                }
                "write" => {
                    let (p, extra) = split_word(rest);
                    if !extra.is_empty() {
                        return Err(err(format!(
                            "`write` takes one path; the content goes on the following lines, up to `end` (found `{extra}`)"
                        )));
                    }
                    let path = path(p)?;
                    Directive::Write {
                        path,
                        content: body("write")?,
                    }
                }
                "append" => {
                    let (p, text) = split_word(rest);
                    Directive::Append {
                        path: path(p)?,
                        text: text.to_owned(),
                    }
                }
                "replace" => {
                    let (p, change) = split_word(rest);
                    let path = path(p)?;
                    let Some((old, new)) = change.split_once(" => ") else {
                        return Err(err(
                            "`replace` is written `replace <path> <old> => <new>`".into()
                        ));
                    };
                    if old.is_empty() {
                        return Err(err("`replace` needs a non-empty text to replace".into()));
                    }
                    Directive::Replace {
                        path,
                        old: old.to_owned(),
                        new: new.to_owned(),
                    }
                }
                "delete" => {
                    let (p, extra) = split_word(rest);
                    if !extra.is_empty() {
                        return Err(err(format!(
                            "`delete` takes one path (found `{extra}` after it)"
                        )));
                    }
                    Directive::Delete(path(p)?)
                }
                "chmod" => {
                    let (mode, p) = split_word(rest);
                    let executable = match mode {
                        "+x" => true,
                        "-x" => false,
                        _ => {
                            return Err(err(
                                "`chmod` is written `chmod +x <path>` or `chmod -x <path>`".into(),
                            ));
                        }
                    };
                    Directive::Chmod {
                        path: path(p)?,
                        executable,
                    }
                }
                "symlink" => {
                    let Some((p, target)) = rest.split_once(" -> ") else {
                        return Err(err(
                            "`symlink` is written `symlink <path> -> <target>`".into()
                        ));
                    };
                    let target = target.trim();
                    if target.is_empty() {
                        return Err(err("`symlink` needs a target".into()));
                    }
                    Directive::Symlink {
                        path: path(p.trim())?,
                        target: target.to_owned(),
                    }
                }
                "run" => {
                    if rest.is_empty() {
                        return Err(err("`run` needs a shell command".into()));
                    }
                    Directive::Run(rest.to_owned())
                }
                "fail" => {
                    Directive::Fail(exit_code(rest).map_err(|m| err(format!("`fail`: {m}")))?)
                }
                "fail-on-attempt" => {
                    let (n, code) = split_word(rest);
                    let attempt = n
                        .parse::<u32>()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| err(format!("`fail-on-attempt`: `{n}` is not an attempt number (the first attempt is 1)")))?;
                    Directive::FailOnAttempt {
                        attempt,
                        code: exit_code(code)
                            .map_err(|m| err(format!("`fail-on-attempt`: {m}")))?,
                    }
                }
                "hang" => {
                    if !rest.is_empty() {
                        return Err(err("`hang` takes no arguments".into()));
                    }
                    Directive::Hang
                }
                "result" => {
                    if rest.is_empty() {
                        Directive::Result(body("result")?.trim_end_matches('\n').to_owned())
                    } else {
                        Directive::Result(rest.to_owned())
                    }
                }
                other => {
                    let hint = crate::did_you_mean(other, DIRECTIVES.iter().copied())
                        .map(|d| format!(" (did you mean `{d}`?)"))
                        .unwrap_or_default();
                    return Err(err(format!(
                        "unknown directive `{other}`{hint}; directives are {}",
                        DIRECTIVES.join(", ")
                    )));
                }
            };
            steps.push(Step { line, directive });
        }
        Ok(Some(Self { steps }))
    }
}

fn exit_code(text: &str) -> Result<u8, String> {
    text.parse::<u8>()
        .ok()
        .filter(|c| *c != 0)
        .ok_or_else(|| format!("`{text}` is not an exit code from 1 to 255"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(block: &str) -> Result<Vec<Directive>, ScriptError> {
        let prompt = format!("Do the thing.\n\n```forge-sim\n{block}\n```\ntrailing text\n");
        Ok(Script::parse(&prompt)?
            .unwrap()
            .steps
            .into_iter()
            .map(|s| s.directive)
            .collect())
    }

    #[test]
    fn every_directive() {
        let got = parse(
            "# a comment\nsay Hello there\nsleep 200ms\nwrite src/a.rs\nfn a() {}\n\n  indented\nend\nappend ./notes.txt one more line\nreplace src/a.rs fn a => fn b\ndelete old.txt\nchmod +x run.sh\nsymlink link -> src/a.rs\nrun cargo test -q\nfail 3\nfail-on-attempt 1 7\nhang\nresult {\"ok\": true}\nresult\nline 1\nline 2\nend",
        )
        .unwrap();
        let p = |s: &str| SimPath::new(s).unwrap();
        assert_eq!(
            got,
            [
                Directive::Say("Hello there".into()),
                Directive::Sleep(Duration::from_millis(200)),
                Directive::Write {
                    path: p("src/a.rs"),
                    content: "fn a() {}\n\n  indented\n".into()
                },
                Directive::Append {
                    path: p("notes.txt"),
                    text: "one more line".into()
                },
                Directive::Replace {
                    path: p("src/a.rs"),
                    old: "fn a".into(),
                    new: "fn b".into()
                },
                Directive::Delete(p("old.txt")),
                Directive::Chmod {
                    path: p("run.sh"),
                    executable: true
                },
                Directive::Symlink {
                    path: p("link"),
                    target: "src/a.rs".into()
                },
                Directive::Run("cargo test -q".into()),
                Directive::Fail(3),
                Directive::FailOnAttempt {
                    attempt: 1,
                    code: 7
                },
                Directive::Hang,
                Directive::Result("{\"ok\": true}".into()),
                Directive::Result("line 1\nline 2".into()),
            ]
        );
    }

    #[test]
    fn errors_name_the_prompt_line() {
        // The block starts on line 4 of the prompt.
        for (block, line, want) in [
            (
                "say hi\nwirte a.txt",
                5,
                "unknown directive `wirte` (did you mean `write`?)",
            ),
            (
                "write /etc/passwd\nend",
                4,
                "`write`: `/etc/passwd` is absolute",
            ),
            (
                "append ../x y",
                4,
                "`append`: `../x` leaves the working directory",
            ),
            ("delete a/../../b", 4, "leaves the working directory"),
            (
                "write a.txt\nno end",
                4,
                "`write` has no closing `end` line",
            ),
            (
                "sleep 5 seconds",
                4,
                "`sleep`: invalid duration `5 seconds`",
            ),
            ("fail 0", 4, "`fail`: `0` is not an exit code from 1 to 255"),
            ("fail-on-attempt 0 1", 4, "not an attempt number"),
            ("replace a.txt nothing", 4, "`replace` is written"),
            ("chmod 755 a", 4, "`chmod` is written"),
            ("symlink a b", 4, "`symlink` is written"),
            ("\n\nrun", 6, "`run` needs a shell command"),
            ("hang now", 4, "`hang` takes no arguments"),
            ("delete .", 4, "names the working directory itself"),
        ] {
            let e = parse(block).unwrap_err();
            assert_eq!(e.line, line, "{block:?}: {e}");
            assert!(e.message.contains(want), "{block:?}: {e}");
            assert!(e.to_string().starts_with(&format!("line {line}: ")));
        }
    }

    #[test]
    fn blocks_are_found_by_tag_and_fence() {
        assert_eq!(Script::parse("no block here").unwrap(), None);
        assert_eq!(
            Script::parse("```rust\nsay not me\n```\n").unwrap(),
            None,
            "other blocks are ignored"
        );
        let s = Script::parse("```rust\nfn x() {}\n```\n~~~~ forge-sim extra\nsay hi\nwrite a.md\n```\nend\nsay still inside\n~~~~\n```forge-sim\nsay second block\n```")
            .unwrap()
            .unwrap();
        assert_eq!(
            s.steps,
            [
                Step {
                    line: 5,
                    directive: Directive::Say("hi".into())
                },
                Step {
                    line: 6,
                    directive: Directive::Write {
                        path: SimPath::new("a.md").unwrap(),
                        content: "```\n".into()
                    }
                },
                Step {
                    line: 9,
                    directive: Directive::Say("still inside".into())
                }
            ]
        );
        // An unclosed block runs to the end.
        let s = Script::parse("```forge-sim\nsay a").unwrap().unwrap();
        assert_eq!(s.steps.len(), 1);
        assert_eq!(
            find_block("   ```forge-sim\nx\n   ```").unwrap(),
            (2, vec!["x"])
        );
        assert_eq!(
            find_block("    ```forge-sim\nx\n```"),
            None,
            "indented code"
        );
    }

    #[test]
    fn paths_normalize() {
        assert_eq!(SimPath::new("./a//b/./c").unwrap().as_str(), "a/b/c");
        assert!(SimPath::new("").is_err());
    }
}
