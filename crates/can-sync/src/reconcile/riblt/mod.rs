//! Rateless invertible Bloom lookup tables (RIBLT; Yang, Gilad and Alizadeh, "Practical
//! Rateless Set Reconciliation", SIGCOMM 2024): the "riblt-v2" reconciliation of asset
//! hashes. One side streams coded symbols of its set until the other, subtracting its own,
//! has peeled the difference out; it costs about 1.35–1.5 coded symbols per differing id
//! whatever N, where RBSR pays fingerprints down a tree for every difference (≈ 9× the ids).
//!
//! Each id becomes a 64-bit **key**, SipHash-2-4 under a 128-bit salt the initiator draws per
//! session. Symbols carry keys, not ids (8 bytes, not 32); the side that learns a key it
//! lacks has it resolved to the id by the side that holds it (session.rs). The salt is why
//! XOR is safe here, where RBSR's fingerprints avoid it (fingerprint.rs): sets crafted to
//! cancel under XOR would have to be crafted after the salt is drawn, in the session.
//!
//! A coded symbol is (XOR of keys, XOR of 32-bit checks, count); key k maps to symbol 0 and
//! then to a pseudo-random sequence of indices with density ≈ 2 / (2 + i) (the paper's
//! mapping, seeded by k), so the first symbols hold many keys and later ones few. The
//! difference of two sides' symbols holds exactly the keys one side lacks; a symbol holding
//! one of them (count ±1, check matching) is *pure*, gives that key, and removing the key
//! from its other symbols makes more of them pure (peeling).
//!
//! Pure: keys in, symbols and decoded keys out. [`session`] carries it over turns.

pub mod codec;
pub mod session;

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod tests;

use siphasher::sip::SipHasher24;
use std::hash::Hasher;
use std::sync::Arc;

use super::Hash;

/// The feature name in `Hello.features`. v2 opens with the whole set's digest, so equal
/// sets never key an id; v1 (one release, 2026-12-01) opened with symbols, and a v1 agent
/// meets a v2 one on RBSR.
pub const FEATURE: &str = "riblt-v2";

/// Symbols a small set's initiator opens with (beside the digest, on which equal sets
/// finish): a handful of differences decode without another round trip.
pub const FIRST_SYMBOLS: u64 = 8;

/// Up to this many ids the initiator's turn 0 carries the first symbols beside the digest
/// (a few differences then decode in one round trip); above it, the digest alone: keying
/// and mapping a million ids costs ≈ 0.3 s on each side, and large sets are most often
/// equal. A large set that differs then takes one round trip more.
pub const EAGER_ITEMS: usize = 1 << 16;

/// Most ids a side reconciles with RIBLT; above it the session falls back to RBSR. Bounds
/// per-key state (24 B per id) and what a peer can make us compute.
pub const MAX_ITEMS: usize = 1 << 21;

/// Most symbols one session may carry (64 MiB of decoder state at 16 B each).
pub const MAX_SYMBOLS: u64 = 1 << 22;

/// One session's salt.
pub type Salt = [u8; 16];

/// The 64-bit key of an id under a session's salt.
pub fn key(salt: &Salt, id: &Hash) -> u64 {
    let mut h = SipHasher24::new_with_key(salt);
    h.write(id);
    h.finish()
}

/// A fixed mix of a key (splitmix64's finaliser): the check and the mapping's seed. The
/// key is already salted, so this needs no key of its own.
fn mix(k: u64) -> u64 {
    let mut z = k.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The check a pure symbol's key must match.
pub fn check(k: u64) -> u32 {
    (mix(k) >> 32) as u32
}

/// Where one key goes: index 0, then ever sparser pseudo-random indices (the reference
/// implementation's mapping: the gap after index i is ⌈(i + 1.5)(1/√u − 1)⌉ for u uniform in
/// (0, 1], which gives density ≈ 1 / (1 + i/2)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    prng: u64,
    /// The next index this key goes to.
    pub next: u64,
}

impl Mapping {
    pub fn new(k: u64) -> Self {
        Self {
            prng: mix(k),
            next: 0,
        }
    }

    /// Moves to the key's following index.
    pub fn advance(&mut self) {
        let r = self.prng.wrapping_mul(0xda94_2042_e4dd_58b5);
        self.prng = r;
        let scale = (1u64 << 32) as f64 / ((r as f64) + 1.0).sqrt() - 1.0;
        // IEEE arithmetic and a correctly rounded sqrt: both sides compute the same gap.
        let x = (self.next as f64 + 1.5) * scale;
        self.next = self.next.saturating_add(ceil(x).max(1));
    }
}

/// ⌈x⌉ for x ≥ 0, saturating (a huge gap only means the key never shows up again). By
/// hand because `f64::ceil` is a libm call without SSE4.1, and this runs per key and index.
fn ceil(x: f64) -> u64 {
    let t = x as u64;
    if (t as f64) < x {
        t.saturating_add(1)
    } else {
        t
    }
}

/// One coded symbol, or the difference of two.
///
/// The count is kept mod 256: a difference symbol's count is only ever compared with 0 and
/// ±1, and a wrong match would also need the 32-bit check and the sum to agree. One byte on
/// the wire instead of up to three for the low symbols of large sets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Symbol {
    pub sum: u64,
    pub check: u32,
    pub count: i8,
}

impl Symbol {
    /// Adds (`sign` 1) or removes (`sign` -1) one key.
    pub fn apply(&mut self, k: u64, sign: i8) {
        self.sum ^= k;
        self.check ^= check(k);
        self.count = self.count.wrapping_add(sign);
    }

    /// `self - other`, term by term.
    pub fn minus(self, other: Symbol) -> Symbol {
        Symbol {
            sum: self.sum ^ other.sum,
            check: self.check ^ other.check,
            count: self.count.wrapping_sub(other.count),
        }
    }

    pub fn is_zero(&self) -> bool {
        *self == Symbol::default()
    }

    /// The key this symbol holds alone, with its sign, if it looks pure.
    pub fn pure(&self) -> Option<(u64, i8)> {
        (matches!(self.count, 1 | -1) && check(self.sum) == self.check)
            .then_some((self.sum, self.count))
    }
}

/// A set of keys with each key's place in its mapping: produces coded symbols in order,
/// batch after batch, without starting over.
#[derive(Debug, Default)]
pub struct Encoder {
    /// Shared with the session's key → id lookups.
    keys: Arc<[u64]>,
    /// Each key's mapping (16 B a key).
    maps: Vec<Mapping>,
    /// Symbols produced so far.
    produced: u64,
}

impl Encoder {
    pub fn new(keys: Arc<[u64]>) -> Self {
        let maps = keys.iter().map(|&k| Mapping::new(k)).collect();
        Self {
            keys,
            maps,
            produced: 0,
        }
    }

    pub fn produced(&self) -> u64 {
        self.produced
    }

    /// Symbols `produced .. upto` (the decoder subtracts its own from the peer's).
    pub fn next_batch(&mut self, upto: u64) -> Vec<Symbol> {
        let start = self.produced;
        let n = upto.saturating_sub(start) as usize;
        let mut out = vec![Symbol::default(); n];
        for (k, m) in self.keys.iter().zip(self.maps.iter_mut()) {
            while m.next < upto {
                // `next >= start` always holds: every index below `start` was consumed by
                // an earlier batch.
                out[(m.next - start) as usize].apply(*k, 1);
                m.advance();
            }
        }
        self.produced = self.produced.max(upto);
        out
    }
}

/// The receiving side: the peer's symbols minus ours, peeled.
#[derive(Debug, Default)]
pub struct Decoder {
    /// Our keys, advancing as the peer's symbols arrive.
    ours: Encoder,
    /// The difference, peeled as far as it goes.
    residual: Vec<Symbol>,
    /// Whether each difference symbol was zero before peeling, for the estimate.
    raw_zero: Vec<bool>,
    nonzero: usize,
    /// Decoded keys (sign 1: the peer's only; -1: ours only) and where each maps next.
    decoded: Vec<(u64, i8, Mapping)>,
    /// Keys decoded, to refuse a key twice.
    seen: std::collections::HashSet<u64>,
}

/// A key decoded by [`Decoder::add`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// The peer holds it and we do not.
    Theirs(u64),
    /// We hold it and the peer does not.
    Ours(u64),
}

impl Decoder {
    /// A decoder over our keys (in any order).
    pub fn new(ours: Arc<[u64]>) -> Self {
        Self {
            ours: Encoder::new(ours),
            ..Self::default()
        }
    }

    /// Symbols received so far.
    pub fn received(&self) -> u64 {
        self.residual.len() as u64
    }

    /// All differences found: every symbol peeled to zero.
    pub fn is_done(&self) -> bool {
        self.nonzero == 0 && !self.residual.is_empty()
    }

    /// Takes the peer's next symbols (continuing where the last batch ended) and peels.
    /// `is_ours` tells whether a key is one of ours: a pure-looking symbol whose key says
    /// otherwise is not pure (a false check match), so it waits for more peeling.
    pub fn add(&mut self, theirs: &[Symbol], is_ours: impl Fn(u64) -> bool) -> Vec<Found> {
        let start = self.residual.len() as u64;
        let upto = start + theirs.len() as u64;
        let mine = self.ours.next_batch(upto);
        for (t, m) in theirs.iter().zip(mine) {
            let d = t.minus(m);
            self.raw_zero.push(d.is_zero());
            self.residual.push(d);
            if !d.is_zero() {
                self.nonzero += 1;
            }
        }
        // Keys decoded earlier are in these symbols too.
        for i in 0..self.decoded.len() {
            let (k, sign, mut map) = self.decoded[i];
            while map.next < upto {
                self.remove(map.next as usize, k, sign);
                map.advance();
            }
            self.decoded[i].2 = map;
        }
        let mut found = Vec::new();
        let mut queue: Vec<usize> = (0..self.residual.len()).collect();
        while let Some(i) = queue.pop() {
            // An honest difference never decodes into more keys than there are symbols
            // (≈ 1.4 per key are needed); more means forged symbols: stop, it never finishes.
            if self.decoded.len() >= self.residual.len() {
                break;
            }
            let Some((k, sign)) = self.residual[i].pure() else {
                continue;
            };
            // +1: only the peer has it, so it must not be ours; -1 the other way round.
            if (sign == 1) == is_ours(k) || self.seen.contains(&k) {
                continue;
            }
            self.seen.insert(k);
            found.push(if sign == 1 {
                Found::Theirs(k)
            } else {
                Found::Ours(k)
            });
            let mut map = Mapping::new(k);
            while map.next < upto {
                let j = map.next as usize;
                self.remove(j, k, sign);
                if self.residual[j].pure().is_some() {
                    queue.push(j);
                }
                map.advance();
            }
            self.decoded.push((k, sign, map));
        }
        found
    }

    fn remove(&mut self, i: usize, k: u64, sign: i8) {
        let s = &mut self.residual[i];
        let was_zero = s.is_zero();
        s.apply(k, -sign);
        match (was_zero, s.is_zero()) {
            (false, true) => self.nonzero -= 1,
            (true, false) => self.nonzero += 1,
            _ => {}
        }
    }

    /// Whether decoding looks stuck: three times the symbols the zero ones say the difference
    /// needs, and still not decoded (a forged symbol, or two of a side's ids sharing a key).
    pub fn stuck(&self) -> bool {
        estimate(&self.raw_zero).is_some_and(|d| {
            self.received() > ceil(d * 1.35).saturating_add(8).saturating_mul(3) + 64
        })
    }

    /// How many symbols in all to ask for next: about 1.35 per differing id of the
    /// difference the zero symbols so far suggest (RIBLT's overhead for large differences;
    /// decoding then succeeds all at once), at least an eighth more than now. While no
    /// symbol has come out zero the difference is only known to be large: enough for the
    /// smallest difference that would likely have left none zero, at least three times as
    /// many.
    pub fn next_request(&self) -> u64 {
        let m = self.received();
        let (want, floor) = match estimate(&self.raw_zero) {
            Some(d) => (ceil(d * 1.35).saturating_add(8), m + m / 8 + 1),
            None => (
                ceil(lower_bound(self.raw_zero.len()) * 1.35).saturating_add(8),
                m.saturating_mul(3),
            ),
        };
        want.clamp(floor, m.saturating_mul(8).max(floor))
    }
}

/// The chance that a key maps to symbol `i`.
pub fn density(i: u64) -> f64 {
    1.0 / (1.0 + i as f64 / 2.0)
}

/// The newer three quarters of `m` symbols, at most 4,096 evenly spaced: the ones whose
/// being zero tells the most, and enough of them. Also the weight of each (the step).
fn window(m: usize) -> (std::iter::StepBy<std::ops::Range<usize>>, f64) {
    let from = m / 4;
    let step = (m - from).div_ceil(4096).max(1);
    ((from..m).step_by(step), step as f64)
}

/// With none of `m` symbols zero: the difference at which one zero symbol was expected in
/// the window (smaller ones would likely have shown one).
fn lower_bound(m: usize) -> f64 {
    let (idx, step) = window(m);
    let rhos: Vec<f64> = idx.map(|i| density(i as u64)).collect();
    let expected_zero = |d: f64| -> f64 { step * rhos.iter().map(|r| (-d * r).exp()).sum::<f64>() };
    last_true(|d| expected_zero(d) > 1.0)
}

/// The largest d in [1, MAX_SYMBOLS] for which `holds` (true below some d, false above),
/// by bisection on log d.
fn last_true(holds: impl Fn(f64) -> bool) -> f64 {
    let (mut lo, mut hi) = (0f64, (MAX_SYMBOLS as f64).ln());
    for _ in 0..60 {
        let mid = (lo + hi) / 2.0;
        if holds(mid.exp()) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo.exp()
}

/// Maximum-likelihood size of a difference from which difference symbols were zero: symbol
/// i is zero with probability (1 − ρ(i))^d ≈ e^(−d ρ(i)). `None` if none in the window was
/// (the likelihood grows without bound).
pub fn estimate(raw_zero: &[bool]) -> Option<f64> {
    let points: Vec<(f64, bool)> = window(raw_zero.len())
        .0
        .map(|i| (density(i as u64), raw_zero[i]))
        .collect();
    // The estimate rests on the window alone: zeros outside it do not bound the likelihood.
    if !points.iter().any(|&(_, zero)| zero) {
        return None;
    }
    // The log-likelihood's slope in d falls as d grows; find its zero by bisection on log d.
    let slope = |d: f64| -> f64 {
        points
            .iter()
            .map(|&(rho, zero)| {
                if zero {
                    -rho
                } else {
                    let e = (-d * rho).exp();
                    rho * e / (1.0 - e).max(1e-300)
                }
            })
            .sum()
    };
    Some(last_true(|d| slope(d) > 0.0))
}
