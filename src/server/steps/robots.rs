//! robots.txt (SPEC section 12): read once per host with jobdeck's user agent, kept for
//! a day and shared by every job of the process; a page it disallows is never fetched,
//! and its `Crawl-delay` spaces the host's requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio::time::Instant;
use url::Url;

use super::hosts::origin;
use super::net::{read_at_most, Http};

/// How long a host's rules are kept.
pub const KEEP: Duration = Duration::from_secs(24 * 3600);
/// How long "no rules could be read" (a timeout, a 5xx) is kept before asking again.
const KEEP_UNREAD: Duration = Duration::from_secs(3600);
/// The most of a robots.txt read (RFC 9309 asks for at least 500 KiB).
const MAX_BYTES: usize = 512 * 1024;
/// The longest `Crawl-delay` honoured.
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// Hosts whose rules are kept; past this, the oldest half is dropped.
const MAX_HOSTS: usize = 20_000;

/// The product token jobdeck's rules are looked up under.
pub const AGENT: &str = "jobdeck";

/// A host's rules as read: `None` allows everything.
struct Rules {
    robot: Option<texting_robots::Robot>,
    delay: Option<Duration>,
    read_at: Instant,
    keep: Duration,
}

/// What a host's robots.txt says of one URL.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Verdict {
    pub allowed: bool,
    /// The host's `Crawl-delay` (at most [`MAX_DELAY`]).
    pub delay: Option<Duration>,
}

/// Every host's robots.txt, read on first need.
#[derive(Default)]
pub struct Robots {
    hosts: Mutex<HashMap<String, Arc<OnceCell<Rules>>>>,
}

/// Why a URL may not be fetched.
pub const DISALLOWED: &str = "disallowed by robots.txt";

impl Robots {
    fn cell(&self, origin: &str) -> Arc<OnceCell<Rules>> {
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cell) = hosts.get(origin) {
            let stale = cell.get().is_some_and(|r| r.read_at.elapsed() > r.keep);
            if !stale {
                return cell.clone();
            }
        }
        if hosts.len() >= MAX_HOSTS {
            let now = Instant::now();
            let mut ages: Vec<Duration> = hosts.values().filter_map(|c| c.get().map(|r| now - r.read_at)).collect();
            ages.sort_unstable();
            let cut = ages.get(ages.len() / 2).copied().unwrap_or_default();
            hosts.retain(|_, c| c.get().is_none_or(|r| now - r.read_at < cut));
        }
        let cell = Arc::new(OnceCell::new());
        hosts.insert(origin.to_string(), cell.clone());
        cell
    }

    /// Whether `url` may be fetched, and how far apart its host's requests go, reading
    /// the host's robots.txt first if it is not known.
    pub async fn check(&self, http: &Http, url: &Url) -> Verdict {
        let cell = self.cell(&origin(url));
        let rules = cell.get_or_init(|| read(http, url)).await;
        Verdict { allowed: rules.robot.as_ref().is_none_or(|r| r.allowed(url.as_str())), delay: rules.delay }
    }
}

/// Reads `url`'s host's robots.txt: 2xx gives its rules; 4xx (none there) allows
/// everything for a day; a 5xx or no answer allows everything, asked again in an hour.
async fn read(http: &Http, url: &Url) -> Rules {
    let read_at = Instant::now();
    let allow = |keep| Rules { robot: None, delay: None, read_at, keep };
    let Ok(robots_url) = url.join("/robots.txt") else { return allow(KEEP) };
    let response = {
        let _visit = http.hosts.visit(&robots_url, None).await;
        match http.client.get(robots_url).send().await {
            Ok(r) => r,
            Err(_) => return allow(KEEP_UNREAD),
        }
    };
    let status = response.status();
    if status.is_client_error() {
        return allow(KEEP);
    }
    if !status.is_success() {
        return allow(KEEP_UNREAD);
    }
    let Ok((body, _)) = read_at_most(response, MAX_BYTES).await else { return allow(KEEP_UNREAD) };
    // A big file's rules are compiled off the async threads.
    let robot = tokio::task::spawn_blocking(move || texting_robots::Robot::new(AGENT, &body).ok()).await.ok().flatten();
    let delay = robot
        .as_ref()
        .and_then(|r| r.delay)
        .filter(|d| d.is_finite() && *d > 0.0)
        .map(|d| Duration::from_secs_f32(d.min(MAX_DELAY.as_secs_f32())));
    Rules { robot, delay, read_at, keep: KEEP }
}
