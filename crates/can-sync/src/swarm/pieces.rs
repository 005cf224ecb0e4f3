//! Pieces of a large asset and their proof: pure.
//!
//! An asset's name is its BLAKE3 hash, and BLAKE3 is a Merkle tree over 1 KiB chunks. A
//! piece is an aligned run of 2^k chunks, so it is a whole subtree: its chaining value (CV)
//! can be computed from its bytes alone, and the CVs of all pieces merge, in the tree's own
//! shape, to the asset's hash. A receiver that holds the piece map (one CV per piece,
//! checked against the hash once) verifies every piece as it arrives, from whichever peer
//! sent it, and knows which peer sent a bad one; the store re-hashes the whole asset again
//! when it is ingested.

use blake3::hazmat::{
    ChainingValue, HasherExt, Mode, merge_subtrees_non_root, merge_subtrees_root,
};

/// Assets this large or larger are fetched in pieces from every peer that has them.
pub const SWARM_MIN: u64 = 32 << 20;
/// The smallest piece: big enough that a request's round trip is small beside its bytes.
pub const MIN_PIECE: u64 = 4 << 20;
/// The most pieces an asset has (pieces grow with the asset past 16 GiB): a piece map is at
/// most 128 KiB and a bitfield 512 bytes, whatever the asset's size.
pub const MAX_PIECES: u64 = 4096;

/// A piece's chaining value.
pub type Cv = ChainingValue;

/// How an asset of `size` bytes is cut into pieces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub size: u64,
    pub piece_len: u64,
}

impl Layout {
    /// The layout we use for `size` bytes: `None` below [`SWARM_MIN`].
    pub fn for_size(size: u64) -> Option<Layout> {
        if size < SWARM_MIN {
            return None;
        }
        let mut piece_len = MIN_PIECE;
        while size.div_ceil(piece_len) > MAX_PIECES {
            piece_len = piece_len.checked_mul(2)?;
        }
        Some(Layout { size, piece_len })
    }

    /// A layout a peer names: valid only if it is the one we would use (so both sides
    /// agree on every piece's bounds, and a peer cannot make us track absurd piece counts).
    pub fn checked(size: u64, piece_len: u64) -> Option<Layout> {
        Layout::for_size(size).filter(|l| l.piece_len == piece_len)
    }

    pub fn count(&self) -> usize {
        // At most MAX_PIECES by construction.
        self.size.div_ceil(self.piece_len) as usize
    }

    /// Bytes of piece `i`: (offset, length).
    pub fn range(&self, i: usize) -> (u64, u64) {
        let start = i as u64 * self.piece_len;
        (start, self.piece_len.min(self.size.saturating_sub(start)))
    }

    /// The bitfield length in bytes.
    pub fn bits_len(&self) -> usize {
        self.count().div_ceil(8)
    }

    /// The pieces wholly inside `offset..offset+len`, if the range is made of whole pieces.
    pub fn pieces_of(&self, offset: u64, len: u64) -> Option<std::ops::Range<usize>> {
        let end = offset.checked_add(len)?;
        if len == 0 || end > self.size || !offset.is_multiple_of(self.piece_len) {
            return None;
        }
        if end != self.size && !end.is_multiple_of(self.piece_len) {
            return None;
        }
        let first = (offset / self.piece_len) as usize;
        Some(first..end.div_ceil(self.piece_len) as usize)
    }
}

/// Computes piece CVs from content streamed in order.
pub struct PieceHasher {
    layout: Layout,
    hasher: blake3::Hasher,
    /// Bytes of the current piece fed so far.
    fed: u64,
    index: usize,
    cvs: Vec<Cv>,
    /// Bytes were fed past the asset's end.
    extra: bool,
}

impl PieceHasher {
    pub fn new(layout: Layout) -> Self {
        Self {
            layout,
            hasher: blake3::Hasher::new(),
            fed: 0,
            index: 0,
            cvs: Vec::with_capacity(layout.count()),
            extra: false,
        }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() && self.index < self.layout.count() {
            let (_, len) = self.layout.range(self.index);
            let take = ((len - self.fed) as usize).min(data.len());
            self.hasher.update(&data[..take]);
            self.fed += take as u64;
            data = &data[take..];
            if self.fed == len {
                self.cvs.push(self.hasher.finalize_non_root());
                self.index += 1;
                self.fed = 0;
                self.hasher = blake3::Hasher::new();
                let (start, _) = self.layout.range(self.index);
                self.hasher.set_input_offset(start);
            }
        }
        if !data.is_empty() {
            self.extra = true;
        }
    }

    /// The CVs, if exactly the asset's bytes were fed.
    pub fn finish(self) -> Option<Vec<Cv>> {
        (self.cvs.len() == self.layout.count() && self.fed == 0 && !self.extra).then_some(self.cvs)
    }
}

/// The CV of piece `i` from its bytes.
pub fn piece_cv(layout: &Layout, i: usize, data: &[u8]) -> Cv {
    let (start, _) = layout.range(i);
    let mut h = blake3::Hasher::new();
    h.set_input_offset(start);
    h.update(data);
    h.finalize_non_root()
}

/// Whether `cvs` are the pieces of the asset named `hash` (merged in BLAKE3's tree shape).
pub fn verify_map(layout: &Layout, cvs: &[Cv], hash: &[u8; 32]) -> bool {
    if cvs.len() != layout.count() || cvs.len() < 2 {
        return false;
    }
    let root = merge(layout, cvs, layout.size, true);
    // Constant time is not needed: both values are public.
    root == *hash
}

/// The CV (or, at the top, the hash) of a subtree of `len` bytes.
/// `cvs` are that subtree's pieces. BLAKE3 puts the largest power-of-two number of chunks
/// strictly below `len` on the left; with pieces of 2^k chunks that is a whole number of
/// pieces, so the split falls between pieces.
fn merge(layout: &Layout, cvs: &[Cv], len: u64, root: bool) -> [u8; 32] {
    if cvs.len() == 1 {
        return cvs[0];
    }
    let left_len = blake3::hazmat::left_subtree_len(len);
    let split = (left_len / layout.piece_len) as usize;
    let l = merge(layout, &cvs[..split], left_len, false);
    let r = merge(layout, &cvs[split..], len - left_len, false);
    if root {
        *merge_subtrees_root(&l, &r, Mode::Hash).as_bytes()
    } else {
        merge_subtrees_non_root(&l, &r, Mode::Hash)
    }
}

/// The piece map as sent: the CVs, 32 bytes each.
pub fn encode_map(cvs: &[Cv]) -> Vec<u8> {
    cvs.iter().flat_map(|c| c.iter().copied()).collect()
}

/// A piece map as received, if it has one CV per piece.
pub fn decode_map(layout: &Layout, bytes: &[u8]) -> Option<Vec<Cv>> {
    if bytes.len() != layout.count() * 32 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(32)
            .map(|c| {
                let mut cv = [0u8; 32];
                cv.copy_from_slice(c);
                cv
            })
            .collect(),
    )
}

/// A set of pieces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bits {
    bytes: Vec<u8>,
    count: usize,
}

impl Bits {
    pub fn new(count: usize) -> Self {
        Self {
            bytes: vec![0; count.div_ceil(8)],
            count,
        }
    }

    /// A bitfield as received, if its length fits `count` and no bit past `count` is set.
    pub fn from_bytes(count: usize, bytes: &[u8]) -> Option<Self> {
        if bytes.len() != count.div_ceil(8) {
            return None;
        }
        let b = Self {
            bytes: bytes.to_vec(),
            count,
        };
        let extra = (count..bytes.len() * 8).any(|i| b.get(i));
        (!extra).then_some(b)
    }

    pub fn get(&self, i: usize) -> bool {
        self.bytes
            .get(i / 8)
            .is_some_and(|b| b & (1 << (i % 8)) != 0)
    }

    pub fn set(&mut self, i: usize, on: bool) {
        if i >= self.count {
            return;
        }
        if on {
            self.bytes[i / 8] |= 1 << (i % 8);
        } else {
            self.bytes[i / 8] &= !(1 << (i % 8));
        }
    }

    pub fn count_ones(&self) -> usize {
        self.bytes.iter().map(|b| b.count_ones() as usize).sum()
    }

    pub fn all(&self) -> bool {
        self.count_ones() == self.count
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(len: usize) -> Vec<u8> {
        // Not all zeros, so a piece in the wrong place gives another CV.
        (0..len).map(|i| (i * 31 + i / 4099) as u8).collect()
    }

    #[test]
    fn layouts_start_at_the_threshold_and_cap_the_piece_count() {
        assert_eq!(Layout::for_size(SWARM_MIN - 1), None);
        let l = Layout::for_size(SWARM_MIN).unwrap();
        assert_eq!((l.piece_len, l.count()), (MIN_PIECE, 8));
        let l = Layout::for_size(1 << 30).unwrap();
        assert_eq!((l.piece_len, l.count()), (MIN_PIECE, 256));
        let huge = Layout::for_size(5 << 40).unwrap();
        assert!(huge.count() as u64 <= MAX_PIECES && huge.piece_len.is_power_of_two());
        assert_eq!(Layout::checked(1 << 30, 8 << 20), None);
        assert!(Layout::for_size(u64::MAX).is_some_and(|l| l.count() as u64 <= MAX_PIECES));
    }

    #[test]
    fn piece_maps_merge_to_the_blake3_hash_at_every_shape() {
        // Scaled down: the same code with 4 KiB pieces covers 2..=9 pieces and a short last
        // piece, the shapes where BLAKE3's left-heavy split matters.
        for len in [8192usize, 8193, 12288, 16384, 20000, 32768, 36000] {
            let layout = Layout {
                size: len as u64,
                piece_len: 4096,
            };
            let data = content(len);
            let hash = *blake3::hash(&data).as_bytes();
            let mut streamed = PieceHasher::new(layout);
            for chunk in data.chunks(1000) {
                streamed.update(chunk);
            }
            let cvs = streamed.finish().unwrap();
            let one_by_one: Vec<Cv> = (0..layout.count())
                .map(|i| {
                    let (s, l) = layout.range(i);
                    piece_cv(&layout, i, &data[s as usize..(s + l) as usize])
                })
                .collect();
            assert_eq!(cvs, one_by_one, "{len}");
            assert!(verify_map(&layout, &cvs, &hash), "{len}");
            let mut bad = cvs.clone();
            bad[layout.count() - 1][0] ^= 1;
            assert!(!verify_map(&layout, &bad, &hash));
            bad = cvs.clone();
            bad.swap(0, 1);
            assert!(!verify_map(&layout, &bad, &hash));
            let map = encode_map(&cvs);
            assert_eq!(decode_map(&layout, &map), Some(cvs));
            assert_eq!(decode_map(&layout, &map[1..]), None);
        }
    }

    #[test]
    fn a_piece_from_the_wrong_offset_does_not_verify() {
        let layout = Layout {
            size: 16384,
            piece_len: 4096,
        };
        let data = vec![7u8; 16384];
        // Same bytes, other place: the offset is part of the CV.
        assert_ne!(
            piece_cv(&layout, 1, &data[..4096]),
            piece_cv(&layout, 2, &data[..4096])
        );
    }

    #[test]
    fn a_short_or_long_stream_has_no_map() {
        let layout = Layout {
            size: 8192,
            piece_len: 4096,
        };
        let mut h = PieceHasher::new(layout);
        h.update(&[1; 8000]);
        assert!(h.finish().is_none());
        let mut h = PieceHasher::new(layout);
        h.update(&[1; 8192]);
        h.update(&[1]);
        assert!(h.finish().is_none());
    }

    #[test]
    fn ranges_of_whole_pieces() {
        let l = Layout::for_size(SWARM_MIN + 1).unwrap();
        assert_eq!(l.count(), 9);
        assert_eq!(l.range(8), (SWARM_MIN, 1));
        assert_eq!(l.pieces_of(0, MIN_PIECE), Some(0..1));
        assert_eq!(l.pieces_of(SWARM_MIN, 1), Some(8..9));
        assert_eq!(l.pieces_of(MIN_PIECE, 2 * MIN_PIECE), Some(1..3));
        assert_eq!(l.pieces_of(1, MIN_PIECE), None);
        assert_eq!(l.pieces_of(0, MIN_PIECE + 1), None);
        assert_eq!(l.pieces_of(SWARM_MIN, 2), None);
        assert_eq!(l.pieces_of(u64::MAX, 2), None);
    }

    #[test]
    fn bitfields_refuse_stray_bits() {
        let mut b = Bits::new(10);
        b.set(9, true);
        b.set(10, true);
        assert_eq!(b.count_ones(), 1);
        assert_eq!(Bits::from_bytes(10, b.as_bytes()), Some(b));
        assert_eq!(Bits::from_bytes(10, &[0, 0b100]), None);
        assert_eq!(Bits::from_bytes(10, &[0]), None);
        assert!(Bits::from_bytes(10, &[0xff, 0b11]).unwrap().all());
    }
}
