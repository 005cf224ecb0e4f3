//! Hostile and forged RIBLT turns: refused, or answered with a Fallback, never obeyed.

use std::sync::Arc;

use can_proto::peer::Reconcile;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::codec::{self, FrameWriter, Section};
use super::tests::{opening, sets};
use super::*;
use crate::reconcile::{METHOD_RBSR, METHOD_RIBLT, ReconcileError, Reconciliations};

/// The responder's answer (round 1) to the session that `first` opened.
fn reply(first: &[Reconcile], sections: Vec<Section>) -> Reconcile {
    let mut w = FrameWriter::default();
    for s in sections {
        w.push(s);
    }
    Reconcile {
        initiator: false,
        round: 1,
        ranges: w.finish().remove(0),
        ..first[0].clone()
    }
}

/// An initiator's turn 0 of session 1 carrying `ranges`.
fn turn0(ranges: Vec<u8>) -> Reconcile {
    Reconcile {
        session: 1,
        initiator: true,
        round: 0,
        ranges,
        more: false,
        set: 0,
        method: METHOD_RIBLT,
    }
}

#[test]
fn a_responder_over_the_limit_falls_back_to_rbsr() {
    // B claims nothing special; A announces more ids than RIBLT takes, so B answers
    // Fallback and A reconciles with RBSR over the same ids.
    let (a, b) = sets(14, 300, 4, 6);
    let mut a_side = Reconciliations::default().with_riblt(true);
    let mut b_side = Reconciliations::default().with_riblt(true);
    let mut open = a_side.start(a.clone());
    let mut w = FrameWriter::default();
    w.push(Section::Open {
        salt: [9; 16],
        items: MAX_ITEMS as u64 + 1,
    });
    w.push(Section::Digest([0xee; 16]));
    open[0].ranges = w.finish().remove(0);
    let p = b_side.receive(&open[0], || b.clone()).expect("answered");
    assert!(
        p.finished.is_none(),
        "a fallback is not a finished reconciliation"
    );
    let back = p.out;
    assert_eq!(
        codec::decode(&back[0].ranges).unwrap(),
        vec![Section::Fallback]
    );
    let p = a_side.receive(&back[0], || a.clone()).expect("fallback");
    assert!(!p.out.is_empty() && p.out.iter().all(|m| m.method == METHOD_RBSR));
    assert!(p.out[0].session > open[0].session, "a new session");
}

#[test]
fn hostile_frames_are_refused_not_obeyed() {
    let (a, b) = sets(15, 500, 30, 30);
    let open = || {
        let mut a_side = Reconciliations::default().with_riblt(true);
        let first = a_side.start(a.clone());
        (a_side, first)
    };
    // Truncated and unknown sections.
    let (_, first) = open();
    for bad in [
        vec![2u8, 0, 200],
        vec![9u8],
        vec![1u8, 0, 0],
        vec![4u8, 5, 1, 2],
    ] {
        let mut m = first[0].clone();
        m.ranges = bad;
        let mut b_side = Reconciliations::default().with_riblt(true);
        assert!(b_side.receive(&m, || b.clone()).is_err());
    }
    // More symbols than the responder asked for.
    let (_, first) = open();
    let mut b_side = Reconciliations::default().with_riblt(true);
    let p = b_side.receive(&first[0], || b.clone()).expect("turn 0");
    let answer = codec::decode(&p.out[0].ranges).unwrap();
    assert!(
        matches!(answer[0], Section::Open { items, .. } if items == b.len() as u64),
        "the first request tells the responder's id count: {answer:?}"
    );
    let Some(&Section::More { total }) = answer.get(1) else {
        panic!("60 differences do not decode from 8 symbols")
    };
    let mut w = FrameWriter::default();
    w.push(Section::Symbols {
        first: FIRST_SYMBOLS,
        symbols: vec![Symbol::default(); (total - FIRST_SYMBOLS + 1) as usize],
    });
    let m = Reconcile {
        round: 2,
        ranges: w.finish().remove(0),
        ..first[0].clone()
    };
    assert!(matches!(
        b_side.receive(&m, || b.clone()),
        Err(ReconcileError::Inconsistent(_))
    ));
    // Turn 0 with more than the first symbols.
    let (_, first) = open();
    let too_many = vec![Symbol::default(); FIRST_SYMBOLS as usize + 1];
    let m = Reconcile {
        ranges: opening([1; 16], 10, too_many).finish().remove(0),
        ..first[0].clone()
    };
    let mut b_side = Reconciliations::default().with_riblt(true);
    assert!(b_side.receive(&m, || b.clone()).is_err());
    // Requests the initiator must not obey: without the responder's id count, past the cap
    // its count gives, and more than 8× what was sent.
    let salt = |first: &[Reconcile]| match codec::decode(&first[0].ranges).unwrap()[0] {
        Section::Open { salt, .. } => salt,
        ref other => panic!("turn 0 opens: {other:?}"),
    };
    for (with_open, their_items, total) in [
        (false, 0, 16),
        (true, 10, MAX_SYMBOLS),
        (true, 1 << 20, FIRST_SYMBOLS * 8 + 1),
        (true, 10, MAX_SYMBOLS + 1),
    ] {
        let (mut a_side, first) = open();
        let mut sections = Vec::new();
        if with_open {
            sections.push(Section::Open {
                salt: salt(&first),
                items: their_items,
            });
        }
        sections.push(Section::More { total });
        let m = reply(&first, sections);
        assert!(
            a_side.receive(&m, || a.clone()).is_err(),
            "obeyed More {total} (Open: {with_open}, {their_items} ids)"
        );
    }
    // Told we lack an id we hold.
    let (mut a_side, first) = open();
    let m = reply(&first, vec![Section::Ids(vec![a[0]]), Section::Done]);
    assert!(matches!(
        a_side.receive(&m, || a.clone()),
        Err(ReconcileError::Inconsistent(_))
    ));
}

#[test]
fn an_initiator_sending_garbage_gets_a_fallback_not_an_endless_session() {
    // Random symbols never decode: the responder asks for more until its cap, then answers
    // Fallback (RBSR instead), well within the turn limit and without an error.
    let (_, b) = sets(16, 200, 0, 10);
    let mut rng = StdRng::seed_from_u64(17);
    let mut b_side = Reconciliations::default().with_riblt(true);
    let garbage = |rng: &mut StdRng, n: u64| -> Vec<Symbol> {
        (0..n)
            .map(|_| Symbol {
                sum: rng.random(),
                check: rng.random(),
                count: rng.random(),
            })
            .collect()
    };
    let symbols = garbage(&mut rng, FIRST_SYMBOLS);
    let mut msg = turn0(opening([3; 16], 200, symbols).finish().remove(0));
    let mut sent = FIRST_SYMBOLS;
    loop {
        let p = b_side.receive(&msg, || b.clone()).expect("no error");
        let answer = codec::decode(&p.out[0].ranges).unwrap();
        match answer.last() {
            Some(Section::More { total }) => {
                let mut w = FrameWriter::default();
                w.push(Section::Symbols {
                    first: sent,
                    symbols: garbage(&mut rng, total - sent),
                });
                sent = *total;
                let frames = w.finish();
                assert_eq!(frames.len(), 1, "small sets, small requests");
                msg.round += 2;
                msg.ranges = frames.into_iter().next().unwrap();
            }
            Some(Section::Fallback) => {
                assert!(p.finished.is_none() && !b_side.busy());
                // The cap: 1.5 × (its 200 claimed + our 210) + 256.
                assert!(
                    sent <= (200 + 210) * 3 / 2 + 256,
                    "{sent} symbols past the cap"
                );
                return;
            }
            other => panic!("garbage decoded: {other:?}"),
        }
    }
}

#[test]
fn a_turn_0_without_digest_or_with_keys_unasked_is_refused() {
    let (a, b) = sets(23, 100, 0, 0);
    let first = Reconciliations::default().with_riblt(true).start(a.clone());
    // The same turn 0 without its Digest.
    let sections: Vec<Section> = codec::decode(&first[0].ranges)
        .unwrap()
        .into_iter()
        .filter(|s| !matches!(s, Section::Digest(_)))
        .collect();
    let mut w = FrameWriter::default();
    for s in sections {
        w.push(s);
    }
    let m = Reconcile {
        ranges: w.finish().remove(0),
        ..first[0].clone()
    };
    let mut b_side = Reconciliations::default().with_riblt(true);
    assert!(matches!(
        b_side.receive(&m, || b.clone()),
        Err(ReconcileError::Malformed(_))
    ));
    // An initiator that sent no symbols is told to resolve keys: refused.
    let (large, _) = sets(24, EAGER_ITEMS + 1, 0, 0);
    let mut a_side = Reconciliations::default().with_riblt(true);
    let first = a_side.start(large.clone());
    let m = reply(
        &first,
        vec![
            Section::Ids(Vec::new()),
            Section::Keys(vec![42]),
            Section::Done,
        ],
    );
    assert!(matches!(
        a_side.receive(&m, || large.clone()),
        Err(ReconcileError::Inconsistent(_))
    ));
}

#[test]
fn a_difference_that_peels_to_nothing_after_digests_differed_falls_back() {
    // Turn 0 whose digest differs from ours but whose symbols are exactly ours: forged (or
    // two ids sharing a key). Not "in sync": Fallback, and the initiator runs RBSR.
    let (_, b) = sets(25, 300, 0, 0);
    let salt = [5u8; 16];
    let keys: Arc<[u64]> = b.iter().map(|id| key(&salt, id)).collect();
    let symbols = Encoder::new(keys).next_batch(FIRST_SYMBOLS);
    let msg = turn0(opening(salt, b.len() as u64, symbols).finish().remove(0));
    let mut b_side = Reconciliations::default().with_riblt(true);
    let p = b_side.receive(&msg, || b.clone()).expect("answered");
    assert_eq!(
        codec::decode(&p.out[0].ranges).unwrap(),
        vec![Section::Fallback]
    );
    assert!(p.finished.is_none() && p.need.is_empty() && p.have.is_empty());
}
