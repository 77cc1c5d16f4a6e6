//! A job's activity log (SPEC section 8): what was done to it, by whom, and when.

use leptos::prelude::*;

use crate::api::job_events;
use crate::components::erase::Erase;
use crate::components::format::{error_text, Time};
use crate::components::live::LiveJob;
use crate::components::resource::resource;
use crate::model::{JobEvent, Source, EVENTS_PAGE};

/// The newest events first, refetched whenever the job changes (an action, a refresh
/// that found news), with "Show older" for the rest.
#[component]
pub fn ActivityLog(live: LiveJob) -> impl IntoView {
    let (kind, id) = live.job.with_untracked(|j| (j.kind, j.id));
    let newest = resource(
        move || live.tick.get(),
        move |_| async move { job_events(kind, id, None, EVENTS_PAGE).await.map_err(|e| error_text(&e)) },
    );
    let older = RwSignal::new(Vec::<JobEvent>::new());
    let more = RwSignal::new(None::<bool>);
    let error = RwSignal::new(None::<String>);
    // Fresh newest events start the paging over, so no older page leaves a gap.
    Effect::new(move |_| {
        live.tick.track();
        older.set(Vec::new());
        more.set(None);
    });
    let load_older = move |last: i64| {
        leptos::task::spawn_local(async move {
            match job_events(kind, id, Some(last), EVENTS_PAGE).await {
                Ok(page) => {
                    let _ = more.try_set(Some(page.len() as i64 == EVENTS_PAGE));
                    older.update(|o| o.extend(page));
                }
                Err(e) => {
                    let _ = error.try_set(Some(error_text(&e)));
                }
            }
        });
    };
    view! {
        <section class="card activity" aria-labelledby="activity-title">
            <h2 id="activity-title">"Activity"</h2>
            <Transition fallback=|| view! { <p class="muted">"Loading the activity log…"</p> }>
                {move || Suspend::new(async move {
                    match newest.await {
                        Err(e) => view! { <p class="alert" role="alert">{e}</p> }.erased(),
                        Ok(first) if first.is_empty() => view! { <p class="muted">"Nothing logged yet."</p> }.erased(),
                        Ok(first) => {
                            let full = first.len() as i64 == EVENTS_PAGE;
                            let last_of_first = first.last().map(|e| e.id).unwrap_or(0);
                            view! {
                                <ol class="event-list" data-testid="events">
                                    {first.into_iter().map(event_row).collect_view()}
                                    {move || older.get().into_iter().map(event_row).collect_view()}
                                </ol>
                                {move || {
                                    let last = older.with(|o| o.last().map(|e| e.id)).unwrap_or(last_of_first);
                                    more.get().unwrap_or(full).then(|| view! {
                                        <button type="button" class="btn btn-small btn-plain" on:click=move |_| load_older(last)>
                                            "Show older"
                                        </button>
                                    })
                                }}
                            }
                            .erased()
                        }
                    }
                })}
            </Transition>
            {move || error.get().map(|e| view! { <p class="alert" role="alert">{e}</p> })}
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

/// [`ActivityLog`] of a job page, hydrated with the page's job.
#[island]
pub fn ActivityIsland(job: crate::model::Job) -> impl IntoView {
    view! { <ActivityLog live=crate::components::live_page::page_job(job) /> }
}
