//! Rateless IBLT reconciliation (`can_sync::reconcile::riblt`): its section codec on raw
//! bytes, both sides of a session fed hostile turns, and two honest peers that must agree
//! on their difference.

use std::collections::BTreeSet;
use std::sync::Arc;

use arbitrary::Unstructured;
use can_proto::peer::Reconcile;
use can_sync::reconcile::codec::MAX_FRAME_BYTES;
use can_sync::reconcile::riblt::codec::{self, FrameWriter, Section};
use can_sync::reconcile::riblt::{MAX_SYMBOLS, Symbol};
use can_sync::reconcile::session::{MAX_NEED, MAX_TURNS};
use can_sync::reconcile::{Hash, METHOD_RIBLT, Reconciliations};

use super::rbsr::{Pair, id_set, overlapping_sets};
use super::{rest, structured};

/// The codec on arbitrary bytes: it refuses, or what it decodes encodes back to a frame
/// that decodes the same.
pub fn codec(data: &[u8]) {
    structured(data, |u| {
        let bytes = rest(u);
        if let Ok(sections) = codec::decode(bytes) {
            let mut again = Vec::new();
            for s in &sections {
                codec::encode(&mut again, s);
            }
            assert_eq!(codec::decode(&again).as_ref(), Ok(&sections), "round trip");
        }
        Ok(())
    })
}

/// One section a hostile peer might send, using our ids where that gets further.
fn section(u: &mut Unstructured<'_>, ours: &[Hash], received: u64) -> arbitrary::Result<Section> {
    Ok(match u.int_in_range(0..=6)? {
        0 => Section::Open {
            salt: u.arbitrary()?,
            items: u.arbitrary::<u64>()? % (1 << 22),
        },
        1 => {
            let n = u.int_in_range(0..=300)?;
            let mut symbols = Vec::with_capacity(n);
            for _ in 0..n {
                symbols.push(Symbol {
                    sum: u.arbitrary()?,
                    check: u.arbitrary()?,
                    count: u.arbitrary()?,
                });
            }
            Section::Symbols {
                first: if u.ratio(3, 4)? {
                    received
                } else {
                    u.arbitrary()?
                },
                symbols,
            }
        }
        2 => Section::More {
            total: if u.ratio(3, 4)? {
                received + u.int_in_range(0..=2000)?
            } else {
                u.arbitrary()?
            },
        },
        3 => {
            let n = u.int_in_range(0..=8)?;
            let mut ids = Vec::new();
            for _ in 0..n {
                ids.push(if !ours.is_empty() && u.ratio(1, 3)? {
                    ours[u.choose_index(ours.len())?]
                } else {
                    u.arbitrary()?
                });
            }
            Section::Ids(ids)
        }
        4 => Section::Keys(
            (0..u.int_in_range(0..=8)?)
                .map(|_| u.arbitrary())
                .collect::<Result<_, _>>()?,
        ),
        5 => Section::Done,
        _ => Section::Fallback,
    })
}

/// Either side of a RIBLT session over a random id set, fed up to 12 hostile turns (raw
/// bytes or well-formed sections): each is refused (`Err`) or answered within the limits;
/// never a panic, never an id we have named as needed.
pub fn hostile_session(data: &[u8]) {
    structured(data, |u| {
        let ours: Arc<[Hash]> = id_set(u, 64)?.into();
        let mut side = Reconciliations::default().with_riblt(true);
        // As the initiator we start; as the responder the peer's first turn opens.
        let initiator = u.arbitrary::<bool>()?;
        let mut round = if initiator {
            let _ = side.start(ours.clone());
            1
        } else {
            0
        };
        let mut received = 0u64;
        let mut need = BTreeSet::new();
        for _ in 0..u.int_in_range(1..=12)? {
            let ranges = if u.ratio(1, 8)? {
                let n = u.int_in_range(0..=256)?;
                u.bytes(n.min(u.len()))?.to_vec()
            } else {
                let mut w = FrameWriter::default();
                if !initiator && round == 0 {
                    w.push(Section::Open {
                        salt: u.arbitrary()?,
                        items: u.int_in_range(0..=200)?,
                    });
                }
                for _ in 0..u.int_in_range(0..=3)? {
                    w.push(section(u, &ours, received)?);
                }
                w.finish().remove(0)
            };
            let msg = Reconcile {
                session: 1,
                initiator: !initiator,
                round: if u.ratio(7, 8)? {
                    round
                } else {
                    u.arbitrary()?
                },
                ranges,
                more: u.ratio(1, 4)?,
                set: 0,
                method: METHOD_RIBLT,
            };
            match side.receive(&msg, || ours.clone()) {
                Ok(progress) => {
                    for out in &progress.out {
                        assert!(out.ranges.len() <= MAX_FRAME_BYTES, "frame over the limit");
                        assert!(out.round < MAX_TURNS + 2, "turn past the limit");
                        if let Ok(sections) = codec::decode(&out.ranges) {
                            for s in sections {
                                if let Section::More { total } = s {
                                    assert!(total <= MAX_SYMBOLS, "asked past the cap");
                                }
                            }
                        }
                    }
                    for id in &progress.need {
                        assert!(
                            ours.binary_search(id).is_err(),
                            "'need' names an id we have"
                        );
                        need.insert(*id);
                    }
                    assert!(need.len() <= MAX_NEED);
                    for id in &progress.have {
                        assert!(ours.binary_search(id).is_ok(), "'have' names an id we lack");
                    }
                    if !msg.more {
                        round = msg.round.saturating_add(2);
                    }
                    received += 300;
                }
                Err(_) => return Ok(()),
            }
        }
        Ok(())
    })
}

/// Two honest peers offering RIBLT over overlapping random sets: they finish and each
/// learns exactly the other's extra ids.
pub fn honest_pair(data: &[u8]) {
    structured(data, |u| {
        let Pair {
            set_a,
            set_b,
            extra_a,
            extra_b,
        } = overlapping_sets(u, &[0, 1, 3, 40, 1500])?;

        let mut a = Reconciliations::default().with_riblt(true);
        let mut b = Reconciliations::default().with_riblt(true);
        let mut to_b = a.start(set_a.clone());
        let mut to_a = Vec::new();
        let (mut a_need, mut b_need) = (BTreeSet::new(), BTreeSet::new());
        let mut finished = (false, false);
        let mut turns = 0usize;
        while !to_b.is_empty() || !to_a.is_empty() {
            for msg in std::mem::take(&mut to_b) {
                assert_eq!(msg.method, METHOD_RIBLT);
                let p = b
                    .receive(&msg, || set_b.clone())
                    .expect("honest frame refused");
                b_need.extend(p.need);
                finished.1 |= p.finished.is_some();
                to_a.extend(p.out);
            }
            for msg in std::mem::take(&mut to_a) {
                let p = a
                    .receive(&msg, || set_a.clone())
                    .expect("honest frame refused");
                a_need.extend(p.need);
                finished.0 |= p.finished.is_some();
                to_b.extend(p.out);
            }
            turns += 1;
            assert!(turns <= MAX_TURNS as usize, "did not converge");
        }
        assert!(finished.0 && finished.1, "a side never finished");
        assert_eq!(a_need, extra_b, "A must learn exactly B's extra ids");
        assert_eq!(b_need, extra_a, "B must learn exactly A's extra ids");
        Ok(())
    })
}
