//! Keeping a page fresh without reloading it: a 3-second refresh on the client that
//! stops when the job is over and holds while the tab is hidden.

use std::future::Future;

use leptos::prelude::*;

use crate::api::get_job;
use crate::components::browser_notify::announce;
use crate::components::format::error_text;
use crate::model::Job;

/// How often a hidden page asks, only when browser notifications are on.
#[cfg(feature = "hydrate")]
const HIDDEN_REFRESH_MS: u32 = 15_000;

/// How often a live page asks the server for news.
pub const REFRESH_MS: u32 = 3_000;

/// One job as a page shows it: server-rendered first, then updated in place by the
/// refresh loop and by the answers to the person's own actions.
///
/// Views read `job` (a signal), never a resource, so a refresh changes the text that
/// changed and nothing else: no fallback flashes, no open dialog is re-created.
#[derive(Clone, Copy)]
pub struct LiveJob {
    /// The latest state of the job.
    pub job: RwSignal<Job>,
    /// Why the last refresh failed, if it did; the page keeps showing the last data.
    pub refresh_error: RwSignal<Option<String>>,
    /// Bumped whenever the job changes (a refresh found news, an action answered), so
    /// lists on the page refetch too.
    pub tick: RwSignal<u64>,
    /// Bumped by every action, so a refresh that was already on its way when the
    /// action landed cannot put the older state back on screen.
    generation: RwSignal<u64>,
}

impl LiveJob {
    /// Starts from the server-rendered job and, on the client, refreshes it every
    /// [`REFRESH_MS`] while it is not terminal.
    pub fn new(initial: Job) -> Self {
        let live = Self::fixed(initial);
        let active = Signal::derive(move || !live.job.with(Job::is_terminal));
        refresh_while(active, move || live.refresh());
        live
    }

    /// A job without a refresh loop of its own: a dashboard row, which the list's
    /// refresh keeps fresh through [`LiveJob::show`].
    pub fn fixed(initial: Job) -> Self {
        Self {
            job: RwSignal::new(initial),
            refresh_error: RwSignal::new(None),
            tick: RwSignal::new(0),
            generation: RwSignal::new(0),
        }
    }

    /// Newer data from elsewhere (the list's refresh), shown if it differs.
    pub fn show(&self, job: Job) {
        if self.job.try_with_untracked(|old| *old != job) == Some(true) {
            self.job.with_untracked(|old| announce(old, &job));
            self.job.set(job);
            self.tick.update(|t| *t += 1);
        }
    }

    /// The state an action returned: shown at once, and it wins over any refresh
    /// still in flight.
    pub fn apply(&self, job: Job) {
        self.generation.update(|g| *g += 1);
        self.job.set(job);
        self.refresh_error.set(None);
        self.tick.update(|t| *t += 1);
    }

    /// Fetches the job once and shows it unless an action landed meanwhile.
    pub async fn refresh(self) {
        let Some((kind, id)) = self.job.try_with_untracked(|j| (j.kind, j.id)) else {
            return;
        };
        let before = self.generation.get_untracked();
        let answer = get_job(kind, id).await;
        // The page may be gone by now, or an action may have overtaken this answer.
        if self.generation.try_get_untracked() != Some(before) {
            return;
        }
        match answer {
            Ok(job) => {
                // Every item that starts or ends changes the job's counts, so an
                // unchanged job means unchanged lists: nothing to redraw or refetch.
                if self.job.with_untracked(|old| *old != job) {
                    self.job.with_untracked(|old| announce(old, &job));
                    self.job.set(job);
                    self.tick.update(|t| *t += 1);
                }
                self.refresh_error.set(None);
            }
            Err(e) => self.refresh_error.set(Some(error_text(&e))),
        }
    }
}

/// Runs `refresh` every [`REFRESH_MS`] while `active` holds, in the browser only.
///
/// It holds while the tab is hidden and refreshes at once when the tab is shown again;
/// one refresh finishes before the next starts; the loop ends when `active` turns false
/// or the page that started it goes away.
pub fn refresh_while<F, Fut>(active: Signal<bool>, refresh: F)
where
    F: Fn() -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    #[cfg(feature = "hydrate")]
    {
        use std::rc::Rc;
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;

        // A memo, so a refresh that leaves `active` unchanged does not restart the loop.
        let active = Memo::new(move |_| active.get());
        let refresh = Rc::new(refresh);
        Effect::new(move |_| {
            if !active.get() {
                return;
            }
            // Cleared when this effect re-runs or its owner is disposed; the loop
            // started below checks it after every wait.
            let running = Arc::new(AtomicBool::new(true));
            let flag = running.clone();
            on_cleanup(move || flag.store(false, Ordering::Relaxed));
            let refresh = refresh.clone();
            leptos::task::spawn_local(async move {
                // Short ticks rather than one 3-second timer: the loop notices a tab
                // coming back into view within a tick, with no event listener to
                // register and remove.
                const TICK_MS: u32 = 250;
                let mut waited = 0;
                let mut hidden_waited = 0;
                let mut was_hidden = false;
                loop {
                    gloo_timers::future::TimeoutFuture::new(TICK_MS).await;
                    if !running.load(Ordering::Relaxed) {
                        break;
                    }
                    if tab_hidden() {
                        was_hidden = true;
                        // A person who asked for browser notifications gets them while
                        // the tab is in the background too: a slower refresh then.
                        hidden_waited += TICK_MS;
                        if hidden_waited >= HIDDEN_REFRESH_MS && crate::components::browser_notify::enabled() {
                            hidden_waited = 0;
                            refresh().await;
                        }
                        continue;
                    }
                    hidden_waited = 0;
                    waited += TICK_MS;
                    if was_hidden || waited >= REFRESH_MS {
                        was_hidden = false;
                        waited = 0;
                        refresh().await;
                    }
                }
            });
        });
    }
    #[cfg(not(feature = "hydrate"))]
    {
        // The server renders one snapshot; there is nothing to refresh.
        let _ = (active, refresh);
    }
}

#[cfg(feature = "hydrate")]
fn tab_hidden() -> bool {
    document().visibility_state() == web_sys::VisibilityState::Hidden
}
