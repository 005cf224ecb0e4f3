//! Transfers in flight and how fast they move: what the status's `transfers`, `bytes_left`,
//! `download_rate` and `upload_rate` report, and the `progress` event.
//!
//! The fetch and serve tasks register a transfer when its size is known and count bytes as
//! they pass ([`Transfers::start`] → [`Guard::add`]); the guard removes it when the task
//! ends, however it ends. Rates are measured over the last [`WINDOW`] from samples taken
//! whenever a status is built, so nothing runs while nothing is asked.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use iroh::EndpointId;
use serde::{Deserialize, Serialize};

use crate::plan::Hash;

/// Rates are bytes over this much of the recent past.
pub const WINDOW: Duration = Duration::from_secs(5);
/// Samples kept per meter (a status every 100 ms over WINDOW, at most).
const MAX_SAMPLES: usize = 64;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    #[default]
    Download,
    Upload,
}

/// One transfer as reported.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct TransferStatus {
    pub hash: String,
    pub name: String,
    pub peer: String,
    /// Filled in by the engine from its peer table ("" if the peer is gone).
    pub device_name: String,
    pub direction: Direction,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub rate_bytes_per_sec: f64,
    /// `None` while nothing moves.
    pub eta_secs: Option<f64>,
}

/// Bytes per second over the recent past, from (time, running total) samples. Pure apart
/// from being handed the time.
#[derive(Debug, Default)]
pub struct Meter {
    samples: VecDeque<(Instant, u64)>,
}

impl Meter {
    /// Records the running total at `now` and returns the rate over the last WINDOW.
    pub fn sample(&mut self, now: Instant, total: u64) -> f64 {
        while let Some(&(t, _)) = self.samples.front() {
            // Keep one sample older than the window as the rate's starting point.
            let older_than_window = now.saturating_duration_since(t) > WINDOW;
            let next_also_old = self
                .samples
                .get(1)
                .is_some_and(|&(t2, _)| now.saturating_duration_since(t2) >= WINDOW);
            if older_than_window && next_also_old || self.samples.len() >= MAX_SAMPLES {
                self.samples.pop_front();
            } else {
                break;
            }
        }
        if self
            .samples
            .back()
            .is_none_or(|&(t, _)| now.saturating_duration_since(t) >= Duration::from_millis(50))
        {
            self.samples.push_back((now, total));
        }
        // A stretch where nothing moved is not part of the rate: after an idle hour the
        // rate starts from the last sample before bytes moved, not from an hour ago (the
        // engine samples only while something moves).
        while self.samples.len() >= 2 && self.samples[0].1 == self.samples[1].1 {
            self.samples.pop_front();
        }
        let Some(&(t0, b0)) = self.samples.front() else {
            return 0.0;
        };
        let dt = now.saturating_duration_since(t0).as_secs_f64();
        if dt < 0.05 {
            return 0.0;
        }
        total.saturating_sub(b0) as f64 / dt
    }
}

struct Entry {
    peer: EndpointId,
    hash: Hash,
    name: String,
    direction: Direction,
    total: u64,
    done: AtomicU64,
    started: Instant,
    meter: Mutex<Meter>,
}

/// Every transfer in flight, and the byte counters the overall rates come from.
#[derive(Default)]
pub struct Transfers {
    next: AtomicU64,
    live: Mutex<HashMap<u64, Arc<Entry>>>,
    downloaded: AtomicU64,
    uploaded: AtomicU64,
    meters: Mutex<(Meter, Meter)>,
    /// Wakes the engine when a transfer starts after none moved: it reports progress only
    /// while something moves, and a peer's request does not pass through it.
    first_started: tokio::sync::Notify,
}

/// A registered transfer; counts its bytes, and unregisters it when dropped.
pub struct Guard {
    owner: Arc<Transfers>,
    id: u64,
    entry: Arc<Entry>,
}

impl Guard {
    pub fn add(&self, bytes: u64) {
        self.entry.done.fetch_add(bytes, Ordering::Relaxed);
        let counter = match self.entry.direction {
            Direction::Download => &self.owner.downloaded,
            Direction::Upload => &self.owner.uploaded,
        };
        counter.fetch_add(bytes, Ordering::Relaxed);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(mut live) = self.owner.live.lock() {
            live.remove(&self.id);
        }
    }
}

/// The overall picture at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub transfers: Vec<TransferStatus>,
    pub bytes_left: u64,
    pub download_rate: f64,
    pub upload_rate: f64,
}

impl Transfers {
    /// Registers a transfer of `total` bytes of which `done` already arrived earlier (a
    /// resumed transfer; they do not count as moved now).
    pub fn start(
        self: &Arc<Self>,
        direction: Direction,
        peer: EndpointId,
        hash: Hash,
        name: &str,
        (done, total): (u64, u64),
    ) -> Guard {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let entry = Arc::new(Entry {
            peer,
            hash,
            name: name.chars().take(256).collect(),
            direction,
            total,
            done: AtomicU64::new(done.min(total)),
            started: Instant::now(),
            meter: Mutex::default(),
        });
        let first = match self.live.lock() {
            Ok(mut live) => {
                let first = live.is_empty();
                live.insert(id, entry.clone());
                first
            }
            Err(_) => false,
        };
        if first {
            // The rates start from here, not from the last sample before an idle stretch.
            self.sample_rates(Instant::now());
            self.first_started.notify_one();
        }
        Guard {
            owner: self.clone(),
            id,
            entry,
        }
    }

    /// Returns once a transfer started while none was in flight (at once if one did since
    /// the last call).
    pub async fn first_started(&self) {
        self.first_started.notified().await;
    }

    /// Samples the overall byte counters: every second while something moves (the actor's
    /// tick), whenever a status is built, and when a transfer starts after none moved.
    pub fn sample_rates(&self, now: Instant) -> (f64, f64) {
        match self.meters.lock() {
            Ok(mut m) => (
                m.0.sample(now, self.downloaded.load(Ordering::Relaxed)),
                m.1.sample(now, self.uploaded.load(Ordering::Relaxed)),
            ),
            Err(_) => (0.0, 0.0),
        }
    }

    /// Content bytes moved in each direction since the start, in finished transfers and in
    /// interrupted ones: (downloaded, uploaded).
    pub fn moved(&self) -> (u64, u64) {
        (
            self.downloaded.load(Ordering::Relaxed),
            self.uploaded.load(Ordering::Relaxed),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.live.lock().map(|l| l.is_empty()).unwrap_or(true)
    }

    /// Whether a transfer with `peer` (either direction) is in flight.
    pub fn involves(&self, peer: &EndpointId) -> bool {
        self.live
            .lock()
            .map(|l| l.values().any(|e| e.peer == *peer))
            .unwrap_or(true)
    }

    /// The transfers (oldest first, at most `limit`) and the overall rates, sampled now.
    pub fn snapshot(&self, now: Instant, limit: usize) -> Snapshot {
        let mut entries: Vec<Arc<Entry>> = self
            .live
            .lock()
            .map(|l| l.values().cloned().collect())
            .unwrap_or_default();
        entries.sort_by_key(|e| e.started);
        let mut snap = Snapshot::default();
        for (i, e) in entries.iter().enumerate() {
            let done = e.done.load(Ordering::Relaxed).min(e.total);
            let rate = e
                .meter
                .lock()
                .map(|mut m| m.sample(now, done))
                .unwrap_or(0.0);
            if e.direction == Direction::Download {
                snap.bytes_left += e.total - done;
            }
            if i < limit {
                snap.transfers.push(TransferStatus {
                    hash: hex::encode(e.hash),
                    name: e.name.clone(),
                    peer: e.peer.to_string(),
                    device_name: String::new(),
                    direction: e.direction,
                    bytes_done: done,
                    bytes_total: e.total,
                    rate_bytes_per_sec: rate,
                    eta_secs: (rate > 0.0).then(|| (e.total - done) as f64 / rate),
                });
            }
        }
        (snap.download_rate, snap.upload_rate) = self.sample_rates(now);
        snap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meter_rates_over_the_window() {
        let t0 = Instant::now();
        let mut m = Meter::default();
        assert_eq!(m.sample(t0, 0), 0.0);
        let r = m.sample(t0 + Duration::from_secs(1), 1_000_000);
        assert!((r - 1e6).abs() < 1.0, "{r}");
        // Ten seconds later at the same total: the window has moved past all the bytes.
        m.sample(t0 + Duration::from_secs(6), 1_000_000);
        let r = m.sample(t0 + Duration::from_secs(12), 1_000_000);
        assert_eq!(r, 0.0);
        // Steady 2 MB/s.
        let mut m = Meter::default();
        let mut r = 0.0;
        for s in 0..20u64 {
            r = m.sample(t0 + Duration::from_millis(500 * s), s * 1_000_000);
        }
        assert!((r - 2e6).abs() < 1e3, "{r}");
    }

    #[test]
    fn transfers_report_progress_and_leave_when_dropped() {
        let t = Arc::new(Transfers::default());
        let peer = iroh::SecretKey::generate().public();
        let down = t.start(Direction::Download, peer, [1; 32], "big.bin", (0, 1000));
        let up = t.start(Direction::Upload, peer, [2; 32], "other", (0, 50));
        down.add(400);
        up.add(50);
        let now = Instant::now();
        let s = t.snapshot(now, 16);
        assert_eq!(s.transfers.len(), 2);
        assert_eq!(s.transfers[0].bytes_done, 400);
        assert_eq!(s.transfers[0].direction, Direction::Download);
        assert_eq!(s.bytes_left, 600);
        // A peer that sends more than it announced does not make the numbers wrap.
        down.add(10_000);
        assert_eq!(t.snapshot(now, 16).bytes_left, 0);
        assert_eq!(t.snapshot(now, 1).transfers.len(), 1);
        drop(down);
        drop(up);
        assert!(t.is_empty());
        assert!(t.snapshot(now, 16).transfers.is_empty());
    }
}
