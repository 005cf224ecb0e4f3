//! Pausing: the user's own pause (persisted) and the conditions the user chose to pause for
//! (metered connection, battery; see [`super::conditions`]), applied to the running engine.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::conditions::{self, Conditions, PausedReason};
use super::{AppError, Backend, FIRST_READING, lock};

impl Backend {
    /// Whether sync is paused, and why: the user's pause, then the conditions the settings
    /// name (unless the user resumed through them). Nothing before setup.
    pub fn paused_reason(&self) -> Option<PausedReason> {
        self.paused_reason_in(*self.conditions.borrow())
    }

    /// [`Backend::paused_reason`] were the conditions `c`.
    fn paused_reason_in(&self, c: Conditions) -> Option<PausedReason> {
        let s = self.settings();
        if !s.setup_complete {
            return None;
        }
        conditions::decide(s.paused, c, s.pause_when(), *lock(&self.overrides))
    }

    /// Tells the running engine what [`Backend::paused_reason`] says, and the UI and tray.
    pub(super) async fn apply_pause(&self) -> Result<(), AppError> {
        // Decided under the engine's lock: of two changes racing (a condition and the
        // user's click), the engine ends with the decision made last.
        let applied = {
            let running = self.running.lock().await;
            let paused = self.paused_reason().is_some();
            match running.as_ref() {
                Some(r) if paused => r.engine.pause().await,
                Some(r) => r.engine.resume().await,
                None => Ok(()),
            }
        };
        self.emit_state().await;
        applied.map_err(Into::into)
    }

    /// Starts the conditions watcher once, if the settings pause for a condition (most
    /// users pause for none, and the watcher holds D-Bus connections and wakes on every
    /// network and power change); every change it reports is applied at once. Then waits,
    /// bounded, for its first reading, so a start on a metered connection does not begin
    /// with a burst: a silent watcher only delays, never blocks.
    pub(super) async fn watch_conditions_if_needed(self: &Arc<Self>) {
        let when = self.settings().pause_when();
        if !(when.metered || when.battery) {
            return;
        }
        self.watch_conditions();
        let mut rx = self.conditions.subscribe();
        let _ = tokio::time::timeout(FIRST_READING, rx.wait_for(|c| c.read)).await;
    }

    fn watch_conditions(self: &Arc<Self>) {
        if self.watching.swap(true, Ordering::SeqCst) {
            return;
        }
        // Subscribed before the watcher starts: it stops when no one listens.
        let mut rx = self.conditions.subscribe();
        let mut before = *rx.borrow_and_update();
        conditions::start(self.conditions.clone());
        let weak = Arc::downgrade(self);
        let stop = self.stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    changed = rx.changed() => if changed.is_err() { return },
                }
                let c = *rx.borrow_and_update();
                let Some(b) = weak.upgrade() else { return };
                let was = b.paused_reason_in(before);
                lock(&b.overrides).settle(c);
                before = c;
                // Most readings change nothing that matters (the first one, a condition
                // the settings do not pause for): no engine call, no state event.
                if b.paused_reason() == was {
                    continue;
                }
                if let Err(e) = b.apply_pause().await {
                    tracing::warn!(error = %e, "could not pause or resume for a condition");
                }
            }
        });
    }

    /// Pauses or resumes; the user's pause is persisted at once so a crash or restart keeps
    /// it. Resuming while a condition pauses (metered, battery) syncs through it until it
    /// clears: see [`conditions::Overrides`].
    pub async fn set_paused(&self, paused: bool) -> Result<(), AppError> {
        let when = {
            let mut s = lock(&self.settings);
            s.paused = paused;
            s.save(&self.paths.config_dir)?;
            s.pause_when()
        };
        if !paused {
            let c = *self.conditions.borrow();
            lock(&self.overrides).resume(c, when);
        }
        self.apply_pause().await
    }

    /// The tray's Pause/Resume: the opposite of what is in force now.
    pub async fn toggle_paused(&self) -> Result<(), AppError> {
        self.set_paused(self.paused_reason().is_none()).await
    }
}
