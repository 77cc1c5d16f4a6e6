//! The one error type of the server, with its HTTP status.

use axum::http::StatusCode;

/// Every failure the service can report. Wrong-state errors are typed so both the
/// REST API and the UI can say exactly what to do.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    TooLarge(String),
    /// A body in a format the endpoint does not take (415).
    #[error("{0}")]
    WrongMediaType(String),
    #[error("no {kind} job with id {id}")]
    NotFound { kind: &'static str, id: String },
    /// The job is completed, failed or cancelled and cannot be paused or resumed.
    #[error("the job is {0} and can no longer be changed")]
    AlreadyTerminal(&'static str),
    /// Delete asked while the job can still run.
    #[error("the job is still processing: pause or cancel first")]
    StillProcessing,
    /// Any other action the job's state does not allow.
    #[error("{0}")]
    WrongState(String),
    #[error("database error")]
    Db(#[from] rusqlite::Error),
    /// From the PostgreSQL store (SPEC section 10).
    #[error("database error")]
    Pg(#[from] tokio_postgres::Error),
    #[error("internal error")]
    Internal(String),
}

impl AppError {
    /// The same answer for a second listener: the message and status kept, a database
    /// error as its detail.
    pub fn same(&self) -> Self {
        match self {
            Self::BadInput(m) => Self::BadInput(m.clone()),
            Self::TooLarge(m) => Self::TooLarge(m.clone()),
            Self::WrongMediaType(m) => Self::WrongMediaType(m.clone()),
            Self::NotFound { kind, id } => Self::NotFound { kind, id: id.clone() },
            Self::AlreadyTerminal(word) => Self::AlreadyTerminal(word),
            Self::StillProcessing => Self::StillProcessing,
            Self::WrongState(m) => Self::WrongState(m.clone()),
            Self::Db(_) | Self::Pg(_) | Self::Internal(_) => Self::Internal(self.detail()),
        }
    }

    pub fn status_code(&self) -> StatusCode {
        match self {
            Self::BadInput(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::WrongMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::AlreadyTerminal(_) | Self::StillProcessing | Self::WrongState(_) => StatusCode::CONFLICT,
            Self::Db(_) | Self::Pg(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Everything known about the error, for the operator (start-up, logs); never sent
    /// to a client.
    pub fn detail(&self) -> String {
        match self {
            Self::Db(e) => format!("database error: {e}"),
            Self::Pg(e) => format!("database error: {e}"),
            Self::Internal(e) => e.clone(),
            other => other.to_string(),
        }
    }

    /// The text a client may see: internals stay in the server log.
    pub fn public_message(&self) -> String {
        match self {
            Self::Db(e) => {
                tracing::error!(error = %e, "database error");
                "internal error: the database could not complete the request".into()
            }
            Self::Pg(e) => {
                tracing::error!(error = %e, "database error");
                "internal error: the database could not complete the request".into()
            }
            Self::Internal(e) => {
                tracing::error!(error = %e, "internal error");
                "internal error".into()
            }
            other => other.to_string(),
        }
    }
}
