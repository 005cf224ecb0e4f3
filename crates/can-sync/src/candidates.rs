//! Endpoints we might connect to, pure: who is worth a dial loop and when that loop ends.
//!
//! Discovery (mDNS, gossip, rendezvous, remembered peers) only ever produces *candidates*:
//! anyone on the LAN can advertise ids under our service name, so a candidate earns nothing
//! until it passes admission. The book is bounded ([`MAX_CANDIDATES`]); a candidate that
//! keeps failing is dropped and its dial loop ends. Peers named by the user (tickets) are
//! pinned: redialled until the engine stops, unless they speak another protocol version.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Candidates known at once (beyond it, new ones are ignored until some are dropped).
pub const MAX_CANDIDATES: usize = 256;
/// Dial attempts in flight at once, over all candidates.
pub const MAX_CONCURRENT_DIALS: usize = 16;
/// Failed attempts in a row after which a candidate that never passed admission is dropped.
pub const MAX_FAILURES_UNPROVEN: u32 = 4;
/// Failed attempts in a row after which a peer that passed admission before (in this run,
/// or a remembered one) is dropped: about a day at the 30 s backoff cap. It is one of ours,
/// maybe asleep or behind a rebooting router, and redialling it costs little; a day bounds
/// how long ids a member made up can sit in the book.
pub const MAX_FAILURES_PROVEN: u32 = 2_880;
/// A discovered candidate dropped after its failures is not taken again from discovery for
/// this long (a spoofer re-advertising it would otherwise keep the dialer busy).
pub const DROPPED_QUARANTINE: Duration = Duration::from_secs(600);
/// Dropped ids remembered for the quarantine (the oldest are forgotten first).
const MAX_DROPPED: usize = 4096;

/// Where a candidate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A ticket the user gave (file or app): pinned.
    Ticket,
    /// Passed admission before (remembered list, or an earlier connection in this run).
    Proven,
    /// mDNS, gossip or rendezvous: unproven until admitted.
    Discovered,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// A new candidate: start a dial loop for it.
    New,
    /// Already known (its loop goes on; its source may have been upgraded).
    Known,
    /// The book is full: ignored.
    Full,
    /// Dropped after repeated failures a short while ago: ignored for now.
    Quarantined,
}

/// What a failed attempt means for the candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again later.
    Retry,
    /// Dropped: end its dial loop.
    Drop,
}

#[derive(Debug, Clone)]
struct Candidate {
    source: Source,
    failures: u32,
}

#[derive(Debug)]
pub struct Candidates<K> {
    entries: HashMap<K, Candidate>,
    /// Discovered candidates dropped after their failures, and when.
    dropped: HashMap<K, Instant>,
}

impl<K: Copy + Eq + Hash> Default for Candidates<K> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            dropped: HashMap::new(),
        }
    }
}

impl<K: Copy + Eq + Hash> Candidates<K> {
    /// A source told us of `id`.
    pub fn offer(&mut self, id: K, source: Source, now: Instant) -> Offer {
        if source == Source::Discovered
            && let Some(at) = self.dropped.get(&id)
        {
            if now.saturating_duration_since(*at) < DROPPED_QUARANTINE {
                return Offer::Quarantined;
            }
            self.dropped.remove(&id);
        }
        if let Some(c) = self.entries.get_mut(&id) {
            // A stronger source upgrades it (a ticket pins a discovered peer).
            if rank(source) > rank(c.source) {
                c.source = source;
            }
            return Offer::Known;
        }
        // Tickets are the user's own word: always taken.
        if self.entries.len() >= MAX_CANDIDATES && source != Source::Ticket {
            return Offer::Full;
        }
        self.entries.insert(
            id,
            Candidate {
                source,
                failures: 0,
            },
        );
        Offer::New
    }

    pub fn contains(&self, id: &K) -> bool {
        self.entries.contains_key(id)
    }

    /// Where a live candidate came from (or was upgraded to).
    pub fn source(&self, id: &K) -> Option<Source> {
        self.entries.get(id).map(|c| c.source)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Live candidates whose last attempt did not fail (never tried, admitted, or only
    /// refused as full): those worth rotating a session for.
    pub fn hopeful(&self) -> impl Iterator<Item = &K> {
        self.entries
            .iter()
            .filter(|(_, c)| c.failures == 0)
            .map(|(k, _)| k)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The candidate passed admission: it is proven from now on and its failures reset.
    pub fn admitted(&mut self, id: K) {
        if let Some(c) = self.entries.get_mut(&id) {
            c.failures = 0;
            if c.source == Source::Discovered {
                c.source = Source::Proven;
            }
        }
    }

    /// An attempt failed (unreachable, timed out, refused admission).
    pub fn failed(&mut self, id: K, now: Instant) -> AfterFailure {
        let Some(c) = self.entries.get_mut(&id) else {
            return AfterFailure::Drop;
        };
        c.failures = c.failures.saturating_add(1);
        let max = match c.source {
            Source::Ticket => return AfterFailure::Retry,
            Source::Proven => MAX_FAILURES_PROVEN,
            Source::Discovered => MAX_FAILURES_UNPROVEN,
        };
        if c.failures >= max {
            let discovered = c.source == Source::Discovered;
            self.entries.remove(&id);
            // Only what discovery alone vouched for is kept out for a while: a spoofer
            // re-advertising it would otherwise keep the dialer busy.
            if discovered {
                self.note_dropped(id, now);
            }
            AfterFailure::Drop
        } else {
            AfterFailure::Retry
        }
    }

    /// Ends a candidate for good (another protocol version, or the engine stops).
    pub fn remove(&mut self, id: &K) {
        self.entries.remove(id);
    }

    /// Ends a candidate and keeps discovery from bringing it back for the quarantine (it
    /// speaks another protocol version: rediscovering it changes nothing).
    pub fn quarantine(&mut self, id: K, now: Instant) {
        self.entries.remove(&id);
        self.note_dropped(id, now);
    }

    fn note_dropped(&mut self, id: K, now: Instant) {
        if self.dropped.len() >= MAX_DROPPED {
            self.dropped
                .retain(|_, at| now.saturating_duration_since(*at) < DROPPED_QUARANTINE);
            if self.dropped.len() >= MAX_DROPPED {
                self.dropped.clear();
            }
        }
        self.dropped.insert(id, now);
    }
}

fn rank(s: Source) -> u8 {
    match s {
        Source::Discovered => 0,
        Source::Proven => 1,
        Source::Ticket => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovered_candidates_are_dropped_after_their_failures() {
        let t0 = Instant::now();
        let mut c = Candidates::default();
        assert_eq!(c.offer(1u32, Source::Discovered, t0), Offer::New);
        assert_eq!(c.offer(1, Source::Discovered, t0), Offer::Known);
        for _ in 1..MAX_FAILURES_UNPROVEN {
            assert_eq!(c.failed(1, t0), AfterFailure::Retry);
        }
        assert_eq!(c.failed(1, t0), AfterFailure::Drop);
        assert!(c.is_empty());
        // Advertised again soon after: ignored, so a spoofer cannot keep it cycling.
        assert_eq!(c.offer(1, Source::Discovered, t0), Offer::Quarantined);
        // Much later (e.g. it came back on the LAN): a new loop. A ticket is always taken.
        let later = t0 + DROPPED_QUARANTINE;
        assert_eq!(c.offer(1, Source::Discovered, later), Offer::New);
        c.remove(&1);
        for _ in 0..MAX_FAILURES_UNPROVEN {
            c.offer(2, Source::Discovered, t0);
            c.failed(2, t0);
        }
        assert_eq!(c.offer(2, Source::Ticket, t0), Offer::New);
    }

    #[test]
    fn admitted_peers_get_a_day_and_tickets_never_end() {
        let t = Instant::now();
        let mut c = Candidates::default();
        c.offer(1u32, Source::Discovered, t);
        c.admitted(1);
        assert_eq!(c.source(&1), Some(Source::Proven));
        for _ in 1..MAX_FAILURES_PROVEN {
            assert_eq!(c.failed(1, t), AfterFailure::Retry);
        }
        assert_eq!(c.failed(1, t), AfterFailure::Drop);
        // Dropped proven peers are not quarantined: a remembered or gossiped offer brings
        // them back at once.
        assert_eq!(c.offer(1, Source::Proven, t), Offer::New);
        c.offer(2, Source::Discovered, t);
        assert_eq!(c.offer(2, Source::Ticket, t), Offer::Known);
        for _ in 0..1000 {
            assert_eq!(c.failed(2, t), AfterFailure::Retry);
        }
    }

    #[test]
    fn the_book_is_bounded_but_tickets_always_fit() {
        let t = Instant::now();
        let mut c = Candidates::default();
        for i in 0..1000u32 {
            c.offer(i, Source::Discovered, t);
        }
        assert_eq!(c.len(), MAX_CANDIDATES);
        assert_eq!(c.offer(5000, Source::Discovered, t), Offer::Full);
        assert_eq!(c.offer(5000, Source::Ticket, t), Offer::New);
    }
}
