//! One job's items: status filter, paging, export links and the table.

use leptos::prelude::*;

use crate::components::erase::Erase;
use serde::{Deserialize, Serialize};

use crate::api::list_items;
use crate::components::format::error_text;
use crate::components::live::LiveJob;
use crate::components::resource::resource;
use crate::model::{Item, ItemStatus, Job, JobKind, Outcome, Phase};

/// Items per page.
pub const PAGE_SIZE: i64 = 50;

/// What a list calls its items, e.g. ("account", "accounts").
pub type Noun = (&'static str, &'static str);

/// A job's items, filtered by status and paged, with export links.
///
/// The filter and the page live in the URL (`?status=failed&offset=50`), so they are
/// plain links: they work without JavaScript, survive a reload and can be shared.
/// The server renders the list; while the job runs, the page's refresh brings the
/// rows the server renders then in place of those that changed (see
/// [`LivePage`](crate::components::live_page::LivePage)).
#[component]
pub fn ItemBrowser(
    live: LiveJob,
    /// The path the filter and paging links point to, e.g. `/processing/7/accounts`.
    base: String,
    /// The table's column headings.
    columns: &'static [&'static str],
    /// The cells of one row; `true` when the job was cancelled, so a pending item will
    /// not run (SPEC section 16: shown as "not run", never as waiting).
    row: fn(Item, bool) -> AnyView,
    noun: Noun,
    /// The status filter and page the address names.
    query: ItemsQuery,
) -> impl IntoView {
    let ItemsQuery { status, outcome, offset, .. } = query;
    let (kind, id) = live.job.with_untracked(|j| (j.kind, j.id));
    let outcome = outcome.filter(|_| kind == JobKind::Preprocess);
    let page = resource(
        || (),
        move |()| async move { list_items(kind, id, status, outcome, offset, PAGE_SIZE).await.map_err(|e| error_text(&e)) },
    );

    let link = {
        let base = base.clone();
        move |status: Option<ItemStatus>, offset: i64| page_href(&base, status, outcome, offset)
    };
    // A preprocessing job's rows by outcome, counted as they finish (SPEC section 16).
    let outcome_filters = {
        let base = base.clone();
        move || {
            let counts = live.job.with(|j| j.outcomes)?;
            let tabs = Outcome::ALL
                .into_iter()
                .map(|choice| {
                    let href = page_href(&base, None, Some(choice), 0);
                    filter_tab(href, choice.label(), counts.of(choice), outcome == Some(choice))
                })
                .collect_view();
            Some(view! { <nav class="filters filters-outcome" aria-label="Filter by outcome">{tabs}</nav> })
        }
    };
    let export = |format: &str| format!("{}/{id}/export?format={format}", kind.rest_root());

    let filters = {
        let base = base.clone();
        move || {
            let counts = live.job.with(filter_counts);
            counts
                .into_iter()
                .map(|(choice, label, count)| {
                    // A status tab leaves an outcome filter.
                    let href = page_href(&base, choice, None, 0);
                    filter_tab(href, label, count, status == choice && outcome.is_none())
                })
                .collect_view()
        }
    };

    let body = move || {
        let link = link.clone();
        Suspend::new(async move {
            let first = match page.await {
                Ok(first) => first,
                Err(e) => return view! { <p class="alert" role="alert">{e}</p> }.erased(),
            };
            // Rendered once, by the server: the page's refresh brings a newer rendering.
            let (offset, shown, total) = (first.offset, first.items.len() as i64, first.total);
            let not_run = live.job.with_untracked(|j| j.phase() == Phase::Cancelled);
            let summary = if total == 0 {
                format!("No {}", noun.1)
            } else if shown == 0 {
                format!("Nothing here: the list has {total}")
            } else {
                format!("Showing {}–{} of {total}", offset + 1, offset + shown)
            };
            let prev = (offset > 0).then(|| link(status, (offset - PAGE_SIZE).max(0)));
            let next = (offset + shown < total).then(|| link(status, offset + PAGE_SIZE));
            let empty = (shown == 0).then(|| {
                let text = if total > 0 {
                    "This page is past the end of the list.".to_string()
                } else if outcome.is_some() {
                    format!("No {} with this outcome.", noun.1)
                } else if status.is_some() {
                    format!("No {} with this status.", noun.1)
                } else {
                    format!("This job has no {}.", noun.1)
                };
                view! {
                    <tr>
                        <td class="empty-row" colspan=columns.len().to_string()>{text}</td>
                    </tr>
                }
            });
            view! {
                <p class="pager-summary" aria-live="polite">{summary}</p>
                <div class="table-wrap" role="region" aria-label=format!("{} table", noun.1) tabindex="0">
                    <table class="items">
                        <thead>
                            <tr>{columns.iter().map(|c| view! { <th scope="col">{*c}</th> }).collect_view()}</tr>
                        </thead>
                        <tbody>
                            {first.items.into_iter().map(|item| row(item, not_run)).collect_view()}
                            {empty}
                        </tbody>
                    </table>
                </div>
                <nav class="pager" aria-label="Pages">
                    {pager_link(prev, "← Previous")}
                    {pager_link(next, "Next →")}
                </nav>
            }
            .erased()
        })
    };

    view! {
        <div class="toolbar">
            <nav class="filters" aria-label="Filter by status">{filters}</nav>
            {outcome_filters}
            <div class="exports">
                <span class="muted">"Export:"</span>
                <a class="btn btn-small btn-plain" href=export("csv") download rel="external">"CSV"</a>
                <a class="btn btn-small btn-plain" href=export("json") download rel="external">"JSON"</a>
            </div>
        </div>
        <div class="items-body">
            <Transition fallback=move || view! { <p class="muted">{format!("Loading {}…", noun.1)}</p> }>
                {body.clone()}
            </Transition>
        </div>
    }
}

/// What a job page's address asks for: the status filter and page of its items list
/// (`?status=failed&offset=50`) and the page of its activity log (`&before=`, the
/// events older than that one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ItemsQuery {
    pub status: Option<ItemStatus>,
    /// A preprocessing job's rows of one outcome (SPEC section 16).
    pub outcome: Option<Outcome>,
    pub offset: i64,
    pub before: Option<i64>,
}

impl ItemsQuery {
    /// Reads `?status=&offset=`; anything unreadable means "all" and the first page.
    pub fn from_params(q: &leptos_router::params::ParamsMap) -> Self {
        Self {
            status: q.get("status").and_then(|s| s.parse().ok()),
            outcome: q.get("outcome").and_then(|s| s.parse().ok()),
            offset: q.get("offset").and_then(|s| s.parse::<i64>().ok()).unwrap_or(0).max(0),
            before: q.get("before").and_then(|s| s.parse::<i64>().ok()).filter(|b| *b > 0),
        }
    }
}

/// One tab of a filter: its label and count, marked when it is the list shown.
fn filter_tab(href: String, label: &'static str, count: i64, current: bool) -> impl IntoView {
    view! {
        <a
            href=href
            class="filter"
            class:filter-current=current
            aria-current=current.then_some("page")
            data-noscroll="true"
        >
            {label}
            <span class="filter-count">{count}</span>
        </a>
    }
}

/// A Previous/Next link, or the same words greyed out at either end of the list.
pub(crate) fn pager_link(href: Option<String>, label: &'static str) -> AnyView {
    match href {
        Some(href) => view! { <a class="btn btn-small btn-plain" href=href data-noscroll="true">{label}</a> }.erased(),
        None => view! { <span class="btn btn-small btn-plain" aria-disabled="true">{label}</span> }.erased(),
    }
}

/// The job page at `base` with the same items list and the activity log's page that
/// starts below `before` (the newest events with `None`), scrolled to the log.
pub fn events_href(base: &str, query: ItemsQuery, before: Option<i64>) -> String {
    let page = page_href(base, query.status, query.outcome, query.offset);
    match before {
        Some(b) => format!("{page}{}before={b}#activity", if page.contains('?') { '&' } else { '?' }),
        None => format!("{page}#activity"),
    }
}

fn page_href(base: &str, status: Option<ItemStatus>, outcome: Option<Outcome>, offset: i64) -> String {
    let mut params = Vec::new();
    if let Some(s) = status {
        params.push(format!("status={s}"));
    }
    if let Some(o) = outcome {
        params.push(format!("outcome={o}"));
    }
    if offset > 0 {
        params.push(format!("offset={offset}"));
    }
    if params.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", params.join("&"))
    }
}

fn filter_counts(j: &Job) -> [(Option<ItemStatus>, &'static str, i64); 5] {
    [
        (None, "All", j.total),
        (Some(ItemStatus::Pending), if j.phase() == Phase::Cancelled { "Not run" } else { "Pending" }, j.pending),
        (Some(ItemStatus::Processing), "Processing", j.processing),
        (Some(ItemStatus::Completed), "Completed", j.completed),
        (Some(ItemStatus::Failed), "Failed", j.failed),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_leave_out_defaults() {
        assert_eq!(page_href("/processing/3/accounts", None, None, 0), "/processing/3/accounts");
        assert_eq!(
            page_href("/processing/3/accounts", Some(ItemStatus::Failed), None, 50),
            "/processing/3/accounts?status=failed&offset=50"
        );
        assert_eq!(
            page_href("/preprocess/progress/3/results", None, Some(Outcome::Clean), 50),
            "/preprocess/progress/3/results?outcome=clean&offset=50"
        );
    }

    #[test]
    fn the_activity_logs_pages_keep_the_items_list() {
        let plain = ItemsQuery::default();
        assert_eq!(events_href("/processing/3", plain, Some(41)), "/processing/3?before=41#activity");
        assert_eq!(events_href("/processing/3", plain, None), "/processing/3#activity");
        let failed = ItemsQuery { status: Some(ItemStatus::Failed), outcome: None, offset: 50, before: Some(41) };
        assert_eq!(
            events_href("/preprocess/progress/3", failed, Some(20)),
            "/preprocess/progress/3?status=failed&offset=50&before=20#activity"
        );
        let mut q = leptos_router::params::ParamsMap::new();
        q.insert("before", "41".to_string());
        q.insert("offset", "-5".to_string());
        assert_eq!(
            ItemsQuery::from_params(&q),
            ItemsQuery { status: None, outcome: None, offset: 0, before: Some(41) }
        );
    }
}
