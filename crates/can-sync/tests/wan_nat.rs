//! NAT traversal on the WAN testbed (can_testkit::wan): two sites behind nftables masquerade
//! (endpoint-independent, or symmetric), a third, public one running a local iroh relay and
//! pkarr relay. The agents know only the passphrase and those relays. Root and nft(8) only;
//! skipped otherwise.

#![cfg(target_os = "linux")]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use can_testkit::wan::{Nat, Profile, Servers, SiteConfig, Testbed};
use can_testkit::*;

const PASS: &str = "harbor lantern quiver saffron tundra willow cobalt";

/// Site 0: public, the local relays. Sites 1 and 2: behind `nat`, on broadband links.
fn testbed(nat: Nat) -> Option<Testbed> {
    if !Testbed::nat_available() {
        eprintln!("SKIPPED: NAT on the WAN testbed needs root, ip(8), /dev/net/tun and nft(8)");
        return None;
    }
    Some(Testbed::start_sites(&[
        SiteConfig::new(Profile::LAN),
        SiteConfig::new(Profile::BROADBAND).nat(nat),
        SiteConfig::new(Profile::BROADBAND).nat(nat),
    ]))
}

/// The NATed sites' LANs cannot reach each other: B's LAN routes everything to its router,
/// which has no route to A's LAN. Only the relay, or a punched hole, joins them.
fn assert_lans_isolated(tb: &Testbed) {
    let (a, b) = (tb.site(1), tb.site(2));
    let out = std::process::Command::new("ip")
        .args(["-n", &b.router_netns, "route", "get"])
        .arg(a.addr.to_string())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "{} routes to {}: {}",
        b.router_netns,
        a.addr,
        String::from_utf8_lossy(&out.stdout)
    );
}

struct Run {
    /// `peer_up` paths seen by both agents.
    up_paths: Vec<String>,
    /// `can-sync status --json` peers[].path of both agents after convergence.
    status_paths: Vec<String>,
    converged_after: Duration,
}

/// Two agents behind the NATs of sites 1 and 2, with only the passphrase and the local relays,
/// mirror 3 + 3 assets; then `watch` more seconds for the path to change.
async fn sync_behind_nat(tb: &Testbed, servers: &Servers, watch: u64, trust_relay: bool) -> Run {
    let dir = tempfile::tempdir().unwrap();
    // The agents' extra config: trust the local relay's self-signed certificate.
    let trust = if trust_relay {
        use base64::Engine as _;
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            base64::engine::general_purpose::STANDARD.encode(servers.relay_cert.as_ref())
        );
        let path = dir.path().join("relay-ca.pem");
        std::fs::write(&path, pem).unwrap();
        format!("relay_ca_file: {}\n", path.display())
    } else {
        String::new()
    };
    let c = client();
    let mut services = Vec::new();
    let mut agents = Vec::new();
    let mut all = HashSet::new();
    let start = Instant::now();
    for i in 1..=2 {
        let s = tb.site(i);
        let svc = Service::start_on(
            &dir.path().join(format!("svc-{i}")),
            &format!("sync_api_key: {KEY}\n"),
            &format!("{}:0", s.host_addr),
        );
        for j in 0..3 {
            let (_, m) = upload(
                &c,
                &svc,
                &format!("site {i} asset {j}"),
                pseudo_random(50_000 + j, (10 * i + j) as u64),
            )
            .await;
            all.insert(m["hash"].as_str().unwrap().to_owned());
        }
        agents.push(Agent::start_in(
            &dir.path().join(format!("agent-{i}")),
            &svc.url,
            KEY,
            PASS,
            &format!(
                "device_name: site-{i}\n{}{}{trust}",
                s.bind_yaml(),
                servers.agent_yaml()
            ),
            &s.netns,
        ));
        services.push(svc);
    }
    let converged = eventually_async(45, || async {
        for svc in &services {
            let have: HashSet<String> = list_all(&c, &svc.url).await.into_keys().collect();
            if have != all {
                return false;
            }
        }
        true
    })
    .await;
    let converged_after = start.elapsed();
    assert!(
        converged,
        "the two NATed sites did not converge in 45 s; peer_up: {:?}",
        agents
            .iter()
            .map(|a| a.count("peer_up"))
            .collect::<Vec<_>>()
    );
    let status_paths = |agents: &[Agent]| -> Vec<String> {
        agents
            .iter()
            .flat_map(|a| {
                a.status()["peers"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|p| p["path"].as_str().unwrap_or("?").to_owned())
            })
            .collect()
    };
    // Hole punching gets its chance: iroh retries every 5 s while the path is the relay.
    let deadline = Instant::now() + Duration::from_secs(watch);
    let mut paths = status_paths(&agents);
    while Instant::now() < deadline && !paths.iter().all(|p| p == "direct") {
        tokio::time::sleep(Duration::from_millis(500)).await;
        paths = status_paths(&agents);
    }
    let up_paths: Vec<String> = agents
        .iter()
        .flat_map(|a| a.events())
        .filter(|e| e["event"] == "peer_up")
        .map(|e| e["path"].as_str().unwrap_or("?").to_owned())
        .collect();
    assert!(up_paths.len() >= 2, "peer_up: {up_paths:?}");
    Run {
        up_paths,
        status_paths: paths,
        converged_after,
    }
}

/// The agents connect through the relay, mirror everything, and hole punch: trusting the
/// local relay's self-signed certificate (`relay_ca_file`), its QUIC address discovery tells
/// each agent its public address, which the port-preserving NAT keeps for every
/// destination, so the direct path works. (Without `relay_ca_file` the discovery fails its
/// handshake, an agent knows only its LAN address, and they stay on the relay.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_behind_endpoint_independent_nat_hole_punch_to_a_direct_path() {
    let Some(tb) = testbed(Nat::EndpointIndependent) else {
        return;
    };
    assert_lans_isolated(&tb);
    let servers = tb.start_servers(0).await;
    let run = sync_behind_nat(&tb, &servers, 20, true).await;
    println!(
        "endpoint-independent NAT: converged after {:.1} s; peer_up paths {:?}; status paths {:?}",
        run.converged_after.as_secs_f64(),
        run.up_paths,
        run.status_paths
    );
    assert_eq!(
        run.status_paths,
        ["direct", "direct"],
        "no direct path through the endpoint-independent NAT"
    );
}

/// A symmetric NAT gives the relay and the peer different ports: nothing but the relay can
/// connect the agents, and it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_behind_symmetric_nat_sync_by_passphrase_through_the_relay() {
    let Some(tb) = testbed(Nat::Symmetric) else {
        return;
    };
    assert_lans_isolated(&tb);
    let servers = tb.start_servers(0).await;
    let run = sync_behind_nat(&tb, &servers, 6, true).await;
    println!(
        "symmetric NAT: converged after {:.1} s; peer_up paths {:?}; status paths {:?}",
        run.converged_after.as_secs_f64(),
        run.up_paths,
        run.status_paths
    );
    assert!(
        run.up_paths.iter().all(|p| p == "relay"),
        "{:?}",
        run.up_paths
    );
    assert_eq!(run.status_paths, ["relay", "relay"]);
}

/// What a raw iroh endpoint in a NATed site's LAN learns when it trusts the local relay's
/// certificate (so QUIC address discovery tells it its public address).
struct Probe {
    /// Its bound (LAN) socket.
    bound: SocketAddr,
    /// The public addresses it learned.
    public: Vec<SocketAddr>,
}

/// Two probes (A in site 1, B in site 2) and their connection.
struct Punch {
    a: Probe,
    b: Probe,
    /// When B's connection to A selected a direct path, and to where.
    direct: Option<(Duration, SocketAddr)>,
}

const PROBE_ALPN: &[u8] = b"can-sync/test/nat-probe";

async fn probe_endpoint(lan: std::net::Ipv4Addr, servers: &Servers) -> iroh::Endpoint {
    use iroh::endpoint::{PortmapperConfig, presets};
    let url: iroh::RelayUrl = servers.relay_url.parse().unwrap();
    let ca = iroh::tls::CaTlsConfig::default().with_extra_roots([servers.relay_cert.clone()]);
    let ep = iroh::Endpoint::builder(presets::Minimal)
        .relay_mode(iroh::RelayMode::custom([url]))
        .ca_tls_config(ca)
        .portmapper_config(PortmapperConfig::Disabled)
        .clear_ip_transports()
        .bind_addr(SocketAddr::from((lan, 0)))
        .unwrap()
        .alpns(vec![PROBE_ALPN.to_vec()])
        .bind()
        .await
        .expect("bind a probe endpoint");
    tokio::time::timeout(Duration::from_secs(20), ep.online())
        .await
        .expect("the probe endpoint never reached the relay");
    ep
}

/// The public addresses an endpoint knows besides its bound one (from QUIC address
/// discovery), after up to 5 s.
async fn public_addrs(ep: &iroh::Endpoint) -> Vec<SocketAddr> {
    let bound = ep.bound_sockets();
    let mut public = Vec::new();
    for _ in 0..50 {
        public = ep
            .addr()
            .ip_addrs()
            .filter(|a| !bound.contains(a))
            .copied()
            .collect();
        if !public.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    public
}

/// Raw iroh endpoints in the LANs of sites 1 (listening) and 2 (dialling by id and relay URL
/// only, so the connection starts on the relay): does it select a direct path within `secs`?
async fn hole_punch(tb: &Testbed, servers: &Servers, secs: u64) -> Punch {
    let (rt_a, rt_b) = (tb.runtime_in(1), tb.runtime_in(2));
    let (lan_a, lan_b) = (tb.site(1).addr, tb.site(2).addr);
    let (sa, sb) = (servers.clone(), servers.clone());
    let a = rt_a
        .spawn(async move { probe_endpoint(lan_a, &sa).await })
        .await
        .unwrap();
    let b = rt_b
        .spawn(async move { probe_endpoint(lan_b, &sb).await })
        .await
        .unwrap();
    let (pub_a, pub_b) = (public_addrs(&a).await, public_addrs(&b).await);
    let url: iroh::RelayUrl = servers.relay_url.parse().unwrap();
    let target = iroh::EndpointAddr::new(a.id()).with_relay_url(url);
    let accept = {
        let a = a.clone();
        rt_a.spawn(async move {
            let conn = a.accept().await?.await.ok()?;
            // Held open until the dialler closes it.
            let _ = conn.closed().await;
            Some(())
        })
    };
    let dial = {
        let b = b.clone();
        rt_b.spawn(async move {
            let conn = tokio::time::timeout(Duration::from_secs(20), b.connect(target, PROBE_ALPN))
                .await
                .expect("no connection over the relay within 20 s")
                .expect("connect");
            let start = Instant::now();
            let mut direct = None;
            while direct.is_none() && start.elapsed() < Duration::from_secs(secs) {
                direct = conn.paths().iter().find_map(|p| match p.remote_addr() {
                    iroh::TransportAddr::Ip(to) if p.is_selected() => Some((start.elapsed(), *to)),
                    _ => None,
                });
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            conn.close(0u32.into(), b"done");
            direct
        })
    };
    let direct = dial.await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), accept).await;
    let probe = |ep: &iroh::Endpoint, public: Vec<SocketAddr>| Probe {
        bound: ep.bound_sockets()[0],
        public,
    };
    let out = Punch {
        a: probe(&a, pub_a),
        b: probe(&b, pub_b),
        direct,
    };
    for (ep, rt) in [(a, &rt_a), (b, &rt_b)] {
        let close = rt.spawn(async move { ep.close().await });
        let _ = tokio::time::timeout(Duration::from_secs(5), close).await;
    }
    out
}

/// The NAT itself: an iroh endpoint that trusts the local relay's certificate learns its
/// public address by QUIC address discovery (the port is its own: the mapping does not
/// depend on the destination) and punches through both NATs at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iroh_hole_punches_endpoint_independent_nat() {
    let Some(tb) = testbed(Nat::EndpointIndependent) else {
        return;
    };
    let servers = tb.start_servers(0).await;
    let Punch { a, b, direct } = hole_punch(&tb, &servers, 10).await;
    println!(
        "endpoint-independent NAT, iroh: A {} public {:?}; B {} public {:?}; direct {direct:?}",
        a.bound, a.public, b.bound, b.public
    );
    for (p, site) in [(&a, tb.site(1)), (&b, tb.site(2))] {
        let want = SocketAddr::from((site.public_addr, p.bound.port()));
        assert_eq!(p.public, [want], "not a port-preserving mapping");
    }
    let (after, to) = direct.expect("no direct path within 10 s");
    assert_eq!(
        to, a.public[0],
        "the direct path goes elsewhere than A's NAT"
    );
    assert!(after < Duration::from_secs(10));
}

/// Behind a symmetric NAT the address the relay observes is not the one the peer would see:
/// hole punching fails (iroh retries every 5 s) and the connection stays on the relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iroh_cannot_hole_punch_symmetric_nat() {
    let Some(tb) = testbed(Nat::Symmetric) else {
        return;
    };
    let servers = tb.start_servers(0).await;
    let Punch { a, b, direct } = hole_punch(&tb, &servers, 12).await;
    println!(
        "symmetric NAT, iroh: A {} public {:?}; B {} public {:?}; direct {direct:?}",
        a.bound, a.public, b.bound, b.public
    );
    for (p, site) in [(&a, tb.site(1)), (&b, tb.site(2))] {
        assert_eq!(p.public.len(), 1, "{:?}", p.public);
        assert_eq!(p.public[0].ip(), std::net::IpAddr::V4(site.public_addr));
    }
    // A random port each: both equal to the bound one by chance is one in ~4e9.
    assert!(
        a.public[0].port() != a.bound.port() || b.public[0].port() != b.bound.port(),
        "the NAT kept the ports"
    );
    assert_eq!(direct, None, "hole punched through a symmetric NAT");
}
