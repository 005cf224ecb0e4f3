//! New passphrases and strength verdicts.
//!
//! A generated passphrase is 7 words drawn uniformly from the EFF long word list (7,776
//! words): 7 × log2(7776) ≈ 90.5 bits, above the 80 recommended. For those the verdict uses
//! the generator's entropy, because zxcvbn rates common words by frequency and would
//! under-state what an attacker who knows the list must try. Typed passphrases are rated by
//! `can_sync::keys::strength_bits` (zxcvbn); below `MIN_BITS` the app refuses them.

use can_sync::keys::{MIN_BITS, RECOMMENDED_BITS, strength_bits};
use diceware_wordlists::Wordlist;
use rand::Rng;
use serde::Serialize;

pub const GENERATED_WORDS: usize = 7;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Generated {
    pub passphrase: String,
    pub bits: f64,
    pub words: usize,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Refused,
    Weak,
    Ok,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Check {
    pub bits: f64,
    pub verdict: Verdict,
    pub message: String,
}

fn list() -> &'static [&'static str] {
    Wordlist::EffLong.get_list()
}

/// Entropy of a generated passphrase with `words` words.
pub fn generated_bits(words: usize) -> f64 {
    words as f64 * (list().len() as f64).log2()
}

pub fn generate() -> Generated {
    let words = list();
    let mut rng = rand::rng();
    let chosen: Vec<&str> = (0..GENERATED_WORDS)
        .map(|_| words[rng.random_range(0..words.len())])
        .collect();
    Generated {
        passphrase: chosen.join(" "),
        bits: generated_bits(GENERATED_WORDS),
        words: GENERATED_WORDS,
    }
}

/// Rates a passphrase. `generated` says it is exactly one this app generated (the caller
/// checks that; a user's claim alone is not trusted).
pub fn check(passphrase: &str, generated: bool) -> Check {
    let bits = if generated {
        generated_bits(GENERATED_WORDS)
    } else {
        strength_bits(passphrase)
    };
    let rounded = bits.floor() as u32;
    let (verdict, message) = if passphrase.trim().is_empty() {
        (Verdict::Refused, "Enter a passphrase.".to_owned())
    } else if bits < MIN_BITS {
        (
            Verdict::Refused,
            format!(
                "About {rounded} bits: too easy to guess. CAN Sync needs at least {} bits — add more uncommon words.",
                MIN_BITS as u32
            ),
        )
    } else if bits < RECOMMENDED_BITS {
        (
            Verdict::Weak,
            format!(
                "About {rounded} bits: usable, but {} bits or more is recommended — anyone who guesses it can join your devices.",
                RECOMMENDED_BITS as u32
            ),
        )
    } else {
        (Verdict::Ok, format!("About {rounded} bits: strong."))
    };
    Check {
        bits,
        verdict,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passphrases_are_seven_listed_words_and_strong() {
        let g = generate();
        assert_eq!(g.passphrase.split(' ').count(), 7);
        assert!(g.passphrase.split(' ').all(|w| list().contains(&w)));
        assert!(g.bits > 90.0 && g.bits < 91.0, "{}", g.bits);
        assert_ne!(generate().passphrase, g.passphrase);
        assert_eq!(check(&g.passphrase, true).verdict, Verdict::Ok);
    }

    #[test]
    fn verdicts_follow_the_documented_floors() {
        assert_eq!(check("password", false).verdict, Verdict::Refused);
        assert_eq!(check("", false).verdict, Verdict::Refused);
        assert!(
            check("password", false)
                .message
                .contains("at least 50 bits")
        );
        let strong = check("quartz lantern obelisk mango thimble crevice walnut", false);
        assert_eq!(strong.verdict, Verdict::Ok, "{strong:?}");
    }
}
