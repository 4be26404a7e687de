//! What the scripted model answers: [`Script`], [`Turn`], [`Reply`].

use serde_json::Value;

/// In a [`Reply::Text`], stands for the text of the last tool result the request's history
/// holds (Anthropic Messages): a model that reports what its last tool call returned.
pub(crate) const TOOL_RESULT: &str = "{tool_result}";

/// One answer of the model.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Assistant text; the turn ends (`end_turn` / `stop`). `{tool_result}` in it is replaced by
    /// the text of the last tool result in the request's history (Anthropic Messages; empty
    /// when there is none), so a script can answer with what a tool returned.
    Text(String),
    /// A call of one of the CLI's own tools, by the name the CLI sent in `tools`, with its
    /// input. `{cwd}` in any string of the input is replaced by the agent's working directory
    /// as the request states it (see [`crate::Recorded::cwd`]).
    Tool {
        /// The tool's name (`Write`, `Bash`, `shell`, `write_file`, …).
        name: String,
        /// The tool's input.
        input: Value,
    },
    /// An HTTP error in the provider's own error format.
    Fail {
        /// The HTTP status (401, 429, 500, …).
        status: u16,
        /// The error message.
        message: String,
    },
}

/// One answer and the token usage reported with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    /// The answer.
    pub reply: Reply,
    /// Input tokens reported.
    pub input_tokens: u64,
    /// Output tokens reported.
    pub output_tokens: u64,
}

impl Turn {
    /// Assistant text, with usage 100 in / 10 out.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            reply: Reply::Text(text.into()),
            input_tokens: 100,
            output_tokens: 10,
        }
    }

    /// A tool call, with usage 100 in / 10 out.
    pub fn tool(name: impl Into<String>, input: Value) -> Self {
        Self {
            reply: Reply::Tool {
                name: name.into(),
                input,
            },
            input_tokens: 100,
            output_tokens: 10,
        }
    }

    /// An HTTP error (no usage).
    pub fn fail(status: u16, message: impl Into<String>) -> Self {
        Self {
            reply: Reply::Fail {
                status,
                message: message.into(),
            },
            input_tokens: 0,
            output_tokens: 0,
        }
    }

    /// The same answer with this usage.
    #[must_use]
    pub fn usage(mut self, input_tokens: u64, output_tokens: u64) -> Self {
        self.input_tokens = input_tokens;
        self.output_tokens = output_tokens;
        self
    }
}

/// One conversation the model plays: picked by a phrase of the user's prompt, it answers the
/// conversation's n-th model call with its n-th turn.
#[derive(Debug, Clone, PartialEq)]
struct Rule {
    needle: String,
    turns: Vec<Turn>,
    /// Once the turns are used up: repeat the last one (a model that is down stays down) or
    /// end with [`Script::done_text`].
    repeat_last: bool,
}

/// The script of a [`crate::ModelServer`].
///
/// A request belongs to the first rule whose phrase occurs in its user messages. Which turn it
/// gets is the number of model answers already in the request's history, so several agents can
/// run at once (each conversation is told apart by its prompt) and the server keeps no state
/// between requests. Requests without tools (a CLI's side requests: titles, summaries, topic
/// checks) get [`Script::side_text`] (or, when the request asks for JSON of a schema, a value
/// of that schema), with no token usage, unless their rule always fails. A request that no rule
/// matches gets [`Script::done_text`].
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    rules: Vec<Rule>,
    done: Turn,
    side: String,
}

impl Default for Script {
    fn default() -> Self {
        Self::new()
    }
}

impl Script {
    /// An empty script: every request is answered with `Done.`.
    pub fn new() -> Self {
        Self {
            rules: Vec::new(),
            done: Turn::text("Done."),
            side: "Forge task".to_owned(),
        }
    }

    /// A conversation whose prompt contains `needle`: its model calls get `turns` in order,
    /// then the done text.
    #[must_use]
    pub fn when(mut self, needle: impl Into<String>, turns: Vec<Turn>) -> Self {
        self.rules.push(Rule {
            needle: needle.into(),
            turns,
            repeat_last: false,
        });
        self
    }

    /// A conversation whose prompt contains `needle` (empty: every request) gets `turn` for
    /// every model call, side requests included: a model that is down or refuses.
    #[must_use]
    pub fn always(mut self, needle: impl Into<String>, turn: Turn) -> Self {
        self.rules.push(Rule {
            needle: needle.into(),
            turns: vec![turn],
            repeat_last: true,
        });
        self
    }

    /// What ends a conversation once its turns are used up (default `Done.`).
    #[must_use]
    pub fn done_text(mut self, turn: Turn) -> Self {
        self.done = turn;
        self
    }

    /// The text side requests get (default `Forge task`).
    #[must_use]
    pub fn side_text(mut self, text: impl Into<String>) -> Self {
        self.side = text.into();
        self
    }

    /// The answer to a request whose user messages are `user_text`, with `answered` model
    /// answers in its history and (`has_tools`) tools offered. `None`: a side request.
    pub(crate) fn answer(&self, user_text: &str, answered: usize, has_tools: bool) -> Answer {
        let rule = self.rules.iter().find(|r| user_text.contains(&r.needle));
        match rule {
            Some(r) if r.repeat_last => Answer::Turn(r.turns[0].clone()),
            _ if !has_tools => Answer::Side(self.side.clone()),
            Some(r) => Answer::Turn(r.turns.get(answered).unwrap_or(&self.done).clone()),
            None => Answer::Turn(self.done.clone()),
        }
    }
}

/// What the server sends for one request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Answer {
    /// A turn of the script.
    Turn(Turn),
    /// The text of a side request.
    Side(String),
}

/// Replaces `{cwd}` in every string of `value`.
pub(crate) fn fill_cwd(value: &Value, cwd: &str) -> Value {
    match value {
        Value::String(s) => Value::String(s.replace("{cwd}", cwd)),
        Value::Array(items) => Value::Array(items.iter().map(|v| fill_cwd(v, cwd)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), fill_cwd(v, cwd)))
                .collect(),
        ),
        other => other.clone(),
    }
}
