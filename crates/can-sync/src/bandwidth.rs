//! Bandwidth limits: one token bucket per direction shared by every transfer of the engine
//! (governor), changed at run time ([`crate::Engine::set_bandwidth`]). Peers on the LAN are
//! exempt unless `limit_lan` is set.
//!
//! Downloads are limited by reading more slowly (QUIC flow control then slows the sender);
//! uploads by writing more slowly. Either way the bytes wait before they move, so a limit
//! holds from the first chunk.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use iroh::TransportAddr;
use iroh::endpoint::Connection;
use serde::{Deserialize, Serialize};

use crate::progress::Direction;

/// The limits the user chose.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BandwidthLimits {
    /// Bytes per second; `None`: unlimited.
    pub upload_bytes_per_sec: Option<u64>,
    pub download_bytes_per_sec: Option<u64>,
    /// Also limit peers on the LAN (a direct path to a private, link-local or loopback
    /// address). Off by default: LAN peers are exempt.
    pub limit_lan: bool,
}

/// The smallest limit taken: 1 KB/s (below it a chunk would wait minutes).
pub const MIN_RATE: u64 = 1_000;
/// The largest: u32 bytes per second (governor counts cells in u32), about 4 GB/s.
pub const MAX_RATE: u64 = u32::MAX as u64;

/// "5 MB/s", "500 KB/s", "1.5 MB/s", "250000" (bytes/s) → bytes per second; "off", "0",
/// "unlimited" → None. Units are decimal (1 KB = 1000 bytes), as the app shows them.
pub fn parse_rate(text: &str) -> Result<Option<u64>, String> {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    if matches!(lower.as_str(), "" | "off" | "0" | "none" | "unlimited") {
        return Ok(None);
    }
    let unit_at = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(unit_at);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{t:?} is not a rate like \"5 MB/s\" or \"500 KB/s\""))?;
    let factor = match unit.trim().trim_end_matches("/s") {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        _ => return Err(format!("{t:?}: the unit must be B/s, KB/s, MB/s or GB/s")),
    };
    let bytes = (number * factor).round();
    if !bytes.is_finite() || bytes < MIN_RATE as f64 || bytes > MAX_RATE as f64 {
        return Err(format!("{t:?}: a limit must be between 1 KB/s and 4 GB/s"));
    }
    Ok(Some(bytes as u64))
}

/// Whether the connection's current path is a direct one to an address on the LAN.
pub fn is_lan_conn(conn: &Connection) -> bool {
    let paths = conn.paths();
    paths.iter().any(|p| {
        p.is_selected() && matches!(p.remote_addr(), TransportAddr::Ip(addr) if is_lan(addr.ip()))
    })
}

/// Private (RFC 1918, unique-local), link-local and loopback addresses.
pub fn is_lan(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_link_local() || v4.is_loopback(),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_lan(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

struct Bucket {
    limiter: DefaultDirectRateLimiter,
    /// The most one wait may take (governor refuses more at once).
    burst: u32,
}

impl Bucket {
    fn new(rate: u64) -> Option<Self> {
        let rate = NonZeroU32::new(u32::try_from(rate.clamp(MIN_RATE, MAX_RATE)).ok()?)?;
        // A quarter second of bytes may go at once: smooth enough for a progress bar, and
        // few enough wake-ups.
        let burst = NonZeroU32::new((rate.get() / 4).max(16 * 1024))?;
        Some(Self {
            limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
            burst: burst.get(),
        })
    }

    async fn take(&self, mut bytes: u64) {
        while bytes > 0 {
            let part = bytes.min(u64::from(self.burst)) as u32;
            if let Some(n) = NonZeroU32::new(part) {
                // Cannot fail: part ≤ burst, the bucket's capacity.
                let _ = self.limiter.until_n_ready(n).await;
            }
            bytes -= u64::from(part);
        }
    }
}

/// The limits and the buckets made from them.
#[derive(Default)]
struct Buckets {
    limits: BandwidthLimits,
    up: Option<Arc<Bucket>>,
    down: Option<Arc<Bucket>>,
}

/// The engine's buckets, replaced whole when the limits change.
#[derive(Default)]
pub(crate) struct Shaper {
    state: RwLock<Buckets>,
}

impl Shaper {
    pub fn new(limits: BandwidthLimits) -> Self {
        let s = Self::default();
        s.set(limits);
        s
    }

    pub fn set(&self, limits: BandwidthLimits) {
        let up = limits
            .upload_bytes_per_sec
            .and_then(Bucket::new)
            .map(Arc::new);
        let down = limits
            .download_bytes_per_sec
            .and_then(Bucket::new)
            .map(Arc::new);
        if let Ok(mut s) = self.state.write() {
            *s = Buckets { limits, up, down };
        }
    }

    pub fn limits(&self) -> BandwidthLimits {
        self.state.read().map(|s| s.limits).unwrap_or_default()
    }

    /// Waits until `bytes` may move in `direction` to a peer (`lan`: on the LAN). The
    /// bucket is looked up per call, so a change of limits applies to running transfers.
    pub async fn take(&self, direction: Direction, lan: bool, bytes: u64) {
        let bucket = match self.state.read() {
            Ok(s) if !lan || s.limits.limit_lan => match direction {
                Direction::Upload => s.up.clone(),
                Direction::Download => s.down.clone(),
            },
            _ => None,
        };
        if let Some(b) = bucket {
            b.take(bytes).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_in_decimal_units() {
        assert_eq!(parse_rate("5 MB/s"), Ok(Some(5_000_000)));
        assert_eq!(parse_rate("500 KB/s"), Ok(Some(500_000)));
        assert_eq!(parse_rate("1.5MB/s"), Ok(Some(1_500_000)));
        assert_eq!(parse_rate("250000"), Ok(Some(250_000)));
        // "Mbps" is megabits to most people: refused rather than read as megabytes.
        assert!(parse_rate("2 mbps").is_err());
        assert_eq!(parse_rate("off"), Ok(None));
        assert_eq!(parse_rate("0"), Ok(None));
        for bad in ["fast", "5 TB/s", "-1 MB/s", "10 B/s", "1e400", "5 MiB/s"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lan_addresses() {
        for lan in [
            "192.168.1.2",
            "10.0.0.1",
            "172.16.5.4",
            "127.0.0.1",
            "169.254.1.1",
        ] {
            assert!(is_lan(lan.parse().unwrap()), "{lan}");
        }
        for lan in ["::1", "fd00::1", "fe80::1", "::ffff:192.168.0.1"] {
            assert!(is_lan(lan.parse().unwrap()), "{lan}");
        }
        for wan in ["8.8.8.8", "100.64.0.1", "2001:db8::1", "::ffff:1.1.1.1"] {
            assert!(!is_lan(wan.parse().unwrap()), "{wan}");
        }
    }

    #[tokio::test]
    async fn a_bucket_holds_its_rate_and_lan_is_exempt() {
        let shaper = Shaper::new(BandwidthLimits {
            upload_bytes_per_sec: Some(400_000),
            download_bytes_per_sec: None,
            limit_lan: false,
        });
        let start = std::time::Instant::now();
        // 100 KB of burst, then 300 KB at 400 KB/s: ≈ 0.75 s.
        for _ in 0..40 {
            shaper.take(Direction::Upload, false, 10_000).await;
        }
        let took = start.elapsed().as_secs_f64();
        assert!((0.6..1.2).contains(&took), "{took}");
        // Unlimited and exempt directions do not wait.
        let start = std::time::Instant::now();
        shaper.take(Direction::Download, false, 10_000_000).await;
        shaper.take(Direction::Upload, true, 10_000_000).await;
        assert!(start.elapsed().as_secs_f64() < 0.1);
    }
}
