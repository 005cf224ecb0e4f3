//! Text that peers choose (device and asset names) as we show it.

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Unicode format characters (general category Cf): bidirectional overrides and isolates
/// (U+202E makes `…exe` read as `…pdf`), zero-width characters, the BOM. Invisible, so a
/// name carrying them shows something other than what it is.
pub fn is_format_char(c: char) -> bool {
    c.general_category() == GeneralCategory::Format
}

/// `s` without control or format characters.
pub fn strip_invisible(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() && !is_format_char(*c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_overrides_and_zero_width_are_stripped() {
        assert_eq!(strip_invisible("invoice\u{202E}fdp.exe"), "invoicefdp.exe");
        assert_eq!(
            strip_invisible("a\u{200B}b\u{2066}c\u{FEFF}d\u{0007}"),
            "abcd"
        );
        assert_eq!(strip_invisible("café 写真.jpg"), "café 写真.jpg");
    }
}
