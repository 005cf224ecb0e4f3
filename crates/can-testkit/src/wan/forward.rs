//! The testbed's forwarder: one thread per site reads the packets its TUN device sends to
//! the emulated network and passes them through the sender's uplink and the receiver's
//! downlink ([`Link`]); one thread holds them until they are due and writes them into the
//! receiver's TUN device.

use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::link::{Link, Verdict};

pub(super) struct Links {
    /// Per site: (uplink: site → network, downlink: network → site).
    pub links: Vec<(Link, Link)>,
    pub rng: rand::rngs::StdRng,
}

/// What the forwarder's threads share with the testbed.
pub(super) struct Shared {
    pub links: Mutex<Links>,
    pub stop: AtomicBool,
    /// Orders packets due at the same instant.
    pub seq: AtomicU64,
    pub delivered: AtomicU64,
    pub dropped: AtomicU64,
    /// IP bytes the sites sent onto the emulated network (delivered or not).
    pub sent_bytes: AtomicU64,
}

impl Shared {
    pub fn set_up(&self, i: usize, up: bool) {
        if let Ok(mut l) = self.links.lock() {
            l.links[i].0.up = up;
            l.links[i].1.up = up;
        }
    }
}

/// A packet waiting for its time.
#[derive(PartialEq, Eq)]
pub(super) struct Due {
    at: Instant,
    seq: u64,
    to: usize,
    packet: Vec<u8>,
}

impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Earliest first out of the (max-)heap.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

pub(super) fn read_site(
    from: usize,
    sites: usize,
    tun: &File,
    shared: &Shared,
    tx: &mpsc::Sender<Due>,
) {
    let mut buf = vec![0u8; 65536];
    let fd = tun.as_raw_fd();
    while !shared.stop.load(Ordering::Relaxed) {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let ready = unsafe { libc::poll(&mut pfd, 1, 100) };
        if ready <= 0 {
            continue;
        }
        let n = match (&*tun).read(&mut buf) {
            Ok(n) => n,
            Err(_) => return,
        };
        let packet = &buf[..n];
        // IPv4 to 10.77.0.x only; the rest (none is expected) is dropped.
        if n < 20 || packet[0] >> 4 != 4 || packet[16..19] != [10, 77, 0] {
            continue;
        }
        let to = packet[19] as usize;
        if to == 0 || to > sites || to - 1 == from {
            continue;
        }
        let to = to - 1;
        shared.sent_bytes.fetch_add(n as u64, Ordering::Relaxed);
        let now = Instant::now();
        let verdict = {
            let Ok(mut l) = shared.links.lock() else {
                return;
            };
            let l = &mut *l;
            let (r1, r2, r3, r4) = (
                rand::Rng::random::<f64>(&mut l.rng),
                rand::Rng::random::<f64>(&mut l.rng),
                rand::Rng::random::<f64>(&mut l.rng),
                rand::Rng::random::<f64>(&mut l.rng),
            );
            match l.links[from].0.pass(n, now, r1, r2) {
                Verdict::Deliver(at) => l.links[to].1.pass(n, at, r3, r4),
                Verdict::Dropped => Verdict::Dropped,
            }
        };
        match verdict {
            Verdict::Deliver(at) => {
                let due = Due {
                    at,
                    seq: shared.seq.fetch_add(1, Ordering::Relaxed),
                    to,
                    packet: packet.to_vec(),
                };
                if tx.send(due).is_err() {
                    return;
                }
            }
            Verdict::Dropped => {
                shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

pub(super) fn deliver(rx: mpsc::Receiver<Due>, tuns: &[Arc<File>], shared: &Shared) {
    let mut queue = BinaryHeap::new();
    while !shared.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        while queue.peek().is_some_and(|d: &Due| d.at <= now) {
            if let Some(d) = queue.pop() {
                // A full receive queue drops the packet, like a real interface.
                if (&*tuns[d.to]).write(&d.packet).is_ok() {
                    shared.delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let wait = queue
            .peek()
            .map(|d| d.at.saturating_duration_since(now))
            .unwrap_or(Duration::from_millis(100))
            .min(Duration::from_millis(100));
        match rx.recv_timeout(wait) {
            Ok(d) => queue.push(d),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        // Take whatever else arrived without waiting.
        while let Ok(d) = rx.try_recv() {
            queue.push(d);
        }
    }
}
