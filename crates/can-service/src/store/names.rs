//! Cleaning of asset names at ingest.
//!
//! Names come from whoever uploads or syncs an asset and are shown to people: in the app, in
//! listings, and as the file name of a download. Unicode *format* characters (general
//! category Cf) are invisible yet change how a name reads: U+202E RIGHT-TO-LEFT OVERRIDE turns
//! `invoice\u{202E}fdp.exe` into what displays as `invoiceexe.pdf`, the isolates U+2066–U+2069
//! and marks U+200E/U+200F/U+061C reorder text, and zero-width characters (U+200B–U+200D,
//! U+FEFF, U+2060) make two different names look the same.
//!
//! They are **stripped**, not refused: a name is metadata, and refusing would make a whole
//! sync fail over something a person cannot even see. The cost is that the few legitimate
//! uses (a zero-width joiner inside an emoji sequence, a zero-width non-joiner in Persian
//! words, emoji tag sequences) lose their joining; the name stays readable. Control
//! characters (Cc) are still refused by validation, so a name with a newline fails loudly.

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Whether `c` is a Unicode format character (general category Cf).
pub fn is_format_char(c: char) -> bool {
    c.general_category() == GeneralCategory::Format
}

/// `name` without its format characters; borrows nothing so callers can store it.
pub fn strip_format_chars(name: &str) -> String {
    name.chars().filter(|c| !is_format_char(*c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_and_invisible_characters_are_stripped() {
        for c in [
            '\u{202A}',
            '\u{202B}',
            '\u{202C}',
            '\u{202D}',
            '\u{202E}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{200E}',
            '\u{200F}',
            '\u{FEFF}',
            '\u{061C}',
            '\u{2060}',
            '\u{00AD}',
            '\u{E0001}',
        ] {
            assert!(is_format_char(c), "U+{:04X}", c as u32);
            assert_eq!(
                strip_format_chars(&format!("a{c}b")),
                "ab",
                "U+{:04X}",
                c as u32
            );
        }
        assert_eq!(
            strip_format_chars("invoice\u{202E}fdp.exe"),
            "invoicefdp.exe"
        );
    }

    #[test]
    fn ordinary_names_are_kept() {
        for name in ["Grüße — 写真 📷.png", "café.txt", "עברית.txt", "", "a b\tc"] {
            assert_eq!(strip_format_chars(name), name);
        }
        // Control characters are not format characters: validation refuses them instead.
        assert!(!is_format_char('\n') && !is_format_char('\u{7F}'));
    }
}
