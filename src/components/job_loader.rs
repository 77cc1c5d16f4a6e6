//! Loading the job a page is about.

use crate::components::page_title::PageTitle;
use leptos::prelude::*;

use crate::components::erase::Erase;
use leptos_router::hooks::{use_params_map, use_query_map};

use crate::api::get_job;
use crate::components::format::{error_text, is_not_found};
use crate::components::items::ItemsQuery;
use crate::components::live::LiveJob;
use crate::components::live_page::LivePage;
use crate::components::resource::resource;
use crate::model::{Job, JobKind};

/// Loads the job named by the route's `:id`, titles the page with `title` and hands
/// the job and the address's query to `render`, which renders the page.
///
/// Rendered by the server only: the page arrives with its data (it reads fine with
/// JavaScript off), inside a [`LivePage`] that keeps it fresh in the browser. An
/// unknown id shows "No such job" with a way back.
#[component]
pub fn JobLoader(
    kind: JobKind,
    title: fn(&Job) -> String,
    render: fn(LiveJob, ItemsQuery) -> AnyView,
) -> impl IntoView {
    let raw = use_params_map().with_untracked(|p| p.get("id").unwrap_or_default());
    let query = use_query_map().with_untracked(ItemsQuery::from_params);
    view! { <LoadJob kind raw title render query /> }
}

#[component]
fn LoadJob(
    kind: JobKind,
    raw: String,
    title: fn(&Job) -> String,
    render: fn(LiveJob, ItemsQuery) -> AnyView,
    query: ItemsQuery,
) -> impl IntoView {
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
                        Ok(job) => view! {
                            <PageTitle text=title(&job) />
                            <LivePage job=job.clone()>{render(LiveJob::fixed(job), query)}</LivePage>
                        }
                            .erased(),
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
