//! Server functions the UI calls. Thin: each one calls the service and maps errors.
//!
//! Each has a fixed endpoint (`/api/<name>`): the default adds a hash of the build's
//! environment, which differs between the browser's build and the server's when they
//! are built in different orders or places, and then the UI calls a path the server
//! does not have.

use leptos::prelude::*;
use leptos::server_fn::codec::{MultipartData, MultipartFormData};

use crate::model::{ItemPage, ItemStatus, Job, JobAction, JobKind, JobsPage};

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

    /// The service, from that state.
    pub fn service() -> Result<Service, ServerFnError> {
        state().map(|s| s.service)
    }

    /// The message a person can act on; the HTTP status goes with it.
    pub fn fail(e: AppError) -> ServerFnError {
        if let Some(opts) = use_context::<leptos_axum::ResponseOptions>() {
            opts.set_status(e.status_code());
        }
        ServerFnError::new(e.public_message())
    }
}

/// A page of jobs of both kinds, newest first.
#[server(endpoint = "list_jobs")]
pub async fn list_jobs(offset: i64, limit: i64) -> Result<JobsPage, ServerFnError> {
    ssr::service()?.page_all(offset, limit).await.map_err(ssr::fail)
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
    offset: i64,
    limit: i64,
) -> Result<ItemPage, ServerFnError> {
    ssr::service()?.items(kind, id, status, offset, limit).await.map_err(ssr::fail)
}

/// Pause, resume, cancel or delete; returns the job after the action (`None` once
/// deleted).
#[server(endpoint = "control_job")]
pub async fn control_job(kind: JobKind, id: i64, action: JobAction) -> Result<Option<Job>, ServerFnError> {
    let service = ssr::service()?;
    let job = match action {
        JobAction::Pause => Some(service.pause(kind, id).await),
        JobAction::Resume => Some(service.resume(kind, id).await),
        JobAction::Cancel => Some(service.cancel(kind, id).await),
        JobAction::Delete => {
            service.delete(kind, id).await.map_err(ssr::fail)?;
            None
        }
    };
    job.transpose().map_err(ssr::fail)
}

/// Creates a job from an upload form: fields `kind` (research|preprocess), `file`,
/// `name`, `concurrency`. Read by the same bounded reader as the REST upload.
#[server(endpoint = "upload_job", input = MultipartFormData)]
pub async fn upload_job(data: MultipartData) -> Result<Job, ServerFnError> {
    use crate::server::error::AppError;
    use crate::server::upload::read_upload;

    let state = ssr::state()?;
    let form = data.into_inner().ok_or_else(|| ServerFnError::new("the upload could not be read"))?;
    let form = read_upload(form, state.config.server.max_upload_bytes).await.map_err(ssr::fail)?;
    if !form.has_file {
        return Err(ssr::fail(AppError::BadInput("choose a CSV file to upload".into())));
    }
    let kind = form.kind.unwrap_or(JobKind::Research);
    state.service.create_job(kind, form.upload).await.map_err(ssr::fail)
}

/// Starts full research of a completed preprocessing job's clean rows.
#[server(endpoint = "research_from_clean")]
pub async fn research_from_clean(id: i64) -> Result<Job, ServerFnError> {
    ssr::service()?.research_from_preprocess(id).await.map_err(ssr::fail)
}
