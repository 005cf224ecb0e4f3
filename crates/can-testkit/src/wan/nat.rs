//! NAT for a site: a LAN namespace behind the site's namespace, which routes and masquerades
//! with nftables, as a home router does.
//!
//! ```text
//! LAN netns <site>-lan                 site netns <site> (the router)
//!   agent ── eth0 192.168.<i+1>.2/24 ── lan 192.168.<i+1>.1/24
//!            default via .1              ip_forward=1, nft table ip cswan_nat:
//!                                          masquerade out of every other interface
//!                                          (wan0, and the veth to the test's namespace)
//!                                          unsolicited inbound: dropped
//! ```

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// How a site's router maps its LAN's flows to its own address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    /// Port-preserving masquerade: conntrack keeps the source port when it is free, so one
    /// mapping (public address and port) serves every destination (endpoint-independent
    /// mapping, RFC 4787). Filtering is address- and port-dependent (conntrack): a peer gets
    /// in once we have sent to it, which is what hole punching needs.
    EndpointIndependent,
    /// `masquerade fully-random`: a random port for every new flow, so each destination sees
    /// another mapping (endpoint-dependent, "symmetric"). The address a relay observes is
    /// useless to a peer: hole punching fails and only the relay connects.
    Symmetric,
}

/// The nftables ruleset of a site's router.
pub(super) fn ruleset(nat: Nat) -> String {
    let random = match nat {
        Nat::EndpointIndependent => "",
        Nat::Symmetric => " fully-random",
    };
    // Unsolicited packets to the router are dropped in `input` before conntrack confirms
    // them, as a home router's firewall does. Without that, a peer's early hole-punching
    // probe would leave a confirmed entry for (peer → our public port) that clashes with our
    // own mapping to that peer a moment later, and conntrack would pick another port.
    format!(
        "table ip cswan_nat {{
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname != \"lan\" masquerade{random}
  }}
  chain input {{
    type filter hook input priority filter; policy accept;
    iifname != {{ \"lan\", \"lo\" }} ct state new drop
  }}
  chain forward {{
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname \"lan\" accept
  }}
}}
"
    )
}

/// Whether nft(8) is here.
pub fn available() -> bool {
    Command::new("nft")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The LAN of site `i`: its address (the agent's) and the router's.
pub(super) fn lan_addrs(i: usize) -> (Ipv4Addr, Ipv4Addr) {
    let net = i as u8 + 1;
    (
        Ipv4Addr::new(192, 168, net, 2),
        Ipv4Addr::new(192, 168, net, 1),
    )
}

/// Puts site `i`'s router (`site_ns`) in front of a new LAN namespace `lan_ns`; returns the
/// LAN address agents bind to.
pub(super) fn set_up(site_ns: &str, lan_ns: &str, i: usize, nat: Nat) -> Ipv4Addr {
    use super::{in_ns, ip};
    let (addr, router) = lan_addrs(i);
    ip(&["netns", "add", lan_ns]);
    ip(&["-n", lan_ns, "link", "set", "lo", "up"]);
    for key in ["all", "default"] {
        in_ns(
            lan_ns,
            &[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{key}.disable_ipv6=1"),
            ],
        );
    }
    ip(&[
        "-n", site_ns, "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns",
        lan_ns,
    ]);
    ip(&[
        "-n",
        site_ns,
        "addr",
        "add",
        &format!("{router}/24"),
        "dev",
        "lan",
    ]);
    ip(&["-n", site_ns, "link", "set", "lan", "up"]);
    ip(&[
        "-n",
        lan_ns,
        "addr",
        "add",
        &format!("{addr}/24"),
        "dev",
        "eth0",
    ]);
    // The site's wan0 carries 1400-byte packets: so does its LAN (no PMTU games).
    ip(&["-n", lan_ns, "link", "set", "eth0", "mtu", "1400", "up"]);
    ip(&[
        "-n",
        lan_ns,
        "route",
        "add",
        "default",
        "via",
        &router.to_string(),
    ]);
    in_ns(site_ns, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    nft(site_ns, &ruleset(nat));
    addr
}

/// Loads `rules` into the namespace's nftables (they go with the namespace).
fn nft(ns: &str, rules: &str) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run nft");
    child
        .stdin
        .take()
        .expect("nft stdin")
        .write_all(rules.as_bytes())
        .expect("write nft rules");
    let out = child.wait_with_output().expect("nft");
    assert!(
        out.status.success(),
        "nft in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rulesets_differ_only_in_the_port_choice() {
        let eim = ruleset(Nat::EndpointIndependent);
        let sym = ruleset(Nat::Symmetric);
        assert!(eim.contains("masquerade\n"), "{eim}");
        assert!(sym.contains("masquerade fully-random\n"), "{sym}");
        assert_eq!(eim, sym.replace(" fully-random", ""));
        assert_eq!(lan_addrs(0).0, Ipv4Addr::new(192, 168, 1, 2));
    }
}
