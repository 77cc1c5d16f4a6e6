//! Status badges. Each carries a word and an icon as well as a colour, so the colour
//! is never the only signal.

use leptos::prelude::*;

use crate::model::{ItemStatus, Phase};

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

/// What people read for an item's state.
pub fn item_status_label(status: ItemStatus) -> &'static str {
    match status {
        ItemStatus::Pending => "Pending",
        ItemStatus::Processing => "Processing",
        ItemStatus::Completed => "Completed",
        ItemStatus::Failed => "Failed",
    }
}

/// An item's state as a small badge.
#[component]
pub fn ItemBadge(status: ItemStatus) -> impl IntoView {
    let (icon, css) = match status {
        ItemStatus::Pending => ("◷", "pending"),
        ItemStatus::Processing => ("▶", "processing"),
        ItemStatus::Completed => ("✔", "completed"),
        ItemStatus::Failed => ("✖", "failed"),
    };
    view! {
        <span class=format!("badge badge-small badge-{css}")>
            <span class="badge-icon" aria-hidden="true">{icon}</span>
            {item_status_label(status)}
        </span>
    }
}
