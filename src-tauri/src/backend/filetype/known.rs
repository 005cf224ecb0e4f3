//! The types [`super::classify`] knows: by magic number, by textual signature, by declared
//! content type, by extension.

use super::Category;

#[derive(Debug)]
pub(super) struct Known {
    pub(super) mime: &'static str,
    pub(super) label: &'static str,
    pub(super) category: Category,
    /// Extensions that name this type; the first is the one we write. Empty: "bin".
    pub(super) exts: &'static [&'static str],
    /// Other content types a peer may declare for it.
    pub(super) aliases: &'static [&'static str],
}

const fn k(
    mime: &'static str,
    label: &'static str,
    category: Category,
    exts: &'static [&'static str],
) -> Known {
    Known {
        mime,
        label,
        category,
        exts,
        aliases: &[],
    }
}

use Category as C;

const PNG: Known = k("image/png", "a PNG image", C::Image, &["png"]);
const JPEG: Known = k(
    "image/jpeg",
    "a JPEG image",
    C::Image,
    &["jpg", "jpeg", "jpe"],
);
const GIF: Known = k("image/gif", "a GIF image", C::Image, &["gif"]);
const WEBP: Known = k("image/webp", "a WebP image", C::Image, &["webp"]);
const BMP: Known = k("image/bmp", "a BMP image", C::Image, &["bmp"]);
const TIFF: Known = k("image/tiff", "a TIFF image", C::Image, &["tif", "tiff"]);
const AVIF: Known = k("image/avif", "an AVIF image", C::Image, &["avif"]);
const HEIF: Known = k("image/heic", "a HEIF image", C::Image, &["heic", "heif"]);
const PDF: Known = k("application/pdf", "a PDF document", C::Pdf, &["pdf"]);
pub(super) const TEXT: Known = k("text/plain", "plain text", C::Text, &["txt", "text", "log"]);
const MP3: Known = k("audio/mpeg", "MP3 audio", C::Audio, &["mp3"]);
const OGG: Known = k("audio/ogg", "Ogg audio", C::Audio, &["ogg", "oga", "opus"]);
const FLAC: Known = k("audio/flac", "FLAC audio", C::Audio, &["flac"]);
const WAV: Known = k("audio/wav", "WAV audio", C::Audio, &["wav"]);
const M4A: Known = k("audio/mp4", "MPEG-4 audio", C::Audio, &["m4a"]);
const MP4: Known = k("video/mp4", "an MP4 video", C::Video, &["mp4", "m4v"]);
const MOV: Known = k("video/quicktime", "a QuickTime video", C::Video, &["mov"]);
const WEBM: Known = k("video/webm", "a WebM video", C::Video, &["webm"]);
const MKV: Known = k("video/x-matroska", "a Matroska video", C::Video, &["mkv"]);
const AVI: Known = k("video/x-msvideo", "an AVI video", C::Video, &["avi"]);

const ELF: Known = k(
    "application/x-executable",
    "a Linux program (ELF)",
    C::Program,
    &[],
);
const PE: Known = Known {
    aliases: &["application/x-msdownload", "application/x-dosexec"],
    ..k(
        "application/vnd.microsoft.portable-executable",
        "a Windows program",
        C::Program,
        &["exe", "dll", "scr", "cpl", "sys"],
    )
};
const MACHO: Known = k(
    "application/x-mach-binary",
    "a macOS program (Mach-O)",
    C::Program,
    &[],
);
const FAT: Known = k(
    "application/x-mach-binary",
    "a macOS program or Java class",
    C::Program,
    &["class"],
);
const LNK: Known = k(
    "application/x-ms-shortcut",
    "a Windows shortcut",
    C::Program,
    &["lnk"],
);
const DESKTOP: Known = k(
    "application/x-desktop",
    "a Linux launcher (.desktop)",
    C::Program,
    &["desktop"],
);
const SCRIPT: Known = Known {
    aliases: &["application/x-sh", "text/x-shellscript", "text/x-python"],
    ..k(
        "text/x-script",
        "a script",
        C::Script,
        &["sh", "bash", "py", "pl", "rb"],
    )
};
const JS: Known = Known {
    aliases: &["application/javascript", "application/x-javascript"],
    ..k(
        "text/javascript",
        "a JavaScript program",
        C::Script,
        &["js", "mjs"],
    )
};
const ZIP: Known = k(
    "application/zip",
    "a ZIP archive or ZIP-based document (may hold programs or macros)",
    C::Archive,
    &[
        "zip", "jar", "apk", "docx", "docm", "xlsx", "xlsm", "pptx", "odt", "ods", "odp", "epub",
        "xpi", "appx", "msix",
    ],
);
const OLE: Known = k(
    "application/x-ole-storage",
    "an Office 97–2003 document or Windows installer (may hold macros)",
    C::Document,
    &["doc", "xls", "ppt", "msi", "msg"],
);
const RTF: Known = k(
    "application/rtf",
    "a Rich Text document",
    C::Document,
    &["rtf"],
);
const HTML: Known = k(
    "text/html",
    "a web page (HTML, may run scripts)",
    C::WebPage,
    &["html", "htm", "xhtml"],
);
const SVG: Known = k(
    "image/svg+xml",
    "an SVG image (may run scripts)",
    C::WebPage,
    &["svg", "svgz"],
);

/// Every type we know, for matching declared content types and peers' extensions.
pub(super) const ALL: &[&Known] = &[
    &PNG, &JPEG, &GIF, &WEBP, &BMP, &TIFF, &AVIF, &HEIF, &PDF, &TEXT, &MP3, &OGG, &FLAC, &WAV,
    &M4A, &MP4, &MOV, &WEBM, &MKV, &AVI, &ELF, &PE, &MACHO, &FAT, &LNK, &DESKTOP, &SCRIPT, &JS,
    &ZIP, &OLE, &RTF, &HTML, &SVG,
];

/// Types recognised by their declared content type alone: they have no magic number.
pub(super) const DECLARED_ONLY: &[&Known] = &[&SCRIPT, &JS, &HTML, &SVG];

/// The type of the content by its magic number, if it has one we know.
pub(super) fn sniff_binary(h: &[u8]) -> Option<&'static Known> {
    let at = |off: usize, magic: &[u8]| h.get(off..off + magic.len()) == Some(magic);
    let brand = || h.get(8..12);
    Some(match () {
        _ if at(0, b"\x89PNG\r\n\x1a\n") => &PNG,
        _ if at(0, b"\xFF\xD8\xFF") => &JPEG,
        _ if at(0, b"GIF87a") || at(0, b"GIF89a") => &GIF,
        _ if at(0, b"RIFF") && at(8, b"WEBP") => &WEBP,
        _ if at(0, b"RIFF") && at(8, b"WAVE") => &WAV,
        _ if at(0, b"RIFF") && at(8, b"AVI ") => &AVI,
        _ if at(0, b"BM") && h.len() >= 26 && at(6, b"\0\0\0\0") => &BMP,
        _ if at(0, b"II*\0") || at(0, b"MM\0*") => &TIFF,
        _ if at(0, b"%PDF-") => &PDF,
        _ if at(0, b"ID3") || (h.len() >= 2 && h[0] == 0xFF && h[1] & 0xE0 == 0xE0) => &MP3,
        _ if at(0, b"OggS") => &OGG,
        _ if at(0, b"fLaC") => &FLAC,
        _ if at(4, b"ftyp") => match brand() {
            Some(b"avif" | b"avis") => &AVIF,
            Some(b"heic" | b"heix" | b"mif1" | b"msf1") => &HEIF,
            Some(b"M4A " | b"M4B ") => &M4A,
            Some(b"qt  ") => &MOV,
            _ => &MP4,
        },
        _ if at(0, b"\x1A\x45\xDF\xA3") => {
            if h.windows(4).take(64).any(|w| w == b"webm") {
                &WEBM
            } else {
                &MKV
            }
        }
        _ if at(0, b"\x7FELF") => &ELF,
        _ if at(0, b"MZ") => &PE,
        _ if at(0, b"\xFE\xED\xFA\xCE")
            || at(0, b"\xFE\xED\xFA\xCF")
            || at(0, b"\xCE\xFA\xED\xFE")
            || at(0, b"\xCF\xFA\xED\xFE") =>
        {
            &MACHO
        }
        _ if at(0, b"\xCA\xFE\xBA\xBE") => &FAT,
        _ if at(0, b"\x4C\0\0\0\x01\x14\x02\0") => &LNK,
        _ if at(0, b"PK\x03\x04") || at(0, b"PK\x05\x06") => &ZIP,
        _ if at(0, b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1") => &OLE,
        _ if at(0, b"{\\rtf") => &RTF,
        _ => return None,
    })
}

/// The type of textual content that is more than text when opened by its own app.
pub(super) fn sniff_text(text: &str) -> Option<&'static Known> {
    let t = text.trim_start_matches('\u{FEFF}').trim_start();
    let lower: String = t.chars().take(256).flat_map(char::to_lowercase).collect();
    Some(match () {
        _ if t.starts_with("#!") => &SCRIPT,
        _ if t.starts_with("[Desktop Entry]") => &DESKTOP,
        _ if lower.starts_with("<!doctype html") || lower.starts_with("<html") => &HTML,
        _ if lower.starts_with("<svg")
            || (lower.starts_with("<?xml") && lower.contains("<svg")) =>
        {
            &SVG
        }
        _ => return None,
    })
}

/// UTF-8 (a sequence cut at the end of `head` is fine) without control characters other
/// than tab, line feed, form feed and carriage return.
pub(super) fn as_text(head: &[u8]) -> Option<&str> {
    let valid = match std::str::from_utf8(head) {
        Ok(s) => s,
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return None,
    };
    valid
        .chars()
        .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\x0C' | '\r'))
        .then_some(valid)
}

/// The part of a content type before parameters, lower case.
pub(super) fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

pub(super) fn by_mime(content_type: &str) -> Option<&'static Known> {
    let e = essence(content_type);
    ALL.iter()
        .copied()
        .find(|k| k.mime == e || k.aliases.contains(&e.as_str()))
}
