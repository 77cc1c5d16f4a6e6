//! `/`: the jobs of both kinds, newest first and a page at a time, and the forms that
//! start new ones.

use crate::components::page_title::PageTitle;
use leptos::prelude::*;

use crate::components::erase::Erase;
use leptos_router::hooks::use_query_map;

use crate::api::list_jobs;
use crate::components::badge::StatusBadge;
use crate::components::format::{error_text, Time};
use crate::components::items::pager_link;
use crate::components::live::refresh_while;
use crate::components::progress::Progress;
use crate::components::upload_form::UploadForm;
use crate::model::{Job, JobKind, JobsPage, JOBS_PAGE};

/// The dashboard: a page of the job list (newest first, `?offset=` in the URL,
/// refreshed every 3 s while a job on it is live) beside the two upload forms.
#[component]
pub fn Dashboard() -> impl IntoView {
    let query = use_query_map();
    let offset =
        Memo::new(move |_| query.with(|q| q.get("offset").and_then(|s| s.parse::<i64>().ok()).unwrap_or(0).max(0)));
    let first = Resource::new(
        move || offset.get(),
        |offset| async move { list_jobs(offset, JOBS_PAGE).await.map_err(|e| error_text(&e)) },
    );
    view! {
        <PageTitle text="Jobs · jobdeck" />
        <div class="dashboard">
            <section class="dashboard-jobs" aria-labelledby="jobs-title">
                <h1 id="jobs-title">"Jobs"</h1>
                <Suspense fallback=|| view! { <p class="muted">"Loading jobs…"</p> }>
                    {move || Suspend::new(async move {
                        match first.await {
                            Ok(page) => view! { <JobList initial=page /> }.erased(),
                            Err(e) => view! { <p class="alert" role="alert">{e}</p> }.erased(),
                        }
                    })}
                </Suspense>
            </section>
            <aside class="dashboard-new" aria-label="Start a job">
                <UploadForm kind=JobKind::Research />
                <UploadForm kind=JobKind::Preprocess />
            </aside>
        </div>
    }
}

/// The job table, kept fresh in place: rows are keyed by job, so a refresh changes
/// the numbers that changed and adds or drops rows, and nothing else moves.
#[component]
fn JobList(initial: JobsPage) -> impl IntoView {
    let (offset, limit) = (initial.offset, initial.limit);
    let total = RwSignal::new(initial.total);
    let jobs = RwSignal::new(initial.jobs);
    let error = RwSignal::new(None::<String>);
    let live = Signal::derive(move || jobs.with(|list| list.iter().any(|j| !j.is_terminal())));
    refresh_while(live, move || async move {
        match list_jobs(offset, limit).await {
            Ok(page) => {
                if jobs.try_with_untracked(|old| *old != page.jobs) == Some(true) {
                    jobs.set(page.jobs);
                }
                if total.try_get_untracked() != Some(page.total) {
                    let _ = total.try_set(page.total);
                }
                let _ = error.try_set(None);
            }
            Err(e) => {
                let _ = error.try_set(Some(error_text(&e)));
            }
        }
    });
    let href = |offset: i64| if offset > 0 { format!("/?offset={offset}") } else { "/".to_string() };
    // Paging only once there is more than one page.
    let pager = move || {
        let (shown, total) = (jobs.with(Vec::len) as i64, total.get());
        (total > limit || offset > 0).then(|| {
            let prev = (offset > 0).then(|| href((offset - limit).max(0)));
            let next = (offset + shown < total).then(|| href(offset + limit));
            let summary = if shown == 0 {
                format!("This page is past the end of the list of {total} jobs.")
            } else {
                format!("Jobs {}–{} of {total}", offset + 1, offset + shown)
            };
            view! {
                <nav class="pager" aria-label="Pages of jobs">
                    <span class="pager-summary">{summary}</span>
                    {pager_link(prev, "← Newer")}
                    {pager_link(next, "Older →")}
                </nav>
            }
        })
    };

    view! {
        <Show
            when=move || { jobs.with(|l| !l.is_empty()) || offset > 0 }
            fallback=|| {
                view! {
                    <div class="card empty" data-testid="empty-state">
                        <p>
                            <strong>"No jobs yet."</strong>
                            " Upload a CSV to start one: full research visits each account's website, preprocessing cleans a raw list first."
                        </p>
                    </div>
                }
            }
        >
            <div class="table-wrap card card-flush" role="region" aria-label="Jobs table" tabindex="0">
                <table class="jobs">
                    <thead>
                        <tr>
                            <th scope="col">"Job"</th>
                            <th scope="col">"Status"</th>
                            <th scope="col">"Progress"</th>
                            <th scope="col">"Times"</th>
                        </tr>
                    </thead>
                    <tbody>
                        <For each=move || jobs.get() key=|j| (j.kind, j.id) let:job>
                            <JobRow jobs initial=job />
                        </For>
                    </tbody>
                </table>
            </div>
            {pager}
        </Show>
        {move || error.get().map(|e| view! { <p class="refresh-note">"Could not refresh (" {e} "); retrying."</p> })}
    }
}

#[component]
fn JobRow(jobs: RwSignal<Vec<Job>>, initial: Job) -> impl IntoView {
    let (kind, id) = (initial.kind, initial.id);
    // This row's job from the latest list; the last known state once it leaves the list.
    let job = Memo::new(move |prev: Option<&Job>| {
        jobs.with(|l| l.iter().find(|j| j.kind == kind && j.id == id).cloned())
            .or_else(|| prev.cloned())
            .unwrap_or_else(|| initial.clone())
    });
    let phase = Signal::derive(move || job.with(Job::phase));
    let counts = move || {
        job.with(|j| {
            format!(
                "{} completed · {} failed · {} processing · {} pending",
                j.completed, j.failed, j.processing, j.pending
            )
        })
    };
    let name = move || job.with(|j| j.name.clone());
    let file = move || job.with(|j| j.filename.clone());
    let created = Signal::derive(move || Some(job.with(|j| j.created_at)));
    let updated = Signal::derive(move || Some(job.with(|j| j.updated_at)));
    view! {
        <tr>
            <td class="job-cell">
                <a class="job-link" href=kind.page_url(id)>{name}</a>
                <div class="small muted">{format!("{} #{id}", kind.label())} " · " {file}</div>
            </td>
            <td class="status-cell">
                <StatusBadge phase />
            </td>
            <td class="progress-cell">
                <Progress job />
                <div class="small muted">{counts}</div>
            </td>
            <td class="time-cell">
                <div>
                    <span class="muted">"Created "</span>
                    <Time at=created short=true />
                </div>
                <div>
                    <span class="muted">"Updated "</span>
                    <Time at=updated short=true />
                </div>
            </td>
        </tr>
    }
}
