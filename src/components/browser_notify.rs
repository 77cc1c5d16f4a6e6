//! Browser notifications (SPEC section 8): when the person allows them, the job page
//! and the dashboard announce a job that completed, failed, was cancelled or was
//! paused automatically, as their refresh sees it happen. The choice is kept in the
//! browser (`localStorage`), so it holds on every page of this jobdeck.

use leptos::either::EitherOf3;
use leptos::prelude::*;

use crate::model::{Job, Phase};

/// Where the choice is kept.
#[cfg(feature = "hydrate")]
const KEY: &str = "jobdeck.notify";

/// The notification a change of a job calls for, as (title, body, tag): the tag makes
/// two tabs showing the same job announce it once. `None` for anything else, a person's
/// own pause included (it has no reason).
pub fn announcement(old: &Job, new: &Job) -> Option<(String, String, String)> {
    if old.kind != new.kind || old.id != new.id {
        return None;
    }
    let name = &new.name;
    let counts = format!("{} completed, {} failed of {}.", new.completed, new.failed, new.total);
    let (what, body) = if !old.is_terminal() && new.is_terminal() {
        match new.phase() {
            Phase::Cancelled => ("cancelled", counts),
            Phase::Completed => ("completed", counts),
            _ => ("failed", counts),
        }
    } else {
        let auto = |j: &Job| j.paused && !j.is_terminal() && j.paused_reason.is_some();
        if !auto(new) || (auto(old) && old.paused_reason == new.paused_reason) {
            return None;
        }
        ("paused automatically", new.paused_reason.clone().unwrap_or_default())
    };
    let tag = format!("jobdeck-{}-{}-{what}", new.kind.as_str(), new.id);
    Some((format!("{name}: {what}"), body, tag))
}

/// Shows the notification a change calls for, if the person turned them on here.
pub fn announce(old: &Job, new: &Job) {
    #[cfg(feature = "hydrate")]
    {
        if !enabled() {
            return;
        }
        if let Some((title, body, tag)) = announcement(old, new) {
            let options = web_sys::NotificationOptions::new();
            options.set_body(&body);
            options.set_tag(&tag);
            let _ = web_sys::Notification::new_with_options(&title, &options);
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (old, new);
}

#[cfg(feature = "hydrate")]
fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok().flatten()
}

/// On here, and still allowed by the browser.
#[cfg(feature = "hydrate")]
pub fn enabled() -> bool {
    let chosen = storage().and_then(|s| s.get_item(KEY).ok().flatten()).is_some_and(|v| v == "on");
    chosen && supported() && web_sys::Notification::permission() == web_sys::NotificationPermission::Granted
}

/// Whether this browser has notifications at all.
#[cfg(feature = "hydrate")]
fn supported() -> bool {
    web_sys::window().is_some_and(|w| {
        web_sys::js_sys::Reflect::has(&w, &wasm_bindgen::JsValue::from_str("Notification")).unwrap_or(false)
    })
}

/// What the toggle shows; only the browser finds out which.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
#[derive(Clone, Copy, PartialEq)]
enum State {
    Off,
    On,
    Blocked,
    Unsupported,
}

/// "Notify me in this browser", or that notifications are on with "Turn off".
#[component]
pub fn BrowserNotify() -> impl IntoView {
    let state = RwSignal::new(State::Off);
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| {
        state.set(if !supported() {
            State::Unsupported
        } else if enabled() {
            State::On
        } else {
            State::Off
        });
    });
    let turn_on = move |_| {
        #[cfg(feature = "hydrate")]
        leptos::task::spawn_local(async move {
            use web_sys::{Notification, NotificationPermission};
            let mut allowed = Notification::permission() == NotificationPermission::Granted;
            if !allowed {
                if let Ok(promise) = Notification::request_permission() {
                    let answer = wasm_bindgen_futures::JsFuture::from(promise).await;
                    allowed = answer.ok().and_then(|v| v.as_string()).is_some_and(|v| v == "granted");
                }
            }
            if allowed {
                if let Some(s) = storage() {
                    let _ = s.set_item(KEY, "on");
                }
            }
            let _ = state.try_set(if allowed { State::On } else { State::Blocked });
        });
    };
    let turn_off = move |_| {
        #[cfg(feature = "hydrate")]
        if let Some(s) = storage() {
            let _ = s.remove_item(KEY);
        }
        state.set(State::Off);
    };
    move || match state.get() {
        State::Unsupported => EitherOf3::A(()),
        State::On => EitherOf3::B(view! {
            <span class="notify-toggle" data-testid="browser-notify">
                "Browser notifications on"
                <button type="button" class="btn btn-small btn-plain" on:click=turn_off>"Turn off"</button>
            </span>
        }),
        State::Off | State::Blocked => EitherOf3::C(view! {
            <span class="notify-toggle" data-testid="browser-notify">
                <button type="button" class="btn btn-small btn-plain" on:click=turn_on>
                    "Notify me in this browser"
                </button>
                {(state.get() == State::Blocked)
                    .then(|| view! { <span class="small muted">"The browser blocks notifications for this site."</span> })}
            </span>
        }),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::{JobKind, JobStatus};

    /// A running research job, for tests of what a page says about a job.
    pub(crate) fn job() -> Job {
        let now = chrono::Utc::now();
        Job {
            id: 7,
            kind: JobKind::Research,
            name: "Q3 leads".into(),
            filename: "q3.csv".into(),
            status: JobStatus::Processing,
            paused: false,
            cancelled: false,
            concurrency: 5,
            total: 10,
            pending: 5,
            processing: 1,
            completed: 4,
            failed: 0,
            created_at: now,
            started_at: Some(now),
            updated_at: now,
            completed_at: None,
            cancelled_at: None,
            paused_reason: None,
            resume_at: None,
            archived_at: None,
            scheduled_pause_at: None,
            scheduled_resume_at: None,
            waiting_on_hosts: 0,
            outcomes: None,
            research_job_id: None,
        }
    }

    #[test]
    fn announces_endings_and_automatic_pauses_only() {
        let running = job();
        let done = Job { status: JobStatus::Completed, pending: 0, processing: 0, completed: 10, ..job() };
        assert_eq!(announcement(&running, &done).unwrap().0, "Q3 leads: completed");
        assert!(announcement(&done, &done).is_none(), "once");
        let all_failed = Job { completed: 0, failed: 10, ..done.clone() };
        assert_eq!(announcement(&running, &all_failed).unwrap().0, "Q3 leads: failed");
        let cancelled =
            Job { status: JobStatus::Failed, cancelled: true, cancelled_at: Some(chrono::Utc::now()), ..job() };
        assert_eq!(announcement(&running, &cancelled).unwrap().0, "Q3 leads: cancelled");
        let by_person = Job { paused: true, ..job() };
        assert!(announcement(&running, &by_person).is_none(), "a person's own pause");
        let limited = Job { paused: true, paused_reason: Some("rate limited".into()), ..job() };
        let (title, body, _) = announcement(&running, &limited).unwrap();
        assert_eq!((title.as_str(), body.as_str()), ("Q3 leads: paused automatically", "rate limited"));
        assert!(announcement(&limited, &limited).is_none());
    }
}

/// [`BrowserNotify`] on a job page.
#[island]
pub fn NotifyIsland() -> impl IntoView {
    view! { <BrowserNotify /> }
}
