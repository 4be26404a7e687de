//! One-line summaries of tool calls (`Edit src/api/auth.rs`, `Run cargo test`), shared by every
//! parser: agents name their tools differently (`Edit`, `edit_file`, `replace`, `Execute`,
//! `run_shell_command`, …) but mean a handful of things.

use serde_json::Value;

/// Longest one-line summary, in characters.
const MAX_SUMMARY: usize = 160;

/// What a tool call amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ToolCall {
    pub(crate) message: String,
    pub(crate) tool: String,
    pub(crate) files: Vec<String>,
}

/// The first line of `text`, cut to [`MAX_SUMMARY`] characters.
pub(crate) fn one_line(text: &str) -> String {
    let line = text.trim().lines().next().unwrap_or("").trim();
    let more_lines = text.trim().lines().nth(1).is_some();
    let mut out: String = line.chars().take(MAX_SUMMARY).collect();
    if out.len() < line.len() || more_lines {
        out.push('…');
    }
    out
}

/// Lower case without `_`/`-`, so `run_shell_command`, `RunShellCommand` and
/// `run-shell-command` compare equal.
fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '_' | '-' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

fn str_field<'a>(input: &'a Value, keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .find_map(|k| input.get(*k).and_then(Value::as_str))
        .filter(|s| !s.trim().is_empty())
}

const PATH_KEYS: &[&str] = &[
    "file_path",
    "filePath",
    "path",
    "absolute_path",
    "notebook_path",
    "target_file",
    "filename",
    "file",
    "directory_path",
    "dir_path",
    "dirPath",
    "folder",
];

/// A shell command as text: a string, or an argv array; a `bash -lc '<script>'` wrapper (as
/// Codex reports commands) is unwrapped to the script.
pub(crate) fn command_text(value: &Value) -> Option<String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let parts: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
            if let [shell, flag, script] = parts.as_slice()
                && is_shell(shell)
                && flag.starts_with('-')
                && flag.ends_with('c')
            {
                return Some((*script).to_owned());
            }
            parts.join(" ")
        }
        _ => return None,
    };
    Some(unwrap_shell(&text))
}

fn is_shell(program: &str) -> bool {
    let name = program.rsplit('/').next().unwrap_or(program);
    matches!(name, "bash" | "sh" | "zsh")
}

/// `bash -lc 'cargo test'` → `cargo test`.
fn unwrap_shell(text: &str) -> String {
    let trimmed = text.trim();
    let mut words = trimmed.splitn(3, ' ');
    if let (Some(shell), Some(flag), Some(rest)) = (words.next(), words.next(), words.next())
        && is_shell(shell)
        && flag.starts_with('-')
        && flag.ends_with('c')
    {
        let rest = rest.trim();
        for q in ['\'', '"'] {
            if rest.len() >= 2 && rest.starts_with(q) && rest.ends_with(q) {
                return rest[1..rest.len() - 1].to_owned();
            }
        }
        return rest.to_owned();
    }
    trimmed.to_owned()
}

/// `a`, `a, b`, `a, b, c and 2 more`.
pub(crate) fn list_files(files: &[String]) -> String {
    match files {
        [] => "files".to_owned(),
        [one] => one.clone(),
        _ if files.len() <= 3 => files.join(", "),
        _ => format!("{} and {} more", files[..3].join(", "), files.len() - 3),
    }
}

/// Files named in an `apply_patch` text (`*** Add File: p`, `*** Update File: p`,
/// `*** Delete File: p`, `*** Move to: p`), each with its verb.
fn patch_files(patch: &str) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for line in patch.lines() {
        let line = line.trim();
        for (prefix, verb) in [
            ("*** Add File:", "Create"),
            ("*** Update File:", "Edit"),
            ("*** Delete File:", "Delete"),
            ("*** Move to:", "Edit"),
        ] {
            if let Some(p) = line.strip_prefix(prefix) {
                let p = p.trim();
                if !p.is_empty() {
                    out.push((verb, p.to_owned()));
                }
            }
        }
    }
    out
}

/// Summarizes a tool call. `rel` turns a path as the agent wrote it into the form to report.
#[allow(clippy::too_many_lines)] // the table of what each agent's tools are called
pub(crate) fn summarize(name: &str, input: &Value, rel: &dyn Fn(&str) -> String) -> ToolCall {
    let key = normalize(name);
    let path = str_field(input, PATH_KEYS).map(rel);
    let file_op = |verb: &str, tool: &str| ToolCall {
        message: match &path {
            Some(p) => format!("{verb} {p}"),
            None => format!("{verb} a file"),
        },
        tool: tool.to_owned(),
        files: path.iter().cloned().collect(),
    };
    match key.as_str() {
        "edit"
        | "multiedit"
        | "editfile"
        | "replace"
        | "strreplace"
        | "strreplacebasededittool"
        | "notebookedit"
        | "editnotebook"
        | "searchreplace" => file_op("Edit", "edit"),
        "write" | "writefile" | "overwrite" => file_op("Write", "write"),
        "create" | "createfile" | "newfile" => file_op("Create", "write"),
        "delete" | "deletefile" | "remove" | "removefile" => file_op("Delete", "delete"),
        "applypatch" | "patch" => {
            let text = str_field(input, &["input", "patch", "patchText", "patch_text"])
                .or_else(|| input.as_str())
                .unwrap_or("");
            let changes: Vec<(&str, String)> = patch_files(text)
                .into_iter()
                .map(|(verb, p)| (verb, rel(&p)))
                .collect();
            let files: Vec<String> = changes.iter().map(|(_, p)| p.clone()).collect();
            let message = match changes.as_slice() {
                [] => "Apply a patch".to_owned(),
                [(verb, p)] => format!("{verb} {p}"),
                _ => format!("Edit {}", list_files(&files)),
            };
            ToolCall {
                message,
                tool: "edit".to_owned(),
                files,
            }
        }
        "bash" | "execute" | "runshellcommand" | "shell" | "execcommand" | "localshell" | "run"
        | "terminal" | "runterminalcmd" | "runcommand" | "command" => {
            let command = input
                .get("command")
                .or_else(|| input.get("cmd"))
                .and_then(command_text)
                .unwrap_or_default();
            ToolCall {
                message: if command.is_empty() {
                    "Run a command".to_owned()
                } else {
                    one_line(&format!("Run {command}"))
                },
                tool: "bash".to_owned(),
                files: Vec::new(),
            }
        }
        "read" | "readfile" | "view" | "cat" | "open" => ToolCall {
            files: Vec::new(),
            ..file_op("Read", "read")
        },
        "readmanyfiles" => {
            let paths: Vec<String> = input
                .get("paths")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(rel).collect())
                .unwrap_or_default();
            ToolCall {
                message: format!("Read {}", list_files(&paths)),
                tool: "read".to_owned(),
                files: Vec::new(),
            }
        }
        "ls" | "list" | "listdirectory" | "listdir" | "listfiles" => ToolCall {
            message: format!("List {}", path.as_deref().unwrap_or(".")),
            tool: "read".to_owned(),
            files: Vec::new(),
        },
        "grep" | "glob" | "search" | "searchfilecontent" | "find" | "findfiles"
        | "codebasesearch" | "filesearch" | "rg" | "ripgrep" => {
            let pattern = str_field(input, &["pattern", "query", "regex", "glob", "q"])
                .map(str::to_owned)
                .or_else(|| {
                    input.get("patterns").and_then(Value::as_array).map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                })
                .unwrap_or_default();
            ToolCall {
                message: one_line(&format!("Search {pattern}")),
                tool: "search".to_owned(),
                files: Vec::new(),
            }
        }
        "webfetch" | "fetchurl" | "fetch" | "urlfetch" | "readwebpage" => ToolCall {
            message: one_line(&format!(
                "Fetch {}",
                str_field(input, &["url", "prompt"]).unwrap_or("a web page")
            )),
            tool: "web".to_owned(),
            files: Vec::new(),
        },
        "websearch" | "googlewebsearch" | "searchweb" => ToolCall {
            message: one_line(&format!(
                "Search the web for {}",
                str_field(input, &["query", "q"]).unwrap_or("something")
            )),
            tool: "web".to_owned(),
            files: Vec::new(),
        },
        "todowrite" | "todoread" | "writetodos" | "todo" | "updatetodos" | "todolist" => ToolCall {
            message: "Update the todo list".to_owned(),
            tool: "todo".to_owned(),
            files: Vec::new(),
        },
        "task" | "agent" | "subagent" | "spawnagent" => ToolCall {
            message: one_line(&format!(
                "Delegate {}",
                str_field(input, &["description", "prompt", "task"]).unwrap_or("a subtask")
            )),
            tool: "task".to_owned(),
            files: Vec::new(),
        },
        _ => {
            let detail = path.or_else(|| {
                str_field(input, &["command", "query", "url", "pattern"]).map(str::to_owned)
            });
            ToolCall {
                message: one_line(&match detail {
                    Some(d) => format!("{name} {d}"),
                    None => name.to_owned(),
                }),
                tool: name.to_lowercase(),
                files: Vec::new(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn s(name: &str, input: &Value) -> (String, String, Vec<String>) {
        let c = summarize(name, input, &|p| p.to_owned());
        (c.message, c.tool, c.files)
    }

    #[test]
    fn each_agents_tools_summarize_alike() {
        for name in ["Edit", "MultiEdit", "edit_file", "replace", "edit"] {
            assert_eq!(
                s(name, &json!({"file_path": "src/a.rs"})),
                (
                    "Edit src/a.rs".into(),
                    "edit".into(),
                    vec!["src/a.rs".into()]
                ),
                "{name}"
            );
        }
        assert_eq!(
            s("write", &json!({"filePath": "b.rs"})).0,
            "Write b.rs",
            "opencode names it filePath"
        );
        assert_eq!(s("Create", &json!({"file_path": "c.rs"})).0, "Create c.rs");
        for name in ["Bash", "Execute", "run_shell_command", "bash"] {
            assert_eq!(
                s(name, &json!({"command": "cargo test\n--all"})),
                ("Run cargo test…".into(), "bash".into(), vec![]),
                "{name}"
            );
        }
        assert_eq!(
            s("Read", &json!({"file_path": "x"})),
            ("Read x".into(), "read".into(), vec![])
        );
        assert_eq!(
            s("Grep", &json!({"pattern": "fn main"})).0,
            "Search fn main"
        );
        assert_eq!(
            s(
                "Glob",
                &json!({"folder": ".", "patterns": ["*.rs", "*.toml"]})
            )
            .0,
            "Search *.rs, *.toml"
        );
        assert_eq!(s("TodoWrite", &json!({"todos": []})).1, "todo");
        assert_eq!(
            s("mcp__linear__create", &json!({"url": "u"})),
            (
                "mcp__linear__create u".into(),
                "mcp__linear__create".into(),
                vec![]
            )
        );
        assert_eq!(s("Edit", &json!({})).0, "Edit a file");
    }

    #[test]
    fn patches_and_wrapped_commands() {
        let patch = "*** Begin Patch\n*** Add File: a.rs\n+x\n*** Delete File: b.rs\n*** End Patch";
        assert_eq!(
            s("ApplyPatch", &json!({"input": patch})),
            (
                "Edit a.rs, b.rs".into(),
                "edit".into(),
                vec!["a.rs".into(), "b.rs".into()]
            )
        );
        assert_eq!(
            s("ApplyPatch", &json!({"input": "*** Delete File: b.rs"})).0,
            "Delete b.rs"
        );
        assert_eq!(
            command_text(&json!("bash -lc 'cargo build'")).unwrap(),
            "cargo build"
        );
        assert_eq!(
            command_text(&json!(["/bin/bash", "-lc", "ls -la"])).unwrap(),
            "ls -la"
        );
        assert_eq!(
            command_text(&json!(["git", "status"])).unwrap(),
            "git status"
        );
        assert_eq!(
            list_files(&["a".into(), "b".into(), "c".into(), "d".into(), "e".into()]),
            "a, b, c and 2 more"
        );
    }

    #[test]
    fn one_line_cuts() {
        assert_eq!(one_line("  a\nb"), "a…");
        assert_eq!(one_line(&"x".repeat(200)).chars().count(), MAX_SUMMARY + 1);
        assert_eq!(one_line("short"), "short");
    }
}
