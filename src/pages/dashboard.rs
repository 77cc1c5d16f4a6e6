//! `/`: the jobs of both kinds, newest first and a page at a time, and the forms that
//! start new ones.

use crate::components::page_title::PageTitle;
use leptos::either::Either;
use leptos::prelude::*;

use crate::components::erase::Erase;
use leptos_router::hooks::use_query_map;
use leptos_router::params::ParamsMap;

use crate::api::{bulk_jobs, list_jobs};
use crate::components::badge::{FailedNote, StatusBadge};
use crate::components::browser_notify::NotifyIsland;
use crate::components::confirm_dialog::ConfirmDialog;
use crate::components::format::{error_text, plural, Time};
use crate::components::items::pager_link;
use crate::components::job_controls::JobControls;
use crate::components::live::{refresh_while, LiveJob};
use crate::components::live_page::{refresh_note, PageRefresher};
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
///
/// Rendered by the server; in the browser [`ListLive`] keeps the list fresh, and the
/// parts a person acts on are islands: the filters, each row's controls, the bulk bar,
/// the upload forms and "Notify me".
#[component]
pub fn Dashboard() -> impl IntoView {
    let (filter, offset) = use_query_map().with_untracked(filter_of);
    let wanted = filter.clone();
    let first = resource(
        || (),
        move |()| {
            let filter = wanted.clone();
            async move { list_jobs(filter, offset, JOBS_PAGE).await.map_err(|e| error_text(&e)) }
        },
    );
    view! {
        <PageTitle text="Jobs · jobdeck" />
        <div class="dashboard">
            <section class="dashboard-jobs" aria-labelledby="jobs-title">
                <div class="jobs-head">
                    <h1 id="jobs-title">"Jobs"</h1>
                    <div class="jobs-head-actions">
                        // The upload forms sit after the list; on a phone that is far down.
                        <a class="btn btn-primary btn-small" href="#new-job">"New job"</a>
                        <NotifyIsland />
                    </div>
                </div>
                <Deleted />
                <Filters filter=filter.clone() />
                <Suspense fallback=|| view! { <p class="muted">"Loading jobs…"</p> }>
                    {move || {
                        let filter = filter.clone();
                        Suspend::new(async move {
                            match first.await {
                                Ok(page) => view! { <JobList filter page /> }.erased(),
                                Err(e) => view! { <p class="alert" role="alert">{e}</p> }.erased(),
                            }
                        })
                    }}
                </Suspense>
            </section>
            <aside class="dashboard-new" id="new-job" tabindex="-1" aria-label="Start a job">
                <UploadIsland kind=JobKind::Research />
                <UploadIsland kind=JobKind::Preprocess />
            </aside>
        </div>
    }
}

/// The filter form: a plain GET form, so it works before (and without) the browser
/// code; a changed choice applies at once once it runs.
#[island]
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
        .chain(JobKind::ALL.map(|k| (k.as_str(), k.label(), filter.kind == Some(k))))
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
/// The job table as the server renders it, inside [`ListLive`]. Rows carry their
/// job's key, so the refresh replaces a row that now shows another job and patches
/// the rest in place; rows can be chosen for the bulk bar.
#[component]
fn JobList(filter: JobFilter, page: JobsPage) -> impl IntoView {
    let (offset, limit, total) = (page.offset, page.limit, page.total);
    let filtered = filter != JobFilter::default();
    let shown = page.jobs.len() as i64;
    // Paging only once there is more than one page, above and below the list.
    let pager = |place: &'static str| {
        (total > limit || offset > 0).then(|| {
        let href = |offset: i64| href_of(&filter, offset);
        let prev = (offset > 0).then(|| href((offset - limit).max(0)));
        let next = (offset + shown < total).then(|| href(offset + limit));
        let summary = if shown == 0 {
            format!("This page is past the end of the list of {total} jobs.")
        } else {
            format!("Jobs {}–{} of {total}", offset + 1, offset + shown)
        };
        view! {
            // The lower one keeps the name "Pages of jobs"; the upper one's name differs.
            <nav class=format!("pager pager-{place}") aria-label=if place == "top" { "Job pages, above the list" } else { "Pages of jobs" }>
                <span class="pager-summary">{summary}</span>
                {pager_link(prev, "← Newer")}
                {pager_link(next, "Older →")}
            </nav>
        }
        })
    };
    let body = if page.jobs.is_empty() && offset == 0 && !filtered {
        view! {
            <div class="card empty" data-testid="empty-state">
                <p>
                    <strong>"No jobs yet."</strong>
                    " Upload a CSV to start one: full research visits each account's website, preprocessing cleans a raw list first."
                </p>
            </div>
        }
        .erased()
    } else {
        let table = if page.jobs.is_empty() {
            view! { <p class="card empty muted">"No job matches this filter."</p> }.erased()
        } else {
            let rows = page.jobs.iter().cloned().map(|job| view! { <JobRow job /> }).collect_view();
            view! {
                <div class="table-wrap card card-flush" role="region" aria-label="Jobs table" tabindex="0">
                    <table class="jobs">
                        <thead>
                            <tr>
                                <th scope="col" class="choose-cell">
                                    <input type="checkbox" aria-label="Choose every job on this page" data-choose-all="" />
                                </th>
                                <th scope="col">"Job"</th>
                                <th scope="col">"Status"</th>
                                <th scope="col">"Progress"</th>
                                <th scope="col">"Times"</th>
                            </tr>
                        </thead>
                        <tbody>{rows}</tbody>
                    </table>
                </div>
            }
            .erased()
        };
        view! {
            <BulkBar filter=filter.clone() total />
            {pager("top")}
            {table}
            {pager("bottom")}
        }
        .erased()
    };
    view! {
        <ListLive filter offset jobs=page.jobs total>
            {body}
        </ListLive>
    }
}

#[cfg(feature = "hydrate")]
thread_local! {
    /// The list on screen, for the islands inside it.
    static LIST: std::cell::Cell<Option<ListState>> = const { std::cell::Cell::new(None) };
    /// Each row's job, kept fresh by the list's refresh.
    static ROWS: std::cell::RefCell<Vec<LiveJob>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// What the list's islands share.
#[derive(Clone, Copy)]
struct ListState {
    total: RwSignal<i64>,
    /// Bumped to refresh the list at once (after an action).
    reload: RwSignal<u64>,
}

fn list_state() -> Option<ListState> {
    #[cfg(feature = "hydrate")]
    return LIST.with(|l| l.get());
    #[cfg(not(feature = "hydrate"))]
    None
}

/// Refreshes the list at once.
fn reload_list() {
    if let Some(list) = list_state() {
        list.reload.update(|n| *n += 1);
    }
}

/// Keeps the list fresh: the jobs every 3 s while one of them is live, and when they
/// changed, the page's HTML from the server, brought in place by the same morph as a
/// job page's; each row's controls are shown the row's new job.
#[island]
fn ListLive(filter: JobFilter, offset: i64, jobs: Vec<Job>, total: i64, children: Children) -> impl IntoView {
    let jobs = RwSignal::new(jobs);
    let total = RwSignal::new(total);
    let error = RwSignal::new(None::<String>);
    let reload = RwSignal::new(0u64);
    #[cfg(feature = "hydrate")]
    LIST.with(|l| l.set(Some(ListState { total, reload })));
    let filter = StoredValue::new(filter);
    let refresher = PageRefresher::new(error);
    let refresh = move || async move {
        match list_jobs(filter.get_value(), offset, JOBS_PAGE).await {
            Ok(page) => {
                let changed = jobs.try_with_untracked(|old| *old != page.jobs) == Some(true)
                    || total.try_get_untracked() != Some(page.total);
                if changed {
                    #[cfg(feature = "hydrate")]
                    ROWS.with(|rows| {
                        // A row whose job left the page goes with it; the others are
                        // shown their news.
                        rows.borrow_mut().retain(|row| {
                            let key = row.job.try_with_untracked(|j| (j.kind, j.id));
                            match page.jobs.iter().find(|j| Some((j.kind, j.id)) == key) {
                                Some(job) => {
                                    row.show(job.clone());
                                    true
                                }
                                None => false,
                            }
                        });
                    });
                    let _ = jobs.try_set(page.jobs);
                    let _ = total.try_set(page.total);
                    refresher.run();
                }
                let _ = error.try_set(None);
            }
            Err(e) => {
                let _ = error.try_set(Some(error_text(&e)));
            }
        }
    };
    let live = Signal::derive(move || jobs.with(|list| list.iter().any(|j| !j.is_terminal())));
    refresh_while(live, refresh);
    Effect::watch(move || reload.get(), move |_, _, _| leptos::task::spawn_local(refresh()), false);
    view! {
        <div data-live-page="">{children()}</div>
        {refresh_note(error)}
    }
}

#[component]
fn JobRow(job: Job) -> impl IntoView {
    let (kind, id) = (job.kind, job.id);
    let counts = format!(
        "{} completed · {} failed · {} processing · {} pending",
        job.completed, job.failed, job.processing, job.pending
    );
    let phase = Signal::stored(job.phase());
    let created = Signal::stored(Some(job.created_at));
    let updated = Signal::stored(Some(job.updated_at));
    let label = format!("Choose {}", job.name);
    let archived = job.archived_at.is_some();
    view! {
        <tr data-key=format!("{}-{id}", kind.as_str())>
            <td class="choose-cell">
                <input type="checkbox" aria-label=label data-choose=format!("{}:{id}", kind.as_str()) />
            </td>
            <td class="job-cell">
                <a class="job-link" href=kind.page_url(id)>{job.name.clone()}</a>
                <div class="small muted">
                    {format!("{} #{id}", kind.label())} " · " {job.filename.clone()}
                    {archived.then(|| view! { " · " <span class="tag">"Archived"</span> })}
                </div>
            </td>
            <td class="status-cell">
                <StatusBadge phase />
                <FailedNote phase failed=Signal::stored(job.failed) />
                <RowControls job=job.clone() />
            </td>
            <td class="progress-cell">
                <Progress job=Signal::stored(job) />
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

/// A row's Pause/Resume/Cancel/Delete, kept on the row's job by the list's refresh;
/// an action refreshes the list at once.
#[island]
fn RowControls(job: Job) -> impl IntoView {
    let live = LiveJob::fixed(job);
    // A row that a refresh brought in again takes the place of its earlier copy, so
    // each job on screen is shown its news (and announced) once.
    #[cfg(feature = "hydrate")]
    ROWS.with(|rows| {
        let mut rows = rows.borrow_mut();
        let key = live.job.with_untracked(|j| (j.kind, j.id));
        rows.retain(|r| r.job.try_with_untracked(|j| (j.kind, j.id)).is_some_and(|k| k != key));
        rows.push(live);
    });
    let reload = Callback::new(move |()| reload_list());
    let name = live.job.with_untracked(|j| j.name.clone());
    let on_deleted = Callback::new(move |()| {
        deleted_note().set(Some(name.clone()));
        reload_list();
    });
    view! { <JobControls live row=true on_deleted on_changed=reload /> }
}

#[cfg(feature = "hydrate")]
thread_local! {
    /// The name of the job deleted last, from this page or the one before; owned by
    /// no island, so a row that goes with its job leaves it in place.
    static DELETED: RwSignal<Option<String>> = {
        let owner = Owner::new_root(None);
        let note = owner.with(|| RwSignal::new(None));
        std::mem::forget(owner);
        note
    };
}

fn deleted_note() -> RwSignal<Option<String>> {
    #[cfg(feature = "hydrate")]
    return DELETED.with(|d| *d);
    // On the server each page renders on its own.
    #[cfg(not(feature = "hydrate"))]
    RwSignal::new(None)
}

/// "Deleted “name”." after a job's delete, from its page (which leaves the name in
/// the tab's session storage) or from its row here (SPEC section 16).
#[island]
fn Deleted() -> impl IntoView {
    let note = deleted_note();
    // After hydration, which must find what the server rendered (no note).
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| {
        if let Ok(Some(storage)) = window().session_storage() {
            let key = crate::components::job_controls::DELETED_KEY;
            if let Ok(Some(name)) = storage.get_item(key) {
                let _ = storage.remove_item(key);
                note.set(Some(name));
            }
        }
    });
    move || {
        note.get().map(|name| {
            view! {
                <p class="deleted-note" role="status" data-testid="deleted-note">
                    "Deleted “" {name} "”."
                    <button type="button" class="btn btn-small btn-plain" on:click=move |_| note.set(None)>
                        "Dismiss"
                    </button>
                </p>
            }
        })
    }
}

/// One action on the chosen jobs, or on every job the current filter takes; then what
/// it did to each job.
///
/// The rows' checkboxes are the server's plain inputs: this island follows their
/// changes, marks the chosen rows, and puts the choices back after each refresh of the
/// list (a job that left the page is no longer chosen).
#[island]
fn BulkBar(filter: JobFilter, total: i64) -> impl IntoView {
    let total = list_state().map(|l| l.total).unwrap_or_else(|| RwSignal::new(total));
    let chosen = RwSignal::new(Vec::<JobRef>::new());
    #[cfg(feature = "hydrate")]
    {
        let handle = window_event_listener(leptos::ev::change, move |ev| {
            use leptos::wasm_bindgen::JsCast;
            let Some(input) = ev.target().and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok()) else {
                return;
            };
            if let Some(key) = input.get_attribute("data-choose").and_then(|k| choice(&k)) {
                let on = input.checked();
                chosen.update(|c| {
                    c.retain(|r| *r != key);
                    if on {
                        c.push(key);
                    }
                });
            } else if input.has_attribute("data-choose-all") {
                chosen.set(if input.checked() { rows_on_screen() } else { Vec::new() });
            } else {
                return;
            }
            show_choices(&chosen.get_untracked());
        });
        on_cleanup(move || handle.remove());
        crate::components::live_page::after_refresh(move || {
            let here = rows_on_screen();
            let _ = chosen.try_update(|c| c.retain(|r| here.contains(r)));
            if let Some(c) = chosen.try_get_untracked() {
                show_choices(&c);
            }
        });
    }
    let reload = Callback::new(move |()| reload_list());
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
            Err(e) => Either::Left(view! { <p class="alert" role="alert">{e}</p> }),
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
                        let what = match &r.name {
                            Some(name) => name.clone(),
                            None => format!("{} #{}", r.kind.label(), r.id),
                        };
                        // The reason in words; the status code is for programs (SPEC section 16).
                        let said = if r.ok { "done".to_string() } else { r.error.unwrap_or_default() };
                        view! {
                            <li class:bulk-refused=!r.ok>
                                // A deleted job has no page to go to.
                                {if r.ok && action == JobAction::Delete {
                                    view! { <span>{what}</span> }.into_any()
                                } else {
                                    view! { <a href=r.kind.page_url(r.id)>{what}</a> }.into_any()
                                }}
                                ": "
                                {said}
                            </li>
                        }
                    })
                    .collect_view();
                Either::Right(view! {
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
                })
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
                    // With rows chosen, only what applies to one of them is offered
                    // (SPEC section 16); by filter, every action is.
                    let offered = move || every.get() || chosen.with(|c| c.is_empty() || any_applies(c, action));
                    move || offered().then(|| view! {
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
                    })
                })
                .collect_view()}
        </div>
        {report}
        {dialog}
    }
}

/// Whether `action` applies to one of the chosen jobs, as their rows show them (the
/// rows' jobs are kept fresh by the list's refresh).
fn any_applies(chosen: &[JobRef], action: JobAction) -> bool {
    #[cfg(feature = "hydrate")]
    return ROWS.with(|rows| {
        rows.borrow().iter().any(|row| {
            row.job
                .try_with(|j| chosen.contains(&JobRef { kind: j.kind, id: j.id }) && j.applies(action))
                .unwrap_or(false)
        })
    });
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = (chosen, action);
        true
    }
}

/// A row's choice from its checkbox's `data-choose` ("research:12").
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
fn choice(key: &str) -> Option<JobRef> {
    let (kind, id) = key.split_once(':')?;
    Some(JobRef { kind: kind.parse().ok()?, id: id.parse().ok()? })
}

/// The rows' checkboxes on screen.
#[cfg(feature = "hydrate")]
fn choice_boxes() -> Vec<web_sys::HtmlInputElement> {
    use leptos::wasm_bindgen::JsCast;
    let Ok(list) = document().query_selector_all("input[data-choose]") else { return Vec::new() };
    (0..list.length()).filter_map(|i| list.item(i)).filter_map(|n| n.dyn_into().ok()).collect()
}

/// The jobs of the rows on screen.
#[cfg(feature = "hydrate")]
fn rows_on_screen() -> Vec<JobRef> {
    choice_boxes().iter().filter_map(|input| input.get_attribute("data-choose").and_then(|k| choice(&k))).collect()
}

/// Ticks the chosen rows' boxes (and "every job on this page" when all are) and marks
/// their rows.
#[cfg(feature = "hydrate")]
fn show_choices(chosen: &[JobRef]) {
    use leptos::wasm_bindgen::JsCast;
    let boxes = choice_boxes();
    let mut all = !boxes.is_empty();
    for input in boxes {
        let on = input.get_attribute("data-choose").and_then(|k| choice(&k)).is_some_and(|r| chosen.contains(&r));
        all &= on;
        input.set_checked(on);
        if let Ok(Some(row)) = input.closest("tr") {
            let _ = row.class_list().toggle_with_force("row-chosen", on);
        }
    }
    if let Ok(Some(every)) = document().query_selector("input[data-choose-all]") {
        if let Ok(every) = every.dyn_into::<web_sys::HtmlInputElement>() {
            every.set_checked(all);
        }
    }
}

/// [`UploadForm`] on the dashboard.
#[island]
fn UploadIsland(kind: JobKind) -> impl IntoView {
    view! { <UploadForm kind /> }
}
