//! Pause, Resume, Cancel and Delete for one job; the same component on both job pages.

use leptos::prelude::*;
use leptos_router::hooks::use_navigate;

use crate::api::control_job;
use crate::components::confirm_dialog::ConfirmDialog;
use crate::components::format::{error_text, plural};
use crate::components::live::LiveJob;
use crate::model::{Job, JobAction, Phase};

/// The buttons the job's state allows (SPEC section 5): Pause and Cancel while it runs,
/// Resume and Cancel while paused, Delete Job once it is over.
///
/// Cancel and Delete ask first, in a [`ConfirmDialog`]. A pressed button says what it
/// is doing ("Pausing…") and every button stays disabled until the answer is in, so a
/// double click sends one action. The answer updates the page at once; a failure is
/// shown under the buttons; after Delete the person lands on the dashboard.
#[component]
pub fn JobControls(
    live: LiveJob,
    /// Centre the buttons (the preprocessing page puts them under its status badge).
    #[prop(optional)]
    centered: bool,
    /// Shown after the buttons, e.g. the "View All Accounts" link.
    #[prop(optional)]
    children: Option<Children>,
) -> impl IntoView {
    let busy = RwSignal::new(None::<JobAction>);
    let error = RwSignal::new(None::<String>);
    // Which confirmation is open. It lives here, apart from the job data, so a refresh
    // that replaces the job never closes or re-creates the dialog.
    let confirm = RwSignal::new(None::<JobAction>);
    let deleted = RwSignal::new(false);
    let phase = Memo::new(move |_| live.job.with(Job::phase));

    let navigate = use_navigate();
    Effect::new(move |_| {
        if deleted.get() {
            navigate("/", Default::default());
        }
    });

    let run = move |action: JobAction| {
        // Checked before anything else: the disabled attribute lands a moment later,
        // and a fast second click must not slip through in between.
        if busy.get_untracked().is_some() {
            return;
        }
        busy.set(Some(action));
        error.set(None);
        let (kind, id) = live.job.with_untracked(|j| (j.kind, j.id));
        leptos::task::spawn_local(async move {
            match control_job(kind, id, action).await {
                Ok(Some(job)) => live.apply(job),
                Ok(None) => {
                    // The buttons stay disabled while the dashboard loads.
                    deleted.set(true);
                    return;
                }
                Err(e) => {
                    error.set(Some(error_text(&e)));
                    // The job probably changed under us; show what it is now.
                    live.refresh().await;
                }
            }
            settle().await;
            let _ = busy.try_set(None);
        });
    };

    let request = move |action: JobAction| match action {
        JobAction::Cancel | JobAction::Delete => {
            if busy.get_untracked().is_none() {
                confirm.set(Some(action));
            }
        }
        JobAction::Pause | JobAction::Resume => run(action),
    };

    let buttons = move || {
        let actions: &'static [JobAction] = match phase.get() {
            Phase::Pending | Phase::Processing => &[JobAction::Pause, JobAction::Cancel],
            Phase::Paused => &[JobAction::Resume, JobAction::Cancel],
            Phase::Completed | Phase::Failed | Phase::Cancelled => &[JobAction::Delete],
        };
        actions
            .iter()
            .map(|&action| {
                view! {
                    <button
                        type="button"
                        class=format!("btn {}", button_class(action))
                        disabled=move || busy.get().is_some()
                        aria-busy=move || (busy.get() == Some(action)).then_some("true")
                        on:click=move |_| request(action)
                    >
                        {move || if busy.get() == Some(action) { busy_label(action) } else { action.label() }}
                    </button>
                }
            })
            .collect_view()
    };

    let dialog = move || {
        confirm.get().map(|action| {
            let (title, body, confirm_label) = live.job.with_untracked(|job| question(action, job));
            view! {
                <ConfirmDialog
                    title
                    body
                    confirm_label
                    dismiss_label="Keep job"
                    on_confirm=Callback::new(move |()| {
                        confirm.set(None);
                        run(action);
                    })
                    on_dismiss=Callback::new(move |()| confirm.set(None))
                />
            }
        })
    };

    view! {
        <div class="controls" class:controls-centered=centered>
            <div class="controls-row">
                {buttons}
                {children.map(|c| c())}
            </div>
            {move || error.get().map(|e| view! { <p class="alert" role="alert">{e}</p> })}
        </div>
        {dialog}
    }
}

fn button_class(action: JobAction) -> &'static str {
    match action {
        JobAction::Pause => "btn-warning",
        JobAction::Resume => "btn-success",
        JobAction::Cancel => "btn-danger",
        JobAction::Delete => "btn-neutral",
    }
}

fn busy_label(action: JobAction) -> &'static str {
    match action {
        JobAction::Pause => "Pausing…",
        JobAction::Resume => "Resuming…",
        JobAction::Cancel => "Cancelling…",
        JobAction::Delete => "Deleting…",
    }
}

/// The confirmation's title, text and confirm label.
fn question(action: JobAction, job: &Job) -> (String, String, &'static str) {
    let name = &job.name;
    match action {
        JobAction::Cancel => (
            "Cancel this job?".into(),
            format!(
                "“{name}” stops now: {} not yet done will not run. Finished items stay saved. \
                 A cancelled job cannot be resumed.",
                plural(job.pending + job.processing, "item", "items")
            ),
            "Cancel job",
        ),
        _ => (
            "Delete this job?".into(),
            format!(
                "“{name}” and all {} with their results are removed for good. This cannot be undone.",
                plural(job.total, "item", "items")
            ),
            "Delete job",
        ),
    }
}

/// A short pause after an answer before the buttons take clicks again: the button
/// under the pointer has just changed (Pause became Resume), and the second half of a
/// double click must not press the new one.
async fn settle() {
    #[cfg(feature = "hydrate")]
    gloo_timers::future::TimeoutFuture::new(400).await;
}
