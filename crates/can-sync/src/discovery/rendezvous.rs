//! Rendezvous in pkarr relay "slots" derived from the passphrase.
//!
//! There are [`SLOTS`] slots; slot i is an Ed25519 key derived from the rendezvous subkey, so
//! everyone with the passphrase can write and read every slot, and nobody else can find them.
//! A slot holds one sealed [`RendezvousRecord`] of up to a few peers. pkarr keeps only the
//! last write per key, so a writer first reads its home slot, merges (fresh entries, itself
//! first), and writes the result back; anyone who finds its own entry missing on the next
//! round writes again. Agents that share a slot thus converge on a shared list, and the
//! others are found in the other slots (or through gossip once any one connection exists).

use std::sync::Arc;
use std::time::Duration;

use can_proto::peer::{PeerInfo, RendezvousRecord};
use iroh::{EndpointId, PublicKey, SecretKey};
use iroh_dns::pkarr::SignedPacket;
use prost::Message;

use super::info::{endpoint_id, is_fresh, now_ms, open, seal};
use crate::candidates::Source;
use crate::context::Context;
use crate::util::{jitter, sleep_or_cancel};

pub const SLOTS: usize = 8;
/// Peers kept in one slot (a pkarr packet holds at most 1000 bytes of DNS).
const PEERS_PER_SLOT: usize = 3;
const RECORD_NAME: &str = "_cansync";
const TTL_SECS: u32 = 300;

/// The public pkarr relays used when `pkarr_relays` is not set.
pub const DEFAULT_RELAYS: &[&str] = &["https://relay.pkarr.org", "https://dns.iroh.link/pkarr"];

pub struct Rendezvous {
    http: reqwest::Client,
    relays: Vec<String>,
    slots: Vec<SecretKey>,
    seal_key: [u8; 32],
    home: usize,
}

impl Rendezvous {
    pub fn new(
        rendezvous_key: &[u8; 32],
        seal_key: [u8; 32],
        relays: Vec<String>,
        me: EndpointId,
    ) -> Self {
        crate::can_client::install_crypto_provider();
        let slots = (0..SLOTS)
            .map(|i| {
                let mut h = blake3::Hasher::new_keyed(rendezvous_key);
                h.update(b"slot");
                h.update(&[i as u8]);
                SecretKey::from_bytes(h.finalize().as_bytes())
            })
            .collect();
        let home = blake3::hash(me.as_bytes()).as_bytes()[0] as usize % SLOTS;
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            relays: relays
                .into_iter()
                .map(|r| r.trim_end_matches('/').to_owned())
                .collect(),
            slots,
            seal_key,
            home,
        }
    }

    pub fn slot_public(&self, i: usize) -> PublicKey {
        self.slots[i].public()
    }

    /// The fresh peers in one slot (the most recent packet any relay has).
    async fn read_slot(&self, i: usize) -> Vec<PeerInfo> {
        let public = self.slot_public(i);
        let mut newest: Option<SignedPacket> = None;
        for relay in &self.relays {
            let url = format!("{relay}/{}", public.to_z32());
            let Ok(resp) = self.http.get(&url).send().await else {
                continue;
            };
            if !resp.status().is_success() {
                continue;
            }
            let Ok(body) = resp.bytes().await else {
                continue;
            };
            let Ok(packet) = SignedPacket::from_relay_payload(&public, &body) else {
                tracing::debug!(slot = i, "relay returned an invalid packet");
                continue;
            };
            if newest.as_ref().is_none_or(|n| packet.more_recent_than(n)) {
                newest = Some(packet);
            }
        }
        let Some(packet) = newest else {
            return Vec::new();
        };
        decode_record(&self.seal_key, &packet.txt_records(RECORD_NAME))
    }

    async fn write_slot(&self, i: usize, peers: &[PeerInfo]) {
        let Some(packet) = build_packet(&self.slots[i], &self.seal_key, peers) else {
            return;
        };
        let public = self.slot_public(i);
        for relay in &self.relays {
            let url = format!("{relay}/{}", public.to_z32());
            match self
                .http
                .put(&url)
                .body(packet.to_relay_payload())
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => {
                    tracing::debug!(%relay, status = %r.status(), "rendezvous publish refused")
                }
                Err(e) => {
                    tracing::debug!(%relay, error = %e.without_url(), "rendezvous publish failed")
                }
            }
        }
    }

    /// One round: read every slot, make sure we are in our home slot, return the others.
    pub async fn round(&self, me: PeerInfo) -> Vec<PeerInfo> {
        let now = now_ms();
        let mut found = Vec::new();
        let mut home_peers = Vec::new();
        for i in 0..SLOTS {
            let peers = self.read_slot(i).await;
            if i == self.home {
                home_peers = peers.clone();
            }
            found.extend(peers);
        }
        let merged = merge(&me, home_peers, now);
        self.write_slot(self.home, &merged).await;
        found.retain(|p| p.endpoint_id != me.endpoint_id && is_fresh(p, now));
        found
    }
}

/// Our entry first, then the freshest others, without duplicates, at most PEERS_PER_SLOT.
pub fn merge(me: &PeerInfo, existing: Vec<PeerInfo>, now: u64) -> Vec<PeerInfo> {
    let mut others: Vec<PeerInfo> = existing
        .into_iter()
        .filter(|p| p.endpoint_id != me.endpoint_id && is_fresh(p, now) && endpoint_id(p).is_some())
        .collect();
    others.sort_by_key(|p| std::cmp::Reverse(p.timestamp_ms));
    others.dedup_by(|a, b| a.endpoint_id == b.endpoint_id);
    let mut out = vec![me.clone()];
    out.extend(others.into_iter().take(PEERS_PER_SLOT - 1));
    out
}

/// A signed packet holding as many of `peers` (in order) as fit.
fn build_packet(slot: &SecretKey, seal_key: &[u8; 32], peers: &[PeerInfo]) -> Option<SignedPacket> {
    for n in (1..=peers.len()).rev() {
        let record = RendezvousRecord {
            peers: peers[..n].to_vec(),
        };
        let sealed = seal(seal_key, &record.encode_to_vec());
        let text =
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD_NO_PAD, sealed);
        // TXT strings hold at most 255 bytes: number the pieces so order never matters.
        let pieces: Vec<String> = text
            .as_bytes()
            .chunks(240)
            .enumerate()
            .map(|(i, c)| format!("{i:02}{}", String::from_utf8_lossy(c)))
            .collect();
        if let Ok(packet) = SignedPacket::from_txt_strings(slot, RECORD_NAME, pieces, TTL_SECS) {
            return Some(packet);
        }
    }
    None
}

fn decode_record(seal_key: &[u8; 32], pieces: &[String]) -> Vec<PeerInfo> {
    let mut pieces: Vec<&String> = pieces.iter().filter(|p| p.len() >= 2).collect();
    pieces.sort_by_key(|p| p[..2].to_owned());
    let text: String = pieces.iter().map(|p| &p[2..]).collect();
    let Ok(sealed) =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD_NO_PAD, text)
    else {
        return Vec::new();
    };
    let Some(plain) = open(seal_key, &sealed) else {
        return Vec::new();
    };
    RendezvousRecord::decode(plain.as_slice())
        .map(|r| r.peers)
        .unwrap_or_default()
}

/// While a peer is connected, rounds are this many times further apart (at most half of
/// [`super::info::FRESH_FOR`], so our record never goes stale). A newcomer still finds us on
/// its first round and dials us; a peer we lose is redialled by the dialer. So an idle
/// device no longer reads 8 slots and writes one every minute.
const CONNECTED_STRETCH: u32 = 4;

/// Rendezvous rounds every `interval` (± 25 %; [`CONNECTED_STRETCH`] times that while a
/// peer is connected), until the engine stops. Every peer found is a candidate for the
/// dialer.
pub(crate) async fn run(ctx: Arc<Context>, rv: Rendezvous, interval: Duration) {
    loop {
        let me = super::info::own_info(&ctx.endpoint, &ctx.device_name);
        for peer in rv.round(me).await {
            if let Some(addr) = super::info::to_addr(&peer) {
                ctx.discover(addr, Source::Discovered);
            }
        }
        let wait = if ctx.any_connected() {
            // Never so long that our record goes stale between two writes.
            (interval * CONNECTED_STRETCH)
                .min(super::info::FRESH_FOR / 2)
                .max(interval)
        } else {
            interval
        };
        sleep_or_cancel(&ctx, jitter(wait)).await;
        if ctx.cancel.is_cancelled() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u8, ts: u64) -> PeerInfo {
        PeerInfo {
            endpoint_id: SecretKey::from_bytes(&[n; 32]).public().as_bytes().to_vec(),
            device_name: format!("device {n}"),
            relay_url: "https://relay.example.invalid/".into(),
            direct_addrs: vec!["192.0.2.1:4433".into(), "[2001:db8::1]:4433".into()],
            timestamp_ms: ts,
        }
    }

    #[test]
    fn merge_keeps_self_first_and_freshest_others() {
        let now = now_ms();
        let me = peer(1, now);
        let existing = vec![
            peer(2, now - 1000),
            peer(3, now - 10),
            peer(4, now - 20 * 60 * 1000),
            peer(1, now - 5),
        ];
        let merged = merge(&me, existing, now);
        assert_eq!(merged.len(), 3);
        assert_eq!(merged[0], me);
        assert_eq!(merged[1].device_name, "device 3");
        assert_eq!(merged[2].device_name, "device 2");
    }

    #[test]
    fn packet_roundtrip_sealed_and_sized() {
        let slot = SecretKey::from_bytes(&[5; 32]);
        let key = [6u8; 32];
        let peers: Vec<PeerInfo> = (1..=3).map(|n| peer(n, now_ms())).collect();
        let packet = build_packet(&slot, &key, &peers).expect("fits");
        assert!(packet.as_bytes().len() <= SignedPacket::MAX_BYTES);
        let back = decode_record(&key, &packet.txt_records(RECORD_NAME));
        assert_eq!(back, peers);
        // Without the passphrase's key, a reader learns nothing.
        assert!(decode_record(&[7u8; 32], &packet.txt_records(RECORD_NAME)).is_empty());
        let verified =
            SignedPacket::from_relay_payload(&slot.public(), &packet.to_relay_payload()).unwrap();
        assert_eq!(verified, packet);
    }
}
