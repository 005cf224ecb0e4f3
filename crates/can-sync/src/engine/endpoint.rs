//! The iroh endpoint: binding it as configured (relays, LAN lookup, relay-only), its address,
//! and the protocol handler that hands accepted connections to [`crate::peer`].

use std::sync::Arc;
use std::time::Duration;

use iroh::address_lookup::MemoryLookup;
use iroh::endpoint::{Connection, QuicTransportConfig, VarInt, presets};
use iroh::protocol::{AcceptError, ProtocolHandler};
use iroh::{Endpoint, EndpointAddr, RelayMode, RelayUrl, Watcher as _};

use super::EngineError;
use crate::admission::{ALPN, Role};
use crate::config::{Congestion, EngineConfig};
use crate::context::Context;
use crate::flow;
use crate::peer;

/// The QUIC settings every agent connection uses (public so that benchmarks can give a raw
/// iroh stream the same ones).
pub fn transport_config(congestion: Congestion) -> QuicTransportConfig {
    // iroh sends keep-alives every 5 s; a connection that hears nothing for 15 s (three of
    // them) is dead: dropped and redialled, instead of QUIC's default 30 s.
    let congestion: Arc<dyn iroh::endpoint::ControllerFactory + Send + Sync> = match congestion {
        Congestion::Auto => Arc::new(crate::congestion::AutoConfig::default()),
        Congestion::Bbr => Arc::new(noq_proto::congestion::Bbr3Config::default()),
        Congestion::Cubic => Arc::new(noq_proto::congestion::CubicConfig::default()),
    };
    // Flow-control windows sized for long paths (`crate::flow`); each connection's receive
    // window starts at the floor and follows its RTT.
    QuicTransportConfig::builder()
        .max_idle_timeout(Duration::from_secs(15).try_into().ok())
        .congestion_controller_factory(congestion)
        .stream_receive_window(VarInt::from_u64(flow::STREAM_WINDOW).unwrap_or(VarInt::MAX))
        .receive_window(VarInt::from_u64(flow::MIN_WINDOW).unwrap_or(VarInt::MAX))
        .send_window(flow::MAX_WINDOW)
        // Loss detection that tolerates reordering (jittery mobile links reorder packets by
        // tens of milliseconds): a packet is lost once a quarter RTT passed after a later
        // one was acknowledged (RACK's window), not three packets later.
        .packet_threshold(flow::PACKET_THRESHOLD)
        .time_threshold(flow::TIME_THRESHOLD)
        .build()
}

/// The mDNS service name of a passphrase's group: only agents of the same passphrase use
/// it, so the LAN lookup reports just them (and anyone who spoofs it: those are candidates
/// until admitted).
pub fn mdns_service_name(gossip_topic: &[u8; 32]) -> String {
    let group = blake3::derive_key("can-sync v1 mdns service", gossip_topic);
    format!("cansync-{}", &hex::encode(group)[..12])
}

pub(super) type MdnsEvents = crate::discovery::lan::Events;

pub(super) async fn bind(
    config: &EngineConfig,
    secret: iroh::SecretKey,
    lookup: &MemoryLookup,
    gossip_topic: &[u8; 32],
) -> Result<(Endpoint, Option<MdnsEvents>), EngineError> {
    let relay_mode = match &config.relay_urls {
        None => RelayMode::Default,
        Some(urls) if urls.is_empty() => RelayMode::Disabled,
        Some(urls) => {
            let parsed = urls
                .iter()
                .map(|u| {
                    u.parse::<RelayUrl>()
                        .map_err(|e| EngineError::Config(format!("relay_urls: {u}: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            RelayMode::custom(parsed)
        }
    };
    let offline = matches!(relay_mode, RelayMode::Disabled);
    let public = secret.public();
    let transport = transport_config(config.congestion);
    let mut builder = Endpoint::builder(presets::Minimal);
    if let Some(path) = &config.relay_ca_file {
        builder = builder
            .ca_tls_config(iroh::tls::CaTlsConfig::default().with_extra_roots(relay_roots(path)?));
    }
    let mut builder = builder
        .secret_key(secret)
        .transport_config(transport)
        .alpns(vec![ALPN.to_vec()])
        .relay_mode(relay_mode)
        .address_lookup(lookup.clone());
    let mut mdns_events = None;
    if config.local_discovery {
        // Only agents of the same passphrase use this service name, so the LAN lookup
        // reports just them.
        let service = mdns_service_name(gossip_topic);
        match iroh_mdns_address_lookup::MdnsAddressLookup::builder()
            .service_name(&service)
            .build(public)
        {
            Ok(mdns) => {
                // Subscribe before the lookup starts, so no early discovery is missed.
                mdns_events = Some(Box::pin(mdns.subscribe().await) as MdnsEvents);
                builder = builder.address_lookup(mdns);
            }
            Err(e) => tracing::warn!(error = %e, "LAN discovery unavailable"),
        }
    }
    if config.relay_only {
        if offline {
            return Err(EngineError::Config(
                "relay_only needs relay_urls (it is [] here)".into(),
            ));
        }
        // No UDP sockets at all: peers never learn our IP addresses and every connection
        // goes through the relay.
        builder = builder
            .clear_ip_transports()
            .portmapper_config(iroh::endpoint::PortmapperConfig::Disabled);
    } else if !config.bind_addr.ip().is_unspecified() {
        builder = builder
            .clear_ip_transports()
            .bind_addr(config.bind_addr)
            .map_err(|e| EngineError::Bind(e.to_string()))?;
    } else if config.bind_addr.port() != 0 {
        builder = builder
            .bind_addr(config.bind_addr)
            .map_err(|e| EngineError::Bind(e.to_string()))?;
    }
    if offline {
        // With relays off this node is on a LAN or a test bed: no UPnP/NAT-PMP probes.
        builder = builder.portmapper_config(iroh::endpoint::PortmapperConfig::Disabled);
    }
    let endpoint = builder
        .bind()
        .await
        .map_err(|e| EngineError::Bind(e.to_string()))?;
    Ok((endpoint, mdns_events))
}

/// Our ALPN on the router: the peer session, which applies the admission limiter first.
#[derive(Debug, Clone)]
pub(super) struct SyncProtocol {
    pub ctx: Arc<Context>,
}

impl ProtocolHandler for SyncProtocol {
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        peer::run(self.ctx.clone(), conn, Role::Listener).await;
        Ok(())
    }
}

/// The endpoint's address once it knows at least one way to reach it (bounded wait).
pub(super) async fn current_addr(endpoint: &Endpoint) -> EndpointAddr {
    let mut watcher = endpoint.watch_addr();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let addr = watcher.get();
        if !addr.is_empty() {
            return addr;
        }
        if tokio::time::timeout_at(deadline, watcher.updated())
            .await
            .is_err()
        {
            let mut addr = EndpointAddr::new(endpoint.id());
            for sock in endpoint.bound_sockets() {
                addr = addr.with_ip_addr(sock);
            }
            return addr;
        }
    }
}

/// The certificates of a PEM file (`relay_ca_file`); an error names the key and the file.
fn relay_roots(
    path: &std::path::Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, EngineError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let bad = |e: &dyn std::fmt::Display| {
        EngineError::Config(format!("relay_ca_file {}: {e}", path.display()))
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&e))?;
    if certs.is_empty() {
        return Err(bad(&"no certificate in it"));
    }
    Ok(certs)
}

#[cfg(test)]
mod relay_roots_tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_is_an_error_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = relay_roots(&path).unwrap_err().to_string();
        assert!(
            err.contains("relay_ca_file") && err.contains("no certificate"),
            "{err}"
        );
        let missing = relay_roots(&dir.path().join("absent.pem")).unwrap_err();
        assert!(missing.to_string().contains("relay_ca_file"));
    }
}
