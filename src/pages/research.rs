//! `/processing/:id`: one full research job.

use leptos::prelude::*;

use crate::components::erase::{erase, Erase};

use crate::api::list_items;
use crate::components::activity::ActivityLog;
use crate::components::browser_notify::NotifyIsland;
use crate::components::concurrency::ConcurrencyIsland;
use crate::components::format::{error_text, plural, Crumbs};
use crate::components::items::ItemsQuery;
use crate::components::job_controls::ControlsIsland;
use crate::components::job_loader::JobLoader;
use crate::components::live::LiveJob;
use crate::components::resource::resource;
use crate::components::schedule::ScheduleIsland;
use crate::components::status_banner::StatusBanner;
use crate::model::{ItemStatus, Job, JobKind, Phase};

/// The full research job page: the status banner with the controls in it.
#[component]
pub fn ResearchPage() -> impl IntoView {
    view! {
        <JobLoader
            kind=JobKind::Research
            title=|job| format!("{} · Full research · jobdeck", job.name)
            render=research_job
        />
    }
}

/// The page as the server renders it; the controls are islands.
fn research_job(live: LiveJob, query: ItemsQuery) -> AnyView {
    let id = live.job.with_untracked(|j| j.id);
    let job = move || live.job.get_untracked();
    let accounts = format!("/processing/{id}/accounts");
    let export = |format: &str| format!("{}/{id}/export?format={format}", JobKind::Research.rest_root());
    let failed = Memo::new(move |_| live.job.with(|j| j.failed));
    let breakdown = move || live.job.with(account_breakdown);
    let failed_link = format!("{accounts}?status=failed");
    let view_all = accounts.clone();
    view! {
        <Crumbs here=format!("Full research #{id}") />
        <StatusBanner live>
            {erase(view! {
                <ControlsIsland job=job() centered=false view_all=Some(view_all) />
                <ConcurrencyIsland job=job() />
                <NotifyIsland />
            })}
        </StatusBanner>
        <section class="card" aria-labelledby="accounts-title">
            <h2 id="accounts-title">"Accounts"</h2>
            <p>{breakdown}</p>
            <NowRunning live />
            <p class="link-row">
                {move || {
                    (failed.get() > 0)
                        .then(|| {
                            view! {
                                <a href=failed_link.clone()>
                                    {format!("See why {} failed", failed.get())}
                                </a>
                            }
                        })
                }}
                <a href=export("csv") download rel="external">"Export CSV"</a>
                <a href=export("json") download rel="external">"Export JSON"</a>
            </p>
        </section>
        <ScheduleIsland job=job() />
        <ActivityLog live base=format!("/processing/{id}") query />
    }
    .erased()
}

fn account_breakdown(j: &Job) -> String {
    if j.total == 0 {
        return "This job has no accounts.".into();
    }
    // A cancelled job's remaining accounts will never run (SPEC section 16).
    let left = if j.phase() == Phase::Cancelled { "not run" } else { "waiting" };
    format!(
        "{}: {} researched, {} failed, {} in progress, {} {left}.",
        plural(j.total, "account", "accounts"),
        j.completed,
        j.failed,
        j.processing,
        j.pending
    )
}

/// The accounts being researched right now, so a running job visibly does something.
#[component]
fn NowRunning(live: LiveJob) -> impl IntoView {
    let id = live.job.with_untracked(|j| j.id);
    let running = Memo::new(move |_| live.job.with(|j| !j.is_terminal() && j.processing > 0));
    let items = resource(
        move || (running.get(), live.tick.get()),
        move |(running, _)| async move {
            if !running {
                return Ok(Vec::new());
            }
            list_items(JobKind::Research, id, Some(ItemStatus::Processing), None, 0, 10)
                .await
                .map(|page| page.items)
                .map_err(|e| error_text(&e))
        },
    );
    view! {
        <Transition>
            {move || Suspend::new(async move {
                let items = items.await.unwrap_or_default();
                (!items.is_empty())
                    .then(|| {
                        view! {
                            <div class="now-running">
                                <h3>"Working on now"</h3>
                                <ul>
                                    {items
                                        .into_iter()
                                        .map(|item| {
                                            let name = item.name.filter(|n| !n.trim().is_empty());
                                            let site = item.website.or(item.domain).unwrap_or_default();
                                            view! {
                                                <li>
                                                    <span class="spinner" aria-hidden="true"></span>
                                                    <strong>{name.unwrap_or_else(|| format!("Line {}", item.line))}</strong>
                                                    " "
                                                    <span class="muted small">{site}</span>
                                                </li>
                                            }
                                        })
                                        .collect_view()}
                                </ul>
                            </div>
                        }
                    })
            })}
        </Transition>
    }
}
