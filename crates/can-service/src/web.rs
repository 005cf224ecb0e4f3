//! Which web origins and `Host` names the service answers, so that a web page in a browser
//! on the same machine cannot use it (threat model: "Web pages").
//!
//! - **Host** (DNS rebinding): a page on `http://evil.example:3210` whose name the attacker
//!   re-points at 127.0.0.1 is same-origin with itself, so the browser lets it read the
//!   answers. Its requests still carry `Host: evil.example:3210`, which is how they are told
//!   apart: only IP literals, `localhost` and configured `allowed_hosts` are served.
//! - **Origin** (cross-site requests): a page on any site can *send* a POST to
//!   `http://127.0.0.1:3210` (it just cannot read the answer), which would store an asset
//!   that then syncs everywhere. Browsers say who sent it in `Origin`; only the store's own
//!   origin and configured `allowed_origins` are served. Non-browser clients send none.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use axum::http::uri::Authority;

/// A parsed web origin; equal origins compare equal (case and default port normalised).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebOrigin {
    scheme: String,
    host: String,
    port: u16,
}

/// A `host[:port]` as in a `Host` header, host lowercased; `port` is `None` if absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    host: String,
    port: Option<u16>,
}

/// Parses `scheme://host[:port]` (http or https, nothing else: an origin has no path).
/// `null`, the origin of sandboxed and file pages, does not parse.
pub fn parse_origin(text: &str) -> Result<WebOrigin, &'static str> {
    let (scheme, rest) = text
        .split_once("://")
        .ok_or("is not an origin (scheme://host[:port])")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return Err("must start with http:// or https://"),
    };
    if rest.contains(['/', '?', '#']) {
        return Err("must not have a path (not even a trailing /)");
    }
    let authority: Authority = rest.parse().map_err(|_| "has no valid host")?;
    let host = parse_authority(&authority)?;
    Ok(WebOrigin {
        scheme,
        port: host.port.unwrap_or(default_port),
        host: host.host,
    })
}

/// Parses a `Host` header value or an `allowed_hosts` entry: `name`, `name:port`, an IPv4
/// address or a bracketed IPv6 address, each with an optional port.
pub fn parse_host(text: &str) -> Result<HostPort, &'static str> {
    if text.contains("://") {
        return Err("must be a host name with an optional port, not a URL");
    }
    let authority: Authority = text
        .parse()
        .map_err(|_| "is not a host name with an optional port")?;
    parse_authority(&authority)
}

fn parse_authority(authority: &Authority) -> Result<HostPort, &'static str> {
    if authority.as_str().contains('@') {
        return Err("must not contain user information (@)");
    }
    let host = authority.host();
    if host.is_empty() || host == "*" {
        return Err("has no host");
    }
    // `Authority::port` silently ignores a port that is not a u16; here it is an error.
    let port = match &authority.as_str()[host.len()..] {
        "" => None,
        rest => Some(
            rest.strip_prefix(':')
                .and_then(|p| p.parse::<u16>().ok())
                .ok_or("has a port that is not a number from 0 to 65535")?,
        ),
    };
    Ok(HostPort {
        host: host.to_ascii_lowercase(),
        port,
    })
}

impl HostPort {
    /// An IP literal or `localhost`: a name no DNS answer can re-point.
    fn is_literal_or_localhost(&self) -> bool {
        let h = self.host.as_str();
        h == "localhost"
            || h.parse::<Ipv4Addr>().is_ok()
            || h.strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .is_some_and(|h| h.parse::<Ipv6Addr>().is_ok())
    }

    /// Whether an allow-list entry covers `self`: same host, and same port if it has one.
    fn covered_by(&self, entry: &HostPort) -> bool {
        self.host == entry.host && entry.port.is_none_or(|p| Some(p) == self.port)
    }
}

/// Which `Host` values are served.
#[derive(Debug, Clone, Default)]
pub struct HostPolicy {
    allowed: Vec<HostPort>,
}

impl HostPolicy {
    /// From `allowed_hosts`; the error carries the bad entry and why.
    pub fn new(allowed_hosts: &[String]) -> Result<Self, String> {
        let allowed = allowed_hosts
            .iter()
            .map(|h| parse_host(h).map_err(|why| format!("entry {h:?} {why}")))
            .collect::<Result<_, _>>()?;
        Ok(Self { allowed })
    }

    pub fn accepts(&self, host: &str) -> bool {
        parse_host(host).is_ok_and(|h| {
            h.is_literal_or_localhost() || self.allowed.iter().any(|e| h.covered_by(e))
        })
    }
}

/// Which `Origin` values are served.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    allowed: Vec<WebOrigin>,
    /// `http://<listen address>`: the store's own origin whatever Host it was addressed as.
    own: WebOrigin,
}

impl OriginPolicy {
    /// From `allowed_origins` and the address actually listened on.
    pub fn new(allowed_origins: &[String], listen: SocketAddr) -> Result<Self, String> {
        let allowed = allowed_origins
            .iter()
            .map(|o| parse_origin(o).map_err(|why| format!("entry {o:?} {why}")))
            .collect::<Result<_, _>>()?;
        let own = WebOrigin {
            scheme: "http".to_owned(),
            host: match listen {
                SocketAddr::V4(a) => a.ip().to_string(),
                SocketAddr::V6(a) => format!("[{}]", a.ip()),
            },
            port: listen.port(),
        };
        Ok(Self { allowed, own })
    }

    /// Whether a request with `Origin: origin`, addressed to `host` (an already accepted
    /// `Host`), comes from the store's own origin or an allowed one.
    pub fn accepts(&self, origin: &str, host: Option<&str>) -> bool {
        let Ok(origin) = parse_origin(origin) else {
            return false;
        };
        let same_as_host = host.and_then(|h| parse_host(h).ok()).is_some_and(|h| {
            origin.scheme == "http" && origin.host == h.host && origin.port == h.port.unwrap_or(80)
        });
        same_as_host || origin == self.own || self.allowed.contains(&origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let p = HostPolicy::new(&["nas.example".into(), "box.example:8080".into()]).unwrap();
        for ok in [
            "127.0.0.1",
            "127.0.0.1:3210",
            "10.1.2.3:1",
            "localhost",
            "LOCALHOST:3210",
            "[::1]:3210",
            "[::1]",
            "[fe80::1]:80",
            "nas.example",
            "NAS.example:3210",
            "box.example:8080",
        ] {
            assert!(p.accepts(ok), "{ok}");
        }
        for bad in [
            "evil.example:3210",
            "evil.example",
            "localhost.evil.example",
            "localhost.",
            "127.0.0.1.evil.example",
            "box.example:8081",
            "box.example",
            "::1",
            "[::1",
            "[nonsense]:80",
            "u@127.0.0.1",
            "",
            "*",
            "127.0.0.1:99999",
            "http://127.0.0.1",
        ] {
            assert!(!p.accepts(bad), "{bad}");
        }
        assert!(!HostPolicy::default().accepts("nas.example"));
        assert!(HostPolicy::new(&["http://nas.example".into()]).is_err());
        assert!(HostPolicy::new(&["a b".into()]).is_err());
        assert!(HostPolicy::new(&["".into()]).is_err());
    }

    #[test]
    fn origins() {
        let listen: SocketAddr = "127.0.0.1:3210".parse().unwrap();
        let p = OriginPolicy::new(&["https://app.example".into()], listen).unwrap();
        let host = Some("localhost:3210");
        assert!(p.accepts("http://localhost:3210", host));
        assert!(p.accepts("HTTP://LocalHost:3210", host));
        assert!(p.accepts("http://127.0.0.1:3210", host), "listen address");
        assert!(p.accepts("https://app.example", host));
        assert!(p.accepts("https://app.example:443", host));
        assert!(p.accepts("http://localhost", Some("localhost:80")));
        for bad in [
            "https://evil.example",
            "http://localhost:3211",
            "https://localhost:3210",
            "http://app.example",
            "null",
            "",
            "http://localhost:3210/",
            "file://",
        ] {
            assert!(!p.accepts(bad, host), "{bad}");
        }
        let v6 = OriginPolicy::new(&[], "[::1]:3210".parse().unwrap()).unwrap();
        assert!(v6.accepts("http://[::1]:3210", None));
        for bad in ["http://x/", "ftp://x", "x", "null", "http://x/path", "*"] {
            assert!(OriginPolicy::new(&[bad.into()], listen).is_err(), "{bad}");
        }
    }
}
