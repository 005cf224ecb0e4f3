//! Bounded fan-out, pure: how many connections an agent keeps, so that fifty devices are
//! not 1,225 connections (docs/protocol.md, "Connections and resilience").
//!
//! Every member mirrors everything, so assets (and deletions) cross any connected graph:
//! an agent stores what a peer sends and announces it to its other peers. An agent holds at
//! most `max_peers` sessions in all (both directions). It dials until a third of them (at
//! least one) are sessions it dialled, and accepts the rest. Only dialled sessions count
//! toward dialling, so agents that filled up on each other still dial out (a group where
//! incoming sessions satisfied everyone would stay an island), and the room to accept is
//! about twice what everyone dials for, so a dialler finds agents that take it. Which
//! candidates win is chance (dial loops race, with jitter): the dialled edges form a random
//! graph of out-degree `max_peers / 3`, connected with high probability from 2 up. Tickets
//! the user gave are always dialled and always accepted.

/// Default of the agent's `max_peers`.
pub const DEFAULT_MAX_PEERS: usize = 8;

/// Dialled sessions an agent aims for: a third of its bound, at least one.
pub fn dial_target(max_peers: usize) -> usize {
    max_peers.div_ceil(3).max(1)
}

/// Whether a dial loop may dial now, with `outbound` dialled sessions and `sessions` in all.
pub fn may_dial(outbound: usize, sessions: usize, max_peers: usize, pinned: bool) -> bool {
    pinned || max_peers == 0 || (outbound < dial_target(max_peers) && sessions < max_peers)
}

/// Whether an incoming connection may proceed to admission, with `sessions` held.
pub fn may_accept(sessions: usize, max_peers: usize, pinned: bool) -> bool {
    pinned || max_peers == 0 || sessions < max_peers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_dials_for_a_third_of_its_bound_and_accepts_the_rest() {
        assert_eq!(dial_target(6), 2);
        assert_eq!(dial_target(8), 3);
        assert_eq!(dial_target(1), 1);
        assert!(may_dial(1, 5, 6, false));
        assert!(!may_dial(2, 2, 6, false));
        assert!(!may_dial(1, 6, 6, false));
        assert!(may_accept(5, 6, false));
        assert!(!may_accept(6, 6, false));
        assert!(may_dial(100, 100, 8, true) && may_accept(100, 8, true));
        assert!(may_dial(100, 100, 0, false) && may_accept(100, 0, false));
    }
}
