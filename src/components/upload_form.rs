//! The form that starts a job from a CSV file.

use crate::components::format::go;
use leptos::ev::SubmitEvent;
use leptos::html;
use leptos::prelude::*;
use leptos::server_fn::ServerFn;

use crate::api::{upload_job, UploadJob};
use crate::components::format::error_text;
use crate::model::{JobKind, MAX_CONCURRENCY, MIN_CONCURRENCY};

/// Upload a CSV to start a job of one kind: file, optional name, concurrency (1–64,
/// default 5).
///
/// A file the server rejects leaves the person on the form with the server's message
/// (it names the line and the problem); a good one opens the new job's page. Without
/// JavaScript the form still posts to the server function, which sends the browser
/// back to the dashboard.
#[component]
pub fn UploadForm(kind: JobKind) -> impl IntoView {
    let form_ref = NodeRef::<html::Form>::new();
    let busy = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let created = RwSignal::new(None::<String>);
    Effect::new(move |_| {
        if let Some(url) = created.get() {
            go(&url);
        }
    });

    let on_submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        if busy.get_untracked() {
            return;
        }
        let Some(form) = form_ref.get_untracked() else { return };
        let data = match web_sys::FormData::new_with_form(&form) {
            Ok(data) => data,
            Err(_) => {
                error.set(Some("the browser could not read the form".into()));
                return;
            }
        };
        busy.set(true);
        error.set(None);
        leptos::task::spawn_local(async move {
            match upload_job(data.into()).await {
                // Stays busy while the new page loads, so nobody uploads twice.
                Ok(job) => created.set(Some(job.kind.page_url(job.id))),
                Err(e) => {
                    error.set(Some(error_text(&e)));
                    busy.set(false);
                }
            }
        });
    };

    let (title, hint, submit) = match kind {
        JobKind::Research => (
            "New full research",
            "A CSV of accounts with a company name and/or a website or domain column. \
             Each account's website is visited and summarised.",
            "Start research",
        ),
        JobKind::Preprocess => (
            "New preprocessing",
            "A CSV of raw rows, e.g. a CRM export. Rows are cleaned, validated, \
             de-duplicated and their websites checked.",
            "Start preprocessing",
        ),
    };
    let id = |field: &str| format!("{}-{field}", kind.as_str());
    let heading = id("title");
    let labelled_by = heading.clone();

    view! {
        <form
            class="card upload"
            method="post"
            action=UploadJob::url()
            enctype="multipart/form-data"
            aria-labelledby=labelled_by
            node_ref=form_ref
            on:submit=on_submit
        >
            <h2 id=heading>{title}</h2>
            <p class="hint">{hint}</p>
            <input type="hidden" name="kind" value=kind.as_str() />
            <div class="field">
                <label for=id("file")>"CSV file"</label>
                <input id=id("file") type="file" name="file" accept=".csv,.tsv,.txt,text/csv" required />
            </div>
            <div class="field">
                <label for=id("name")>"Name " <span class="muted">"(optional)"</span></label>
                <input id=id("name") type="text" name="name" maxlength="200" placeholder="e.g. Q3 trade fair leads" />
            </div>
            <div class="field">
                <label for=id("concurrency")>"Concurrency"</label>
                <input
                    id=id("concurrency")
                    type="number"
                    name="concurrency"
                    inputmode="numeric"
                    min=MIN_CONCURRENCY.to_string()
                    max=MAX_CONCURRENCY.to_string()
                    step="1"
                    value="5"
                    required
                    aria-describedby=id("concurrency-hint")
                />
                <p class="hint" id=id("concurrency-hint")>
                    {format!("Items worked on at once, {MIN_CONCURRENCY}–{MAX_CONCURRENCY}.")}
                </p>
            </div>
            <button type="submit" class="btn btn-primary" disabled=move || busy.get() aria-busy=move || busy.get().then_some("true")>
                {move || if busy.get() { "Uploading…" } else { submit }}
            </button>
            {move || error.get().map(|e| view! { <p class="alert" role="alert">{e}</p> })}
        </form>
    }
}
