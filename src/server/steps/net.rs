//! The outbound HTTP client every step uses: time-outs, a redirect limit, a clear user
//! agent, a body-size cap, and no private or loopback targets unless allowed.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use super::hosts::Hosts;
use super::robots::Robots;
use super::StepError;
use crate::server::config::RunnerConfig;

/// True for addresses a public website never has: private, loopback, link-local,
/// reserved and special-purpose ranges, and IPv6 forms that embed such an IPv4
/// address (mapped, NAT64, 6to4) or tunnel to one.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => is_private_v6(v6),
    }
}

fn is_private_v4(v4: Ipv4Addr) -> bool {
    let [a, b, c, _] = v4.octets();
    v4.is_private()
        || v4.is_loopback()
        || v4.is_link_local()
        || v4.is_broadcast()
        || v4.is_documentation()
        || v4.is_unspecified()
        || v4.is_multicast()
        || a == 0 // 0.0.0.0/8, "this network"
        || (a == 100 && (b & 0xC0) == 64) // 100.64.0.0/10, carrier-grade NAT
        || (a == 192 && b == 0 && c == 0) // 192.0.0.0/24, IETF protocol assignments
        || (a == 198 && (b & 0xFE) == 18) // 198.18.0.0/15, benchmarking
        || a >= 240 // 240.0.0.0/4, reserved
}

fn is_private_v6(v6: Ipv6Addr) -> bool {
    let seg = v6.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if let Some(v4) = v6.to_ipv4_mapped() {
        return is_private_v4(v4); // ::ffff:a.b.c.d
    }
    match seg {
        // ::/96: unspecified, loopback and the deprecated IPv4-compatible ::a.b.c.d.
        [0, 0, 0, 0, 0, 0, _, _] => true,
        // 64:ff9b::/96, NAT64: the IPv4 address it reaches.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => is_private_v4(embedded(hi, lo)),
        // 64:ff9b:1::/48, local-use NAT64.
        [0x64, 0xff9b, 1, ..] => true,
        // 2002::/16, 6to4: the IPv4 address of the relay's far end.
        [0x2002, hi, lo, ..] => is_private_v4(embedded(hi, lo)),
        // 2001::/32 Teredo tunnels and 2001:db8::/32 documentation.
        [0x2001, 0, ..] | [0x2001, 0xdb8, ..] => true,
        // 100::/64, discard-only.
        [0x100, 0, 0, 0, ..] => true,
        [first, ..] => {
            v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // fc00::/7, unique local
                || (first & 0xffc0) == 0xfe80 // fe80::/10, link local
                || (first & 0xffc0) == 0xfec0 // fec0::/10, site local (deprecated)
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
    /// The same client that follows no redirect: research follows them hop by hop, so
    /// each hop's host is asked for its robots.txt and takes one of its slots.
    pub pages: reqwest::Client,
    pub allow_private: bool,
    pub max_body_bytes: usize,
    /// One request's time limit; research's redirect hops share one such limit.
    pub timeout: Duration,
    /// Requests in flight and cool-downs per host, over every job (SPEC section 12).
    pub hosts: Arc<Hosts>,
    /// Every host's robots.txt; `None` when the operator set `JOBDECK_ROBOTS=ignore`.
    pub robots: Option<Arc<Robots>>,
}

/// Requests in flight to one host when nothing else is configured.
pub const HOST_CONCURRENCY: usize = 2;

impl Http {
    pub fn new(cfg: &RunnerConfig) -> Result<Self, reqwest::Error> {
        let http = Self::build(cfg.request_timeout(), &cfg.user_agent, cfg.allow_private_targets, cfg.max_body_bytes)?;
        let robots = (!cfg.ignores_robots()).then(|| Arc::new(Robots::default()));
        Ok(Self { hosts: Arc::new(Hosts::new(cfg.host_concurrency)), robots, ..http })
    }

    pub fn build(
        timeout: Duration,
        user_agent: &str,
        allow_private: bool,
        max_body_bytes: usize,
    ) -> Result<Self, reqwest::Error> {
        let builder = |redirect| {
            let mut builder = reqwest::Client::builder()
                .user_agent(user_agent)
                .timeout(timeout)
                .connect_timeout(timeout.min(Duration::from_secs(10)))
                .redirect(redirect)
                // An account's pages are fetched within seconds of each other, and the
                // next account is another site: a connection idle for longer is never
                // used again, and at thousands of sites a second those would use up the
                // open files.
                .pool_idle_timeout(Duration::from_secs(5))
                // A proxy from the environment would resolve names itself, past the check
                // below: requests go straight to the address the check let through.
                .no_proxy();
            if !allow_private {
                builder = builder.dns_resolver(Arc::new(PublicOnly));
            }
            builder.build()
        };
        Ok(Self {
            client: builder(redirect_policy(allow_private))?,
            pages: builder(reqwest::redirect::Policy::none())?,
            allow_private,
            max_body_bytes,
            timeout,
            hosts: Arc::new(Hosts::new(HOST_CONCURRENCY)),
            robots: Some(Arc::new(Robots::default())),
        })
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
    pub async fn read_capped(&self, response: reqwest::Response) -> Result<Vec<u8>, StepError> {
        read_at_most(response, self.max_body_bytes).await.map(|(body, _)| body)
    }
}

/// Reads at most `max` bytes of a response body and says whether there was more;
/// the rest is never downloaded.
pub async fn read_at_most(mut response: reqwest::Response, max: usize) -> Result<(Vec<u8>, bool), StepError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(classify)? {
        let room = max.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if chunk.len() > room {
            return Ok((body, true));
        }
    }
    Ok((body, false))
}

/// Redirects followed for one page.
pub const MAX_REDIRECTS: usize = 5;

fn redirect_policy(allow_private: bool) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
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

/// Sorts a request error into transient (retry) or permanent (fail the item at
/// once). Only what another try may fix is transient: a timeout or a connection
/// reset or cut off mid-answer. A name that does not resolve (or only to private
/// addresses), a refused connection or a TLS failure will fail the same way again.
pub fn classify(e: reqwest::Error) -> StepError {
    let text = for_people(&e);
    if is_transient(&e) {
        StepError::Transient(text)
    } else {
        StepError::Permanent(text)
    }
}

fn is_transient(e: &reqwest::Error) -> bool {
    use std::io::ErrorKind;
    if e.is_timeout() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                ErrorKind::TimedOut
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::BrokenPipe
                    | ErrorKind::UnexpectedEof
            ) {
                return true;
            }
        }
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            // The server closed the connection before the answer was complete.
            if h.is_incomplete_message() || h.is_canceled() || h.is_timeout() {
                return true;
            }
        }
        source = s.source();
    }
    false
}

/// The longest error line people read (SPEC section 16).
pub const MAX_REASON_CHARS: usize = 120;

/// Room left at the end of a reach sentence for the runner's note, " (gave up after
/// 10 attempts)".
const NOTE_ROOM: usize = 30;

/// A request's failure as people read it, "could not reach HOST (reason)" in at most
/// [`MAX_REASON_CHARS`], then, after a line break, the whole chain of causes (the
/// detail a failed item keeps for the export; see `Finish::failed`).
pub fn for_people(e: &reqwest::Error) -> String {
    let host = e.url().and_then(|u| u.host_str()).unwrap_or("the site");
    format!("{}\n{}", reach_sentence(host, &short_reason(e)), describe(e))
}

/// "could not reach HOST (reason)", the host cut short before the reason is.
pub fn reach_sentence(host: &str, reason: &str) -> String {
    let limit = MAX_REASON_CHARS - NOTE_ROOM;
    let room = limit.saturating_sub("could not reach  ()".len() + reason.chars().count());
    let host: String = if host.chars().count() > room {
        host.chars().take(room.saturating_sub(1)).chain(std::iter::once('…')).collect()
    } else {
        host.to_string()
    };
    let line = format!("could not reach {host} ({reason})");
    line.chars().take(limit).collect()
}

/// The cause of a request's failure in a few words.
fn short_reason(e: &reqwest::Error) -> String {
    use std::io::ErrorKind;
    if e.is_timeout() {
        return "no answer in time".into();
    }
    let mut source = std::error::Error::source(e);
    let mut last = None;
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            match io.kind() {
                ErrorKind::ConnectionRefused => return "connection refused".into(),
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => return "connection reset".into(),
                ErrorKind::TimedOut => return "no answer in time".into(),
                _ => {}
            }
        }
        let text = s.to_string().to_lowercase();
        if text.contains("dns error") || text.contains("failed to lookup address") {
            return "no such host".into();
        }
        if text.contains("certificate") {
            return "its certificate is not valid".into();
        }
        if text.contains("private address") {
            return "a private address, which jobdeck does not visit".into();
        }
        last = Some(s.to_string());
        source = s.source();
    }
    if e.is_redirect() {
        return "too many redirects".into();
    }
    let cause = last.unwrap_or_else(|| e.to_string());
    let cause = cause.split(':').next_back().unwrap_or(&cause).trim().to_string();
    crate::server::import::cut_chars(&cause, 60)
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

    /// Every range the guard refuses, with an address at each edge where it has one,
    /// and public neighbours that must stay reachable.
    #[test]
    fn every_private_range_is_refused_and_public_neighbours_are_not() {
        let private = [
            ("0.0.0.0/8", &["0.0.0.0", "0.255.255.255"][..]),
            ("10.0.0.0/8", &["10.0.0.0", "10.255.255.255"]),
            ("100.64.0.0/10", &["100.64.0.0", "100.127.255.255"]),
            ("127.0.0.0/8", &["127.0.0.1", "127.255.255.254"]),
            ("169.254.0.0/16", &["169.254.0.1", "169.254.169.254"]),
            ("172.16.0.0/12", &["172.16.0.0", "172.31.255.255"]),
            ("192.0.0.0/24", &["192.0.0.0", "192.0.0.255"]),
            ("192.0.2.0/24", &["192.0.2.1"]),
            ("192.168.0.0/16", &["192.168.0.1", "192.168.255.255"]),
            ("198.18.0.0/15", &["198.18.0.0", "198.19.255.255"]),
            ("198.51.100.0/24", &["198.51.100.7"]),
            ("203.0.113.0/24", &["203.0.113.9"]),
            ("224.0.0.0/4", &["224.0.0.1", "239.255.255.255"]),
            ("240.0.0.0/4", &["240.0.0.0", "255.255.255.254", "255.255.255.255"]),
            ("::/128, ::1/128", &["::", "::1"]),
            ("IPv4-compatible ::a.b.c.d", &["::8.8.8.8", "::127.0.0.1", "::10.0.0.1"]),
            ("IPv4-mapped ::ffff:0:0/96", &["::ffff:127.0.0.1", "::ffff:10.1.1.1", "::ffff:169.254.169.254"]),
            ("NAT64 64:ff9b::/96 to a private address", &["64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b::a00:1"]),
            ("local-use NAT64 64:ff9b:1::/48", &["64:ff9b:1::1", "64:ff9b:1:ffff::8.8.8.8"]),
            ("6to4 2002::/16 to a private address", &["2002:7f00:1::", "2002:a00:1::1", "2002:c0a8:101::"]),
            ("Teredo 2001::/32", &["2001::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2"]),
            ("documentation 2001:db8::/32", &["2001:db8::1"]),
            ("discard-only 100::/64", &["100::1"]),
            ("unique local fc00::/7", &["fc00::1", "fd12:3456::1"]),
            ("link local fe80::/10", &["fe80::1", "febf::1"]),
            ("site local fec0::/10", &["fec0::1", "feff::1"]),
            ("multicast ff00::/8", &["ff02::1", "ff0e::1"]),
        ];
        for (range, ips) in private {
            for ip in ips {
                assert!(is_private(ip.parse().unwrap()), "{ip} is in {range} and must be refused");
            }
        }
        let public = [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700::1111",
            "2a00:1450:4001::200e",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "::ffff:8.8.8.8",
            "2001:4860:4860::8888",
        ];
        for ip in public {
            assert!(!is_private(ip.parse().unwrap()), "{ip} is public");
        }
    }

    /// A server on loopback that misbehaves in one way per connection.
    async fn misbehaving(reply: &'static str) -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = sock.read(&mut buf).await;
                    match reply {
                        // Reset: linger 0 makes close send RST instead of FIN.
                        "reset" => {
                            let std = sock.into_std().unwrap();
                            socket2::SockRef::from(&std).set_linger(Some(Duration::ZERO)).unwrap();
                            drop(std);
                        }
                        "cut" => {
                            let _ =
                                sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nonly a little").await;
                        }
                        _ => tokio::time::sleep(Duration::from_secs(30)).await,
                    }
                });
            }
        });
        addr
    }

    async fn classify_get(http: &Http, url: &str) -> StepError {
        match http.client.get(url).send().await {
            Ok(response) => http.read_capped(response).await.map(|_| ()).expect_err("the request must fail"),
            Err(e) => classify(e),
        }
    }

    #[test]
    fn the_reach_sentence_stays_within_its_length_however_long_the_host() {
        assert_eq!(reach_sentence("acme.example", "no such host"), "could not reach acme.example (no such host)");
        let host = format!("{}.example", "a".repeat(300));
        let line = reach_sentence(&host, "connection refused");
        assert!(line.chars().count() + " (gave up after 10 attempts)".len() <= MAX_REASON_CHARS, "{line}");
        assert!(line.starts_with("could not reach aaa") && line.ends_with("… (connection refused)"), "{line}");
    }

    #[tokio::test]
    async fn only_what_another_try_may_fix_is_transient() {
        let http = Http::build(Duration::from_millis(500), "t", true, 1 << 20).unwrap();
        let reset = misbehaving("reset").await;
        let cut = misbehaving("cut").await;
        let silent = misbehaving("silent").await;
        for (what, url) in [
            ("a connection reset", format!("http://{reset}/")),
            ("an answer cut off", format!("http://{cut}/")),
            ("a timeout", format!("http://{silent}/")),
        ] {
            let e = classify_get(&http, &url).await;
            assert!(matches!(e, StepError::Transient(_)), "{what} must be retried: {e:?}");
        }
        // TLS spoken to a plain-HTTP server, and a refused connection: permanent.
        let plain = misbehaving("cut").await;
        let tls = classify_get(&http, &format!("https://{plain}/")).await;
        assert!(matches!(tls, StepError::Permanent(_)), "a TLS failure fails at once: {tls:?}");
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let refused = classify_get(&http, &format!("http://{closed}/")).await;
        assert!(matches!(refused, StepError::Permanent(_)), "a refused connection fails at once: {refused:?}");
        // A name that resolves to no public address (the strict resolver): permanent.
        let strict = Http::build(Duration::from_millis(500), "t", false, 1 << 20).unwrap();
        let e = classify_get(&strict, "http://localhost/").await;
        assert!(matches!(e, StepError::Permanent(ref r) if r.contains("no public address")), "{e:?}");
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
