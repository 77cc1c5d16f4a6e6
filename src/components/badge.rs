//! Status badges. Each carries a word and an icon as well as a colour, so the colour
//! is never the only signal.

use leptos::prelude::*;

use crate::model::{ItemStatus, Outcome, Phase};

/// A job's state as a badge: "⏸ Paused" on yellow, "✔ Completed" on green, …
#[component]
pub fn StatusBadge(
    #[prop(into)] phase: Signal<Phase>,
    /// The larger variant, for the top of a job page.
    #[prop(optional)]
    large: bool,
) -> impl IntoView {
    let class = move || {
        let size = if large { " badge-large" } else { "" };
        format!("badge badge-{}{size}", phase.get().css())
    };
    view! {
        <span class=class data-testid="status-badge">
            <span class="badge-icon" aria-hidden="true">{move || phase.get().icon()}</span>
            {move || phase.get().label()}
        </span>
    }
}

/// "N failed", in amber, beside a completed job's badge when some of its items failed
/// (SPEC section 16); nothing otherwise.
#[component]
pub fn FailedNote(#[prop(into)] phase: Signal<Phase>, #[prop(into)] failed: Signal<i64>) -> impl IntoView {
    move || {
        let failed = failed.get();
        (phase.get() == Phase::Completed && failed > 0).then(|| {
            view! {
                <span class="badge badge-some-failed" data-testid="failed-note">
                    {format!("{failed} failed")}
                </span>
            }
        })
    }
}

/// What people read for an item's state.
pub fn item_status_label(status: ItemStatus) -> &'static str {
    match status {
        ItemStatus::Pending => "Pending",
        ItemStatus::Processing => "Processing",
        ItemStatus::Completed => "Completed",
        ItemStatus::Failed => "Failed",
    }
}

/// An item's state as a small badge; `not_run` when its job was cancelled, so a
/// pending item will never run (SPEC section 16).
#[component]
pub fn ItemBadge(status: ItemStatus, #[prop(optional)] not_run: bool) -> impl IntoView {
    let (icon, css, label) = match status {
        ItemStatus::Pending if not_run => ("–", "not-run", "Not run"),
        ItemStatus::Pending => ("◷", "pending", item_status_label(status)),
        ItemStatus::Processing => ("▶", "processing", item_status_label(status)),
        ItemStatus::Completed => ("✔", "completed", item_status_label(status)),
        ItemStatus::Failed => ("✖", "failed", item_status_label(status)),
    };
    view! {
        <span class=format!("badge badge-small badge-{css}")>
            <span class="badge-icon" aria-hidden="true">{icon}</span>
            {label}
        </span>
    }
}

/// A finished preprocessing row's outcome as a small badge (SPEC section 16), in place
/// of a "Completed" that every row would read.
#[component]
pub fn OutcomeBadge(outcome: Outcome) -> impl IntoView {
    let (icon, css) = match outcome {
        Outcome::Clean => ("✔", "completed"),
        Outcome::Duplicate => ("≡", "pending"),
        Outcome::Invalid => ("✖", "failed"),
        Outcome::Unreachable => ("⚠", "some-failed"),
    };
    view! {
        <span class=format!("badge badge-small badge-{css}") data-outcome=outcome.as_str()>
            <span class="badge-icon" aria-hidden="true">{icon}</span>
            {outcome.label()}
        </span>
    }
}
