//! Two reconcilers talking through queues, no sockets. Run with `--nocapture` to see the
//! byte and turn counts quoted in docs/protocol.md and the bench README.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use can_proto::peer::Reconcile;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::codec::{self, Bound, MAX_FRAME_BYTES, MAX_RANGES_PER_FRAME, PayloadRef};
use super::session::{MAX_TURNS, Session};
use super::*;

fn sorted(ids: &HashSet<Hash>) -> Arc<[Hash]> {
    let mut v: Vec<Hash> = ids.iter().copied().collect();
    v.sort_unstable();
    v.into()
}

fn random_ids(rng: &mut StdRng, n: usize) -> HashSet<Hash> {
    let mut s = HashSet::with_capacity(n);
    while s.len() < n {
        s.insert(rng.random::<[u8; 32]>());
    }
    s
}

#[derive(Default)]
struct Side {
    recon: Reconciliations,
    need: HashSet<Hash>,
    have: HashSet<Hash>,
    summaries: Vec<Summary>,
}

impl Side {
    fn take(&mut self, p: Progress, out: &mut VecDeque<Reconcile>) {
        for id in p.need {
            assert!(self.need.insert(id), "need reported twice");
        }
        for id in p.have {
            assert!(self.have.insert(id), "have reported twice");
        }
        self.summaries.extend(p.finished);
        for m in p.out {
            assert!(m.ranges.len() <= MAX_FRAME_BYTES, "frame over the limit");
            out.push_back(m);
        }
    }
}

struct Run {
    a: Side,
    b: Side,
    bytes: u64,
    frames: u64,
    turns: u32,
    /// Both sides' work on the messages (sorting the snapshots excluded: the engine caches
    /// its sorted snapshot).
    elapsed: std::time::Duration,
}

/// A starts; messages cross one at a time in each direction (interleaved, as on the wire).
fn reconcile(a_ids: &HashSet<Hash>, b_ids: &HashSet<Hash>) -> Run {
    let (a_items, b_items) = (sorted(a_ids), sorted(b_ids));
    let started = Instant::now();
    let mut a = Side::default();
    let mut b = Side::default();
    let mut to_b: VecDeque<Reconcile> = a.recon.start(a_items.clone()).into();
    let mut to_a = VecDeque::new();
    let (mut bytes, mut frames) = (0, 0);
    while !to_a.is_empty() || !to_b.is_empty() {
        if let Some(m) = to_b.pop_front() {
            bytes += wire_len(&m);
            frames += 1;
            let p = b.recon.receive(&m, || b_items.clone()).expect("B accepts");
            b.take(p, &mut to_a);
        }
        if let Some(m) = to_a.pop_front() {
            bytes += wire_len(&m);
            frames += 1;
            let p = a.recon.receive(&m, || a_items.clone()).expect("A accepts");
            a.take(p, &mut to_b);
        }
        assert!(frames < 1_000_000, "does not terminate");
    }
    let elapsed = started.elapsed();
    assert_eq!(a.summaries.len(), 1, "A finished once");
    assert_eq!(b.summaries.len(), 1, "B finished once");
    assert!(!a.recon.busy() && !b.recon.busy());
    let (sa, sb) = (a.summaries[0], b.summaries[0]);
    assert_eq!(sa.bytes_sent, sb.bytes_received);
    assert_eq!(sb.bytes_sent, sa.bytes_received);
    assert_eq!(sa.bytes_sent + sa.bytes_received, bytes);
    let turns = sa.turns.max(sb.turns);
    Run {
        a,
        b,
        bytes,
        frames,
        turns,
        elapsed,
    }
}

/// Both sides learnt exactly the differences.
fn assert_exact(a_ids: &HashSet<Hash>, b_ids: &HashSet<Hash>, run: &Run) {
    let a_only: HashSet<Hash> = a_ids.difference(b_ids).copied().collect();
    let b_only: HashSet<Hash> = b_ids.difference(a_ids).copied().collect();
    assert!(run.a.need == b_only, "A's need");
    assert!(run.a.have == a_only, "A's have");
    assert!(run.b.need == a_only, "B's need");
    assert!(run.b.have == b_only, "B's have");
    assert_eq!(run.a.summaries[0].need, b_only.len());
    assert_eq!(run.b.summaries[0].need, a_only.len());
}

fn full_list_bytes(a: usize, b: usize) -> u64 {
    32 * (a + b) as u64
}

#[test]
fn equal_100k_sets_take_one_round_trip_and_few_bytes() {
    let mut rng = StdRng::seed_from_u64(1);
    let ids = random_ids(&mut rng, 100_000);
    let run = reconcile(&ids, &ids);
    assert_exact(&ids, &ids, &run);
    eprintln!(
        "rbsr 100,000 equal: {} bytes in {} frames, {} turns ({} round trip), {:.1} ms (this build, both sides); full lists: {} bytes",
        run.bytes,
        run.frames,
        run.turns,
        run.turns.div_ceil(2),
        run.elapsed.as_secs_f64() * 1e3,
        full_list_bytes(ids.len(), ids.len()),
    );
    assert_eq!(run.turns, 2, "one round trip");
    assert!(run.bytes < 10_000, "{} bytes", run.bytes);
}

#[test]
fn one_percent_missing_on_each_side_of_100k() {
    let mut rng = StdRng::seed_from_u64(2);
    let shared = random_ids(&mut rng, 99_000);
    // Sorted, so which side gets which id (and the byte count) is the same every run.
    let extra = sorted(&random_ids(&mut rng, 2_000));
    let mut a = shared.clone();
    let mut b = shared;
    for (i, id) in extra.iter().copied().enumerate() {
        if i % 2 == 0 {
            a.insert(id)
        } else {
            b.insert(id)
        };
    }
    assert_eq!((a.len(), b.len()), (100_000, 100_000));
    let run = reconcile(&a, &b);
    assert_exact(&a, &b, &run);
    let full = full_list_bytes(a.len(), b.len());
    let ids_only = 32 * 2_000;
    eprintln!(
        "rbsr 100,000 vs 100,000, 1,000 missing each side: {} bytes in {} frames, {} turns, {:.1} ms; \
         the differing ids alone: {ids_only} bytes; full lists: {full} bytes ({:.1} %)",
        run.bytes,
        run.frames,
        run.turns,
        run.elapsed.as_secs_f64() * 1e3,
        100.0 * run.bytes as f64 / full as f64,
    );
    assert!(run.bytes < full / 8, "{} bytes", run.bytes);
    assert!(run.turns <= 8, "{} turns", run.turns);
}

#[test]
fn empty_against_full_sends_the_ids_in_bounded_frames() {
    let mut rng = StdRng::seed_from_u64(3);
    let full = random_ids(&mut rng, 100_000);
    let empty = HashSet::new();
    for (a, b, label) in [
        (&empty, &full, "empty starts"),
        (&full, &empty, "full starts"),
    ] {
        let run = reconcile(a, b);
        assert_exact(a, b, &run);
        eprintln!(
            "rbsr {label}, 0 vs 100,000: {} bytes in {} frames, {} turns; full lists: {} bytes",
            run.bytes,
            run.frames,
            run.turns,
            full_list_bytes(0, 100_000)
        );
        assert!(run.turns <= 4, "{} turns", run.turns);
        // Ids plus a little framing: under 1 % overhead over the bare ids.
        assert!(run.bytes < 3_200_000 * 101 / 100, "{} bytes", run.bytes);
    }
}

#[test]
fn disjoint_and_tiny_sets() {
    let mut rng = StdRng::seed_from_u64(4);
    let a = random_ids(&mut rng, 5_000);
    let b = random_ids(&mut rng, 3_000);
    assert_exact(&a, &b, &reconcile(&a, &b));
    let one = random_ids(&mut rng, 1);
    let other = random_ids(&mut rng, 1);
    let none = HashSet::new();
    for (x, y) in [
        (&none, &none),
        (&none, &one),
        (&one, &none),
        (&one, &one),
        (&one, &other),
    ] {
        let run = reconcile(x, y);
        assert_exact(x, y, &run);
        assert!(run.turns <= 2, "{} turns", run.turns);
    }
}

#[test]
fn random_sets_by_the_thousand_reconcile_exactly() {
    let mut rng = StdRng::seed_from_u64(5);
    for case in 0..2_000 {
        let (n, only_a, only_b) = (
            rng.random_range(0..400),
            rng.random_range(0..40),
            rng.random_range(0..40),
        );
        let shared = random_ids(&mut rng, n);
        let mut a = shared.clone();
        let mut b = shared;
        a.extend(random_ids(&mut rng, only_a));
        b.extend(random_ids(&mut rng, only_b));
        if case % 10 == 0 {
            // Ids that share long prefixes: bounds must still separate them. The tails stay
            // random: ids that differ in a few low bits only ({x+0, x+2, x+4} against
            // {x+1, x+2, x+3}) have equal sums, which real BLAKE3 hashes never do.
            let base: Hash = rng.random();
            let near = |rng: &mut StdRng, shared: usize| {
                let mut id = base;
                rng.fill(&mut id[shared..]);
                id
            };
            for _ in 0..rng.random_range(1..60) {
                let id = near(&mut rng, 24);
                if rng.random_bool(0.5) {
                    a.insert(id);
                }
                if rng.random_bool(0.5) {
                    b.insert(id);
                }
            }
            // Two ids that differ in the last byte only, one on each side.
            let x = near(&mut rng, 31);
            let mut y = x;
            y[31] ^= 1;
            a.insert(x);
            b.insert(y);
        }
        let run = reconcile(&a, &b);
        assert_exact(&a, &b, &run);
    }
    // A few larger ones.
    for n in [5_000, 20_000] {
        let shared = random_ids(&mut rng, n);
        let mut a = shared.clone();
        let mut b = shared;
        a.extend(random_ids(&mut rng, n / 7));
        b.extend(random_ids(&mut rng, n / 13));
        assert_exact(&a, &b, &reconcile(&a, &b));
    }
}

#[test]
fn replaced_sessions_are_ignored_and_the_new_one_finishes() {
    let mut rng = StdRng::seed_from_u64(6);
    let a_ids = random_ids(&mut rng, 500);
    let mut b_ids = a_ids.clone();
    b_ids.extend(random_ids(&mut rng, 5));
    let (a_items, b_items) = (sorted(&a_ids), sorted(&b_ids));
    let mut a = Reconciliations::default();
    let mut b = Reconciliations::default();
    let first = a.start(a_items.clone());
    let second = a.start(a_items.clone());
    // B answers both; A ignores the answers to the first.
    let mut answers_first = Vec::new();
    for m in &first {
        answers_first.extend(b.receive(m, || b_items.clone()).unwrap().out);
    }
    for m in &answers_first {
        let p = a.receive(m, || a_items.clone()).unwrap();
        assert!(p.out.is_empty() && p.need.is_empty() && p.finished.is_none());
    }
    let mut to_b: VecDeque<_> = second.into();
    let mut need = HashSet::new();
    let mut finished = 0;
    while let Some(m) = to_b.pop_front() {
        // A late frame of B's first session is also ignored by B after the second started.
        for answer in b.receive(&m, || b_items.clone()).unwrap().out {
            let p = a.receive(&answer, || a_items.clone()).unwrap();
            need.extend(p.need);
            finished += usize::from(p.finished.is_some());
            to_b.extend(p.out);
        }
    }
    assert_eq!(need, b_ids.difference(&a_ids).copied().collect());
    assert_eq!(finished, 1);
    // Anything more for the finished session is an error.
    let stale_answer = Reconcile {
        session: 2,
        initiator: false,
        round: 3,
        ..Default::default()
    };
    assert_eq!(
        a.receive(&stale_answer, || a_items.clone()).unwrap_err(),
        ReconcileError::AfterEnd
    );
    let never_started = Reconcile {
        session: 9,
        ..stale_answer
    };
    assert!(matches!(
        a.receive(&never_started, || a_items.clone()),
        Err(ReconcileError::Inconsistent(_))
    ));
}

#[test]
fn both_sides_starting_at_once_run_two_sessions_on_one_stream() {
    // E.g. both resume together: each side runs the session it started and the peer's.
    let mut rng = StdRng::seed_from_u64(7);
    let shared = random_ids(&mut rng, 3_000);
    let mut a_ids = shared.clone();
    let mut b_ids = shared;
    a_ids.extend(random_ids(&mut rng, 30));
    b_ids.extend(random_ids(&mut rng, 20));
    let (a_items, b_items) = (sorted(&a_ids), sorted(&b_ids));
    let mut a = Side::default();
    let mut b = Side::default();
    let mut to_b: VecDeque<Reconcile> = a.recon.start(a_items.clone()).into();
    let mut to_a: VecDeque<Reconcile> = b.recon.start(b_items.clone()).into();
    while !to_a.is_empty() || !to_b.is_empty() {
        if let Some(m) = to_b.pop_front() {
            let p = b.recon.receive(&m, || b_items.clone()).unwrap();
            // Each session reports its own learning; the union is what matters here.
            b.need.extend(p.need);
            b.have.extend(p.have);
            b.summaries.extend(p.finished);
            to_a.extend(p.out);
        }
        if let Some(m) = to_a.pop_front() {
            let p = a.recon.receive(&m, || a_items.clone()).unwrap();
            a.need.extend(p.need);
            a.have.extend(p.have);
            a.summaries.extend(p.finished);
            to_b.extend(p.out);
        }
    }
    assert_eq!(a.summaries.len(), 2);
    assert_eq!(b.summaries.len(), 2);
    assert!(!a.recon.busy() && !b.recon.busy());
    assert!(a.need == b_ids.difference(&a_ids).copied().collect());
    assert!(b.need == a_ids.difference(&b_ids).copied().collect());
}

// --- A hostile or broken peer: every malformed frame is an error, never a panic. ---

fn items(n: u8) -> Arc<[Hash]> {
    (1..=n).map(|i| [i; 32]).collect::<Vec<_>>().into()
}

fn range(out: &mut Vec<u8>, upper: Bound, payload: PayloadRef<'_>) {
    codec::encode_range(out, &upper, &payload);
}

fn key(first: u8) -> Bound {
    let mut k = [0u8; 32];
    k[0] = first;
    Bound::Key(k)
}

fn respond(frame: &[u8]) -> Result<Step, ReconcileError> {
    Session::respond(items(20)).receive(0, frame, false)
}

#[test]
fn unsorted_bounds_and_ids_are_refused() {
    let fp = [0u8; 16];
    let mut f = Vec::new();
    range(&mut f, key(9), PayloadRef::Fingerprint(&fp));
    range(&mut f, key(5), PayloadRef::Fingerprint(&fp));
    assert_eq!(respond(&f).unwrap_err(), ReconcileError::Unsorted);
    // An equal bound is not an increase either.
    let mut f = Vec::new();
    range(&mut f, key(9), PayloadRef::Skip);
    range(&mut f, key(9), PayloadRef::Skip);
    assert_eq!(respond(&f).unwrap_err(), ReconcileError::Unsorted);
    // Nothing after infinity.
    let mut f = Vec::new();
    range(&mut f, Bound::Infinity, PayloadRef::Skip);
    range(&mut f, key(9), PayloadRef::Skip);
    assert_eq!(respond(&f).unwrap_err(), ReconcileError::Unsorted);
    // Ids out of order, duplicated, or outside their range.
    for ids in [
        vec![[3u8; 32], [2u8; 32]],
        vec![[3u8; 32], [3u8; 32]],
        vec![[200u8; 32]],
    ] {
        let mut f = Vec::new();
        range(&mut f, key(100), PayloadRef::IdList(&ids));
        let e = respond(&f).unwrap_err();
        assert!(
            matches!(e, ReconcileError::Unsorted | ReconcileError::IdOutOfRange),
            "{e:?}"
        );
    }
}

#[test]
fn truncated_and_oversized_frames_are_refused_before_allocating() {
    let fp = [7u8; 16];
    let mut f = Vec::new();
    range(&mut f, Bound::Infinity, PayloadRef::Fingerprint(&fp));
    for cut in 1..f.len() {
        assert_eq!(
            respond(&f[..cut]).unwrap_err(),
            ReconcileError::Truncated,
            "cut at {cut}"
        );
    }
    // An IdList announcing a billion ids in a few bytes.
    let mut f = vec![(2 << 6) | 63];
    prost::encoding::encode_varint(1 << 30, &mut f);
    f.extend_from_slice(&[1; 64]);
    assert_eq!(respond(&f).unwrap_err(), ReconcileError::Truncated);
    // A varint that never ends.
    let f = [(2 << 6) | 63, 0xff, 0xff, 0xff];
    assert_eq!(respond(&f).unwrap_err(), ReconcileError::Truncated);
    // A bound longer than 32 bytes.
    let f = [40u8];
    assert!(matches!(
        respond(&f).unwrap_err(),
        ReconcileError::Malformed(_)
    ));
    // Over the frame size.
    let big = vec![0u8; MAX_FRAME_BYTES + 1];
    assert_eq!(
        respond(&big).unwrap_err(),
        ReconcileError::FrameTooLarge(MAX_FRAME_BYTES + 1)
    );
}

#[test]
fn too_many_ranges_in_a_frame_are_refused() {
    let mut f = Vec::new();
    for i in 0..=MAX_RANGES_PER_FRAME as u32 {
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&(i + 1).to_be_bytes());
        range(&mut f, Bound::Key(k), PayloadRef::Skip);
    }
    assert!(f.len() <= MAX_FRAME_BYTES);
    assert_eq!(respond(&f).unwrap_err(), ReconcileError::TooManyRanges);
}

#[test]
fn id_diffs_must_match_our_ids() {
    // Claims we have 3 ids in the range (we have 20).
    let mut f = Vec::new();
    range(
        &mut f,
        Bound::Infinity,
        PayloadRef::IdDiff {
            ids: &[],
            count: 3,
            lacking: &[0],
        },
    );
    assert!(matches!(
        respond(&f).unwrap_err(),
        ReconcileError::Inconsistent(_)
    ));
    // Says we lack an id we have.
    let mut f = Vec::new();
    range(
        &mut f,
        Bound::Infinity,
        PayloadRef::IdDiff {
            ids: &[[4u8; 32]],
            count: 20,
            lacking: &[0, 0, 0],
        },
    );
    assert!(matches!(
        respond(&f).unwrap_err(),
        ReconcileError::Inconsistent(_)
    ));
    // Bits set past the count.
    let mut f = Vec::new();
    range(
        &mut f,
        Bound::Infinity,
        PayloadRef::IdDiff {
            ids: &[],
            count: 20,
            lacking: &[0, 0, 0xf0],
        },
    );
    assert!(matches!(
        respond(&f).unwrap_err(),
        ReconcileError::Malformed(_)
    ));
}

#[test]
fn rounds_out_of_order_after_the_end_or_past_the_limit_are_refused() {
    let fp = [0xaa; 16];
    let mut f = Vec::new();
    range(&mut f, Bound::Infinity, PayloadRef::Fingerprint(&fp));
    let mut s = Session::respond(items(100));
    assert!(matches!(
        s.receive(1, &f, false).unwrap_err(),
        ReconcileError::UnexpectedRound { .. }
    ));
    // A peer whose fingerprint never matches, turn after turn: stopped at the limit.
    let mut round = 0;
    let err = loop {
        match s.receive(round, &f, false) {
            Ok(step) => {
                assert!(!step.done);
                assert_eq!(step.frames.len(), 1);
                round += 2;
            }
            Err(e) => break e,
        }
    };
    assert_eq!(err, ReconcileError::TooManyRounds(MAX_TURNS));
    assert!(round >= MAX_TURNS);
    // After the end: an equal-fingerprint turn ends the session, anything more is refused.
    let mut s = Session::respond(Arc::from(Vec::new()));
    let mut f = Vec::new();
    range(
        &mut f,
        Bound::Infinity,
        PayloadRef::Fingerprint(&fingerprint::fingerprint(&[])),
    );
    let step = s.receive(0, &f, false).unwrap();
    assert!(step.done && step.frames.len() == 1 && step.frames[0].ranges.is_empty());
    assert_eq!(
        s.receive(2, &f, false).unwrap_err(),
        ReconcileError::AfterEnd
    );
}

#[test]
fn sort_ids_orders_as_a_plain_sort_also_with_equal_prefixes() {
    let mut rng = StdRng::seed_from_u64(11);
    let mut ids: Vec<Hash> = random_ids(&mut rng, 5_000).into_iter().collect();
    // Runs that share their first 16 bytes (never seen among real hashes) and differ
    // only after it, in both orders.
    for tail in [9u8, 3, 7, 0, 255] {
        let mut id = [0x42; 32];
        id[31] = tail;
        ids.push(id);
    }
    let mut expected = ids.clone();
    expected.sort_unstable();
    sort_ids(&mut ids);
    assert_eq!(ids, expected);
    let mut empty: Vec<Hash> = Vec::new();
    sort_ids(&mut empty);
    assert!(empty.is_empty());
}
