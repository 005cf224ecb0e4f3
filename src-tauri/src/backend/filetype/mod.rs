//! What "Open" may do with an asset from a peer, and the name of the file written for it.
//! Pure: fed the peer's name, the declared content type and the first bytes of the content.
//!
//! Policy (docs/threat-model.md, "The desktop app on one machine"):
//! - Only types whose default apps are viewers are opened: images (PNG, JPEG, GIF, WebP,
//!   BMP, TIFF, AVIF, HEIF), PDF, plain text, audio (MP3, Ogg, FLAC, WAV, M4A) and video
//!   (MP4, QuickTime, WebM, Matroska, AVI). SVG and HTML are not: they run scripts.
//! - The type is what the content is (magic numbers), not what the peer says. A peer's
//!   declaration (content type or extension) counts only for types without a magic number:
//!   plain text, and then only if the bytes are text; scripts and web pages, which are
//!   never opened. Everything else is revealed in its folder, with its real type named.
//! - The file name is the peer's name made harmless (no format characters, separators,
//!   control characters, leading dots, or names Windows reserves) with the extension of the
//!   real type wherever the peer's extension claims a different one we know: so
//!   `invoice\u{202E}fdp.exe` is never shown as a PDF, and a program named `report.pdf`
//!   is written as `report.exe`.

mod known;
#[cfg(test)]
mod tests;

use serde::Serialize;

use super::untrusted::is_format;
use known::{ALL, DECLARED_ONLY, Known, TEXT, as_text, by_mime, essence, sniff_binary, sniff_text};

/// How many leading bytes [`classify`] looks at.
pub const HEAD_LEN: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Image,
    Pdf,
    Text,
    Audio,
    Video,
    Program,
    Script,
    Archive,
    Document,
    WebPage,
    Unknown,
}

impl Category {
    /// Opened with the OS default app; everything else is only revealed in its folder.
    pub fn safe_to_open(self) -> bool {
        matches!(
            self,
            Self::Image | Self::Pdf | Self::Text | Self::Audio | Self::Video
        )
    }
}

/// What the content is, and so what "Open" does with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Classified {
    pub category: Category,
    /// The real type for people: "a Windows program", "a PNG image".
    pub label: String,
    pub mime: String,
    /// The extension the written file gets when the peer's claims another type.
    #[serde(skip)]
    ext: &'static str,
    #[serde(skip)]
    exts: &'static [&'static str],
}

impl Classified {
    fn known(k: &'static Known) -> Self {
        Self {
            category: k.category,
            label: k.label.to_owned(),
            mime: k.mime.to_owned(),
            ext: k.exts.first().copied().unwrap_or("bin"),
            exts: k.exts,
        }
    }

    fn unknown(declared: Option<&str>) -> Self {
        let declared = declared
            .map(|d| super::untrusted::one_line(&essence(d)))
            .filter(|d| !d.is_empty() && d != "application/octet-stream");
        let label = match &declared {
            Some(d) => {
                let d: String = d.chars().take(80).collect();
                format!("a file of unknown type (its sender calls it {d})")
            }
            None => "a file of unknown type".to_owned(),
        };
        Self {
            category: Category::Unknown,
            label,
            mime: "application/octet-stream".to_owned(),
            ext: "bin",
            exts: &[],
        }
    }

    pub fn safe_to_open(&self) -> bool {
        self.category.safe_to_open()
    }
}

/// Classifies an asset: `name` and `declared` (content type) come from the peer, `head` is
/// the first [`HEAD_LEN`] bytes of the content (or all of it, if shorter).
pub fn classify(name: &str, declared: Option<&str>, head: &[u8]) -> Classified {
    if let Some(k) = sniff_binary(head) {
        return Classified::known(k);
    }
    let peer_ext = extension(name).map(|e| e.to_ascii_lowercase());
    if let Some(text) = as_text(head) {
        let says_text = declared.is_some_and(|d| essence(d) == TEXT.mime)
            || peer_ext.as_deref().is_some_and(|e| TEXT.exts.contains(&e));
        // Written as .txt, any text (a script, a web page) opens in a text editor.
        if says_text {
            return Classified::known(&TEXT);
        }
        if let Some(k) = sniff_text(text) {
            return Classified::known(k);
        }
    }
    // A declared type with a magic number that is missing is not that type. Only types
    // without one are taken at the peer's word, and none of them is opened.
    match declared.and_then(by_mime) {
        Some(k) if DECLARED_ONLY.iter().any(|d| d.mime == k.mime) => Classified::known(k),
        _ => Classified::unknown(declared),
    }
}

/// The extension of a name: after the last dot, 1–10 ASCII letters and digits.
fn extension(name: &str) -> Option<&str> {
    let (stem, ext) = name.rsplit_once('.')?;
    (!stem.is_empty()
        && (1..=10).contains(&ext.len())
        && ext.bytes().all(|b| b.is_ascii_alphanumeric()))
    .then_some(ext)
}

/// Names Windows reserves for devices, with any extension.
fn reserved_on_windows(stem: &str) -> bool {
    let s = stem.to_ascii_uppercase();
    let s = s.trim_end_matches([' ', '.']);
    matches!(s, "CON" | "PRN" | "AUX" | "NUL")
        || ((s.starts_with("COM") || s.starts_with("LPT"))
            && s.len() == 4
            && s.as_bytes()[3].is_ascii_digit())
}

/// Longest name we write, in bytes (file systems allow 255; room for our temp suffix).
const MAX_NAME: usize = 200;

/// A peer's name made harmless as a file name on every OS: format characters dropped;
/// separators, control characters and the characters Windows forbids replaced by `_`;
/// no leading dots (hidden files, `..`), no trailing dots or spaces, no device names;
/// at most [`MAX_NAME`] bytes. Empty → the hash's first 16 characters.
pub fn safe_name(name: &str, hash: &str) -> String {
    let cleaned: String = name
        .chars()
        .filter(|&c| !is_format(c))
        .map(|c| {
            if c.is_control()
                || matches!(
                    c,
                    '/' | '\\' | '<' | '>' | ':' | '"' | '|' | '?' | '*' | '\u{2028}' | '\u{2029}'
                )
            {
                '_'
            } else {
                c
            }
        })
        .collect();
    let trimmed = cleaned
        .trim()
        .trim_start_matches(['.', ' '])
        .trim_end_matches(['.', ' ']);
    let mut out = truncate(trimmed, MAX_NAME);
    if out.is_empty() {
        return hash.chars().take(16).collect();
    }
    let stem = out.split('.').next().unwrap_or("");
    if reserved_on_windows(stem) {
        out.insert(0, '_');
    }
    out
}

/// At most `max` bytes, cut on a character boundary, keeping the extension if there is one.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let ext = extension(s).map(|e| format!(".{e}")).unwrap_or_default();
    let mut end = max - ext.len();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ext}", s[..end].trim_end_matches(['.', ' ']))
}

/// The name of the file written to open (or reveal) an asset: [`safe_name`], with one
/// extension only (other dots in the stem become `_`, so Windows cannot hide the real
/// extension behind `report.pdf.exe`), and that extension the real type's wherever the
/// peer's disagrees:
/// - a type we open keeps the peer's extension only if it is one of the type's own;
/// - anything else keeps the peer's extension unless it claims a type we would open
///   (a file that is not a PDF must not be named `.pdf`).
pub fn file_name(name: &str, hash: &str, c: &Classified) -> String {
    let safe = safe_name(name, hash);
    let (stem, peer_ext) = match extension(&safe) {
        Some(e) => (&safe[..safe.len() - e.len() - 1], Some(e)),
        None => (safe.as_str(), None),
    };
    let lower = peer_ext.map(str::to_ascii_lowercase);
    let own = lower.as_deref().is_some_and(|e| c.exts.contains(&e));
    let claims_safe = lower.as_deref().is_some_and(|e| {
        ALL.iter()
            .any(|k| k.category.safe_to_open() && k.exts.contains(&e))
    });
    let ext = match peer_ext {
        Some(e) if own => e,
        Some(e) if !c.safe_to_open() && !claims_safe => e,
        // Types without an extension of their own (ELF, Mach-O, unknown) get none added.
        None if c.exts.is_empty() => "",
        _ => c.ext,
    };
    let stem = stem.replace('.', "_");
    let stem = if stem.is_empty() {
        hash.chars().take(16).collect()
    } else {
        stem
    };
    if ext.is_empty() {
        stem
    } else {
        format!("{stem}.{ext}")
    }
}
