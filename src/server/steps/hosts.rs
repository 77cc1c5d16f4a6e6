//! Politeness toward the sites a job visits (SPEC section 12), in this process: at most
//! a few requests in flight per host over every job, and a host that answered 429 or
//! 503 with `Retry-After` left alone until then.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use url::Url;

/// The longest a host is left alone for one `Retry-After`: a site asking for a day
/// would otherwise hold its items in flight for a day.
pub const MAX_COOL: Duration = Duration::from_secs(15 * 60);

/// Hosts are forgotten once idle and this many are known, so a job over a million
/// sites keeps only the busy or cooling ones.
const PRUNE_AT: usize = 4096;

/// Every host's requests in flight and cool-down, shared by every job of the process.
pub struct Hosts {
    limit: usize,
    table: Mutex<Table>,
}

struct Table {
    hosts: HashMap<String, Arc<Host>>,
    prune_at: usize,
}

struct Host {
    slots: Arc<Semaphore>,
    cool_until: Mutex<Option<Instant>>,
    /// The earliest the next request may start, under a `Crawl-delay`.
    next_start: Mutex<Option<Instant>>,
}

impl Host {
    fn cooling(&self) -> Option<Instant> {
        let until = *self.cool_until.lock().unwrap_or_else(|e| e.into_inner());
        until.filter(|t| *t > Instant::now())
    }

    fn spaced(&self) -> bool {
        self.next_start.lock().unwrap_or_else(|e| e.into_inner()).is_some_and(|t| t > Instant::now())
    }

    /// When a request that may start now under `delay` starts; the next one then
    /// waits `delay` after it.
    fn start_at(&self, delay: Duration) -> Instant {
        let mut next = self.next_start.lock().unwrap_or_else(|e| e.into_inner());
        let start = next.filter(|t| *t > Instant::now()).unwrap_or_else(Instant::now);
        *next = Some(start + delay);
        start
    }
}

tokio::task_local! {
    /// The item whose work runs on this task, so a wait for its host is counted.
    pub static ITEM: Arc<ItemWaits>;
}

/// One item's requests waiting for their hosts, and its job's count of such items.
#[derive(Debug, Default)]
pub struct ItemWaits {
    job: Arc<AtomicI64>,
    mine: AtomicUsize,
}

impl ItemWaits {
    pub fn new(job: Arc<AtomicI64>) -> Self {
        Self { job, mine: AtomicUsize::new(0) }
    }
}

/// Counts the task's item as waiting while it lives (an item with several requests
/// waiting counts once).
struct Waiting(Option<Arc<ItemWaits>>);

impl Waiting {
    fn start() -> Self {
        let item = ITEM.try_with(Arc::clone).ok();
        if let Some(item) = &item {
            if item.mine.fetch_add(1, Ordering::Relaxed) == 0 {
                item.job.fetch_add(1, Ordering::Relaxed);
            }
        }
        Self(item)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(item) = &self.0 {
            if item.mine.fetch_sub(1, Ordering::Relaxed) == 1 {
                item.job.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// A request's place among its host's: the host's slot is free again when it drops.
pub struct Visit {
    _slot: OwnedSemaphorePermit,
}

/// The host a request counts against: scheme, host and port.
pub fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

impl Hosts {
    /// Hosts that take at most `limit` requests at once each (at least 1).
    pub fn new(limit: usize) -> Self {
        Self { limit: limit.max(1), table: Mutex::new(Table { hosts: HashMap::new(), prune_at: PRUNE_AT }) }
    }

    fn host(&self, origin: &str) -> Arc<Host> {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(host) = table.hosts.get(origin) {
            return host.clone();
        }
        if table.hosts.len() >= table.prune_at {
            let limit = self.limit;
            // Idle: no request in flight, none waiting (only the table holds it), and
            // not cooling.
            table.hosts.retain(|_, h| {
                Arc::strong_count(h) > 1 || h.slots.available_permits() < limit || h.cooling().is_some() || h.spaced()
            });
            table.prune_at = (table.hosts.len() * 2).max(PRUNE_AT);
        }
        let host = Arc::new(Host {
            slots: Arc::new(Semaphore::new(self.limit)),
            cool_until: Mutex::new(None),
            next_start: Mutex::new(None),
        });
        table.hosts.insert(origin.to_string(), host.clone());
        host
    }

    /// Waits until `url`'s host is not cooling and has a free slot, and takes it; under
    /// a `delay` (robots.txt's `Crawl-delay`), also until `delay` after the host's
    /// request before.
    pub async fn visit(&self, url: &Url, delay: Option<Duration>) -> Visit {
        let host = self.host(&origin(url));
        // Counted from the first wait to the start of the request.
        let mut waiting = None;
        loop {
            if let Some(until) = host.cooling() {
                waiting.get_or_insert_with(Waiting::start);
                tokio::time::sleep_until(until).await;
            }
            let slot = match host.slots.clone().try_acquire_owned() {
                Ok(slot) => slot,
                Err(_) => {
                    waiting.get_or_insert_with(Waiting::start);
                    host.slots.clone().acquire_owned().await.expect("a host's slots are never closed")
                }
            };
            // A cool-down that began while this request waited for its slot.
            if host.cooling().is_some() {
                continue;
            }
            if let Some(delay) = delay {
                let at = host.start_at(delay);
                if at > Instant::now() {
                    waiting.get_or_insert_with(Waiting::start);
                    tokio::time::sleep_until(at).await;
                }
            }
            return Visit { _slot: slot };
        }
    }

    /// `url`'s host asked to be left alone for `wait` (at most [`MAX_COOL`]): no
    /// request to it starts before then. A later time already set is kept.
    pub fn cool(&self, url: &Url, wait: Duration) {
        let host = self.host(&origin(url));
        let until = Instant::now() + wait.min(MAX_COOL);
        let mut at = host.cool_until.lock().unwrap_or_else(|e| e.into_inner());
        if at.is_none_or(|t| t < until) {
            *at = Some(until);
        }
    }

    /// How many hosts are known (busy, cooling, or not pruned yet).
    pub fn known(&self) -> usize {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).hosts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[tokio::test]
    async fn a_host_takes_its_limit_at_once_and_others_go_on() {
        let hosts = Arc::new(Hosts::new(2));
        let first = hosts.visit(&url("https://a.example/x"), None).await;
        let _second = hosts.visit(&url("https://a.example/y"), None).await;
        let (entered, mut third) = tokio::sync::oneshot::channel();
        let waiting = {
            let hosts = hosts.clone();
            tokio::spawn(async move {
                let visit = hosts.visit(&url("https://a.example/z"), None).await;
                let _ = entered.send(());
                visit
            })
        };
        // Another scheme or port is another host, and does not wait.
        let _other = hosts.visit(&url("http://a.example/x"), None).await;
        let _port = hosts.visit(&url("https://a.example:8443/x"), None).await;
        assert!(third.try_recv().is_err(), "a third request to the host waits");
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("a slot came free").unwrap();
    }

    #[tokio::test]
    async fn a_cooling_host_waits_until_its_time_and_keeps_the_later_one() {
        let hosts = Hosts::new(2);
        let a = url("https://a.example/");
        hosts.cool(&a, Duration::from_millis(300));
        hosts.cool(&a, Duration::from_millis(10));
        let began = Instant::now();
        let _visit = hosts.visit(&url("https://a.example/about"), None).await;
        assert!(began.elapsed() >= Duration::from_millis(300), "the later of two cool-downs holds");
        let began = Instant::now();
        let _b = hosts.visit(&url("https://b.example/"), None).await;
        assert!(began.elapsed() < Duration::from_millis(300), "other hosts do not wait");
        hosts.cool(&a, Duration::from_secs(24 * 3600));
        let until = hosts.host(&origin(&a)).cooling().unwrap();
        assert!(until <= Instant::now() + MAX_COOL, "a cool-down is at most MAX_COOL");
    }

    #[tokio::test]
    async fn a_crawl_delay_spaces_the_hosts_requests() {
        let hosts = Hosts::new(2);
        let delay = Some(Duration::from_millis(200));
        let began = Instant::now();
        drop(hosts.visit(&url("https://a.example/1"), delay).await);
        let first = began.elapsed();
        drop(hosts.visit(&url("https://a.example/2"), delay).await);
        drop(hosts.visit(&url("https://a.example/3"), delay).await);
        assert!(first < Duration::from_millis(200), "the first request does not wait");
        assert!(began.elapsed() >= Duration::from_millis(400), "each later one waits the delay after the one before");
        let other = Instant::now();
        drop(hosts.visit(&url("https://b.example/"), None).await);
        assert!(other.elapsed() < Duration::from_millis(200), "another host is not spaced");
    }

    #[tokio::test]
    async fn idle_hosts_are_forgotten() {
        let hosts = Hosts::new(2);
        let busy = hosts.visit(&url("https://busy.example/"), None).await;
        hosts.cool(&url("https://cool.example/"), Duration::from_secs(60));
        for i in 0..PRUNE_AT * 3 {
            drop(hosts.visit(&url(&format!("https://h{i}.example/")), None).await);
        }
        assert!(hosts.known() <= PRUNE_AT * 2, "{} hosts kept", hosts.known());
        let table = hosts.table.lock().unwrap();
        assert!(table.hosts.contains_key("https://busy.example"), "a busy host is kept");
        assert!(table.hosts.contains_key("https://cool.example"), "a cooling host is kept");
        drop(table);
        drop(busy);
    }
}
