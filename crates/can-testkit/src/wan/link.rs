//! One emulated access link: rate (serialisation and a bounded queue), delay, jitter, loss
//! and up/down, applied by the forwarder to each packet. Pure apart from the time it is
//! handed and its random numbers, so it is tested without devices.

use std::time::{Duration, Instant};

/// A path between two sites that both use it. Each site's access link applies half of the
/// delay, jitter and loss (so the path has the whole), and the full rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    pub name: &'static str,
    pub bits_per_sec: u64,
    pub rtt: Duration,
    /// ± this much, uniformly, on the round trip.
    pub jitter: Duration,
    /// Of the path, 0.0..1.0.
    pub loss: f64,
}

impl Profile {
    /// 1 Gbit/s, 0.2 ms.
    pub const LAN: Profile = Profile {
        name: "lan",
        bits_per_sec: 1_000_000_000,
        rtt: Duration::from_micros(200),
        jitter: Duration::ZERO,
        loss: 0.0,
    };
    /// 100 Mbit/s, 20 ms RTT, 0.1 % loss.
    pub const BROADBAND: Profile = Profile {
        name: "broadband",
        bits_per_sec: 100_000_000,
        rtt: Duration::from_millis(20),
        jitter: Duration::ZERO,
        loss: 0.001,
    };
    /// 50 Mbit/s, 150 ms RTT, 0.5 % loss.
    pub const LONG_HAUL: Profile = Profile {
        name: "long-haul",
        bits_per_sec: 50_000_000,
        rtt: Duration::from_millis(150),
        jitter: Duration::ZERO,
        loss: 0.005,
    };
    /// 10 Mbit/s, 80 ms RTT ± 20 ms, 2 % loss.
    pub const MOBILE: Profile = Profile {
        name: "mobile",
        bits_per_sec: 10_000_000,
        rtt: Duration::from_millis(80),
        jitter: Duration::from_millis(20),
        loss: 0.02,
    };
    /// 20 Mbit/s, 600 ms RTT, 1 % loss.
    pub const SATELLITE: Profile = Profile {
        name: "satellite",
        bits_per_sec: 20_000_000,
        rtt: Duration::from_millis(600),
        jitter: Duration::ZERO,
        loss: 0.01,
    };

    pub const ALL: [Profile; 5] = [
        Self::LAN,
        Self::BROADBAND,
        Self::LONG_HAUL,
        Self::MOBILE,
        Self::SATELLITE,
    ];

    pub fn by_name(name: &str) -> Option<Profile> {
        Self::ALL.into_iter().find(|p| p.name == name)
    }
}

/// What happens to a packet on one link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Leaves the link at this time.
    Deliver(Instant),
    Dropped,
}

/// One direction of one site's access link.
#[derive(Debug)]
pub struct Link {
    pub profile: Profile,
    pub up: bool,
    /// When the link finishes sending what is queued.
    busy_until: Instant,
}

/// The queue holds at most this much sending time (a tail-drop buffer, as a router's): more
/// is dropped, which is what congestion control reacts to.
const MAX_QUEUE: Duration = Duration::from_millis(100);

impl Link {
    pub fn new(profile: Profile, now: Instant) -> Self {
        Self {
            profile,
            up: true,
            busy_until: now,
        }
    }

    /// The verdict for a packet of `len` bytes arriving at `now`; `r1`, `r2` uniform in
    /// 0..1 (loss, jitter).
    pub fn pass(&mut self, len: usize, now: Instant, r1: f64, r2: f64) -> Verdict {
        if !self.up || r1 < self.profile.loss / 2.0 {
            return Verdict::Dropped;
        }
        let start = self.busy_until.max(now);
        if start.saturating_duration_since(now) > MAX_QUEUE {
            return Verdict::Dropped;
        }
        let send = Duration::from_secs_f64(len as f64 * 8.0 / self.profile.bits_per_sec as f64);
        self.busy_until = start + send;
        // Half the round trip is one way; each of the path's two links takes half of that.
        let one_way = self.profile.rtt / 4;
        let jitter = self.profile.jitter.as_secs_f64() / 4.0 * (2.0 * r2 - 1.0);
        let delay = Duration::from_secs_f64((one_way.as_secs_f64() + jitter).max(0.0));
        Verdict::Deliver(self.busy_until + delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_delay_queue_and_cut() {
        let t0 = Instant::now();
        let mut l = Link::new(Profile::MOBILE, t0);
        // No loss (r1 high), no jitter (r2 = 0.5): 1250 bytes at 10 Mbit/s = 1 ms, + 20 ms.
        let Verdict::Deliver(at) = l.pass(1250, t0, 0.9, 0.5) else {
            panic!("dropped")
        };
        assert_eq!(at - t0, Duration::from_millis(21));
        // The next one queues behind it.
        let Verdict::Deliver(at2) = l.pass(1250, t0, 0.9, 0.5) else {
            panic!("dropped")
        };
        assert_eq!(at2 - t0, Duration::from_millis(22));
        // A burst beyond 100 ms of queue is dropped.
        let mut dropped = 0;
        for _ in 0..200 {
            if l.pass(1250, t0, 0.9, 0.5) == Verdict::Dropped {
                dropped += 1;
            }
        }
        assert!(dropped > 90, "{dropped}");
        // Loss: r1 below half the path's loss.
        let mut l = Link::new(Profile::MOBILE, t0);
        assert_eq!(l.pass(100, t0, 0.005, 0.5), Verdict::Dropped);
        l.up = false;
        assert_eq!(l.pass(100, t0, 0.9, 0.5), Verdict::Dropped);
        assert_eq!(Profile::by_name("long-haul"), Some(Profile::LONG_HAUL));
    }
}
