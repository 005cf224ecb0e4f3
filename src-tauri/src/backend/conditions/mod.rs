//! "Pause while on a metered connection" and "pause while on battery": what the OS says
//! ([`Conditions`], published by a platform watcher) and what it means for syncing
//! ([`decide`], pure).
//!
//! - Linux (`linux.rs`): NetworkManager's `Metered` and UPower's `OnBattery` on the system
//!   D-Bus, followed through `PropertiesChanged`; either service may be missing or come later.
//! - Windows (`windows.rs`): the Internet connection profile's cost and
//!   `GetSystemPowerStatus`, read every [`POLL`].
//! - macOS (`macos.rs`): the Network framework's path monitor (expensive or constrained
//!   paths) and IOKit's providing power source, the latter read every [`POLL`].
//!
//! A condition the platform cannot tell is `None` (unknown) and never pauses: a desktop
//! without UPower, a machine without NetworkManager, a system bus that is not there.
//!
//! The headless agent does not watch these (servers are neither metered nor on battery,
//! and the engine must not depend on D-Bus); see README.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "macos")]
mod macos;
#[cfg(windows)]
mod windows;

use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

/// How often Windows and macOS are asked again (they have no cheap change notification
/// we use for these); Linux follows D-Bus signals instead.
#[cfg_attr(target_os = "linux", allow(dead_code))]
pub const POLL: Duration = Duration::from_secs(10);

/// What the machine's situation is; `None`: unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Conditions {
    pub metered: Option<bool>,
    pub on_battery: Option<bool>,
    /// The watcher has asked every source once (answered or not). Until then the engine
    /// waits a moment before starting, so a metered start does not begin with a burst.
    pub read: bool,
    /// How many metered and battery spells have ended so far. Readings coalesce (a watch
    /// channel keeps the latest only), so a spell that ends and begins again between two
    /// looks would otherwise go unseen, and with it the end of the user's override.
    pub ended: Ended,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ended {
    pub metered: u64,
    pub battery: u64,
}

impl Conditions {
    /// What every watcher sets `metered` with, so that [`Ended`] counts.
    pub fn set_metered(&mut self, v: Option<bool>) {
        if self.metered == Some(true) && v != Some(true) {
            self.ended.metered += 1;
        }
        self.metered = v;
    }

    /// What every watcher sets `on_battery` with, so that [`Ended`] counts.
    pub fn set_on_battery(&mut self, v: Option<bool>) {
        if self.on_battery == Some(true) && v != Some(true) {
            self.ended.battery += 1;
        }
        self.on_battery = v;
    }
}

/// Why sync is paused (`AppState.paused_reason`). The user's own pause comes first: only
/// the user can lift it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PausedReason {
    User,
    Metered,
    Battery,
}

/// The user's settings: which conditions pause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PauseWhen {
    pub metered: bool,
    pub battery: bool,
}

/// Conditions the user chose to sync through: "Resume" while paused by a condition
/// overrides it until that condition clears (or the app restarts). Then the next time it
/// sets in, sync pauses again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    /// The spell overridden, by the count of spells that had ended before it.
    metered: Option<u64>,
    battery: Option<u64>,
}

/// Whether sync is paused, and why.
pub fn decide(
    user_paused: bool,
    c: Conditions,
    when: PauseWhen,
    o: Overrides,
) -> Option<PausedReason> {
    if user_paused {
        Some(PausedReason::User)
    } else if when.metered && c.metered == Some(true) && o.metered != Some(c.ended.metered) {
        Some(PausedReason::Metered)
    } else if when.battery && c.on_battery == Some(true) && o.battery != Some(c.ended.battery) {
        Some(PausedReason::Battery)
    } else {
        None
    }
}

impl Overrides {
    /// The user resumed: sync through every condition that pauses right now.
    pub fn resume(&mut self, c: Conditions, when: PauseWhen) {
        if when.metered && c.metered == Some(true) {
            self.metered = Some(c.ended.metered);
        }
        if when.battery && c.on_battery == Some(true) {
            self.battery = Some(c.ended.battery);
        }
    }

    /// A condition that cleared (or became unknown) since ends its override.
    pub fn settle(&mut self, c: Conditions) {
        if c.metered != Some(true) || self.metered.is_some_and(|n| n != c.ended.metered) {
            self.metered = None;
        }
        if c.on_battery != Some(true) || self.battery.is_some_and(|n| n != c.ended.battery) {
            self.battery = None;
        }
    }

    /// The user changed which conditions pause: turning one on (again) is a request to
    /// pause for it now, so its override goes; turning it off makes the override moot.
    pub fn reset_changed(&mut self, before: PauseWhen, after: PauseWhen) {
        if before.metered != after.metered {
            self.metered = None;
        }
        if before.battery != after.battery {
            self.battery = None;
        }
    }
}

/// NetworkManager's `NMMetered`: 1 yes and 3 guess-yes are metered; 0 unknown, 2 no and
/// 4 guess-no are not (an unknown network is not treated as metered: most are not).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub fn nm_metered(v: u32) -> bool {
    matches!(v, 1 | 3)
}

/// Starts the platform watcher: it publishes into `tx` until every receiver is gone.
pub fn start(tx: watch::Sender<Conditions>) {
    tokio::spawn(async move {
        tokio::select! {
            _ = tx.closed() => {}
            _ = platform(&tx) => {}
        }
    });
}

#[cfg(target_os = "linux")]
async fn platform(tx: &watch::Sender<Conditions>) {
    linux::run(tx).await
}

#[cfg(windows)]
async fn platform(tx: &watch::Sender<Conditions>) {
    windows::run(tx).await
}

#[cfg(target_os = "macos")]
async fn platform(tx: &watch::Sender<Conditions>) {
    macos::run(tx).await
}

#[cfg(not(any(target_os = "linux", windows, target_os = "macos")))]
async fn platform(tx: &watch::Sender<Conditions>) {
    tx.send_modify(|c| c.read = true);
}

#[cfg(test)]
mod tests {
    use super::*;

    const ON: PauseWhen = PauseWhen {
        metered: true,
        battery: true,
    };

    fn c(metered: Option<bool>, on_battery: Option<bool>) -> Conditions {
        Conditions {
            metered,
            on_battery,
            read: true,
            ..Default::default()
        }
    }

    #[test]
    fn decision_table() {
        use PausedReason::*;
        let none = Overrides::default();
        let off = PauseWhen::default();
        let cases = [
            // user, metered, battery, settings → reason
            (false, None, None, ON, None),
            (false, Some(false), Some(false), ON, None),
            (false, Some(true), None, ON, Some(Metered)),
            (false, None, Some(true), ON, Some(Battery)),
            (false, Some(true), Some(true), ON, Some(Metered)),
            (true, Some(true), Some(true), ON, Some(User)),
            (true, None, None, off, Some(User)),
            // the settings are off: conditions do nothing
            (false, Some(true), Some(true), off, None),
            (
                false,
                Some(true),
                Some(true),
                PauseWhen {
                    metered: false,
                    battery: true,
                },
                Some(Battery),
            ),
        ];
        for (user, m, b, when, want) in cases {
            assert_eq!(
                decide(user, c(m, b), when, none),
                want,
                "user {user} metered {m:?} battery {b:?} {when:?}"
            );
        }
    }

    #[test]
    fn resume_overrides_until_the_condition_clears() {
        let metered = c(Some(true), Some(false));
        let mut o = Overrides::default();
        assert_eq!(decide(false, metered, ON, o), Some(PausedReason::Metered));
        o.resume(metered, ON);
        assert_eq!(decide(false, metered, ON, o), None);
        // Still metered: the override holds; battery now sets in and pauses.
        let both = c(Some(true), Some(true));
        o.settle(both);
        assert_eq!(decide(false, both, ON, o), Some(PausedReason::Battery));
        // Metered clears, then comes back: it pauses again.
        o.settle(c(Some(false), Some(true)));
        o.settle(metered);
        assert_eq!(decide(false, metered, ON, o), Some(PausedReason::Metered));
        // Unknown counts as cleared.
        o.resume(metered, ON);
        o.settle(c(None, None));
        assert_eq!(decide(false, metered, ON, o), Some(PausedReason::Metered));
        // The user's pause is never overridden by anything but the user.
        o.resume(metered, ON);
        assert_eq!(decide(true, metered, ON, o), Some(PausedReason::User));
        // Turning the setting off and on again pauses again.
        let off = PauseWhen {
            metered: false,
            battery: true,
        };
        o.reset_changed(ON, off);
        o.reset_changed(off, ON);
        assert_eq!(decide(false, metered, ON, o), Some(PausedReason::Metered));
    }

    /// Readings coalesce: a spell that ended and began again between two looks still ends
    /// the override, whether the look settles first or decides first.
    #[test]
    fn a_spell_that_ended_unseen_ends_the_override() {
        let mut now = c(Some(true), Some(false));
        let mut o = Overrides::default();
        o.resume(now, ON);
        assert_eq!(decide(false, now, ON, o), None);
        now.set_metered(Some(false));
        now.set_metered(Some(true));
        assert_eq!(decide(false, now, ON, o), Some(PausedReason::Metered));
        o.settle(now);
        assert_eq!(decide(false, now, ON, o), Some(PausedReason::Metered));
        o.resume(now, ON);
        now.set_on_battery(Some(true));
        now.set_on_battery(None);
        assert_eq!(decide(false, now, ON, o), None);
    }

    #[test]
    fn network_manager_metered_values() {
        let metered: Vec<u32> = (0..=5).filter(|v| nm_metered(*v)).collect();
        assert_eq!(metered, vec![1, 3]);
    }
}
