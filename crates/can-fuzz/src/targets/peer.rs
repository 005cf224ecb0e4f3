//! Peer wire framing (`can_sync::wire`): what a remote agent sends on its QUIC streams.

use arbitrary::Unstructured;
use can_proto::peer::{Confirm, Control, Pake, Request, Response, control};
use can_sync::wire::{
    HASHES_PER_FRAME, MAX_FRAME, MAX_PRE_ADMISSION_FRAME, WireError, join_hashes, read_frame,
    split_hashes,
};
use futures_util::FutureExt;
use prost::Message;

use super::{rest, structured};

/// Reads frames until the stream ends or one is refused. An in-memory reader never waits,
/// so each read completes on its first poll, without a runtime.
fn read_all<M: Message + Default>(mut stream: &[u8], max: usize, each: impl Fn(&M)) {
    // Each frame consumes at least one byte, so this ends.
    loop {
        let before = stream.len();
        let read = read_frame::<M, _>(&mut stream, max)
            .now_or_never()
            .expect("reading from memory never waits");
        match read {
            Ok(Some(msg)) => {
                let used = before - stream.len();
                // The frame was within the limit, and what we decoded re-encodes within it.
                assert!(
                    used <= max + 10,
                    "a frame of {used} bytes passed the limit {max}"
                );
                assert!(msg.encoded_len() <= max, "decoded more than the frame held");
                each(&msg);
            }
            Ok(None) => return assert!(stream.is_empty(), "clean end with bytes left"),
            Err(WireError::TooLarge { len, max: m }) => {
                return assert!(len > m as u64, "refused a frame within the limit");
            }
            Err(_) => return,
        }
    }
}

/// Hash lists carried in a control message go through the splitter as the engine does; a
/// swarm Have through the layout and bitfield checks.
fn control_hashes(msg: &Control) {
    if let Some(control::Kind::Have(have)) = &msg.kind {
        return check_have(have);
    }
    let hashes = match &msg.kind {
        Some(control::Kind::HashList(list)) => &list.hashes,
        Some(control::Kind::Announce(a)) => &a.hashes,
        _ => return,
    };
    check_split(hashes);
}

fn check_have(have: &can_proto::peer::Have) {
    use can_sync::swarm::pieces::{Bits, Layout, MAX_PIECES};
    let Some(layout) = Layout::checked(have.size, have.piece_len) else {
        return;
    };
    assert!(layout.count() as u64 <= MAX_PIECES && layout.count() >= 2);
    if let Some(bits) = Bits::from_bytes(layout.count(), &have.have) {
        assert!(bits.count_ones() <= layout.count());
        assert_eq!(bits.as_bytes(), have.have.as_slice());
    }
}

/// A piece map in a Response: accepted only with one CV per piece of a valid layout.
fn check_map(msg: &Response) {
    use can_sync::swarm::pieces::{Layout, decode_map};
    let Some(can_proto::peer::response::Kind::Asset(asset)) = &msg.kind else {
        return;
    };
    if let Some(layout) = Layout::checked(asset.size, msg.piece_len)
        && let Some(map) = decode_map(&layout, &msg.pieces)
    {
        assert_eq!(map.len(), layout.count());
    }
}

fn check_split(bytes: &[u8]) {
    match split_hashes(bytes) {
        Ok(list) => {
            assert_eq!(list.len() * 32, bytes.len());
            assert_eq!(join_hashes(&list), bytes, "split and join disagree");
        }
        Err(_) => assert!(!bytes.len().is_multiple_of(32), "refused a whole hash list"),
    }
}

/// `read_frame` over every message type a peer sends, at both limits (before admission a
/// stranger gets 256 bytes, afterwards 1 MiB).
pub fn frames(data: &[u8]) {
    let Some((&pick, stream)) = data.split_first() else {
        return;
    };
    let max = if pick & 0x80 == 0 {
        MAX_FRAME
    } else {
        MAX_PRE_ADMISSION_FRAME
    };
    match pick & 0x7 {
        0 | 5 => read_all::<Control>(stream, max, control_hashes),
        1 => read_all::<Pake>(stream, max, |_| {}),
        2 => read_all::<Confirm>(stream, max, |_| {}),
        3 => read_all::<Request>(stream, max, |_| {}),
        4 => read_all::<Response>(stream, max, check_map),
        _ => {
            // A valid frame of arbitrary content first, so the decoder gets past the length.
            structured(stream, |u: &mut Unstructured<'_>| {
                let hashes = {
                    let n = u.int_in_range(0..=HASHES_PER_FRAME.min(64))?;
                    u.bytes(n * 32)?
                };
                let msg = Control {
                    kind: Some(control::Kind::Announce(can_proto::peer::Announce {
                        hashes: hashes.to_vec(),
                    })),
                };
                let mut framed = msg.encode_length_delimited_to_vec();
                framed.extend_from_slice(rest(u));
                read_all::<Control>(&framed, max, control_hashes);
                Ok(())
            })
        }
    }
}

/// The hash-list splitter on raw bytes.
pub fn hash_lists(data: &[u8]) {
    check_split(data);
}
