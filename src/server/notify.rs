//! Notifications of job events (SPEC section 8): a webhook POST signed with
//! HMAC-SHA256, and e-mail through SMTP.
//!
//! Delivery is durable. The event is queued in the outbox, once per configured channel,
//! in the same transaction that logs it (`add_event` in each store). The
//! notifier takes due rows under a lease, tries each, and then either removes the row
//! (delivered, or given up after the configured tries) or sets the time of the next
//! try. Each outcome goes into the job's activity log. A restart loses nothing: a row
//! whose lease ran out is taken again. A failed delivery never touches the job itself.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{KeyInit, Mac};
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::config::NotifyConfig;
use super::store::types::Outgoing;
use super::store::Store;
use crate::model::{Job, JobKind};

/// The value of `X-Jobdeck-Signature` for `body`: `sha256=` and the hex HMAC.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

const WEBHOOK: &str = "webhook";
const EMAIL: &str = "email";
/// How long one try may take before it counts as failed.
const TRY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a process holds the notifications it is delivering; another takes them
/// over after that (it crashed).
const LEASE: Duration = Duration::from_secs(60);
/// Notifications tried at once.
const BATCH: i64 = 16;
/// The longest wait between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// What the notifier delivers with, from the server's settings.
#[derive(Clone)]
pub struct Notifier {
    webhook: Option<Webhook>,
    email: Option<Email>,
    max_tries: u32,
    retry_base: Duration,
    /// Links in e-mails start with this (no trailing slash).
    public_url: String,
}

#[derive(Clone)]
struct Webhook {
    url: url::Url,
    secret: String,
    client: reqwest::Client,
}

#[derive(Clone)]
struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: lettre::message::Mailbox,
    to: Vec<lettre::message::Mailbox>,
}

impl Notifier {
    /// The notifier the settings ask for; an unusable setting is an error naming it.
    pub fn new(cfg: &NotifyConfig, site_addr: &str) -> Result<Self, String> {
        let webhook = match cfg.webhook_url.trim() {
            "" => None,
            url => {
                let url = url::Url::parse(url)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https"))
                    .ok_or_else(|| format!("JOBDECK_WEBHOOK_URL `{url}` is not an http(s) URL"))?;
                if cfg.webhook_secret.trim().is_empty() {
                    return Err(format!(
                        "JOBDECK_WEBHOOK_URL is set to {url} but JOBDECK_WEBHOOK_SECRET is empty: set a secret to \
                         sign the webhook with (the receiver checks X-Jobdeck-Signature), or unset the URL"
                    ));
                }
                let client = reqwest::Client::builder()
                    .timeout(TRY_TIMEOUT)
                    .redirect(reqwest::redirect::Policy::none())
                    .user_agent("jobdeck-webhook/0.1")
                    .build()
                    .map_err(|e| format!("cannot build the webhook client: {e}"))?;
                Some(Webhook { url, secret: cfg.webhook_secret.clone(), client })
            }
        };
        let email = match (cfg.smtp_url.trim(), cfg.email_to.trim()) {
            ("", "") => None,
            ("", _) => return Err("JOBDECK_NOTIFY_EMAIL is set but JOBDECK_SMTP_URL is not".into()),
            (_, "") => return Err("JOBDECK_SMTP_URL is set but JOBDECK_NOTIFY_EMAIL is not".into()),
            (smtp, to) => {
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp)
                    .map_err(|e| format!("JOBDECK_SMTP_URL `{smtp}` cannot be used: {e}"))?
                    .timeout(Some(TRY_TIMEOUT))
                    .build();
                let from = cfg
                    .email_from
                    .parse()
                    .map_err(|e| format!("JOBDECK_NOTIFY_FROM `{}` is not an address: {e}", cfg.email_from))?;
                let to = to
                    .split(',')
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .map(|a| a.parse().map_err(|e| format!("JOBDECK_NOTIFY_EMAIL `{a}` is not an address: {e}")))
                    .collect::<Result<Vec<_>, _>>()?;
                Some(Email { transport, from, to })
            }
        };
        let public_url = match cfg.public_url.trim().trim_end_matches('/') {
            "" => format!("http://{site_addr}"),
            url => url.to_string(),
        };
        Ok(Self {
            webhook,
            email,
            max_tries: cfg.max_tries.max(1),
            retry_base: Duration::from_millis(cfg.retry_base_ms.max(1)),
            public_url,
        })
    }

    /// The channels events are queued for.
    pub fn channels(&self) -> Vec<&'static str> {
        let mut channels = Vec::new();
        if self.webhook.is_some() {
            channels.push(WEBHOOK);
        }
        if self.email.is_some() {
            channels.push(EMAIL);
        }
        channels
    }

    /// Delivers what falls due until `shutdown`: at most every `poll` it looks for
    /// notifications queued by any process.
    pub async fn run(self, store: Store, poll: Duration, shutdown: tokio_util::sync::CancellationToken) {
        if self.channels().is_empty() {
            return;
        }
        loop {
            let mut wait = poll;
            // A stop in the middle of a try leaves the row leased; it is taken again
            // when the lease runs out.
            let round = tokio::select! {
                () = shutdown.cancelled() => return,
                round = self.round(&store) => round,
            };
            match round {
                Ok(Some(next)) => {
                    let until = (next - Utc::now()).to_std().unwrap_or_default();
                    wait = wait.min(until);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "notifications could not be read or settled; will retry"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Tries every due notification once; returns when the next one falls due.
    async fn round(&self, store: &Store) -> Result<Option<DateTime<Utc>>, super::error::AppError> {
        loop {
            // A read first: the write that takes notifications runs only when one is due.
            let next = store.next_outgoing(self.channels()).await?;
            let now = Utc::now();
            if next.is_none_or(|at| at > now) {
                return Ok(next);
            }
            let due = store.claim_outbox(LEASE, BATCH, self.channels()).await?;
            if due.is_empty() {
                // Held elsewhere, or not due by the database's clock: look again soon.
                return Ok(Some(now + chrono::Duration::milliseconds(200)));
            }
            let tries = due.iter().map(|sent| async move {
                // Well inside the lease, so no other process takes it over meanwhile.
                let outcome = match tokio::time::timeout(TRY_TIMEOUT, self.try_once(sent)).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(format!("no answer within {} s", TRY_TIMEOUT.as_secs())),
                };
                (sent, outcome)
            });
            for (sent, outcome) in futures::future::join_all(tries).await {
                let settled = match outcome {
                    Ok(detail) => Ok(detail),
                    Err(error) => {
                        let tries = sent.attempts + 1;
                        let what = format!("{} {}", channel_word(&sent.channel), sent.event);
                        if tries >= self.max_tries {
                            Err((format!("{what}: given up after {tries} tries; the last failed: {error}"), None))
                        } else {
                            let wait = self.backoff(tries);
                            let next = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
                            let text = format!(
                                "{what}: try {tries} of {} failed ({error}); next try in {}",
                                self.max_tries,
                                wait_text(wait)
                            );
                            Err((text, Some(next)))
                        }
                    }
                };
                if let Err((text, None)) = &settled {
                    tracing::warn!(kind = %sent.kind, job = sent.job_id, "{text}");
                }
                store.settle_outgoing(sent.clone(), settled).await?;
            }
        }
    }

    /// The wait after failed try number `tries`: the base, doubled per try, capped.
    fn backoff(&self, tries: u32) -> Duration {
        self.retry_base.saturating_mul(1 << (tries.saturating_sub(1)).min(16)).min(MAX_BACKOFF)
    }

    /// One try of one notification: what was done, or why it failed.
    async fn try_once(&self, sent: &Outgoing) -> Result<String, String> {
        match sent.channel.as_str() {
            WEBHOOK => {
                let hook = self.webhook.as_ref().ok_or("the webhook is no longer configured")?;
                // Always signed: a webhook without a secret stops start-up (SPEC section 11).
                let request = hook
                    .client
                    .post(hook.url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header("X-Jobdeck-Event", &sent.event)
                    .header("X-Jobdeck-Delivery", sent.id.to_string())
                    .header("X-Jobdeck-Signature", signature(&hook.secret, sent.payload.as_bytes()));
                let response = request.body(sent.payload.clone()).send().await.map_err(|e| short_error(&e))?;
                let status = response.status();
                if status.is_success() {
                    Ok(format!("webhook {} delivered (HTTP {})", sent.event, status.as_u16()))
                } else {
                    Err(format!("HTTP {}", status.as_u16()))
                }
            }
            EMAIL => {
                let email = self.email.as_ref().ok_or("e-mail is no longer configured")?;
                let (subject, body) = self.email_text(sent)?;
                let mut message = Message::builder().from(email.from.clone()).subject(subject);
                for to in &email.to {
                    message = message.to(to.clone());
                }
                let message = message
                    .header(ContentType::TEXT_PLAIN)
                    .body(body)
                    .map_err(|e| format!("the e-mail cannot be built: {e}"))?;
                email.transport.send(message).await.map_err(|e| e.to_string())?;
                let to: Vec<String> = email.to.iter().map(|m| m.email.to_string()).collect();
                Ok(format!("e-mail {} sent to {}", sent.event, to.join(", ")))
            }
            other => Err(format!("unknown channel `{other}`")),
        }
    }

    /// The e-mail's subject and plain-text body: the job's name, state, counts and link.
    fn email_text(&self, sent: &Outgoing) -> Result<(String, String), String> {
        #[derive(serde::Deserialize)]
        struct Body {
            job: Job,
            at: DateTime<Utc>,
        }
        let body: Body =
            serde_json::from_str(&sent.payload).map_err(|e| format!("the stored event is unreadable: {e}"))?;
        let job = body.job;
        let state = match sent.event.as_str() {
            "job.completed" => "completed".to_string(),
            "job.failed" => "finished with every item failed".to_string(),
            "job.cancelled" => "was cancelled".to_string(),
            "job.auto_paused" => match &job.paused_reason {
                Some(reason) => format!("was paused automatically: {reason}"),
                None => "was paused automatically".to_string(),
            },
            other => other.to_string(),
        };
        // A name is the user's text: kept on one line, and bounded.
        let name: String = job.name.chars().map(|c| if c.is_control() { ' ' } else { c }).take(120).collect();
        let subject = format!("jobdeck: {} job \"{name}\" {}", job.kind.label().to_lowercase(), first_words(&state));
        let path = match job.kind {
            JobKind::Research => format!("/processing/{}", job.id),
            JobKind::Preprocess => format!("/preprocess/progress/{}", job.id),
        };
        let mut text = format!(
            "The {} job \"{name}\" (#{}) {state}.\n\n\
             Items: {} in all, {} completed, {} failed, {} pending, {} processing.\n",
            job.kind.label().to_lowercase(),
            job.id,
            job.total,
            job.completed,
            job.failed,
            job.pending,
            job.processing
        );
        if let Some(at) = job.resume_at {
            text.push_str(&format!("It resumes by itself at {}.\n", at.to_rfc3339()));
        }
        text.push_str(&format!("When: {}\n\nOpen the job: {}{path}\n", body.at.to_rfc3339(), self.public_url));
        Ok((subject, text))
    }
}

/// A subject keeps the state short: "was paused automatically", not the reason.
fn first_words(state: &str) -> &str {
    state.split(':').next().unwrap_or(state)
}

fn channel_word(channel: &str) -> &str {
    match channel {
        EMAIL => "e-mail",
        other => other,
    }
}

fn wait_text(wait: Duration) -> String {
    let s = wait.as_secs();
    if s < 1 {
        format!("{} ms", wait.as_millis())
    } else if s < 120 {
        format!("{s} s")
    } else {
        format!("{} min", s / 60)
    }
}

/// A request error in a few words, with the reason that matters (refused, timed out).
fn short_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut last = None;
    while let Some(s) = source {
        last = Some(s.to_string());
        source = s.source();
    }
    match last {
        Some(cause) => format!("{kind}: {cause}"),
        None => kind.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_the_hex_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let cfg = NotifyConfig { retry_base_ms: 1000, ..NotifyConfig::default() };
        let n = Notifier::new(&cfg, "127.0.0.1:3000").unwrap();
        assert_eq!(n.backoff(1), Duration::from_secs(1));
        assert_eq!(n.backoff(2), Duration::from_secs(2));
        assert_eq!(n.backoff(4), Duration::from_secs(8));
        assert_eq!(n.backoff(30), MAX_BACKOFF);
    }

    #[test]
    fn bad_settings_are_named() {
        let bad = |cfg: NotifyConfig| Notifier::new(&cfg, "127.0.0.1:3000").err().unwrap();
        assert!(
            bad(NotifyConfig { webhook_url: "ftp://x".into(), ..Default::default() }).contains("JOBDECK_WEBHOOK_URL")
        );
        assert!(bad(NotifyConfig { email_to: "a@b.c".into(), ..Default::default() }).contains("JOBDECK_SMTP_URL"));
        assert!(bad(NotifyConfig {
            smtp_url: "smtp://127.0.0.1:2525".into(),
            email_to: "nobody".into(),
            ..Default::default()
        })
        .contains("JOBDECK_NOTIFY_EMAIL"));
        let off = Notifier::new(&NotifyConfig::default(), "127.0.0.1:3000").unwrap();
        assert!(off.channels().is_empty());
    }
}
