//! Helpers the benches share: bounded polling, uploads, progress lines, file stamps.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use bytes::Bytes;

/// Polls `check` every `every_ms` until it holds; an error after `secs`.
pub(crate) async fn poll<F, Fut>(
    secs: u64,
    every_ms: u64,
    what: &str,
    mut check: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if check().await {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "{what} (waited {secs} s)");
        tokio::time::sleep(Duration::from_millis(every_ms)).await;
    }
}

/// `POST /api/assets`; 201 or 200 expected.
pub(crate) async fn post(
    c: &reqwest::Client,
    base: &str,
    name: &str,
    body: Bytes,
) -> anyhow::Result<()> {
    let r = c
        .post(format!("{base}/api/assets"))
        .header("X-Filename", name)
        .body(body)
        .timeout(Duration::from_secs(300))
        .send()
        .await
        .context("upload")?;
    ensure!(
        r.status() == 201 || r.status() == 200,
        "upload of {name} answered {}",
        r.status()
    );
    Ok(())
}

/// Progress on stderr, with the time since the run started.
pub(crate) fn step(what: &str) {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let t = START.get_or_init(Instant::now).elapsed().as_secs_f64();
    eprintln!("[bench {t:6.1} s] {what}");
}

/// A UTC minute as results files are named: `2026-12-01T0338Z`.
pub(crate) fn stamp(now: time::OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute()
    )
}
