//! The per-item steps. The runner knows only the [`Step`] trait; each kind of job
//! plugs in its own implementation.

pub mod llm;
pub mod net;
pub mod preprocess;
pub mod research;

use futures::future::BoxFuture;
use std::time::Duration;

pub use super::store::Claimed;

/// Why a step did not produce a result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StepError {
    /// Worth another try after a backoff: time-outs, 5xx, connection resets.
    #[error("{0}")]
    Transient(String),
    /// Will fail the same way again: the item fails with this reason.
    #[error("{0}")]
    Permanent(String),
    /// A rate-limited service said to wait: the job pauses and resumes by itself.
    #[error("{reason}")]
    RateLimited { reason: String, retry_after: Duration },
}

/// One unit of work on one item. Implementations are cheap to share (`Arc` inside)
/// and must be cancel-safe: the runner drops the future when a job is cancelled.
pub trait Step: Send + Sync + 'static {
    /// Works on `item` and returns the JSON result stored with it.
    fn run(&self, item: Claimed) -> BoxFuture<'static, Result<serde_json::Value, StepError>>;
}
