//! Headers of served content that keep a browser from running or rendering it as part of
//! the store's origin: an HTML or SVG asset opened from the store must not be able to
//! script the API (threat model: "Web pages").

use axum::http::HeaderValue;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::store::names::strip_format_chars;

/// `Content-Security-Policy` of content: a unique opaque origin, no scripts, no forms.
pub const CONTENT_CSP: &str = "sandbox";

/// RFC 5987 `attr-char` minus what RFC 6266 leaves out: everything else is %-encoded.
const ATTR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// Whether content of this type may be shown inline: types a browser displays passively.
/// Everything else — HTML, SVG, any XML, scripts, unknown types — is an attachment: a
/// browser renders those actively (scripts, links, XSLT) or may do so in some version.
pub fn is_passive(content_type: &str) -> bool {
    let Ok(mime) = content_type.parse::<mime::Mime>() else {
        return false;
    };
    if mime.suffix().is_some() {
        // `+xml`, `+json` and the like: structured types browsers may render actively.
        return false;
    }
    matches!(
        (mime.type_().as_str(), mime.subtype().as_str()),
        ("image", "png" | "jpeg" | "gif" | "webp" | "avif" | "bmp")
            | ("text", "plain")
            | ("application", "pdf" | "json")
            | ("audio" | "video", _)
    )
}

/// `Content-Disposition` for an asset: `inline` only for passive types, `attachment`
/// otherwise; with the name (cleaned of format characters, which rows stored before
/// names were cleaned may still hold) as RFC 6266 `filename*`.
pub fn content_disposition(content_type: &str, name: &str) -> HeaderValue {
    let kind = if is_passive(content_type) {
        "inline"
    } else {
        "attachment"
    };
    let name = strip_format_chars(name);
    let value = if name.is_empty() {
        kind.to_owned()
    } else {
        format!(
            "{kind}; filename*=UTF-8''{}",
            utf8_percent_encode(&name, ATTR)
        )
    };
    // Percent-encoding leaves only visible ASCII, which is always a valid header value.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_and_unknown_types_are_attachments() {
        for t in [
            "text/html",
            "text/html; charset=utf-8",
            "TEXT/HTML",
            "application/xhtml+xml",
            "image/svg+xml",
            "text/xml",
            "application/xml",
            "application/rss+xml",
            "application/ld+json",
            "text/javascript",
            "application/javascript",
            "application/ecmascript",
            "text/ecmascript",
            "application/x-javascript",
            "text/css",
            "application/octet-stream",
            "application/x-unknown",
            "multipart/x-mixed-replace; boundary=x",
            "not a type",
            "",
        ] {
            assert!(!is_passive(t), "{t}");
            let d = content_disposition(t, "x");
            assert!(d.to_str().unwrap().starts_with("attachment"), "{t}");
        }
    }

    #[test]
    fn passive_types_are_inline() {
        for t in [
            "image/png",
            "image/jpeg",
            "image/gif",
            "image/webp",
            "text/plain",
            "text/plain; charset=utf-8",
            "application/pdf",
            "application/json",
            "audio/mpeg",
            "video/mp4",
        ] {
            assert!(is_passive(t), "{t}");
        }
    }

    #[test]
    fn names_are_encoded_and_cleaned() {
        let d = content_disposition("image/png", "Grüße a.b-c_d~.png");
        assert_eq!(
            d.to_str().unwrap(),
            "inline; filename*=UTF-8''Gr%C3%BC%C3%9Fe%20a.b-c_d~.png"
        );
        let d = content_disposition("text/html", "x\u{202E}lmth.exe\";");
        assert_eq!(
            d.to_str().unwrap(),
            "attachment; filename*=UTF-8''xlmth.exe%22%3B"
        );
        assert_eq!(
            content_disposition("text/html", "").to_str().unwrap(),
            "attachment"
        );
    }
}
