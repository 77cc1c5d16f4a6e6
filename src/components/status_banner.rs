//! The state of one job at a glance.

use leptos::prelude::*;

use crate::components::erase::Erase;

use crate::api::control_job;
use crate::components::badge::{FailedNote, StatusBadge};
use crate::components::format::error_text;
use crate::components::format::{plural, time_text, Time};
use crate::components::live::LiveJob;
use crate::components::progress::Progress;
use crate::model::{Job, JobAction, Phase};

/// The status banner of a job page: badge, name, progress bar, counts, times, why it
/// is paused and when it resumes, and the job's controls (the children).
///
/// Two placements of the controls (SPEC section 5): in the banner's top row, beside the
/// name (full research), or `centered` under a large badge (preprocessing). The
/// banner's tint follows the state, always with the badge's words and icon.
#[component]
pub fn StatusBanner(live: LiveJob, #[prop(optional)] centered: bool, children: Children) -> impl IntoView {
    let job = live.job;
    let phase = Memo::new(move |_| job.with(Job::phase));
    let failed = Signal::derive(move || job.with(|j| j.failed));
    let class = move || {
        let layout = if centered { " banner-centered" } else { "" };
        format!("banner banner-{}{layout}", phase.get().css())
    };
    let title = move || job.with(|j| j.name.clone());
    let archived = move || {
        job.with(|j| j.archived_at.is_some())
            .then(|| view! { <span class="tag" data-testid="archived-tag">"Archived"</span> })
    };
    let meta = move || {
        job.with(|j| {
            format!(
                "{} · job #{} · {} · {} at a time",
                j.kind.label(),
                j.id,
                if j.filename.is_empty() { "no file name" } else { &j.filename },
                j.concurrency
            )
        })
    };

    let head = if centered {
        view! {
            <div class="banner-center">
                <h1 class="banner-title">{title}</h1>
                <p class="meta">{meta} {archived}</p>
                <div role="status" aria-label="Job status" class="banner-badge">
                    <StatusBadge phase large=true />
                </div>
                <FailedNote phase failed />
                {children()}
            </div>
        }
        .erased()
    } else {
        view! {
            <div class="banner-head">
                <div class="banner-heading">
                    <div role="status" aria-label="Job status" class="banner-badge">
                    <StatusBadge phase large=true />
                </div>
                <FailedNote phase failed />
                    <div>
                        <h1 class="banner-title">{title}</h1>
                        <p class="meta">{meta} {archived}</p>
                    </div>
                </div>
                {children()}
            </div>
        }
        .erased()
    };

    view! {
        <section class=class aria-label="Job summary">
            {head}
            <Progress job />
            <Counts job />
            <Times job />
            <StateNote job />
            <AutoResumeIsland job=live.job.get_untracked() />
        </section>
    }
}

/// Items by state, in words.
#[component]
fn Counts(job: RwSignal<Job>) -> impl IntoView {
    let counts = Memo::new(move |_| job.with(|j| [j.pending, j.processing, j.completed, j.failed, j.total]));
    // A cancelled job's pending items will never run (SPEC section 16).
    let not_run = Memo::new(move |_| job.with(|j| j.phase() == Phase::Cancelled));
    let labels = ["Pending", "Processing", "Completed", "Failed", "Total"];
    view! {
        <dl class="counts">
            {labels
                .into_iter()
                .enumerate()
                .map(|(i, label)| {
                    view! {
                        <div class=format!("count count-{}", label.to_ascii_lowercase())>
                            <dt>{move || if i == 0 && not_run.get() { "Not run" } else { label }}</dt>
                            <dd>{move || counts.get()[i]}</dd>
                        </div>
                    }
                })
                .collect_view()}
        </dl>
    }
}

/// When the job was created, started, last changed and finished or cancelled.
#[component]
fn Times(job: RwSignal<Job>) -> impl IntoView {
    let created = Signal::derive(move || Some(job.with(|j| j.created_at)));
    let started = Signal::derive(move || job.with(|j| j.started_at));
    let updated = Signal::derive(move || Some(job.with(|j| j.updated_at)));
    let finished = Memo::new(move |_| {
        job.with(|j| match (j.cancelled_at, j.completed_at) {
            (Some(at), _) => Some(("Cancelled", at)),
            (None, Some(at)) => Some(if j.phase() == Phase::Failed { ("Failed", at) } else { ("Completed", at) }),
            _ => None,
        })
    });
    view! {
        <dl class="times">
            <div>
                <dt>"Created"</dt>
                <dd><Time at=created /></dd>
            </div>
            <div>
                <dt>"Started"</dt>
                <dd><Time at=started /></dd>
            </div>
            <div>
                <dt>"Updated"</dt>
                <dd><Time at=updated /></dd>
            </div>
            {move || {
                finished
                    .get()
                    .map(|(label, at)| {
                        view! {
                            <div>
                                <dt>{label}</dt>
                                <dd><Time at=Signal::derive(move || Some(at)) /></dd>
                            </div>
                        }
                    })
            }}
        </dl>
    }
}

/// A pause that lifts by itself (a rate limit's): a live countdown to `resumeAt` and
/// "Resume now", which resumes the job at once as a person's resume.
#[component]
fn AutoResume(live: LiveJob) -> impl IntoView {
    let job = live.job;
    let at = Memo::new(move |_| job.with(|j| j.resume_at.filter(|_| j.paused && !j.is_terminal())));
    let now = RwSignal::new(chrono::Utc::now());
    // Ticks once a second on the client while a resume time is shown.
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| {
        if at.get().is_none() {
            return;
        }
        now.set(chrono::Utc::now());
        let handle = set_interval_with_handle(move || now.set(chrono::Utc::now()), std::time::Duration::from_secs(1));
        if let Ok(handle) = handle {
            on_cleanup(move || handle.clear());
        }
    });
    let busy = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let resume = move |_| {
        if busy.get_untracked() {
            return;
        }
        busy.set(true);
        error.set(None);
        let (kind, id) = job.with_untracked(|j| (j.kind, j.id));
        leptos::task::spawn_local(async move {
            match control_job(kind, id, JobAction::Resume).await {
                Ok(Some(job)) => live.apply(job),
                Ok(None) => {}
                Err(e) => {
                    let _ = error.try_set(Some(error_text(&e)));
                    live.refresh().await;
                }
            }
            let _ = busy.try_set(false);
        });
    };
    move || {
        at.get().map(|at| {
            let left = move || countdown_text(at - now.get());
            view! {
                <div class="auto-resume" data-testid="auto-resume">
                    <p>
                        "Resumes by itself in "
                        <strong class="countdown" role="timer" aria-live="off">{left}</strong>
                        " (at " {time_text(&at)} ")."
                    </p>
                    <button type="button" class="btn btn-small btn-success" on:click=resume disabled=busy>
                        {move || if busy.get() { "Resuming…" } else { "Resume now" }}
                    </button>
                    {move || error.get().map(|e| view! { <span class="alert small" role="alert">{e}</span> })}
                </div>
            }
        })
    }
}

/// "4 min 05 s", "1 h 02 min", "a moment" once the time has come.
pub fn countdown_text(left: chrono::Duration) -> String {
    let s = left.num_seconds();
    if s <= 0 {
        "a moment".into()
    } else if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{} h {:02} min", s / 3600, (s % 3600) / 60)
    }
}

/// One sentence on what the state means for the person, when it needs saying.
#[component]
fn StateNote(job: RwSignal<Job>) -> impl IntoView {
    let note = Memo::new(move |_| job.with(state_note));
    move || note.get().map(|text| view! { <p class="state-note">{text}</p> })
}

fn state_note(j: &Job) -> Option<String> {
    match j.phase() {
        Phase::Paused => {
            let why = match &j.paused_reason {
                Some(reason) if !reason.trim().is_empty() => {
                    format!("Paused: {}.", reason.trim().trim_end_matches('.'))
                }
                _ => "Paused.".to_string(),
            };
            let running = if j.processing > 0 {
                format!(
                    " {} already running will finish, but no new item starts.",
                    plural(j.processing, "item", "items")
                )
            } else {
                " No new item starts.".to_string()
            };
            // A pause that lifts by itself says when in the countdown below.
            let when = match j.resume_at {
                Some(_) => String::new(),
                None => " Press Resume to carry on.".to_string(),
            };
            Some(format!("{why}{running}{when}"))
        }
        Phase::Cancelled => Some(format!(
            "Cancelled. {} did not run; finished items stay saved. A cancelled job cannot be resumed.",
            plural(j.pending + j.processing, "item", "items")
        )),
        Phase::Completed if j.failed > 0 => Some(format!(
            "Finished, but {} failed; the reasons are listed with each item.",
            plural(j.failed, "item", "items")
        )),
        // Every item failed (SPEC section 16); such a job can still retry them.
        Phase::Failed if j.status == crate::model::JobStatus::Completed => Some(format!(
            "Every item failed; the reasons are listed with each item. Retry failed items to run {} again.",
            if j.failed == 1 { "it" } else { "them" }
        )),
        Phase::Failed => Some("The job failed and will not run again.".into()),
        Phase::Pending if !j.paused => Some("Waiting to start.".into()),
        Phase::Processing if j.waiting_on_hosts > 0 => Some(format!(
            "{} for a site that is busy or asked to wait.",
            plural(j.waiting_on_hosts, "account waits", "accounts wait")
        )),
        _ => None,
    }
}

/// [`AutoResume`], hydrated with the page's job.
#[island]
fn AutoResumeIsland(job: Job) -> impl IntoView {
    view! { <AutoResume live=crate::components::live_page::page_job(job) /> }
}

#[cfg(test)]
mod tests {
    use super::state_note;
    use crate::components::browser_notify::tests::job;
    use crate::model::JobStatus;

    #[test]
    fn a_running_job_says_how_many_accounts_wait_for_their_sites() {
        let running = crate::model::Job { status: JobStatus::Processing, paused: false, ..job() };
        assert_eq!(state_note(&crate::model::Job { waiting_on_hosts: 0, ..running.clone() }), None);
        assert_eq!(
            state_note(&crate::model::Job { waiting_on_hosts: 1, ..running.clone() }).as_deref(),
            Some("1 account waits for a site that is busy or asked to wait.")
        );
        assert_eq!(
            state_note(&crate::model::Job { waiting_on_hosts: 4, ..running }).as_deref(),
            Some("4 accounts wait for a site that is busy or asked to wait.")
        );
    }
}
