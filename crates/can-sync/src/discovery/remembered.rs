//! Peers seen in earlier runs (`data_dir/peers.pb`), dialled first on the next start, so a
//! restarted agent finds its peers again even with rendezvous and LAN discovery off.
//!
//! The file is sealed with a key derived from the passphrase: it is bound to the group it
//! was written for. When the passphrase changes the file no longer opens, and it is
//! discarded, so a removed member is never dialled again by a device that moved on.

use std::path::Path;

use can_proto::peer::{PeerInfo, RendezvousRecord};
use prost::Message;

use super::info::{open, seal};

const FILE: &str = "peers.pb";
/// At most this many peers are remembered (the most recently seen).
const MAX: usize = 64;
/// Larger files are not ours (64 peers take a few KiB).
const MAX_FILE_BYTES: u64 = 256 * 1024;

/// The key that seals the file, from the admission subkey.
pub fn file_key(admission_key: &[u8; 32]) -> [u8; 32] {
    blake3::derive_key("can-sync v1 remembered peers", admission_key)
}

/// The remembered peers, or none if the file is missing, damaged, or was written under
/// another passphrase (then it is deleted).
pub fn load(data_dir: &Path, key: &[u8; 32]) -> Vec<PeerInfo> {
    let path = data_dir.join(FILE);
    let too_big = std::fs::metadata(&path).is_ok_and(|m| m.len() > MAX_FILE_BYTES);
    let Ok(bytes) = std::fs::read(&path).map(|b| if too_big { Vec::new() } else { b }) else {
        return Vec::new();
    };
    match open(key, &bytes).and_then(|plain| RendezvousRecord::decode(plain.as_slice()).ok()) {
        Some(record) => record.peers,
        None => {
            tracing::info!(path = %path.display(), "discarding remembered peers of another passphrase (or a damaged file)");
            let _ = std::fs::remove_file(&path);
            Vec::new()
        }
    }
}

/// Adds or refreshes `info` and writes the list (atomically).
pub fn remember(data_dir: &Path, key: &[u8; 32], info: PeerInfo) -> std::io::Result<()> {
    let mut peers = load(data_dir, key);
    peers.retain(|p| p.endpoint_id != info.endpoint_id);
    peers.insert(0, info);
    peers.sort_by_key(|p| std::cmp::Reverse(p.timestamp_ms));
    peers.truncate(MAX);
    let sealed = seal(key, &RendezvousRecord { peers }.encode_to_vec());
    crate::util::write_atomic(&data_dir.join(FILE), &sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_newest_first_without_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let key = file_key(&[1; 32]);
        assert!(load(dir.path(), &key).is_empty());
        for (id, ts) in [(1u8, 10u64), (2, 20), (1, 30)] {
            remember(
                dir.path(),
                &key,
                PeerInfo {
                    endpoint_id: vec![id; 32],
                    timestamp_ms: ts,
                    ..Default::default()
                },
            )
            .unwrap();
        }
        let peers = load(dir.path(), &key);
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[0].endpoint_id, vec![1; 32]);
        assert_eq!(peers[0].timestamp_ms, 30);
    }

    #[test]
    fn another_passphrase_discards_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let old = file_key(&[1; 32]);
        remember(
            dir.path(),
            &old,
            PeerInfo {
                endpoint_id: vec![9; 32],
                device_name: "removed member".into(),
                ..Default::default()
            },
        )
        .unwrap();
        let raw = std::fs::read(dir.path().join(FILE)).unwrap();
        assert!(
            !raw.windows(14).any(|w| w == b"removed member"),
            "the file is sealed"
        );
        assert!(load(dir.path(), &file_key(&[2; 32])).is_empty());
        assert!(!dir.path().join(FILE).exists(), "discarded");
        assert!(load(dir.path(), &old).is_empty());
    }
}
