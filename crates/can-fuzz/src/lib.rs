//! Fuzz targets for the code that reads bytes someone else chose: peer frames and hash
//! lists, the RBSR and RIBLT codecs and sessions, the sync API's protobuf bodies, the public API's
//! requests (Range, names, queries, Host/Origin) and both config parsers.
//!
//! Each target is a plain `fn(&[u8])` that panics only on a bug: malformed input must come
//! back as an error, never as a panic, an overrun limit or a wrong answer. Two engines drive
//! the same functions:
//!
//! - `cargo test -p can-fuzz`: random inputs for a bounded time per target ([`harness`],
//!   arbtest), on the stable toolchain, plus every saved crash input in `regressions/`;
//! - `scripts/fuzz [SECONDS]`: coverage-guided libFuzzer runs of the `can-fuzz-libfuzzer`
//!   binary, one target at a time (see docs/fuzzing.md).
//!
//! Targets read their input through [`arbitrary::Unstructured`], so a few bytes pick a
//! structure (which message, which chunking, which id set) and the rest fill it in; running
//! out of bytes just ends the case.

pub mod harness;
mod targets;

pub use targets::{config, peer, proto, rbsr, riblt, service};

/// A fuzz target: must not panic on any input.
pub type Target = fn(&[u8]);

/// Every target by name (the names `scripts/fuzz` and the test files use).
pub const TARGETS: &[(&str, Target)] = &[
    ("peer_frames", peer::frames),
    ("hash_lists", peer::hash_lists),
    ("rbsr_codec", rbsr::codec),
    ("rbsr_session", rbsr::hostile_session),
    ("rbsr_pair", rbsr::honest_pair),
    ("riblt_codec", riblt::codec),
    ("riblt_session", riblt::hostile_session),
    ("riblt_pair", riblt::honest_pair),
    ("proto_frames", proto::frames),
    ("service_http", service::http),
    ("configs", config::configs),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}
