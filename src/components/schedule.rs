//! A live job's schedule (SPEC section 8): when it pauses and resumes by itself.

use chrono::{DateTime, NaiveDateTime, Utc};
use leptos::either::Either;
use leptos::prelude::*;

use crate::api::schedule_job;
use crate::components::format::{error_text, time_text};
use crate::components::live::LiveJob;

/// What is scheduled, and a form to set, change or clear it. Times are UTC, as every
/// time jobdeck shows. Each fires once; shown while the job can still run.
#[component]
pub fn ScheduleControl(live: LiveJob) -> impl IntoView {
    let job = live.job;
    let current = Memo::new(move |_| job.with(|j| (j.scheduled_pause_at, j.scheduled_resume_at)));
    let pause = RwSignal::new(String::new());
    let resume = RwSignal::new(String::new());
    // The fields follow the job until the person edits them.
    let typed = RwSignal::new(false);
    Effect::new(move |_| {
        let (p, r) = current.get();
        if !typed.get_untracked() {
            pause.set(p.map(field_text).unwrap_or_default());
            resume.set(r.map(field_text).unwrap_or_default());
        }
    });
    let busy = RwSignal::new(false);
    let note = RwSignal::new(None::<Result<String, String>>);
    let send = move |times: Option<(String, String)>| {
        if busy.get_untracked() {
            return;
        }
        let (pause_at, resume_at) = match times {
            None => (None, None),
            Some((p, r)) => match (parse_field("Pause at", &p), parse_field("Resume at", &r)) {
                (Ok(p), Ok(r)) => (p, r),
                (Err(e), _) | (_, Err(e)) => {
                    note.set(Some(Err(e)));
                    return;
                }
            },
        };
        let clearing = pause_at.is_none() && resume_at.is_none();
        busy.set(true);
        note.set(None);
        let (kind, id) = job.with_untracked(|j| (j.kind, j.id));
        leptos::task::spawn_local(async move {
            let rfc = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339());
            match schedule_job(kind, id, rfc(pause_at), rfc(resume_at)).await {
                Ok(job) => {
                    live.apply(job);
                    typed.set(false);
                    let text = if clearing { "Schedule cleared." } else { "Schedule saved." };
                    note.set(Some(Ok(text.into())));
                }
                Err(e) => note.set(Some(Err(error_text(&e)))),
            }
            let _ = busy.try_set(false);
        });
    };
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        send(Some((pause.get_untracked(), resume.get_untracked())));
    };
    let summary = move || {
        let (p, r) = current.get();
        let parts: Vec<String> = [("Pauses at", p), ("Resumes at", r)]
            .into_iter()
            .filter_map(|(what, t)| t.map(|t| format!("{what} {}.", time_text(&t))))
            .collect();
        if parts.is_empty() {
            "Nothing scheduled.".to_string()
        } else {
            parts.join(" ")
        }
    };
    let field = move |id: &'static str, label: &'static str, value: RwSignal<String>| {
        view! {
            <label for=id>
                {label}
                // A text field, not `datetime-local`: that one shows the browser's
                // 12-hour clock in some locales, where every time here reads 24-hour
                // UTC (SPEC section 16).
                <input
                    id=id
                    type="text"
                    inputmode="numeric"
                    autocomplete="off"
                    placeholder="2026-12-31 17:30"
                    pattern="\\s*[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]+)?)?\\s*"
                    title="A date and 24-hour time in UTC, like 2026-12-31 17:30"
                    prop:value=value
                    on:input=move |ev| {
                        typed.set(true);
                        value.set(event_target_value(&ev));
                    }
                />
            </label>
        }
    };
    view! {
        <Show when=move || !job.with(|j| j.is_terminal())>
            <section class="card schedule" aria-labelledby="schedule-title">
                    <h2 id="schedule-title">"Schedule"</h2>
                    <p data-testid="schedule-summary">{summary}</p>
                    <form on:submit=save>
                        {field("schedule-pause", "Pause at (UTC)", pause)}
                        {field("schedule-resume", "Resume at (UTC)", resume)}
                        <button type="submit" class="btn btn-small btn-plain" disabled=busy>
                            "Save schedule"
                        </button>
                        <button
                            type="button"
                            class="btn btn-small btn-plain"
                            disabled=move || busy.get() || current.with(|(p, r)| p.is_none() && r.is_none())
                            on:click=move |_| send(None)
                        >
                            "Clear"
                        </button>
                    </form>
                    {move || note.get().map(|n| match n {
                        Ok(t) => Either::Left(view! { <p class="small muted" role="status">{t}</p> }),
                        Err(t) => Either::Right(view! { <p class="alert small" role="alert">{t}</p> }),
                    })}
                </section>
        </Show>
    }
}

/// A time as its field shows it: `2026-12-01 09:30`, 24-hour, in UTC.
fn field_text(at: DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    // From the fields, as `format::time_text` does, to keep chrono's format-string
    // reader out of the browser's code.
    format!("{:04}-{:02}-{:02} {:02}:{:02}", at.year(), at.month(), at.day(), at.hour(), at.minute())
}

/// A field's time, read as UTC; empty is none.
fn parse_field(label: &str, text: &str) -> Result<Option<DateTime<Utc>>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    // The field leaves the seconds out, and chrono's fixed reader (the one the server's
    // times already use in the browser) wants them; its format-string reader would
    // take them as they are but adds some 10 kB to the browser's code.
    // A space or a `T` between the date and the time.
    let text_t = match text.split_once(' ') {
        Some((day, clock)) => format!("{day}T{}", clock.trim()),
        None => text.to_string(),
    };
    let full = match text_t.split_once('T') {
        Some((_, clock)) if clock.matches(':').count() == 1 => format!("{text_t}:00"),
        _ => text_t.clone(),
    };
    full.parse::<NaiveDateTime>()
        .map(|t| Some(t.and_utc()))
        .map_err(|_| format!("{label}: `{text}` is not a date and time"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scheduled time shows in its field as 24-hour UTC, and reads back as the same
    /// minute.
    #[test]
    fn field_text_is_what_the_field_reads_back() {
        for text in ["2026-01-05T00:00:00Z", "2026-12-31T23:59:59Z", "0999-07-04T09:05:30Z"] {
            let t: DateTime<Utc> = text.parse().unwrap();
            assert_eq!(field_text(t), t.format("%Y-%m-%d %H:%M").to_string());
            let back = parse_field("Pause at", &field_text(t)).unwrap().unwrap();
            assert_eq!(back, t - chrono::Duration::seconds(chrono::Timelike::second(&t) as i64));
        }
        assert_eq!(parse_field("Pause at", "  ").unwrap(), None);
        assert!(parse_field("Pause at", "tomorrow").unwrap_err().contains("`tomorrow` is not a date and time"));
        // Seconds and their fraction, which a field with a `step` may hold, count too.
        let at = |text: &str| parse_field("Resume at", text).unwrap().unwrap().to_rfc3339();
        assert_eq!(at("2026-12-01T09:30"), "2026-12-01T09:30:00+00:00");
        assert_eq!(at("2026-12-01 17:30"), "2026-12-01T17:30:00+00:00");
        assert_eq!(at(" 2026-12-01T09:30:15 "), "2026-12-01T09:30:15+00:00");
        assert_eq!(at("2026-12-01T09:30:15.250"), "2026-12-01T09:30:15.250+00:00");
        for bad in ["2026-13-01T09:30", "2026-12-01T25:00", "2026-12-01", "2026-12-01T09", "09:30"] {
            let e = parse_field("Resume at", bad).unwrap_err();
            assert_eq!(e, format!("Resume at: `{bad}` is not a date and time"));
        }
    }
}

/// [`ScheduleControl`] of a job page, hydrated with the page's job.
#[island]
pub fn ScheduleIsland(job: crate::model::Job) -> impl IntoView {
    view! { <ScheduleControl live=crate::components::live_page::page_job(job) /> }
}
