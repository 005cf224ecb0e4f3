//! Pausing: the user's own pause (persisted) and the conditions the user chose to pause for
//! (metered connection, battery; see [`super::conditions`]), applied to the running engine.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::conditions::{self, PausedReason};
use super::{AppError, Backend, lock};

impl Backend {
    /// Whether sync is paused, and why: the user's pause, then the conditions the settings
    /// name (unless the user resumed through them). Nothing before setup.
    pub fn paused_reason(&self) -> Option<PausedReason> {
        let s = self.settings();
        if !s.setup_complete {
            return None;
        }
        let c = *self.conditions.borrow();
        conditions::decide(s.paused, c, s.pause_when(), *lock(&self.overrides))
    }

    /// Tells the running engine what [`Backend::paused_reason`] says, and the UI and tray.
    pub(super) async fn apply_pause(&self) -> Result<(), AppError> {
        let paused = self.paused_reason().is_some();
        let applied = match self.running.lock().await.as_ref() {
            Some(r) if paused => r.engine.pause().await,
            Some(r) => r.engine.resume().await,
            None => Ok(()),
        };
        self.emit_state().await;
        applied.map_err(Into::into)
    }

    /// Starts the conditions watcher once; every change it reports is applied at once.
    pub(super) fn watch_conditions(self: &Arc<Self>) {
        if self.watching.swap(true, Ordering::SeqCst) {
            return;
        }
        // Subscribed before the watcher starts: it stops when no one listens.
        let mut rx = self.conditions.subscribe();
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
                lock(&b.overrides).settle(c);
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
