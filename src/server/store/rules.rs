//! Decisions both stores apply the same way, as pure functions: how a batch of
//! outcomes moves a job's failure streak (the error-burst rule), what a due schedule
//! does to a job, and which logged events become notifications in the outbox, with
//! what body; and the SQL conditions a job filter is made of, the same on both stores.

use chrono::{DateTime, Utc};

use super::types::Finish;
use crate::model::{Archived, EventAction, Job, JobFilter, JobStatus, Phase};

/// How a batch of written outcomes moves a job's count of failures in a row.
#[derive(Default)]
pub struct Streak<'a> {
    /// An item of the batch completed: the count starts again from `trailing`.
    pub reset: bool,
    /// The failures before the first completed item (all of them when none completed),
    /// which add to the count stored before the batch.
    pub leading: i64,
    /// The longest run of failures after the batch's first completed item.
    pub peak: i64,
    /// The failures after the last completed item (all of them when none completed).
    pub trailing: i64,
    /// The error of the last failure.
    pub last_error: Option<&'a str>,
}

impl<'a> Streak<'a> {
    pub fn add(&mut self, outcome: &'a Finish) {
        match outcome {
            Finish::Completed(_) => {
                self.reset = true;
                self.trailing = 0;
            }
            Finish::Failed(e, _) => {
                self.trailing += 1;
                if self.reset {
                    self.peak = self.peak.max(self.trailing);
                } else {
                    self.leading += 1;
                }
                self.last_error = Some(e.as_str());
            }
        }
    }
}

/// What firing a job's due schedule does (both stores apply it): the times that stay
/// set, and each due step in time order.
pub struct SchedulePlan {
    pub keep: (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
    pub steps: Vec<ScheduledStep>,
}

/// One scheduled pause or resume: the pause flag it sets, if it changes the job, and
/// its entry in the activity log.
pub struct ScheduledStep {
    pub set_paused: Option<bool>,
    pub action: EventAction,
    pub detail: String,
}

/// Works out a due schedule from the job's state before (`paused`, and whether that
/// pause is a rate limit's, `limited`). When both times are due, the earlier goes
/// first. A scheduled pause takes over a rate limit's (which would lift by itself); a
/// scheduled resume leaves a rate limit's pause to lift at its time. A step that
/// changes nothing is still logged.
pub fn plan_schedule(
    pause_at: Option<DateTime<Utc>>,
    resume_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    mut paused: bool,
    mut limited: bool,
) -> SchedulePlan {
    let mut due: Vec<(DateTime<Utc>, bool)> = Vec::new();
    due.extend(pause_at.filter(|t| *t <= now).map(|t| (t, true)));
    due.extend(resume_at.filter(|t| *t <= now).map(|t| (t, false)));
    due.sort();
    let keep = |t: Option<DateTime<Utc>>| t.filter(|t| *t > now);
    let mut steps = Vec::new();
    for (when, pause) in due {
        // As every time in the UI reads (SPEC section 16).
        let when = crate::components::format::time_text(&when);
        let acts = if pause { !paused || limited } else { paused && !limited };
        steps.push(if acts {
            (paused, limited) = (pause, false);
            let action = if pause { EventAction::Paused } else { EventAction::Resumed };
            ScheduledStep { set_paused: Some(pause), action, detail: format!("as scheduled for {when}") }
        } else {
            let detail = if pause {
                format!("the pause scheduled for {when} found the job already paused")
            } else if limited {
                format!("the resume scheduled for {when} left the job's rate-limit pause to lift at its own time")
            } else {
                format!("the resume scheduled for {when} found the job already running")
            };
            ScheduledStep { set_paused: None, action: EventAction::Scheduled, detail }
        });
    }
    SchedulePlan { keep: (keep(pause_at), keep(resume_at)), steps }
}

/// The events that are sent out; the rest stay in the activity log only.
pub fn worth_notifying(action: EventAction) -> bool {
    matches!(action, EventAction::Completed | EventAction::Cancelled | EventAction::AutoPaused)
}

/// The notification's name for a logged event. A job that finished with every item
/// failed (and none completed) is `job.failed`; `job.completed` otherwise.
pub fn event_name(action: EventAction, job: &Job) -> Option<&'static str> {
    match action {
        EventAction::Completed if job.completed == 0 && job.failed > 0 => Some("job.failed"),
        EventAction::Completed => Some("job.completed"),
        EventAction::Cancelled => Some("job.cancelled"),
        EventAction::AutoPaused => Some("job.auto_paused"),
        _ => None,
    }
}

/// The body every channel is built from: `{"event", "job", "at"}`.
pub fn payload(event: &str, job: &Job, at: DateTime<Utc>) -> String {
    serde_json::json!({ "event": event, "job": job, "at": at }).to_string()
}

/// The SQL condition (on the job table's own columns) that picks the jobs a filter's
/// status and archive state name; the kind and the name search are bound apart.
/// `none_completed` is the store's condition for "no item of the job completed".
pub fn filter_condition(filter: &JobFilter, none_completed: &str) -> String {
    let mut cond = vec!["hidden IS NULL".to_string()];
    if let Some(phase) = filter.status {
        cond.push(phase_condition(phase, none_completed));
    }
    match filter.archived {
        Archived::Hide => cond.push("archived_at IS NULL".into()),
        Archived::Only => cond.push("archived_at IS NOT NULL".into()),
        Archived::All => {}
    }
    cond.join(" AND ")
}

/// The stored columns a phase is made of ([`Job::phase`]); the same on both stores but
/// for where the completed items are counted (`none_completed`): a completed job of
/// which no item completed reads "failed" (SPEC section 16).
pub fn phase_condition(phase: Phase, none_completed: &str) -> String {
    let (pending, processing) = (JobStatus::Pending.as_str(), JobStatus::Processing.as_str());
    let (completed, failed) = (JobStatus::Completed.as_str(), JobStatus::Failed.as_str());
    match phase {
        Phase::Pending => format!("status = '{pending}' AND paused = 0"),
        Phase::Processing => format!("status = '{processing}' AND paused = 0"),
        Phase::Paused => format!("status IN ('{pending}', '{processing}') AND paused = 1"),
        Phase::Completed => format!("status = '{completed}' AND NOT (total > 0 AND {none_completed})"),
        Phase::Failed => format!(
            "((status = '{failed}' AND cancelled_at IS NULL) OR (status = '{completed}' AND total > 0 AND {none_completed}))"
        ),
        Phase::Cancelled => format!("status = '{failed}' AND cancelled_at IS NOT NULL"),
    }
}

/// A name search as a LIKE pattern: `%` and `_` match themselves (escaped with `\`).
pub fn like_pattern(search: &str) -> String {
    let mut p = String::with_capacity(search.len() + 2);
    p.push('%');
    for c in search.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// Whether a runner's turn claims again in the transaction it is in, after round
/// `round` of at most `max_rounds`: only while its claims found all they asked for and
/// some of them finished at once (their places are free again), and while the store
/// has nothing better to do with its transaction (`store_allows`: on SQLite no other
/// write waits for the writer, on PostgreSQL the turn is still within its time).
pub fn another_round(
    round: usize,
    max_rounds: usize,
    exhausted: bool,
    finished_at_once: usize,
    store_allows: bool,
) -> bool {
    round < max_rounds && !exhausted && finished_at_once > 0 && store_allows
}

#[cfg(test)]
mod tests {
    use super::another_round;

    #[test]
    fn a_turn_claims_again_only_while_every_condition_holds() {
        assert!(another_round(1, 4, false, 8, true));
        assert!(!another_round(4, 4, false, 8, true), "the last round");
        assert!(!another_round(1, 4, true, 8, true), "nothing left to claim");
        assert!(!another_round(1, 4, false, 0, true), "nothing finished at once: no slot is free");
        assert!(!another_round(1, 4, false, 8, false), "the store needs its transaction back");
    }
}
