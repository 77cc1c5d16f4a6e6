use leptos::prelude::*;

use crate::model::Job;

/// A progress bar with its numbers in words, so the bar is never the only signal.
#[component]
pub fn Progress(job: Job) -> impl IntoView {
    let pct = job.percent();
    view! {
        <div class="progress" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow=format!("{pct:.0}")>
            <div class="progress-fill" style=format!("width: {pct:.1}%")></div>
        </div>
        <p class="progress-text">{format!("{} of {} done ({pct:.0}%)", job.done(), job.total)}</p>
    }
}
