//! The progress bar.

use leptos::prelude::*;

use crate::model::Job;

/// A progress bar with its numbers in words, so the bar is never the only signal.
/// Finished items (completed or failed) count as done.
#[component]
pub fn Progress(#[prop(into)] job: Signal<Job>) -> impl IntoView {
    let pct = Memo::new(move |_| job.with(Job::percent));
    let done = Memo::new(move |_| job.with(|j| (j.done(), j.total)));
    // The fill takes the state's colour; the words next to the bar carry the meaning.
    let class = move || format!("progress-block progress-{}", job.with(|j| j.phase().css()));
    view! {
        <div class=class>
            <div
                class="progress"
                role="progressbar"
                aria-label="Progress"
                aria-valuemin="0"
                aria-valuemax="100"
                aria-valuenow=move || format!("{:.0}", pct.get())
            >
                <div class="progress-fill" style=move || format!("width: {:.1}%", pct.get())></div>
            </div>
            <p class="progress-text">
                {move || {
                    let (done, total) = done.get();
                    format!("{done} of {total} done ({:.0}%)", pct.get().floor())
                }}
            </p>
        </div>
    }
}
