//! The REST API of SPEC section 4. Handlers only translate HTTP to service calls.

use axum::body::Body;
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::config::Config;
use super::error::AppError;
use super::service::Service;
use super::state::AppState;
use super::upload::{multipart_of, read_upload};
use crate::model::{Item, ItemStatus, JobKind};

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
        .route("/api/health", get(|| async { Json(serde_json::json!({ "ok": true })) }))
}

fn kind_routes(kind: JobKind, root: &str, items: &str) -> Router<AppState> {
    Router::new()
        .route(root, post(move |s, c, r| create(kind, s, c, r)).get(move |s| list(kind, s)))
        .route(&format!("{root}/{{id}}"), get(move |s, p| show(kind, s, p)).delete(move |s, p| remove(kind, s, p)))
        .route(&format!("{root}/{{id}}/{items}"), get(move |s, p, q| list_items(kind, s, p, q)))
        .route(&format!("{root}/{{id}}/export"), get(move |s, p, q| export(kind, s, p, q)))
        .route(&format!("{root}/{{id}}/pause"), post(move |s, p| control(kind, Action::Pause, s, p)))
        .route(&format!("{root}/{{id}}/resume"), post(move |s, p| control(kind, Action::Resume, s, p)))
        .route(&format!("{root}/{{id}}/cancel"), post(move |s, p| control(kind, Action::Cancel, s, p)))
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
    let form = read_upload(multipart_of(request)?, config.server.max_upload_bytes).await?;
    if !form.has_file {
        return Err(AppError::BadInput("the upload needs a CSV file in the `file` field".into()));
    }
    let job = service.create_job(kind, form.upload).await?;
    Ok((StatusCode::CREATED, Json(job)).into_response())
}

async fn list(kind: JobKind, State(service): State<Service>) -> Result<Response, AppError> {
    Ok(Json(service.list(kind).await?).into_response())
}

async fn show(kind: JobKind, State(service): State<Service>, Path(id): Path<String>) -> Result<Response, AppError> {
    Ok(Json(service.get(kind, job_id(kind, &id)?).await?).into_response())
}

#[derive(Clone, Copy)]
enum Action {
    Pause,
    Resume,
    Cancel,
}

async fn control(
    kind: JobKind,
    action: Action,
    State(service): State<Service>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let id = job_id(kind, &id)?;
    let job = match action {
        Action::Pause => service.pause(kind, id).await?,
        Action::Resume => service.resume(kind, id).await?,
        Action::Cancel => service.cancel(kind, id).await?,
    };
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
    Ok(Json(service.items(kind, id, status, offset, limit).await?).into_response())
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
        ],
    }
}

/// Cells that a spreadsheet would run as a formula get a leading apostrophe.
pub fn neutralise(cell: &str) -> String {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}"),
        _ => cell.to_string(),
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
    }
}
