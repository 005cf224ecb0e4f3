//! The "rbsr-v1" range encoding carried in `Reconcile.ranges`.
//!
//! A frame is a sequence of ranges. Each range is the span from the previous range's upper
//! bound (or the turn's start, bound 0) up to its own upper bound, exclusive:
//!
//! ```text
//! range   = header bound-bytes payload
//! header  = mode << 6 | len        (one byte; len 0..=32 = bound prefix length, 63 = ∞)
//! bound   = len bytes: a prefix of a 32-byte value, the rest of which is zeros
//! payload = Skip:        nothing
//!           Fingerprint: 16 bytes
//!           IdList:      varint n, n × 32-byte ids (ascending, inside the range)
//!           IdDiff:      varint k, k × 32-byte ids (ascending, inside the range),
//!                        varint m, ceil(m / 8) bytes bitmap (bit i, LSB first = the
//!                        receiver's i-th id in the range is missing at the sender)
//! ```
//!
//! Bounds are minimal prefixes that separate two neighbouring ids; ids are uniformly random,
//! so a bound takes about log256(N) + 1 bytes. The decoder checks everything a hostile peer
//! could get wrong (order, lengths, counts, limits) before it allocates.

use prost::encoding::{decode_varint, encode_varint, encoded_len_varint};

use super::fingerprint::{FINGERPRINT_LEN, Fingerprint};
use super::{Hash, ReconcileError};

/// Largest `ranges` payload of one frame, sent or accepted.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// Most ranges in one frame, sent or accepted.
pub const MAX_RANGES_PER_FRAME: usize = 4096;

const INFINITY_LEN: u8 = 63;

/// An exclusive upper bound: a 32-byte value (a prefix padded with zeros), or past every id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Bound {
    Key(Hash),
    Infinity,
}

impl Bound {
    pub const ZERO: Bound = Bound::Key([0; 32]);

    /// Whether `id` lies below this bound.
    pub fn above(&self, id: &Hash) -> bool {
        match self {
            Bound::Key(k) => id < k,
            Bound::Infinity => true,
        }
    }

    /// The shortest bound `b` with `lo < b <= hi` (for `lo < hi`): a prefix of `hi` one byte
    /// longer than what the two share.
    pub fn between(lo: &Hash, hi: &Hash) -> Bound {
        let shared = lo.iter().zip(hi).take_while(|(a, b)| a == b).count();
        let len = (shared + 1).min(32);
        let mut key = [0u8; 32];
        key[..len].copy_from_slice(&hi[..len]);
        Bound::Key(key)
    }

    fn prefix_len(&self) -> usize {
        match self {
            Bound::Key(k) => 32 - k.iter().rev().take_while(|b| **b == 0).count(),
            Bound::Infinity => 0,
        }
    }

    fn encoded_len(&self) -> usize {
        1 + self.prefix_len()
    }
}

/// Which payload a range carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Skip = 0,
    Fingerprint = 1,
    IdList = 2,
    IdDiff = 3,
}

/// A decoded range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub upper: Bound,
    pub payload: Payload,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Nothing to do here (equal, or already settled).
    Skip,
    /// The sender's fingerprint of its ids in the range.
    Fingerprint(Fingerprint),
    /// All of the sender's ids in the range.
    IdList(Vec<Hash>),
    /// The answer to an IdList: the ids the receiver lacks, and which of the receiver's
    /// `count` ids in the range the sender lacks (bitmap, LSB first).
    IdDiff {
        ids: Vec<Hash>,
        count: usize,
        lacking: Vec<u8>,
    },
}

/// What a range to be written carries (borrowed, so the ids are not copied).
#[derive(Debug, Clone, Copy)]
pub enum PayloadRef<'a> {
    Skip,
    Fingerprint(&'a Fingerprint),
    IdList(&'a [Hash]),
    IdDiff {
        ids: &'a [Hash],
        count: usize,
        lacking: &'a [u8],
    },
}

impl PayloadRef<'_> {
    fn mode(&self) -> Mode {
        match self {
            PayloadRef::Skip => Mode::Skip,
            PayloadRef::Fingerprint(_) => Mode::Fingerprint,
            PayloadRef::IdList(_) => Mode::IdList,
            PayloadRef::IdDiff { .. } => Mode::IdDiff,
        }
    }

    fn encoded_len(&self) -> usize {
        let ids = |n: usize| encoded_len_varint(n as u64) + 32 * n;
        match self {
            PayloadRef::Skip => 0,
            PayloadRef::Fingerprint(_) => FINGERPRINT_LEN,
            PayloadRef::IdList(ids_) => ids(ids_.len()),
            PayloadRef::IdDiff {
                ids: ids_,
                count,
                lacking,
            } => ids(ids_.len()) + encoded_len_varint(*count as u64) + lacking.len(),
        }
    }
}

/// Bytes one range takes.
pub fn range_len(upper: &Bound, payload: &PayloadRef<'_>) -> usize {
    upper.encoded_len() + payload.encoded_len()
}

/// Appends one range.
pub fn encode_range(out: &mut Vec<u8>, upper: &Bound, payload: &PayloadRef<'_>) {
    let len = upper.prefix_len();
    let header_len = match upper {
        Bound::Key(_) => len as u8,
        Bound::Infinity => INFINITY_LEN,
    };
    out.push((payload.mode() as u8) << 6 | header_len);
    if let Bound::Key(k) = upper {
        out.extend_from_slice(&k[..len]);
    }
    let put_ids = |out: &mut Vec<u8>, ids: &[Hash]| {
        encode_varint(ids.len() as u64, out);
        for id in ids {
            out.extend_from_slice(id);
        }
    };
    match payload {
        PayloadRef::Skip => {}
        PayloadRef::Fingerprint(fp) => out.extend_from_slice(&fp[..]),
        PayloadRef::IdList(ids) => put_ids(out, ids),
        PayloadRef::IdDiff {
            ids,
            count,
            lacking,
        } => {
            put_ids(out, ids);
            encode_varint(*count as u64, out);
            out.extend_from_slice(lacking);
        }
    }
}

/// Decodes one frame whose first range starts at `lower`. Checks that bounds strictly
/// increase, that ids are ascending and inside their range, and every length and limit.
pub fn decode(bytes: &[u8], mut lower: Bound) -> Result<Vec<Range>, ReconcileError> {
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(ReconcileError::FrameTooLarge(bytes.len()));
    }
    let mut buf = bytes;
    let mut ranges = Vec::new();
    while let Some((&header, rest)) = buf.split_first() {
        buf = rest;
        if ranges.len() == MAX_RANGES_PER_FRAME {
            return Err(ReconcileError::TooManyRanges);
        }
        let len = header & 0x3f;
        let upper = match len {
            INFINITY_LEN => Bound::Infinity,
            0..=32 => {
                let prefix = take(&mut buf, usize::from(len))?;
                let mut key = [0u8; 32];
                key[..prefix.len()].copy_from_slice(prefix);
                Bound::Key(key)
            }
            _ => return Err(ReconcileError::Malformed("bound longer than 32 bytes")),
        };
        if upper <= lower {
            return Err(ReconcileError::Unsorted);
        }
        let payload = match header >> 6 {
            0 => Payload::Skip,
            1 => {
                let mut fp = [0u8; FINGERPRINT_LEN];
                fp.copy_from_slice(take(&mut buf, FINGERPRINT_LEN)?);
                Payload::Fingerprint(fp)
            }
            2 => Payload::IdList(take_ids(&mut buf, &lower, &upper)?),
            _ => {
                let ids = take_ids(&mut buf, &lower, &upper)?;
                let count = take_count(&mut buf)?;
                let lacking = take(&mut buf, count.div_ceil(8))?.to_vec();
                if count % 8 != 0 && lacking.last().is_some_and(|b| b >> (count % 8) != 0) {
                    return Err(ReconcileError::Malformed("bitmap bits past its count"));
                }
                Payload::IdDiff {
                    ids,
                    count,
                    lacking,
                }
            }
        };
        ranges.push(Range { upper, payload });
        lower = upper;
    }
    Ok(ranges)
}

pub(crate) fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], ReconcileError> {
    if buf.len() < n {
        return Err(ReconcileError::Truncated);
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

/// A varint count, refused before any allocation if the frame cannot hold that many bits.
fn take_count(buf: &mut &[u8]) -> Result<usize, ReconcileError> {
    let n = decode_varint(buf).map_err(|_| ReconcileError::Truncated)?;
    if n > (MAX_FRAME_BYTES as u64) * 8 {
        return Err(ReconcileError::Truncated);
    }
    Ok(n as usize)
}

fn take_ids(buf: &mut &[u8], lower: &Bound, upper: &Bound) -> Result<Vec<Hash>, ReconcileError> {
    let n = take_count(buf)?;
    if n.saturating_mul(32) > buf.len() {
        return Err(ReconcileError::Truncated);
    }
    let mut ids: Vec<Hash> = Vec::with_capacity(n);
    for chunk in take(buf, n * 32)?.chunks_exact(32) {
        let mut id = [0u8; 32];
        id.copy_from_slice(chunk);
        let in_range = Bound::Key(id) >= *lower && upper.above(&id);
        if !in_range {
            return Err(ReconcileError::IdOutOfRange);
        }
        if ids.last().is_some_and(|prev| *prev >= id) {
            return Err(ReconcileError::Unsorted);
        }
        ids.push(id);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_separate_neighbours_minimally() {
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        a[..3].copy_from_slice(&[7, 1, 200]);
        b[..3].copy_from_slice(&[7, 2, 0]);
        let sep = Bound::between(&a, &b);
        assert!(Bound::Key(a) < sep && sep <= Bound::Key(b));
        assert_eq!(sep.encoded_len(), 3, "header + two prefix bytes");
        // Neighbours that differ only in the last byte.
        let mut c = a;
        c[31] = 1;
        let sep = Bound::between(&a, &c);
        assert!(Bound::Key(a) < sep && sep <= Bound::Key(c));
    }

    #[test]
    fn ranges_round_trip() {
        let ids: Vec<Hash> = (1..4u8).map(|i| [i * 10; 32]).collect();
        let fp = [9u8; FINGERPRINT_LEN];
        let lacking = [0b101u8];
        let mut out = Vec::new();
        let b1 = Bound::between(&ids[0], &ids[1]);
        encode_range(&mut out, &b1, &PayloadRef::IdList(&ids[..1]));
        let b2 = Bound::between(&ids[1], &ids[2]);
        encode_range(&mut out, &b2, &PayloadRef::Fingerprint(&fp));
        encode_range(
            &mut out,
            &Bound::Infinity,
            &PayloadRef::IdDiff {
                ids: &ids[2..],
                count: 3,
                lacking: &lacking,
            },
        );
        let got = decode(&out, Bound::ZERO).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].payload, Payload::IdList(ids[..1].to_vec()));
        assert_eq!(got[1].payload, Payload::Fingerprint(fp));
        assert_eq!(got[2].upper, Bound::Infinity);
        assert_eq!(
            got[2].payload,
            Payload::IdDiff {
                ids: ids[2..].to_vec(),
                count: 3,
                lacking: lacking.to_vec()
            }
        );
    }
}
