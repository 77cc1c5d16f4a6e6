//! The optional OpenAI-compatible chat-completions profile: one request per account,
//! asking for a small JSON object built from the text found on its website.

use serde_json::{json, Value};
use std::time::{Duration, SystemTime};

use super::net;
use super::StepError;
use crate::server::config::LlmConfig;

/// Used when a 429 carries no usable `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);
/// A bad or hostile `Retry-After` must not park a job for days.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// Error bodies end up in the job's paused reason and the item's error; keep them short.
const MAX_REASON_CHARS: usize = 200;
/// The most of an answer read: a chat completion with a small JSON profile is a few KiB.
pub const MAX_ANSWER_BYTES: usize = 256 * 1024;
/// The most of an error answer read, for its message.
const MAX_ERROR_BYTES: usize = 16 * 1024;

const SYSTEM_PROMPT: &str = "You profile companies for a sales team. From the company name and \
the text of its website, answer with one JSON object and nothing else, with exactly these keys: \
\"summary\" (one or two sentences on what the company does), \"industry\" (a short label), \
\"sizeRange\" (an employee-count range such as \"1-10\", \"11-50\", \"51-200\", \"201-1000\", \
\"1000+\", or null when unknown), \"country\" (where it is based, or null when unknown), \
\"fitNotes\" (a sentence on anything notable for outreach). Use only the given text; do not invent facts.";

/// A configured chat-completions endpoint. Cheap to clone: the client is shared.
#[derive(Clone)]
pub struct Llm {
    client: reqwest::Client,
    base_url: String,
    api_key: String,
    model: String,
}

impl Llm {
    /// `None` when no endpoint is configured, so the research step simply skips profiling.
    pub fn new(cfg: &LlmConfig, timeout: Duration) -> Option<Self> {
        if !cfg.enabled() {
            return None;
        }
        let client = reqwest::Client::builder().timeout(timeout).build().ok()?;
        Some(Self {
            client,
            base_url: cfg.base_url.trim().trim_end_matches('/').to_string(),
            api_key: cfg.api_key.trim().to_string(),
            model: cfg.model.trim().to_string(),
        })
    }

    /// Asks the endpoint for a JSON profile of one company from its website text.
    ///
    /// A 429 becomes [`StepError::RateLimited`] so the whole job pauses until the
    /// endpoint's `Retry-After`; 5xx and network trouble are transient; anything else
    /// that keeps us from a JSON object is permanent, with a reason a person can read.
    pub async fn profile(&self, account_name: Option<&str>, text: &str) -> Result<Value, StepError> {
        let url = format!("{}/chat/completions", self.base_url);
        let name = account_name.map(str::trim).filter(|n| !n.is_empty()).unwrap_or("(unknown)");
        let user = format!("Company name: {name}\n\nWebsite text:\n{text}");
        let body = json!({
            "model": self.model,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": user},
            ],
            "temperature": 0,
            "response_format": {"type": "json_object"},
        });
        let mut request = self.client.post(&url).json(&body);
        if !self.api_key.is_empty() {
            request = request.bearer_auth(&self.api_key);
        }
        let response = request.send().await.map_err(|e| prefixed(request_error(e)))?;
        let status = response.status();

        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let header =
                response.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_string);
            let retry_after = retry_after(header.as_deref(), SystemTime::now());
            let detail = error_detail(&error_body(response).await);
            return Err(StepError::RateLimited { reason: format!("LLM rate limit (HTTP 429): {detail}"), retry_after });
        }
        if !status.is_success() {
            let detail = error_detail(&error_body(response).await);
            let reason = format!("LLM endpoint answered HTTP {}: {detail}", status.as_u16());
            return Err(if status.is_server_error() || status == reqwest::StatusCode::REQUEST_TIMEOUT {
                StepError::Transient(reason)
            } else {
                StepError::Permanent(reason)
            });
        }

        let (bytes, more) = net::read_at_most(response, MAX_ANSWER_BYTES).await.map_err(prefixed)?;
        if more {
            return Err(StepError::Permanent(format!(
                "the LLM answer is larger than {} KiB; it was not read",
                MAX_ANSWER_BYTES / 1024
            )));
        }
        let answer: Value = serde_json::from_slice(&bytes).map_err(|e| {
            StepError::Permanent(format!(
                "LLM answer is not JSON ({e}): {}",
                error_detail(&String::from_utf8_lossy(&bytes))
            ))
        })?;
        let content = answer
            .pointer("/choices/0/message/content")
            .and_then(Value::as_str)
            .ok_or_else(|| StepError::Permanent("LLM answer has no choices[0].message.content".into()))?;
        parse_profile(content)
    }
}

/// The configured endpoint is the user's own service: when it cannot be reached it is
/// most likely restarting, so that is worth another try, unlike a website's.
fn request_error(e: reqwest::Error) -> StepError {
    if e.is_connect() {
        StepError::Transient(net::describe(&e))
    } else {
        net::classify(e)
    }
}

/// The start of an error answer's body, as text.
async fn error_body(response: reqwest::Response) -> String {
    let (bytes, _) = net::read_at_most(response, MAX_ERROR_BYTES).await.unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Network errors read better in a job's log when they say which service failed.
fn prefixed(e: StepError) -> StepError {
    match e {
        StepError::Transient(r) => StepError::Transient(format!("LLM request failed: {r}")),
        StepError::Permanent(r) => StepError::Permanent(format!("LLM request failed: {r}")),
        other => other,
    }
}

/// Turns the model's message into the profile object. Models asked for JSON still
/// sometimes wrap it in a Markdown fence or a sentence, so those are peeled off.
fn parse_profile(content: &str) -> Result<Value, StepError> {
    let trimmed = strip_fence(content.trim());
    let parsed = serde_json::from_str::<Value>(trimmed).ok().or_else(|| {
        // Last resort: the outermost braces, for "Here is the JSON: {...}".
        let start = trimmed.find('{')?;
        let end = trimmed.rfind('}')?;
        (start < end).then(|| serde_json::from_str::<Value>(&trimmed[start..=end]).ok()).flatten()
    });
    match parsed {
        Some(Value::Object(map)) => Ok(Value::Object(map)),
        Some(_) => Err(StepError::Permanent("LLM profile is JSON but not an object".into())),
        None => Err(StepError::Permanent(format!(
            "LLM profile is not valid JSON: {}",
            shorten(&collapse(trimmed), MAX_REASON_CHARS)
        ))),
    }
}

fn strip_fence(s: &str) -> &str {
    let Some(rest) = s.strip_prefix("```") else { return s };
    // The info string ("json", "JSON", ...) runs to the end of the first line.
    let rest = rest.split_once('\n').map_or("", |(_, body)| body);
    rest.trim_end().strip_suffix("```").unwrap_or(rest).trim()
}

/// How long a 429 asks us to wait: `Retry-After` as delta-seconds or an HTTP-date,
/// capped, with a default when absent or unreadable.
pub(crate) fn retry_after(header: Option<&str>, now: SystemTime) -> Duration {
    let Some(value) = header.map(str::trim).filter(|v| !v.is_empty()) else {
        return DEFAULT_RETRY_AFTER;
    };
    let wait = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else if let Ok(at) = httpdate::parse_http_date(value) {
        at.duration_since(now).unwrap_or(Duration::ZERO)
    } else {
        DEFAULT_RETRY_AFTER
    };
    // "0" or a date already past mean "now"; a second's pause still beats a hot loop.
    wait.clamp(Duration::from_secs(1), MAX_RETRY_AFTER)
}

/// The useful part of an error body: OpenAI-style `error.message` when present,
/// else the body itself, collapsed and shortened.
fn error_detail(body: &str) -> String {
    let message = serde_json::from_str::<Value>(body).ok().and_then(|v| {
        v.pointer("/error/message")
            .or_else(|| v.get("error"))
            .or_else(|| v.get("message"))
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let text = collapse(message.as_deref().unwrap_or(body));
    if text.is_empty() {
        "no details given".into()
    } else {
        shorten(&text, MAX_REASON_CHARS)
    }
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn shorten(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::State;
    use axum::http::{HeaderMap, HeaderValue, StatusCode};
    use axum::response::IntoResponse;
    use axum::routing::post;
    use axum::{Json, Router};
    use std::sync::{Arc, Mutex};

    /// Each request's Authorization header and JSON body.
    type Seen = Arc<Mutex<Vec<(Option<String>, Value)>>>;

    /// What the fake endpoint saw, and what it answers.
    #[derive(Clone, Default)]
    struct Fake {
        seen: Seen,
        status: u16,
        retry_after: Option<&'static str>,
        body: String,
    }

    async fn completions(State(fake): State<Fake>, headers: HeaderMap, Json(body): Json<Value>) -> impl IntoResponse {
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
        fake.seen.lock().unwrap().push((auth, body));
        let mut out = HeaderMap::new();
        out.insert("content-type", HeaderValue::from_static("application/json"));
        if let Some(r) = fake.retry_after {
            out.insert("retry-after", HeaderValue::from_static(r));
        }
        (StatusCode::from_u16(fake.status).unwrap(), out, fake.body.clone())
    }

    /// Serves `fake` on a loopback port under `/v1` and returns its base URL.
    async fn serve(fake: Fake) -> String {
        let app = Router::new().route("/v1/chat/completions", post(completions)).with_state(fake);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}/v1/")
    }

    fn chat_answer(content: &str) -> String {
        json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}).to_string()
    }

    fn llm(base_url: String, api_key: &str) -> Llm {
        let cfg = LlmConfig { base_url, api_key: api_key.into(), model: "test-model".into() };
        Llm::new(&cfg, Duration::from_secs(5)).expect("configured")
    }

    #[test]
    fn disabled_without_base_url() {
        assert!(Llm::new(&LlmConfig::default(), Duration::from_secs(1)).is_none());
    }

    #[tokio::test]
    async fn returns_profile_and_sends_key_and_model() {
        let fake = Fake {
            status: 200,
            body: chat_answer(
                r#"{"summary":"Makes anvils.","industry":"Manufacturing","sizeRange":"11-50","country":"US","fitNotes":"Good fit."}"#,
            ),
            ..Fake::default()
        };
        let seen = fake.seen.clone();
        let base = serve(fake).await;
        let profile = llm(base, "sk-test").profile(Some("Acme Inc"), "We make anvils.").await.unwrap();
        assert_eq!(profile["industry"], "Manufacturing");
        assert_eq!(profile["sizeRange"], "11-50");

        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let (auth, body) = &seen[0];
        assert_eq!(auth.as_deref(), Some("Bearer sk-test"));
        assert_eq!(body["model"], "test-model");
        assert_eq!(body["temperature"], 0);
        assert_eq!(body["response_format"]["type"], "json_object");
        assert_eq!(body["messages"][0]["role"], "system");
        assert!(body["messages"][0]["content"].as_str().unwrap().contains("fitNotes"));
        let user = body["messages"][1]["content"].as_str().unwrap();
        assert!(user.contains("Acme Inc") && user.contains("We make anvils."), "{user}");
    }

    #[tokio::test]
    async fn no_authorization_header_without_key_and_fences_are_tolerated() {
        let fake = Fake { status: 200, body: chat_answer("```json\n{\"summary\": \"x\"}\n```"), ..Fake::default() };
        let seen = fake.seen.clone();
        let base = serve(fake).await;
        let profile = llm(base, "").profile(None, "text").await.unwrap();
        assert_eq!(profile, json!({"summary": "x"}));
        assert_eq!(seen.lock().unwrap()[0].0, None);
    }

    #[tokio::test]
    async fn rate_limit_uses_retry_after_seconds() {
        let fake = Fake {
            status: 429,
            retry_after: Some("7"),
            body: json!({"error": {"message": "Rate limit reached for requests"}}).to_string(),
            ..Fake::default()
        };
        let base = serve(fake).await;
        match llm(base, "k").profile(Some("Acme"), "t").await {
            Err(StepError::RateLimited { reason, retry_after }) => {
                assert_eq!(retry_after, Duration::from_secs(7));
                assert_eq!(reason, "LLM rate limit (HTTP 429): Rate limit reached for requests");
            }
            other => panic!("expected RateLimited, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn rate_limit_without_header_waits_a_minute() {
        let fake = Fake { status: 429, body: "slow down".into(), ..Fake::default() };
        let base = serve(fake).await;
        match llm(base, "k").profile(Some("Acme"), "t").await {
            Err(StepError::RateLimited { reason, retry_after }) => {
                assert_eq!(retry_after, Duration::from_secs(60));
                assert!(reason.contains("slow down"), "{reason}");
            }
            other => panic!("expected RateLimited, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn server_error_is_transient() {
        let fake = Fake { status: 500, body: "boom".into(), ..Fake::default() };
        let base = serve(fake).await;
        match llm(base, "k").profile(Some("Acme"), "t").await {
            Err(StepError::Transient(reason)) => assert!(reason.contains("HTTP 500"), "{reason}"),
            other => panic!("expected Transient, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn client_error_is_permanent() {
        let fake =
            Fake { status: 401, body: json!({"error": {"message": "Invalid API key"}}).to_string(), ..Fake::default() };
        let base = serve(fake).await;
        match llm(base, "bad").profile(Some("Acme"), "t").await {
            Err(StepError::Permanent(reason)) => {
                assert!(reason.contains("HTTP 401") && reason.contains("Invalid API key"), "{reason}")
            }
            other => panic!("expected Permanent, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn content_that_is_not_json_is_permanent() {
        let fake = Fake { status: 200, body: chat_answer("Sorry, I cannot help with that."), ..Fake::default() };
        let base = serve(fake).await;
        match llm(base, "k").profile(Some("Acme"), "t").await {
            Err(StepError::Permanent(reason)) => {
                assert!(reason.contains("not valid JSON") && reason.contains("Sorry"), "{reason}")
            }
            other => panic!("expected Permanent, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn unreachable_endpoint_is_transient() {
        // Bind then drop, so the port is (almost certainly) closed.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let result = llm(format!("http://{addr}"), "k").profile(Some("Acme"), "t").await;
        assert!(
            matches!(result, Err(StepError::Transient(ref r)) if r.starts_with("LLM request failed")),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn an_answer_over_the_cap_is_refused_without_reading_it_all() {
        // A well-formed answer whose content alone is four times the cap.
        let huge = "x".repeat(4 * MAX_ANSWER_BYTES);
        let fake = Fake { status: 200, body: chat_answer(&format!("{{\"summary\": \"{huge}\"}}")), ..Fake::default() };
        let base = serve(fake).await;
        match llm(base, "k").profile(Some("Acme"), "t").await {
            Err(StepError::Permanent(reason)) => assert!(reason.contains("larger than 256 KiB"), "{reason}"),
            other => panic!("expected a permanent failure, got {:?}", other.map(|_| "a profile")),
        }
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(retry_after(Some("7"), now), Duration::from_secs(7));
        assert_eq!(retry_after(Some("0"), now), Duration::from_secs(1), "never a hot loop");
        assert_eq!(retry_after(Some(" 12 "), now), Duration::from_secs(12));
        assert_eq!(retry_after(None, now), Duration::from_secs(60));
        assert_eq!(retry_after(Some("soon"), now), Duration::from_secs(60));
        assert_eq!(retry_after(Some("999999"), now), Duration::from_secs(3600));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(retry_after(Some(&date), now), Duration::from_secs(90));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(retry_after(Some(&past), now), Duration::from_secs(1));
    }

    #[test]
    fn profile_parsing() {
        assert_eq!(parse_profile(r#"{"a":1}"#).unwrap(), json!({"a": 1}));
        assert_eq!(parse_profile("```\n{\"a\":1}\n```").unwrap(), json!({"a": 1}));
        assert_eq!(parse_profile("Here it is: {\"a\":1} hope that helps").unwrap(), json!({"a": 1}));
        assert!(matches!(parse_profile("[1,2]"), Err(StepError::Permanent(r)) if r.contains("not an object")));
        assert!(matches!(parse_profile("nope"), Err(StepError::Permanent(_))));
    }
}
