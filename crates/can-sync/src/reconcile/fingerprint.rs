//! Range fingerprints: a short digest of the set of ids inside one range.
//!
//! fingerprint = first 16 bytes of BLAKE3-derive_key("can-sync v1 rbsr fingerprint",
//!               sum of the ids mod 2^256 (little-endian) ‖ count as u64 little-endian)
//!
//! Why a sum: it is order-independent and incremental (adding or removing an id is one
//! 256-bit addition or subtraction), so a range's fingerprint costs one pass over its ids
//! and could be kept up to date in a tree if stores grow much larger.
//!
//! Why addition and not XOR: XOR is linear over GF(2), so anyone who can choose content
//! (and hence ids) can find, with ~257 uploads and Gaussian elimination, two different sets
//! with the same XOR in milliseconds; two stores holding them would look in sync and never
//! exchange those assets. Finding colliding sums mod 2^256 needs a generalised-birthday
//! (Wagner k-tree) search over tens of thousands of crafted uploads — far costlier, not
//! impossible: the residual risk is that such crafted assets are not reconciled (they still
//! sync when uploaded live, by announcement). Negentropy made the same choice.
//!
//! A sum is only as good as the ids are random: ids that differ in a few low bits ({x, x+2,
//! x+4} against {x+1, x+2, x+3}) collide. Ours are BLAKE3 hashes of content, so such
//! structure would take preimages to build.
//!
//! Why the count and the hash on top: the count separates sets of different sizes whose
//! sums happen to agree, and hashing removes the algebraic structure of the raw sum before
//! it is truncated to 16 bytes.

use super::Hash;

pub const FINGERPRINT_LEN: usize = 16;
pub type Fingerprint = [u8; FINGERPRINT_LEN];

const CONTEXT: &str = "can-sync v1 rbsr fingerprint";

/// Running sum and count of a set of ids.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accumulator {
    /// The sum mod 2^256 as four little-endian 64-bit limbs.
    sum: [u64; 4],
    count: u64,
}

impl Accumulator {
    pub fn of(ids: &[Hash]) -> Self {
        let mut acc = Self::default();
        for id in ids {
            acc.add(id);
        }
        acc
    }

    pub fn add(&mut self, id: &Hash) {
        let mut carry = false;
        for (i, limb) in self.sum.iter_mut().enumerate() {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&id[i * 8..i * 8 + 8]);
            let (s, c1) = limb.overflowing_add(u64::from_le_bytes(bytes));
            let (s, c2) = s.overflowing_add(u64::from(carry));
            *limb = s;
            carry = c1 || c2;
        }
        self.count += 1;
    }

    pub fn fingerprint(&self) -> Fingerprint {
        let mut h = blake3::Hasher::new_derive_key(CONTEXT);
        for limb in self.sum {
            h.update(&limb.to_le_bytes());
        }
        h.update(&self.count.to_le_bytes());
        let mut out = [0u8; FINGERPRINT_LEN];
        out.copy_from_slice(&h.finalize().as_bytes()[..FINGERPRINT_LEN]);
        out
    }
}

/// The fingerprint of a sorted or unsorted slice of ids.
pub fn fingerprint(ids: &[Hash]) -> Fingerprint {
    Accumulator::of(ids).fingerprint()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(first: u8, last: u8) -> Hash {
        let mut h = [0u8; 32];
        h[0] = first;
        h[31] = last;
        h
    }

    #[test]
    fn order_independent_and_carries_across_limbs() {
        let (a, b, c) = (id(1, 2), id(3, 4), id(5, 6));
        assert_eq!(fingerprint(&[a, b, c]), fingerprint(&[c, a, b]));
        assert_ne!(fingerprint(&[a, b]), fingerprint(&[a, c]));
        // 0xff..ff + 1 = 0 mod 2^256 (the carry runs through every limb), but the count differs.
        let mut one = [0u8; 32];
        one[0] = 1;
        let acc = Accumulator::of(&[[0xff; 32], one]);
        assert_eq!(acc.sum, [0; 4]);
        assert_ne!(fingerprint(&[[0xff; 32], one]), fingerprint(&[]));
    }

    #[test]
    fn xor_style_cancellation_does_not_collide() {
        // {a, a ^ d, b, b ^ d}-style sets XOR to the same value; their sums differ.
        let a = id(0x10, 0x01);
        let b = id(0x20, 0x02);
        let d = id(0x0f, 0x0f);
        let x = |p: Hash, q: Hash| -> Hash { std::array::from_fn(|i| p[i] ^ q[i]) };
        let s1 = [a, x(a, d)];
        let s2 = [b, x(b, d)];
        let xor = |s: &[Hash]| -> Hash { std::array::from_fn(|i| s[0][i] ^ s[1][i]) };
        assert_eq!(xor(&s1), xor(&s2));
        assert_ne!(fingerprint(&s1), fingerprint(&s2));
    }
}
