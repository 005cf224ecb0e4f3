//! What the connections and the swarm fetches share: our fetches in progress (so a peer's
//! range request can be answered from them), what each peer says it holds of its own, and
//! recently computed piece maps. Depends on the pure piece code only.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use can_proto::peer::Have;
use iroh::EndpointId;

use super::DIR;
use super::pieces::{self, Bits, Cv, Layout};
use crate::plan::Hash;

/// Fetches in progress one peer may tell us about; more are ignored (a peer fetches at
/// most a few large assets at once).
const PER_PEER: usize = 32;
/// Piece maps of whole assets kept, so the peers that all ask for one get it computed once.
const MAPS_KEPT: usize = 16;

/// What a peer said it holds of an asset it is fetching.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    pub have: Bits,
    pub pending: Bits,
}

/// One of our swarm fetches in progress.
pub(crate) struct Partial {
    pub path: PathBuf,
    pub layout: Layout,
    pub asset: can_proto::sync_api::Asset,
    pub(super) have: Mutex<Bits>,
    /// Cancelled when the fetch ends, however it ends.
    pub ended: tokio_util::sync::CancellationToken,
}

impl Partial {
    /// Whether every piece in `range` is verified and written.
    pub fn holds(&self, range: std::ops::Range<usize>) -> bool {
        self.have
            .lock()
            .map(|h| range.into_iter().all(|i| h.get(i)))
            .unwrap_or(false)
    }

    pub(super) fn mark(&self, i: usize) {
        if let Ok(mut h) = self.have.lock() {
            h.set(i, true);
        }
    }
}

/// A connected swarm peer a fetch may ask for pieces (from the actor); `full` if it is
/// known to have the whole asset.
#[derive(Debug, Clone)]
pub(crate) struct SourcePeer {
    pub id: EndpointId,
    pub conn: iroh::endpoint::Connection,
    pub full: bool,
}

#[derive(Default)]
struct Inner {
    ours: HashMap<Hash, Arc<Partial>>,
    theirs: HashMap<Hash, HashMap<EndpointId, Held>>,
}

/// Shared by the connections and the swarm fetches (see the module docs).
#[derive(Default)]
pub(crate) struct Registry {
    inner: Mutex<Inner>,
    /// Recently computed piece maps of assets in our store; computing one reads the asset.
    maps: tokio::sync::Mutex<VecDeque<(Hash, Arc<[Cv]>)>>,
}

impl Registry {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> Option<T> {
        self.inner.lock().ok().map(|mut i| f(&mut i))
    }

    /// Registers our fetch; `false` if one of the same asset runs already.
    pub(super) fn begin(&self, hash: Hash, partial: Arc<Partial>) -> bool {
        self.with(|i| {
            if i.ours.contains_key(&hash) {
                return false;
            }
            i.ours.insert(hash, partial);
            true
        })
        .unwrap_or(false)
    }

    pub(super) fn end(&self, hash: &Hash) {
        self.with(|i| i.ours.remove(hash));
    }

    /// Our fetch of `hash` in progress, if any.
    pub fn partial(&self, hash: &Hash) -> Option<Arc<Partial>> {
        self.with(|i| i.ours.get(hash).cloned()).flatten()
    }

    /// A peer's Have, checked. A refusal is the peer's misbehaviour.
    pub fn peer_have(&self, id: EndpointId, have: &Have) -> Result<(), &'static str> {
        let hash: Hash = have
            .hash
            .as_slice()
            .try_into()
            .map_err(|_| "malformed hash in Have")?;
        if have.gone {
            self.forget_have(&hash, &id);
            return Ok(());
        }
        let layout = Layout::checked(have.size, have.piece_len).ok_or("bad layout in Have")?;
        let held = Held {
            have: Bits::from_bytes(layout.count(), &have.have).ok_or("bad bitfield in Have")?,
            pending: Bits::from_bytes(layout.count(), &have.pending)
                .ok_or("bad bitfield in Have")?,
        };
        self.with(|i| {
            let known = i.theirs.get(&hash).is_some_and(|p| p.contains_key(&id));
            let count = i.theirs.values().filter(|p| p.contains_key(&id)).count();
            if known || count < PER_PEER {
                i.theirs.entry(hash).or_default().insert(id, held);
            }
        });
        Ok(())
    }

    /// What fetching peers hold of `hash`.
    pub fn held(&self, hash: &Hash) -> HashMap<EndpointId, Held> {
        self.with(|i| i.theirs.get(hash).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    /// What `id` said it holds of `hash` is not to be relied on (it failed to send a piece
    /// it claimed) until it says again.
    pub fn forget_have(&self, hash: &Hash, id: &EndpointId) {
        self.with(|i| {
            if let Some(peers) = i.theirs.get_mut(hash) {
                peers.remove(id);
                if peers.is_empty() {
                    i.theirs.remove(hash);
                }
            }
        });
    }

    /// The peer is gone: nothing it said holds any more.
    pub fn forget_peer(&self, id: &EndpointId) {
        self.with(|i| {
            i.theirs.retain(|_, peers| {
                peers.remove(id);
                !peers.is_empty()
            })
        });
    }

    /// The piece map of an asset in our store, computed from `content` unless kept.
    pub async fn map_of<S, E>(
        &self,
        hash: Hash,
        layout: Layout,
        content: S,
    ) -> Result<Arc<[Cv]>, String>
    where
        S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        use futures_util::StreamExt;
        // Held while computing: peers asking at once wait for the first answer instead of
        // each reading the asset again.
        let mut maps = self.maps.lock().await;
        if let Some((_, m)) = maps.iter().find(|(h, _)| *h == hash) {
            return Ok(m.clone());
        }
        let mut hasher = pieces::PieceHasher::new(layout);
        let mut content = content;
        while let Some(chunk) = content.next().await {
            hasher.update(&chunk.map_err(|e| e.to_string())?);
        }
        let map: Arc<[Cv]> = hasher
            .finish()
            .ok_or("the store's content has another size")?
            .into();
        if maps.len() >= MAPS_KEPT {
            maps.pop_front();
        }
        maps.push_back((hash, map.clone()));
        Ok(map)
    }
}

/// A Have message for our fetch.
pub(crate) fn have_msg(hash: &Hash, layout: &Layout, have: &Bits, pending: &Bits) -> Have {
    Have {
        hash: hash.to_vec(),
        size: layout.size,
        piece_len: layout.piece_len,
        have: have.as_bytes().to_vec(),
        pending: pending.as_bytes().to_vec(),
        gone: false,
    }
}

/// Piece files untouched this long are removed at start: the asset was fetched another
/// way, deleted, or its peers are gone.
const KEEP_UNFINISHED: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Removes piece files of fetches that never finished and were not touched for a week.
/// Newer ones stay: the next fetch of the asset keeps every piece that still verifies.
pub(crate) fn clean(data_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(data_dir.join(DIR)) else {
        return;
    };
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age > KEEP_UNFINISHED);
        if old && let Err(e) = std::fs::remove_file(entry.path()) {
            tracing::warn!(error = %e, "cannot remove an old swarm piece file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn have(hash: u8, size: u64, bits: Vec<u8>) -> Have {
        Have {
            hash: vec![hash; 32],
            size,
            piece_len: pieces::MIN_PIECE,
            have: bits.clone(),
            pending: vec![0; bits.len()],
            gone: false,
        }
    }

    #[test]
    fn a_peers_have_is_checked_kept_and_forgotten() {
        let r = Registry::default();
        let peer = iroh::SecretKey::generate().public();
        let size = pieces::SWARM_MIN; // 8 pieces: one byte of bits
        assert!(r.peer_have(peer, &have(1, size, vec![0b101])).is_ok());
        let held = r.held(&[1; 32]);
        assert!(held[&peer].have.get(0) && !held[&peer].have.get(1));
        // Another layout, a short or long bitfield, a bad hash: refused, nothing kept.
        let mut bad = have(2, size, vec![1]);
        bad.piece_len = 8 << 20;
        assert!(r.peer_have(peer, &bad).is_err());
        assert!(r.peer_have(peer, &have(2, size, vec![1, 0])).is_err());
        assert!(r.peer_have(peer, &have(2, size - 1, vec![1])).is_err());
        let mut short = have(2, size, vec![1]);
        short.hash.pop();
        assert!(r.peer_have(peer, &short).is_err());
        assert!(r.held(&[2; 32]).is_empty());
        // `gone`, and a disconnect, forget it.
        let gone = Have {
            hash: vec![1; 32],
            gone: true,
            ..Default::default()
        };
        assert!(r.peer_have(peer, &gone).is_ok());
        assert!(r.held(&[1; 32]).is_empty());
        assert!(r.peer_have(peer, &have(1, size, vec![1])).is_ok());
        r.forget_peer(&peer);
        assert!(r.held(&[1; 32]).is_empty());
    }

    #[test]
    fn one_peer_cannot_fill_the_registry() {
        let r = Registry::default();
        let peer = iroh::SecretKey::generate().public();
        for h in 0..100u8 {
            assert!(
                r.peer_have(peer, &have(h, pieces::SWARM_MIN, vec![1]))
                    .is_ok()
            );
        }
        let kept = (0..100u8).filter(|h| !r.held(&[*h; 32]).is_empty()).count();
        assert_eq!(kept, PER_PEER);
        // An update of a fetch it told us of still counts.
        assert!(
            r.peer_have(peer, &have(0, pieces::SWARM_MIN, vec![3]))
                .is_ok()
        );
        assert!(r.held(&[0; 32])[&peer].have.get(1));
    }
}
