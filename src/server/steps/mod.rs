//! The per-item steps. The runner knows only the [`Step`] trait; each kind of job
//! plugs in its own implementation.

pub mod hosts;
pub mod llm;
pub mod meta;
pub mod net;
pub mod page;
pub mod preprocess;
pub mod research;
pub mod robots;

use futures::future::BoxFuture;
use std::time::Duration;

use super::store::types::Claimed;

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
    /// A researched site said to wait (429 or 503 with `Retry-After`): its host cools
    /// (SPEC section 12) and the item tries again then, without losing an attempt for
    /// its first few cool-downs; the job goes on.
    #[error("{reason}")]
    Cooling { reason: String },
}

/// One unit of work on one item. Implementations are cheap to share (`Arc` inside)
/// and must be cancel-safe: the runner drops the future when a job is cancelled.
pub trait Step: Send + Sync + 'static {
    /// Works on `item` and returns the JSON result stored with it.
    fn run(&self, item: Claimed) -> BoxFuture<'static, Result<serde_json::Value, StepError>>;

    /// The result of `run` when it needs nothing outside the item (no request, no
    /// wait): cleaning a name, say. The runner computes such results while it still
    /// holds the write that claimed the item, and stores them in the same transaction;
    /// so nothing may be done here that a crash before that commit should not forget.
    /// `None`: the item goes through `run` once its claim has committed.
    fn run_now(&self, _item: &Claimed) -> Option<Result<serde_json::Value, StepError>> {
        None
    }
}

/// The most a stored result may weigh, serialised (SPEC section 9: everything bounded).
pub const MAX_RESULT_BYTES: usize = 64 * 1024;
/// Longest string kept anywhere in a result, in characters.
const MAX_RESULT_STRING_CHARS: usize = 2000;
/// Most entries kept in any list or object of a result.
const MAX_RESULT_ENTRIES: usize = 50;

/// Bounds a step's result before it is stored: strings, lists and objects are cut to
/// their caps, at any depth, and a result still over [`MAX_RESULT_BYTES`] loses its
/// largest fields, each replaced by a note saying so.
pub fn bound_result(mut value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    fn cut(v: &mut Value, depth: usize) {
        match v {
            Value::String(s) => {
                if let Some((at, _)) = s.char_indices().nth(MAX_RESULT_STRING_CHARS) {
                    s.truncate(at);
                    s.push('…');
                }
            }
            Value::Array(items) => {
                items.truncate(MAX_RESULT_ENTRIES);
                if depth > 8 {
                    items.clear();
                }
                items.iter_mut().for_each(|i| cut(i, depth + 1));
            }
            Value::Object(map) => {
                if depth > 8 {
                    map.clear();
                }
                let mut kept = 0;
                map.retain(|_, _| {
                    kept += 1;
                    kept <= MAX_RESULT_ENTRIES
                });
                map.values_mut().for_each(|i| cut(i, depth + 1));
            }
            _ => {}
        }
    }
    cut(&mut value, 0);
    let size = |v: &Value| serde_json::to_vec(v).map_or(usize::MAX, |b| b.len());
    while size(&value) > MAX_RESULT_BYTES {
        let Value::Object(map) = &mut value else { return Value::String("the result was too large to keep".into()) };
        let Some(largest) = map
            .iter()
            .filter(|(_, v)| !matches!(v, Value::String(s) if s.starts_with("(left out:")))
            .max_by_key(|(_, v)| size(v))
            .map(|(k, _)| k.clone())
        else {
            break;
        };
        map.insert(largest, Value::String("(left out: too large to keep)".into()));
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn results_are_bounded_at_every_depth() {
        let long = "é".repeat(10_000);
        let many: Vec<String> = (0..1000).map(|i| format!("item {i}")).collect();
        let result = bound_result(json!({
            "title": long,
            "emails": many,
            "profile": {"nested": {"deeper": [long.clone(), long.clone()]}},
            "statusCode": 200,
        }));
        assert_eq!(result["title"].as_str().unwrap().chars().count(), MAX_RESULT_STRING_CHARS + 1);
        assert_eq!(result["emails"].as_array().unwrap().len(), MAX_RESULT_ENTRIES);
        assert_eq!(result["statusCode"], 200);
        assert!(serde_json::to_vec(&result).unwrap().len() <= MAX_RESULT_BYTES);
    }

    #[test]
    fn a_result_still_too_large_loses_its_largest_fields_first() {
        // 50 fields of 50 strings of 2,000 characters: far over the cap after cutting.
        let field: Vec<String> = (0..50).map(|_| "x".repeat(2000)).collect();
        let mut map = serde_json::Map::new();
        map.insert("title".into(), json!("Acme"));
        for i in 0..40 {
            map.insert(format!("list{i}"), json!(field));
        }
        let result = bound_result(serde_json::Value::Object(map));
        assert!(serde_json::to_vec(&result).unwrap().len() <= MAX_RESULT_BYTES);
        assert_eq!(result["title"], "Acme", "small fields are kept");
        assert_eq!(result["list0"], "(left out: too large to keep)");
    }
}
