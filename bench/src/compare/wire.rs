//! Bytes on the wire between the two peers of each tool, from nftables counters on the
//! loopback's output hook. Every packet between two local sockets passes `output` exactly
//! once, so a counter there sees each packet once; it counts whole IP packets (IP and
//! UDP/TCP headers, QUIC or TLS framing and encryption included). CAN Sync's agents bind
//! their QUIC sockets to ports in [`CAN_PORTS`], Syncthing listens on ports in [`ST_PORTS`]:
//! only traffic between the peers is counted, not the agents' HTTP to their CAN Services nor
//! the bench's REST calls to Syncthing.
//!
//! The table lives in the bench's private network namespace (root only) and goes with it;
//! it is also deleted on drop.

use std::process::{Command, Stdio};

use anyhow::{Context, ensure};

/// UDP ports the agents bind (their whole QUIC traffic, gossip included).
pub const CAN_PORTS: (u16, u16) = (27100, 27199);
/// TCP ports Syncthing listens on for its peers (BEP over TLS).
pub const ST_PORTS: (u16, u16) = (27200, 27299);

const TABLE: &str = "canbench";

/// Which tool's traffic.
#[derive(Clone, Copy)]
pub enum Tool {
    Can,
    Syncthing,
}

impl Tool {
    fn counter(self) -> &'static str {
        match self {
            Tool::Can => "can",
            Tool::Syncthing => "st",
        }
    }
}

pub struct Wire(());

impl Wire {
    /// Creates the counters; `None` when nftables is not usable here (not root, no `nft`).
    pub fn start() -> Option<Wire> {
        let (c0, c1) = CAN_PORTS;
        let (s0, s1) = ST_PORTS;
        let rules = format!(
            "table inet {TABLE} {{
                counter can {{}}
                counter st {{}}
                chain out {{
                    type filter hook output priority 0; policy accept;
                    udp sport {c0}-{c1} counter name can
                    tcp sport {s0}-{s1} counter name st
                    tcp sport != {s0}-{s1} tcp dport {s0}-{s1} counter name st
                }}
            }}"
        );
        let ok = run_nft(&["-f", "-"], Some(&rules)).is_ok();
        ok.then_some(Wire(()))
    }

    /// Bytes counted so far for this tool (both directions).
    pub fn bytes(&self, tool: Tool) -> anyhow::Result<u64> {
        let out = run_nft(
            &["-j", "list", "counter", "inet", TABLE, tool.counter()],
            None,
        )?;
        let v: serde_json::Value = serde_json::from_str(&out)?;
        v["nftables"]
            .as_array()
            .and_then(|a| a.iter().find_map(|x| x["counter"]["bytes"].as_u64()))
            .context("no counter in nft's answer")
    }
}

impl Drop for Wire {
    fn drop(&mut self) {
        let _ = run_nft(&["delete", "table", "inet", TABLE], None);
    }
}

fn run_nft(args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    use std::io::Write;
    let mut child = Command::new("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("nft")?;
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .context("nft stdin")?
            .write_all(text.as_bytes())?;
    }
    drop(child.stdin.take());
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "nft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The first port in `range` free for both TCP and UDP on 127.0.0.1, skipping `taken`.
pub fn free_port(range: (u16, u16), taken: &mut Vec<u16>) -> anyhow::Result<u16> {
    for port in range.0..=range.1 {
        if taken.contains(&port) {
            continue;
        }
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok();
        if tcp && udp {
            taken.push(port);
            return Ok(port);
        }
    }
    anyhow::bail!("no free port in {range:?}")
}
