//! Real discovery servers, in-process: a pkarr relay (iroh-dns-server, mainline DHT off, no
//! rate limit) and an iroh relay (plain HTTP). On 127.0.0.1 by default; the WAN testbed runs
//! them on a site's address, with the relay's QUIC address discovery on. Nothing public is
//! contacted.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The port iroh clients expect a relay's QUIC address discovery on
/// (`iroh_relay::defaults::DEFAULT_RELAY_QUIC_PORT`): a relay URL carries no other.
pub const QAD_PORT: u16 = 7842;

pub struct LocalServers {
    pub pkarr: iroh_dns_server::Server,
    pub relay: iroh_relay::server::Server,
    /// The self-signed certificate of the relay's QUIC address discovery, when it runs.
    relay_cert: Option<CertificateDer<'static>>,
    _dir: tempfile::TempDir,
}

impl LocalServers {
    /// Both servers on 127.0.0.1 (any ports), the relay without QUIC address discovery.
    pub async fn start() -> LocalServers {
        Self::start_on(Ipv4Addr::LOCALHOST.into(), false).await
    }

    /// Both servers on `ip` (any ports). With `qad`, the relay also answers QUIC address
    /// discovery on `ip:7842` (the port clients derive from a relay URL), with a self-signed
    /// certificate for `ip` ([`LocalServers::relay_cert`]): a client that trusts it learns
    /// the address its packets come from (behind a NAT, the NAT's).
    pub async fn start_on(ip: IpAddr, qad: bool) -> LocalServers {
        let dir = tempfile::tempdir().expect("pkarr dir");
        let mut cfg = iroh_dns_server::config::Config::default();
        cfg.https = None;
        if let Some(http) = cfg.http.as_mut() {
            http.port = 0;
            http.bind_addr = Some(ip);
        }
        cfg.dns.port = 0;
        cfg.dns.bind_addr = Some(ip);
        cfg.metrics = Some(iroh_dns_server::config::MetricsConfig::disabled());
        cfg.mainline = None;
        cfg.pkarr_put_rate_limit = iroh_dns_server::config::RateLimitConfig::Disabled;
        cfg.data_dir = Some(dir.path().to_owned());
        let pkarr = iroh_dns_server::Server::bind(cfg)
            .await
            .expect("pkarr relay");

        let mut relay_cfg = iroh_relay::server::ServerConfig::default();
        relay_cfg.relay = Some(iroh_relay::server::RelayConfig::new((ip, 0)));
        let mut relay_cert = None;
        if qad {
            let (cert, tls) = self_signed(ip);
            let mut quic = iroh_relay::server::QuicConfig::new(SocketAddr::new(ip, QAD_PORT));
            quic.server_config = Some(tls);
            relay_cfg.quic = Some(quic);
            relay_cert = Some(cert);
        }
        let relay = iroh_relay::server::Server::spawn(relay_cfg)
            .await
            .expect("iroh relay");
        LocalServers {
            pkarr,
            relay,
            relay_cert,
            _dir: dir,
        }
    }

    /// The pkarr relay's URL as agents take it (`pkarr_relays`).
    pub fn pkarr_url(&self) -> String {
        format!(
            "http://{}/pkarr",
            self.pkarr.http_addr().expect("pkarr http")
        )
    }

    /// The iroh relay's URL as agents take it (`relay_urls`).
    pub fn relay_url(&self) -> String {
        format!("http://{}", self.relay.http_addr().expect("relay http"))
    }

    /// The certificate a client must trust for the relay's QUIC address discovery
    /// (`iroh::tls::CaTlsConfig::with_extra_roots`); `None` when it does not run.
    pub fn relay_cert(&self) -> Option<CertificateDer<'static>> {
        self.relay_cert.clone()
    }

    /// Stops both servers (what dropping them does, but waiting for it).
    pub async fn shutdown(self) {
        let _ = self.relay.shutdown().await;
        let _ = self.pkarr.shutdown().await;
    }
}

/// A self-signed certificate for `ip` and the TLS 1.3 server config that presents it.
fn self_signed(ip: IpAddr) -> (CertificateDer<'static>, rustls::ServerConfig) {
    let key = rcgen::generate_simple_self_signed(vec![ip.to_string()]).expect("self-signed cert");
    let cert = key.cert.der().clone();
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.signing_key.serialize_der()));
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("TLS 1.3")
    .with_no_client_auth()
    .with_single_cert(vec![cert.clone()], private)
    .expect("relay TLS config");
    (cert, tls)
}
