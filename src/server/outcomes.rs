//! A preprocessing job's counts by outcome (SPEC section 16), kept for a moment.
//! Counting reads the outcome index: tens of milliseconds for a job of a million rows,
//! which every status read of a running job would otherwise pay. A job whose
//! `updatedAt` has not moved has the counts it had; a running job's are at most
//! [`FRESH`] old; a finished job's never change until it runs again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::model::{Job, JobKind, OutcomeCounts};

/// How long a running job's counts are shown before they are counted again.
pub const FRESH: Duration = Duration::from_secs(5);

/// Jobs whose counts are kept; past this the oldest half is let go.
const MAX_JOBS: usize = 1024;

struct Entry {
    counted: Instant,
    updated_at: DateTime<Utc>,
    counts: OutcomeCounts,
}

/// Outcome counts by preprocessing job id.
#[derive(Default)]
pub struct OutcomeCache {
    jobs: Mutex<HashMap<i64, Entry>>,
}

impl OutcomeCache {
    /// The counts kept for `job`, if they still hold.
    pub fn get(&self, job: &Job) -> Option<OutcomeCounts> {
        debug_assert_eq!(job.kind, JobKind::Preprocess);
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        let entry = jobs.get(&job.id)?;
        let unchanged = entry.updated_at == job.updated_at;
        (unchanged || (!job.is_terminal() && entry.counted.elapsed() < FRESH)).then_some(entry.counts)
    }

    /// Keeps `counts`, counted just now for `job` as it was read before counting.
    pub fn put(&self, job: &Job, counts: OutcomeCounts) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if jobs.len() >= MAX_JOBS && !jobs.contains_key(&job.id) {
            let mut ages: Vec<Instant> = jobs.values().map(|e| e.counted).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            jobs.retain(|_, e| e.counted > cut);
        }
        jobs.insert(job.id, Entry { counted: Instant::now(), updated_at: job.updated_at, counts });
    }

    /// Forgets a job (deleted, or sent back to work).
    pub fn forget(&self, id: i64) {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::JobStatus;

    fn job(id: i64, status: JobStatus, updated_secs: i64) -> Job {
        let at = DateTime::from_timestamp(1_800_000_000 + updated_secs, 0).unwrap();
        serde_json::from_value(serde_json::json!({
            "id": id, "kind": "preprocess", "name": "n", "filename": "f.csv", "status": status.as_str(),
            "paused": false, "cancelled": false, "concurrency": 2, "total": 4, "pending": 0, "processing": 0,
            "completed": 4, "failed": 0, "createdAt": at, "startedAt": null, "updatedAt": at,
            "completedAt": null, "cancelledAt": null, "pausedReason": null, "resumeAt": null,
            "archivedAt": null, "scheduledPauseAt": null, "scheduledResumeAt": null,
        }))
        .unwrap()
    }

    #[test]
    fn counts_hold_while_the_job_is_unchanged_and_briefly_while_it_runs() {
        let cache = OutcomeCache::default();
        let counts = OutcomeCounts { clean: 3, duplicate: 1, invalid: 0, unreachable: 0 };
        let done = job(1, JobStatus::Completed, 0);
        assert_eq!(cache.get(&done), None);
        cache.put(&done, counts);
        assert_eq!(cache.get(&done), Some(counts));
        // The same job changed since (a retry made it run again and finish): counted anew.
        assert_eq!(cache.get(&job(1, JobStatus::Completed, 9)), None);
        // A running job that moved on is shown what was counted a moment ago.
        let running = job(2, JobStatus::Processing, 0);
        cache.put(&running, counts);
        assert_eq!(cache.get(&job(2, JobStatus::Processing, 1)), Some(counts));
        cache.forget(2);
        assert_eq!(cache.get(&running), None);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = OutcomeCache::default();
        for id in 0..(3 * MAX_JOBS as i64) {
            cache.put(&job(id, JobStatus::Completed, 0), OutcomeCounts::default());
        }
        assert!(cache.jobs.lock().unwrap().len() <= MAX_JOBS);
    }
}
