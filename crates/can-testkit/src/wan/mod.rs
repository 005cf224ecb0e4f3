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
//! Root only ([`Testbed::available`]); everything is removed on drop. Tests in one process
//! get the testbed one at a time (they share the address plan).

pub mod link;
mod tun;

use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use link::Profile;
use link::{Link, Verdict};

/// One site of the testbed.
#[derive(Debug, Clone)]
pub struct Site {
    /// Its network namespace (for `Agent::start_in`).
    pub netns: String,
    /// Its address on the emulated network (bind agents here).
    pub addr: Ipv4Addr,
    /// The test side of its veth pair: where the site's CAN Service should listen.
    pub host_addr: Ipv4Addr,
}

impl Site {
    /// The agent config line that keeps the agent on the emulated network.
    pub fn bind_yaml(&self) -> String {
        format!("bind_addr: {}:0\n", self.addr)
    }
}

struct Links {
    /// Per site: (uplink: site → network, downlink: network → site).
    links: Vec<(Link, Link)>,
    rng: rand::rngs::StdRng,
}

/// What the forwarder's threads share with the testbed.
struct Shared {
    links: Mutex<Links>,
    stop: AtomicBool,
    /// Orders packets due at the same instant.
    seq: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
}

impl Shared {
    fn set_up(&self, i: usize, up: bool) {
        if let Ok(mut l) = self.links.lock() {
            l.links[i].0.up = up;
            l.links[i].1.up = up;
        }
    }
}

/// The running testbed.
pub struct Testbed {
    sites: Vec<Site>,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
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

/// A packet waiting for its time.
#[derive(PartialEq, Eq)]
struct Due {
    at: Instant,
    seq: u64,
    to: usize,
    packet: Vec<u8>,
}

impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Earliest first out of the (max-)heap.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Testbed {
    /// Whether this machine can run it: root, ip(8), /dev/net/tun.
    pub fn available() -> bool {
        crate::netns::can_create() && Path::new("/dev/net/tun").exists()
    }

    /// Starts one site per profile (site `i` uses `profiles[i]` on its access link).
    pub fn start(profiles: &[Profile]) -> Testbed {
        assert!(profiles.len() <= 200, "at most 200 sites");
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
        for (i, _) in profiles.iter().enumerate() {
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
            let addr = Ipv4Addr::new(10, 77, 0, i as u8 + 1);
            ip(&[
                "-n",
                &netns,
                "addr",
                "add",
                &format!("{addr}/24"),
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
            sites.push(Site {
                netns,
                addr,
                host_addr,
            });
            tuns.push(Arc::new(tun));
        }
        // From here the testbed owns the namespaces (its Drop removes them).
        made.0.clear();
        let shared = Arc::new(Shared {
            links: Mutex::new(Links {
                links: profiles
                    .iter()
                    .map(|p| (Link::new(*p, now), Link::new(*p, now)))
                    .collect(),
                rng: rand::SeedableRng::seed_from_u64(id),
            }),
            stop: AtomicBool::new(false),
            seq: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
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
            _turn: turn,
        }
    }

    /// Packets the links delivered and dropped so far (for test diagnostics).
    pub fn delivered(&self) -> u64 {
        self.shared.delivered.load(Ordering::Relaxed)
    }

    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
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

fn read_site(from: usize, sites: usize, tun: &File, shared: &Shared, tx: &mpsc::Sender<Due>) {
    let mut buf = vec![0u8; 65536];
    let fd = tun.as_raw_fd();
    while !shared.stop.load(Ordering::Relaxed) {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let ready = unsafe { libc::poll(&mut pfd, 1, 100) };
        if ready <= 0 {
            continue;
        }
        let n = match (&*tun).read(&mut buf) {
            Ok(n) => n,
            Err(_) => return,
        };
        let packet = &buf[..n];
        // IPv4 to 10.77.0.x only; the rest (none is expected) is dropped.
        if n < 20 || packet[0] >> 4 != 4 || packet[16..19] != [10, 77, 0] {
            continue;
        }
        let to = packet[19] as usize;
        if to == 0 || to > sites || to - 1 == from {
            continue;
        }
        let to = to - 1;
        let now = Instant::now();
        let verdict = {
            let Ok(mut l) = shared.links.lock() else {
                return;
            };
            let l = &mut *l;
            let (r1, r2, r3, r4) = (
                rand::Rng::random::<f64>(&mut l.rng),
                rand::Rng::random::<f64>(&mut l.rng),
                rand::Rng::random::<f64>(&mut l.rng),
                rand::Rng::random::<f64>(&mut l.rng),
            );
            match l.links[from].0.pass(n, now, r1, r2) {
                Verdict::Deliver(at) => l.links[to].1.pass(n, at, r3, r4),
                Verdict::Dropped => Verdict::Dropped,
            }
        };
        match verdict {
            Verdict::Deliver(at) => {
                let due = Due {
                    at,
                    seq: shared.seq.fetch_add(1, Ordering::Relaxed),
                    to,
                    packet: packet.to_vec(),
                };
                if tx.send(due).is_err() {
                    return;
                }
            }
            Verdict::Dropped => {
                shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn deliver(rx: mpsc::Receiver<Due>, tuns: &[Arc<File>], shared: &Shared) {
    let mut queue = BinaryHeap::new();
    while !shared.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        while queue.peek().is_some_and(|d: &Due| d.at <= now) {
            if let Some(d) = queue.pop() {
                // A full receive queue drops the packet, like a real interface.
                if (&*tuns[d.to]).write(&d.packet).is_ok() {
                    shared.delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let wait = queue
            .peek()
            .map(|d| d.at.saturating_duration_since(now))
            .unwrap_or(Duration::from_millis(100))
            .min(Duration::from_millis(100));
        match rx.recv_timeout(wait) {
            Ok(d) => queue.push(d),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        // Take whatever else arrived without waiting.
        while let Ok(d) = rx.try_recv() {
            queue.push(d);
        }
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        for s in &self.sites {
            delete_netns(&s.netns);
        }
    }
}
