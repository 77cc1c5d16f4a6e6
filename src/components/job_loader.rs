//! Loading the job a page is about.

use crate::components::page_title::PageTitle;
use leptos::prelude::*;

use crate::components::erase::Erase;
use leptos_router::hooks::use_params_map;

use crate::api::get_job;
use crate::components::format::{error_text, is_not_found};
use crate::components::live::LiveJob;
use crate::components::resource::resource;
use crate::model::JobKind;

/// Loads the job named by the route's `:id` and hands it to `render` as a [`LiveJob`].
///
/// The first load is a resource inside `Suspense`, so the server renders the page
/// with its data (it reads fine with JavaScript off); from then on the [`LiveJob`]
/// refreshes in place. An unknown id shows "No such job" with a way back.
#[component]
pub fn JobLoader(kind: JobKind, render: fn(LiveJob) -> AnyView) -> impl IntoView {
    let params = use_params_map();
    let id = Memo::new(move |_| params.with(|p| p.get("id").unwrap_or_default()));
    // A new id is a new page: everything below, refresh loop included, starts afresh.
    move || {
        let raw = id.get();
        view! { <LoadJob kind raw render /> }
    }
}

#[component]
fn LoadJob(kind: JobKind, raw: String, render: fn(LiveJob) -> AnyView) -> impl IntoView {
    // An id that is not a number names no job either; asking for job 0 lets the
    // server answer "not found" with its 404, as for any other missing job.
    let id = raw.parse::<i64>().ok().filter(|id| *id > 0).unwrap_or(0);
    let first = resource(|| (), move |_| async move { get_job(kind, id).await.map_err(|e| error_text(&e)) });
    let wanted = raw.clone();
    view! {
        <Suspense fallback=|| {
            view! {
                <div class="banner banner-loading" aria-busy="true">
                    <p class="muted">"Loading the job…"</p>
                </div>
            }
        }>
            {move || {
                let wanted = wanted.clone();
                Suspend::new(async move {
                    match first.await {
                        Ok(job) => render(LiveJob::new(job)),
                        Err(msg) if is_not_found(&msg) => view! { <NoSuchJob kind raw=wanted /> }.erased(),
                        Err(msg) => {
                            view! {
                                <div class="card">
                                    <h1>"The job could not be loaded"</h1>
                                    <p class="alert" role="alert">{msg}</p>
                                    <p><a href="/">"Back to the dashboard"</a></p>
                                </div>
                            }
                                .erased()
                        }
                    }
                })
            }}
        </Suspense>
    }
}

/// What an unknown or deleted job's page says.
#[component]
fn NoSuchJob(kind: JobKind, raw: String) -> impl IntoView {
    view! {
        <PageTitle text="No such job · jobdeck" />
        <div class="card not-found">
            <h1>"No such job"</h1>
            <p>
                {format!(
                    "There is no {} job #{raw}. It may have been deleted, or the link is mistyped.",
                    kind.label().to_ascii_lowercase(),
                )}
            </p>
            <p>
                <a class="btn btn-primary" href="/">
                    "Back to the dashboard"
                </a>
            </p>
        </div>
    }
}
