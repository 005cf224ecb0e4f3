//! Limits on what peers and strangers can make us do, pure: time is passed in, no I/O.
//!
//! - [`Budget`]: a token bucket for the work a peer can ask of us that costs O(N) in our
//!   store's size (a full hash list, a reconciliation from the top).
//! - [`AdmissionLimiter`]: failed passphrase proofs, per remote endpoint, across parallel
//!   connections and both directions (docs/protocol.md, "Admission").
//!
//! Both are documented in docs/protocol.md ("Limits") and docs/threat-model.md.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// O(N) requests a peer may make in a burst.
pub const BUDGET_BURST: u32 = 6;
/// One more O(N) request is allowed this often.
pub const BUDGET_REFILL: Duration = Duration::from_secs(10);
/// A peer that went over its budget is refused (both ways) for this long.
pub const OVER_BUDGET_BACKOFF: Duration = Duration::from_secs(60);

/// A token bucket: `burst` tokens, one more every `refill`.
#[derive(Debug, Clone)]
pub struct Budget {
    tokens: f64,
    burst: f64,
    refill: Duration,
    last: Instant,
}

impl Budget {
    pub fn new(burst: u32, refill: Duration, now: Instant) -> Self {
        Self {
            tokens: f64::from(burst),
            burst: f64::from(burst),
            refill,
            last: now,
        }
    }

    /// The default budget for O(N) work a peer asks of us.
    pub fn for_peer(now: Instant) -> Self {
        Self::new(BUDGET_BURST, BUDGET_REFILL, now)
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = now;
        if !self.refill.is_zero() {
            self.tokens =
                (self.tokens + elapsed.as_secs_f64() / self.refill.as_secs_f64()).min(self.burst);
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The wait after the n-th failed admission in a row: 2^n s, at most 5 min.
pub fn admission_backoff(failures: u32) -> Duration {
    let secs = 1u64 << failures.clamp(1, 9);
    Duration::from_secs(secs).min(MAX_ADMISSION_BACKOFF)
}

pub const MAX_ADMISSION_BACKOFF: Duration = Duration::from_secs(300);
/// Endpoints remembered by the limiter; past this, expired entries are forgotten.
pub const LIMITER_CAPACITY: usize = 10_000;

/// Why an admission may not start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Another admission with this endpoint is running: one guess at a time.
    InFlight,
    /// Failed recently (or went over its budget); try again after the wait.
    Backoff,
}

#[derive(Debug, Clone)]
struct Entry {
    failures: u32,
    until: Instant,
    in_flight: bool,
}

/// Failed admissions per remote endpoint. Both directions use the same limiter, so a
/// member with the wrong passphrase costs us one proof at a time, whoever dials.
#[derive(Debug)]
pub struct AdmissionLimiter<K> {
    entries: HashMap<K, Entry>,
}

impl<K: Copy + Eq + Hash> Default for AdmissionLimiter<K> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
        }
    }
}

impl<K: Copy + Eq + Hash> AdmissionLimiter<K> {
    /// Starts an admission with `id`, or says why not. Every `Ok` must be followed by
    /// [`finish`](Self::finish).
    pub fn begin(&mut self, id: K, now: Instant) -> Result<(), Refusal> {
        if let Some(e) = self.entries.get_mut(&id) {
            if e.in_flight {
                return Err(Refusal::InFlight);
            }
            if e.until > now {
                return Err(Refusal::Backoff);
            }
            e.in_flight = true;
            return Ok(());
        }
        self.forget_expired(now);
        self.entries.insert(
            id,
            Entry {
                failures: 0,
                until: now,
                in_flight: true,
            },
        );
        Ok(())
    }

    /// Whether a new admission with `id` would be refused now.
    pub fn is_limited(&self, id: &K, now: Instant) -> bool {
        self.entries
            .get(id)
            .is_some_and(|e| e.in_flight || e.until > now)
    }

    /// Ends the admission `begin` allowed. `failed`: the peer did not prove the passphrase.
    pub fn finish(&mut self, id: K, failed: bool, now: Instant) {
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        e.in_flight = false;
        if failed {
            e.failures = e.failures.saturating_add(1);
            e.until = now + admission_backoff(e.failures);
        } else if e.until > now {
            // A penalty still running (over budget) outlasts a later success.
            e.failures = 0;
        } else {
            self.entries.remove(&id);
        }
    }

    /// Ends an admission without a verdict (a timeout, a lost connection): frees the slot
    /// and keeps the failures counted so far.
    pub fn release(&mut self, id: K, now: Instant) {
        let forget = match self.entries.get_mut(&id) {
            Some(e) => {
                e.in_flight = false;
                // Nothing to remember about an endpoint that never failed nor was penalised.
                e.failures == 0 && e.until <= now
            }
            None => false,
        };
        if forget {
            self.entries.remove(&id);
        }
    }

    /// Refuses `id` for `wait` (a peer that went over its budget).
    pub fn penalise(&mut self, id: K, wait: Duration, now: Instant) {
        self.forget_expired(now);
        let e = self.entries.entry(id).or_insert(Entry {
            failures: 0,
            until: now,
            in_flight: false,
        });
        e.until = e.until.max(now + wait);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bounded: an attacker cycling through ids cannot grow the map past the capacity by
    /// more than the entries still in force.
    fn forget_expired(&mut self, now: Instant) {
        if self.entries.len() >= LIMITER_CAPACITY {
            self.entries.retain(|_, e| e.in_flight || e.until > now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_allows_a_burst_then_refills() {
        let t0 = Instant::now();
        let mut b = Budget::new(3, Duration::from_secs(10), t0);
        assert!(b.take(t0) && b.take(t0) && b.take(t0));
        assert!(!b.take(t0));
        assert!(!b.take(t0 + Duration::from_secs(9)));
        assert!(b.take(t0 + Duration::from_secs(11)));
        assert!(!b.take(t0 + Duration::from_secs(12)));
        // Never more than the burst, however long it rested.
        let later = t0 + Duration::from_secs(3600);
        assert!(b.take(later) && b.take(later) && b.take(later));
        assert!(!b.take(later));
    }

    #[test]
    fn backoff_doubles_from_two_seconds_to_five_minutes() {
        let waits: Vec<u64> = (1..=10).map(|n| admission_backoff(n).as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    }

    #[test]
    fn one_admission_at_a_time_per_endpoint() {
        let t0 = Instant::now();
        let mut l = AdmissionLimiter::default();
        assert_eq!(l.begin(1u8, t0), Ok(()));
        // Parallel connections from the same id get no guess of their own.
        for _ in 0..19 {
            assert_eq!(l.begin(1u8, t0), Err(Refusal::InFlight));
        }
        assert_eq!(l.begin(2u8, t0), Ok(()));
        l.finish(1, true, t0);
        assert_eq!(
            l.begin(1, t0 + Duration::from_secs(1)),
            Err(Refusal::Backoff)
        );
        assert_eq!(l.begin(1, t0 + Duration::from_secs(2)), Ok(()));
        l.finish(1, true, t0 + Duration::from_secs(2));
        let t = t0 + Duration::from_secs(2);
        assert!(l.is_limited(&1, t + Duration::from_secs(3)));
        assert!(!l.is_limited(&1, t + Duration::from_secs(4)));
        // Success forgets the failures.
        assert_eq!(l.begin(1, t + Duration::from_secs(4)), Ok(()));
        l.finish(1, false, t + Duration::from_secs(4));
        assert!(!l.is_limited(&1, t + Duration::from_secs(4)));
        l.finish(2, false, t0);
        assert!(l.is_empty());
    }

    #[test]
    fn penalty_refuses_for_its_duration() {
        let t0 = Instant::now();
        let mut l = AdmissionLimiter::default();
        l.penalise(7u8, Duration::from_secs(60), t0);
        assert_eq!(
            l.begin(7, t0 + Duration::from_secs(59)),
            Err(Refusal::Backoff)
        );
        assert_eq!(l.begin(7, t0 + Duration::from_secs(60)), Ok(()));
    }

    #[test]
    fn stays_bounded_under_many_ids() {
        let t0 = Instant::now();
        let mut l = AdmissionLimiter::default();
        for i in 0..(3 * LIMITER_CAPACITY as u32) {
            let now = t0 + Duration::from_secs(u64::from(i) / 100);
            if l.begin(i, now).is_ok() {
                l.finish(i, true, now);
            }
        }
        assert!(l.len() <= LIMITER_CAPACITY + 1, "{}", l.len());
    }
}
