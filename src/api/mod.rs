//! Server functions the UI calls. Thin: each one calls the service and maps errors.
//!
//! Each has a fixed endpoint (`/api/<name>`): the default adds a hash of the build's
//! environment, which differs between the browser's build and the server's when they
//! are built in different orders or places, and then the UI calls a path the server
//! does not have.

use leptos::prelude::*;
use leptos::server_fn::codec::{Json, MultipartData, MultipartFormData};

use crate::model::{BulkOutcome, ItemPage, ItemStatus, Job, JobAction, JobEvent, JobFilter, JobKind, JobRef, JobsPage};

#[cfg(feature = "ssr")]
mod ssr {
    use leptos::prelude::*;

    use crate::server::error::AppError;
    use crate::server::service::Service;
    use crate::server::state::AppState;

    /// The state the router provides to every server function.
    pub fn state() -> Result<AppState, ServerFnError> {
        use_context::<AppState>().ok_or_else(|| ServerFnError::new("the server state is not available"))
    }

    /// The service, from that state, logging what it does as done in the UI.
    pub fn service() -> Result<Service, ServerFnError> {
        state().map(|s| s.service.by(crate::model::Source::Ui))
    }

    /// The message a person can act on; the HTTP status goes with it.
    pub fn fail(e: AppError) -> ServerFnError {
        if let Some(opts) = use_context::<leptos_axum::ResponseOptions>() {
            opts.set_status(e.status_code());
        }
        ServerFnError::new(e.public_message())
    }
}

/// Whether this request is signed in with the access token (SPEC section 9): the
/// header then offers "Sign out". `false` when no token is set.
#[server(endpoint = "signed_in")]
pub async fn signed_in() -> Result<bool, ServerFnError> {
    // The access guard marks a request it let through on a live session.
    let parts = use_context::<axum::http::request::Parts>();
    Ok(parts.is_some_and(|p| p.extensions.get::<crate::server::access::SignedIn>().is_some()))
}

/// A page of the jobs a filter takes, newest first.
#[server(endpoint = "list_jobs", input = Json)]
pub async fn list_jobs(filter: JobFilter, offset: i64, limit: i64) -> Result<JobsPage, ServerFnError> {
    ssr::service()?.page(filter, offset, limit).await.map_err(ssr::fail)
}

/// A page of a job's activity log, newest first.
#[server(endpoint = "job_events")]
pub async fn job_events(
    kind: JobKind,
    id: i64,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<JobEvent>, ServerFnError> {
    ssr::service()?.events(kind, id, before, limit).await.map_err(ssr::fail)
}

/// Renames a job or changes its concurrency.
#[server(endpoint = "edit_job")]
pub async fn edit_job(
    kind: JobKind,
    id: i64,
    name: Option<String>,
    concurrency: Option<i64>,
) -> Result<Job, ServerFnError> {
    ssr::service()?.edit(kind, id, name, concurrency).await.map_err(ssr::fail)
}

/// Sets (or with two `None`s clears) when a job pauses and resumes by itself; times
/// as RFC 3339 text.
#[server(endpoint = "schedule_job")]
pub async fn schedule_job(
    kind: JobKind,
    id: i64,
    pause_at: Option<String>,
    resume_at: Option<String>,
) -> Result<Job, ServerFnError> {
    use crate::server::service::schedule_time;
    let time = |field: &str, text: Option<String>| text.map(|t| schedule_time(field, &t)).transpose();
    let pause_at = time("pauseAt", pause_at).map_err(ssr::fail)?;
    let resume_at = time("resumeAt", resume_at).map_err(ssr::fail)?;
    ssr::service()?.schedule(kind, id, pause_at, resume_at).await.map_err(ssr::fail)
}

/// One action on the jobs named, or on every job the filter takes.
#[server(endpoint = "bulk_jobs", input = Json)]
pub async fn bulk_jobs(
    action: JobAction,
    jobs: Option<Vec<JobRef>>,
    filter: Option<JobFilter>,
) -> Result<BulkOutcome, ServerFnError> {
    use crate::server::service::BulkTarget;
    let target = match (jobs, filter) {
        (Some(jobs), None) => BulkTarget::Jobs(jobs),
        (None, Some(filter)) => BulkTarget::Filter(filter),
        _ => return Err(ServerFnError::new("choose jobs or a filter")),
    };
    ssr::service()?.bulk(action, target).await.map_err(ssr::fail)
}

#[server(endpoint = "get_job")]
pub async fn get_job(kind: JobKind, id: i64) -> Result<Job, ServerFnError> {
    ssr::service()?.get(kind, id).await.map_err(ssr::fail)
}

#[server(endpoint = "list_items")]
pub async fn list_items(
    kind: JobKind,
    id: i64,
    status: Option<ItemStatus>,
    outcome: Option<crate::model::Outcome>,
    offset: i64,
    limit: i64,
) -> Result<ItemPage, ServerFnError> {
    let service = ssr::service()?;
    match outcome {
        Some(outcome) if kind == JobKind::Preprocess => service.outcome_items(id, outcome, offset, limit).await,
        _ => service.items(kind, id, status, offset, limit).await,
    }
    .map_err(ssr::fail)
}

/// Pause, resume, cancel, delete, archive, restore or retry; returns the job after
/// the action (`None` once deleted).
#[server(endpoint = "control_job")]
pub async fn control_job(kind: JobKind, id: i64, action: JobAction) -> Result<Option<Job>, ServerFnError> {
    ssr::service()?.act(kind, id, action).await.map_err(ssr::fail)
}

/// Creates a job from an upload form: fields `kind` (research|preprocess), `file`,
/// `name`, `concurrency`. Read by the same bounded reader as the REST upload.
#[server(endpoint = "upload_job", input = MultipartFormData)]
pub async fn upload_job(data: MultipartData) -> Result<Job, ServerFnError> {
    use crate::server::upload::import_upload;

    let state = ssr::state()?;
    let form = data.into_inner().ok_or_else(|| ServerFnError::new("the upload could not be read"))?;
    let service = state.service.by(crate::model::Source::Ui);
    let max_bytes = state.config.server.max_upload_bytes;
    import_upload(&service, None, form, max_bytes, "choose a CSV file to upload").await.map_err(ssr::fail)
}

/// Starts full research of a completed preprocessing job's clean rows.
#[server(endpoint = "research_from_clean")]
pub async fn research_from_clean(id: i64) -> Result<Job, ServerFnError> {
    ssr::service()?.research_from_preprocess(id).await.map_err(ssr::fail)
}
