//! Reading an upload: one multipart reader for the REST API and the UI's server
//! function alike, streaming the file into its import and bounding every other field,
//! and the body limit every request passes through, so an oversized body is refused
//! early and never held in memory (SPEC section 9).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use bytes::Bytes;

use super::error::AppError;
use super::import::{parse_concurrency, Settings};
use super::policy::ServerFnPaths;
use super::service::{Import, Service};
use crate::model::{Job, JobKind};

/// Room for the multipart envelope and the small fields around a file at the limit.
const ENVELOPE_BYTES: usize = 64 * 1024;
/// Every body that is not an upload: JSON, forms, server function arguments.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The small text fields of an upload form.
const MAX_FIELD_BYTES: usize = 4096;

/// The server function path of the UI's upload form.
pub const UPLOAD_FN_PATH: &str = "/api/upload_job";

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

/// How long an upload may send nothing before it is given up: a stalled client holds
/// an import's place (see `service::MAX_PARSING_IMPORTS`) no longer than this.
pub const UPLOAD_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// The next piece of the file field, or an error if the client stalls past
/// [`UPLOAD_IDLE`].
async fn next_piece(field: &mut multer::Field<'_>, max_bytes: usize) -> Result<Option<Bytes>, AppError> {
    match tokio::time::timeout(UPLOAD_IDLE, field.chunk()).await {
        Ok(piece) => piece.map_err(|e| read_error(e, max_bytes)),
        Err(_) => {
            Err(AppError::BadInput(format!("the upload sent nothing for {} s and was given up", UPLOAD_IDLE.as_secs())))
        }
    }
}

/// Imports an upload form as it arrives: fields `file` (streamed into the import as
/// its bytes come, never held whole), `name`, `concurrency` and, from the UI's form,
/// `kind`; others are skipped. `kind` is the endpoint's, or the form's (which must
/// come before its file). `no_file` is the answer when the form has no file.
pub async fn import_upload(
    service: &Service,
    kind: Option<JobKind>,
    mut form: multer::Multipart<'_>,
    max_bytes: usize,
    no_file: &str,
) -> Result<Job, AppError> {
    let mut settings = Settings::default();
    let mut form_kind: Option<JobKind> = None;
    let mut import: Option<(Import, JobKind)> = None;
    let outcome = async {
        while let Some(mut field) = form.next_field().await.map_err(|e| read_error(e, max_bytes))? {
            match field.name().unwrap_or("") {
                "file" if import.is_none() => {
                    // A file sent without a name is named as the server keeps it.
                    let filename = field.file_name().filter(|f| !f.trim().is_empty()).unwrap_or("upload.csv");
                    let filename = filename.to_string();
                    let kind = kind.or(form_kind).unwrap_or(JobKind::Research);
                    let mut first = match next_piece(&mut field, max_bytes).await? {
                        Some(piece) => piece,
                        None if field.file_name().is_none_or(|f| f.trim().is_empty()) => continue,
                        None => Bytes::new(),
                    };
                    let (started, _) = import.insert((service.start_import(kind, filename, settings.clone()), kind));
                    loop {
                        if !first.is_empty() && !started.send(std::mem::take(&mut first)).await {
                            // The file was refused part-way: its reason is the answer.
                            return Ok(true);
                        }
                        match next_piece(&mut field, max_bytes).await? {
                            Some(piece) => first = piece,
                            None => break,
                        }
                    }
                }
                "name" => settings.name = Some(small_text(&mut field, "name", max_bytes).await?),
                "concurrency" => {
                    settings.concurrency = parse_concurrency(&small_text(&mut field, "concurrency", max_bytes).await?)?;
                }
                "kind" => {
                    let text = small_text(&mut field, "kind", max_bytes).await?;
                    let named =
                        text.trim().parse().map_err(|_| AppError::BadInput(format!("unknown job kind `{text}`")))?;
                    if kind.is_none() && import.as_ref().is_some_and(|(_, started)| *started != named) {
                        return Err(AppError::BadInput("the form's kind must come before its file".into()));
                    }
                    form_kind = Some(named);
                }
                _ => {}
            }
        }
        Ok(false)
    }
    .await;
    if let Ok(true) = outcome {
        // Read the rest of the body, so the client, still sending, gets the answer
        // instead of a closed connection; nothing of it is kept.
        while let Ok(Ok(Some(mut field))) = tokio::time::timeout(UPLOAD_IDLE, form.next_field()).await {
            while let Ok(Ok(Some(_))) = tokio::time::timeout(UPLOAD_IDLE, field.chunk()).await {}
        }
    }
    match (outcome, import) {
        (Ok(_), Some((import, _))) => import.finish(settings).await,
        (Ok(_), None) => Err(AppError::BadInput(no_file.into())),
        (Err(e), Some((import, _))) => Err(import.abort(e).await),
        (Err(e), None) => Err(e),
    }
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
    let upload = is_upload(request.method(), &path);
    let request = request.map(|body| {
        let limited = http_body_util::Limited::new(body, limit);
        if upload {
            Body::new(Paced { inner: limited, paused: false })
        } else {
            Body::new(limited)
        }
    });
    next.run(request).await
}

/// An upload's body handed on one piece per poll. The multipart reader takes every
/// piece a body has ready before it hands out any, so a client sending faster than
/// the import writes would have it hold the whole file; paced, it holds one piece.
struct Paced<B> {
    inner: B,
    /// A piece went out on the last poll: this one answers "not yet" (and asks to be
    /// polled again at once).
    paused: bool,
}

impl<B: http_body::Body + Unpin> http_body::Body for Paced<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if std::mem::take(&mut self.paused) {
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        self.paused = matches!(polled, std::task::Poll::Ready(Some(Ok(_))));
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
