//! The bounded `cargo test` engine: every saved regression input, then random inputs from
//! arbtest until the time budget is spent.
//!
//! The budget per target is `CAN_FUZZ_BUDGET_MS` (default 4,000 ms): eight targets stay
//! under a minute on two cores. A failure prints arbtest's seed; `ARBTEST_SEED=0x… cargo
//! test -p can-fuzz --test <target>` replays it, and the input is saved under the system
//! temp folder (`can-fuzz-failures/<target>/`); `CAN_FUZZ_REPLAY=<file>` runs just that
//! file. Once fixed, the file goes to `regressions/<target>/`, replayed by every run.

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Default time per target in `cargo test`.
pub const DEFAULT_BUDGET_MS: u64 = 4_000;

/// Where crash inputs are kept, one folder per target (`regressions/<target>/<file>`).
pub fn regressions_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("regressions")
        .join(name)
}

/// Saved inputs of `name`, sorted by file name.
pub fn regressions(name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(dir) = std::fs::read_dir(regressions_dir(name)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = dir
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, bytes)
        })
        .collect()
}

fn budget() -> Duration {
    let ms = std::env::var("CAN_FUZZ_BUDGET_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_BUDGET_MS);
    Duration::from_millis(ms)
}

/// Saves the input of a failing run, so it can become a file in `regressions/`.
struct KeepOnPanic<'a> {
    name: &'a str,
    input: &'a [u8],
}

impl Drop for KeepOnPanic<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let dir = std::env::temp_dir()
            .join("can-fuzz-failures")
            .join(self.name);
        let path = dir.join(format!("{}", blake3::hash(self.input).to_hex()));
        match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, self.input)) {
            Ok(()) => eprintln!("{}: failing input saved as {}", self.name, path.display()),
            Err(e) => eprintln!("{}: cannot save the failing input: {e}", self.name),
        }
    }
}

/// Runs target `name` on its regressions, then on random inputs for the budget. Panics
/// (failing the test) on the first input that makes the target panic.
pub fn check(name: &str) {
    let target = crate::target(name).unwrap_or_else(|| panic!("no fuzz target {name}"));
    // Scratch stores go even when the target panics.
    struct Cleanup;
    impl Drop for Cleanup {
        fn drop(&mut self) {
            crate::service::cleanup();
        }
    }
    let _cleanup = Cleanup;
    // One file only, e.g. to trim a failing input before saving it as a regression.
    if let Some(path) = std::env::var_os("CAN_FUZZ_REPLAY") {
        let input = std::fs::read(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        target(&input);
        return;
    }
    for (path, bytes) in regressions(name) {
        eprintln!("{name}: replaying {}", path.display());
        target(&bytes);
    }
    let started = Instant::now();
    let mut runs = 0u64;
    arbtest::arbtest(|u| {
        runs += 1;
        let input = u.bytes(u.len())?;
        let keep = KeepOnPanic { name, input };
        target(input);
        drop(keep);
        Ok(())
    })
    .size_max(1 << 16)
    .budget(budget())
    .run();
    eprintln!(
        "{name}: {runs} random inputs in {:.1} s, no failure",
        started.elapsed().as_secs_f64()
    );
}
