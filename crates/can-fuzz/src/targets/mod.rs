//! The targets, grouped by what they read.

pub mod config;
pub mod peer;
pub mod proto;
pub mod rbsr;
pub mod riblt;
pub mod service;

use arbitrary::Unstructured;

/// Runs a structured target on raw bytes: running out of input just ends the case.
pub(crate) fn structured(
    data: &[u8],
    f: impl FnOnce(&mut Unstructured<'_>) -> arbitrary::Result<()>,
) {
    let mut u = Unstructured::new(data);
    let _ = f(&mut u);
}

/// Up to `max` bytes of the input (fewer when it runs short).
pub(crate) fn some_bytes<'a>(u: &mut Unstructured<'a>, max: usize) -> arbitrary::Result<&'a [u8]> {
    let n = u.int_in_range(0..=max)?;
    u.bytes(n.min(u.len()))
}

/// The rest of the input.
pub(crate) fn rest<'a>(u: &mut Unstructured<'a>) -> &'a [u8] {
    u.bytes(u.len()).unwrap_or_default()
}
