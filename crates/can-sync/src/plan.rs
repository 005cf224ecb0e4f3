//! What to fetch from whom, and whom to tell about what: the sync decisions, pure.
//!
//! Hash sets in, decisions out; no I/O, no clocks. The engine feeds it what it learns
//! (our store's hashes, each peer's hash lists and announcements, transfer results) and
//! carries out what it returns. Tested without sockets.
//!
//! Rules:
//! - We fetch what we lack from a peer that has it (pull), at most `per_peer` at a time from
//!   one peer and `total` overall; one hash is never in flight twice.
//! - A new asset is announced to every connected peer that is not known to have it and is
//!   not the peer it came from: nothing is ever echoed back.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash as StdHash;

pub type Hash = [u8; 32];

/// How a transfer ended, as far as planning cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Stored (or was already there).
    Stored,
    /// The peer could not send it now (paused, gone, busy): try it or another peer later.
    Retry,
    /// The peer does not have it after all, or sent bad content: never ask it again for it.
    Drop,
    /// The peer stopped sending: try the next source first (this one goes to the back).
    Stalled,
    /// Our store refused the asset as this peer described it (its claimed size, name or
    /// type): never asked of this peer again (until a restart); other peers may still send
    /// it, since the description is the sender's.
    Refused,
}

#[derive(Debug)]
pub struct Planner<P> {
    local: HashSet<Hash>,
    /// Bumped whenever `local` grows, so callers can cache views of it.
    local_version: u64,
    /// What each connected peer is known to have.
    remote: HashMap<P, HashSet<Hash>>,
    /// Wanted hashes and the peers that have them, in the order we learnt of them.
    sources: HashMap<Hash, Vec<P>>,
    queue: VecDeque<Hash>,
    in_flight: HashMap<Hash, P>,
    /// (peer, hash) pairs our store refused: never asked again in this run.
    refused: HashSet<(P, Hash)>,
    /// Hashes deleted here: never fetched, whoever has them, until a change that outranks
    /// the deletion arrives (docs/protocol.md, "Deletion").
    deleted: HashSet<Hash>,
    per_peer_active: HashMap<P, usize>,
    per_peer: usize,
    total: usize,
}

impl<P: Copy + Eq + StdHash + Ord> Planner<P> {
    pub fn new(per_peer: usize, total: usize) -> Self {
        Self {
            local: HashSet::new(),
            local_version: 0,
            remote: HashMap::new(),
            sources: HashMap::new(),
            queue: VecDeque::new(),
            in_flight: HashMap::new(),
            refused: HashSet::new(),
            deleted: HashSet::new(),
            per_peer_active: HashMap::new(),
            per_peer: per_peer.max(1),
            total: total.max(1),
        }
    }

    pub fn local_count(&self) -> usize {
        self.local.len()
    }

    pub fn local_hashes(&self) -> impl Iterator<Item = &Hash> {
        self.local.iter()
    }

    pub fn has_local(&self, h: &Hash) -> bool {
        self.local.contains(h)
    }

    /// Changes whenever our store's set changes.
    pub fn local_version(&self) -> u64 {
        self.local_version
    }

    /// Hashes we want and have not stored yet.
    pub fn wanted(&self) -> usize {
        self.sources.len()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether connected peer `p` is known to have `h`.
    pub fn peer_holds(&self, p: &P, h: &Hash) -> bool {
        self.remote.get(p).is_some_and(|has| has.contains(h))
    }

    /// Whether a fetch from `p` is in flight.
    pub fn fetching_from(&self, p: &P) -> bool {
        self.in_flight.values().any(|q| q == p)
    }

    /// Our store has `h` (local upload, or a transfer that finished). Returns the peers to
    /// announce it to; `from` (the peer that delivered it) is never among them.
    pub fn add_local(&mut self, h: Hash, from: Option<P>) -> Vec<P> {
        if let Some(p) = from {
            self.remote.entry(p).or_default().insert(h);
        }
        if !self.local.insert(h) {
            return Vec::new();
        }
        self.local_version += 1;
        self.sources.remove(&h);
        let mut targets: Vec<P> = self
            .remote
            .iter()
            .filter(|(p, has)| Some(**p) != from && !has.contains(&h))
            .map(|(p, _)| *p)
            .collect();
        targets.sort();
        targets
    }

    /// Our store deleted `h`: it is no longer ours, and no peer's copy is fetched.
    pub fn remove_local(&mut self, h: Hash) {
        if self.local.remove(&h) {
            self.local_version += 1;
        }
        self.deleted.insert(h);
        self.sources.remove(&h);
    }

    /// `h` may be fetched again (a restore outranked its deletion).
    pub fn undelete(&mut self, h: &Hash) {
        self.deleted.remove(h);
    }

    /// Seeds the hashes deleted here (start-up).
    pub fn load_deleted(&mut self, hashes: impl IntoIterator<Item = Hash>) {
        self.deleted.extend(hashes);
    }

    /// Seeds our own store's hashes without announcing them (start-up).
    pub fn load_local(&mut self, hashes: impl IntoIterator<Item = Hash>) {
        self.local.extend(hashes);
        self.local_version += 1;
    }

    pub fn peer_connected(&mut self, p: P) {
        self.remote.entry(p).or_default();
    }

    /// The peer has these hashes (hash list page or announcement). Marks what we lack as wanted.
    pub fn peer_has(&mut self, p: P, hashes: impl IntoIterator<Item = Hash>) {
        let Some(known) = self.remote.get_mut(&p) else {
            return;
        };
        for h in hashes {
            known.insert(h);
            if self.local.contains(&h)
                || self.deleted.contains(&h)
                || self.refused.contains(&(p, h))
            {
                continue;
            }
            let sources = self.sources.entry(h).or_default();
            if sources.is_empty() && !self.in_flight.contains_key(&h) {
                self.queue.push_back(h);
            }
            if !sources.contains(&p) {
                sources.push(p);
            }
        }
    }

    /// The peer is gone: its in-flight transfers go back to the queue for other sources.
    pub fn peer_disconnected(&mut self, p: P) {
        self.remote.remove(&p);
        self.per_peer_active.remove(&p);
        let mut orphaned = Vec::new();
        self.in_flight.retain(|h, q| {
            let keep = *q != p;
            if !keep {
                orphaned.push(*h);
            }
            keep
        });
        self.sources.retain(|_, s| {
            s.retain(|q| *q != p);
            !s.is_empty()
        });
        for h in orphaned {
            if self.sources.contains_key(&h) {
                self.queue.push_back(h);
            }
        }
    }

    /// Transfers to start now: (peer, hash) pairs within the concurrency limits.
    pub fn next_requests(&mut self) -> Vec<(P, Hash)> {
        let mut out = Vec::new();
        let mut skipped = VecDeque::new();
        while self.in_flight.len() < self.total {
            let Some(h) = self.queue.pop_front() else {
                break;
            };
            if self.local.contains(&h)
                || self.deleted.contains(&h)
                || self.in_flight.contains_key(&h)
            {
                continue;
            }
            let Some(sources) = self.sources.get(&h) else {
                continue;
            };
            let free = sources
                .iter()
                .copied()
                .find(|p| self.per_peer_active.get(p).copied().unwrap_or(0) < self.per_peer);
            match free {
                Some(p) => {
                    *self.per_peer_active.entry(p).or_default() += 1;
                    self.in_flight.insert(h, p);
                    out.push((p, h));
                }
                None => {
                    skipped.push_back(h);
                    // Every peer is busy: nothing more can start now.
                    if self.per_peer_active.values().all(|n| *n >= self.per_peer)
                        && self.per_peer_active.len() >= self.remote.len()
                    {
                        break;
                    }
                }
            }
        }
        while let Some(h) = skipped.pop_back() {
            self.queue.push_front(h);
        }
        out
    }

    /// A transfer of `h` from `p` ended.
    pub fn finished(&mut self, p: P, h: Hash, outcome: Outcome) -> Vec<P> {
        if self.in_flight.get(&h) == Some(&p) {
            self.in_flight.remove(&h);
            if let Some(n) = self.per_peer_active.get_mut(&p) {
                *n = n.saturating_sub(1);
            }
        }
        match outcome {
            Outcome::Stored => self.add_local(h, Some(p)),
            Outcome::Retry => {
                if self.sources.contains_key(&h) {
                    self.queue.push_back(h);
                }
                Vec::new()
            }
            Outcome::Stalled => {
                if let Some(s) = self.sources.get_mut(&h) {
                    if let Some(i) = s.iter().position(|q| *q == p) {
                        let q = s.remove(i);
                        s.push(q);
                    }
                    self.queue.push_back(h);
                }
                Vec::new()
            }
            Outcome::Refused | Outcome::Drop => {
                if outcome == Outcome::Refused {
                    self.refused.insert((p, h));
                }
                if let Some(s) = self.sources.get_mut(&h) {
                    s.retain(|q| *q != p);
                    if s.is_empty() {
                        self.sources.remove(&h);
                    } else {
                        self.queue.push_back(h);
                    }
                }
                if let Some(known) = self.remote.get_mut(&p) {
                    known.remove(&h);
                }
                Vec::new()
            }
        }
    }

    /// Drops every source entry of `p` (it misbehaved or paused): we ask it for nothing until
    /// it tells us again what it has.
    pub fn forget_sources(&mut self, p: P) {
        self.sources.retain(|_, s| {
            s.retain(|q| *q != p);
            !s.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_deleted_here_is_not_fetched_until_undeleted() {
        let mut p: Planner<u8> = Planner::new(8, 16);
        p.peer_connected(1);
        p.load_local([[1; 32]]);
        p.remove_local([1; 32]);
        assert_eq!(p.local_count(), 0);
        p.peer_has(1, [[1; 32]]);
        assert!(p.next_requests().is_empty(), "fetched a hash deleted here");
        p.undelete(&[1; 32]);
        p.peer_has(1, [[1; 32]]);
        assert_eq!(p.next_requests(), vec![(1, [1; 32])]);
    }

    fn h(n: u32) -> Hash {
        let mut x = [0u8; 32];
        x[..4].copy_from_slice(&n.to_le_bytes());
        x
    }

    #[test]
    fn fetches_only_what_is_missing_once() {
        let mut p = Planner::<u8>::new(4, 16);
        p.load_local((0..10).map(h));
        p.peer_connected(1);
        p.peer_connected(2);
        p.peer_has(1, (5..25).map(h));
        p.peer_has(2, (5..25).map(h));
        let reqs = p.next_requests();
        let hashes: HashSet<Hash> = reqs.iter().map(|(_, x)| *x).collect();
        assert_eq!(reqs.len(), 8, "4 per peer, two peers");
        assert_eq!(hashes.len(), 8, "never the same hash twice");
        assert!(hashes.iter().all(|x| !(0..10).map(h).any(|l| l == *x)));
        for (peer, x) in reqs {
            p.finished(peer, x, Outcome::Stored);
        }
        let rest = p.next_requests();
        assert_eq!(rest.len(), 7);
        for (peer, x) in rest {
            p.finished(peer, x, Outcome::Stored);
        }
        assert!(p.next_requests().is_empty());
        assert_eq!(p.local_count(), 25);
        assert_eq!(p.wanted(), 0);
    }

    #[test]
    fn never_echoes_and_skips_peers_that_have_it() {
        let mut p = Planner::<u8>::new(4, 16);
        for peer in [1, 2, 3] {
            p.peer_connected(peer);
        }
        p.peer_has(3, [h(1)]);
        // Local upload: everyone but peer 3 (which has it).
        assert_eq!(p.add_local(h(1), None), vec![1, 2]);
        // Received from peer 1: announced to 2 and 3, never back to 1.
        assert_eq!(p.add_local(h(2), Some(1)), vec![2, 3]);
        // Already local: no second announcement.
        assert!(p.add_local(h(2), None).is_empty());
        // A transfer that stores it announces onward, not to the source.
        p.peer_has(2, [h(3)]);
        let reqs = p.next_requests();
        assert_eq!(reqs, vec![(2, h(3))]);
        assert_eq!(p.finished(2, h(3), Outcome::Stored), vec![1, 3]);
    }

    #[test]
    fn failures_requeue_or_drop_and_disconnects_reassign() {
        let mut p = Planner::<u8>::new(1, 16);
        p.peer_connected(1);
        p.peer_connected(2);
        p.peer_has(1, [h(7)]);
        p.peer_has(2, [h(7)]);
        assert_eq!(p.next_requests(), vec![(1, h(7))]);
        // Bad content from peer 1: asked from peer 2 instead.
        p.finished(1, h(7), Outcome::Drop);
        assert_eq!(p.next_requests(), vec![(2, h(7))]);
        // Peer 2 disconnects mid-transfer: nobody else has it, so it waits.
        p.peer_disconnected(2);
        assert!(p.next_requests().is_empty());
        assert_eq!(p.wanted(), 0);
        // Peer 1 reconnects and lists it again.
        p.peer_disconnected(1);
        p.peer_connected(1);
        p.peer_has(1, [h(7)]);
        assert_eq!(p.next_requests(), vec![(1, h(7))]);
        p.finished(1, h(7), Outcome::Retry);
        assert_eq!(p.next_requests(), vec![(1, h(7))]);
    }

    #[test]
    fn a_stalled_source_goes_last_and_a_refused_pair_is_not_asked_again() {
        let mut p = Planner::<u8>::new(4, 16);
        p.peer_connected(1);
        p.peer_connected(2);
        p.peer_has(1, [h(7), h(8)]);
        p.peer_has(2, [h(7), h(8)]);
        let reqs = p.next_requests();
        assert_eq!(reqs, vec![(1, h(7)), (1, h(8))]);
        p.finished(1, h(7), Outcome::Stalled);
        assert_eq!(p.next_requests(), vec![(2, h(7))]);
        p.finished(1, h(8), Outcome::Refused);
        // Peer 1's description was refused; peer 2 may still send it.
        assert_eq!(p.next_requests(), vec![(2, h(8))]);
        p.finished(2, h(8), Outcome::Refused);
        // Told again by both: neither is asked again.
        p.peer_has(1, [h(8)]);
        p.peer_has(2, [h(8)]);
        assert!(
            p.next_requests().is_empty(),
            "a refused pair is not asked again"
        );
        assert_eq!(p.wanted(), 1, "only h(7), in flight from peer 2");
    }

    #[test]
    fn limits_hold_at_scale() {
        let mut p = Planner::<u16>::new(3, 10);
        for peer in 0..5 {
            p.peer_connected(peer);
            p.peer_has(peer, (0..10_000).map(h));
        }
        let mut stored = 0;
        loop {
            let reqs = p.next_requests();
            if reqs.is_empty() {
                break;
            }
            assert!(p.in_flight() <= 10);
            let mut per: HashMap<u16, usize> = HashMap::new();
            for (peer, _) in &reqs {
                *per.entry(*peer).or_default() += 1;
            }
            assert!(per.values().all(|n| *n <= 3));
            for (peer, x) in reqs {
                p.finished(peer, x, Outcome::Stored);
                stored += 1;
            }
        }
        assert_eq!(stored, 10_000);
    }
}
