//! LLM providers behind one trait. The node configures one provider (base
//! URL and model list in its config, API key from the environment); the
//! `llm` host capability checks each call against the agent's grant.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A chat message role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

/// A chat completion request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
}

/// A completion with its token counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatResponse {
    pub content: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// Why a provider call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    #[error("model `{0}` is not served by this host")]
    UnknownModel(String),
    #[error("provider request failed: {0}")]
    Provider(String),
}

/// A source of chat completions.
#[async_trait::async_trait]
pub trait LlmProvider: Send + Sync + std::fmt::Debug {
    /// Models this provider serves.
    fn models(&self) -> Vec<String>;
    async fn chat(&self, request: ChatRequest) -> Result<ChatResponse, LlmError>;
}

/// An OpenAI-compatible `/v1/chat/completions` endpoint.
#[derive(Debug, Clone)]
pub struct OpenAiProvider {
    base_url: String,
    api_key: Option<String>,
    models: Vec<String>,
    client: reqwest::Client,
}

impl OpenAiProvider {
    /// `base_url` is the API root, e.g. `https://api.openai.com/v1`.
    /// The key, if any, is sent as a bearer token and never logged.
    pub fn new(
        base_url: &str,
        api_key: Option<String>,
        models: Vec<String>,
        timeout: Duration,
    ) -> Result<Self, LlmError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| LlmError::Provider(format!("cannot build HTTP client: {e}")))?;
        Ok(OpenAiProvider {
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key,
            models,
            client,
        })
    }
}

#[derive(Deserialize)]
struct WireResponse {
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}
#[derive(Deserialize)]
struct WireChoice {
    message: WireMessage,
}
#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Option<String>,
}
#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u32,
    #[serde(default)]
    completion_tokens: u32,
}

/// Largest provider response read, in bytes.
const MAX_RESPONSE: usize = 4 << 20;

#[async_trait::async_trait]
impl LlmProvider for OpenAiProvider {
    fn models(&self) -> Vec<String> {
        self.models.clone()
    }

    async fn chat(&self, request: ChatRequest) -> Result<ChatResponse, LlmError> {
        if !self.models.iter().any(|m| m == &request.model) {
            return Err(LlmError::UnknownModel(request.model));
        }
        let mut req = self
            .client
            .post(format!("{}/chat/completions", self.base_url))
            .json(&request);
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| LlmError::Provider(e.without_url().to_string()))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| LlmError::Provider(e.without_url().to_string()))?;
        if body.len() > MAX_RESPONSE {
            return Err(LlmError::Provider(format!(
                "response of {} bytes is too large",
                body.len()
            )));
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            return Err(LlmError::Provider(format!("HTTP {status}: {text}")));
        }
        let wire: WireResponse = serde_json::from_slice(&body)
            .map_err(|e| LlmError::Provider(format!("unexpected response: {e}")))?;
        let content = wire
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.message.content)
            .ok_or_else(|| LlmError::Provider("response has no message".into()))?;
        let usage = wire.usage.unwrap_or(WireUsage {
            prompt_tokens: 0,
            completion_tokens: 0,
        });
        Ok(ChatResponse {
            content,
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
        })
    }
}
