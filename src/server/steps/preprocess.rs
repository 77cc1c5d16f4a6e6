//! Preprocessing: cleaning, validation and dedupe keys (pure, at import) and the
//! liveness check (the per-item step).

use futures::future::BoxFuture;
use serde_json::{json, Value};

use super::net::{self, Http};
use super::{Step, StepError};
use crate::model::Outcome;
use crate::server::rows::{normalize, ColumnMap};
use crate::server::store::types::{reason_parts, Claimed};

/// The per-item step of a preprocess job: the import-time cleaning result plus the
/// duplicate link and a liveness check of the website.
pub struct PreprocessStep {
    http: Http,
}

impl PreprocessStep {
    /// A step that makes its requests with `http` (and its limits).
    pub fn new(http: Http) -> Self {
        Self { http }
    }
}

impl Step for PreprocessStep {
    /// Never fails for an unreachable site: that is recorded in `liveness`.
    fn run(&self, item: Claimed) -> BoxFuture<'static, Result<Value, StepError>> {
        // Owned data only, so dropping the future at any await leaves nothing behind.
        let http = self.http.clone();
        Box::pin(async move { Ok(preprocess_item(&http, &item).await) })
    }

    /// A row with no site to check (a duplicate, no domain) is done without a request.
    fn run_now(&self, item: &Claimed) -> Option<Result<Value, StepError>> {
        match prepare(item) {
            Prepared::Done(v) => Some(Ok(v)),
            Prepared::Check { .. } => None,
        }
    }
}

/// A row cleaned, with its liveness either settled or still to check.
enum Prepared {
    Done(Value),
    Check { obj: serde_json::Map<String, Value>, website: Option<String>, domain: String },
}

fn prepare(item: &Claimed) -> Prepared {
    let mut obj = match &item.normalized {
        Some(Value::Object(m)) => m.clone(),
        // Rows imported before normalisation existed: clean what the item carries.
        _ => {
            let map = ColumnMap { name: Some(0), website: Some(1), domain: Some(2), email: None };
            let row: Vec<String> = [item.name.as_deref(), item.website.as_deref(), item.domain.as_deref()]
                .iter()
                .map(|v| v.unwrap_or_default().to_string())
                .collect();
            match normalize(&map, &row).json() {
                Value::Object(m) => m,
                _ => serde_json::Map::new(),
            }
        }
    };
    let text = |key: &str| obj.get(key).and_then(Value::as_str).map(str::to_string);
    let domain = text("domain").or_else(|| item.domain.clone());
    let website = text("website").or_else(|| item.website.clone());
    obj.insert("duplicateOf".into(), json!(item.duplicate_of));
    let skip = match (item.duplicate_of, domain) {
        (Some(line), _) => format!("duplicate of line {line}"),
        (None, None) => "no domain".to_string(),
        (None, Some(domain)) => return Prepared::Check { obj, website, domain },
    };
    obj.insert("liveness".into(), skipped(skip));
    Prepared::Done(with_outcome(obj))
}

/// The row's result with its outcome (SPEC section 16): the first that holds of
/// invalid, duplicate, unreachable (its site did not answer, or it has none to
/// check), clean.
fn with_outcome(mut obj: serde_json::Map<String, Value>) -> Value {
    let outcome = if obj.get("valid").and_then(Value::as_bool) != Some(true) {
        Outcome::Invalid
    } else if obj.get("duplicateOf").is_some_and(|d| !d.is_null()) {
        Outcome::Duplicate
    } else if obj.get("liveness").and_then(|l| l.get("reachable")).and_then(Value::as_bool) != Some(true) {
        Outcome::Unreachable
    } else {
        Outcome::Clean
    };
    obj.insert("outcome".into(), json!(outcome.as_str()));
    Value::Object(obj)
}

async fn preprocess_item(http: &Http, item: &Claimed) -> Value {
    match prepare(item) {
        Prepared::Done(v) => v,
        Prepared::Check { mut obj, website, domain } => {
            let liveness = check_liveness(http, website.as_deref(), &domain).await;
            obj.insert("liveness".into(), liveness);
            with_outcome(obj)
        }
    }
}

fn skipped(why: String) -> Value {
    json!({ "checked": false, "reachable": null, "finalUrl": null, "statusCode": null, "error": why })
}

/// An unreachable site: `error` is the line people read, `errorDetail` (when there is
/// one) the whole chain, for the export (SPEC section 16).
fn unreachable(error: String) -> Value {
    let (line, detail) = reason_parts(&error);
    json!({ "checked": true, "reachable": false, "finalUrl": null, "statusCode": null, "error": line, "errorDetail": detail })
}

async fn check_liveness(http: &Http, website: Option<&str>, domain: &str) -> Value {
    let full = website
        .and_then(|w| url::Url::parse(w).ok())
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
    let from_domain = full.is_none();
    let url = match full {
        Some(u) => u,
        None => match url::Url::parse(&format!("https://{domain}")) {
            Ok(u) => u,
            Err(e) => return unreachable(format!("cannot build a URL from {domain}: {e}")),
        },
    };
    match fetch(http, url).await {
        Ok(v) => v,
        // Plenty of small sites still have no certificate; only a guessed https URL
        // deserves the second try, a URL given in full is taken at its word.
        Err((e, true)) if from_domain => match url::Url::parse(&format!("http://{domain}")) {
            Ok(plain) => match fetch(http, plain).await {
                Ok(v) => v,
                // The second try's sentence, both chains in the detail.
                Err((e2, _)) => {
                    let ((_, https), (first, http)) = (reason_parts(&e), reason_parts(&e2));
                    let (https, http) = (https.unwrap_or(&e), http.unwrap_or(&e2));
                    unreachable(format!("{first}\nover https: {https}\nover http: {http}"))
                }
            },
            Err(_) => unreachable(e),
        },
        Err((e, _)) => unreachable(e),
    }
}

/// One GET; the error side says why, and whether it was a failure to connect.
async fn fetch(http: &Http, url: url::Url) -> Result<Value, (String, bool)> {
    if let Err(e) = http.check_url(&url) {
        return Err((e.to_string(), false));
    }
    // Not held to robots.txt: one request per row, to see that the site answers.
    let _visit = http.hosts.visit(&url, None).await;
    // One request per site: asking the site to close the connection leaves no idle
    // socket behind for each of a million sites.
    let request = http.client.get(url).header(reqwest::header::CONNECTION, "close");
    match request.send().await {
        Ok(response) => {
            let status = response.status();
            let final_url = response.url().to_string();
            // The body is never read: dropping the response (asked for with
            // `Connection: close`) closes the connection instead of downloading a page
            // nobody looks at.
            drop(response);
            Ok(json!({
                "checked": true,
                "reachable": status.as_u16() < 400,
                "finalUrl": final_url,
                "statusCode": status.as_u16(),
                "error": null,
            }))
        }
        Err(e) => Err((net::for_people(&e), e.is_connect())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{header, StatusCode};
    use axum::routing::get;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    // ---- liveness against real servers ----

    async fn count(
        axum::extract::State(hits): axum::extract::State<Arc<AtomicUsize>>,
        req: axum::extract::Request,
        next: axum::middleware::Next,
    ) -> axum::response::Response {
        hits.fetch_add(1, Ordering::SeqCst);
        next.run(req).await
    }

    /// Serves `/`, `/old` (301 to `/new`), `/new`, `/gone` (404) and `/boom` (500).
    async fn serve() -> (u16, Arc<AtomicUsize>) {
        let hits = Arc::new(AtomicUsize::new(0));
        let app = axum::Router::new()
            .route("/", get(|| async { "home" }))
            .route("/old", get(|| async { (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, "/new")]) }))
            .route("/new", get(|| async { "new home" }))
            .route("/gone", get(|| async { StatusCode::NOT_FOUND }))
            .route("/boom", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
            .layer(axum::middleware::from_fn_with_state(hits.clone(), count));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        (port, hits)
    }

    fn step(allow_private: bool) -> PreprocessStep {
        PreprocessStep::new(Http::build(Duration::from_secs(2), "jobdeck-test", allow_private, 65536).unwrap())
    }

    fn claimed(name: &str, website: &str, domain: &str, duplicate_of: Option<i64>) -> Claimed {
        let map = ColumnMap { name: Some(0), website: Some(1), domain: Some(2), email: Some(3) };
        let n = normalize(&map, &[name, website, domain, ""].map(String::from));
        Claimed {
            id: 7,
            line: 3,
            name: n.company.clone(),
            website: n.website.clone(),
            domain: n.domain.clone(),
            input: serde_json::Map::new(),
            normalized: Some(n.json()),
            duplicate_of,
        }
    }

    #[tokio::test]
    async fn liveness_follows_redirects_and_records_status() {
        let (port, hits) = serve().await;
        let step = step(true);

        let out = step.run(claimed("Acme Inc", &format!("http://127.0.0.1:{port}/old"), "", None)).await.unwrap();
        let live = &out["liveness"];
        assert_eq!(live["checked"], true);
        assert_eq!(live["reachable"], true);
        assert_eq!(live["statusCode"], 200);
        assert!(live["finalUrl"].as_str().unwrap().ends_with("/new"), "{live}");
        assert_eq!(live["error"], Value::Null);
        // The import-time cleaning travels with the result.
        assert_eq!(out["company"], "Acme");
        assert_eq!(out["domain"], "127.0.0.1");
        assert_eq!(out["duplicateOf"], Value::Null);
        assert_eq!(hits.load(Ordering::SeqCst), 2, "/old then /new");
        assert_eq!(out["outcome"], "clean");

        let out = step.run(claimed("Acme", &format!("http://127.0.0.1:{port}/"), "", None)).await.unwrap();
        assert_eq!(out["liveness"]["reachable"], true);
        assert_eq!(out["liveness"]["statusCode"], 200);

        let out = step.run(claimed("Acme", &format!("http://127.0.0.1:{port}/gone"), "", None)).await.unwrap();
        assert_eq!(out["liveness"]["checked"], true);
        assert_eq!(out["liveness"]["reachable"], false);
        assert_eq!(out["liveness"]["statusCode"], 404);
        assert_eq!(out["liveness"]["error"], Value::Null);
        assert_eq!(out["outcome"], "unreachable");

        let out = step.run(claimed("Acme", &format!("http://127.0.0.1:{port}/boom"), "", None)).await.unwrap();
        assert_eq!(out["liveness"]["reachable"], false);
        assert_eq!(out["liveness"]["statusCode"], 500);
    }

    #[tokio::test]
    async fn refused_connection_is_a_result_not_a_failure() {
        let port = {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap().port()
        };
        let out = step(true)
            .run(claimed("Acme", &format!("http://127.0.0.1:{port}/"), "", None))
            .await
            .expect("an unreachable site is still Ok");
        let live = &out["liveness"];
        assert_eq!(live["checked"], true);
        assert_eq!(live["reachable"], false);
        assert_eq!(live["statusCode"], Value::Null);
        assert_eq!(live["finalUrl"], Value::Null);
        // A sentence for people, the whole chain beside it for the export.
        assert_eq!(live["error"], "could not reach 127.0.0.1 (connection refused)", "{live}");
        assert!(live["errorDetail"].as_str().unwrap().contains("error sending request"), "{live}");
    }

    #[tokio::test]
    async fn bare_domain_falls_back_to_plain_http() {
        // `.invalid` never resolves, so both the https and the http try fail to connect.
        let out = step(true).run(claimed("Acme", "", "jobdeck-test.invalid", None)).await.unwrap();
        let live = &out["liveness"];
        assert_eq!(live["reachable"], false);
        assert_eq!(live["statusCode"], Value::Null);
        assert_eq!(live["error"], "could not reach jobdeck-test.invalid (no such host)", "{live}");
        let detail = live["errorDetail"].as_str().unwrap();
        assert!(detail.contains("over https:") && detail.contains("over http:"), "{detail}");
    }

    #[tokio::test]
    async fn duplicates_and_rows_without_domain_are_skipped() {
        let (port, hits) = serve().await;
        let step = step(true);
        let out = step.run(claimed("Acme", &format!("http://127.0.0.1:{port}/"), "", Some(2))).await.unwrap();
        assert_eq!(out["duplicateOf"], 2);
        assert_eq!(out["liveness"]["checked"], false);
        assert_eq!(out["liveness"]["reachable"], Value::Null);
        assert_eq!(out["liveness"]["error"], "duplicate of line 2");
        assert_eq!(out["outcome"], "duplicate");

        let out = step.run(claimed("Acme", "", "", None)).await.unwrap();
        assert_eq!(out["liveness"]["checked"], false);
        assert_eq!(out["liveness"]["error"], "no domain");
        assert_eq!(out["outcome"], "invalid", "a row without a domain is invalid");
        assert_eq!(hits.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn private_targets_are_refused_without_a_request() {
        let (port, hits) = serve().await;
        let out = step(false).run(claimed("Acme", &format!("http://127.0.0.1:{port}/"), "", None)).await.unwrap();
        let live = &out["liveness"];
        assert_eq!(live["checked"], true);
        assert_eq!(live["reachable"], false);
        assert_eq!(live["statusCode"], Value::Null);
        assert!(live["error"].as_str().unwrap().contains("private address"), "{live}");
        assert_eq!(hits.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn item_without_normalized_json_is_cleaned_on_the_fly() {
        let item = Claimed {
            id: 1,
            line: 2,
            name: Some("Acme, Inc.".into()),
            website: None,
            domain: None,
            input: serde_json::Map::new(),
            normalized: None,
            duplicate_of: None,
        };
        let out = step(true).run(item).await.unwrap();
        assert_eq!(out["company"], "Acme");
        assert_eq!(out["liveness"]["error"], "no domain");
    }
}
