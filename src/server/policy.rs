//! HTTP-wide policies: the Content-Security-Policy of every page, a few safety
//! headers on every answer, and one error shape (`{"error"}` JSON) for every REST
//! answer, whichever layer produced it.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use leptos::prelude::use_context;

/// The policy of a page whose own scripts carry `nonce`: only those run (and what
/// they load), plus compiling the app's WebAssembly. Markup that slipped into a page
/// could not run script even if an escaping bug let it through.
pub fn content_security_policy(nonce: &str, live_reload: bool) -> String {
    let connect = if live_reload { "'self' ws: wss:" } else { "'self'" };
    format!(
        "default-src 'self'; script-src 'nonce-{nonce}' 'strict-dynamic' 'wasm-unsafe-eval'; \
         style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src {connect}; \
         object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    )
}

/// Leptos context hook for every rendered page: sets the Content-Security-Policy with
/// the nonce leptos puts on its hydration scripts for this one response.
pub fn page_context() {
    let (Some(nonce), Some(response)) = (leptos::nonce::use_nonce(), use_context::<leptos_axum::ResponseOptions>())
    else {
        return;
    };
    let live_reload = std::env::var_os("LEPTOS_WATCH").is_some();
    if let Ok(value) = HeaderValue::from_str(&content_security_policy(&nonce, live_reload)) {
        response.insert_header(CONTENT_SECURITY_POLICY, value);
    }
}

/// Middleware: no MIME sniffing and no referrer sent to other sites, on every answer.
pub async fn safety_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    response
}

/// Whether `path` is under `/api`, where every answer is JSON.
pub fn is_api_path(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/")
}

/// The paths of the server functions, whose error answers the UI decodes itself.
#[derive(Clone)]
pub struct ServerFnPaths(pub Arc<HashSet<String>>);

impl ServerFnPaths {
    pub fn collect() -> Self {
        Self(Arc::new(leptos::server_fn::axum::server_fn_paths().map(|(path, _)| path.to_string()).collect()))
    }
}

/// Middleware: any error answer under `/api/` that is not JSON yet (an unknown path,
/// a wrong method, a rejected query string) becomes `{"error": "..."}` with the same
/// status.
pub async fn api_errors(State(server_fns): State<ServerFnPaths>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    let is_rest = is_api_path(&path) && !server_fns.0.contains(&path);
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_rest || is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let message = match status {
        StatusCode::NOT_FOUND => format!("there is no API endpoint at {path}"),
        StatusCode::METHOD_NOT_ALLOWED => format!("{method} is not allowed on {path}"),
        _ => {
            let body = axum::body::to_bytes(response.into_body(), 2048).await.unwrap_or_default();
            let text = String::from_utf8_lossy(&body).trim().to_string();
            if text.is_empty() {
                status.canonical_reason().unwrap_or("error").to_string()
            } else {
                text
            }
        }
    };
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_need_the_nonce_and_nothing_else_runs() {
        let csp = content_security_policy("abc123", false);
        let script = csp.split(';').map(str::trim).find(|d| d.starts_with("script-src")).unwrap();
        assert_eq!(script, "script-src 'nonce-abc123' 'strict-dynamic' 'wasm-unsafe-eval'");
        assert!(csp.contains("object-src 'none'") && csp.contains("base-uri 'none'"));
        assert!(!csp.contains("ws:"));
        assert!(content_security_policy("n", true).contains("connect-src 'self' ws: wss:"));
    }
}
