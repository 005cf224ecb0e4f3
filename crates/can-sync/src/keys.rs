//! Keys derived from the passphrase (docs/protocol.md, "Keys").
//!
//! passphrase → normalise (NFC, trimmed, inner white space collapsed) → Argon2id
//! (m = 64 MiB, t = 3, p = 4: RFC 9106's second recommended setting) with a fixed
//! application salt → 32-byte root → BLAKE3 `derive_key` with one context string per use.
//! Every device that knows the passphrase derives the same keys; nothing else is shared.

use unicode_normalization::UnicodeNormalization;

/// Argon2id memory cost in KiB (64 MiB).
pub const ARGON2_M_KIB: u32 = 64 * 1024;
pub const ARGON2_T: u32 = 3;
pub const ARGON2_P: u32 = 4;
/// Fixed, public salt: the passphrase must derive the same keys on every device.
const SALT: &[u8] = b"can-sync/v1 passphrase root key";

/// Passphrases below this estimated strength are refused by the app; the agent warns.
pub const MIN_BITS: f64 = 50.0;
/// Below this the app and the agent warn (a generated passphrase has at least this much).
pub const RECOMMENDED_BITS: f64 = 80.0;

/// Per-purpose keys, all derived from the passphrase.
#[derive(Clone)]
pub struct Keys {
    /// Peer admission (SPAKE2 password).
    pub admission: [u8; 32],
    /// Gossip topic id (discovery).
    pub gossip_topic: [u8; 32],
    /// Seeds of the pkarr rendezvous slot keypairs (discovery).
    pub rendezvous: [u8; 32],
    /// Encrypts rendezvous records (discovery).
    pub rendezvous_seal: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(***)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the passphrase is empty")]
    Empty,
    #[error("key derivation failed: {0}")]
    Kdf(argon2::Error),
}

/// The passphrase as it is fed to the KDF, so "a  b " and "a b" are the same passphrase.
pub fn normalize(passphrase: &str) -> String {
    passphrase
        .nfc()
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Derives all keys. CPU-bound (≈ 0.2–1 s): call from a blocking thread.
pub fn derive(passphrase: &str) -> Result<Keys, KeyError> {
    let normalized = normalize(passphrase);
    if normalized.is_empty() {
        return Err(KeyError::Empty);
    }
    let params =
        argon2::Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, Some(32)).map_err(KeyError::Kdf)?;
    let kdf = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut root = [0u8; 32];
    kdf.hash_password_into(normalized.as_bytes(), SALT, &mut root)
        .map_err(KeyError::Kdf)?;
    let sub = |context: &str| blake3::derive_key(context, &root);
    let keys = Keys {
        admission: sub("can-sync v1 peer admission"),
        gossip_topic: sub("can-sync v1 gossip topic"),
        rendezvous: sub("can-sync v1 rendezvous slots"),
        rendezvous_seal: sub("can-sync v1 rendezvous seal"),
    };
    root.fill(0);
    Ok(keys)
}

/// Estimated strength in bits.
///
/// zxcvbn's guess count, log2. zxcvbn counts guesses in a u64, so it saturates at 64 bits;
/// above that, the passphrase is split into words (white space, `-`, `_`, `.`) and the
/// words' own estimates are added, which is what a word-list attacker must guess (a single
/// word that saturates too is rated by brute force over its character classes).
pub fn strength_bits(passphrase: &str) -> f64 {
    let normalized = normalize(passphrase);
    if normalized.is_empty() {
        return 0.0;
    }
    let zx = |s: &str| zxcvbn::zxcvbn(s, &[]).guesses_log10() * std::f64::consts::LOG2_10;
    // A saturated single word falls back to brute force over its character classes.
    let bits = |s: &str| {
        let b = zx(s);
        if b < 63.0 {
            b
        } else {
            b.max(brute_force_bits(s))
        }
    };
    let whole = zx(&normalized);
    if whole < 63.0 {
        return whole;
    }
    let words: f64 = normalized
        .split(|c: char| c.is_whitespace() || matches!(c, '-' | '_' | '.'))
        .filter(|w| !w.is_empty())
        .map(bits)
        .sum();
    whole.max(words)
}

/// Bits to brute-force `s` over the character classes it uses.
fn brute_force_bits(s: &str) -> f64 {
    let mut alphabet = 0u32;
    if s.chars().any(|c| c.is_ascii_lowercase()) {
        alphabet += 26;
    }
    if s.chars().any(|c| c.is_ascii_uppercase()) {
        alphabet += 26;
    }
    if s.chars().any(|c| c.is_ascii_digit()) {
        alphabet += 10;
    }
    if s.chars().any(|c| c.is_ascii_punctuation() || c == ' ') {
        alphabet += 33;
    }
    if !s.is_ascii() {
        alphabet += 100;
    }
    s.chars().count() as f64 * f64::from(alphabet.max(2)).log2()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_passphrase_same_keys_and_subkeys_differ() {
        let a = derive("correct horse battery staple").unwrap();
        let b = derive("  correct horse\tbattery   staple ").unwrap();
        assert_eq!(a.admission, b.admission);
        assert_eq!(a.gossip_topic, b.gossip_topic);
        let c = derive("correct horse battery stapler").unwrap();
        assert_ne!(a.admission, c.admission);
        let all = [a.admission, a.gossip_topic, a.rendezvous, a.rendezvous_seal];
        for i in 0..all.len() {
            for j in i + 1..all.len() {
                assert_ne!(all[i], all[j]);
            }
        }
        assert!(matches!(derive("   "), Err(KeyError::Empty)));
        assert_eq!(format!("{a:?}"), "Keys(***)");
    }

    #[test]
    fn strength_estimates() {
        assert!(strength_bits("password") < MIN_BITS);
        assert!(strength_bits("hunter2") < MIN_BITS);
        // zxcvbn rates common words by rank, so seven dictionary words score ≈ 64 bits
        // although seven random words of a 7776-word list carry 90; random text scores high.
        let words = strength_bits("cadet lunar ribbon oxide tundra mosaic quiver");
        assert!(words > MIN_BITS, "{words}");
        let random = strength_bits("q7VxZ2mLpKt9wKc4Rhy8N");
        assert!(random > RECOMMENDED_BITS, "{random}");
    }
}
