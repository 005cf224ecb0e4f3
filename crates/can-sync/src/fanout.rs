//! Bounded fan-out, pure: how many connections an agent keeps, so that fifty devices are
//! not 1,225 connections (docs/protocol.md, "Connections and resilience").
//!
//! Every member mirrors everything, so assets (and deletions) cross any connected graph:
//! an agent stores what a peer sends and announces it to its other peers. An agent
//! therefore dials only until it has `max_peers` connections it dialled itself (peers on
//! the LAN up to twice that: they cost little and move data fastest), and accepts incoming
//! connections up to `2 × max_peers`. Which candidates win is left to chance (dial loops
//! race, with jitter), and because only dialled connections count toward the dial limit, a
//! group of agents that filled up on each other still dials out: the dialled edges form a
//! random graph of out-degree `max_peers`, connected with high probability for
//! `max_peers ≥ 2`. Tickets the user gave are always dialled and always accepted.

/// Default of the agent's `max_peers`.
pub const DEFAULT_MAX_PEERS: usize = 8;

/// Whether a dial loop may dial now: `outbound` connections we dialled exist.
pub fn may_dial(outbound: usize, max_peers: usize, pinned: bool, lan: bool) -> bool {
    if pinned || max_peers == 0 {
        return true;
    }
    let limit = if lan { 2 * max_peers } else { max_peers };
    outbound < limit
}

/// Whether an incoming connection may proceed to admission: `inbound` connections the
/// peers dialled exist.
pub fn may_accept(inbound: usize, max_peers: usize, pinned: bool) -> bool {
    pinned || max_peers == 0 || inbound < 2 * max_peers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert!(may_dial(7, 8, false, false));
        assert!(!may_dial(8, 8, false, false));
        assert!(may_dial(15, 8, false, true));
        assert!(!may_dial(16, 8, false, true));
        assert!(may_dial(100, 8, true, false));
        assert!(may_dial(100, 0, false, false));
        assert!(may_accept(15, 8, false));
        assert!(!may_accept(16, 8, false));
        assert!(may_accept(16, 8, true));
    }
}
