//! The outbound HTTP client every step uses: time-outs, a redirect limit, a clear user
//! agent, a body-size cap, and no private or loopback targets unless allowed.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use super::StepError;
use crate::server::config::RunnerConfig;

/// True for addresses a public website never has.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_unspecified()
                || v4.is_multicast()
                // 100.64.0.0/10, carrier-grade NAT
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xC0) == 64)
                || v4.octets()[0] == 0
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (v6.segments()[0] & 0xfe00) == 0xfc00 // unique local
                || (v6.segments()[0] & 0xffc0) == 0xfe80 // link local
        }
    }
}

/// Resolves names and drops private addresses, so no redirect or DNS answer can
/// steer a request into the host's own network.
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.filter(|a| !is_private(a.ip())).collect();
            if addrs.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The shared outbound client and the limits that go with it.
#[derive(Clone)]
pub struct Http {
    pub client: reqwest::Client,
    pub allow_private: bool,
    pub max_body_bytes: usize,
}

impl Http {
    pub fn new(cfg: &RunnerConfig) -> Result<Self, reqwest::Error> {
        Self::build(cfg.request_timeout(), &cfg.user_agent, cfg.allow_private_targets, cfg.max_body_bytes)
    }

    pub fn build(
        timeout: Duration,
        user_agent: &str,
        allow_private: bool,
        max_body_bytes: usize,
    ) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .user_agent(user_agent)
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(redirect_policy(allow_private))
            .pool_idle_timeout(Duration::from_secs(30));
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        Ok(Self { client: builder.build()?, allow_private, max_body_bytes })
    }

    /// Refuses a URL whose host is a private IP literal (names are checked by the
    /// resolver) or whose scheme is not http(s).
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), StepError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(StepError::Permanent(format!("unsupported URL scheme `{}`", url.scheme())));
        }
        if self.allow_private {
            return Ok(());
        }
        let private = match url.host() {
            Some(url::Host::Ipv4(ip)) => is_private(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => is_private(IpAddr::V6(ip)),
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost") || d.ends_with(".localhost"),
            None => true,
        };
        if private {
            return Err(StepError::Permanent(format!(
                "{} is a private address; set allow_private_targets to reach it",
                url.host_str().unwrap_or("")
            )));
        }
        Ok(())
    }

    /// Reads at most `max_body_bytes` of a response body; the rest is not downloaded.
    pub async fn read_capped(&self, mut response: reqwest::Response) -> Result<Vec<u8>, StepError> {
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            let room = self.max_body_bytes.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= self.max_body_bytes {
                break;
            }
        }
        Ok(body)
    }
}

fn redirect_policy(allow_private: bool) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= 5 {
            return attempt.error("too many redirects");
        }
        if !allow_private {
            let private = match attempt.url().host() {
                Some(url::Host::Ipv4(ip)) => is_private(IpAddr::V4(ip)),
                Some(url::Host::Ipv6(ip)) => is_private(IpAddr::V6(ip)),
                _ => false,
            };
            if private {
                return attempt.error("redirect to a private address");
            }
        }
        attempt.follow()
    })
}

/// Sorts a request error into transient (retry) or permanent (fail the item).
pub fn classify(e: reqwest::Error) -> StepError {
    let text = describe(&e);
    if e.is_timeout() || e.is_connect() || e.is_request() || e.is_body() || e.is_decode() {
        // Connection refused to a resolvable name is as likely a blip as a dead site;
        // the retry budget is small, so try again.
        StepError::Transient(text)
    } else {
        StepError::Permanent(text)
    }
}

/// A one-line reason with the root cause, for people.
pub fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() { "timed out".to_string() } else { e.to_string() };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.4",
            "169.254.1.1",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700::1111"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn private_literals_are_refused_unless_allowed() {
        let strict = Http::build(Duration::from_secs(1), "t", false, 1024).unwrap();
        let url = reqwest::Url::parse("http://127.0.0.1:8080/").unwrap();
        assert!(matches!(strict.check_url(&url), Err(StepError::Permanent(_))));
        let local = reqwest::Url::parse("http://localhost/").unwrap();
        assert!(strict.check_url(&local).is_err());
        let open = Http::build(Duration::from_secs(1), "t", true, 1024).unwrap();
        assert!(open.check_url(&url).is_ok());
        let ftp = reqwest::Url::parse("ftp://example.com/").unwrap();
        assert!(open.check_url(&ftp).is_err());
    }
}
