//! A WAN testbed: N sites, each a network namespace whose only way to the others is an
//! emulated access link (rate, delay, jitter, loss, cuts) run in user space, because this
//! kernel has no `netem`.
//!
//! Each site has a TUN device `wan0` with `10.77.0.<i+1>/24`; a forwarder in the test
//! process reads every packet a site sends to that network, passes it through the sender's
//! uplink and the receiver's downlink ([`link::Link`]) and writes it into the receiver's
//! TUN device when it is due. Each site also gets a veth pair to the test's namespace
//! (`10.78.<i>.2` inside, `10.78.<i>.1` outside, no route beyond it) where its CAN Service
//! listens, so the test can read the stores without crossing the emulated links.
//! A site may sit behind a NAT ([`Nat`], [`nat`]): its agents then run in a LAN namespace
//! behind the site's, which routes and masquerades with nftables. A local iroh relay and
//! pkarr relay can run in a site ([`Testbed::start_servers`]), reachable from every other.
//! Root only ([`Testbed::available`]; NAT also needs nft(8), [`Testbed::nat_available`]);
//! everything is removed on drop. Tests in one process get the testbed one at a time (they
//! share the address plan).

mod forward;
pub mod link;
pub mod nat;
mod runtime;
mod site;
mod tun;

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use forward::{Due, Links, Shared, deliver, read_site};
use link::Link;
pub use link::Profile;
pub use nat::Nat;
pub use runtime::NetnsRuntime;

use crate::LocalServers;

/// One site of the testbed.
#[derive(Debug, Clone)]
pub struct Site {
    /// Where its agents run (for `Agent::start_in`): the site's namespace, or behind a NAT
    /// its LAN's.
    pub netns: String,
    /// Where its agents bind: its address on the emulated network, or behind a NAT its LAN
    /// address (`192.168.<i+1>.2`, reachable from no other site).
    pub addr: Ipv4Addr,
    /// The test side of its veth pair: where the site's CAN Service should listen.
    pub host_addr: Ipv4Addr,
    /// The site side of that veth pair (`10.78.<i>.2`, in the site's own namespace, the
    /// router's behind a NAT): where a server in the site listens for the test.
    pub veth_addr: Ipv4Addr,
    /// Its address on the emulated network (`10.77.0.<i+1>`): what other sites see.
    pub public_addr: Ipv4Addr,
    /// The site's own namespace (its `wan0`; the router when behind a NAT).
    pub router_netns: String,
    pub nat: Option<Nat>,
}

impl Site {
    /// The agent config line that keeps the agent on the emulated network.
    pub fn bind_yaml(&self) -> String {
        format!("bind_addr: {}:0\n", self.addr)
    }
}

/// How to build one site: its access link, and whether it sits behind a NAT.
#[derive(Debug, Clone, Copy)]
pub struct SiteConfig {
    pub profile: Profile,
    pub nat: Option<Nat>,
}

impl SiteConfig {
    pub fn new(profile: Profile) -> Self {
        Self { profile, nat: None }
    }

    /// The same site behind a NAT.
    pub fn nat(self, nat: Nat) -> Self {
        Self {
            nat: Some(nat),
            ..self
        }
    }
}

impl From<Profile> for SiteConfig {
    fn from(profile: Profile) -> Self {
        Self::new(profile)
    }
}

/// Where the local relays in a site can be reached from every site.
#[derive(Debug, Clone)]
pub struct Servers {
    /// `http://10.77.0.<i+1>:<port>`: the iroh relay (`relay_urls`).
    pub relay_url: String,
    /// `http://10.77.0.<i+1>:<port>/pkarr`: the pkarr relay (`pkarr_relays`).
    pub pkarr_url: String,
    /// The self-signed certificate of the relay's QUIC address discovery (port 7842): an
    /// endpoint that trusts it learns its public address (`iroh::tls::CaTlsConfig`).
    pub relay_cert: rustls::pki_types::CertificateDer<'static>,
}

impl Servers {
    /// The agent config lines that use these relays (and rendezvous every 2 s).
    pub fn agent_yaml(&self) -> String {
        format!(
            "relay_urls: [\"{}\"]\npkarr_relays: [\"{}\"]\nrendezvous_interval_secs: 2\n",
            self.relay_url, self.pkarr_url
        )
    }
}

/// The running testbed.
pub struct Testbed {
    sites: Vec<Site>,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    /// Local relays running in sites, stopped before the namespaces go.
    servers: Mutex<Vec<NetnsRuntime>>,
    _turn: std::sync::MutexGuard<'static, ()>,
}

static NEXT: AtomicU64 = AtomicU64::new(0);
/// One testbed at a time in a process: they share the address plan (and the two cores).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn in_ns(ns: &str, args: &[&str]) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .expect("run ip netns exec");
    assert!(
        out.status.success(),
        "{args:?} in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Testbed {
    /// Whether this machine can run it: root, ip(8), /dev/net/tun.
    pub fn available() -> bool {
        crate::netns::can_create() && Path::new("/dev/net/tun").exists()
    }

    /// Whether sites can sit behind a NAT here: [`Testbed::available`] and nft(8).
    pub fn nat_available() -> bool {
        Self::available() && nat::available()
    }

    /// Starts one site per profile (site `i` uses `profiles[i]` on its access link).
    pub fn start(profiles: &[Profile]) -> Testbed {
        let sites: Vec<SiteConfig> = profiles.iter().map(|p| SiteConfig::new(*p)).collect();
        Self::start_sites(&sites)
    }

    /// Starts one site per config: its access link, and a NAT in front of it if asked.
    pub fn start_sites(configs: &[SiteConfig]) -> Testbed {
        assert!(configs.len() <= 200, "at most 200 sites");
        // A test that failed while holding it poisoned it; the next one may still run.
        let turn = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        remove_orphans();
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = (pid as u64 * 64 + n) % 0x00ff_ffff;
        let now = Instant::now();
        let mut sites = Vec::new();
        let mut tuns = Vec::new();
        // Should a step fail half-way (a panic here), what was made is removed.
        let mut made = Made(Vec::new());
        for (i, config) in configs.iter().enumerate() {
            let netns = format!("cswan-{pid}-{n}-{i}");
            delete_netns(&netns);
            ip(&["netns", "add", &netns]);
            made.0.push(netns.clone());
            ip(&["-n", &netns, "link", "set", "lo", "up"]);
            // IPv4 only: no link-local v6 addresses for iroh to try beside the emulated path.
            in_ns(
                &netns,
                &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
            );
            in_ns(
                &netns,
                &["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"],
            );
            let tun = tun::open_in(&netns, "wan0").expect("create the TUN device");
            let public_addr = Ipv4Addr::new(10, 77, 0, i as u8 + 1);
            ip(&[
                "-n",
                &netns,
                "addr",
                "add",
                &format!("{public_addr}/24"),
                "dev",
                "wan0",
            ]);
            ip(&["-n", &netns, "link", "set", "wan0", "mtu", "1400", "up"]);
            let (host, inner) = (format!("csw{id:x}h{i}"), format!("csw{id:x}s{i}"));
            let _ = Command::new("ip").args(["link", "del", &host]).output();
            ip(&["link", "add", &host, "type", "veth", "peer", "name", &inner]);
            ip(&["link", "set", &inner, "netns", &netns]);
            let host_addr = Ipv4Addr::new(10, 78, i as u8, 1);
            ip(&["addr", "add", &format!("{host_addr}/30"), "dev", &host]);
            ip(&["link", "set", &host, "up"]);
            ip(&[
                "-n",
                &netns,
                "addr",
                "add",
                &format!("10.78.{i}.2/30"),
                "dev",
                &inner,
            ]);
            ip(&["-n", &netns, "link", "set", &inner, "up"]);
            let site = match config.nat {
                None => Site {
                    netns: netns.clone(),
                    addr: public_addr,
                    host_addr,
                    veth_addr: Ipv4Addr::new(10, 78, i as u8, 2),
                    public_addr,
                    router_netns: netns,
                    nat: None,
                },
                Some(kind) => {
                    let lan = format!("{netns}-lan");
                    delete_netns(&lan);
                    // Deleted before the site's (Made and Drop go in order).
                    made.0.insert(made.0.len() - 1, lan.clone());
                    let addr = nat::set_up(&netns, &lan, i, kind);
                    Site {
                        netns: lan,
                        addr,
                        host_addr,
                        veth_addr: Ipv4Addr::new(10, 78, i as u8, 2),
                        public_addr,
                        router_netns: netns,
                        nat: Some(kind),
                    }
                }
            };
            sites.push(site);
            tuns.push(Arc::new(tun));
        }
        // From here the testbed owns the namespaces (its Drop removes them).
        made.0.clear();
        let shared = Arc::new(Shared {
            links: Mutex::new(Links {
                links: configs
                    .iter()
                    .map(|c| (Link::new(c.profile, now), Link::new(c.profile, now)))
                    .collect(),
                rng: rand::SeedableRng::seed_from_u64(id),
            }),
            stop: AtomicBool::new(false),
            seq: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            sent_bytes: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::channel::<Due>();
        let mut threads = Vec::new();
        let n = tuns.len();
        for (from, tun) in tuns.iter().enumerate() {
            let (tun, shared, tx) = (tun.clone(), shared.clone(), tx.clone());
            threads.push(std::thread::spawn(move || {
                read_site(from, n, &tun, &shared, &tx)
            }));
        }
        drop(tx);
        {
            let shared = shared.clone();
            threads.push(std::thread::spawn(move || deliver(rx, &tuns, &shared)));
        }
        Testbed {
            sites,
            shared,
            threads,
            servers: Mutex::new(Vec::new()),
            _turn: turn,
        }
    }

    /// Starts a local iroh relay (with QUIC address discovery on port 7842) and pkarr relay
    /// in site `i` (not behind a NAT), on its address on the emulated network: every site
    /// reaches them through the links, NATed sites through their NAT. They stop when the
    /// testbed goes.
    pub async fn start_servers(&self, i: usize) -> Servers {
        let site = &self.sites[i];
        assert!(
            site.nat.is_none(),
            "site {i} is behind a NAT: no one reaches it"
        );
        let rt = NetnsRuntime::new(&site.router_netns).expect("a runtime in the site");
        let (tx, rx) = tokio::sync::oneshot::channel();
        let addr = site.public_addr.into();
        rt.spawn(async move {
            let servers = LocalServers::start_on(addr, true).await;
            let _ = tx.send(Servers {
                relay_url: servers.relay_url(),
                pkarr_url: servers.pkarr_url(),
                relay_cert: servers.relay_cert().expect("QAD certificate"),
            });
            // Runs until the runtime stops.
            std::future::pending::<()>().await;
            drop(servers);
        });
        let servers = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .expect("the local relays did not start within 30 s")
            .expect("the local relays failed to start");
        if let Ok(mut all) = self.servers.lock() {
            all.push(rt);
        }
        servers
    }

    /// A tokio runtime in site `i`'s agent namespace (its LAN behind a NAT), for in-process
    /// endpoints. Drop it before the testbed.
    pub fn runtime_in(&self, i: usize) -> NetnsRuntime {
        NetnsRuntime::new(&self.sites[i].netns).expect("a runtime in the site")
    }

    /// Packets the links delivered and dropped so far (for test diagnostics).
    pub fn delivered(&self) -> u64 {
        self.shared.delivered.load(Ordering::Relaxed)
    }

    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// IP bytes (headers included) all sites have sent onto the emulated network so far,
    /// lost packets included: the bytes on the wire, for benchmarks.
    pub fn sent_bytes(&self) -> u64 {
        self.shared.sent_bytes.load(Ordering::Relaxed)
    }

    pub fn site(&self, i: usize) -> &Site {
        &self.sites[i]
    }

    pub fn sites(&self) -> &[Site] {
        &self.sites
    }

    /// Site `i`'s access link gets another profile (both directions), from now on.
    pub fn set_profile(&self, i: usize, profile: Profile) {
        if let Ok(mut l) = self.shared.links.lock() {
            l.links[i].0.profile = profile;
            l.links[i].1.profile = profile;
        }
    }

    /// Site `i` loses its link: every packet to or from it is dropped.
    pub fn cut(&self, i: usize) {
        self.shared.set_up(i, false);
    }

    pub fn restore(&self, i: usize) {
        self.shared.set_up(i, true);
    }

    /// Cuts and restores site `i`'s link every `every` until `stop` is set (or the testbed
    /// goes away); the link is left up.
    pub fn flap(&self, i: usize, every: Duration, stop: Arc<AtomicBool>) -> JoinHandle<()> {
        let shared = self.shared.clone();
        std::thread::spawn(move || {
            let mut up = true;
            while !stop.load(Ordering::Relaxed) && !shared.stop.load(Ordering::Relaxed) {
                std::thread::sleep(every);
                up = !up;
                shared.set_up(i, up);
            }
            shared.set_up(i, true);
        })
    }
}

/// Namespaces made by a `start` that has not finished; removed if it fails.
struct Made(Vec<String>);

impl Drop for Made {
    fn drop(&mut self) {
        for name in &self.0 {
            delete_netns(name);
        }
    }
}

/// Ends whatever still runs in the namespace, then deletes it. `ip netns del` alone only
/// removes the name: a process left inside (an agent of a killed test) would keep the
/// namespace, and the veth address it holds in ours, alive.
fn delete_netns(name: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse::<libc::pid_t>().ok())
        {
            // SAFETY: kill(2) with a pid read from the kernel; a pid that exited meanwhile
            // only makes it fail.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    let _ = Command::new("ip").args(["netns", "del", name]).output();
}

/// Deletes the namespaces of testbeds whose process died without cleaning up (a killed
/// test): their veth addresses would clash with ours. Deleting a namespace removes its
/// TUN device and veth pair.
fn remove_orphans() {
    let Ok(dir) = std::fs::read_dir("/var/run/netns") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("cswan-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            delete_netns(&name);
        }
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if let Ok(mut servers) = self.servers.lock() {
            servers.clear();
        }
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        for s in &self.sites {
            if s.netns != s.router_netns {
                delete_netns(&s.netns);
            }
            delete_netns(&s.router_netns);
        }
    }
}
