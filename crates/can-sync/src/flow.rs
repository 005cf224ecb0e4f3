//! QUIC flow-control windows sized to the path: a window below the bandwidth-delay product
//! caps a transfer at window ÷ RTT whatever the link (iroh's default 1.25 MB per stream is
//! 2 MB/s at a satellite's 600 ms), and a window far above it only lets a stalled reader's
//! buffers grow.
//!
//! QUIC fixes the per-stream window when the endpoint starts ([`STREAM_WINDOW`], a cap for
//! one asset, bounded by what noq's receive buffer tolerates: see there) but lets a connection's receive window (what a peer may have in flight to us,
//! over all streams; iroh's default is unbounded) change at any time, so it follows the
//! path's measured RTT: twice the bandwidth-delay product at [`TARGET_RATE`], within
//! [`MIN_WINDOW`]..[`MAX_WINDOW`]. It is refitted when a transfer starts (no timer: an idle
//! agent stays idle). The send window (what we keep unacknowledged per connection) is
//! [`MAX_WINDOW`] from the start: iroh cannot change it per connection, and the peer's
//! receive window bounds what it lets us send anyway.

use std::time::Duration;

use iroh::endpoint::{Connection, VarInt};

/// The most one stream (one asset) may have in flight: 2 MiB (3.5 MB/s per asset at a
/// satellite's 600 ms, 21 MB/s at 100 ms; a peer runs up to 8 transfers at once).
///
/// Not more: noq (1.4) closes the whole connection ("too many gaps in stream buffer") when
/// the unread part of one stream is more than [`NOQ_MAX_GAPS`] disjoint pieces, which a
/// burst of interleaved loss (a full socket buffer on a fast path) makes out of a large
/// window. With 16 MiB, a 1 GiB mirror between two engines in one process lost its
/// connection 44 times in 100 s and crawled; 2 MiB holds at most
/// 2 MiB ÷ (2 × [`MIN_PACKET_PAYLOAD`]) ≈ 900 pieces, so it cannot happen.
pub const STREAM_WINDOW: u64 = 2 << 20;
/// noq's `MAX_CHUNKS`: disjoint received pieces one stream may hold before it fails.
pub const NOQ_MAX_GAPS: u64 = 1024;
/// Stream bytes in a full-size QUIC packet at the smallest MTU QUIC allows (1200 B less
/// headers and frame overhead).
pub const MIN_PACKET_PAYLOAD: u64 = 1150;
/// The floor of a connection's windows: enough for a LAN at full rate.
pub const MIN_WINDOW: u64 = 8 << 20;
/// The ceiling: 64 MiB per connection in flight at most, with `max_peers` (8) connections
/// 512 MiB in the worst case of every peer sending to a stalled store over a long path.
pub const MAX_WINDOW: u64 = 64 << 20;
/// The rate the windows are sized for: 1 Gbit/s.
pub const TARGET_RATE: u64 = 125_000_000;

/// Packets acknowledged after one before it is declared lost by count alone: high, so that
/// reordering is judged by time ([`TIME_THRESHOLD`]). QUIC's default is 3.
pub const PACKET_THRESHOLD: u32 = 1000;
/// Declared lost after this many RTTs without an acknowledgement while later packets were
/// acknowledged: 1.25, a quarter RTT of reordering window as TCP's RACK. QUIC's is 9/8.
pub const TIME_THRESHOLD: f32 = 1.25;

/// The connection window for a path of round-trip time `rtt`: twice its bandwidth-delay
/// product at [`TARGET_RATE`] (the receiver grants credit as it reads, about once per RTT,
/// so one BDP of window would stall half the time), clamped.
pub fn window_for(rtt: Duration) -> u64 {
    let bdp = rtt.as_secs_f64() * TARGET_RATE as f64;
    ((2.0 * bdp) as u64).clamp(MIN_WINDOW, MAX_WINDOW)
}

/// The round-trip time of `conn`'s selected path, if it has one.
pub fn selected_rtt(conn: &Connection) -> Option<Duration> {
    conn.paths()
        .iter()
        .find(|p| p.is_selected())
        .map(|p| p.rtt())
}

/// Sets `conn`'s receive window for its selected path's RTT (unknown: the floor).
pub fn fit(conn: &Connection) {
    let window = window_for(selected_rtt(conn).unwrap_or(Duration::ZERO));
    conn.set_receive_window(VarInt::from_u64(window).unwrap_or(VarInt::MAX));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_follow_the_bandwidth_delay_product_within_bounds() {
        // LAN and broadband: the floor.
        assert_eq!(window_for(Duration::from_micros(200)), MIN_WINDOW);
        assert_eq!(window_for(Duration::from_millis(20)), MIN_WINDOW);
        // Long haul: 2 × 150 ms × 125 MB/s = 37.5 MB.
        assert_eq!(window_for(Duration::from_millis(150)), 37_500_000);
        // Satellite: 150 MB, capped.
        assert_eq!(window_for(Duration::from_millis(600)), MAX_WINDOW);
        // One asset's stream window cannot hold more disjoint pieces (every other packet
        // lost) than noq tolerates, and is not below iroh's default (1.25 MB).
        const { assert!(STREAM_WINDOW / (2 * MIN_PACKET_PAYLOAD) < NOQ_MAX_GAPS) };
        const { assert!(STREAM_WINDOW >= 1_250_000) };
    }
}
