//! Range-based set reconciliation (`can_sync::reconcile`): the codec on raw bytes, a
//! responder fed hostile frames, and two honest peers that must agree on their difference.

use std::collections::BTreeSet;
use std::sync::Arc;

use arbitrary::Unstructured;
use can_proto::peer::Reconcile;
use can_sync::reconcile::codec::{
    self, Bound, MAX_FRAME_BYTES, MAX_RANGES_PER_FRAME, Payload, PayloadRef, Range,
};
use can_sync::reconcile::fingerprint::fingerprint;
use can_sync::reconcile::session::{MAX_NEED, MAX_TURNS};
use can_sync::reconcile::{Hash, Reconciliations};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{rest, structured};

fn as_ref(payload: &Payload) -> PayloadRef<'_> {
    match payload {
        Payload::Skip => PayloadRef::Skip,
        Payload::Fingerprint(fp) => PayloadRef::Fingerprint(fp),
        Payload::IdList(ids) => PayloadRef::IdList(ids),
        Payload::IdDiff {
            ids,
            count,
            lacking,
        } => PayloadRef::IdDiff {
            ids,
            count: *count,
            lacking,
        },
    }
}

fn encode(ranges: &[Range]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in ranges {
        codec::encode_range(&mut out, &r.upper, &as_ref(&r.payload));
    }
    out
}

fn bound(u: &mut Unstructured<'_>) -> arbitrary::Result<Bound> {
    if u.ratio(1, 8)? {
        return Ok(Bound::Infinity);
    }
    let mut key = [0u8; 32];
    let len = u.int_in_range(0..=32)?;
    u.fill_buffer(&mut key[..len])?;
    Ok(Bound::Key(key))
}

/// The codec on arbitrary bytes from an arbitrary start: it refuses or it decodes ranges
/// that obey its own rules and survive a round trip.
pub fn codec(data: &[u8]) {
    structured(data, |u| {
        let lower = bound(u)?;
        let bytes = rest(u);
        let Ok(ranges) = codec::decode(bytes, lower) else {
            return Ok(());
        };
        assert!(bytes.len() <= MAX_FRAME_BYTES);
        assert!(ranges.len() <= MAX_RANGES_PER_FRAME);
        let mut prev = lower;
        for r in &ranges {
            assert!(r.upper > prev, "bounds not increasing");
            if let Payload::IdList(ids) | Payload::IdDiff { ids, .. } = &r.payload {
                assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids not ascending");
                assert!(
                    ids.iter()
                        .all(|id| Bound::Key(*id) >= prev && r.upper.above(id)),
                    "id outside its range"
                );
            }
            if let Payload::IdDiff { count, lacking, .. } = &r.payload {
                assert_eq!(lacking.len(), count.div_ceil(8));
            }
            prev = r.upper;
        }
        let again = codec::decode(&encode(&ranges), lower).expect("re-encoded frame decodes");
        assert_eq!(again, ranges, "round trip changed the ranges");
        Ok(())
    })
}

/// A sorted, duplicate-free id set; ids share prefixes often, as neighbours in a big set do.
pub(crate) fn id_set(u: &mut Unstructured<'_>, max: usize) -> arbitrary::Result<Vec<Hash>> {
    let n = u.int_in_range(0..=max)?;
    let mut ids = BTreeSet::new();
    for _ in 0..n {
        let mut id = [0u8; 32];
        let shared = *u.choose(&[0usize, 0, 1, 2, 31])?;
        if shared > 0
            && let Some(prev) = ids.last()
        {
            let prev: &Hash = prev;
            id[..shared].copy_from_slice(&prev[..shared]);
        }
        u.fill_buffer(&mut id[shared..])?;
        ids.insert(id);
    }
    Ok(ids.into_iter().collect())
}

/// One frame body a hostile peer might send: raw bytes, or ranges built from our own ids
/// (matching fingerprints, consistent counts) so the session gets past the codec's checks.
fn hostile_ranges(u: &mut Unstructured<'_>, ours: &[Hash]) -> arbitrary::Result<Vec<u8>> {
    if u.ratio(1, 4)? {
        let len = u.int_in_range(0..=512)?;
        return Ok(u.bytes(len)?.to_vec());
    }
    // Strictly increasing bounds, taken near our ids or at random.
    let n = u.int_in_range(0..=12)?;
    let mut bounds = BTreeSet::new();
    for _ in 0..n {
        let b = if !ours.is_empty() && u.ratio(2, 3)? {
            let i = u.choose_index(ours.len())?;
            match u.int_in_range(0..=2)? {
                0 => Bound::Key(ours[i]),
                1 if i + 1 < ours.len() => Bound::between(&ours[i], &ours[i + 1]),
                _ => Bound::Infinity,
            }
        } else {
            bound(u)?
        };
        if b > Bound::ZERO {
            bounds.insert(b);
        }
    }
    let mut out = Vec::new();
    let mut lower = Bound::ZERO;
    for upper in bounds {
        let in_range: Vec<Hash> = ours
            .iter()
            .filter(|id| Bound::Key(**id) >= lower && upper.above(id))
            .copied()
            .collect();
        match u.int_in_range(0..=3)? {
            0 => codec::encode_range(&mut out, &upper, &PayloadRef::Skip),
            1 => {
                let fp = if u.arbitrary()? {
                    fingerprint(&in_range)
                } else {
                    u.arbitrary()?
                };
                codec::encode_range(&mut out, &upper, &PayloadRef::Fingerprint(&fp));
            }
            2 => {
                // Some of ours plus ids we lack, inside the range and sorted.
                let mut ids: BTreeSet<Hash> = in_range
                    .iter()
                    .filter(|_| u.arbitrary().unwrap_or(false))
                    .copied()
                    .collect();
                for _ in 0..u.int_in_range(0..=4)? {
                    let id: Hash = u.arbitrary()?;
                    if Bound::Key(id) >= lower && upper.above(&id) {
                        ids.insert(id);
                    }
                }
                let ids: Vec<Hash> = ids.into_iter().collect();
                codec::encode_range(&mut out, &upper, &PayloadRef::IdList(&ids));
            }
            _ => {
                let count = if u.arbitrary()? {
                    in_range.len()
                } else {
                    u.int_in_range(0..=64)?
                };
                let mut lacking = u.bytes(count.div_ceil(8))?.to_vec();
                if count % 8 != 0
                    && let Some(last) = lacking.last_mut()
                {
                    *last &= (1u8 << (count % 8)) - 1;
                }
                let mut ids = BTreeSet::new();
                for _ in 0..u.int_in_range(0..=4)? {
                    let id: Hash = u.arbitrary()?;
                    if Bound::Key(id) >= lower && upper.above(&id) {
                        ids.insert(id);
                    }
                }
                let ids: Vec<Hash> = ids.into_iter().collect();
                let payload = PayloadRef::IdDiff {
                    ids: &ids,
                    count,
                    lacking: &lacking,
                };
                codec::encode_range(&mut out, &upper, &payload);
            }
        }
        lower = upper;
    }
    Ok(out)
}

/// Checks what a session sends: every frame within the limits and decodable.
fn check_out(out: &[Reconcile]) {
    for msg in out {
        assert!(msg.ranges.len() <= MAX_FRAME_BYTES, "frame over the limit");
        assert!(msg.round < MAX_TURNS + 2, "turn past the limit");
    }
}

/// A responder over a random id set, fed frames a hostile peer chose: each is refused
/// (`Err`) or answered within the limits; never a panic.
pub fn hostile_session(data: &[u8]) {
    structured(data, |u| {
        let ours: Arc<[Hash]> = id_set(u, 64)?.into();
        let mut peer = Reconciliations::default();
        let mut round = 0u32;
        let mut need = 0usize;
        for _ in 0..u.int_in_range(1..=16)? {
            let msg = Reconcile {
                session: if u.ratio(7, 8)? {
                    1
                } else {
                    u.int_in_range(0..=3)?
                },
                initiator: u.ratio(7, 8)?,
                round: if u.ratio(7, 8)? {
                    round
                } else {
                    u.arbitrary()?
                },
                ranges: hostile_ranges(u, &ours)?,
                more: u.ratio(1, 4)?,
                set: 0,
                method: 0,
            };
            match peer.receive(&msg, || ours.clone()) {
                Ok(progress) => {
                    check_out(&progress.out);
                    need += progress.need.len();
                    assert!(need <= MAX_NEED);
                    for id in &progress.have {
                        assert!(ours.binary_search(id).is_ok(), "'have' names an id we lack");
                    }
                    for id in &progress.need {
                        assert!(
                            ours.binary_search(id).is_err(),
                            "'need' names an id we have"
                        );
                    }
                    if !msg.more {
                        round = msg.round.saturating_add(2);
                    }
                }
                Err(_) => return Ok(()),
            }
        }
        Ok(())
    })
}

/// Two sets with what each holds beyond the other.
pub(crate) struct Pair {
    pub set_a: Arc<[Hash]>,
    pub set_b: Arc<[Hash]>,
    pub extra_a: BTreeSet<Hash>,
    pub extra_b: BTreeSet<Hash>,
}

/// Up to 3,000 shared random ids and, on each side, up to one of `extra` more.
pub(crate) fn overlapping_sets(
    u: &mut Unstructured<'_>,
    extra: &[usize],
) -> arbitrary::Result<Pair> {
    let seed: u64 = u.arbitrary()?;
    let common = u.int_in_range(0..=3000)?;
    let only_a = {
        let max = *u.choose(extra)?;
        u.int_in_range(0..=max)?
    };
    let only_b = {
        let max = *u.choose(extra)?;
        u.int_in_range(0..=max)?
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let mut gen_ids = |n: usize| -> BTreeSet<Hash> { (0..n).map(|_| rng.random()).collect() };
    let shared = gen_ids(common);
    let extra_a: BTreeSet<Hash> = gen_ids(only_a).difference(&shared).copied().collect();
    let extra_b: BTreeSet<Hash> = gen_ids(only_b)
        .difference(&shared)
        .filter(|id| !extra_a.contains(*id))
        .copied()
        .collect();
    let set_a = shared.union(&extra_a).copied().collect::<Vec<_>>().into();
    let set_b = shared.union(&extra_b).copied().collect::<Vec<_>>().into();
    Ok(Pair {
        set_a,
        set_b,
        extra_a,
        extra_b,
    })
}

/// Two honest peers over overlapping random sets: they finish within the turn limit and
/// each learns exactly the other's extra ids.
pub fn honest_pair(data: &[u8]) {
    structured(data, |u| {
        let Pair {
            set_a,
            set_b,
            extra_a,
            extra_b,
        } = overlapping_sets(u, &[0, 3, 40, 1500])?;

        let (mut a, mut b) = (Reconciliations::default(), Reconciliations::default());
        let mut to_b = a.start(set_a.clone());
        let mut to_a = Vec::new();
        let (mut a_need, mut a_have) = (BTreeSet::new(), BTreeSet::new());
        let (mut b_need, mut b_have) = (BTreeSet::new(), BTreeSet::new());
        let mut finished = false;
        let mut messages = 0usize;
        while !to_b.is_empty() || !to_a.is_empty() {
            check_out(&to_b);
            check_out(&to_a);
            for msg in std::mem::take(&mut to_b) {
                let p = b
                    .receive(&msg, || set_b.clone())
                    .expect("honest frame refused");
                b_need.extend(p.need);
                b_have.extend(p.have);
                to_a.extend(p.out);
            }
            for msg in std::mem::take(&mut to_a) {
                let p = a
                    .receive(&msg, || set_a.clone())
                    .expect("honest frame refused");
                a_need.extend(p.need);
                a_have.extend(p.have);
                finished |= p.finished.is_some();
                to_b.extend(p.out);
            }
            messages += 1;
            assert!(messages <= MAX_TURNS as usize, "did not converge");
        }
        assert!(finished || (!a.busy()), "the initiator never finished");
        assert_eq!(a_need, extra_b, "A must learn exactly B's extra ids");
        assert_eq!(b_need, extra_a, "B must learn exactly A's extra ids");
        assert!(a_have.is_subset(&extra_a) && b_have.is_subset(&extra_b));
        Ok(())
    })
}
