//! A format-neutral document tree with byte spans, built from TOML or JSON, so that one schema
//! walker can check both and point at `file:line:col` for every problem.

use std::borrow::Cow;
use std::ops::Range;

use super::problem::Problem;

/// A value of the plan document. Strings borrow from the plan text where they can.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node<'a> {
    pub(crate) span: Range<usize>,
    pub(crate) kind: Kind<'a>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// A value of a type the schema never accepts (a datetime, `null`), named for messages.
    Other(&'static str),
    Array(Vec<Node<'a>>),
    Table(Vec<(Key<'a>, Node<'a>)>),
}

/// A table key with its span.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Key<'a> {
    pub(crate) name: Cow<'a, str>,
    pub(crate) span: Range<usize>,
}

impl Node<'_> {
    /// The name of the value's type, for "expected X, found Y" messages.
    pub(crate) fn type_name(&self) -> &'static str {
        match &self.kind {
            Kind::Str(_) => "a string",
            Kind::Int(_) => "an integer",
            Kind::Float(_) => "a float",
            Kind::Bool(_) => "a boolean",
            Kind::Other(name) => name,
            Kind::Array(_) => "an array",
            Kind::Table(_) => "a table",
        }
    }
}

/// Parses TOML.
///
/// The `[[task]]` sections of the document are parsed one at a time and converted at once: the
/// toml crate keeps every token and event of what it parses, about thirty times the text, which
/// for a 100,000-task plan would be hundreds of megabytes. A task section starts at a top-level
/// `[[task]]` header and holds the tables that belong to that task (`[task.env]`,
/// `[[task.x]]`) up to the next header that does not. Everything else (the top-level keys,
/// `[defaults]`, `[defaults.env]`, `[gate]`, …, wherever they appear) is parsed as one document:
/// the text with the task sections blanked out, byte for byte, so spans stay those of the file
/// and TOML's rules about tables defined twice or extended later hold exactly as in the whole
/// file. The sections' `task` arrays are then appended in order. Syntax errors are reported for
/// every part, with recovery inside a part.
pub(crate) fn from_toml<'a>(text: &'a str, problems: &mut Vec<Problem>) -> Option<Node<'a>> {
    let sections = task_sections(text);
    if sections.is_empty() {
        return parse_toml_part(text, 0, problems).map(|kind| Node {
            span: 0..text.len(),
            kind,
        });
    }
    let mut rest = text.as_bytes().to_vec();
    for range in sections.iter().flatten() {
        rest[range.clone()].fill(b' ');
    }
    // Sections start at a `[` and end at one (or the end), so blanking them keeps it UTF-8.
    let rest = String::from_utf8(rest).ok();
    let mut ok = true;
    let mut entries = match rest.as_deref().map(|r| parse_toml_part(r, 0, problems)) {
        Some(Some(Kind::Table(entries))) => entries.into_iter().map(owned_entry).collect(),
        Some(_) => {
            ok = false;
            Vec::new()
        }
        None => {
            problems.push(Problem::new(not_cut_cleanly(), None));
            ok = false;
            Vec::new()
        }
    };
    let mut tasks: Vec<Node<'a>> = Vec::new();
    let mut tasks_key: Option<Key<'a>> = None;
    for section in sections {
        let part = match section.as_slice() {
            [one] => parse_toml_part(&text[one.clone()], one.start, problems),
            _ => match section_text(text, &section) {
                Some((start, part)) => parse_toml_part(&part, start, problems)
                    .map(|kind| owned_node(Node { span: 0..0, kind }).kind),
                None => {
                    problems.push(Problem::new(not_cut_cleanly(), None));
                    None
                }
            },
        };
        let Some(Kind::Table(part)) = part else {
            ok = false;
            continue;
        };
        for (key, value) in part {
            // A section only holds `[[task]]` and `[task.…]` headers, so its one key is `task`.
            if let Kind::Array(items) = value.kind {
                tasks.extend(items);
            }
            tasks_key.get_or_insert(key);
        }
    }
    if let Some(key) = tasks_key {
        if let Some((first, _)) = entries.iter().find(|(k, _)| k.name == "task") {
            problems.push(
                Problem::at("`task` is defined twice", &key.span)
                    .note(&first.span, "first defined here")
                    .help("write every task as a `[[task]]` table"),
            );
            ok = false;
        } else {
            let span = tasks.first().map_or(key.span.clone(), |t| t.span.clone());
            entries.push((
                key,
                Node {
                    span,
                    kind: Kind::Array(tasks),
                },
            ));
        }
    }
    ok.then_some(Node {
        span: 0..text.len(),
        kind: Kind::Table(entries),
    })
}

/// The message for a document the task sections could not be cut from (cannot happen: they
/// start and end at brackets), rather than failing without a word.
fn not_cut_cleanly() -> String {
    "the plan could not be split into its tasks to be read; please report this with the plan"
        .to_owned()
}

/// Parses a whole TOML document at once (what [`from_toml`] must agree with).
#[cfg(test)]
pub(crate) fn from_toml_whole(text: &str) -> Option<Node<'_>> {
    let mut problems = Vec::new();
    parse_toml_part(text, 0, &mut problems).map(|kind| Node {
        span: 0..text.len(),
        kind,
    })
}

/// Parses one part of a TOML plan found at `offset` of the file, reporting its syntax errors.
fn parse_toml_part<'a>(
    part: &'a str,
    offset: usize,
    problems: &mut Vec<Problem>,
) -> Option<Kind<'a>> {
    if let Ok(table) = toml::de::DeTable::parse(part) {
        return Some(toml_table(table.get_ref(), offset));
    }
    // Parse again with recovery, for every error of the part.
    let (_, errors) = toml::de::DeTable::parse_recoverable(part);
    for e in &errors {
        let mut message = e.message().trim_end().to_owned();
        // toml says "duplicate key": name it.
        if message == "duplicate key"
            && let Some(key) = e.span().and_then(|s| part.get(s))
        {
            message = format!("`{}` is defined twice", key.trim());
        }
        problems.push(Problem::new(
            format!("invalid TOML: {message}"),
            e.span().map(|s| s.start + offset..s.end + offset),
        ));
    }
    None
}

/// The parts of the document made from the blanked copy own their strings (the copy is gone).
fn owned_entry<'a>((key, node): (Key<'_>, Node<'_>)) -> (Key<'a>, Node<'a>) {
    (
        Key {
            name: Cow::Owned(key.name.into_owned()),
            span: key.span,
        },
        owned_node(node),
    )
}

fn owned_node<'a>(node: Node<'_>) -> Node<'a> {
    let kind = match node.kind {
        Kind::Str(s) => Kind::Str(Cow::Owned(s.into_owned())),
        Kind::Int(i) => Kind::Int(i),
        Kind::Float(f) => Kind::Float(f),
        Kind::Bool(b) => Kind::Bool(b),
        Kind::Other(name) => Kind::Other(name),
        Kind::Array(items) => Kind::Array(items.into_iter().map(owned_node).collect()),
        Kind::Table(entries) => Kind::Table(entries.into_iter().map(owned_entry).collect()),
    };
    Node {
        span: node.span,
        kind,
    }
}

/// A task section in pieces (a `[task.env]` may follow an unrelated `[gate]`): the text from its
/// first piece to the end of its last, everything between blanked, and where it starts.
fn section_text(text: &str, pieces: &[Range<usize>]) -> Option<(usize, String)> {
    let (first, last) = (pieces.first()?, pieces.last()?);
    let mut bytes = vec![b' '; last.end - first.start];
    for piece in pieces {
        bytes[piece.start - first.start..piece.end - first.start]
            .copy_from_slice(&text.as_bytes()[piece.clone()]);
    }
    String::from_utf8(bytes).ok().map(|s| (first.start, s))
}

/// A top-level table header: where it starts, whether it is `[[task]]` itself, and whether its
/// first key is `task` (`[task.env]` belongs to the task above it).
struct Header {
    start: usize,
    task_array: bool,
    in_task: bool,
}

/// The task sections, each as the byte ranges it is made of: from each top-level `[[task]]`
/// header to the next header that does not belong to that task (or the end), plus any later
/// `[task.…]` table (which TOML gives to the last task), up to the next header not of the task.
fn task_sections(text: &str) -> Vec<Vec<Range<usize>>> {
    let mut sections: Vec<Vec<Range<usize>>> = Vec::new();
    let mut open: Option<usize> = None;
    for h in headers(text) {
        if let Some(start) = open
            && (h.task_array || !h.in_task)
            && let Some(section) = sections.last_mut()
        {
            section.push(start..h.start);
            open = None;
        }
        if h.task_array {
            sections.push(Vec::new());
            open = Some(h.start);
        } else if h.in_task && open.is_none() && !sections.is_empty() {
            open = Some(h.start);
        }
    }
    if let (Some(start), Some(section)) = (open, sections.last_mut()) {
        section.push(start..text.len());
    }
    sections
}

/// The top-level table headers (at the start of a line, outside any value), found with the
/// toml lexer so that brackets inside strings and arrays are never taken for one.
fn headers(text: &str) -> Vec<Header> {
    use toml_parser::lexer::TokenKind;
    let source = toml_parser::Source::new(text);
    let mut headers = Vec::new();
    let mut depth = 0usize;
    let mut line_start = true;
    let mut lexer = source.lex();
    while let Some(token) = lexer.next() {
        let (kind, span) = (token.kind(), token.span());
        match kind {
            TokenKind::Newline => {
                line_start = true;
                continue;
            }
            TokenKind::Whitespace | TokenKind::Comment => continue,
            TokenKind::LeftSquareBracket if depth == 0 && line_start => {
                // A header: `[name]` or `[[name]]`. Read it to its end without counting depth.
                let start = span.start();
                let mut first = String::new();
                let mut dotted = false;
                let mut name_started = false;
                let mut double = false;
                let mut ended_line = false;
                for t in lexer.by_ref() {
                    match t.kind() {
                        TokenKind::LeftSquareBracket if !name_started => double = true,
                        TokenKind::RightSquareBracket => break,
                        TokenKind::Newline => {
                            ended_line = true;
                            break;
                        }
                        TokenKind::Whitespace => {}
                        TokenKind::Dot => {
                            name_started = true;
                            dotted = true;
                        }
                        _ => {
                            name_started = true;
                            if !dotted {
                                first.push_str(&text[t.span().start()..t.span().end()]);
                            }
                        }
                    }
                }
                let in_task = first == "task" || first == "\"task\"" || first == "'task'";
                headers.push(Header {
                    start,
                    task_array: double && in_task && !dotted,
                    in_task,
                });
                line_start = ended_line;
                continue;
            }
            TokenKind::LeftSquareBracket | TokenKind::LeftCurlyBracket => depth += 1,
            TokenKind::RightSquareBracket | TokenKind::RightCurlyBracket => {
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
        line_start = false;
    }
    headers
}

fn toml_table<'a>(table: &toml::de::DeTable<'a>, offset: usize) -> Kind<'a> {
    Kind::Table(
        table
            .iter()
            .map(|(k, v)| {
                let span = k.span();
                (
                    Key {
                        name: k.get_ref().clone(),
                        span: span.start + offset..span.end + offset,
                    },
                    toml_value(v, offset),
                )
            })
            .collect(),
    )
}

fn toml_value<'a>(
    value: &serde_spanned::Spanned<toml::de::DeValue<'a>>,
    offset: usize,
) -> Node<'a> {
    use toml::de::DeValue;
    let kind = match value.get_ref() {
        DeValue::String(s) => Kind::Str(s.clone()),
        DeValue::Integer(i) => i64::from_str_radix(&i.as_str().replace('_', ""), i.radix())
            .map_or(Kind::Other("an integer out of range"), Kind::Int),
        DeValue::Float(f) => f
            .as_str()
            .replace('_', "")
            .parse::<f64>()
            .map_or(Kind::Other("a float out of range"), Kind::Float),
        DeValue::Boolean(b) => Kind::Bool(*b),
        DeValue::Datetime(_) => Kind::Other("a datetime"),
        DeValue::Array(items) => Kind::Array(items.iter().map(|v| toml_value(v, offset)).collect()),
        DeValue::Table(t) => toml_table(t, offset),
    };
    let span = value.span();
    Node {
        span: span.start + offset..span.end + offset,
        kind,
    }
}

/// How deep arrays and objects of a JSON plan may nest. A plan needs four levels; the bound keeps
/// a hostile file from overflowing the stack of the (recursive) parser.
pub(crate) const MAX_JSON_DEPTH: usize = 128;

/// The offset of the first `[` or `{` nested deeper than `limit`, outside strings and comments.
fn too_deep(text: &str, limit: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < bytes.len() && !bytes[i..].starts_with(b"*/") {
                    i += 1;
                }
                i += 1;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Some(i);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Parses JSON (comments and trailing commas tolerated, as people write config by hand).
pub(crate) fn from_json<'a>(text: &'a str, problems: &mut Vec<Problem>) -> Option<Node<'a>> {
    if let Some(at) = too_deep(text, MAX_JSON_DEPTH) {
        problems.push(
            Problem::at(
                format!("the JSON plan nests arrays and objects more than {MAX_JSON_DEPTH} deep"),
                &(at..at + 1),
            )
            .label("too deep")
            .help("a plan is a few levels deep (tasks, their claims and env); check the brackets"),
        );
        return None;
    }
    let options = jsonc_parser::ParseOptions {
        allow_comments: true,
        allow_loose_object_property_names: false,
        allow_trailing_commas: true,
    };
    match jsonc_parser::parse_to_ast(text, &jsonc_parser::CollectOptions::default(), &options) {
        Ok(result) => match result.value {
            Some(value) => Some(json_value(&value)),
            None => {
                problems.push(Problem::new("the JSON document is empty", None));
                None
            }
        },
        Err(e) => {
            let range = e.range();
            problems.push(Problem::new(
                format!("invalid JSON: {}", e.kind()),
                Some(range.start..range.end.max(range.start + 1).min(text.len())),
            ));
            None
        }
    }
}

fn json_value<'a>(value: &jsonc_parser::ast::Value<'a>) -> Node<'a> {
    use jsonc_parser::ast::Value;
    let (range, kind) = match value {
        Value::StringLit(s) => (s.range, Kind::Str(s.value.clone())),
        Value::NumberLit(n) => (
            n.range,
            n.value.parse::<i64>().map_or_else(
                |_| {
                    n.value
                        .parse::<f64>()
                        .map_or(Kind::Other("a number out of range"), Kind::Float)
                },
                Kind::Int,
            ),
        ),
        Value::BooleanLit(b) => (b.range, Kind::Bool(b.value)),
        Value::NullKeyword(n) => (n.range, Kind::Other("null")),
        Value::Array(a) => (
            a.range,
            Kind::Array(a.elements.iter().map(json_value).collect()),
        ),
        Value::Object(o) => (
            o.range,
            Kind::Table(
                o.properties
                    .iter()
                    .map(|p| {
                        let (name, range) = match &p.name {
                            jsonc_parser::ast::ObjectPropName::String(s) => {
                                (s.value.clone(), s.range)
                            }
                            jsonc_parser::ast::ObjectPropName::Word(w) => {
                                (Cow::Borrowed(w.value), w.range)
                            }
                        };
                        (
                            Key {
                                name,
                                span: range.start..range.end,
                            },
                            json_value(&p.value),
                        )
                    })
                    .collect(),
            ),
        ),
    };
    Node {
        span: range.start..range.end,
        kind,
    }
}
