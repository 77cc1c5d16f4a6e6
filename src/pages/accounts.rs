//! `/processing/:id/accounts`: every account of a full research job with its result.

use leptos::prelude::*;

use crate::components::erase::Erase;
use serde_json::Value;

use crate::components::badge::{FailedNote, ItemBadge, StatusBadge};
use crate::components::format::{external_link, list, text};
use crate::components::items::{ItemBrowser, ItemsQuery};
use crate::components::job_loader::JobLoader;
use crate::components::live::LiveJob;
use crate::model::{Item, ItemStatus, Job, JobKind};

/// The accounts page: filter by status, page through, read each result or failure.
#[component]
pub fn AccountsPage() -> impl IntoView {
    view! {
        <JobLoader
            kind=JobKind::Research
            title=|job| format!("Accounts · {} · jobdeck", job.name)
            render=accounts
        />
    }
}

fn accounts(live: LiveJob, query: ItemsQuery) -> AnyView {
    let (id, name) = live.job.with_untracked(|j| (j.id, j.name.clone()));
    let phase = Signal::derive(move || live.job.with(Job::phase));
    let progress = move || live.job.with(|j| format!("{} of {} done", j.done(), j.total));
    view! {
        <nav class="crumbs" aria-label="Breadcrumb">
            <a href="/">"Dashboard"</a>
            <span aria-hidden="true">" / "</span>
            <a href=format!("/processing/{id}")>{format!("Full research #{id}")}</a>
            <span aria-hidden="true">" / "</span>
            <span>"Accounts"</span>
        </nav>
        <header class="page-head">
            <h1>"Accounts of " {name}</h1>
            <p class="page-head-status">
                <span role="status" aria-label="Job status">
                    <StatusBadge phase />
                </span>
                <FailedNote phase failed=Signal::derive(move || live.job.with(|j| j.failed)) />
                <span class="muted">{progress}</span>
                <a href=format!("/processing/{id}")>"Job page and controls"</a>
            </p>
        </header>
        <section class="card card-flush">
            <ItemBrowser
                live
                base=format!("/processing/{id}/accounts")
                columns=&["Line", "Account", "Status", "Research"]
                row=account_row
                noun=("account", "accounts")
                query
            />
        </section>
    }
    .erased()
}

fn account_row(item: Item, not_run: bool) -> AnyView {
    let name = item.name.clone().filter(|n| !n.trim().is_empty());
    let website = item.website.clone().or_else(|| item.domain.clone()).filter(|w| !w.trim().is_empty());
    let attempts = (item.attempts > 1).then(|| format!("{} attempts", item.attempts));
    view! {
        <tr>
            <td class="num">{item.line}</td>
            <td class="account-cell">
                {match name {
                    Some(n) => view! { <strong>{n}</strong> }.erased(),
                    None => view! { <span class="muted">"(no name)"</span> }.erased(),
                }}
                {website.map(|w| view! { <div class="small">{external_link(&w)}</div> })}
            </td>
            <td>
                <ItemBadge status=item.status not_run />
                {attempts.map(|a| view! { <div class="small muted">{a}</div> })}
            </td>
            <td class="result-cell">{research_summary(&item, not_run)}</td>
        </tr>
    }
    .erased()
}

/// A readable summary of one account's research result (and its failure, if any).
fn research_summary(item: &Item, not_run: bool) -> AnyView {
    let error = item.error.clone().map(|e| view! { <p class="item-error">"✖ " {e}</p> });
    // A failed account's result holds only its error's detail, for the export.
    let Some(result) = item.result.as_ref().filter(|r| r.is_object() && item.status == ItemStatus::Completed) else {
        let text = if not_run && item.status == ItemStatus::Pending {
            "Not researched: the job was cancelled."
        } else {
            "Not researched yet."
        };
        let waiting = item.error.is_none().then(|| view! { <span class="muted">{text}</span> });
        return view! {
            {error}
            {waiting}
        }
        .erased();
    };
    let title = text(result, "title");
    let description = text(result, "description");
    let final_url = text(result, "finalUrl").or_else(|| text(result, "url"));
    let status = result.get("statusCode").and_then(Value::as_i64);
    let language = text(result, "language");
    let facts = [
        ("E-mails", list(result, "emails")),
        ("Phones", list(result, "phones")),
        ("Technologies", list(result, "technologies")),
    ];
    let socials = list(result, "socials");
    let profile = result.get("profile").filter(|p| p.is_object());
    let profile_error = text(result, "profileError");
    let pages = result.get("pages").and_then(Value::as_array).map(|p| p.len()).unwrap_or(0);

    let mut fetched = Vec::new();
    if let Some(code) = status {
        fetched.push(format!("HTTP {code}"));
    }
    if pages > 0 {
        fetched.push(if pages == 1 { "1 page read".to_string() } else { format!("{pages} pages read") });
    }
    if let Some(lang) = language {
        fetched.push(format!("language {lang}"));
    }

    view! {
        {error}
        <p class="result-title">
            <strong>{title.unwrap_or_else(|| "(no title)".into())}</strong>
            {final_url.map(|u| view! { " " <span class="small">{external_link(&u)}</span> })}
        </p>
        {description.map(|d| view! { <p class="result-description">{d}</p> })}
        <dl class="facts">
            {facts
                .into_iter()
                .filter(|(_, values)| !values.is_empty())
                .map(|(label, values)| {
                    view! {
                        <div>
                            <dt>{label}</dt>
                            <dd>{values.join(", ")}</dd>
                        </div>
                    }
                })
                .collect_view()}
            {(!socials.is_empty())
                .then(|| {
                    view! {
                        <div>
                            <dt>"Social"</dt>
                            <dd class="link-list">{socials.iter().map(|s| external_link(s)).collect_view()}</dd>
                        </div>
                    }
                })}
            {profile.map(profile_facts)}
            {profile_error.map(|e| {
                view! {
                    <div>
                        <dt>"Profile"</dt>
                        <dd class="muted">"Not available: " {e}</dd>
                    </div>
                }
            })}
        </dl>
        {(!fetched.is_empty()).then(|| view! { <p class="small muted">{fetched.join(" · ")}</p> })}
    }
    .erased()
}

/// The language model's profile of the company, when one was made.
fn profile_facts(profile: &Value) -> AnyView {
    let rows = [
        ("Summary", text(profile, "summary")),
        ("Industry", text(profile, "industry")),
        ("Size", text(profile, "sizeRange")),
        ("Country", text(profile, "country")),
        ("Fit notes", text(profile, "fitNotes")),
    ];
    rows.into_iter()
        .filter_map(|(label, value)| {
            value.map(|v| {
                view! {
                    <div>
                        <dt>{label}</dt>
                        <dd>{v}</dd>
                    </div>
                }
            })
        })
        .collect_view()
        .erased()
}
