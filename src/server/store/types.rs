//! The rows and changes both stores speak: what an import produces, what a claim hands
//! the runner, what a finished item writes, what a control action changes, what the
//! outbox delivers. No SQL and no store's name here; both stores, the service and the
//! runner import them from this one place.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::model::{EventAction, Job, JobKind, JobStatus};
use crate::server::error::AppError;
use crate::server::rows::{ColumnMap, ResearchFields};

/// How many rows go into one write transaction: small enough that control actions
/// and the runner's writes get the writer between chunks.
pub const CHUNK_ROWS: usize = 5000;

/// A time as both stores keep it in text (and notifications carry it): RFC 3339, UTC,
/// milliseconds.
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A job about to be created: its name and settings, checked.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: JobKind,
    pub name: String,
    pub filename: String,
    pub concurrency: u32,
    pub columns: Vec<String>,
}

/// What an import settles about a job once its whole form has been read.
#[derive(Debug, Clone)]
pub struct JobSettings {
    pub name: String,
    pub concurrency: u32,
}

/// An item's input as column name → value, in file order. Rows are stored without
/// their empty trailing cells; every column is filled in here.
pub(crate) fn input_map(columns: &[String], stored: &str) -> serde_json::Map<String, serde_json::Value> {
    input_values_map(columns, serde_json::from_str(stored).unwrap_or_default())
}

fn input_values_map(columns: &[String], values: Vec<serde_json::Value>) -> serde_json::Map<String, serde_json::Value> {
    let empty = std::iter::repeat(serde_json::Value::String(String::new()));
    columns.iter().cloned().zip(values.into_iter().chain(empty)).collect()
}

/// Why a job is hidden from every read (migration 0003).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hidden {
    /// Its items are still being inserted, in chunks.
    Importing,
    /// It was deleted; its items are being removed, in batches.
    Deleting,
}

impl Hidden {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Importing => "importing",
            Self::Deleting => "deleting",
        }
    }
}

/// A new item as import produces it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewItem {
    pub line: i64,
    pub name: Option<String>,
    pub website: Option<String>,
    pub domain: Option<String>,
    /// JSON array of the row's values, in the job's column order.
    pub input: String,
    /// Preprocessing only: the import-time cleaning result (JSON) and dedupe key.
    pub normalized: Option<String>,
    pub dedupe_key: Option<String>,
    /// Preprocessing: the import knows no earlier row of the job has this row's dedupe
    /// key, so no earlier row need be looked for. `false` (the default) looks.
    pub new_key: bool,
}

/// A job's input column names, in file order, and for a research job created since
/// migration 0007 its roles: which columns hold its items' name, website and domain,
/// which are then read from the input instead of being stored beside it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobColumns {
    pub names: Vec<String>,
    pub roles: Option<ColumnMap>,
}

impl JobColumns {
    /// Column names alone: items carry their own name, website and domain.
    pub fn names(names: Vec<String>) -> Self {
        Self { names, roles: None }
    }

    /// An item's input keyed by column name (empty trailing cells filled in), and its
    /// name, website and domain: read through the roles, else `stored`.
    pub(crate) fn read(
        &self,
        input: &str,
        stored: ResearchFields,
    ) -> (serde_json::Map<String, serde_json::Value>, ResearchFields) {
        let values: Vec<serde_json::Value> = serde_json::from_str(input).unwrap_or_default();
        let fields = match &self.roles {
            Some(map) => {
                let cells: Vec<&str> = values.iter().map(|v| v.as_str().unwrap_or_default()).collect();
                map.research_fields(&cells)
            }
            None => stored,
        };
        (input_values_map(&self.names, values), fields)
    }
}

/// An item handed to a step.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    pub line: i64,
    pub name: Option<String>,
    pub website: Option<String>,
    pub domain: Option<String>,
    pub input: serde_json::Map<String, serde_json::Value>,
    pub normalized: Option<serde_json::Value>,
    pub duplicate_of: Option<i64>,
}

/// A claimed item as stored. Parsing it into a [`Claimed`] is left to the caller, so
/// it happens off the writer.
#[derive(Debug, Clone)]
pub struct ClaimedRow {
    pub id: i64,
    pub(crate) line: i64,
    pub(crate) name: Option<String>,
    pub(crate) website: Option<String>,
    pub(crate) domain: Option<String>,
    pub(crate) input: String,
    pub(crate) normalized: Option<String>,
    pub(crate) duplicate_of: Option<i64>,
    /// What the item's result must name to be written: on PostgreSQL the number a claim
    /// hands out, so a worker that lost the item writes nothing; 0 on SQLite.
    pub lease: i64,
}

impl ClaimedRow {
    /// The item with its input keyed by the job's column names.
    pub fn into_claimed(self, columns: &JobColumns) -> Claimed {
        let stored = ResearchFields { name: self.name, website: self.website, domain: self.domain };
        let (input, ResearchFields { name, website, domain }) = columns.read(&self.input, stored);
        Claimed {
            id: self.id,
            line: self.line,
            name,
            website,
            domain,
            input,
            normalized: self.normalized.and_then(|s| serde_json::from_str(&s).ok()),
            duplicate_of: self.duplicate_of,
        }
    }
}

/// How an item ended. A result is serialised before it reaches the writer, so the
/// write transaction only copies bytes.
#[derive(Debug, Clone)]
pub enum Finish {
    /// The result as JSON text.
    Completed(String),
    /// The error people read (one line) and, when there is one, the detail as JSON
    /// text (`{"errorDetail": …}`), stored as the failed item's result for the export.
    Failed(String, Option<String>),
}

impl Finish {
    pub fn completed(value: &serde_json::Value) -> Self {
        Self::Completed(value.to_string())
    }

    /// A failure from a step's error text: its first line is what people read, what
    /// follows a line break is the detail (SPEC section 16: the full chain of an
    /// unreachable site's error is kept for the export).
    pub fn failed(text: &str) -> Self {
        let (line, detail) = reason_parts(text);
        Self::Failed(line.to_string(), detail.map(|d| serde_json::json!({ "errorDetail": d }).to_string()))
    }
}

/// A step's error text split as SPEC section 16 shows it: the line people read, and
/// the detail after the first line break (the whole chain of causes), if any.
pub fn reason_parts(text: &str) -> (&str, Option<&str>) {
    match text.split_once('\n') {
        Some((line, detail)) => (line, Some(detail)),
        None => (text, None),
    }
}

/// One item's outcome, to be written.
#[derive(Debug, Clone)]
pub struct Finished {
    pub item_id: i64,
    /// The lease the item was claimed under ([`ClaimedRow::lease`]).
    pub lease: i64,
    pub attempts: u32,
    pub outcome: Finish,
}

/// What the runner re-reads every poll: the flags a person may have set by hand.
#[derive(Debug, Clone, PartialEq)]
pub struct Flags {
    pub status: JobStatus,
    pub paused: bool,
    pub concurrency: u32,
    pub resume_at: Option<DateTime<Utc>>,
}

/// A preprocessing row fit for research: completed, first of its key, valid, and its
/// website reachable. This is the one place that rule lives.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanRow {
    pub id: i64,
    pub company: Option<String>,
    /// Where the liveness check ended up, else the cleaned website.
    pub website: Option<String>,
    pub domain: Option<String>,
}

/// The research job a preprocessing job's clean rows went to (SPEC section 16), while
/// that job is there: a deleted one frees the rows to go again.
#[derive(Debug, Clone, PartialEq)]
pub struct ResearchLink {
    pub id: i64,
    pub name: String,
}

impl ResearchLink {
    /// The refusal of a second send, naming the job the rows went to.
    pub fn refusal(&self) -> AppError {
        AppError::WrongState(format!("these rows were already sent to research: “{}” (job #{})", self.name, self.id))
    }
}

/// One try of a notification: `Ok` with what was done, or `Err` with why it failed
/// and when to try again (`None`: given up).
pub type Settled = Result<String, (String, Option<DateTime<Utc>>)>;

/// A notification being delivered.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub id: i64,
    pub channel: String,
    pub event: String,
    pub kind: JobKind,
    pub job_id: i64,
    /// The JSON body, as it was when the event happened.
    pub payload: String,
    /// Tries before this one.
    pub attempts: u32,
    /// Until when this process holds it.
    pub lease: Option<DateTime<Utc>>,
}

/// A change a control action makes to a job, decided by the service's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Pause,
    Resume,
    Cancel,
    /// A completed job's failed items go back to `pending`; the job runs again.
    /// `premoved` went back already, in batches before this change ([`Store::retry_batch`](super::Store::retry_batch)).
    Retry {
        premoved: i64,
    },
    Archive,
    Unarchive,
    /// A new name and/or concurrency.
    Edit {
        name: Option<String>,
        concurrency: Option<u32>,
    },
    /// When the job pauses and resumes by itself; two `None`s clear the schedule.
    Schedule {
        pause_at: Option<DateTime<Utc>>,
        resume_at: Option<DateTime<Utc>>,
    },
}

impl Change {
    /// How the activity log names it.
    pub fn action(&self) -> EventAction {
        match self {
            Self::Pause => EventAction::Paused,
            Self::Resume => EventAction::Resumed,
            Self::Cancel => EventAction::Cancelled,
            Self::Retry { .. } => EventAction::Retried,
            Self::Archive => EventAction::Archived,
            Self::Unarchive => EventAction::Unarchived,
            Self::Edit { .. } => EventAction::Changed,
            Self::Schedule { .. } => EventAction::Scheduled,
        }
    }

    /// The log entry's detail, given the job before the change and, for a retry, how
    /// many items went back.
    pub fn detail(&self, before: &Job, moved: i64) -> Option<String> {
        match self {
            Self::Retry { premoved } => {
                let moved = premoved + moved;
                Some(format!("{moved} failed item{} back to pending", if moved == 1 { "" } else { "s" }))
            }
            Self::Edit { name, concurrency } => {
                let mut parts = Vec::new();
                if let Some(name) = name.as_ref().filter(|n| **n != before.name) {
                    parts.push(format!("name “{}” → “{name}”", before.name));
                }
                if let Some(c) = concurrency.filter(|c| *c != before.concurrency) {
                    parts.push(format!("concurrency {} → {c}", before.concurrency));
                }
                Some(parts.join(", "))
            }
            Self::Schedule { pause_at, resume_at } => {
                let at = crate::components::format::time_text;
                let parts: Vec<String> = [("pause at", pause_at), ("resume at", resume_at)]
                    .into_iter()
                    .filter_map(|(what, t)| t.as_ref().map(|t| format!("{what} {}", at(t))))
                    .collect();
                Some(if parts.is_empty() { "schedule cleared".into() } else { parts.join(", ") })
            }
            _ => None,
        }
    }
}

/// What the store does to a job a control action names, given the job as it is inside
/// the action's transaction: `Ok(None)` leaves it as it is, an error refuses.
pub type Rule = Box<dyn FnOnce(&Job) -> Result<Option<Change>, AppError> + Send>;

/// What begins the items a turn claims (see [`super::Store::turn`]).
pub trait Starter: Send + 'static {
    /// Begins the claimed items. Returns the results of those that finished at once,
    /// and how many items may be claimed in their place (0: claim no more this turn).
    fn start(&mut self, claimed: Vec<ClaimedRow>) -> (Vec<Finished>, usize);

    /// Finishes at once those of `rows` whose step needs nothing outside the item, and
    /// begins none of the others, which stay `pending`: `rows` were locked, not claimed,
    /// and hold no slot. Returns the results and how many rows were left.
    fn finish_now(&mut self, rows: Vec<ClaimedRow>) -> (Vec<Finished>, usize);
}

/// What a turn leaves: the starter, with what it began, the results of the last
/// round, not stored yet, whether a claim found fewer items than it wanted, and whether
/// the turn stopped on its limits while items were still finishing at once, their
/// results stored (the next turn is then due at once, as for results left unstored).
pub struct Turn<S> {
    pub starter: S,
    pub unstored: Vec<Finished>,
    pub exhausted: bool,
    pub again: bool,
}

/// What a store's part in a cluster tells the runner (see [`super::Store::start_node`]).
#[derive(Clone)]
pub struct NodeHooks {
    /// A job's state may have changed (another process acted on it, or its items came
    /// back from a dead worker): its task re-reads it, or starts.
    pub wake: Arc<dyn Fn(JobKind, i64) + Send + Sync>,
    /// A job whose import was abandoned by a dead importer: its rows are to be removed.
    pub purge: Arc<dyn Fn(JobKind, i64) + Send + Sync>,
}

/// How much of a cluster's part a process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeRole {
    /// A process that runs jobs: heartbeat, leader bid and control listener.
    Runner,
    /// `serve --no-runner`: the heartbeat only, so its imports are known to be alive.
    HeartbeatOnly,
}
