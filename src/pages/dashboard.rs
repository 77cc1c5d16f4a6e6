//! `/`: the jobs of both kinds, newest first and a page at a time, and the forms that
//! start new ones.

use crate::components::page_title::PageTitle;
use leptos::prelude::*;

use crate::components::erase::{erase, Erase};
use leptos_router::hooks::use_query_map;
use leptos_router::params::ParamsMap;

use crate::api::{bulk_jobs, list_jobs};
use crate::components::badge::StatusBadge;
use crate::components::browser_notify::BrowserNotify;
use crate::components::confirm_dialog::ConfirmDialog;
use crate::components::format::{error_text, plural, Time};
use crate::components::items::pager_link;
use crate::components::job_controls::JobControls;
use crate::components::live::{refresh_while, LiveJob};
use crate::components::progress::Progress;
use crate::components::resource::resource;
use crate::components::upload_form::UploadForm;
use crate::model::{
    Archived, BulkOutcome, Job, JobAction, JobFilter, JobKind, JobRef, JobsPage, Phase, JOBS_PAGE, MAX_SEARCH_CHARS,
};

/// The filter and page the URL names: `?kind=&status=&archived=&q=&offset=`.
fn filter_of(q: &ParamsMap) -> (JobFilter, i64) {
    let filter = JobFilter {
        kind: q.get("kind").and_then(|s| s.parse().ok()),
        status: q.get("status").and_then(|s| s.parse().ok()),
        archived: q.get("archived").and_then(|s| s.parse().ok()).unwrap_or_default(),
        search: q
            .get("q")
            .map(|s| s.trim().chars().take(MAX_SEARCH_CHARS).collect::<String>())
            .filter(|s| !s.is_empty()),
    };
    let offset = q.get("offset").and_then(|s| s.parse::<i64>().ok()).unwrap_or(0).max(0);
    (filter, offset)
}

/// The dashboard's address for a filter and page.
fn href_of(filter: &JobFilter, offset: i64) -> String {
    let mut q = ParamsMap::new();
    if let Some(kind) = filter.kind {
        q.insert("kind", kind.as_str().to_string());
    }
    if let Some(status) = filter.status {
        q.insert("status", status.as_str().to_string());
    }
    if let Some(archived) = filter.archived.query_value() {
        q.insert("archived", archived.to_string());
    }
    if let Some(search) = &filter.search {
        q.insert("q", search.clone());
    }
    if offset > 0 {
        q.insert("offset", offset.to_string());
    }
    format!("/{}", q.to_query_string())
}

/// The dashboard: a page of the job list (newest first; filters and page in the URL,
/// refreshed every 3 s while a job on it is live) beside the two upload forms.
#[component]
pub fn Dashboard() -> impl IntoView {
    let (filter, offset) = use_query_map().with_untracked(filter_of);
    view! {
        <PageTitle text="Jobs · jobdeck" />
        <DashboardBody filter offset />
    }
}

/// The page's live part, hydrated in the browser.
#[island]
fn DashboardBody(filter: JobFilter, offset: i64) -> impl IntoView {
    let wanted = Memo::new(move |_| (filter.clone(), offset));
    let first = resource(
        move || wanted.get(),
        |(filter, offset)| async move {
            list_jobs(filter.clone(), offset, JOBS_PAGE).await.map(|page| (filter, page)).map_err(|e| error_text(&e))
        },
    );
    view! {
        <div class="dashboard">
            <section class="dashboard-jobs" aria-labelledby="jobs-title">
                <div class="jobs-head">
                    <h1 id="jobs-title">"Jobs"</h1>
                    <BrowserNotify />
                </div>
                {move || view! { <Filters filter=wanted.get().0 /> }}
                <Suspense fallback=|| view! { <p class="muted">"Loading jobs…"</p> }>
                    {move || Suspend::new(async move {
                        match first.await {
                            Ok((filter, page)) => view! { <JobList filter initial=page /> }.erased(),
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

/// The filter form: a plain GET form, so it works before (and without) the browser
/// code; a changed choice applies at once once it runs.
#[component]
fn Filters(filter: JobFilter) -> impl IntoView {
    let option = |value: &'static str, label: &'static str, chosen: bool| {
        view! {
            <option value=value selected=chosen>
                {label}
            </option>
        }
    };
    let kinds = [("", "All kinds", filter.kind.is_none())]
        .into_iter()
        .chain([JobKind::Research, JobKind::Preprocess].map(|k| (k.as_str(), k.label(), filter.kind == Some(k))))
        .map(|(v, l, c)| option(v, l, c))
        .collect_view();
    let statuses = [("", "Any status", filter.status.is_none())]
        .into_iter()
        .chain(Phase::ALL.map(|p| (p.as_str(), p.label(), filter.status == Some(p))))
        .map(|(v, l, c)| option(v, l, c))
        .collect_view();
    let archived = [
        ("", "Not archived", filter.archived == Archived::Hide),
        ("true", "Archived only", filter.archived == Archived::Only),
        ("all", "Archived or not", filter.archived == Archived::All),
    ]
    .map(|(v, l, c)| option(v, l, c))
    .collect_view();
    let filtered = filter != JobFilter::default();
    let submit_on_change = move |ev: leptos::ev::Event| {
        #[cfg(feature = "hydrate")]
        {
            use leptos::wasm_bindgen::JsCast;
            if let Some(form) = event_target::<web_sys::HtmlElement>(&ev)
                .closest("form")
                .ok()
                .flatten()
                .and_then(|f| f.dyn_into::<web_sys::HtmlFormElement>().ok())
            {
                let _ = form.request_submit();
            }
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = ev;
    };
    view! {
        <form class="filters" method="get" action="/" role="search" aria-label="Filter jobs">
            <label>
                <span class="visually-hidden">"Kind"</span>
                <select name="kind" on:change=submit_on_change>
                    {kinds}
                </select>
            </label>
            <label>
                <span class="visually-hidden">"Status"</span>
                <select name="status" on:change=submit_on_change>
                    {statuses}
                </select>
            </label>
            <label>
                <span class="visually-hidden">"Archived"</span>
                <select name="archived" on:change=submit_on_change>
                    {archived}
                </select>
            </label>
            <label class="filter-search">
                <span class="visually-hidden">"Name contains"</span>
                <input
                    type="search"
                    name="q"
                    placeholder="Search names"
                    maxlength=MAX_SEARCH_CHARS.to_string()
                    value=filter.search.clone().unwrap_or_default()
                />
            </label>
            <button type="submit" class="btn btn-small btn-plain">
                "Filter"
            </button>
            {filtered.then(|| view! { <a class="btn btn-small btn-plain" href="/">"Clear"</a> })}
        </form>
    }
}
/// The job table, kept fresh in place: rows are keyed by job, so a refresh changes
/// the numbers that changed and adds or drops rows, and nothing else moves. Rows can
/// be chosen for the bulk bar.
#[component]
fn JobList(filter: JobFilter, initial: JobsPage) -> impl IntoView {
    let (offset, limit) = (initial.offset, initial.limit);
    let filter = StoredValue::new(filter);
    let total = RwSignal::new(initial.total);
    let jobs = RwSignal::new(initial.jobs);
    let error = RwSignal::new(None::<String>);
    let chosen = RwSignal::new(Vec::<JobRef>::new());
    let live = Signal::derive(move || jobs.with(|list| list.iter().any(|j| !j.is_terminal())));
    let refresh = move || async move {
        match list_jobs(filter.get_value(), offset, limit).await {
            Ok(page) => {
                if jobs.try_with_untracked(|old| *old != page.jobs) == Some(true) {
                    // A chosen job that left the list is no longer chosen.
                    let _ =
                        chosen.try_update(|c| c.retain(|r| page.jobs.iter().any(|j| j.kind == r.kind && j.id == r.id)));
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
    };
    refresh_while(live, refresh);
    let reload = Callback::new(move |()| leptos::task::spawn_local(refresh()));
    // Paging only once there is more than one page.
    let pager = move || {
        let (shown, total) = (jobs.with(Vec::len) as i64, total.get());
        (total > limit || offset > 0).then(|| {
            let href = |offset: i64| filter.with_value(|f| href_of(f, offset));
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
    let all_chosen = move || {
        jobs.with(|l| {
            !l.is_empty() && l.iter().all(|j| chosen.with(|c| c.contains(&JobRef { kind: j.kind, id: j.id })))
        })
    };
    let choose_all = move |ev: leptos::ev::Event| {
        let on = event_target_checked(&ev);
        chosen.set(if on {
            jobs.with(|l| l.iter().map(|j| JobRef { kind: j.kind, id: j.id }).collect())
        } else {
            Vec::new()
        });
    };
    let filtered = filter.with_value(|f| *f != JobFilter::default());

    view! {
        <Show
            when=move || { jobs.with(|l| !l.is_empty()) || offset > 0 || filtered }
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
            {erase(view! {
                <BulkBar chosen total filter=filter.get_value() reload />
                <Show
                    when=move || jobs.with(|l| !l.is_empty())
                    fallback=|| view! { <p class="card empty muted">"No job matches this filter."</p> }
                >
                    {erase(view! {
                        <div class="table-wrap card card-flush" role="region" aria-label="Jobs table" tabindex="0">
                            <table class="jobs">
                                <thead>
                                    <tr>
                                        <th scope="col" class="choose-cell">
                                            <input
                                                type="checkbox"
                                                aria-label="Choose every job on this page"
                                                prop:checked=all_chosen
                                                on:change=choose_all
                                            />
                                        </th>
                                        <th scope="col">"Job"</th>
                                        <th scope="col">"Status"</th>
                                        <th scope="col">"Progress"</th>
                                        <th scope="col">"Times"</th>
                                    </tr>
                                </thead>
                                <tbody>
                                    <For each=move || jobs.get() key=|j| (j.kind, j.id) let:job>
                                        <JobRow jobs chosen reload initial=job />
                                    </For>
                                </tbody>
                            </table>
                        </div>
                    })}
                </Show>
                {pager}
            })}
        </Show>
        {move || error.get().map(|e| view! { <p class="refresh-note">"Could not refresh (" {e} "); retrying."</p> })}
    }
}

#[component]
fn JobRow(
    jobs: RwSignal<Vec<Job>>,
    chosen: RwSignal<Vec<JobRef>>,
    reload: Callback<()>,
    initial: Job,
) -> impl IntoView {
    let (kind, id) = (initial.kind, initial.id);
    let me = JobRef { kind, id };
    let live = LiveJob::fixed(initial);
    // This row's job from the latest list; the last known state once it leaves it.
    Effect::new(move |_| {
        if let Some(job) = jobs.with(|l| l.iter().find(|j| j.kind == kind && j.id == id).cloned()) {
            live.show(job);
        }
    });
    let job = live.job;
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
    let archived = move || job.with(|j| j.archived_at.is_some());
    let created = Signal::derive(move || Some(job.with(|j| j.created_at)));
    let updated = Signal::derive(move || Some(job.with(|j| j.updated_at)));
    let label = move || format!("Choose {}", job.with(|j| j.name.clone()));
    view! {
        <tr class:row-chosen=move || chosen.with(|c| c.contains(&me))>
            <td class="choose-cell">
                <input
                    type="checkbox"
                    aria-label=label
                    prop:checked=move || chosen.with(|c| c.contains(&me))
                    on:change=move |ev| {
                        let on = event_target_checked(&ev);
                        chosen.update(|c| {
                            c.retain(|r| *r != me);
                            if on {
                                c.push(me);
                            }
                        });
                    }
                />
            </td>
            <td class="job-cell">
                <a class="job-link" href=kind.page_url(id)>{name}</a>
                <div class="small muted">
                    {format!("{} #{id}", kind.label())} " · " {file}
                    {move || archived().then(|| view! { " · " <span class="tag">"Archived"</span> })}
                </div>
            </td>
            <td class="status-cell">
                <StatusBadge phase />
                <JobControls live row=true on_deleted=reload />
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

/// One action on the chosen jobs, or on every job the current filter takes; then what
/// it did to each job.
#[component]
fn BulkBar(
    chosen: RwSignal<Vec<JobRef>>,
    total: RwSignal<i64>,
    filter: JobFilter,
    reload: Callback<()>,
) -> impl IntoView {
    let filter = StoredValue::new(filter);
    let busy = RwSignal::new(None::<JobAction>);
    let confirm = RwSignal::new(None::<JobAction>);
    let outcome = RwSignal::new(None::<(JobAction, Result<BulkOutcome, String>)>);
    // Whether the action goes to every job the filter takes rather than the chosen ones.
    let every = RwSignal::new(false);
    let count = move || if every.get() { total.get() } else { chosen.with(Vec::len) as i64 };

    let run = move |action: JobAction| {
        if busy.get_untracked().is_some() || count() == 0 {
            return;
        }
        busy.set(Some(action));
        let (jobs, by_filter) =
            if every.get_untracked() { (None, Some(filter.get_value())) } else { (Some(chosen.get_untracked()), None) };
        leptos::task::spawn_local(async move {
            let answer = bulk_jobs(action, jobs, by_filter).await.map_err(|e| error_text(&e));
            let _ = outcome.try_set(Some((action, answer)));
            let _ = busy.try_set(None);
            reload.run(());
        });
    };
    let request = move |action: JobAction| match action {
        JobAction::Cancel | JobAction::Delete => confirm.set(Some(action)),
        other => run(other),
    };
    let actions = [
        JobAction::Pause,
        JobAction::Resume,
        JobAction::Cancel,
        JobAction::Retry,
        JobAction::Archive,
        JobAction::Unarchive,
        JobAction::Delete,
    ];
    let dialog = move || {
        confirm.get().map(|action| {
            let n = count();
            let (title, body, label) = if action == JobAction::Cancel {
                (
                    format!("Cancel {}?", plural(n, "job", "jobs")),
                    "Each stops now and cannot be resumed; finished items stay saved. Jobs already over are left as they are.".to_string(),
                    "Cancel jobs",
                )
            } else {
                (
                    format!("Delete {}?", plural(n, "job", "jobs")),
                    "Each job that is over is removed with all its items, for good. Jobs still running are left as they are: pause or cancel them first.".to_string(),
                    "Delete jobs",
                )
            };
            view! {
                <ConfirmDialog
                    title
                    body
                    confirm_label=label
                    dismiss_label="Keep them"
                    on_confirm=Callback::new(move |()| {
                        confirm.set(None);
                        run(action);
                    })
                    on_dismiss=Callback::new(move |()| confirm.set(None))
                />
            }
        })
    };
    let report = move || {
        outcome.get().map(|(action, answer)| match answer {
            Err(e) => view! { <p class="alert" role="alert">{e}</p> }.erased(),
            Ok(out) => {
                let done = out.results.iter().filter(|r| r.ok).count();
                let refused = out.results.len() - done;
                let summary = format!(
                    "{}: {} done{}",
                    action.label(),
                    plural(done as i64, "job", "jobs"),
                    if refused > 0 { format!(", {refused} refused") } else { String::new() }
                );
                let lines = out
                    .results
                    .into_iter()
                    .map(|r| {
                        let what = format!("{} #{}", r.kind.label(), r.id);
                        let said = if r.ok {
                            "done".to_string()
                        } else {
                            format!("{} ({})", r.error.unwrap_or_default(), r.status.unwrap_or_default())
                        };
                        view! {
                            <li class:bulk-refused=!r.ok>
                                <a href=r.kind.page_url(r.id)>{what}</a>
                                ": "
                                {said}
                            </li>
                        }
                    })
                    .collect_view();
                view! {
                    <div class="bulk-report" role="status" data-testid="bulk-report">
                        <p>
                            <strong>{summary}</strong>
                            " "
                            <button type="button" class="btn btn-small btn-plain" on:click=move |_| outcome.set(None)>
                                "Dismiss"
                            </button>
                        </p>
                        <ul>{lines}</ul>
                    </div>
                }
                .erased()
            }
        })
    };
    view! {
        <div class="bulk-bar card" role="toolbar" aria-label="Act on several jobs">
            <span class="bulk-count">
                {move || {
                    if every.get() {
                        format!("All {} matching", plural(total.get(), "job", "jobs"))
                    } else {
                        format!("{} chosen", chosen.with(Vec::len))
                    }
                }}
            </span>
            <label class="bulk-every small">
                <input type="checkbox" prop:checked=every on:change=move |ev| every.set(event_target_checked(&ev)) />
                " every job matching the filter"
            </label>
            {actions
                .into_iter()
                .map(|action| {
                    view! {
                        <button
                            type="button"
                            class="btn btn-small btn-plain"
                            disabled=move || busy.get().is_some() || count() == 0
                            aria-busy=move || (busy.get() == Some(action)).then_some("true")
                            on:click=move |_| request(action)
                        >
                            {match action {
                                JobAction::Delete => "Delete",
                                JobAction::Retry => "Retry failed",
                                other => other.label(),
                            }}
                        </button>
                    }
                })
                .collect_view()}
        </div>
        {report}
        {dialog}
    }
}
