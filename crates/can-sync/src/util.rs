//! Small helpers of the engine's tasks.

use std::path::Path;
use std::time::Duration;

use crate::context::Context;

/// `d` ± 25 %, so agents that started together do not retry in lockstep.
pub(crate) fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::random_range(0.75..=1.25))
}

/// Sleeps `d`, or less if the engine stops.
pub(crate) async fn sleep_or_cancel(ctx: &Context, d: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = ctx.cancelled() => {}
    }
}

/// Writes a file whole or not at all (temp file, rename).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
