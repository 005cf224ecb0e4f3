//! libFuzzer entry point for the long runs (`scripts/fuzz`): one binary, the target named by
//! `CAN_FUZZ_TARGET`. Built with coverage instrumentation by `scripts/fuzz`; `cargo test`
//! never builds it (it needs the `libfuzzer` feature).

#![no_main]

use std::sync::OnceLock;

static TARGET: OnceLock<can_fuzz::Target> = OnceLock::new();

fn target() -> can_fuzz::Target {
    *TARGET.get_or_init(|| {
        let name = std::env::var("CAN_FUZZ_TARGET").unwrap_or_default();
        can_fuzz::target(&name).unwrap_or_else(|| {
            let names: Vec<&str> = can_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
            eprintln!("set CAN_FUZZ_TARGET to one of {names:?}");
            std::process::exit(2)
        })
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| target()(data));
