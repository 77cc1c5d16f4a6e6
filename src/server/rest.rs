//! The REST API of SPEC section 4. Handlers only translate HTTP to service calls.

use axum::body::Body;
use std::sync::Arc;

use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;

use super::config::Config;
use super::error::AppError;
use super::service::{self, BulkTarget, Service};
use super::state::AppState;
use super::upload::{import_upload, multipart_of};
use crate::model::{
    Archived, Item, ItemStatus, JobAction, JobFilter, JobKind, JobRef, Outcome, EVENTS_PAGE, JOB_LIST_LIMIT,
};

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status_code();
        (status, Json(serde_json::json!({ "error": self.public_message() }))).into_response()
    }
}

/// The REST routes of both kinds of job.
pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(kind_routes(JobKind::Research, "/api/process", "accounts"))
        .merge(kind_routes(JobKind::Preprocess, "/api/preprocess/jobs", "results"))
        .route("/api/preprocess/jobs/{id}/research", post(research_from_clean))
        .route("/api/jobs/bulk", post(bulk))
        .route("/api/health", get(|| async { Json(serde_json::json!({ "ok": true })) }))
}

fn kind_routes(kind: JobKind, root: &str, items: &str) -> Router<AppState> {
    Router::new()
        .route(root, post(move |s, c, r| create(kind, s, c, r)).get(move |s, q| list(kind, s, q)))
        .route(
            &format!("{root}/{{id}}"),
            get(move |s, p| show(kind, s, p))
                .delete(move |s, p| remove(kind, s, p))
                .patch(move |s, p, b| edit(kind, s, p, b)),
        )
        .route(
            &format!("{root}/{{id}}/schedule"),
            put(move |s, p, b| schedule(kind, s, p, b)).delete(move |s, p| clear_schedule(kind, s, p)),
        )
        .route(&format!("{root}/{{id}}/events"), get(move |s, p, q| events(kind, s, p, q)))
        .route(&format!("{root}/{{id}}/retry"), post(move |s, p| control(kind, JobAction::Retry, s, p)))
        .route(&format!("{root}/{{id}}/archive"), post(move |s, p| control(kind, JobAction::Archive, s, p)))
        .route(&format!("{root}/{{id}}/unarchive"), post(move |s, p| control(kind, JobAction::Unarchive, s, p)))
        .route(&format!("{root}/{{id}}/{items}"), get(move |s, p, q| list_items(kind, s, p, q)))
        .route(&format!("{root}/{{id}}/export"), get(move |s, p, q| export(kind, s, p, q)))
        .route(&format!("{root}/{{id}}/pause"), post(move |s, p| control(kind, JobAction::Pause, s, p)))
        .route(&format!("{root}/{{id}}/resume"), post(move |s, p| control(kind, JobAction::Resume, s, p)))
        .route(&format!("{root}/{{id}}/cancel"), post(move |s, p| control(kind, JobAction::Cancel, s, p)))
        .route(&format!("{root}/{{id}}/delete"), delete(move |s, p| remove(kind, s, p)))
}

/// Ids that are not positive whole numbers name no job.
fn job_id(kind: JobKind, raw: &str) -> Result<i64, AppError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| AppError::NotFound { kind: kind.as_str(), id: raw.to_string() })
}

async fn create(
    kind: JobKind,
    State(service): State<Service>,
    State(config): State<Arc<Config>>,
    request: Request,
) -> Result<Response, AppError> {
    let no_file = "the upload needs a CSV file in the `file` field";
    let job =
        import_upload(&service, Some(kind), multipart_of(request)?, config.server.max_upload_bytes, no_file).await?;
    Ok((StatusCode::CREATED, Json(job)).into_response())
}

#[derive(Deserialize)]
struct ListQuery {
    archived: Option<String>,
    offset: Option<String>,
    limit: Option<String>,
}

fn archived_param(raw: Option<&str>) -> Result<Archived, AppError> {
    let raw = raw.map(str::trim).unwrap_or("");
    raw.parse().map_err(|_| AppError::BadInput(format!("archived must be true, false or all, not `{raw}`")))
}

async fn list(kind: JobKind, State(service): State<Service>, Query(q): Query<ListQuery>) -> Result<Response, AppError> {
    let archived = archived_param(q.archived.as_deref())?;
    let offset = number("offset", q.offset.as_deref(), 0)?;
    let limit = number("limit", q.limit.as_deref(), JOB_LIST_LIMIT)?;
    let page = service.list_archived(kind, archived, offset, limit).await?;
    // The list stays a JSON array; how many jobs the whole list holds goes beside it.
    Ok(([("x-total-count", page.total.to_string())], Json(page.jobs)).into_response())
}

/// A JSON endpoint's body: only with `Content-Type: application/json` (SPEC section
/// 11: a page of another site can send `text/plain` without asking the browser's
/// leave, never JSON), checked before the body is read.
pub struct JsonBody(bytes::Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            let shown = if essence.is_empty() { "none".to_string() } else { essence.chars().take(100).collect() };
            return Err(AppError::WrongMediaType(format!(
                "send the body as JSON with `Content-Type: application/json` (this request's type: {shown})"
            ))
            .into_response());
        }
        bytes::Bytes::from_request(request, state).await.map(Self).map_err(IntoResponse::into_response)
    }
}

/// A JSON request body, or a 400 that says what is wrong with it.
fn json_body(body: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, AppError> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(AppError::BadInput("the body must be a JSON object".into())),
        Err(e) => Err(AppError::BadInput(format!("the body is not valid JSON: {e}"))),
    }
}

/// A JSON object body with none but the `allowed` keys, or a 400: `unknown` words the
/// refusal of the first other key.
fn json_fields(
    body: &[u8],
    allowed: &[&str],
    unknown: impl Fn(&str) -> String,
) -> Result<serde_json::Map<String, serde_json::Value>, AppError> {
    let body = json_body(body)?;
    match body.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(AppError::BadInput(unknown(key))),
        None => Ok(body),
    }
}

/// `PATCH /api/process/:jobId` with `{"name"?, "concurrency"?}`.
async fn edit(
    kind: JobKind,
    State(service): State<Service>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    let id = job_id(kind, &id)?;
    let body = json_fields(&body, &["name", "concurrency"], |key| {
        format!("a job's `{key}` cannot be changed; only name and concurrency")
    })?;
    let name = match body.get("name") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(AppError::BadInput("name must be a string".into())),
    };
    let concurrency =
        match body.get("concurrency") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(v.as_i64().ok_or_else(|| {
                AppError::BadInput(format!("concurrency must be a whole number from 1 to 64, not {v}"))
            })?),
        };
    Ok(Json(service.edit(kind, id, name, concurrency).await?).into_response())
}

/// `PUT /api/process/:jobId/schedule` with `{"pauseAt": t|null, "resumeAt": t|null}`
/// (a key left out is null).
async fn schedule(
    kind: JobKind,
    State(service): State<Service>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    let id = job_id(kind, &id)?;
    let body = json_fields(&body, &["pauseAt", "resumeAt"], |key| {
        format!("a schedule has pauseAt and resumeAt, not `{key}`")
    })?;
    let time = |field: &str| match body.get(field) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => service::schedule_time(field, s).map(Some),
        Some(v) => Err(AppError::BadInput(format!("{field} must be an RFC 3339 time or null, not {v}"))),
    };
    let (pause_at, resume_at) = (time("pauseAt")?, time("resumeAt")?);
    Ok(Json(service.schedule(kind, id, pause_at, resume_at).await?).into_response())
}

/// `DELETE /api/process/:jobId/schedule`.
async fn clear_schedule(
    kind: JobKind,
    State(service): State<Service>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let id = job_id(kind, &id)?;
    Ok(Json(service.schedule(kind, id, None, None).await?).into_response())
}

#[derive(Deserialize)]
struct EventsQuery {
    limit: Option<String>,
    before: Option<String>,
}

async fn events(
    kind: JobKind,
    State(service): State<Service>,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
) -> Result<Response, AppError> {
    let id = job_id(kind, &id)?;
    let limit = number("limit", q.limit.as_deref(), EVENTS_PAGE)?;
    let before = match q.before.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(_) => Some(number("before", q.before.as_deref(), 0)?),
    };
    Ok(Json(service.events(kind, id, before, limit).await?).into_response())
}

/// `POST /api/jobs/bulk` with `{"action", "jobs": [{"kind", "id"}]}` or
/// `{"action", "filter": {"kind"?, "status"?, "archived"?}}`.
async fn bulk(State(service): State<Service>, JsonBody(body): JsonBody) -> Result<Response, AppError> {
    let body = json_body(&body)?;
    let action = match body.get("action").and_then(|v| v.as_str()) {
        Some(a) => a.parse::<JobAction>().map_err(|_| {
            AppError::BadInput(format!(
                "action must be pause, resume, cancel, delete, archive, unarchive or retry, not `{a}`"
            ))
        })?,
        None => return Err(AppError::BadInput("the body needs an `action`".into())),
    };
    let target = match (body.get("jobs"), body.get("filter")) {
        (Some(jobs), None) => BulkTarget::Jobs(
            serde_json::from_value::<Vec<JobRef>>(jobs.clone())
                .map_err(|e| AppError::BadInput(format!("jobs must be a list of {{\"kind\", \"id\"}}: {e}")))?,
        ),
        (None, Some(filter)) => BulkTarget::Filter(bulk_filter(filter)?),
        _ => return Err(AppError::BadInput("give either `jobs` or `filter`".into())),
    };
    Ok(Json(service.bulk(action, target).await?).into_response())
}

/// A bulk filter: `kind`, `status` (a phase: pending, processing, paused, completed,
/// failed, cancelled), `archived` (true, false, all; a boolean too), `search`.
fn bulk_filter(value: &serde_json::Value) -> Result<JobFilter, AppError> {
    let serde_json::Value::Object(map) = value else {
        return Err(AppError::BadInput("filter must be an object".into()));
    };
    let text = |key: &str| -> Result<Option<String>, AppError> {
        match map.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(serde_json::Value::Bool(b)) if key == "archived" => Ok(Some(b.to_string())),
            Some(other) => Err(AppError::BadInput(format!("filter {key} must be a string, not {other}"))),
        }
    };
    if let Some(key) = map.keys().find(|k| !["kind", "status", "archived", "search"].contains(&k.as_str())) {
        return Err(AppError::BadInput(format!("unknown filter field `{key}`")));
    }
    let kind = match text("kind")? {
        None => None,
        Some(k) => {
            Some(k.parse().map_err(|_| AppError::BadInput(format!("kind must be research or preprocess, not `{k}`")))?)
        }
    };
    let status = match text("status")? {
        None => None,
        Some(s) => Some(s.parse().map_err(|_| {
            AppError::BadInput(format!(
                "status must be pending, processing, paused, completed, failed or cancelled, not `{s}`"
            ))
        })?),
    };
    let archived = archived_param(text("archived")?.as_deref())?;
    Ok(JobFilter { kind, status, archived, search: text("search")? })
}

async fn show(kind: JobKind, State(service): State<Service>, Path(id): Path<String>) -> Result<Response, AppError> {
    Ok(Json(service.get(kind, job_id(kind, &id)?).await?).into_response())
}

async fn control(
    kind: JobKind,
    action: JobAction,
    State(service): State<Service>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let id = job_id(kind, &id)?;
    let job = service.act(kind, id, action).await?;
    Ok(Json(job).into_response())
}

async fn remove(kind: JobKind, State(service): State<Service>, Path(id): Path<String>) -> Result<Response, AppError> {
    let id = job_id(kind, &id)?;
    service.delete(kind, id).await?;
    Ok(Json(serde_json::json!({ "deleted": true, "id": id })).into_response())
}

#[derive(Deserialize)]
struct ItemQuery {
    status: Option<String>,
    outcome: Option<String>,
    offset: Option<String>,
    limit: Option<String>,
}

fn number(name: &str, raw: Option<&str>, default: i64) -> Result<i64, AppError> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(default),
        Some(s) => s.parse().map_err(|_| AppError::BadInput(format!("{name} must be a whole number, not `{s}`"))),
    }
}

async fn list_items(
    kind: JobKind,
    State(service): State<Service>,
    Path(id): Path<String>,
    Query(q): Query<ItemQuery>,
) -> Result<Response, AppError> {
    let id = job_id(kind, &id)?;
    let status = match q.status.as_deref().map(str::trim).filter(|s| !s.is_empty() && *s != "all") {
        None => None,
        Some(s) => Some(s.parse::<ItemStatus>().map_err(|_| {
            AppError::BadInput(format!("status must be pending, processing, completed or failed, not `{s}`"))
        })?),
    };
    let offset = number("offset", q.offset.as_deref(), 0)?;
    let limit = number("limit", q.limit.as_deref(), 50)?;
    let outcome = match q.outcome.as_deref().map(str::trim).filter(|s| !s.is_empty() && *s != "all") {
        None => None,
        Some(s) => Some(check_outcome(kind, status, s)?),
    };
    let page = match outcome {
        Some(outcome) => service.outcome_items(id, outcome, offset, limit).await?,
        None => service.items(kind, id, status, offset, limit).await?,
    };
    Ok(Json(page).into_response())
}

/// `outcome` of a preprocessing job's results (SPEC section 16): one of the four, and
/// only with no status or `completed` (every row with an outcome has completed).
fn check_outcome(kind: JobKind, status: Option<ItemStatus>, text: &str) -> Result<Outcome, AppError> {
    if kind != JobKind::Preprocess {
        return Err(AppError::BadInput("outcome filters a preprocessing job's results only".into()));
    }
    let outcome = text.parse::<Outcome>().map_err(|_| {
        AppError::BadInput(format!("outcome must be clean, duplicate, invalid or unreachable, not `{text}`"))
    })?;
    if status.is_some_and(|s| s != ItemStatus::Completed) {
        return Err(AppError::BadInput("outcome goes with status completed or none".into()));
    }
    Ok(outcome)
}

async fn research_from_clean(State(service): State<Service>, Path(id): Path<String>) -> Result<Response, AppError> {
    let id = job_id(JobKind::Preprocess, &id)?;
    let job = service.research_from_preprocess(id).await?;
    Ok((StatusCode::CREATED, Json(job)).into_response())
}

#[derive(Deserialize)]
struct ExportQuery {
    format: Option<String>,
}

/// Result fields exported as their own CSV columns, per kind.
fn result_columns(kind: JobKind) -> &'static [&'static str] {
    match kind {
        JobKind::Research => &[
            "finalUrl",
            "statusCode",
            "title",
            "description",
            "canonical",
            "language",
            "socials",
            "emails",
            "phones",
            "technologies",
            "profile",
            "profileError",
            "errorDetail",
        ],
        JobKind::Preprocess => &[
            "company",
            "legalSuffix",
            "website",
            "domain",
            "email",
            "freeMail",
            "valid",
            "reasons",
            "duplicateOf",
            "liveness.reachable",
            "liveness.finalUrl",
            "liveness.statusCode",
            "liveness.error",
            "liveness.errorDetail",
            "outcome",
        ],
    }
}

/// Cells that a spreadsheet would run as a formula get a leading apostrophe: those
/// that begin with `=`, `+`, `-` or `@`, also after blanks or control characters
/// (spreadsheets skip those), and those that begin with a tab or a carriage return.
pub fn neutralise(cell: &str) -> String {
    let first = cell.trim_start_matches(|c: char| c.is_whitespace() || c.is_control()).chars().next();
    if cell.starts_with(['\t', '\r']) || matches!(first, Some('=' | '+' | '-' | '@')) {
        format!("'{cell}")
    } else {
        cell.to_string()
    }
}

fn cell_text(value: Option<&serde_json::Value>) -> String {
    match value {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Array(items)) if items.iter().all(|v| v.is_string()) => {
            items.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join("; ")
        }
        Some(other) => other.to_string(),
    }
}

fn csv_row(kind: JobKind, item: &Item) -> Vec<String> {
    let mut row = vec![
        item.line.to_string(),
        item.status.to_string(),
        item.attempts.to_string(),
        item.error.clone().unwrap_or_default(),
    ];
    row.extend(item.input.values().map(|v| cell_text(Some(v))));
    for key in result_columns(kind) {
        let pointer = format!("/{}", key.replace('.', "/"));
        row.push(cell_text(item.result.as_ref().and_then(|r| r.pointer(&pointer))));
    }
    row.into_iter().map(|c| neutralise(&c)).collect()
}

fn csv_line(cells: &[String]) -> Result<Vec<u8>, AppError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(cells).map_err(|e| AppError::Internal(e.to_string()))?;
    w.into_inner().map_err(|e| AppError::Internal(e.to_string()))
}

async fn export(
    kind: JobKind,
    State(service): State<Service>,
    Path(id): Path<String>,
    Query(q): Query<ExportQuery>,
) -> Result<Response, AppError> {
    let id = job_id(kind, &id)?;
    let format = q.format.as_deref().unwrap_or("csv").to_ascii_lowercase();
    if format != "csv" && format != "json" {
        return Err(AppError::BadInput(format!("format must be csv or json, not `{format}`")));
    }
    let job = service.get(kind, id).await?;
    let columns = service.columns(kind, id).await?;
    let csv = format == "csv";
    let stream = async_stream::stream! {
        if csv {
            let mut header: Vec<String> = ["line", "status", "attempts", "error"].iter().map(|s| s.to_string()).collect();
            header.extend(columns.iter().cloned());
            header.extend(result_columns(kind).iter().map(|k| format!("result.{k}")));
            let header: Vec<String> = header.iter().map(|c| neutralise(c)).collect();
            yield csv_line(&header).map(bytes::Bytes::from);
        } else {
            yield Ok(bytes::Bytes::from_static(b"["));
        }
        let mut after = 0;
        let mut first = true;
        loop {
            let page = match service.export_page(kind, id, after, 1000).await {
                Ok((_, items)) => items,
                Err(e) => { yield Err(e); break; }
            };
            let Some(last) = page.last() else { break };
            after = last.id;
            let mut chunk = Vec::new();
            for item in &page {
                if csv {
                    match csv_line(&csv_row(kind, item)) {
                        Ok(line) => chunk.extend(line),
                        Err(e) => { yield Err(e); return; }
                    }
                } else {
                    if !first { chunk.push(b','); }
                    first = false;
                    chunk.extend(serde_json::to_vec(item).unwrap_or_default());
                }
            }
            yield Ok(bytes::Bytes::from(chunk));
        }
        if !csv {
            yield Ok(bytes::Bytes::from_static(b"]"));
        }
    };
    let stream = futures::StreamExt::map(stream, |r: Result<bytes::Bytes, AppError>| {
        r.map_err(|e| std::io::Error::other(e.to_string()))
    });
    let (mime, ext) = if csv { ("text/csv; charset=utf-8", "csv") } else { ("application/json", "json") };
    let filename = format!("jobdeck-{}-{}.{ext}", kind.as_str(), job.id);
    Response::builder()
        .header(header::CONTENT_TYPE, mime)
        .header(header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\""))
        .body(Body::from_stream(stream))
        .map_err(|e| AppError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised() {
        assert_eq!(neutralise("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(neutralise("+1"), "'+1");
        assert_eq!(neutralise("-2"), "'-2");
        assert_eq!(neutralise("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(neutralise("Acme"), "Acme");
        assert_eq!(neutralise(""), "");
        // After blanks or control characters, which spreadsheets skip.
        for hidden in [" =1+1", "\t=cmd", "\r\n=cmd", "  @SUM(A1)", "\u{0}+1", "\u{a0}-2"] {
            assert_eq!(neutralise(hidden), format!("'{hidden}"), "{hidden:?}");
        }
        assert_eq!(neutralise("  Acme = best"), "  Acme = best");
    }
}
