//! The store's hybrid logical clock: the stamps that order uploads, deletions and restores
//! of one hash across devices (last writer wins, docs/protocol.md "5. Deletion").
//!
//! A stamp is `milliseconds since the Unix epoch << 16 | counter`. It follows the wall clock
//! while that moves forward, never goes backwards, and never repeats on this store; every
//! stamp that arrives from a peer moves it forward too, so a change made here after we saw
//! a peer's change is always ordered after it, however wrong either wall clock is.

use std::sync::atomic::{AtomicU64, Ordering};

/// The largest stamp a store takes: stamps live in SQLite's signed 64-bit integers, and one
/// beyond would be stored as another value (and re-applied, and re-sent, forever).
pub const MAX_STAMP: u64 = i64::MAX as u64;

/// Bits of the logical counter below the milliseconds.
const COUNTER_BITS: u32 = 16;

/// A stamp further ahead of our wall clock than this is not taken over by [`Clock::observe`]:
/// one peer with a clock years ahead must not drag every later change here into its future.
/// (It still wins where it is compared; it just does not move our clock. A change made here
/// to the very hash it stamps still outranks it: see [`Clock::after`].)
const MAX_AHEAD_MS: u64 = 24 * 3600 * 1000;

#[derive(Debug, Default)]
pub struct Clock {
    last: AtomicU64,
}

impl Clock {
    /// A clock that has already issued or seen `last`.
    pub fn starting_at(last: u64) -> Self {
        Self {
            last: AtomicU64::new(last),
        }
    }

    /// A new stamp, later than every stamp issued or observed before.
    pub fn now(&self) -> u64 {
        self.next(wall_ms())
    }

    /// A new stamp for a change made here to a hash whose current state has stamp `floor`:
    /// [`Clock::now`], or `floor + 1` where `floor` is further ahead than the clock follows
    /// (a peer's clock days ahead). A user's deletion, restore or upload here must outrank
    /// the state it changes, or it would be undone by the next sync; the clock itself is
    /// not moved to `floor`, so other hashes' stamps stay near the wall clock.
    pub fn after(&self, floor: u64) -> u64 {
        self.after_at(floor, wall_ms())
    }

    fn after_at(&self, floor: u64, wall_ms: u64) -> u64 {
        self.next(wall_ms).max(floor.saturating_add(1))
    }

    fn next(&self, wall_ms: u64) -> u64 {
        let physical = wall_ms << COUNTER_BITS;
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let stamp = physical.max(last.saturating_add(1));
            match self
                .last
                .compare_exchange_weak(last, stamp, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return stamp,
                Err(current) => last = current,
            }
        }
    }

    /// Takes a stamp seen from a peer into account (unless it is absurdly far ahead).
    pub fn observe(&self, stamp: u64) {
        self.observe_at(stamp, wall_ms());
    }

    fn observe_at(&self, stamp: u64, wall_ms: u64) {
        if stamp >> COUNTER_BITS > wall_ms.saturating_add(MAX_AHEAD_MS) {
            return;
        }
        self.last.fetch_max(stamp, Ordering::Relaxed);
    }
}

/// Milliseconds since the Unix epoch of a stamp (for people: "deleted at").
pub fn stamp_ms(stamp: u64) -> u64 {
    stamp >> COUNTER_BITS
}

/// The first stamp of a millisecond.
pub fn stamp_of_ms(ms: u64) -> u64 {
    ms.saturating_mul(1 << COUNTER_BITS)
}

pub fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_increase_even_when_the_wall_clock_stands_or_goes_back() {
        let clock = Clock::default();
        let a = clock.next(1_000);
        let b = clock.next(1_000);
        let c = clock.next(900);
        assert!(a < b && b < c);
        assert_eq!(stamp_ms(a), 1_000);
        assert_eq!(clock.next(2_000), 2_000 << COUNTER_BITS);
    }

    #[test]
    fn a_peer_stamp_orders_later_local_changes_after_it() {
        let clock = Clock::default();
        clock.observe_at(5_000 << COUNTER_BITS | 7, 1_000);
        assert!(clock.next(1_000) > (5_000 << COUNTER_BITS | 7));
    }

    #[test]
    fn a_stamp_from_far_in_the_future_does_not_move_the_clock() {
        let clock = Clock::default();
        let far = (1_000 + MAX_AHEAD_MS + 1) << COUNTER_BITS;
        clock.observe_at(far, 1_000);
        assert_eq!(clock.next(1_000), 1_000 << COUNTER_BITS);
    }

    #[test]
    fn a_change_of_a_hash_outranks_its_state_however_far_ahead() {
        let clock = Clock::default();
        let far = (1_000 + MAX_AHEAD_MS + 1) << COUNTER_BITS;
        assert_eq!(clock.after_at(far, 1_000), far + 1);
        // Other hashes' stamps stay on the wall clock.
        assert_eq!(clock.next(1_001), 1_001 << COUNTER_BITS);
        // A floor behind the clock changes nothing.
        assert_eq!(clock.after_at(5, 1_002), 1_002 << COUNTER_BITS);
    }
}
