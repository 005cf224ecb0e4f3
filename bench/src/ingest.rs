//! Ingest of one large upload: can-service over loopback HTTP vs. the floor of the same work
//! done in-process (BLAKE3 over the data plus a buffered write and fsync of a copy).

use std::io::{Read, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, ensure};
use clap::Args as ClapArgs;

use can_testkit::Service;

use crate::proc::{mib, peak_rss};

#[derive(ClapArgs)]
pub struct Args {
    /// Size of the asset in MiB.
    #[arg(long, default_value_t = 1024)]
    size_mib: u64,
    /// Runs of each side; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

const CHUNK: usize = 1 << 20;

pub async fn run(args: Args) -> anyhow::Result<()> {
    let work = tempfile::tempdir()?;
    let source = work.path().join("source.bin");
    let size = args.size_mib << 20;
    write_random(&source, size)?;
    let expected = hash_file(&source)?;

    let mut floor = Vec::new();
    let mut service = Vec::new();
    let mut rss = Vec::new();
    for run in 0..args.runs {
        floor.push(baseline(&source, &work.path().join(format!("copy-{run}")))?);
        let data_dir = work.path().join(format!("store-{run}"));
        let (secs, peak) = upload(&source, &data_dir, &expected).await?;
        service.push(secs);
        rss.push(peak);
        std::fs::remove_dir_all(&data_dir)?;
        std::fs::remove_file(work.path().join(format!("copy-{run}")))?;
    }
    let floor_s = median(&mut floor);
    let service_s = median(&mut service);
    let peak = rss.iter().copied().max().unwrap_or(0);
    let mbps = |s: f64| size as f64 / s / 1e6;
    println!(
        "## can-service ingest, {} MiB asset, median of {} runs\n",
        args.size_mib, args.runs
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| BLAKE3 + write + fsync in-process (floor) | {:.2} s, {:.0} MB/s |",
        floor_s,
        mbps(floor_s)
    );
    println!(
        "| POST /api/assets over loopback | {:.2} s, {:.0} MB/s |",
        service_s,
        mbps(service_s)
    );
    println!(
        "| ratio service ÷ floor (goal ≥ 0.7) | {:.2} |",
        floor_s / service_s
    );
    println!(
        "| can-service peak RSS (goal < 64 MiB) | {:.1} MiB |",
        mib(peak)
    );
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn write_random(path: &Path, size: u64) -> anyhow::Result<()> {
    let mut xof = blake3::Hasher::new()
        .update(b"can-bench ingest")
        .finalize_xof();
    let mut out = std::io::BufWriter::with_capacity(CHUNK, std::fs::File::create(path)?);
    let mut buf = vec![0u8; CHUNK];
    let mut left = size;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        xof.fill(&mut buf[..n]);
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    out.flush()?;
    Ok(())
}

fn hash_file(path: &Path) -> anyhow::Result<String> {
    let mut hasher = blake3::Hasher::new();
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// What ingest must do at the least: hash every byte (one thread, as b3sum without mmap
/// would) and write a durable copy.
fn baseline(source: &Path, copy: &Path) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut hasher = blake3::Hasher::new();
    let mut input = std::fs::File::open(source)?;
    let mut out = std::fs::File::create(copy)?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
    }
    out.sync_all()?;
    std::hint::black_box(hasher.finalize());
    Ok(start.elapsed().as_secs_f64())
}

async fn upload(source: &Path, data_dir: &Path, expected: &str) -> anyhow::Result<(f64, u64)> {
    let service = Service::start(data_dir, "");
    // The test kit's client installs the TLS provider that reqwest lacks beside iroh.
    let client = can_testkit::client();
    let file = tokio::fs::File::open(source).await?;
    let len = file.metadata().await?.len();
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(file, CHUNK));
    let start = Instant::now();
    let response = client
        .post(format!("{}/api/assets?name=big.bin", service.url))
        .header("Content-Length", len)
        .body(body)
        .send()
        .await
        .context("upload")?;
    let secs = start.elapsed().as_secs_f64();
    ensure!(
        response.status() == 201,
        "upload answered {}",
        response.status()
    );
    let meta: serde_json::Value = response.json().await?;
    ensure!(
        meta["hash"] == expected,
        "stored hash differs from the source's"
    );
    Ok((secs, peak_rss(service.child.id())?))
}
