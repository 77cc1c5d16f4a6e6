//! SPEC section 11: what a browser may ask of jobdeck on behalf of a page.
//!
//! jobdeck usually runs on the operator's machine, with no token, beside a browser that
//! visits any site. Two layers keep those sites out:
//! - [`check_host`]: a request whose `Host` is not a name this server answers to (a
//!   loopback name or address, the address served on, the public URL's host, or one of
//!   `JOBDECK_ALLOWED_HOSTS`) is refused before anything reads a page or data. A page on
//!   a domain that re-resolves to 127.0.0.1 (DNS rebinding) sends its own name as Host.
//! - [`check_origin`]: a request that changes anything (every method but GET, HEAD and
//!   OPTIONS) is refused when the browser says it comes from another site (`Origin` not
//!   this server's own, or `Sec-Fetch-Site` cross-site or same-site). Browsers send these
//!   headers on every such request and no page can remove them; programs (curl, scripts,
//!   the tests) send neither and go on.
//!
//! Both run before any body is read.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{HOST, ORIGIN};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// The names and addresses this server answers to; cheap to clone.
#[derive(Clone, Debug)]
pub struct Hosts(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// Lower-case names without a port (`JOBDECK_ALLOWED_HOSTS`, the public URL's host).
    names: HashSet<String>,
    /// `*` in `JOBDECK_ALLOWED_HOSTS`: every name (a proxy in front checks them).
    any_name: bool,
    /// The address served on; unspecified (`0.0.0.0`) means every address of the machine.
    served: Option<IpAddr>,
    /// The public URL's origin (`https://jobs.example.com`), which a proxy in front may
    /// present to browsers while forwarding another Host.
    public_origin: Option<String>,
}

impl Hosts {
    /// `site_addr` is the address served on, `public_url` the address people use
    /// (`JOBDECK_PUBLIC_URL`, may be empty), `allowed` the comma-separated extra names.
    pub fn new(site_addr: &str, public_url: &str, allowed: &str) -> Self {
        let served = site_addr.parse::<std::net::SocketAddr>().ok().map(|a| a.ip());
        let mut names = HashSet::new();
        let mut any_name = false;
        for entry in allowed.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                any_name = true;
            } else if let Some((host, _)) = split_host(entry) {
                names.insert(host);
            }
        }
        let public = url::Url::parse(public_url.trim()).ok().filter(|u| matches!(u.scheme(), "http" | "https"));
        let public_origin = public.as_ref().map(|u| u.origin().ascii_serialization());
        if let Some(host) = public.as_ref().and_then(|u| u.host_str()) {
            names.insert(normal_name(host));
        }
        Self(Arc::new(Inner { names, any_name, served, public_origin }))
    }

    /// Whether `host` (a Host header: a name or address, with or without a port) is one
    /// this server answers to.
    pub fn allows(&self, host: &str) -> bool {
        let Some((host, _)) = split_host(host) else { return false };
        if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            // An address cannot be re-pointed at this machine by another site's DNS.
            return ip.is_loopback()
                || self.0.served.is_some_and(|served| served == ip || served.is_unspecified())
                || self.0.names.contains(&host);
        }
        host == "localhost" || host.ends_with(".localhost") || self.0.any_name || self.0.names.contains(&host)
    }

    /// Whether a browser's `Origin` is this server's own: the same host and port as the
    /// request's `Host`, or the public URL's origin.
    fn same_origin(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = origin.trim();
        if self.0.public_origin.as_deref().is_some_and(|o| o.eq_ignore_ascii_case(origin)) {
            return true;
        }
        let Some((scheme, authority)) = origin.split_once("://") else { return false };
        let default_port = match scheme.to_ascii_lowercase().as_str() {
            "http" => 80,
            "https" => 443,
            _ => return false,
        };
        let (Some(origin), Some(host)) = (split_host(authority), host.and_then(split_host)) else { return false };
        origin.0 == host.0 && origin.1.unwrap_or(default_port) == host.1.unwrap_or(default_port)
    }
}

/// A host without trailing dot, lower-case.
fn normal_name(host: &str) -> String {
    host.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// `host[:port]` (or `[v6]:port`) as the lower-case host and the port, if any; `None`
/// when it is not of that shape.
fn split_host(text: &str) -> Option<(String, Option<u16>)> {
    let text = text.trim();
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (format!("[{}]", v6.to_ascii_lowercase()), port)
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) => (normal_name(h), Some(p)),
            None => (normal_name(text), None),
        }
    };
    if host.is_empty() || host.contains(['/', '@', '\\', ' ']) {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) => Some(p.parse::<u16>().ok()?),
    };
    Some((host, port))
}

fn refuse(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// The request's Host: the header, or the authority of an absolute request target.
fn host_of(request: &Request) -> Option<&str> {
    request.headers().get(HOST).and_then(|v| v.to_str().ok()).or_else(|| request.uri().authority().map(|a| a.as_str()))
}

/// Middleware: refuses (421) a request for a name this server does not answer to. A
/// request with no Host at all (HTTP/1.0, in-process tests) names nothing and goes on.
pub async fn check_host(State(hosts): State<Hosts>, request: Request, next: Next) -> Response {
    if let Some(host) = host_of(&request) {
        if !hosts.allows(host) {
            let shown: String = host.chars().take(100).collect();
            return refuse(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "this jobdeck does not answer to the name `{shown}`; open it by its own address \
                     (127.0.0.1 or localhost), or add the name to JOBDECK_ALLOWED_HOSTS"
                ),
            );
        }
    }
    next.run(request).await
}

/// Middleware: refuses (403) a request that changes something when the browser says
/// another site sent it.
pub async fn check_origin(State(hosts): State<Hosts>, request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(request).await;
    }
    let fetch_site = request.headers().get("sec-fetch-site").and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(site @ ("cross-site" | "same-site")) = fetch_site.map(str::to_ascii_lowercase).as_deref() {
        return refuse(
            StatusCode::FORBIDDEN,
            format!("refused: the browser says this request came from another site (Sec-Fetch-Site: {site}); jobdeck takes changes only from its own pages"),
        );
    }
    if let Some(origin) = request.headers().get(ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !hosts.same_origin(origin, host_of(&request)) {
            let shown: String = origin.chars().take(100).collect();
            return refuse(
                StatusCode::FORBIDDEN,
                format!("refused: this request came from another origin ({shown}); jobdeck takes changes only from its own pages"),
            );
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_the_served_address_and_named_hosts_are_answered() {
        let hosts = Hosts::new("127.0.0.1:3000", "https://jobs.example.com/", "deck.internal, other.example:8080");
        for ok in [
            "127.0.0.1:3000",
            "127.0.0.2",
            "localhost:3000",
            "LOCALHOST.",
            "app.localhost",
            "[::1]:3000",
            "jobs.example.com",
            "deck.internal:3000",
            "other.example",
        ] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for refused in ["rebind.evil.example:3000", "10.0.0.1:3000", "localhost.evil.example", "", "a b", "x:notaport"]
        {
            assert!(!hosts.allows(refused), "{refused:?}");
        }
        let everywhere = Hosts::new("0.0.0.0:3000", "", "");
        assert!(everywhere.allows("192.168.1.5:3000") && !everywhere.allows("evil.example"));
        assert!(Hosts::new("127.0.0.1:3000", "", "*").allows("anything.example"));
    }

    #[test]
    fn an_origin_is_ours_only_with_the_same_host_and_port() {
        let hosts = Hosts::new("127.0.0.1:3000", "https://jobs.example.com", "");
        assert!(hosts.same_origin("http://127.0.0.1:3000", Some("127.0.0.1:3000")));
        assert!(hosts.same_origin("http://LocalHost:3000", Some("localhost:3000")));
        assert!(hosts.same_origin("http://localhost", Some("localhost:80")));
        assert!(hosts.same_origin("https://jobs.example.com", Some("127.0.0.1:3000")), "behind a proxy");
        assert!(!hosts.same_origin("http://127.0.0.1:4000", Some("127.0.0.1:3000")), "another port is another origin");
        assert!(!hosts.same_origin("https://evil.example", Some("127.0.0.1:3000")));
        assert!(!hosts.same_origin("null", Some("127.0.0.1:3000")));
        assert!(!hosts.same_origin("http://127.0.0.1:3000", None));
    }
}
