//! A LAN spoofer advertises 1,000 fake endpoint ids under the group's mDNS service name (the
//! name is visible to anyone on the LAN). The engine must treat them as candidates only:
//! a bounded number of dial loops and attempts, each candidate gone after its failures, and
//! none ever admitted (so none is joined to gossip or told the topic).
//!
//! Runs in a private network namespace the test creates (root), with multicast on its
//! loopback; the fake ids all point at one decoy iroh endpoint whose real id is another, so
//! every dial fails at the TLS handshake, as quickly as a real LAN would let it.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use can_sync::{Engine, EngineConfig};
use can_testkit::netns::{Place, private_netns};
use can_testkit::*;
use common::engine_config;
use hickory_proto::op::{Message, MessageType, OpCode};
use hickory_proto::rr::{Name, RData, Record, rdata};
use iroh::endpoint::presets;

const PASS: &str = "raven copper lagoon summit fiddle orchard plasma";
const FAKES: usize = 1_000;
/// Fake peers per mDNS packet (keeps packets under 1,500 bytes).
const PER_PACKET: usize = 6;

#[test]
fn a_thousand_spoofed_lan_peers_get_bounded_dials_and_are_dropped() {
    match private_netns("a_thousand_spoofed_lan_peers_get_bounded_dials_and_are_dropped") {
        Place::Inside => {}
        Place::Done | Place::Skipped => return,
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(inside());
}

/// RFC 4648 base32, lower case, no padding: how iroh's mDNS lookup names an endpoint.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in bytes {
        acc = (acc << 8) | u32::from(*b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// mDNS responses announcing `ids` at `addr` under `service` (swarm-discovery's layout:
/// SRV `<id>._<service>._udp.local.` → `<id>-<port>.local.`, A record in additionals).
fn packets(service: &str, ids: &[String], addr: SocketAddr) -> Vec<Vec<u8>> {
    let service = Name::from_str(&format!("_{service}._udp.local.")).unwrap();
    let SocketAddr::V4(v4) = addr else {
        panic!("ipv4 only")
    };
    ids.chunks(PER_PACKET)
        .map(|chunk| {
            let mut msg = Message::new(0, MessageType::Response, OpCode::Query);
            msg.metadata.authoritative = true;
            for id in chunk {
                let instance = Name::from_str(id).unwrap().append_domain(&service).unwrap();
                let target = Name::from_str(&format!("{id}-{}.local.", v4.port())).unwrap();
                msg.add_answer(Record::from_rdata(
                    instance,
                    120,
                    RData::SRV(rdata::SRV::new(0, 0, v4.port(), target.clone())),
                ));
                msg.add_additional(Record::from_rdata(
                    target,
                    120,
                    RData::A(rdata::A::from(*v4.ip())),
                ));
            }
            msg.to_vec().unwrap()
        })
        .collect()
}

async fn inside() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::with_key(&dir.path().join("svc"));
    let engine = Arc::new(
        Engine::start(EngineConfig {
            bind_addr: "0.0.0.0:0".parse().unwrap(),
            local_discovery: true,
            ..engine_config(&svc.url, PASS, "Target", dir.path().join("engine"))
        })
        .await
        .unwrap(),
    );
    let keys = can_sync::keys::derive(PASS).unwrap();
    let service = can_sync::engine::mdns_service_name(&keys.gossip_topic);

    // The decoy: a real endpoint at the address every fake id claims.
    let decoy = iroh::Endpoint::builder(presets::Minimal)
        .relay_mode(iroh::RelayMode::Disabled)
        .clear_ip_transports()
        .bind_addr("127.0.0.1:0")
        .unwrap()
        .alpns(vec![
            can_sync::admission::ALPN.to_vec(),
            iroh_gossip::ALPN.to_vec(),
        ])
        .bind()
        .await
        .unwrap();
    let decoy_addr = decoy.bound_sockets()[0];
    let accepted = Arc::new(AtomicUsize::new(0));
    {
        let (decoy, accepted) = (decoy.clone(), accepted.clone());
        tokio::spawn(async move {
            while let Some(incoming) = decoy.accept().await {
                let accepted = accepted.clone();
                tokio::spawn(async move {
                    if incoming.await.is_ok() {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
    }
    let fakes: Vec<String> = (0..FAKES)
        .map(|_| base32(iroh::SecretKey::generate().public().as_bytes()))
        .collect();
    let packets = packets(&service, &fakes, decoy_addr);

    // Spoof for 20 s: every packet once a second.
    let spoofing = Arc::new(AtomicBool::new(true));
    let spoofer = {
        let spoofing = spoofing.clone();
        tokio::spawn(async move {
            let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            sock.set_multicast_loop_v4(true).unwrap();
            let to = SocketAddr::from((Ipv4Addr::new(224, 0, 0, 251), 5353));
            let end = Instant::now() + Duration::from_secs(20);
            while Instant::now() < end {
                for p in &packets {
                    let _ = sock.send_to(p, to).await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            spoofing.store(false, Ordering::Relaxed);
        })
    };

    // Sample the dialer throughout: bounded at every sample, nobody admitted.
    let (mut most_candidates, mut most_dialing) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut cleared = false;
    while Instant::now() < deadline {
        let s = engine.status().await.unwrap();
        assert!(s.candidates <= 256, "{} candidates", s.candidates);
        assert!(s.dialing <= 16, "{} dials at once", s.dialing);
        assert!(s.peers.is_empty(), "a fake peer came up: {:?}", s.peers);
        most_candidates = most_candidates.max(s.candidates);
        most_dialing = most_dialing.max(s.dialing);
        if !spoofing.load(Ordering::Relaxed) && s.candidates == 0 && s.dialing == 0 {
            cleared = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    spoofer.await.unwrap();
    eprintln!(
        "spoofed {FAKES} ids: at most {most_candidates} candidates and {most_dialing} dials at once"
    );
    // Fast failures drop candidates while others arrive, so the peak varies from run to run
    // (100–256 seen); what matters is that they reached the dialer and stayed bounded.
    assert!(
        most_candidates >= 20,
        "the spoofed ids never reached the dialer ({most_candidates})"
    );
    assert!(cleared, "candidates left: {:?}", engine.status().await);
    assert_eq!(accepted.load(Ordering::Relaxed), 0, "a handshake completed");
    // Nothing comes back once the spoofer is quiet.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(engine.status().await.unwrap().candidates, 0);
    decoy.close().await;
    if let Ok(engine) = Arc::try_unwrap(engine) {
        engine.shutdown().await;
    }
}
