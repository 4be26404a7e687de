//! The providers' wire formats: reading a request, writing an answer (SSE or JSON) or an error.

use serde_json::{Value, json};

use crate::script::{Answer, Reply, TOOL_RESULT, Turn, fill_cwd};

/// The API a request was made to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Anthropic Messages (`POST /v1/messages`).
    Anthropic,
    /// Anthropic token counting (`POST /v1/messages/count_tokens`).
    AnthropicCountTokens,
    /// OpenAI Responses (`POST /v1/responses`).
    Responses,
    /// OpenAI Chat Completions (`POST /v1/chat/completions`).
    Chat,
    /// Gemini `generateContent` / `streamGenerateContent`.
    Gemini,
    /// Gemini `countTokens`.
    GeminiCountTokens,
    /// A model list (`GET …/models`).
    Models,
    /// Anything else (answered 404, still recorded).
    Other,
}

impl Api {
    /// Which API `method path` is.
    pub(crate) fn of(method: &str, path: &str) -> Self {
        let path = path.trim_end_matches('/');
        if method == "GET" && path.ends_with("/models") {
            return Self::Models;
        }
        if path.ends_with("/messages/count_tokens") {
            Self::AnthropicCountTokens
        } else if path.ends_with("/messages") {
            Self::Anthropic
        } else if path.ends_with("/responses") {
            Self::Responses
        } else if path.ends_with("/chat/completions") {
            Self::Chat
        } else if path.ends_with(":countTokens") {
            Self::GeminiCountTokens
        } else if path.ends_with(":generateContent") || path.ends_with(":streamGenerateContent") {
            Self::Gemini
        } else {
            Self::Other
        }
    }
}

/// What a request says, whatever its API.
#[derive(Debug, Clone, Default)]
pub(crate) struct Conversation {
    /// The user's messages (text only), joined by newlines.
    pub(crate) user_text: String,
    /// The system prompt / instructions.
    pub(crate) system_text: String,
    /// How many model answers the history holds.
    pub(crate) answered: usize,
    /// The names of the tools offered.
    pub(crate) tools: Vec<String>,
    /// Names of tools that take free-form text (OpenAI `custom` tools).
    pub(crate) custom_tools: Vec<String>,
    /// The text of the last tool result in the history (Anthropic Messages), if any.
    pub(crate) last_tool_result: Option<String>,
}

fn texts(content: &Value, out: &mut Vec<String>) {
    match content {
        Value::String(s) => out.push(s.clone()),
        Value::Array(parts) => {
            for p in parts {
                match p.get("type").and_then(Value::as_str) {
                    Some("text" | "input_text") | None => {
                        if let Some(t) = p.get("text").and_then(Value::as_str) {
                            out.push(t.to_owned());
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

fn items(v: &Value, key: &str) -> Vec<Value> {
    v.get(key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn name_of(v: &Value) -> Option<String> {
    v.get("name").and_then(Value::as_str).map(str::to_owned)
}

/// The text of the last `tool_result` block of an Anthropic message's content.
fn last_tool_result(content: &Value) -> Option<String> {
    let Value::Array(parts) = content else {
        return None;
    };
    parts
        .iter()
        .rev()
        .find(|p| p.get("type").and_then(Value::as_str) == Some("tool_result"))
        .map(|p| {
            let mut out = Vec::new();
            texts(p.get("content").unwrap_or(&Value::Null), &mut out);
            out.join("\n")
        })
}

impl Conversation {
    pub(crate) fn read(api: Api, body: &Value) -> Self {
        let mut user = Vec::new();
        let mut system = Vec::new();
        let mut c = Conversation::default();
        match api {
            Api::Anthropic | Api::AnthropicCountTokens => {
                texts(body.get("system").unwrap_or(&Value::Null), &mut system);
                for m in items(body, "messages") {
                    match m.get("role").and_then(Value::as_str) {
                        Some("assistant") => c.answered += 1,
                        Some("user") => {
                            let content = m.get("content").unwrap_or(&Value::Null);
                            texts(content, &mut user);
                            if let Some(result) = last_tool_result(content) {
                                c.last_tool_result = Some(result);
                            }
                        }
                        Some("system") => {
                            texts(m.get("content").unwrap_or(&Value::Null), &mut system);
                        }
                        _ => {}
                    }
                }
                c.tools = items(body, "tools").iter().filter_map(name_of).collect();
            }
            Api::Responses => {
                if let Some(s) = body.get("instructions").and_then(Value::as_str) {
                    system.push(s.to_owned());
                }
                for item in items(body, "input") {
                    let kind = item
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("message");
                    let role = item.get("role").and_then(Value::as_str);
                    match (kind, role) {
                        ("message", Some("user")) => {
                            texts(item.get("content").unwrap_or(&Value::Null), &mut user);
                        }
                        ("message", Some("developer" | "system")) => {
                            texts(item.get("content").unwrap_or(&Value::Null), &mut system);
                        }
                        ("message", Some("assistant"))
                        | ("function_call" | "custom_tool_call" | "local_shell_call", _) => {
                            c.answered += 1;
                        }
                        _ => {}
                    }
                }
                for t in items(body, "tools") {
                    if let Some(name) = name_of(&t) {
                        if t.get("type").and_then(Value::as_str) == Some("custom") {
                            c.custom_tools.push(name.clone());
                        }
                        c.tools.push(name);
                    }
                }
            }
            Api::Chat => {
                for m in items(body, "messages") {
                    let content = m.get("content").unwrap_or(&Value::Null);
                    match m.get("role").and_then(Value::as_str) {
                        Some("assistant") => c.answered += 1,
                        Some("user") => texts(content, &mut user),
                        Some("system" | "developer") => texts(content, &mut system),
                        _ => {}
                    }
                }
                c.tools = items(body, "tools")
                    .iter()
                    .filter_map(|t| t.get("function").and_then(name_of))
                    .collect();
            }
            Api::Gemini | Api::GeminiCountTokens => {
                let sys = body
                    .get("systemInstruction")
                    .or_else(|| body.get("system_instruction"));
                if let Some(sys) = sys {
                    texts(sys.get("parts").unwrap_or(&Value::Null), &mut system);
                }
                for m in items(body, "contents") {
                    match m.get("role").and_then(Value::as_str) {
                        Some("model") => c.answered += 1,
                        _ => texts(m.get("parts").unwrap_or(&Value::Null), &mut user),
                    }
                }
                for t in items(body, "tools") {
                    for f in items(&t, "functionDeclarations")
                        .iter()
                        .chain(&items(&t, "function_declarations"))
                    {
                        c.tools.extend(name_of(f));
                    }
                }
            }
            Api::Models | Api::Other => {}
        }
        c.user_text = user.join("\n");
        c.system_text = system.join("\n");
        c
    }

    /// The agent's working directory as the request states it, if it does.
    pub(crate) fn cwd(&self) -> Option<String> {
        const MARKERS: [&str; 9] = [
            "<cwd>",
            "Primary working directory: ",
            "% pwd\n",
            "Workspace Directories:**\n  - ",
            "Working directory: ",
            "working directory: ",
            "I'm currently working in the directory: ",
            "current working directory is ",
            "Current working directory: ",
        ];
        for text in [&self.system_text, &self.user_text] {
            for marker in MARKERS {
                if let Some(i) = text.find(marker) {
                    let rest = &text[i + marker.len()..];
                    let end = rest
                        .find(|c: char| c.is_whitespace() || c == '<' || c == '`')
                        .unwrap_or(rest.len());
                    let dir = rest[..end].trim_end_matches(['.', ',']);
                    if dir.starts_with('/') {
                        return Some(dir.to_owned());
                    }
                }
            }
        }
        None
    }
}

/// One HTTP response: status, content type, body.
pub(crate) struct Response {
    pub(crate) status: u16,
    /// The tokens reported (input, output).
    pub(crate) usage: (u64, u64),
    pub(crate) content_type: &'static str,
    pub(crate) body: String,
}

impl Response {
    fn json(status: u16, body: &Value) -> Self {
        Self {
            status,
            usage: (0, 0),
            content_type: "application/json",
            body: body.to_string(),
        }
    }
}

/// An SSE stream being written.
#[derive(Default)]
struct Sse(String);

impl Sse {
    fn event(&mut self, name: Option<&str>, data: &Value) {
        if let Some(name) = name {
            self.0.push_str("event: ");
            self.0.push_str(name);
            self.0.push('\n');
        }
        self.0.push_str("data: ");
        self.0.push_str(&data.to_string());
        self.0.push_str("\n\n");
    }

    fn done(self) -> Response {
        Response {
            status: 200,
            usage: (0, 0),
            content_type: "text/event-stream",
            body: self.0,
        }
    }
}

/// The answer to one request, `seq` numbering ids.
pub(crate) fn respond(
    api: Api,
    body: &Value,
    conv: &Conversation,
    answer: Answer,
    seq: u64,
    model_from_path: Option<&str>,
    stream_from_path: bool,
) -> Response {
    let turn = match answer {
        Answer::Turn(t) => t,
        Answer::Side(text) => match response_schema(body) {
            Some(schema) => Turn::text(sample(schema).to_string()).usage(0, 0),
            None => Turn::text(text).usage(0, 0),
        },
    };
    if let Reply::Fail { status, message } = &turn.reply {
        return error(api, *status, message);
    }
    let reply = match &turn.reply {
        Reply::Tool { name, input } => Reply::Tool {
            name: name.clone(),
            input: conv
                .cwd()
                .map_or_else(|| input.clone(), |cwd| fill_cwd(input, &cwd)),
        },
        Reply::Text(text) => Reply::Text(text.replace(
            TOOL_RESULT,
            conv.last_tool_result.as_deref().unwrap_or_default(),
        )),
        other @ Reply::Fail { .. } => other.clone(),
    };
    let turn = Turn { reply, ..turn };
    let mut response = model_response(
        api,
        body,
        conv,
        &turn,
        seq,
        model_from_path,
        stream_from_path,
    );
    if response.status == 200
        && matches!(
            api,
            Api::Anthropic | Api::Responses | Api::Chat | Api::Gemini
        )
    {
        response.usage = (turn.input_tokens, turn.output_tokens);
    }
    response
}

fn model_response(
    api: Api,
    body: &Value,
    conv: &Conversation,
    turn: &Turn,
    seq: u64,
    model_from_path: Option<&str>,
    stream_from_path: bool,
) -> Response {
    let stream = body.get("stream").and_then(Value::as_bool) == Some(true);
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .or(model_from_path)
        .unwrap_or("scripted-model")
        .to_owned();
    match api {
        Api::Anthropic => anthropic(turn, &model, seq, stream),
        Api::AnthropicCountTokens => Response::json(200, &json!({"input_tokens": 100})),
        Api::Responses => responses(turn, &model, seq, conv),
        Api::Chat => chat(turn, &model, seq, stream),
        Api::Gemini => gemini(turn, &model, seq, stream_from_path),
        Api::GeminiCountTokens => Response::json(200, &json!({"totalTokens": 100})),
        Api::Models => Response::json(
            200,
            &json!({"object": "list", "data": [{"id": model, "object": "model", "created": 0, "owned_by": "forge"}], "models": []}),
        ),
        Api::Other => error(
            api,
            404,
            "the scripted model server does not serve this path",
        ),
    }
}

/// The JSON schema a request wants its answer to follow (Gemini `generationConfig`, OpenAI
/// `text.format` / `response_format`).
fn response_schema(body: &Value) -> Option<&Value> {
    [
        "/generationConfig/responseJsonSchema",
        "/generationConfig/responseSchema",
        "/text/format/schema",
        "/response_format/json_schema/schema",
        "/output_format/schema",
    ]
    .iter()
    .find_map(|p| body.pointer(p))
}

/// A value that follows `schema`: required properties filled, the first of an enum.
fn sample(schema: &Value) -> Value {
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    let kind = schema
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("object")
        .to_ascii_lowercase();
    match kind.as_str() {
        "string" => json!("scripted"),
        "integer" | "number" => json!(1),
        "boolean" => json!(false),
        "array" => json!([]),
        "null" => Value::Null,
        _ => {
            let mut out = serde_json::Map::new();
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, v) in props {
                    out.insert(k.clone(), sample(v));
                }
            }
            Value::Object(out)
        }
    }
}

/// An error in the API's own format.
pub(crate) fn error(api: Api, status: u16, message: &str) -> Response {
    let body = match api {
        Api::Anthropic | Api::AnthropicCountTokens => {
            let kind = match status {
                400 => "invalid_request_error",
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                429 => "rate_limit_error",
                529 => "overloaded_error",
                _ => "api_error",
            };
            json!({"type": "error", "error": {"type": kind, "message": message}})
        }
        Api::Gemini | Api::GeminiCountTokens => {
            let kind = match status {
                400 => "INVALID_ARGUMENT",
                401 => "UNAUTHENTICATED",
                403 => "PERMISSION_DENIED",
                404 => "NOT_FOUND",
                429 => "RESOURCE_EXHAUSTED",
                503 => "UNAVAILABLE",
                _ => "INTERNAL",
            };
            json!({"error": {"code": status, "message": message, "status": kind}})
        }
        _ => {
            let (kind, code) = match status {
                401 => ("invalid_request_error", "invalid_api_key"),
                429 => ("rate_limit_exceeded", "rate_limit_exceeded"),
                400..=499 => ("invalid_request_error", "invalid_request"),
                _ => ("server_error", "server_error"),
            };
            json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
        }
    };
    Response::json(status, &body)
}

fn tool_json(input: &Value) -> String {
    input.to_string()
}

fn anthropic(turn: &Turn, model: &str, seq: u64, stream: bool) -> Response {
    let id = format!("msg_scripted_{seq}");
    let (block, stop) = match &turn.reply {
        Reply::Tool { name, input } => (
            json!({"type": "tool_use", "id": format!("toolu_scripted_{seq}"), "name": name, "input": input}),
            "tool_use",
        ),
        Reply::Text(text) => (json!({"type": "text", "text": text}), "end_turn"),
        Reply::Fail { .. } => (json!({"type": "text", "text": ""}), "end_turn"),
    };
    let usage = json!({
        "input_tokens": turn.input_tokens, "output_tokens": turn.output_tokens,
        "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
    });
    if !stream {
        return Response::json(
            200,
            &json!({
                "id": id, "type": "message", "role": "assistant", "model": model,
                "content": [block], "stop_reason": stop, "stop_sequence": null, "usage": usage,
            }),
        );
    }
    let mut sse = Sse::default();
    sse.event(
        Some("message_start"),
        &json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": turn.input_tokens, "output_tokens": 0,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        }}),
    );
    let (start, delta) = match &turn.reply {
        Reply::Tool { name, input } => (
            json!({"type": "tool_use", "id": format!("toolu_scripted_{seq}"), "name": name, "input": {}}),
            json!({"type": "input_json_delta", "partial_json": tool_json(input)}),
        ),
        Reply::Text(text) => (
            json!({"type": "text", "text": ""}),
            json!({"type": "text_delta", "text": text}),
        ),
        Reply::Fail { .. } => (
            json!({"type": "text", "text": ""}),
            json!({"type": "text_delta", "text": ""}),
        ),
    };
    sse.event(
        Some("content_block_start"),
        &json!({"type": "content_block_start", "index": 0, "content_block": start}),
    );
    sse.event(
        Some("content_block_delta"),
        &json!({"type": "content_block_delta", "index": 0, "delta": delta}),
    );
    sse.event(
        Some("content_block_stop"),
        &json!({"type": "content_block_stop", "index": 0}),
    );
    sse.event(
        Some("message_delta"),
        &json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
                "usage": {"input_tokens": turn.input_tokens, "output_tokens": turn.output_tokens,
                          "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}),
    );
    sse.event(Some("message_stop"), &json!({"type": "message_stop"}));
    sse.done()
}

fn responses(turn: &Turn, model: &str, seq: u64, conv: &Conversation) -> Response {
    let resp_id = format!("resp_scripted_{seq}");
    let item = match &turn.reply {
        Reply::Tool { name, input } if conv.custom_tools.contains(name) => json!({
            "type": "custom_tool_call", "id": format!("ctc_scripted_{seq}"),
            "call_id": format!("call_scripted_{seq}"), "name": name, "status": "completed",
            "input": input.as_str().map_or_else(|| input.to_string(), str::to_owned),
        }),
        Reply::Tool { name, input } => json!({
            "type": "function_call", "id": format!("fc_scripted_{seq}"),
            "call_id": format!("call_scripted_{seq}"), "name": name, "status": "completed",
            "arguments": tool_json(input),
        }),
        Reply::Text(text) => json!({
            "type": "message", "id": format!("msg_scripted_{seq}"), "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }),
        Reply::Fail { .. } => Value::Null,
    };
    let usage = json!({
        "input_tokens": turn.input_tokens, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": turn.output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": turn.input_tokens + turn.output_tokens,
    });
    let mut sse = Sse::default();
    let created = json!({"id": resp_id, "object": "response", "created_at": 0, "status": "in_progress", "model": model, "output": []});
    sse.event(
        Some("response.created"),
        &json!({"type": "response.created", "sequence_number": 0, "response": created}),
    );
    sse.event(
        Some("response.output_item.added"),
        &json!({"type": "response.output_item.added", "sequence_number": 1, "output_index": 0, "item": item}),
    );
    if let Reply::Text(text) = &turn.reply {
        sse.event(
            Some("response.output_text.delta"),
            &json!({"type": "response.output_text.delta", "sequence_number": 2,
                    "item_id": format!("msg_scripted_{seq}"), "output_index": 0, "content_index": 0,
                    "delta": text}),
        );
    }
    sse.event(
        Some("response.output_item.done"),
        &json!({"type": "response.output_item.done", "sequence_number": 3, "output_index": 0, "item": item}),
    );
    sse.event(
        Some("response.completed"),
        &json!({"type": "response.completed", "sequence_number": 4, "response": {
            "id": resp_id, "object": "response", "created_at": 0, "status": "completed",
            "model": model, "output": [item], "usage": usage,
        }}),
    );
    sse.done()
}

fn chat(turn: &Turn, model: &str, seq: u64, stream: bool) -> Response {
    let id = format!("chatcmpl-scripted-{seq}");
    let usage = json!({
        "prompt_tokens": turn.input_tokens, "completion_tokens": turn.output_tokens,
        "total_tokens": turn.input_tokens + turn.output_tokens,
    });
    let (message, finish) = match &turn.reply {
        Reply::Tool { name, input } => (
            json!({"role": "assistant", "content": null, "tool_calls": [{
                "index": 0, "id": format!("call_scripted_{seq}"), "type": "function",
                "function": {"name": name, "arguments": tool_json(input)},
            }]}),
            "tool_calls",
        ),
        Reply::Text(text) => (json!({"role": "assistant", "content": text}), "stop"),
        Reply::Fail { .. } => (json!({"role": "assistant", "content": ""}), "stop"),
    };
    if !stream {
        return Response::json(
            200,
            &json!({"id": id, "object": "chat.completion", "created": 0, "model": model,
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": usage}),
        );
    }
    let chunk = |choices: Value, usage: Option<&Value>| {
        let mut c = json!({"id": id, "object": "chat.completion.chunk", "created": 0, "model": model, "choices": choices});
        if let Some(u) = usage {
            c["usage"] = u.clone();
        }
        c
    };
    let mut sse = Sse::default();
    sse.event(
        None,
        &chunk(
            json!([{"index": 0, "delta": message, "finish_reason": null}]),
            None,
        ),
    );
    sse.event(
        None,
        &chunk(
            json!([{"index": 0, "delta": {}, "finish_reason": finish}]),
            None,
        ),
    );
    sse.event(None, &chunk(json!([]), Some(&usage)));
    let mut r = sse.done();
    r.body.push_str("data: [DONE]\n\n");
    r
}

fn gemini(turn: &Turn, model: &str, seq: u64, stream: bool) -> Response {
    let part = match &turn.reply {
        Reply::Tool { name, input } => {
            json!({"functionCall": {"id": format!("call_scripted_{seq}"), "name": name, "args": input}})
        }
        Reply::Text(text) => json!({"text": text}),
        Reply::Fail { .. } => json!({"text": ""}),
    };
    let body = json!({
        "candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": turn.input_tokens, "candidatesTokenCount": turn.output_tokens,
                          "totalTokenCount": turn.input_tokens + turn.output_tokens},
        "modelVersion": model, "responseId": format!("scripted-{seq}"),
    });
    if !stream {
        return Response::json(200, &body);
    }
    let mut sse = Sse::default();
    sse.event(None, &body);
    sse.done()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apis_by_path() {
        assert_eq!(Api::of("POST", "/v1/messages"), Api::Anthropic);
        assert_eq!(
            Api::of("POST", "/v1/messages/count_tokens"),
            Api::AnthropicCountTokens
        );
        assert_eq!(Api::of("POST", "/v1/responses"), Api::Responses);
        assert_eq!(Api::of("POST", "/v1/chat/completions"), Api::Chat);
        assert_eq!(
            Api::of(
                "POST",
                "/v1beta/models/gemini-2.5-pro:streamGenerateContent"
            ),
            Api::Gemini
        );
        assert_eq!(Api::of("GET", "/v1/models"), Api::Models);
        assert_eq!(Api::of("POST", "/nope"), Api::Other);
    }

    #[test]
    fn cwd_from_system_prompts() {
        let c = Conversation {
            system_text: "Here is useful information:\n<env>\nWorking directory: /tmp/ws-1\nIs directory a git repo: Yes".into(),
            ..Conversation::default()
        };
        assert_eq!(c.cwd().as_deref(), Some("/tmp/ws-1"));
        let c = Conversation {
            user_text: "<environment_context>\n  <cwd>/w/x</cwd>".into(),
            ..Conversation::default()
        };
        assert_eq!(c.cwd().as_deref(), Some("/w/x"));
    }

    #[test]
    fn the_last_tool_result_is_read_from_the_history() {
        let body = serde_json::json!({"messages": [
            {"role": "user", "content": "do it"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "1", "name": "t", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "1", "content": "first"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "2", "name": "t", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "2",
                "content": [{"type": "text", "text": "{\"summary\": \"2 tasks\"}"}]}]},
        ]});
        let c = Conversation::read(Api::Anthropic, &body);
        assert_eq!(
            c.last_tool_result.as_deref(),
            Some("{\"summary\": \"2 tasks\"}")
        );
        assert_eq!(c.answered, 2);
        assert_eq!(c.user_text, "do it");
        let none = Conversation::read(Api::Anthropic, &serde_json::json!({"messages": []}));
        assert_eq!(none.last_tool_result, None);
    }
}
