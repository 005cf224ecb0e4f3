//! How reconciliation cost grows with the number of assets N: the pure protocols
//! (`can_sync::reconcile`, the code the agents run: RIBLT for asset hashes, RBSR for
//! tombstones and older peers) between two in-memory id sets at 10k / 100k / 1M, beside
//! the differing ids themselves and the full hash-list exchange they replace. No
//! sockets, so this isolates the protocol; the end-to-end figure at 100k (start-up, store
//! listing, wire) is `compare`'s reconciliation row. See bench/README.md "Scaling".

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::ensure;
use can_proto::peer::Reconcile;
use can_sync::reconcile::{Hash, Progress, Reconciliations, wire_len};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(clap::Args)]
pub struct Args {
    /// Set sizes to run (each side holds about this many ids).
    #[arg(long, value_delimiter = ',', default_values_t = [10_000usize, 100_000, 1_000_000])]
    sizes: Vec<usize>,
    /// Share of each side's ids the other lacks, in percent, for the "differ" rows.
    #[arg(long, default_value_t = 1.0)]
    differ_percent: f64,
}

struct Outcome {
    bytes: u64,
    turns: u32,
    frames: u64,
    /// Both sides' CPU work on the messages, on this one thread.
    elapsed: Duration,
    need_a: usize,
    need_b: usize,
}

struct Side {
    recon: Reconciliations,
    need: usize,
    finished: bool,
}

impl Side {
    fn new(riblt: bool) -> Self {
        Self {
            recon: Reconciliations::default().with_riblt(riblt),
            need: 0,
            finished: false,
        }
    }

    fn take(&mut self, p: Progress, out: &mut VecDeque<Reconcile>) {
        self.need += p.need.len();
        self.finished |= p.finished.is_some();
        out.extend(p.out);
    }
}

/// Messages and bytes seen on the control stream, both directions.
#[derive(Default)]
struct Wire {
    bytes: u64,
    frames: u64,
    turns: u32,
}

/// Hands the next message queued for `to` (if any) to it, queueing its answers in `back`.
fn deliver(
    queue: &mut VecDeque<Reconcile>,
    to: &mut Side,
    items: &Arc<[Hash]>,
    back: &mut VecDeque<Reconcile>,
    wire: &mut Wire,
) -> anyhow::Result<()> {
    if let Some(m) = queue.pop_front() {
        wire.bytes += wire_len(&m);
        wire.frames += 1;
        wire.turns = wire.turns.max(m.round + 1);
        let p = to.recon.receive(&m, || items.clone())?;
        to.take(p, back);
    }
    Ok(())
}

/// A starts; one message crosses in each direction per step, as on the control stream.
fn reconcile(a_items: Arc<[Hash]>, b_items: Arc<[Hash]>, riblt: bool) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let (mut a, mut b) = (Side::new(riblt), Side::new(riblt));
    let mut to_b: VecDeque<Reconcile> = a.recon.start(a_items.clone()).into();
    let mut to_a = VecDeque::new();
    let mut wire = Wire::default();
    while !to_a.is_empty() || !to_b.is_empty() {
        deliver(&mut to_b, &mut b, &b_items, &mut to_a, &mut wire)?;
        deliver(&mut to_a, &mut a, &a_items, &mut to_b, &mut wire)?;
        ensure!(
            wire.frames < 10_000_000,
            "reconciliation does not terminate"
        );
    }
    ensure!(a.finished && b.finished, "a side did not finish");
    Ok(Outcome {
        bytes: wire.bytes,
        turns: wire.turns,
        frames: wire.frames,
        elapsed: started.elapsed(),
        need_a: a.need,
        need_b: b.need,
    })
}

/// Ids are unique by construction (drawn into a set), so sorting is all that is left.
fn sorted(mut v: Vec<Hash>) -> Arc<[Hash]> {
    v.sort_unstable();
    v.into()
}

/// `n` shared ids, plus `extra` more on each side that the other lacks.
fn sets(rng: &mut StdRng, n: usize, extra: usize) -> (Arc<[Hash]>, Arc<[Hash]>) {
    // In draw order (a set's iteration order is random per process), so a seed gives the same
    // sets on every run; the set only filters out repeats.
    let total = n + 2 * extra;
    let (mut seen, mut all) = (HashSet::with_capacity(total), Vec::with_capacity(total));
    while all.len() < total {
        let id = rng.random::<Hash>();
        if seen.insert(id) {
            all.push(id);
        }
    }
    let shared = &all[..n];
    let mut a = shared.to_vec();
    a.extend_from_slice(&all[n..n + extra]);
    let mut b = shared.to_vec();
    b.extend_from_slice(&all[n + extra..]);
    (sorted(a), sorted(b))
}

/// Bytes the full hash-list exchange sends: every id, 32 bytes, both ways (framing aside).
fn full_lists(a: usize, b: usize) -> u64 {
    32 * (a + b) as u64
}

fn human_bytes(b: u64) -> String {
    match b {
        b if b >= 10_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b if b >= 10_000 => format!("{:.1} KB", b as f64 / 1e3),
        b => format!("{b} B"),
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    ensure!(
        (0.0..50.0).contains(&args.differ_percent),
        "--differ-percent must be in [0, 50)"
    );
    let mut rng = StdRng::seed_from_u64(7);
    println!("## Reconciliation cost by set size (pure protocol, in-process, one thread)\n");
    println!(
        "| N per side | case | method | turns (round trips) | bytes on the wire | ÷ differing ids | full hash lists | ÷ full | CPU, both sides |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for &n in &args.sizes {
        let extra = ((n as f64) * args.differ_percent / 100.0).round() as usize;
        for (case, extra) in [("equal", 0), ("differ", extra)] {
            let (a, b) = sets(&mut rng, n - extra, extra);
            let (len_a, len_b) = (a.len(), b.len());
            for (method, riblt) in [("riblt", true), ("rbsr", false)] {
                // Nothing else runs on the runtime: the work can stay on this thread.
                let out = reconcile(a.clone(), b.clone(), riblt)?;
                ensure!(
                    out.need_a == extra && out.need_b == extra,
                    "N={n} {case} {method}: found {} / {} missing, expected {extra} each",
                    out.need_a,
                    out.need_b
                );
                let full = full_lists(len_a, len_b);
                let label = if extra == 0 {
                    case.to_string()
                } else {
                    format!("{} % missing each side ({extra})", args.differ_percent)
                };
                // The ids that differ, 32 bytes each: what any method must at least carry.
                let ids = 32 * 2 * extra as u64;
                let per_id = if ids == 0 {
                    "–".to_string()
                } else {
                    format!("{:.2}×", out.bytes as f64 / ids as f64)
                };
                println!(
                    "| {n} | {label} | {method} | {} ({}) | {} in {} frames | {per_id} | {} | {:.4} | {:.1} ms |",
                    out.turns,
                    out.turns.div_ceil(2),
                    human_bytes(out.bytes),
                    out.frames,
                    human_bytes(full),
                    out.bytes as f64 / full as f64,
                    out.elapsed.as_secs_f64() * 1e3,
                );
            }
        }
    }
    Ok(())
}
