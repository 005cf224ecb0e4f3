//! `can-sync status` for people: the agent's [`Status`] turned into a few lines, with the
//! same words the app's tray uses ([`crate::human`]). Pure, so it is tested without an agent.

use crate::events::Status;
use crate::human::{bytes, is_syncing, syncing_line};

/// The state line, as the tray says it.
pub fn state(s: &Status) -> String {
    if s.paused {
        "paused".into()
    } else if let Some(held) = &s.mass_delete_held {
        format!("{} deletions held", held.count)
    } else if !s.store_online {
        "store offline".into()
    } else if is_syncing(s) {
        syncing_line(s)
    } else if s.peers.is_empty() {
        "no peers".into()
    } else {
        "up to date".into()
    }
}

fn short(id: &str) -> &str {
    id.get(..10).unwrap_or(id)
}

/// The status as `can-sync status` prints it.
pub fn render(s: &Status) -> String {
    let mut out = format!(
        "CAN Sync agent \"{}\" ({}): {}\n",
        s.device_name,
        short(&s.endpoint_id),
        state(s)
    );
    out += &format!(
        "store: {}, {} assets; {} pending, {} in flight\n",
        if s.store_online { "online" } else { "offline" },
        s.local_assets,
        s.pending,
        s.in_flight,
    );
    out += &format!(
        "sent {} assets ({}), received {} assets ({})\n",
        s.assets_sent,
        bytes(s.bytes_sent),
        s.assets_received,
        bytes(s.bytes_received),
    );
    if s.trash_assets > 0 {
        out += &format!(
            "trash: {} assets ({})\n",
            s.trash_assets,
            bytes(s.trash_bytes)
        );
    }
    if let Some(held) = &s.mass_delete_held {
        out += &format!(
            "HELD: {} deletions from peers (e.g. {}); run `can-sync deletions apply` or `can-sync deletions keep`\n",
            held.count,
            held.sample.join(", ")
        );
    }
    out += &format!("peers: {}\n", s.peers.len());
    for p in &s.peers {
        let rtt = p
            .rtt_ms
            .map(|ms| format!(", {ms:.0} ms"))
            .unwrap_or_default();
        out += &format!(
            "  {} ({}) {}{rtt}: sent {}, received {}\n",
            p.device_name,
            short(&p.endpoint_id),
            p.path,
            p.assets_sent,
            p.assets_received,
        );
    }
    if let Some(e) = &s.last_error {
        out += &format!("last error: {e}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::PeerStatus;

    #[test]
    fn renders_peers_counts_and_state() {
        let mut status = Status {
            endpoint_id: "abcdef0123456789".into(),
            device_name: "nas".into(),
            store_online: true,
            local_assets: 42,
            assets_sent: 3,
            bytes_sent: 1_500_000,
            assets_received: 1,
            bytes_received: 10,
            peers: vec![PeerStatus {
                endpoint_id: "0123456789abcdef".into(),
                device_name: "laptop".into(),
                path: "direct".into(),
                rtt_ms: Some(3.2),
                assets_sent: 3,
                assets_received: 1,
                ..PeerStatus::default()
            }],
            ..Status::default()
        };
        let text = render(&status);
        assert!(text.starts_with("CAN Sync agent \"nas\" (abcdef0123): up to date\n"));
        assert!(text.contains("42 assets"));
        assert!(text.contains("sent 3 assets (1.5 MB)"));
        assert!(text.contains("laptop (0123456789) direct, 3 ms"));
        status.pending = 2;
        assert_eq!(state(&status), "Syncing 2 assets");
        status.paused = true;
        assert_eq!(state(&status), "paused");
        // An id shorter than 10 bytes, or cut inside a character, is printed whole.
        status.endpoint_id = "ü".into();
        let _ = render(&status);
    }
}
