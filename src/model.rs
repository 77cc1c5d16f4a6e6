//! Types both the server and the browser use: jobs, items, their states.
//! The SQL spellings of every state live here, in `as_str`, and nowhere else.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// An unknown state or kind name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown value `{0}`")]
pub struct UnknownValue(pub String);

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $(#[serde(rename = $text)] $variant),+ }

        impl $name {
            /// The spelling used in SQL, JSON and URLs.
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s { $($text => Ok(Self::$variant),)+ other => Err(UnknownValue(other.to_string())) }
            }
        }
    };
}

string_enum!(
    /// The two kinds of job; they share one engine and differ only in the per-item step.
    JobKind { Research => "research", Preprocess => "preprocess" }
);

string_enum!(
    /// A job's stored status. A paused job stays `Processing` with `paused = 1`;
    /// a cancelled one is `Failed` with `cancelled_at` set.
    JobStatus { Pending => "pending", Processing => "processing", Completed => "completed", Failed => "failed" }
);

string_enum!(
    /// An item's status.
    ItemStatus { Pending => "pending", Processing => "processing", Completed => "completed", Failed => "failed" }
);

impl JobStatus {
    /// Completed and failed (which includes cancelled) jobs never run again.
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }
}

impl JobKind {
    /// Both kinds, in the order lists show them.
    pub const ALL: [JobKind; 2] = [JobKind::Research, JobKind::Preprocess];

    /// The tables of this kind's jobs and items (SPEC section 1), in both stores.
    #[cfg(feature = "ssr")]
    pub const fn tables(self) -> (&'static str, &'static str) {
        match self {
            Self::Research => ("processing_jobs", "accounts"),
            Self::Preprocess => ("preprocessing_jobs", "preprocessing_results"),
        }
    }

    /// The page that shows one job of this kind.
    pub fn page_url(self, id: i64) -> String {
        match self {
            Self::Research => format!("/processing/{id}"),
            Self::Preprocess => format!("/preprocess/progress/{id}"),
        }
    }

    /// The REST root of this kind (SPEC section 4).
    pub const fn rest_root(self) -> &'static str {
        match self {
            Self::Research => "/api/process",
            Self::Preprocess => "/api/preprocess/jobs",
        }
    }

    /// What users call one job of this kind.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Research => "Full research",
            Self::Preprocess => "Preprocessing",
        }
    }
}

/// A job as the API and the UI see it (SPEC section 4, camelCase on the wire).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub id: i64,
    pub kind: JobKind,
    pub name: String,
    pub filename: String,
    pub status: JobStatus,
    pub paused: bool,
    pub cancelled: bool,
    pub concurrency: u32,
    pub total: i64,
    pub pending: i64,
    pub processing: i64,
    pub completed: i64,
    pub failed: i64,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub paused_reason: Option<String>,
    pub resume_at: Option<DateTime<Utc>>,
    /// Set while the job is archived (SPEC section 8): left out of lists unless asked.
    pub archived_at: Option<DateTime<Utc>>,
    pub scheduled_pause_at: Option<DateTime<Utc>>,
    pub scheduled_resume_at: Option<DateTime<Utc>>,
    /// Accounts whose request waits for a site that is busy (its per-host limit) or
    /// asked to wait (SPEC section 12), in the process that answers.
    #[serde(default)]
    pub waiting_on_hosts: i64,
    /// A preprocessing job's rows by outcome, among those finished (SPEC section 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcomes: Option<OutcomeCounts>,
    /// The full research job a preprocessing job's clean rows were sent to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub research_job_id: Option<i64>,
}

string_enum!(
    /// What preprocessing found of one row (SPEC section 16), first that holds: a row
    /// that is invalid, else a duplicate of an earlier one, else one whose site did
    /// not answer, else clean. The filter `outcome` of a preprocessing job's results.
    Outcome { Clean => "clean", Duplicate => "duplicate", Invalid => "invalid", Unreachable => "unreachable" }
);

impl Outcome {
    pub const ALL: [Outcome; 4] = [Self::Clean, Self::Duplicate, Self::Invalid, Self::Unreachable];

    pub const fn label(self) -> &'static str {
        match self {
            Self::Clean => "Clean",
            Self::Duplicate => "Duplicate",
            Self::Invalid => "Invalid",
            Self::Unreachable => "Unreachable",
        }
    }
}

/// How many of a preprocessing job's finished rows had each outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeCounts {
    pub clean: i64,
    pub duplicate: i64,
    pub invalid: i64,
    pub unreachable: i64,
}

impl OutcomeCounts {
    pub fn of(&self, outcome: Outcome) -> i64 {
        match outcome {
            Outcome::Clean => self.clean,
            Outcome::Duplicate => self.duplicate,
            Outcome::Invalid => self.invalid,
            Outcome::Unreachable => self.unreachable,
        }
    }

    pub fn add(&mut self, outcome: Outcome, n: i64) {
        match outcome {
            Outcome::Clean => self.clean += n,
            Outcome::Duplicate => self.duplicate += n,
            Outcome::Invalid => self.invalid += n,
            Outcome::Unreachable => self.unreachable += n,
        }
    }
}

string_enum!(
    /// What a person reads on a badge or banner: the stored status and flags combined.
    /// Also the `status` of the dashboard's and the bulk action's filter.
    Phase {
        Pending => "pending",
        Processing => "processing",
        Paused => "paused",
        Completed => "completed",
        Failed => "failed",
        Cancelled => "cancelled",
    }
);

impl Phase {
    pub const ALL: [Phase; 6] =
        [Self::Pending, Self::Processing, Self::Paused, Self::Completed, Self::Failed, Self::Cancelled];

    pub const fn label(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Processing => "Processing",
            Self::Paused => "Paused",
            Self::Completed => "Completed",
            Self::Failed => "Failed",
            Self::Cancelled => "Cancelled",
        }
    }

    /// CSS modifier; the colour always comes with the label and an icon.
    pub const fn css(self) -> &'static str {
        match self {
            Self::Pending | Self::Processing => "processing",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Failed | Self::Cancelled => "failed",
        }
    }

    pub const fn icon(self) -> &'static str {
        match self {
            Self::Pending => "◷",
            Self::Processing => "▶",
            Self::Paused => "⏸",
            Self::Completed => "✔",
            Self::Failed => "✖",
            Self::Cancelled => "⊘",
        }
    }
}

impl Job {
    /// How many of the job's items have `status` (`None`: all of them), from its counters.
    pub fn count_of(&self, status: Option<ItemStatus>) -> i64 {
        match status {
            None => self.total,
            Some(ItemStatus::Pending) => self.pending,
            Some(ItemStatus::Processing) => self.processing,
            Some(ItemStatus::Completed) => self.completed,
            Some(ItemStatus::Failed) => self.failed,
        }
    }

    /// SPEC section 16: a job that finished with every item failed reads "Failed"
    /// though its `status` is `completed` (section 2).
    pub fn phase(&self) -> Phase {
        match self.status {
            JobStatus::Completed if self.total > 0 && self.completed == 0 => Phase::Failed,
            JobStatus::Completed => Phase::Completed,
            JobStatus::Failed if self.cancelled => Phase::Cancelled,
            JobStatus::Failed => Phase::Failed,
            _ if self.paused => Phase::Paused,
            JobStatus::Pending => Phase::Pending,
            JobStatus::Processing => Phase::Processing,
        }
    }

    pub fn is_terminal(&self) -> bool {
        self.status.is_terminal()
    }

    /// Whether `action` would change this job (SPEC section 2's table and section 8):
    /// the bulk bar offers only what applies to the jobs chosen.
    pub fn applies(&self, action: JobAction) -> bool {
        let live = !self.is_terminal();
        match action {
            JobAction::Pause => live && !self.paused,
            JobAction::Resume => live && self.paused,
            JobAction::Cancel => live,
            JobAction::Retry => self.status == JobStatus::Completed && self.failed > 0,
            JobAction::Archive => !live && self.archived_at.is_none(),
            JobAction::Unarchive => self.archived_at.is_some(),
            JobAction::Delete => !live,
        }
    }

    /// Items finished (completed or failed), for the progress bar.
    pub fn done(&self) -> i64 {
        self.completed + self.failed
    }
}

/// One item (an account or a preprocessing row) with its input and result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    pub id: i64,
    /// Line of the uploaded file the row started on (the header is line 1).
    pub line: i64,
    pub status: ItemStatus,
    pub attempts: i64,
    pub error: Option<String>,
    pub name: Option<String>,
    pub website: Option<String>,
    pub domain: Option<String>,
    /// The input row, column name → value, in file order.
    pub input: serde_json::Map<String, serde_json::Value>,
    pub result: Option<serde_json::Value>,
    pub duplicate_of: Option<i64>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A page of items.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemPage {
    pub items: Vec<Item>,
    /// Items matching the filter, over all pages.
    pub total: i64,
    pub offset: i64,
    pub limit: i64,
}

/// A page of the dashboard's job list: both kinds, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobsPage {
    pub jobs: Vec<Job>,
    /// Jobs of both kinds, over all pages.
    pub total: i64,
    pub offset: i64,
    pub limit: i64,
}

impl JobsPage {
    /// The page at `offset` of `jobs` (the newest of each kind) merged newest first.
    /// Creation times are distinct over both kinds, so the order is one.
    pub fn newest_first(mut jobs: Vec<Job>, total: i64, offset: i64, limit: i64) -> Self {
        jobs.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        let jobs = jobs.into_iter().skip(offset.max(0) as usize).take(limit.max(0) as usize).collect();
        Self { jobs, total, offset, limit }
    }
}

/// Jobs per dashboard page.
pub const JOBS_PAGE: i64 = 50;

/// The largest page the API hands out.
pub const MAX_PAGE: i64 = 500;
/// `GET /api/process` and `GET /api/preprocess/jobs`: jobs per answer unless `limit`
/// says otherwise, and the most one answer holds (SPEC section 11).
pub const JOB_LIST_LIMIT: i64 = 200;
pub const MAX_JOB_LIST_LIMIT: i64 = 1000;
/// The furthest a list of jobs pages by offset: each page reads the newest
/// `offset + limit` jobs of a kind, so the offset is what bounds that read.
pub const MAX_JOBS_OFFSET: i64 = 100_000;
/// The concurrency bounds of SPEC section 2.
pub const MIN_CONCURRENCY: u32 = 1;
pub const MAX_CONCURRENCY: u32 = 64;
/// The longest job name, in characters (SPEC section 9).
pub const MAX_NAME_CHARS: usize = 200;

string_enum!(
    /// A control action a person can take on a job, one at a time or in bulk.
    JobAction {
        Pause => "pause",
        Resume => "resume",
        Cancel => "cancel",
        Delete => "delete",
        Archive => "archive",
        Unarchive => "unarchive",
        Retry => "retry",
    }
);

impl JobAction {
    pub const fn label(self) -> &'static str {
        match self {
            Self::Pause => "Pause",
            Self::Resume => "Resume",
            Self::Cancel => "Cancel",
            Self::Delete => "Delete Job",
            Self::Archive => "Archive",
            Self::Unarchive => "Restore",
            Self::Retry => "Retry failed items",
        }
    }
}

/// Which jobs a list shows by their archive state (`?archived=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Archived {
    /// Only jobs that are not archived (the default).
    #[default]
    Hide,
    /// Only archived jobs (`true`).
    Only,
    /// Both (`all`).
    All,
}

impl FromStr for Archived {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" | "false" | "hide" => Ok(Self::Hide),
            "true" | "only" => Ok(Self::Only),
            "all" => Ok(Self::All),
            other => Err(UnknownValue(other.to_string())),
        }
    }
}

impl Archived {
    /// The spelling in a URL, `None` for the default.
    pub const fn query_value(self) -> Option<&'static str> {
        match self {
            Self::Hide => None,
            Self::Only => Some("true"),
            Self::All => Some("all"),
        }
    }
}

/// Which jobs a list or a bulk action takes: every field narrows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobFilter {
    #[serde(default)]
    pub kind: Option<JobKind>,
    #[serde(default)]
    pub status: Option<Phase>,
    #[serde(default)]
    pub archived: Archived,
    /// Part of the job's name, any case.
    #[serde(default)]
    pub search: Option<String>,
}

impl JobFilter {
    /// The kinds of job it takes.
    pub fn kinds(&self) -> Vec<JobKind> {
        match self.kind {
            Some(kind) => vec![kind],
            None => JobKind::ALL.to_vec(),
        }
    }
}

/// The longest name search a filter takes, in characters.
pub const MAX_SEARCH_CHARS: usize = 200;

string_enum!(
    /// Who or what did something to a job (SPEC section 8, activity log).
    Source {
        Ui => "ui",
        Api => "api",
        Schedule => "schedule",
        RateLimit => "rate-limit",
        ErrorBurst => "error-burst",
        System => "system",
    }
);

string_enum!(
    /// What happened to a job, as its activity log names it.
    EventAction {
        Created => "created",
        Paused => "paused",
        Resumed => "resumed",
        Cancelled => "cancelled",
        Completed => "completed",
        Deleted => "deleted",
        Archived => "archived",
        Unarchived => "unarchived",
        Retried => "retried",
        Changed => "changed",
        Scheduled => "scheduled",
        AutoPaused => "auto-paused",
        AutoResumed => "auto-resumed",
        Notified => "notified",
        NotifyFailed => "notify-failed",
    }
);

/// One entry of a job's activity log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobEvent {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub action: EventAction,
    pub source: Source,
    pub detail: Option<String>,
}

/// Events per page of the activity log.
pub const EVENTS_PAGE: i64 = 50;

/// What a bulk action did to one job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkResult {
    pub kind: JobKind,
    pub id: i64,
    /// The job's name, when the job is there to name (SPEC section 16).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

/// The answer to a bulk action: one result per job, in the order taken.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkOutcome {
    pub results: Vec<BulkResult>,
}

/// Which job a bulk action names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRef {
    pub kind: JobKind,
    pub id: i64,
}
