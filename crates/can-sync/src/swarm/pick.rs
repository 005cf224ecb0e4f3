//! Which piece to ask of which peer next: pure.
//!
//! Rarest first, counting what fetching peers hold *and* what they are asking for now, so
//! receivers that all start from the one peer that has the asset ask it for different
//! pieces, and every piece it uploads once is passed on by the others. Peers that are
//! fetching too are asked first (their upload is otherwise idle, and the asset's origin is
//! the bottleneck); a peer that has the whole asset is asked only for pieces no fetching
//! peer holds or asks for — unless no fetching peer holds anything we still want — so the
//! origin uploads about one copy, whatever the number of devices.

use super::pieces::Bits;

/// Pieces asked of one peer at a time: one in flight while the next is requested hides the
/// round trip.
pub const PER_SOURCE: usize = 2;
/// Pieces in flight for one asset, from all peers.
pub const IN_FLIGHT: usize = 8;

/// A peer that may send pieces, as the picker sees it.
#[derive(Debug, Clone)]
pub struct Source<P> {
    pub id: P,
    /// Has the whole asset.
    pub full: bool,
    /// What it holds of a fetch in progress (`None` for a full source).
    pub have: Option<Bits>,
    /// What it is asking for now (its own fetch).
    pub pending: Option<Bits>,
    /// Pieces we are asking of it now.
    pub in_flight: usize,
    /// Not resting after a failure.
    pub ready: bool,
}

impl<P> Source<P> {
    fn holds(&self, i: usize) -> bool {
        self.full || self.have.as_ref().is_some_and(|b| b.get(i))
    }
}

/// How many fetching peers hold or are fetching each piece.
pub fn rarity<P>(count: usize, sources: &[Source<P>]) -> Vec<u32> {
    let mut r = vec![0u32; count];
    for s in sources.iter().filter(|s| !s.full) {
        for (i, n) in r.iter_mut().enumerate() {
            let held = s.have.as_ref().is_some_and(|b| b.get(i));
            let asked = s.pending.as_ref().is_some_and(|b| b.get(i));
            if held || asked {
                *n += 1;
            }
        }
    }
    r
}

/// The next (source index, piece) to ask for, or `None` if nothing more may start now.
/// `ours`: verified here; `asked`: in flight here. `start` rotates ties (a random number),
/// so receivers with the same view still spread over the pieces.
pub fn pick<P>(
    ours: &Bits,
    asked: &Bits,
    sources: &[Source<P>],
    rarity: &[u32],
    start: usize,
) -> Option<(usize, usize)> {
    let count = ours.len();
    if count == 0 || asked.count_ones() >= IN_FLIGHT {
        return None;
    }
    let wanted = |i: usize| !ours.get(i) && !asked.get(i);
    // Pieces no fetching peer holds or asks for: what only a full source can give now.
    let fresh = (0..count).any(|i| wanted(i) && rarity.get(i).copied().unwrap_or(0) == 0);
    // Whether some fetching peer holds a piece we still want (busy or not: it will send).
    let partial_helps = sources
        .iter()
        .any(|s| !s.full && s.ready && (0..count).any(|i| wanted(i) && s.holds(i)));
    // Fetching peers first, then full sources, the least busy first within each.
    let mut order: Vec<usize> = (0..sources.len())
        .filter(|&s| sources[s].ready && sources[s].in_flight < PER_SOURCE)
        .collect();
    order.sort_by_key(|&s| (sources[s].full, sources[s].in_flight));
    for s in order {
        let src = &sources[s];
        // A full source (the origin, at first) sends what nobody else can: each piece it
        // uploads once is then passed on by the others. Only when no fetching peer can
        // help us does it send a piece one of them has.
        if src.full && !fresh && partial_helps {
            continue;
        }
        let mut best: Option<(u32, usize)> = None;
        for k in 0..count {
            let i = (start + k) % count;
            if !wanted(i) || !src.holds(i) {
                continue;
            }
            let r = rarity.get(i).copied().unwrap_or(0);
            if src.full && fresh && r > 0 {
                continue;
            }
            if best.is_none_or(|(br, _)| r < br) {
                best = Some((r, i));
            }
        }
        if let Some((_, i)) = best {
            return Some((s, i));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(count: usize, on: &[usize]) -> Bits {
        let mut b = Bits::new(count);
        for &i in on {
            b.set(i, true);
        }
        b
    }

    fn full(id: u8) -> Source<u8> {
        Source {
            id,
            full: true,
            have: None,
            pending: None,
            in_flight: 0,
            ready: true,
        }
    }

    fn partial(id: u8, have: Bits, pending: Bits) -> Source<u8> {
        Source {
            id,
            full: false,
            have: Some(have),
            pending: Some(pending),
            in_flight: 0,
            ready: true,
        }
    }

    #[test]
    fn a_fetching_peer_is_asked_before_the_origin() {
        let n = 8;
        let sources = vec![full(0), partial(1, bits(n, &[3, 4]), bits(n, &[]))];
        let r = rarity(n, &sources);
        let (s, i) = pick(&bits(n, &[]), &bits(n, &[]), &sources, &r, 0).unwrap();
        assert_eq!(sources[s].id, 1);
        assert!(i == 3 || i == 4);
    }

    #[test]
    fn the_origin_is_asked_for_what_no_other_peer_holds_or_asks_for() {
        let n = 6;
        // Peer 1 holds 0 and asks for 1; peer 2 asks for 2 and 3: the rarest are 4 and 5.
        let sources = vec![
            full(0),
            Source {
                in_flight: PER_SOURCE,
                ..partial(1, bits(n, &[0]), bits(n, &[1]))
            },
            partial(2, bits(n, &[]), bits(n, &[2, 3])),
        ];
        let r = rarity(n, &sources);
        for start in 0..n {
            let (s, i) = pick(&bits(n, &[]), &bits(n, &[]), &sources, &r, start).unwrap();
            assert_eq!(sources[s].id, 0);
            assert!(i == 4 || i == 5, "start {start}: piece {i}");
        }
    }

    #[test]
    fn the_origin_is_not_asked_for_what_a_fetching_peer_can_send() {
        let n = 4;
        // Every piece is out: 0 and 1 held by peer 1, 2 and 3 asked for by peer 2.
        let sources = vec![
            full(0),
            Source {
                in_flight: PER_SOURCE,
                ..partial(1, bits(n, &[0, 1]), bits(n, &[]))
            },
            partial(2, bits(n, &[]), bits(n, &[2, 3])),
        ];
        let r = rarity(n, &sources);
        // Peer 1 is busy, peer 2 holds nothing yet: wait for them, not the origin.
        assert_eq!(pick(&bits(n, &[]), &bits(n, &[]), &sources, &r, 0), None);
        // Once we hold what peer 1 has, nobody fetching can help: the origin sends the
        // rarest of the rest.
        let (s, i) = pick(&bits(n, &[0, 1]), &bits(n, &[]), &sources, &r, 0).unwrap();
        assert_eq!((sources[s].id, i), (0, 2));
    }

    #[test]
    fn receivers_with_the_same_view_spread_over_the_pieces() {
        let n = 256;
        let sources = vec![full(0)];
        let r = rarity(n, &sources);
        let picks: std::collections::HashSet<usize> = (0..7)
            .map(|k| {
                pick(&bits(n, &[]), &bits(n, &[]), &sources, &r, k * 37)
                    .unwrap()
                    .1
            })
            .collect();
        assert_eq!(picks.len(), 7);
    }

    #[test]
    fn limits_hold_and_nothing_is_asked_twice_or_of_a_peer_without_it() {
        let n = 4;
        let busy = Source {
            in_flight: PER_SOURCE,
            ..full(0)
        };
        let resting = Source {
            ready: false,
            ..full(1)
        };
        let sources = vec![busy, resting, partial(2, bits(n, &[1]), bits(n, &[]))];
        let r = rarity(n, &sources);
        // Peer 2 holds only piece 1, which we already have or asked for.
        assert_eq!(pick(&bits(n, &[1]), &bits(n, &[]), &sources, &r, 0), None);
        assert_eq!(pick(&bits(n, &[]), &bits(n, &[1]), &sources, &r, 0), None);
        assert_eq!(
            pick(&bits(n, &[]), &bits(n, &[]), &sources, &r, 0),
            Some((2, 1))
        );
        let many = bits(16, &(0..IN_FLIGHT).collect::<Vec<_>>());
        assert_eq!(
            pick(
                &bits(16, &[]),
                &many,
                &[full(0)],
                &rarity(16, &[full(0)]),
                0
            ),
            None
        );
        // Everything here: nothing to ask.
        assert_eq!(
            pick(&bits(n, &[0, 1, 2, 3]), &bits(n, &[]), &[full(0)], &r, 0),
            None
        );
    }
}
