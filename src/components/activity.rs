//! A job's activity log (SPEC section 8): what was done to it, by whom, and when.

use leptos::either::EitherOf3;
use leptos::prelude::*;

use crate::api::job_events;
use crate::components::format::{error_text, Time};
use crate::components::items::{events_href, ItemsQuery};
use crate::components::live::LiveJob;
use crate::components::resource::resource;
use crate::model::{JobEvent, Source, EVENTS_PAGE};

/// The job's events, newest first, a page at a time: "Show older" and "Newest" are
/// links (`?before=`), so a page of the log can be kept and shared. Rendered by the
/// server; on a live page the refresh brings new events in.
#[component]
pub fn ActivityLog(
    live: LiveJob,
    /// The job page's path, e.g. `/processing/7`.
    base: String,
    /// What the address asks for, the log's page (`before`) included.
    query: ItemsQuery,
) -> impl IntoView {
    let (kind, id) = live.job.with_untracked(|j| (j.kind, j.id));
    let before = query.before;
    let events = resource(
        || (),
        move |()| async move { job_events(kind, id, before, EVENTS_PAGE).await.map_err(|e| error_text(&e)) },
    );
    view! {
        <section class="card activity" id="activity" aria-labelledby="activity-title">
            <h2 id="activity-title">"Activity"</h2>
            <Suspense fallback=|| view! { <p class="muted">"Loading the activity log…"</p> }>
                {move || {
                    let base = base.clone();
                    Suspend::new(async move {
                        match events.await {
                            Err(e) => EitherOf3::A(view! { <p class="alert" role="alert">{e}</p> }),
                            Ok(list) if list.is_empty() && before.is_none() => {
                                EitherOf3::B(view! { <p class="muted">"Nothing logged yet."</p> })
                            }
                            Ok(list) => {
                                let older = (list.len() as i64 == EVENTS_PAGE)
                                    .then(|| events_href(&base, query, list.last().map(|e| e.id)));
                                let newest = before.map(|_| events_href(&base, query, None));
                                EitherOf3::C(view! {
                                    <ol class="event-list" data-testid="events">
                                        {list.into_iter().map(event_row).collect_view()}
                                    </ol>
                                    <p class="link-row">
                                        {newest.map(|href| view! { <a href=href>"← Newest"</a> })}
                                        {older.map(|href| view! { <a href=href>"Show older"</a> })}
                                    </p>
                                })
                            }
                        }
                    })
                }}
            </Suspense>
        </section>
    }
}

fn event_row(e: JobEvent) -> impl IntoView {
    let at = Signal::stored(Some(e.at));
    view! {
        <li class="event">
            <Time at short=true />
            " "
            <strong class="event-action">{e.action.as_str()}</strong>
            " "
            <span class="event-source muted">{format!("by {}", source_text(e.source))}</span>
            {e.detail.map(|d| view! { <span class="event-detail">" — " {d}</span> })}
        </li>
    }
}

fn source_text(source: Source) -> &'static str {
    match source {
        Source::Ui => "you, in jobdeck",
        Source::Api => "the REST API",
        Source::Schedule => "the schedule",
        Source::RateLimit => "a rate limit",
        Source::ErrorBurst => "an error burst",
        Source::System => "jobdeck",
    }
}
