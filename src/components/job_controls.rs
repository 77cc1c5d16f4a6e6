//! Pause, Resume, Cancel and Delete for one job — on both job pages, where Retry,
//! Archive/Restore and the keyboard shortcuts join them, and compact in each
//! dashboard row.

use crate::components::format::go;
use leptos::prelude::*;

use crate::api::control_job;
use crate::components::confirm_dialog::ConfirmDialog;
use crate::components::format::{error_text, plural};
use crate::components::live::LiveJob;
use crate::model::{Job, JobAction, JobKind, Phase};

/// The buttons the job's state allows (SPEC sections 5 and 8): Pause and Cancel while
/// it runs, Resume and Cancel while paused, Delete Job once it is over; on a job page
/// also "Retry failed items" (a completed job with failures) and Archive or Restore
/// (a job that is over).
///
/// Cancel and Delete ask first, in a [`ConfirmDialog`]; the delete dialog offers the
/// job's exports first. A pressed button says what it is doing ("Pausing…") and every
/// button stays disabled until the answer is in, so a double click sends one action.
/// The answer updates the page at once; a failure is shown under the buttons; after
/// Delete the person lands on the dashboard (or `on_deleted` runs, in a row).
///
/// On a job page the keys `p` (pause/resume), `c` (cancel), `d` (delete), `e` (export)
/// and `?` (this list) work anywhere but in a text field.
#[component]
pub fn JobControls(
    live: LiveJob,
    /// Centre the buttons (the preprocessing page puts them under its status badge).
    #[prop(optional)]
    centered: bool,
    /// A dashboard row: small buttons, the seed's four actions, no shortcuts.
    #[prop(optional)]
    row: bool,
    /// Runs after a delete instead of going to the dashboard.
    #[prop(optional)]
    on_deleted: Option<Callback<()>>,
    /// Runs after an action changed the job (a row refreshes its list).
    #[prop(optional)]
    on_changed: Option<Callback<()>>,
    /// Shown after the buttons, e.g. the "View All Accounts" link.
    #[prop(optional)]
    children: Option<Children>,
) -> impl IntoView {
    let busy = RwSignal::new(None::<JobAction>);
    let error = RwSignal::new(None::<String>);
    // Which confirmation is open. It lives here, apart from the job data, so a refresh
    // that replaces the job never closes or re-creates the dialog.
    let confirm = RwSignal::new(None::<JobAction>);
    let help = RwSignal::new(false);
    let deleted = RwSignal::new(false);
    let phase = Memo::new(move |_| live.job.with(Job::phase));

    Effect::new(move |_| {
        if deleted.get() {
            match on_deleted {
                Some(done) => done.run(()),
                // The dashboard says which job went (SPEC section 16); the address
                // stays the dashboard's own.
                None => {
                    remember_deleted(&live.job.with_untracked(|j| j.name.clone()));
                    go("/");
                }
            }
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
                Ok(Some(job)) => {
                    live.apply(job);
                    if let Some(changed) = on_changed {
                        changed.run(());
                    }
                }
                Ok(None) => {
                    // The buttons stay disabled while the dashboard loads.
                    deleted.set(true);
                    return;
                }
                Err(e) => {
                    let _ = error.try_set(Some(error_text(&e)));
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
        other => run(other),
    };

    if !row {
        shortcuts(live, phase, confirm, help, error, request);
    }

    let buttons = move || {
        use JobAction::*;
        // A row offers the seed's controls; a job page also Retry and the archive.
        let offered: &[JobAction] = if row {
            &[Pause, Resume, Cancel, Delete]
        } else {
            &[Retry, Pause, Resume, Cancel, Delete, Archive, Unarchive]
        };
        let job = live.job.get();
        offered
            .iter()
            .copied()
            .filter(|action| job.applies(*action))
            .map(|action| {
                view! {
                    <button
                        type="button"
                        class=format!("btn {}{}", button_class(action), if row { " btn-small" } else { "" })
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
            let exports = (action == JobAction::Delete).then(|| {
                let (kind, id) = live.job.with_untracked(|j| (j.kind, j.id));
                view! {
                    <p class="dialog-exports">
                        "Keep a copy first: "
                        <a href=export_url(kind, id, "csv") download rel="external">
                            "Export CSV"
                        </a>
                        " · "
                        <a href=export_url(kind, id, "json") download rel="external">
                            "Export JSON"
                        </a>
                    </p>
                }
            });
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
                >
                    {exports}
                </ConfirmDialog>
            }
        })
    };

    view! {
        <div class="controls" class:controls-centered=centered class:controls-row-mode=row>
            <div class="controls-row">
                {buttons}
                {children.map(|c| c())}
                {(!row)
                    .then(|| {
                        view! {
                            <button
                                type="button"
                                class="btn btn-plain btn-small shortcut-hint"
                                aria-keyshortcuts="?"
                                on:click=move |_| help.set(true)
                            >
                                "Shortcuts ?"
                            </button>
                        }
                    })}
            </div>
            {move || error.get().map(|e| view! { <p class="alert" role="alert">{e}</p> })}
        </div>
        {dialog}
        {move || help.get().then(|| view! { <ShortcutHelp on_close=Callback::new(move |()| help.set(false)) /> })}
    }
}

/// Where the name of a job deleted from its page waits for the dashboard to say it.
pub const DELETED_KEY: &str = "jobdeck-deleted";

/// Leaves the deleted job's name for the dashboard, in this tab only.
fn remember_deleted(name: &str) {
    #[cfg(feature = "hydrate")]
    if let Ok(Some(storage)) = window().session_storage() {
        let _ = storage.set_item(DELETED_KEY, name);
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = name;
}

/// The address of a job's export in `format` (csv or json).
pub fn export_url(kind: JobKind, id: i64, format: &str) -> String {
    format!("{}/{id}/export?format={format}", kind.rest_root())
}

/// The job page's keys, on the window while the page is shown. A key typed into a
/// text field, with a modifier, or while a dialog is open is left alone.
fn shortcuts(
    live: LiveJob,
    phase: Memo<Phase>,
    confirm: RwSignal<Option<JobAction>>,
    help: RwSignal<bool>,
    error: RwSignal<Option<String>>,
    request: impl Fn(JobAction) + Copy + 'static,
) {
    #[cfg(feature = "hydrate")]
    {
        use leptos::wasm_bindgen::JsCast;

        let handle = window_event_listener(leptos::ev::keydown, move |ev: web_sys::KeyboardEvent| {
            if ev.ctrl_key() || ev.meta_key() || ev.alt_key() || ev.default_prevented() {
                return;
            }
            if confirm.get_untracked().is_some() || help.get_untracked() {
                return;
            }
            let typing = ev.target().and_then(|t| t.dyn_into::<web_sys::HtmlElement>().ok()).is_some_and(|el| {
                matches!(el.tag_name().as_str(), "INPUT" | "TEXTAREA" | "SELECT") || el.is_content_editable()
            });
            if typing {
                return;
            }
            let Some(phase) = phase.try_get_untracked() else { return };
            let live_job = !matches!(phase, Phase::Completed | Phase::Failed | Phase::Cancelled);
            let action = match ev.key().as_str() {
                "p" if phase == Phase::Paused => Some(JobAction::Resume),
                "p" if live_job => Some(JobAction::Pause),
                "c" if live_job => Some(JobAction::Cancel),
                "d" if !live_job => Some(JobAction::Delete),
                "d" => {
                    // Said, not silently ignored (SPEC section 16).
                    error.set(Some("A job that is still running cannot be deleted: pause or cancel it first.".into()));
                    None
                }
                "e" => {
                    ev.prevent_default();
                    let (kind, id) = live.job.with_untracked(|j| (j.kind, j.id));
                    let _ = window().location().set_href(&export_url(kind, id, "csv"));
                    None
                }
                "?" => {
                    ev.prevent_default();
                    help.set(true);
                    None
                }
                _ => None,
            };
            if let Some(action) = action {
                ev.prevent_default();
                request(action);
            }
        });
        on_cleanup(move || handle.remove());
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = (live, phase, confirm, help, error, request);
    }
}

/// The list of keyboard shortcuts, as a dialog; Escape, Enter or the button close it.
#[component]
fn ShortcutHelp(on_close: Callback<()>) -> impl IntoView {
    // However it closes, the focus goes back where it was, as from the other dialogs.
    let back = crate::components::confirm_dialog::remember_focus();
    on_cleanup(move || back.run(()));
    let close_ref = NodeRef::<leptos::html::Button>::new();
    Effect::new(move |_| {
        if let Some(button) = close_ref.get() {
            let _ = button.focus();
        }
    });
    let keys = [
        ("p", "Pause or resume the job"),
        ("c", "Cancel the job (asks first)"),
        ("d", "Delete the job once it is over (asks first)"),
        ("e", "Export the job as CSV"),
        ("?", "Show this list"),
        ("Enter", "Press the focused button of a dialog (Tab moves between them)"),
        ("Escape", "Close a dialog"),
    ];
    view! {
        <div class="dialog-backdrop" on:click=move |_| on_close.run(())></div>
        <div
            class="dialog"
            role="dialog"
            aria-modal="true"
            aria-labelledby="shortcuts-title"
            on:keydown=move |ev: leptos::ev::KeyboardEvent| {
                if ev.key() == "Escape" || ev.key() == "Enter" || ev.key() == "Tab" {
                    ev.prevent_default();
                    if ev.key() != "Tab" {
                        on_close.run(());
                    }
                }
            }
        >
            <h2 id="shortcuts-title">"Keyboard shortcuts"</h2>
            <dl class="shortcut-list">
                {keys
                    .into_iter()
                    .map(|(key, what)| {
                        view! {
                            <div>
                                <dt>
                                    <kbd>{key}</kbd>
                                </dt>
                                <dd>{what}</dd>
                            </div>
                        }
                    })
                    .collect_view()}
            </dl>
            <p class="small muted">"Keys do nothing while you type in a field."</p>
            <div class="dialog-actions">
                <button type="button" class="btn btn-plain" node_ref=close_ref on:click=move |_| on_close.run(())>
                    "Close"
                </button>
            </div>
        </div>
    }
}

fn button_class(action: JobAction) -> &'static str {
    match action {
        JobAction::Pause => "btn-warning",
        JobAction::Resume | JobAction::Retry => "btn-success",
        JobAction::Cancel => "btn-danger",
        JobAction::Delete => "btn-neutral",
        JobAction::Archive | JobAction::Unarchive => "btn-plain",
    }
}

fn busy_label(action: JobAction) -> &'static str {
    match action {
        JobAction::Pause => "Pausing…",
        JobAction::Resume => "Resuming…",
        JobAction::Cancel => "Cancelling…",
        JobAction::Delete => "Deleting…",
        JobAction::Archive => "Archiving…",
        JobAction::Unarchive => "Restoring…",
        JobAction::Retry => "Retrying…",
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
            "Delete Job",
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

/// [`JobControls`] of a job page, hydrated in the browser with the page's job.
#[island]
pub fn ControlsIsland(
    job: Job,
    /// Centre the buttons (preprocessing).
    centered: bool,
    /// Where "View All Accounts" goes, on a full research page.
    view_all: Option<String>,
) -> impl IntoView {
    let live = crate::components::live_page::page_job(job);
    view! {
        <JobControls live centered>
            {view_all.map(|href| view! { <a class="btn btn-plain" href=href>"View All Accounts"</a> })}
        </JobControls>
    }
}
