//! A format-neutral document tree with byte spans, built from TOML or JSON, so that one schema
//! walker can check both and point at `file:line:col` for every problem.

use std::borrow::Cow;
use std::ops::Range;

use super::problem::Problem;

/// A value of the plan document. Strings borrow from the plan text where they can.
#[derive(Debug, Clone)]
pub(crate) struct Node<'a> {
    pub(crate) span: Range<usize>,
    pub(crate) kind: Kind<'a>,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    Float,
    Bool,
    /// A value of a type the schema never accepts (a datetime, `null`), named for messages.
    Other(&'static str),
    Array(Vec<Node<'a>>),
    Table(Vec<(Key<'a>, Node<'a>)>),
}

/// A table key with its span.
#[derive(Debug, Clone)]
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
            Kind::Float => "a float",
            Kind::Bool => "a boolean",
            Kind::Other(name) => name,
            Kind::Array(_) => "an array",
            Kind::Table(_) => "a table",
        }
    }
}

/// Parses TOML.
///
/// The document is cut at its top-level `[[task]]` headers and each piece is parsed on its own
/// and converted at once: the toml crate keeps every token and event of what it parses, about
/// thirty times the text, which for a 100,000-task plan would be hundreds of megabytes. A piece
/// that starts with `[[task]]` holds that task and whatever tables follow it up to the next
/// `[[task]]` (`[task.env]` still belongs to it, `[gate]` is still top-level), so TOML's
/// meaning is kept; the pieces' top-level tables are merged, `task` arrays appended, and a
/// table defined twice is an error as in TOML. Syntax errors are reported for every piece, with
/// recovery inside a piece.
pub(crate) fn from_toml<'a>(text: &'a str, problems: &mut Vec<Problem>) -> Option<Node<'a>> {
    let mut entries: Vec<(Key<'a>, Node<'a>)> = Vec::new();
    let mut ok = true;
    let cuts = task_headers(text);
    let bounds = std::iter::once(0)
        .chain(cuts.iter().copied())
        .zip(cuts.iter().copied().chain(std::iter::once(text.len())));
    for (start, end) in bounds {
        let piece = &text[start..end];
        if piece.trim().is_empty() {
            continue;
        }
        let Ok(table) = toml::de::DeTable::parse(piece) else {
            // Parse again with recovery, for every error of the piece.
            let (_, errors) = toml::de::DeTable::parse_recoverable(piece);
            for e in &errors {
                problems.push(Problem::new(
                    format!("invalid TOML: {}", e.message().trim_end()),
                    e.span().map(|s| s.start + start..s.end + start),
                ));
            }
            ok = false;
            continue;
        };
        let Kind::Table(piece_entries) = toml_table(table.get_ref(), start) else {
            continue;
        };
        for (key, value) in piece_entries {
            match entries.iter_mut().find(|(k, _)| k.name == key.name) {
                None => entries.push((key, value)),
                Some((
                    _,
                    Node {
                        kind: Kind::Array(items),
                        ..
                    },
                )) if key.name == "task" => {
                    if let Kind::Array(more) = value.kind {
                        items.extend(more);
                    } else {
                        problems.push(Problem::at(
                            format!("`{}` is defined twice", key.name),
                            &key.span,
                        ));
                        ok = false;
                    }
                }
                Some((first, _)) => {
                    problems.push(
                        Problem::at(format!("`{}` is defined twice", key.name), &key.span)
                            .note(&first.span, "first defined here"),
                    );
                    ok = false;
                }
            }
        }
    }
    ok.then_some(Node {
        span: 0..text.len(),
        kind: Kind::Table(entries),
    })
}

/// Byte offsets of the top-level `[[task]]` headers (at the start of a line, outside any value),
/// found with the toml lexer so that brackets inside strings and arrays are never taken for one.
fn task_headers(text: &str) -> Vec<usize> {
    use toml_parser::lexer::TokenKind;
    let source = toml_parser::Source::new(text);
    let mut cuts = Vec::new();
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
                let mut name = String::new();
                let mut double = false;
                let mut ended_line = false;
                for t in lexer.by_ref() {
                    match t.kind() {
                        TokenKind::LeftSquareBracket => double = true,
                        TokenKind::RightSquareBracket => break,
                        TokenKind::Newline => {
                            ended_line = true;
                            break;
                        }
                        TokenKind::Whitespace => {}
                        _ => name.push_str(&text[t.span().start()..t.span().end()]),
                    }
                }
                if double && (name == "task" || name == "\"task\"" || name == "'task'") {
                    cuts.push(start);
                }
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
    cuts
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
        DeValue::Float(_) => Kind::Float,
        DeValue::Boolean(_) => Kind::Bool,
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

/// Parses JSON (comments and trailing commas tolerated, as people write config by hand).
pub(crate) fn from_json<'a>(text: &'a str, problems: &mut Vec<Problem>) -> Option<Node<'a>> {
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
            n.value.parse::<i64>().map_or(Kind::Float, Kind::Int),
        ),
        Value::BooleanLit(b) => (b.range, Kind::Bool),
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
