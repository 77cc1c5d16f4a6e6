//! Small text helpers every page shares: times, counts and error messages.

use chrono::{DateTime, Utc};
use leptos::either::Either;
use leptos::prelude::*;

use crate::components::erase::Erase;

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// "4 Mar" and "05:06:07", from the time's fields rather than a format string: chrono's
/// format strings are read when used, and their reader is a large part of the
/// browser's chrono code.
fn day_and_clock(at: &DateTime<Utc>) -> (String, String) {
    use chrono::{Datelike, Timelike};
    let month = MONTHS[at.month0() as usize];
    (format!("{} {month}", at.day()), format!("{:02}:{:02}:{:02}", at.hour(), at.minute(), at.second()))
}

/// A time as people read it. Always UTC: the server renders the page before the
/// browser knows its time zone, and both must print the same text.
pub fn time_text(at: &DateTime<Utc>) -> String {
    use chrono::Datelike;
    let (day, clock) = day_and_clock(at);
    format!("{day} {}, {clock} UTC", at.year())
}

/// The short form for table cells; the full form goes in the `title`.
pub fn short_time_text(at: &DateTime<Utc>) -> String {
    let (day, clock) = day_and_clock(at);
    format!("{day}, {clock}")
}

/// "1 account", "3 accounts".
pub fn plural(n: i64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

/// The message a server function failed with, without the framework's prefix, so
/// people read "the job is still processing: pause or cancel first" and nothing else.
pub fn error_text(e: &ServerFnError) -> String {
    match e {
        ServerFnError::ServerError(msg) => msg.clone(),
        ServerFnError::Request(msg) => format!("the server could not be reached ({msg})"),
        other => other.to_string(),
    }
}

/// Whether a server message says the job does not exist (the service words it as
/// "no research job with id 7").
pub fn is_not_found(msg: &str) -> bool {
    msg.starts_with("no ") && msg.contains(" job with id ")
}

/// A `<time>` element, or a dash when the moment has not come.
#[component]
pub fn Time(#[prop(into)] at: Signal<Option<DateTime<Utc>>>, #[prop(optional)] short: bool) -> impl IntoView {
    move || match at.get() {
        Some(t) => {
            let text = if short { short_time_text(&t) } else { time_text(&t) };
            Either::Left(view! { <time datetime=t.to_rfc3339() title=time_text(&t)>{text}</time> })
        }
        None => Either::Right(view! { <span class="muted">"—"</span> }),
    }
}

/// A link to a site outside jobdeck, shown without its scheme. Only http(s) addresses
/// become links (a CSV can hold anything, `javascript:` included); a bare domain is
/// taken as https.
pub fn external_link(url: &str) -> AnyView {
    let url = url.trim();
    let lower = url.to_ascii_lowercase();
    let href = if lower.starts_with("https://") || lower.starts_with("http://") {
        Some(url.to_string())
    } else if !url.contains(':') && !url.contains(char::is_whitespace) && url.contains('.') {
        Some(format!("https://{url}"))
    } else {
        None
    };
    let shown = url.trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/').to_string();
    match href {
        Some(href) => view! {
            <a href=href target="_blank" rel="noopener noreferrer external" class="external">
                {shown}
            </a>
        }
        .erased(),
        None => view! { <span class="external">{shown}</span> }.erased(),
    }
}

/// A non-empty string (or number) field of a JSON object, as text.
pub fn text(v: &serde_json::Value, key: &str) -> Option<String> {
    match v.get(key)? {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The strings of a JSON list field; empty when absent.
pub fn list(v: &serde_json::Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(serde_json::Value::as_array)
        .map(|a| a.iter().filter_map(serde_json::Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_the_same_everywhere() {
        let t: DateTime<Utc> = "2025-03-04T05:06:07Z".parse().unwrap();
        assert_eq!(time_text(&t), "4 Mar 2025, 05:06:07 UTC");
        assert_eq!(short_time_text(&t), "4 Mar, 05:06:07");
        // The same text as chrono's own formatting, over every month and both ends
        // of the day.
        for (month, day, clock) in [(1, 31, "00:00:00"), (6, 15, "12:30:09"), (12, 1, "23:59:59")] {
            let t: DateTime<Utc> = format!("2026-{month:02}-{day:02}T{clock}Z").parse().unwrap();
            assert_eq!(time_text(&t), t.format("%-d %b %Y, %H:%M:%S UTC").to_string());
            assert_eq!(short_time_text(&t), t.format("%-d %b, %H:%M:%S").to_string());
        }
        for month in 1..=12 {
            let t: DateTime<Utc> = format!("2026-{month:02}-09T08:07:06Z").parse().unwrap();
            assert_eq!(time_text(&t), t.format("%-d %b %Y, %H:%M:%S UTC").to_string());
        }
    }

    #[test]
    fn not_found_messages_are_recognised() {
        assert!(is_not_found("no research job with id 7"));
        assert!(!is_not_found("the job is still processing: pause or cancel first"));
    }
}

/// The breadcrumb above a job page: the dashboard, then where the person is.
#[component]
pub fn Crumbs(#[prop(into)] here: String) -> impl IntoView {
    view! {
        <nav class="crumbs" aria-label="Breadcrumb">
            <a href="/">"Dashboard"</a>
            <span aria-hidden="true">" / "</span>
            <span>{here}</span>
        </nav>
    }
}

/// A check shown as icon and word together, so colour is never the only signal.
pub fn flag(tone: &str, icon: &'static str, label: String) -> impl IntoView {
    view! {
        <span class=format!("flag flag-{tone}")>
            <span aria-hidden="true">{icon}</span>
            " "
            {label}
        </span>
    }
}

/// Goes to another page of the app (a full page load: each page is rendered by the
/// server, with its interactive parts hydrated as islands).
pub fn go(url: &str) {
    #[cfg(feature = "hydrate")]
    {
        let _ = window().location().set_href(url);
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = url;
}
