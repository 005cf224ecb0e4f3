//! Announcements on a gossip topic derived from the passphrase.
//!
//! Each agent broadcasts its endpoint id, name and addresses when a neighbour joins, then
//! after [`ANNOUNCE_EVERY`], doubling up to [`ANNOUNCE_AT_MOST_EVERY`] while nobody new
//! joins (an idle swarm should not wake every device every few seconds), as an [`Announcement`] MACed with a key derived from the admission key:
//! a node without the passphrase can neither find the topic nor inject a valid announcement.
//! Every valid, fresh announcement of another agent is a candidate for the dialer.
//!
//! The topic is joined with no bootstrap peers: the engine adds a peer to our gossip
//! neighbours only once it has passed admission ([`Context::gossip_join`]), so no endpoint
//! learnt from the LAN, a relay or an old list ever hears the topic from us.

use std::sync::Arc;
use std::time::Duration;

use can_proto::peer::{Announcement, PeerInfo};
use futures_util::StreamExt;
use iroh_gossip::api::{Event, GossipSender};
use iroh_gossip::{Gossip, TopicId};
use prost::Message;
use subtle::ConstantTimeEq;

use super::info::{endpoint_id, is_fresh, mac, now_ms, own_info, to_addr};
use crate::candidates::Source;
use crate::context::Context;

pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(10);
pub const ANNOUNCE_AT_MOST_EVERY: Duration = Duration::from_secs(160);

/// How often gossip's message caches are swept. iroh-gossip's default (1 s) wakes an idle
/// agent sixty times a minute for nothing; messages now stay cached up to 30 s past their
/// retention (30 s, ids 90 s), which only widens duplicate suppression.
const CACHE_SWEEP_EVERY: Duration = Duration::from_secs(30);
/// How often the membership protocol shuffles its passive view with a neighbour (default
/// 60 s). Our swarms are small and peers also meet through rendezvous and announcements,
/// so a fresher passive view is not worth an idle wake-up every minute.
const SHUFFLE_EVERY: Duration = Duration::from_secs(300);

/// Gossip with the timers an idle tray app can afford (issue #14: idle like a daemon).
pub(crate) fn spawn(endpoint: &iroh::Endpoint) -> Gossip {
    Gossip::builder()
        .broadcast_config(iroh_gossip::proto::PlumtreeConfig {
            cache_evict_interval: CACHE_SWEEP_EVERY,
            ..Default::default()
        })
        .membership_config(iroh_gossip::proto::HyparviewConfig {
            shuffle_interval: SHUFFLE_EVERY,
            ..Default::default()
        })
        .spawn(endpoint.clone())
}

/// The key that MACs announcements.
pub fn mac_key(admission_key: &[u8; 32]) -> [u8; 32] {
    blake3::derive_key("can-sync v1 gossip announcement mac", admission_key)
}

pub fn encode(info: &PeerInfo, key: &[u8; 32]) -> Vec<u8> {
    let bytes = info.encode_to_vec();
    Announcement {
        mac: mac(key, &bytes).to_vec(),
        info: bytes,
    }
    .encode_to_vec()
}

/// A valid announcement's content; `None` for anything forged or malformed.
pub fn decode(bytes: &[u8], key: &[u8; 32]) -> Option<PeerInfo> {
    let a = Announcement::decode(bytes).ok()?;
    let expected = mac(key, &a.info);
    if a.mac.len() != 32 || !bool::from(a.mac.as_slice().ct_eq(&expected)) {
        return None;
    }
    PeerInfo::decode(a.info.as_slice()).ok()
}

/// Joins the topic and runs until the engine stops.
pub(crate) async fn run(ctx: Arc<Context>, gossip: Gossip, topic: [u8; 32]) {
    let key = mac_key(&ctx.keys.admission);
    let topic = match gossip
        .subscribe(TopicId::from_bytes(topic), Vec::new())
        .await
    {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "cannot join the gossip topic");
            return;
        }
    };
    let (tx, mut rx) = topic.split();
    ctx.set_gossip_sender(tx.clone());
    let me = ctx.endpoint.id();
    let mut every = ANNOUNCE_EVERY;
    let next = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(next);
    loop {
        tokio::select! {
            _ = &mut next => {
                announce(&ctx, &tx, &key).await;
                next.as_mut().reset(tokio::time::Instant::now() + every);
                every = (every * 2).min(ANNOUNCE_AT_MOST_EVERY);
            }
            ev = rx.next() => match ev {
                Some(Ok(Event::Received(msg))) => {
                    let Some(info) = decode(&msg.content, &key) else {
                        tracing::debug!("ignoring an announcement with a bad MAC");
                        continue;
                    };
                    if endpoint_id(&info) == Some(me) || !is_fresh(&info, now_ms()) {
                        continue;
                    }
                    if let Some(addr) = to_addr(&info) {
                        ctx.discover(addr, Source::Discovered);
                    }
                }
                Some(Ok(Event::NeighborUp(_))) => {
                    announce(&ctx, &tx, &key).await;
                    every = ANNOUNCE_EVERY;
                    next.as_mut().reset(tokio::time::Instant::now() + every);
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "gossip receiver error");
                }
                None => return,
            },
            _ = ctx.cancelled() => return,
        }
    }
}

async fn announce(ctx: &Context, tx: &GossipSender, key: &[u8; 32]) {
    let info = own_info(&ctx.endpoint, &ctx.device_name);
    if let Err(e) = tx.broadcast(encode(&info, key).into()).await {
        tracing::debug!(error = %e, "gossip broadcast failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_announcements_are_dropped() {
        let key = mac_key(&[3u8; 32]);
        let info = PeerInfo {
            endpoint_id: vec![1; 32],
            device_name: "a".into(),
            relay_url: String::new(),
            direct_addrs: vec![],
            timestamp_ms: 5,
        };
        let bytes = encode(&info, &key);
        assert_eq!(decode(&bytes, &key), Some(info.clone()));
        assert_eq!(decode(&bytes, &mac_key(&[4u8; 32])), None);
        let forged = Announcement {
            info: info.encode_to_vec(),
            mac: vec![0; 32],
        }
        .encode_to_vec();
        assert_eq!(decode(&forged, &key), None);
        assert_eq!(decode(b"garbage", &key), None);
    }
}
