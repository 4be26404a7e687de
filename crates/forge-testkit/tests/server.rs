//! The scripted model server over real HTTP on 127.0.0.1: each API's wire format, the script's
//! turns by conversation, errors in the provider's format, and the record of requests.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is a failed test

use forge_testkit::{Api, ModelServer, Script, Turn};
use serde_json::{Value, json};

fn script() -> Script {
    Script::new()
        .when(
            "TASK-A",
            vec![
                Turn::tool(
                    "Write",
                    json!({"file_path": "{cwd}/a.txt", "content": "a\n"}),
                )
                .usage(700, 30),
                Turn::text("Done with A.").usage(800, 5),
            ],
        )
        .always("TASK-DOWN", Turn::fail(401, "invalid x-api-key"))
}

/// The `data:` payloads of an SSE body.
fn sse_data(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn anthropic_turns_follow_the_conversation_and_fill_the_cwd() {
    let server = ModelServer::start(script()).unwrap();
    let http = reqwest::Client::new();
    let request = |messages: Value| {
        json!({
            "model": "m", "stream": true, "max_tokens": 100,
            "system": [{"type": "text", "text": "Primary working directory: /w/ws-1\n"}],
            "tools": [{"name": "Write", "input_schema": {}}],
            "messages": messages,
        })
    };
    let first = http
        .post(format!("{}/v1/messages", server.url()))
        .header("x-claude-code-session-id", "s-1")
        .json(&request(
            json!([{"role": "user", "content": "TASK-A: write a"}]),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let events = sse_data(&first.text().await.unwrap());
    let start = events
        .iter()
        .find(|e| e["type"] == "content_block_start")
        .unwrap();
    assert_eq!(start["content_block"]["name"], "Write");
    let delta = events
        .iter()
        .find(|e| e["type"] == "content_block_delta")
        .unwrap();
    let input: Value =
        serde_json::from_str(delta["delta"]["partial_json"].as_str().unwrap()).unwrap();
    assert_eq!(input["file_path"], "/w/ws-1/a.txt");
    let second = http
        .post(format!("{}/v1/messages", server.url()))
        .json(&request(json!([
            {"role": "user", "content": "TASK-A: write a"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Write", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}]},
        ])))
        .send()
        .await
        .unwrap();
    let events = sse_data(&second.text().await.unwrap());
    let delta = events
        .iter()
        .find(|e| e["type"] == "content_block_delta")
        .unwrap();
    assert_eq!(delta["delta"]["text"], "Done with A.");
    let end = events
        .iter()
        .find(|e| e["type"] == "message_delta")
        .unwrap();
    assert_eq!(end["usage"]["output_tokens"], 5);
    let calls = server.model_calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].session().as_deref(), Some("s-1"));
    assert_eq!(calls[0].tools, ["Write"]);
    assert_eq!((calls[0].usage, calls[1].usage), ((700, 30), (800, 5)));
    assert_eq!(calls[1].answered, 1);
}

#[tokio::test(flavor = "multi_thread")]
#[allow(clippy::too_many_lines)] // one request per API, in a row
async fn every_api_speaks_its_own_format_and_errors() {
    let server = ModelServer::start(script()).unwrap();
    let http = reqwest::Client::new();
    let url = server.url();
    // OpenAI Responses: a function call item, then `response.completed` with usage.
    let body = http
        .post(format!("{url}/v1/responses"))
        .json(&json!({"model": "m", "stream": true, "tools": [{"type": "function", "name": "Write"}],
                      "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "TASK-A"}]}]}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse_data(&body);
    let done = events
        .iter()
        .find(|e| e["type"] == "response.completed")
        .unwrap();
    assert_eq!(done["response"]["output"][0]["type"], "function_call");
    assert_eq!(done["response"]["usage"]["input_tokens"], 700);
    // Chat Completions: tool call chunks, a usage chunk, [DONE].
    let body = http
        .post(format!("{url}/v1/chat/completions"))
        .json(&json!({"model": "m", "stream": true, "tools": [{"type": "function", "function": {"name": "Write"}}],
                      "messages": [{"role": "user", "content": "TASK-A"}]}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.trim_end().ends_with("data: [DONE]"));
    let chunks = sse_data(&body);
    assert_eq!(
        chunks[0]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"],
        "Write"
    );
    assert_eq!(chunks.last().unwrap()["usage"]["prompt_tokens"], 700);
    // Gemini, streaming by path.
    let body = http
        .post(format!(
            "{url}/v1beta/models/g-1:streamGenerateContent?alt=sse"
        ))
        .json(
            &json!({"contents": [{"role": "user", "parts": [{"text": "TASK-A"}]}],
                      "tools": [{"functionDeclarations": [{"name": "Write"}]}]}),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let chunks = sse_data(&body);
    assert_eq!(
        chunks[0]["candidates"][0]["content"]["parts"][0]["functionCall"]["name"],
        "Write"
    );
    // A side request asking for JSON of a schema gets a value of that schema, no usage.
    let side: Value = http
        .post(format!("{url}/v1beta/models/g-1:generateContent"))
        .json(&json!({"contents": [{"role": "user", "parts": [{"text": "TASK-A"}]}],
                      "generationConfig": {"responseJsonSchema": {"type": "OBJECT", "properties": {
                          "score": {"type": "INTEGER"}, "choice": {"type": "STRING", "enum": ["flash", "pro"]}}}}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = side["candidates"][0]["content"]["parts"][0]["text"]
        .as_str()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(text).unwrap(),
        json!({"score": 1, "choice": "flash"})
    );
    // A refusing model, in each provider's error format.
    let refused = http
        .post(format!("{url}/v1/messages"))
        .json(&json!({"messages": [{"role": "user", "content": "TASK-DOWN"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let e: Value = refused.json().await.unwrap();
    assert_eq!(e["error"]["type"], "authentication_error");
    let refused: Value = http
        .post(format!("{url}/v1beta/models/g:generateContent"))
        .json(&json!({"contents": [{"role": "user", "parts": [{"text": "TASK-DOWN"}]}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(refused["error"]["status"], "UNAUTHENTICATED");
    let apis: Vec<Api> = server.requests().iter().map(|r| r.api).collect();
    assert_eq!(
        apis,
        [
            Api::Responses,
            Api::Chat,
            Api::Gemini,
            Api::Gemini,
            Api::Anthropic,
            Api::Gemini
        ]
    );
}
