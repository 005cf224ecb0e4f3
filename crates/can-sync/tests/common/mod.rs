//! Test peers made by hand: an iroh endpoint on loopback that speaks as much of the peer
//! protocol as a test needs (admission, Hello, frames), to play a hostile member.

#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use can_proto::peer::{Control, Hello, control};
use can_sync::admission::{ALPN, Role, admit};
use can_sync::wire::{MAX_FRAME, expect_frame, write_frame};
use can_testkit::*;
use iroh::endpoint::{
    ApplicationClose, Connection, ConnectionError, PortmapperConfig, RecvStream, SendStream,
    presets,
};
use iroh::{Endpoint, EndpointAddr, RelayMode};
use iroh_tickets::endpoint::EndpointTicket;

pub async fn endpoint() -> Endpoint {
    endpoint_with_alpns(vec![ALPN.to_vec()]).await
}

/// An endpoint that accepts only the given ALPNs (none = dial only).
pub async fn endpoint_with_alpns(alpns: Vec<Vec<u8>>) -> Endpoint {
    Endpoint::builder(presets::Minimal)
        .relay_mode(RelayMode::Disabled)
        .clear_ip_transports()
        .bind_addr("127.0.0.1:0")
        .unwrap()
        .portmapper_config(PortmapperConfig::Disabled)
        .alpns(alpns)
        .bind()
        .await
        .unwrap()
}

/// The address in a ticket file, once it exists.
pub async fn ticket_file_addr(path: &Path) -> EndpointAddr {
    assert!(
        eventually(60, || path.exists()).await,
        "no ticket at {}",
        path.display()
    );
    let text = std::fs::read_to_string(path).unwrap();
    text.trim().parse::<EndpointTicket>().unwrap().into()
}

pub async fn ticket_addr(agent: &Agent) -> EndpointAddr {
    ticket_file_addr(&agent.ticket_path()).await
}

/// Writes `ep`'s own ticket to `path` (so an agent can be told to dial it).
pub fn write_ticket(ep: &Endpoint, path: &Path) {
    let mut addr = EndpointAddr::new(ep.id());
    for sock in ep.bound_sockets() {
        addr = addr.with_ip_addr(sock);
    }
    std::fs::write(path, EndpointTicket::new(addr).to_string()).unwrap();
}

/// Connects with the right passphrase, passes admission and exchanges Hello (offering
/// `features`); returns the connection and its control stream.
pub async fn admitted_peer_with(
    ep: &Endpoint,
    addr: &EndpointAddr,
    keys: &can_sync::keys::Keys,
    name: &str,
    features: Vec<String>,
) -> (Connection, SendStream, tokio::io::BufReader<RecvStream>) {
    // Every step bounded: a test fails, it never hangs.
    let limit = Duration::from_secs(30);
    let conn = tokio::time::timeout(limit, ep.connect(addr.clone(), ALPN))
        .await
        .expect("connect timed out")
        .unwrap();
    let (mut send, recv) = conn.open_bi().await.unwrap();
    let mut recv = tokio::io::BufReader::new(recv);
    tokio::time::timeout(
        limit,
        admit(
            &mut recv,
            &mut send,
            &keys.admission,
            ep.id(),
            addr.id,
            Role::Dialer,
        ),
    )
    .await
    .expect("admission timed out")
    .unwrap();
    let hello = Control {
        kind: Some(control::Kind::Hello(Hello {
            device_name: name.into(),
            agent_version: "t".into(),
            features,
            instance: 1,
        })),
    };
    write_frame(&mut send, &hello).await.unwrap();
    let _: Control = tokio::time::timeout(limit, expect_frame(&mut recv, MAX_FRAME))
        .await
        .expect("no Hello within 30 s")
        .unwrap();
    (conn, send, recv)
}

/// An admitted peer that offers no features: the agent treats it as an older peer (full
/// hash lists).
pub async fn admitted_peer(
    ep: &Endpoint,
    addr: &EndpointAddr,
    keys: &can_sync::keys::Keys,
    name: &str,
) -> (Connection, SendStream, tokio::io::BufReader<RecvStream>) {
    admitted_peer_with(ep, addr, keys, name, Vec::new()).await
}

/// Announces `hashes` to the agent as a full hash list (round 1).
pub async fn claim(send: &mut iroh::endpoint::SendStream, hashes: &[[u8; 32]]) {
    let list = can_proto::peer::Control {
        kind: Some(can_proto::peer::control::Kind::HashList(
            can_proto::peer::HashList {
                round: 1,
                hashes: hashes.iter().flatten().copied().collect(),
                last: true,
                reply_wanted: false,
            },
        )),
    };
    write_frame(send, &list).await.unwrap();
}

/// The application close code the connection ends with (within 30 s).
pub async fn closed_code(conn: &Connection) -> Option<u64> {
    closed_code_within(conn, Duration::from_secs(30)).await
}

pub async fn closed_code_within(conn: &Connection, limit: Duration) -> Option<u64> {
    match tokio::time::timeout(limit, conn.closed()).await {
        Ok(ConnectionError::ApplicationClosed(ApplicationClose { error_code, .. })) => {
            Some(error_code.into_inner())
        }
        _ => None,
    }
}

/// Reads and drops everything the agent sends on a control stream.
pub fn drain(mut recv: tokio::io::BufReader<RecvStream>) {
    tokio::spawn(async move {
        while let Ok(Some(_)) = can_sync::wire::read_frame::<Control, _>(&mut recv, MAX_FRAME).await
        {
        }
    });
}

/// Resident memory of this process, in bytes.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// An engine config for a test on loopback: no relays, no rendezvous, no LAN discovery,
/// a 2 s fallback poll. Tests change what they need with `..engine_config(...)`.
pub fn engine_config(
    can_url: &str,
    passphrase: &str,
    device_name: &str,
    data_dir: std::path::PathBuf,
) -> can_sync::EngineConfig {
    // Loopback only: no relays, no rendezvous, no LAN discovery.
    can_sync::EngineConfig {
        device_name: device_name.to_owned(),
        bind_addr: "127.0.0.1:0".parse().unwrap(),
        relay_urls: Some(vec![]),
        poll_interval: Duration::from_secs(2),
        pkarr_relays: Some(vec![]),
        local_discovery: false,
        ..can_sync::EngineConfig::new(
            can_url,
            can_sync::Secret::new(KEY),
            can_sync::Secret::new(passphrase),
            data_dir,
        )
    }
}
