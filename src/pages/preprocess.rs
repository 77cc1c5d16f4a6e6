//! `/preprocess/progress/:id`: one preprocessing job and its cleaned rows.

use leptos::prelude::*;

use crate::components::erase::{erase, Erase};
use crate::components::format::go;
use serde_json::Value;

use crate::api::research_from_clean;
use crate::components::activity::ActivityLog;
use crate::components::badge::{ItemBadge, OutcomeBadge};
use crate::components::browser_notify::NotifyIsland;
use crate::components::concurrency::ConcurrencyIsland;
use crate::components::confirm_dialog::ConfirmDialog;
use crate::components::format::{error_text, external_link, flag, list, plural, text, Crumbs};
use crate::components::items::{ItemBrowser, ItemsQuery};
use crate::components::job_controls::ControlsIsland;
use crate::components::job_loader::JobLoader;
use crate::components::live::LiveJob;
use crate::components::schedule::ScheduleIsland;
use crate::components::status_banner::StatusBanner;
use crate::model::{Item, ItemStatus, JobKind, JobStatus};

/// The preprocessing job page: the status badge with the controls centred under it,
/// then the cleaned rows.
#[component]
pub fn PreprocessPage() -> impl IntoView {
    view! {
        <JobLoader
            kind=JobKind::Preprocess
            title=|job| format!("{} · Preprocessing · jobdeck", job.name)
            render=preprocess_job
        />
    }
}

/// The page as the server renders it; the controls are islands.
fn preprocess_job(live: LiveJob, query: ItemsQuery) -> AnyView {
    let id = live.job.with_untracked(|j| j.id);
    let job = move || live.job.get_untracked();
    let completed = Memo::new(move |_| live.job.with(|j| j.status == JobStatus::Completed));
    view! {
        <Crumbs here=format!("Preprocessing #{id}") />
        <StatusBanner live centered=true>
            {erase(view! {
                <ControlsIsland job=job() centered=true view_all=None />
                <ConcurrencyIsland job=job() />
                <NotifyIsland />
            })}
        </StatusBanner>
        <Show when=move || completed.get()>
            {erase(view! {
                <ResearchFromClean
                    id
                    clean=job().outcomes.map(|o| o.clean).unwrap_or(0)
                    research=job().research_job_id
                />
            })}
        </Show>
        <section class="card card-flush" aria-labelledby="results-title">
            <h2 id="results-title" class="card-title">"Cleaned rows"</h2>
            <ItemBrowser
                live
                base=format!("/preprocess/progress/{id}")
                columns=&["Line", "Company", "Domain", "E-mail", "Checks", "Website", "Status"]
                row=result_row
                noun=("row", "rows")
                query
            />
        </section>
        <ScheduleIsland job=job() />
        <ActivityLog live base=format!("/preprocess/progress/{id}") query />
    }
    .erased()
}

/// Sends the clean rows (valid, unique, reachable) on as a new full research job,
/// once: it says how many go and asks first; afterwards it links the job they went to
/// (SPEC section 16). Offered only when some row is clean.
#[island]
fn ResearchFromClean(id: i64, clean: i64, research: Option<i64>) -> impl IntoView {
    let busy = RwSignal::new(false);
    let asking = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let created = RwSignal::new(None::<String>);
    Effect::new(move |_| {
        if let Some(url) = created.get() {
            go(&url);
        }
    });
    let start = move || {
        if busy.get_untracked() {
            return;
        }
        busy.set(true);
        error.set(None);
        leptos::task::spawn_local(async move {
            match research_from_clean(id).await {
                // Stays busy while the new job's page loads.
                Ok(job) => created.set(Some(job.kind.page_url(job.id))),
                Err(e) => {
                    error.set(Some(error_text(&e)));
                    busy.set(false);
                }
            }
        });
    };
    let rows = plural(clean, "clean row", "clean rows");
    let body = match (research, clean) {
        (Some(research), _) => view! {
            <p data-testid="sent-to-research">
                "The clean rows went to "
                <a href=JobKind::Research.page_url(research)>{format!("full research #{research}")}</a>
                "."
            </p>
        }
        .erased(),
        (None, 0) => view! {
            <p data-testid="nothing-clean">"No row is valid, unique and reachable, so there is nothing to research."</p>
        }
        .erased(),
        (None, _) => view! {
            <p>{format!("Start a full research job of the {rows}: valid, unique and reachable.")}</p>
            <button
                type="button"
                class="btn btn-primary"
                disabled=move || busy.get()
                aria-busy=move || busy.get().then_some("true")
                on:click=move |_| asking.set(true)
            >
                {move || if busy.get() { "Starting…".to_string() } else { format!("Start full research from clean rows ({clean})") }}
            </button>
        }
        .erased(),
    };
    let dialog = move || {
        asking.get().then(|| {
            view! {
                <ConfirmDialog
                    title=format!("Research {rows}?")
                    body=format!("A new full research job visits the website of each of the {rows}, at this job's concurrency.")
                    confirm_label="Start research"
                    dismiss_label="Not now"
                    on_confirm=Callback::new(move |()| {
                        asking.set(false);
                        start();
                    })
                    on_dismiss=Callback::new(move |()| asking.set(false))
                />
            }
        })
    };
    view! {
        <section class="card next-step" aria-labelledby="next-title">
            <div>
                <h2 id="next-title">"Next step"</h2>
                {body}
            </div>
            {move || error.get().map(|e| view! { <p class="alert" role="alert">{e}</p> })}
        </section>
        {dialog}
    }
}

fn result_row(item: Item, not_run: bool) -> AnyView {
    let empty = Value::Null;
    let result = item.result.as_ref().unwrap_or(&empty);
    let company = text(result, "company").or_else(|| item.name.clone().filter(|n| !n.trim().is_empty()));
    let suffix = text(result, "legalSuffix");
    let domain = text(result, "domain").or_else(|| item.domain.clone());
    let email = text(result, "email");
    let free_mail = result.get("freeMail").and_then(Value::as_bool).unwrap_or(false);
    let duplicate_of = result.get("duplicateOf").and_then(Value::as_i64).or(item.duplicate_of);
    let liveness = result.get("liveness").filter(|l| l.is_object()).cloned();
    let outcome = text(result, "outcome").and_then(|o| o.parse::<crate::model::Outcome>().ok());
    let mut checks: Vec<(&'static str, &'static str, String)> = Vec::new();
    match result.get("valid").and_then(Value::as_bool) {
        Some(true) => checks.push(("ok", "✔", "Valid".into())),
        Some(false) => {
            let reasons = list(result, "reasons");
            let why = if reasons.is_empty() { String::new() } else { format!(": {}", reasons.join("; ")) };
            checks.push(("bad", "✖", format!("Invalid{why}")));
        }
        None => {}
    }
    if free_mail {
        checks.push(("warn", "✉", "Free-mail address".into()));
    }
    if let Some(line) = duplicate_of {
        checks.push(("warn", "≡", format!("Duplicate of line {line}")));
    }
    let processed = item.result.is_some() && item.status == ItemStatus::Completed;

    view! {
        <tr>
            <td class="num">{item.line}</td>
            <td>
                {match company {
                    Some(c) => view! { <strong>{c}</strong> }.erased(),
                    None => view! { <span class="muted">"(no name)"</span> }.erased(),
                }}
                {suffix.map(|s| view! { " " <span class="chip" title="Legal form, split off the name">{s}</span> })}
            </td>
            <td data-label="Domain">{domain.map(|d| external_link(&d)).unwrap_or_else(|| view! { <span class="muted">"—"</span> }.erased())}</td>
            <td class="email-cell" data-label="E-mail">{email.unwrap_or_default()}</td>
            <td class="checks" data-label="Checks">
                {if checks.is_empty() && !processed {
                    view! { <span class="muted">"Not checked yet"</span> }.erased()
                } else {
                    checks
                        .into_iter()
                        .map(|(tone, icon, label)| flag(tone, icon, label))
                        .collect_view()
                        .erased()
                }}
            </td>
            <td class="liveness" data-label="Website">{liveness_cell(liveness.as_ref(), item.status)}</td>
            <td>
                {match outcome {
                    Some(outcome) if item.status == ItemStatus::Completed => view! { <OutcomeBadge outcome /> }.erased(),
                    _ => view! { <ItemBadge status=item.status not_run /> }.erased(),
                }}
                {item.error.map(|e| view! { <p class="item-error">"✖ " {e}</p> })}
            </td>
        </tr>
    }
    .erased()
}

/// Whether the website answered: ✔ with the status code, ✖ with the code or the error,
/// or why it was not checked (a duplicate, no domain).
fn liveness_cell(liveness: Option<&Value>, status: ItemStatus) -> AnyView {
    let Some(l) = liveness else {
        let text = match status {
            ItemStatus::Pending => "Not checked yet",
            ItemStatus::Processing => "Checking…",
            ItemStatus::Completed | ItemStatus::Failed => "—",
        };
        return view! { <span class="muted">{text}</span> }.erased();
    };
    let checked = l.get("checked").and_then(Value::as_bool).unwrap_or(false);
    let code = l.get("statusCode").and_then(Value::as_i64);
    let error = text(l, "error");
    let final_url = text(l, "finalUrl");
    if !checked {
        return view! { <span class="muted">"Not checked: " {error.unwrap_or_else(|| "skipped".into())}</span> }
            .erased();
    }
    let reachable = l.get("reachable").and_then(Value::as_bool).unwrap_or(false);
    let detail = match (code, error) {
        (Some(code), _) => format!("HTTP {code}"),
        (None, Some(e)) => e,
        (None, None) => String::new(),
    };
    let (tone, icon, label) = if reachable { ("ok", "✔", "Reachable") } else { ("bad", "✖", "Unreachable") };
    view! {
        {flag(tone, icon, label.into())}
        <div class="small muted wrap">{detail}</div>
        {final_url.map(|u| view! { <div class="small">{external_link(&u)}</div> })}
    }
    .erased()
}
