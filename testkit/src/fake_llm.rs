//! Shared test support: a fake OpenAI-compatible server on 127.0.0.1:0 that
//! answers `POST /v1/chat/completions` with a fixed reply, as JSON or (when
//! the request says `stream: true`, as OpenClaw's gateway does) as SSE
//! chunks ending with a usage chunk and `[DONE]`.

use std::sync::{Arc, Mutex};

pub type Seen = Arc<Mutex<Vec<serde_json::Value>>>;

/// Starts the fake; returns its base URL (`http://127.0.0.1:P/v1`) and the
/// request bodies it has seen.
pub async fn fake_llm(reply: &'static str) -> (String, Seen) {
    use axum::response::{IntoResponse, Response};
    use axum::{Json, Router, routing::post};
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |Json(body): Json<serde_json::Value>| {
            let s = s.clone();
            async move {
                let stream = body["stream"].as_bool().unwrap_or(false);
                let model = body["model"].as_str().unwrap_or("test-model").to_string();
                s.lock().expect("fake LLM").push(body);
                let usage = serde_json::json!({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15});
                if !stream {
                    return Json(serde_json::json!({
                        "id": "c1", "object": "chat.completion", "model": model,
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
                        "usage": usage,
                    }))
                    .into_response();
                }
                let chunk = |delta: serde_json::Value, finish: Option<&str>| {
                    serde_json::json!({
                        "id": "c1", "object": "chat.completion.chunk", "model": model,
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                    })
                };
                let mut sse = String::new();
                for v in [
                    chunk(serde_json::json!({"role": "assistant", "content": ""}), None),
                    chunk(serde_json::json!({"content": reply}), None),
                    chunk(serde_json::json!({}), Some("stop")),
                    serde_json::json!({"id": "c1", "object": "chat.completion.chunk", "model": model, "choices": [], "usage": usage}),
                ] {
                    sse.push_str(&format!("data: {v}\n\n"));
                }
                sse.push_str("data: [DONE]\n\n");
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(axum::body::Body::from(sse))
                    .expect("fake LLM")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("fake LLM");
    let addr = listener.local_addr().expect("fake LLM");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/v1"), seen)
}
