//! What "Open" does with what a peer sends.

use super::*;

const HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const PNG_HEAD: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
const PE_HEAD: &[u8] = b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xFF\xFF";
const PDF_HEAD: &[u8] = b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n";

fn open_name(name: &str, declared: Option<&str>, head: &[u8]) -> (bool, String, String) {
    let c = classify(name, declared, head);
    (c.safe_to_open(), file_name(name, HASH, &c), c.label)
}

#[test]
fn the_content_decides_not_the_name_or_the_declared_type() {
    // The classic: an .exe whose name reads as a PDF.
    let (open, file, label) = open_name("invoice\u{202E}fdp.exe", Some("application/pdf"), PE_HEAD);
    assert!(!open);
    assert_eq!(file, "invoicefdp.exe");
    assert_eq!(label, "a Windows program");
    // A program named like a PDF gets the program's extension.
    let (open, file, _) = open_name("report.pdf", Some("application/pdf"), PE_HEAD);
    assert!(!open);
    assert_eq!(file, "report.exe");
    // An ELF named like a photo: no extension of its own, so a neutral one.
    let (open, file, label) = open_name("photo.jpg", Some("image/jpeg"), b"\x7FELF\x02\x01");
    assert!(!open);
    assert_eq!(file, "photo.bin");
    assert_eq!(label, "a Linux program (ELF)");
    // A PDF that is a PDF opens; a PNG named .exe opens as a PNG.
    assert_eq!(
        open_name("Rechnung.PDF", None, PDF_HEAD),
        (true, "Rechnung.PDF".into(), "a PDF document".into())
    );
    let (open, file, _) = open_name("setup.exe", Some("application/x-msdownload"), PNG_HEAD);
    assert!(open);
    assert_eq!(file, "setup.png");
}

#[test]
fn the_allow_list() {
    let cases: &[(&[u8], &str, Category)] = &[
        (b"\xFF\xD8\xFF\xE0\0\x10JFIF", "image/jpeg", Category::Image),
        (b"GIF89a\x01\0", "image/gif", Category::Image),
        (b"RIFF\0\0\0\0WEBPVP8 ", "image/webp", Category::Image),
        (b"\0\0\0\x1cftypavif\0\0\0\0", "image/avif", Category::Image),
        (b"ID3\x04\0\0\0\0\0\0", "audio/mpeg", Category::Audio),
        (b"OggS\0\x02", "audio/ogg", Category::Audio),
        (b"fLaC\0\0\0\x22", "audio/flac", Category::Audio),
        (b"RIFF\0\0\0\0WAVEfmt ", "audio/wav", Category::Audio),
        (
            b"\0\0\0\x20ftypisom\0\0\x02\0",
            "video/mp4",
            Category::Video,
        ),
        (
            b"\0\0\0\x14ftypqt  \0\0\0\0",
            "video/quicktime",
            Category::Video,
        ),
        (
            b"\x1A\x45\xDF\xA3\x9F\x42\x86\x81\x01\x42\x82\x84webm",
            "video/webm",
            Category::Video,
        ),
    ];
    for (head, mime, cat) in cases {
        let c = classify("x", None, head);
        assert_eq!((c.mime.as_str(), c.category), (*mime, *cat), "{head:?}");
        assert!(c.safe_to_open());
    }
}

#[test]
fn risky_types_are_named_and_not_opened() {
    // (peer's name, declared type, content, file written, words of the label)
    type Case<'a> = (&'a str, Option<&'a str>, &'a [u8], &'a str, &'a str);
    let cases: &[Case] = &[
        ("a.zip", None, b"PK\x03\x04\x14\0", "a.zip", "ZIP"),
        (
            "letter.docm",
            None,
            b"PK\x03\x04\x14\0",
            "letter.docm",
            "ZIP",
        ),
        ("song.mp3", None, b"PK\x03\x04\x14\0", "song.zip", "ZIP"),
        (
            "old.doc",
            None,
            b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1",
            "old.doc",
            "Office",
        ),
        (
            "tool",
            None,
            b"\xCF\xFA\xED\xFE\x07\0\0\x01",
            "tool",
            "Mach-O",
        ),
        (
            "x.lnk",
            None,
            b"\x4C\0\0\0\x01\x14\x02\0\0\0",
            "x.lnk",
            "shortcut",
        ),
        (
            "run.sh",
            Some("text/plain"),
            b"#!/bin/sh\nrm -rf ~\n",
            "run.txt",
            "plain",
        ),
        ("run", None, b"#!/bin/sh\nrm -rf ~\n", "run.sh", "script"),
        (
            "notes.md",
            None,
            b"#!/usr/bin/env python3\n",
            "notes.md",
            "script",
        ),
        ("cute.jpg", None, b"#!/bin/sh\n", "cute.sh", "script"),
        (
            "a.desktop",
            None,
            b"[Desktop Entry]\nExec=sh\n",
            "a.desktop",
            "launcher",
        ),
        (
            "page.html",
            None,
            b"<!DOCTYPE html><script>",
            "page.html",
            "web page",
        ),
        (
            "pic.svg",
            None,
            b"<?xml version=\"1.0\"?>\n<svg onload=",
            "pic.svg",
            "SVG",
        ),
        (
            "app.js",
            Some("application/javascript"),
            b"alert(1)",
            "app.js",
            "JavaScript",
        ),
    ];
    for (name, declared, head, file, label) in cases {
        let c = classify(name, *declared, head);
        assert_eq!(file_name(name, HASH, &c), *file, "{name}");
        assert!(c.label.contains(label), "{name}: {}", c.label);
        assert_eq!(c.safe_to_open(), *label == "plain", "{name}");
    }
}

#[test]
fn text_needs_text_bytes_and_a_text_claim() {
    let (open, file, _) = open_name("notes.txt", None, "Grüße\r\n\tzwei".as_bytes());
    assert!(open);
    assert_eq!(file, "notes.txt");
    // Declared text/plain: written as .txt whatever the peer's extension says.
    let (open, file, _) = open_name("notes.bat", Some("text/plain; charset=utf-8"), b"echo");
    assert!(open);
    assert_eq!(file, "notes.txt");
    // A UTF-8 sequence cut by the head's end is still text.
    let (open, _, _) = open_name("a.txt", None, &"ää".as_bytes()[..3]);
    assert!(open);
    // Binary bytes are not text, whatever is claimed.
    let (open, file, label) = open_name("a.txt", Some("text/plain"), b"\0\x01\x02binary");
    assert!(!open);
    assert_eq!(file, "a.bin");
    assert_eq!(
        label,
        "a file of unknown type (its sender calls it text/plain)"
    );
    // Text without a text claim is not opened (an .md may open in a browser).
    let (open, file, label) = open_name("readme.md", None, b"# Title\n");
    assert!(!open);
    assert_eq!(file, "readme.md");
    assert_eq!(label, "a file of unknown type");
}

#[test]
fn unknown_content_never_keeps_a_safe_looking_extension() {
    let (open, file, label) = open_name("invoice.pdf", Some("application/pdf"), b"\0\0junk");
    assert!(!open);
    assert_eq!(file, "invoice.bin");
    assert_eq!(
        label,
        "a file of unknown type (its sender calls it application/pdf)"
    );
    let (_, file, _) = open_name("data.7z", None, b"7z\xBC\xAF\x27\x1C");
    assert_eq!(file, "data.7z");
    let (_, file, _) = open_name("blob", None, b"\0\x01");
    assert_eq!(file, "blob");
    // The declared type is peer text too: cleaned for display.
    let c = classify("x", Some("application/x-\u{202E}evil\n<b>"), b"\0");
    assert_eq!(
        c.label,
        "a file of unknown type (its sender calls it application/x-evil <b>)"
    );
}

#[test]
fn one_extension_only() {
    let c = classify("x", None, PE_HEAD);
    assert_eq!(file_name("invoice.pdf.exe", HASH, &c), "invoice_pdf.exe");
    let c = classify("x", None, PNG_HEAD);
    assert_eq!(
        file_name("Urlaub 2026.v2.png", HASH, &c),
        "Urlaub 2026_v2.png"
    );
    assert_eq!(file_name(".png", HASH, &c), "png.png");
    assert_eq!(file_name("", HASH, &c), "0123456789abcdef.png");
}

#[test]
fn safe_names_cannot_escape_or_deceive() {
    assert_eq!(safe_name("../../etc/passwd", "ab"), "_.._etc_passwd");
    assert_eq!(safe_name("..", HASH), "0123456789abcdef");
    assert_eq!(safe_name("", HASH), "0123456789abcdef");
    assert_eq!(safe_name("Fotos/ä.jpg", HASH), "Fotos_ä.jpg");
    assert_eq!(safe_name("C:\\Windows\\x.exe", HASH), "C__Windows_x.exe");
    assert_eq!(safe_name(".bashrc", HASH), "bashrc");
    assert_eq!(safe_name("a\u{0}b\nc\u{7f}", HASH), "a_b_c_");
    assert_eq!(
        safe_name("\u{2066}abc\u{2069}\u{200B}\u{FEFF}.txt", HASH),
        "abc.txt"
    );
    assert_eq!(safe_name("what? <now>*|\".txt", HASH), "what_ _now____.txt");
    assert_eq!(safe_name("trailing. . ", HASH), "trailing");
    assert_eq!(safe_name("CON.txt", HASH), "_CON.txt");
    assert_eq!(safe_name("com1", HASH), "_com1");
    assert_eq!(safe_name("console.txt", HASH), "console.txt");
    let long = format!("{}.jpg", "ü".repeat(300));
    let s = safe_name(&long, HASH);
    assert!(s.len() <= MAX_NAME && s.ends_with("ü.jpg"), "{s}");
}
