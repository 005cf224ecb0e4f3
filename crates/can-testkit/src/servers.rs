//! Real discovery servers, in-process on 127.0.0.1: a pkarr relay (iroh-dns-server, mainline
//! DHT off, no rate limit) and an iroh relay (plain HTTP). Nothing public is contacted.

use std::net::Ipv4Addr;

pub struct LocalServers {
    pub pkarr: iroh_dns_server::Server,
    pub relay: iroh_relay::server::Server,
    _dir: tempfile::TempDir,
}

impl LocalServers {
    pub async fn start() -> LocalServers {
        let dir = tempfile::tempdir().expect("pkarr dir");
        let mut cfg = iroh_dns_server::config::Config::default();
        cfg.https = None;
        if let Some(http) = cfg.http.as_mut() {
            http.port = 0;
            http.bind_addr = Some(Ipv4Addr::LOCALHOST.into());
        }
        cfg.dns.port = 0;
        cfg.dns.bind_addr = Some(Ipv4Addr::LOCALHOST.into());
        cfg.metrics = Some(iroh_dns_server::config::MetricsConfig::disabled());
        cfg.mainline = None;
        cfg.pkarr_put_rate_limit = iroh_dns_server::config::RateLimitConfig::Disabled;
        cfg.data_dir = Some(dir.path().to_owned());
        let pkarr = iroh_dns_server::Server::bind(cfg)
            .await
            .expect("pkarr relay");

        let mut relay_cfg = iroh_relay::server::ServerConfig::default();
        relay_cfg.relay = Some(iroh_relay::server::RelayConfig::new((
            Ipv4Addr::LOCALHOST,
            0,
        )));
        let relay = iroh_relay::server::Server::spawn(relay_cfg)
            .await
            .expect("iroh relay");
        LocalServers {
            pkarr,
            relay,
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
}
