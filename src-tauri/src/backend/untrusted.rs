//! Text that peers choose (device names, asset names, content types) on its way to places
//! that would interpret it: file names, desktop notifications. Peers are members of the
//! group, but a member's machine may be compromised or its user careless, so their strings
//! are shown, never obeyed.

/// Unicode general category Cf ("format"): invisible characters that change how the text
/// around them is shown (U+202E turns `invoice\u{202E}fdp.exe` into what reads as
/// "invoiceexe.pdf"). The engine's own test of the category, so app and engine agree.
pub use can_sync::text::is_format_char as is_format;

/// Control characters (Cc) and the line/paragraph separators: they break a line or a
/// file name where the peer wants one.
fn is_breaking(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// For one line of display text: format characters dropped, control characters and
/// separators turned into spaces, runs of white space collapsed, ends trimmed.
pub fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.chars().filter(|&c| !is_format(c)) {
        if is_breaking(c) || c.is_whitespace() {
            space = !out.is_empty();
        } else {
            if space {
                out.push(' ');
                space = false;
            }
            out.push(c);
        }
    }
    out
}

/// Escapes the characters that are markup in the freedesktop notification body (a subset
/// of XML: `<b>`, `<i>`, `<u>`, `<a href>`, `<img src>`, entities).
pub fn markup_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_characters_are_recognised() {
        for c in [
            '\u{202E}',
            '\u{202A}',
            '\u{2066}',
            '\u{2069}',
            '\u{200B}',
            '\u{200F}',
            '\u{FEFF}',
            '\u{00AD}',
            '\u{E0041}',
        ] {
            assert!(is_format(c), "{:04X}", c as u32);
        }
        for c in ['a', 'ä', ' ', '.', '\u{2070}', '😀', '\u{200A}'] {
            assert!(!is_format(c), "{:04X}", c as u32);
        }
    }

    #[test]
    fn one_line_drops_invisible_and_breaking_characters() {
        assert_eq!(one_line("invoice\u{202E}fdp.exe"), "invoicefdp.exe");
        assert_eq!(one_line("  Lap\u{200B}top\n\tTwo\u{2028}"), "Laptop Two");
        assert_eq!(one_line("\u{2066}Eve\u{2069}"), "Eve");
        assert_eq!(one_line("Urlaub 2026.jpg"), "Urlaub 2026.jpg");
        assert_eq!(one_line("\u{0007}\u{001b}[31m"), "[31m");
    }

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            markup_escape("<b>Eve</b> & <a href=\"x\">'y'</a>"),
            "&lt;b&gt;Eve&lt;/b&gt; &amp; &lt;a href=&quot;x&quot;&gt;&apos;y&apos;&lt;/a&gt;"
        );
        assert_eq!(markup_escape("photo.jpg"), "photo.jpg");
    }
}
