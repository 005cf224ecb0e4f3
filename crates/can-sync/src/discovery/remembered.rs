//! Peers seen in earlier runs (`data_dir/peers.pb`), dialled first on the next start, so a
//! restarted agent finds its peers again even with rendezvous and LAN discovery off.

use std::path::Path;

use can_proto::peer::{PeerInfo, RendezvousRecord};
use prost::Message;

const FILE: &str = "peers.pb";
/// At most this many peers are remembered (the most recently seen).
const MAX: usize = 64;

pub fn load(data_dir: &Path) -> Vec<PeerInfo> {
    std::fs::read(data_dir.join(FILE))
        .ok()
        .and_then(|b| RendezvousRecord::decode(b.as_slice()).ok())
        .map(|r| r.peers)
        .unwrap_or_default()
}

/// Adds or refreshes `info` and writes the list (atomically).
pub fn remember(data_dir: &Path, info: PeerInfo) -> std::io::Result<()> {
    let mut peers = load(data_dir);
    peers.retain(|p| p.endpoint_id != info.endpoint_id);
    peers.insert(0, info);
    peers.sort_by_key(|p| std::cmp::Reverse(p.timestamp_ms));
    peers.truncate(MAX);
    let tmp = data_dir.join(format!("{FILE}.tmp"));
    std::fs::write(&tmp, RendezvousRecord { peers }.encode_to_vec())?;
    std::fs::rename(&tmp, data_dir.join(FILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_newest_first_without_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).is_empty());
        for (id, ts) in [(1u8, 10u64), (2, 20), (1, 30)] {
            remember(
                dir.path(),
                PeerInfo {
                    endpoint_id: vec![id; 32],
                    timestamp_ms: ts,
                    ..Default::default()
                },
            )
            .unwrap();
        }
        let peers = load(dir.path());
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[0].endpoint_id, vec![1; 32]);
        assert_eq!(peers[0].timestamp_ms, 30);
    }
}
