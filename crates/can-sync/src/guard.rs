//! The mass-deletion guard: deletions from peers that would remove more than a share of
//! our store are held until the user says what to do.
//!
//! Pure: deletions in (with the time and the store's size), decisions out. Only deletions
//! that would remove an asset we hold count; a tombstone for something we never had, or a
//! later stamp of a deletion we applied already, always passes. Deletions are counted over a
//! sliding window; once the count in the window reaches both `min_assets` and more than
//! `max_share` of the store (as it was before those deletions), the guard trips: from then
//! on every such deletion is held (the whole batch that tripped it included) until
//! [`DeleteGuard::release`]. Deletions come only from explicit `DELETE` calls somewhere,
//! never from absence, so an empty store (an unmounted disk) cannot trip anything: it
//! deletes nothing.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::plan::Hash;

/// Defaults of the agent's `max_delete_share`, `mass_delete_min_assets` and
/// `mass_delete_window_secs`.
pub const DEFAULT_MAX_SHARE: f64 = 0.10;
pub const DEFAULT_MIN_ASSETS: usize = 50;
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);
/// Held deletions kept at most (more are dropped: the next reconciliation brings them back).
pub const MAX_HELD: usize = 1 << 20;
/// Names shown with a held batch.
pub const SAMPLE: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuardConfig {
    pub max_share: f64,
    pub min_assets: usize,
    pub window: Duration,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            max_share: DEFAULT_MAX_SHARE,
            min_assets: DEFAULT_MIN_ASSETS,
            window: DEFAULT_WINDOW,
        }
    }
}

/// One deletion a peer sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion<P> {
    pub peer: P,
    pub hash: Hash,
    pub stamp: u64,
    pub name: String,
}

#[derive(Debug)]
pub struct DeleteGuard<P> {
    config: GuardConfig,
    /// Deletions of our assets applied within the window: when, and which.
    recent: VecDeque<(Instant, Deletion<P>)>,
    /// The deletions in `recent` as (hash, stamp), so a flooded copy is found without a
    /// scan: every peer brings every deletion. The stamp tells a copy from a new deletion of
    /// the same asset after a restore, which counts again.
    recent_hashes: HashSet<(Hash, u64)>,
    held: HashMap<Hash, Deletion<P>>,
    /// The order held deletions arrived in (for the sample and for applying them).
    order: Vec<Hash>,
}

/// What to do with a batch of deletions of assets we hold.
#[derive(Debug, PartialEq, Eq)]
pub struct Verdict<P> {
    pub apply: Vec<Deletion<P>>,
    /// This batch tripped the guard (it was not tripped before).
    pub tripped: bool,
}

impl<P: Clone> DeleteGuard<P> {
    pub fn new(config: GuardConfig) -> Self {
        Self {
            config,
            recent: VecDeque::new(),
            recent_hashes: HashSet::new(),
            held: HashMap::new(),
            order: Vec::new(),
        }
    }

    pub fn is_holding(&self) -> bool {
        !self.held.is_empty()
    }

    pub fn held_count(&self) -> usize {
        self.held.len()
    }

    /// Deletions applied within the window (before the guard tripped, when it holds).
    pub fn applied_count(&self) -> usize {
        self.recent.len()
    }

    /// Names (or short hashes) of the first held deletions.
    pub fn sample(&self) -> Vec<String> {
        self.order
            .iter()
            .filter_map(|h| self.held.get(h))
            .take(SAMPLE)
            .map(|d| {
                if d.name.is_empty() {
                    hex::encode(&d.hash[..8])
                } else {
                    d.name.clone()
                }
            })
            .collect()
    }

    /// Judges `batch` (deletions of assets we hold), with `local` assets in our store now;
    /// `is_local` says whether the store still holds an asset (a deletion admitted earlier
    /// may not have been applied yet: it is then in `local` and must not count twice).
    pub fn admit(
        &mut self,
        now: Instant,
        local: usize,
        batch: Vec<Deletion<P>>,
        is_local: impl Fn(&Hash) -> bool,
    ) -> Verdict<P> {
        while self
            .recent
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > self.config.window)
        {
            if let Some((_, d)) = self.recent.pop_front() {
                self.recent_hashes.remove(&(d.hash, d.stamp));
            }
        }
        if batch.is_empty() {
            return Verdict {
                apply: Vec::new(),
                tripped: false,
            };
        }
        // One deletion counts once, however many peers bring it: in a swarm every neighbour
        // floods it, often before our store has applied the first copy (so it still looks
        // like an asset we hold). A copy of one admitted in the window (same asset, same
        // stamp) passes again (applying it twice changes nothing); copies within the batch
        // are dropped. A later deletion of a restored asset is a new one and counts.
        let mut seen = HashSet::new();
        let (again, batch): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .filter(|d| seen.insert(d.hash))
            .partition(|d| self.recent_hashes.contains(&(d.hash, d.stamp)));
        let was_holding = self.is_holding();
        let count = self.recent.len() + batch.len();
        // The store as it was before the deletions in the window: what it holds now plus
        // the window's deletions already applied. Counting those costs a pass over the
        // window, so it is done only where it can matter: `before` is at least `local`, so
        // a count within the share of `local` is never over it.
        let over = !batch.is_empty()
            && count >= self.config.min_assets
            && count as f64 > self.config.max_share * local as f64
            && {
                let applied = self
                    .recent
                    .iter()
                    .filter(|(_, d)| !is_local(&d.hash))
                    .count();
                count as f64 > self.config.max_share * (local + applied) as f64
            };
        if was_holding || over {
            for d in batch {
                if self.held.len() >= MAX_HELD && !self.held.contains_key(&d.hash) {
                    break;
                }
                if self.held.insert(d.hash, d.clone()).is_none() {
                    self.order.push(d.hash);
                }
            }
            return Verdict {
                apply: again,
                tripped: !was_holding,
            };
        }
        self.recent_hashes
            .extend(batch.iter().map(|d| (d.hash, d.stamp)));
        self.recent.extend(batch.iter().cloned().map(|d| (now, d)));
        let mut apply = batch;
        apply.extend(again);
        Verdict {
            apply,
            tripped: false,
        }
    }

    /// The user answered: returns the held deletions (in arrival order) and the deletions
    /// applied within the window before the guard tripped (to undo them when the user keeps
    /// their assets). The guard starts afresh.
    pub fn release(&mut self) -> (Vec<Deletion<P>>, Vec<Deletion<P>>) {
        let mut held = std::mem::take(&mut self.held);
        let ordered = std::mem::take(&mut self.order)
            .into_iter()
            .filter_map(|h| held.remove(&h))
            .collect();
        self.recent_hashes.clear();
        let recent = self.recent.drain(..).map(|(_, d)| d).collect();
        (ordered, recent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn del(i: u32) -> Deletion<u8> {
        let mut hash = [0u8; 32];
        hash[..4].copy_from_slice(&i.to_le_bytes());
        Deletion {
            peer: 1,
            hash,
            stamp: u64::from(i),
            name: format!("a{i}"),
        }
    }

    #[test]
    fn a_few_deletions_pass_and_a_mass_deletion_is_held_one_by_one_or_at_once() {
        let now = Instant::now();
        // One after another, 500 assets: the 51st (count 51 > 10 % of 500) trips.
        let mut g = DeleteGuard::new(GuardConfig::default());
        let mut local = 500;
        for i in 0..50 {
            let v = g.admit(now, local, vec![del(i)], |_| false);
            assert_eq!(v.apply.len(), 1, "deletion {i} held too early");
            local -= 1;
        }
        let v = g.admit(now, local, vec![del(50)], |_| false);
        assert!(v.apply.is_empty() && v.tripped);
        let v = g.admit(now, local, vec![del(51)], |_| false);
        assert!(v.apply.is_empty() && !v.tripped);
        assert_eq!(g.held_count(), 2);
        assert_eq!(g.sample(), vec!["a50", "a51"]);
        let (held, recent) = g.release();
        assert_eq!((held.len(), recent.len()), (2, 50));
        assert!(!g.is_holding());

        // A whole reconciliation's worth at once: held whole.
        let mut g = DeleteGuard::new(GuardConfig::default());
        let v = g.admit(now, 500, (0..100).map(del).collect(), |_| true);
        assert!(v.apply.is_empty() && v.tripped);
        assert_eq!(g.held_count(), 100);
    }

    #[test]
    fn deletions_the_store_has_not_applied_yet_count_once() {
        let now = Instant::now();
        // The store applies deletions later than the guard admits them: all 500 assets are
        // still there, the admitted ones among them. The 51st still trips, not the 56th.
        let mut g = DeleteGuard::new(GuardConfig::default());
        for i in 0..50 {
            assert_eq!(g.admit(now, 500, vec![del(i)], |_| true).apply.len(), 1);
        }
        assert!(g.admit(now, 500, vec![del(50)], |_| true).tripped);
    }

    #[test]
    fn a_new_deletion_of_a_restored_asset_counts_again() {
        let now = Instant::now();
        let mut g = DeleteGuard::new(GuardConfig::default());
        // 40 deletions pass (under the minimum); the user keeps them (restored, a higher
        // stamp), then they are deleted again within the window: 80 deletions, not 40.
        assert_eq!(
            g.admit(now, 100, (0..40).map(del).collect(), |_| true)
                .apply
                .len(),
            40
        );
        let again: Vec<_> = (0..40)
            .map(|i| Deletion {
                stamp: 1000 + u64::from(i),
                ..del(i)
            })
            .collect();
        let v = g.admit(now, 100, again, |_| true);
        assert!(v.tripped && v.apply.is_empty());
        assert_eq!(g.held_count(), 40);
    }

    #[test]
    fn a_deletion_flooded_by_many_peers_counts_once() {
        let now = Instant::now();
        let mut g = DeleteGuard::new(GuardConfig::default());
        // 20 deletions of a 100-asset store, each brought by 15 peers before our store has
        // applied it (the store still holds all 100): 20 deletions, not 300.
        for peer in 0..15u8 {
            let batch = (0..20)
                .map(|i| Deletion { peer, ..del(i) })
                .chain(std::iter::once(Deletion { peer, ..del(0) }))
                .collect();
            let v = g.admit(now, 100, batch, |_| true);
            assert_eq!(v.apply.len(), 20, "peer {peer}");
            assert!(!v.tripped);
        }
        assert!(!g.is_holding());
        assert_eq!(g.applied_count(), 20);
    }

    #[test]
    fn small_stores_and_old_deletions_do_not_trip_it() {
        let now = Instant::now();
        let mut g = DeleteGuard::new(GuardConfig::default());
        // 40 of 40: all of it, but under the 50-asset minimum.
        assert_eq!(
            g.admit(now, 40, (0..40).map(del).collect(), |_| false)
                .apply
                .len(),
            40
        );
        // The window slides: 60 more a minute later pass against a large store.
        let later = now + Duration::from_secs(61);
        assert_eq!(
            g.admit(later, 1000, (40..100).map(del).collect(), |_| false)
                .apply
                .len(),
            60
        );
        assert!(!g.is_holding());
    }
}
