//! Changing a running or paused job's concurrency (SPEC section 8).

use leptos::either::Either;
use leptos::prelude::*;

use crate::api::edit_job;
use crate::components::format::error_text;
use crate::components::live::LiveJob;
use crate::model::{MAX_CONCURRENCY, MIN_CONCURRENCY};

/// A number field and "Apply"; the runner's window follows at its next claim. Shown
/// while the job can still run.
#[component]
pub fn ConcurrencyControl(live: LiveJob) -> impl IntoView {
    let value = RwSignal::new(live.job.with_untracked(|j| j.concurrency.to_string()));
    let busy = RwSignal::new(false);
    let note = RwSignal::new(None::<Result<String, String>>);
    // The field follows the job until the person starts typing.
    let typed = RwSignal::new(false);
    Effect::new(move |_| {
        let c = live.job.with(|j| j.concurrency);
        if !typed.get_untracked() {
            value.set(c.to_string());
        }
    });
    let apply = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if busy.get_untracked() {
            return;
        }
        let text = value.get_untracked();
        let Ok(n) = text.trim().parse::<i64>() else {
            note.set(Some(Err(format!(
                "concurrency must be a whole number from {MIN_CONCURRENCY} to {MAX_CONCURRENCY}"
            ))));
            return;
        };
        busy.set(true);
        let (kind, id) = live.job.with_untracked(|j| (j.kind, j.id));
        leptos::task::spawn_local(async move {
            match edit_job(kind, id, None, Some(n)).await {
                Ok(job) => {
                    let c = job.concurrency;
                    live.apply(job);
                    typed.set(false);
                    note.set(Some(Ok(format!("Up to {c} at a time from now on."))));
                }
                Err(e) => note.set(Some(Err(error_text(&e)))),
            }
            let _ = busy.try_set(false);
        });
    };
    view! {
        <Show when=move || !live.job.with(|j| j.is_terminal())>
                <form class="concurrency" on:submit=apply>
                    <label for="concurrency-input">"Items at a time"</label>
                    <input
                        id="concurrency-input"
                        type="number"
                        min=MIN_CONCURRENCY.to_string()
                        max=MAX_CONCURRENCY.to_string()
                        required
                        prop:value=value
                        on:input=move |ev| {
                            typed.set(true);
                            value.set(event_target_value(&ev));
                        }
                    />
                    <button type="submit" class="btn btn-small btn-plain" disabled=busy>
                        {move || if busy.get() { "Applying…" } else { "Apply" }}
                    </button>
                    {move || note.get().map(|n| match n {
                        Ok(t) => Either::Left(view! { <span class="small muted" role="status">{t}</span> }),
                        Err(t) => Either::Right(view! { <span class="alert small" role="alert">{t}</span> }),
                    })}
                </form>
        </Show>
    }
}

/// [`ConcurrencyControl`] of a job page, hydrated with the page's job.
#[island]
pub fn ConcurrencyIsland(job: crate::model::Job) -> impl IntoView {
    view! { <ConcurrencyControl live=crate::components::live_page::page_job(job) /> }
}
