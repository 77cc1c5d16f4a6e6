//! Decisions both stores apply the same way, as pure functions: how a batch of
//! outcomes moves a job's failure streak (the error-burst rule), what a due schedule
//! does to a job, and which logged events become notifications in the outbox, with
//! what body.

use chrono::{DateTime, Utc};

use super::ts;
use super::types::Finish;
use crate::model::{EventAction, Job};

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
            Finish::Failed(e) => {
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
        let when = ts(when);
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
