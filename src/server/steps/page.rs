//! Fetching one page for research: redirects followed hop by hop, each hop checked and
//! counted against its own host (SPEC section 12), the answer sorted into a page or the
//! reason it cannot be used.

use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::Url;

use super::hosts::Visit;
use super::net::{self, Http};
use super::StepError;

/// One fetched HTML page.
pub struct Page {
    pub final_url: Url,
    pub status: u16,
    pub headers: HeaderMap,
    pub html: String,
}

/// Why a page could not be used, with the status when the server answered.
pub struct FetchError {
    pub status: Option<u16>,
    pub error: StepError,
}

impl From<StepError> for FetchError {
    fn from(error: StepError) -> Self {
        Self { status: None, error }
    }
}

/// Fetches a page, following redirects hop by hop: each hop is checked like the first
/// URL (scheme, private address, robots.txt) and takes a slot of its own host (SPEC
/// section 12), held until the page is read. The hops' requests share one time limit,
/// as one request's redirects would; waits for a host are not counted in it.
pub async fn fetch_page(http: &Http, url: &Url) -> Result<Page, FetchError> {
    let mut at = url.clone();
    let mut spent = std::time::Duration::ZERO;
    for _ in 0..=net::MAX_REDIRECTS {
        http.check_url(&at)?;
        let delay = match &http.robots {
            Some(robots) => {
                let verdict = robots.check(http, &at).await;
                if !verdict.allowed {
                    return Err(StepError::Permanent(super::robots::DISALLOWED.into()).into());
                }
                verdict.delay
            }
            None => None,
        };
        let left = http.timeout.checked_sub(spent).filter(|l| !l.is_zero());
        let left = left.ok_or_else(|| StepError::Transient(format!("{url}: timed out")))?;
        let visit = http.hosts.visit(&at, delay).await;
        let sent = std::time::Instant::now();
        // The rest of the limit covers this hop's answer and, on the last hop, its body.
        let response = http
            .pages
            .get(at.clone())
            .header(reqwest::header::ACCEPT, "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5")
            .timeout(left)
            .send()
            .await
            .map_err(net::classify)?;
        spent += sent.elapsed();
        let next = response
            .status()
            .is_redirection()
            .then(|| response.headers().get(reqwest::header::LOCATION))
            .flatten()
            .and_then(|l| l.to_str().ok())
            .and_then(|l| at.join(l).ok());
        match next {
            Some(next) => at = next,
            None => return read_page(http, response, visit).await,
        }
    }
    Err(StepError::Permanent(format!("{url}: more than {} redirects", net::MAX_REDIRECTS)).into())
}

/// The page a fetch ended on, read while its host's slot (`_visit`) is held.
async fn read_page(http: &Http, response: reqwest::Response, _visit: Visit) -> Result<Page, FetchError> {
    let status = response.status();
    let code = status.as_u16();
    let final_url = response.url().clone();
    let failed = |error| FetchError { status: Some(code), error };
    if matches!(status, reqwest::StatusCode::TOO_MANY_REQUESTS | reqwest::StatusCode::SERVICE_UNAVAILABLE) {
        // A site that says when to come back cools its host until then (SPEC section
        // 12): the job goes on with other hosts. One that does not is retried like a
        // 5xx.
        let header = response.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok());
        if let Some(header) = header {
            let wait = super::llm::retry_after(Some(header), std::time::SystemTime::now());
            http.hosts.cool(&final_url, wait);
            let host = final_url.host_str().unwrap_or("the site");
            let reason = format!("{host} asked to wait (HTTP {code}, Retry-After {}s)", wait.as_secs());
            return Err(failed(StepError::Cooling { reason }));
        }
    }
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        // The site may be back in a moment; the runner retries with backoff.
        return Err(failed(StepError::Transient(format!("HTTP {code} from {final_url}"))));
    }
    if !status.is_success() {
        return Err(failed(StepError::Permanent(format!("HTTP {code} from {final_url}"))));
    }
    let content_type =
        response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let mime = content_type.split(';').next().unwrap_or("").trim();
    // Servers that send no type at all are usually serving HTML anyway.
    if !matches!(mime, "" | "text/html" | "application/xhtml+xml") {
        return Err(failed(StepError::Permanent(format!("{final_url} is not an HTML page (content type {mime})"))));
    }
    let headers = response.headers().clone();
    let body = http.read_capped(response).await.map_err(failed)?;
    Ok(Page { final_url, status: code, headers, html: String::from_utf8_lossy(&body).into_owned() })
}
