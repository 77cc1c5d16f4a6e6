//! Reading an upload: one multipart reader for the REST API and the UI's server
//! function alike, bounding every field while it streams, and the body limit every
//! request passes through, so an oversized body is refused early and never held in
//! memory (SPEC section 9).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::AppError;
use super::import::{parse_concurrency, Upload};
use super::policy::ServerFnPaths;
use crate::model::JobKind;

/// Room for the multipart envelope and the small fields around a file at the limit.
const ENVELOPE_BYTES: usize = 64 * 1024;
/// Every body that is not an upload: JSON, forms, server function arguments.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The small text fields of an upload form.
const MAX_FIELD_BYTES: usize = 4096;

/// The server function path of the UI's upload form.
pub const UPLOAD_FN_PATH: &str = "/api/upload_job";

/// What an upload form carried. `kind` is set only by the UI's form, which names it.
#[derive(Debug)]
pub struct UploadForm {
    pub kind: Option<JobKind>,
    pub upload: Upload,
    /// Whether a file field came with a name or content.
    pub has_file: bool,
}

/// Whether a stream error is the body limit of [`bound_body`] tripping. The server
/// function layer passes stream errors on as text, so the text counts too.
fn is_length_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    const LIMIT_TEXT: &str = "length limit exceeded"; // http_body_util's own wording
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() || err.to_string().contains(LIMIT_TEXT) {
            return true;
        }
        source = err.source();
    }
    false
}

fn too_large(max_bytes: usize) -> AppError {
    AppError::TooLarge(format!("the upload is larger than the limit of {max_bytes} bytes"))
}

/// A multipart error as the person should read it: too large, or unreadable.
fn read_error(e: multer::Error, max_bytes: usize) -> AppError {
    match &e {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => too_large(max_bytes),
        multer::Error::StreamReadFailed(inner) if is_length_limit(inner.as_ref()) => too_large(max_bytes),
        _ => AppError::BadInput(format!("the upload could not be read: {e}")),
    }
}

/// Reads a small text field, refusing one longer than [`MAX_FIELD_BYTES`].
async fn small_text(field: &mut multer::Field<'_>, what: &str, max_bytes: usize) -> Result<String, AppError> {
    let mut buf = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|e| read_error(e, max_bytes))? {
        if buf.len() + chunk.len() > MAX_FIELD_BYTES {
            return Err(AppError::BadInput(format!("the {what} field is longer than {MAX_FIELD_BYTES} bytes")));
        }
        buf.extend_from_slice(&chunk);
    }
    String::from_utf8(buf).map_err(|_| AppError::BadInput(format!("the {what} field is not UTF-8 text")))
}

/// Reads the fields `file` (streamed, at most `max_bytes`), `name`, `concurrency`,
/// and `kind`; others are skipped. A file over the limit is refused as soon as its
/// bytes pass it.
pub async fn read_upload(mut form: multer::Multipart<'_>, max_bytes: usize) -> Result<UploadForm, AppError> {
    let mut out = UploadForm {
        kind: None,
        upload: Upload { filename: String::new(), name: None, concurrency: None, bytes: Default::default() },
        has_file: false,
    };
    while let Some(mut field) = form.next_field().await.map_err(|e| read_error(e, max_bytes))? {
        match field.name().unwrap_or("") {
            "file" => {
                out.upload.filename = field.file_name().unwrap_or("").to_string();
                let mut bytes = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(|e| read_error(e, max_bytes))? {
                    if bytes.len() + chunk.len() > max_bytes {
                        return Err(AppError::TooLarge(format!(
                            "the file is larger than the limit of {max_bytes} bytes"
                        )));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                out.has_file = !out.upload.filename.is_empty() || !bytes.is_empty();
                out.upload.bytes = bytes.into();
            }
            "name" => out.upload.name = Some(small_text(&mut field, "name", max_bytes).await?),
            "concurrency" => {
                out.upload.concurrency = parse_concurrency(&small_text(&mut field, "concurrency", max_bytes).await?)?;
            }
            "kind" => {
                let text = small_text(&mut field, "kind", max_bytes).await?;
                let kind = text.trim().parse().map_err(|_| AppError::BadInput(format!("unknown job kind `{text}`")))?;
                out.kind = Some(kind);
            }
            _ => {}
        }
    }
    if out.upload.filename.is_empty() {
        out.upload.filename = "upload.csv".into();
    }
    Ok(out)
}

/// The multipart reader over a REST request's body.
pub fn multipart_of(request: Request) -> Result<multer::Multipart<'static>, AppError> {
    let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let boundary = multer::parse_boundary(content_type)
        .map_err(|_| AppError::BadInput("expected a multipart/form-data upload with a `file` field".into()))?;
    Ok(multer::Multipart::new(request.into_body().into_data_stream(), boundary))
}

/// The upload endpoints: the two REST creates and the UI's server function.
fn is_upload(method: &Method, path: &str) -> bool {
    method == Method::POST && matches!(path, "/api/process" | "/api/preprocess/jobs" | UPLOAD_FN_PATH)
}

/// The largest body a request may send: an upload's limit plus its envelope on the
/// upload endpoints, [`MAX_BODY_BYTES`] everywhere else.
pub fn body_limit(method: &Method, path: &str, max_upload_bytes: usize) -> usize {
    if is_upload(method, path) {
        max_upload_bytes.saturating_add(ENVELOPE_BYTES)
    } else {
        MAX_BODY_BYTES
    }
}

/// What [`bound_body`] needs to know.
#[derive(Clone)]
pub struct BodyLimits {
    pub max_upload_bytes: usize,
    /// Server functions get their errors in the form their client decodes.
    pub server_fns: ServerFnPaths,
}

/// A 413 as a server function's client reads it (`ServerError|message`), so the UI
/// shows the message instead of a decoding error.
fn server_fn_too_large(path: &str, message: String) -> Response {
    use leptos::server_fn::error::{FromServerFnError, ServerFnErrorEncoding};
    use leptos::server_fn::ContentType;
    let body = leptos::prelude::ServerFnError::new(message).ser();
    let mut response = (axum::http::StatusCode::PAYLOAD_TOO_LARGE, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(ServerFnErrorEncoding::CONTENT_TYPE));
    if let Ok(path) = HeaderValue::from_str(path) {
        headers.insert(leptos::server_fn::error::SERVER_FN_ERROR_HEADER, path);
    }
    response
}

/// Middleware: a declared length over the limit is answered 413 before any byte is
/// read; any other body is cut off at the limit while it streams.
pub async fn bound_body(State(limits): State<BodyLimits>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let limit = body_limit(request.method(), &path, limits.max_upload_bytes);
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        let what = if is_upload(request.method(), &path) { "upload" } else { "request body" };
        let message = format!("the {what} is larger than the limit of {limit} bytes");
        if limits.server_fns.0.contains(&path) {
            return server_fn_too_large(&path, message);
        }
        return AppError::TooLarge(message).into_response();
    }
    let request = request.map(|body| Body::new(http_body_util::Limited::new(body, limit)));
    next.run(request).await
}
