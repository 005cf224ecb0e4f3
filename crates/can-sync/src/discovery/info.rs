//! What one agent tells others about itself, and the crypto around it.

use std::net::SocketAddr;
use std::time::Duration;

use can_proto::peer::PeerInfo;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use iroh::{Endpoint, EndpointAddr, EndpointId, RelayUrl};

/// Announcements and rendezvous entries older than this are ignored.
pub const FRESH_FOR: Duration = Duration::from_secs(10 * 60);

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// This endpoint's current addresses as a PeerInfo.
pub fn own_info(endpoint: &Endpoint, device_name: &str) -> PeerInfo {
    let addr = endpoint.addr();
    PeerInfo {
        endpoint_id: endpoint.id().as_bytes().to_vec(),
        device_name: device_name.chars().take(32).collect(),
        relay_url: addr
            .relay_urls()
            .next()
            .map(|u| u.to_string())
            .unwrap_or_default(),
        direct_addrs: addr.ip_addrs().take(4).map(|a| a.to_string()).collect(),
        timestamp_ms: now_ms(),
    }
}

pub fn is_fresh(info: &PeerInfo, now_ms: u64) -> bool {
    let age = now_ms.abs_diff(info.timestamp_ms);
    age <= FRESH_FOR.as_millis() as u64
}

pub fn endpoint_id(info: &PeerInfo) -> Option<EndpointId> {
    let bytes: [u8; 32] = info.endpoint_id.as_slice().try_into().ok()?;
    EndpointId::from_bytes(&bytes).ok()
}

/// The dialable address in a PeerInfo (unparseable parts are skipped).
pub fn to_addr(info: &PeerInfo) -> Option<EndpointAddr> {
    let mut addr = EndpointAddr::new(endpoint_id(info)?);
    if let Ok(url) = info.relay_url.parse::<RelayUrl>() {
        addr = addr.with_relay_url(url);
    }
    for a in &info.direct_addrs {
        if let Ok(sock) = a.parse::<SocketAddr>() {
            addr = addr.with_ip_addr(sock);
        }
    }
    Some(addr)
}

/// XChaCha20-Poly1305 with a nonce derived from the key and the plaintext (synthetic IV):
/// no randomness needed, and a nonce repeats only for the very same message.
pub fn seal(key: &[u8; 32], plaintext: &[u8]) -> Vec<u8> {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(b"can-sync v1 seal nonce");
    h.update(plaintext);
    let nonce_bytes: [u8; 24] = h.finalize().as_bytes()[..24].try_into().unwrap_or([0; 24]);
    let cipher = XChaCha20Poly1305::new(key.into());
    let nonce = XNonce::from(nonce_bytes);
    let mut out = nonce_bytes.to_vec();
    // Encryption of an in-memory buffer cannot fail.
    out.extend(cipher.encrypt(&nonce, plaintext).unwrap_or_default());
    out
}

/// Opens what [`seal`] made; `None` for anything forged, damaged or sealed with another key.
pub fn open(key: &[u8; 32], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < 24 + 16 {
        return None;
    }
    let (nonce, body) = sealed.split_at(24);
    let nonce = XNonce::from_slice(nonce);
    XChaCha20Poly1305::new(key.into()).decrypt(nonce, body).ok()
}

/// MAC of a gossip announcement.
pub fn mac(key: &[u8; 32], bytes: &[u8]) -> [u8; 32] {
    *blake3::keyed_hash(key, bytes).as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_roundtrip_and_tamper() {
        let key = [9u8; 32];
        let sealed = seal(&key, b"hello peers");
        assert_eq!(open(&key, &sealed).unwrap(), b"hello peers");
        assert!(open(&[8u8; 32], &sealed).is_none());
        let mut bad = sealed.clone();
        bad[30] ^= 1;
        assert!(open(&key, &bad).is_none());
        assert!(open(&key, &sealed[..10]).is_none());
        assert_ne!(seal(&key, b"a"), seal(&key, b"b"));
    }

    #[test]
    fn info_to_addr_and_freshness() {
        let id = iroh::SecretKey::generate().public();
        let info = PeerInfo {
            endpoint_id: id.as_bytes().to_vec(),
            device_name: "x".into(),
            relay_url: String::new(),
            direct_addrs: vec!["127.0.0.1:4000".into(), "garbage".into()],
            timestamp_ms: now_ms(),
        };
        let addr = to_addr(&info).unwrap();
        assert_eq!(addr.id, id);
        assert_eq!(addr.ip_addrs().count(), 1);
        assert!(is_fresh(&info, now_ms()));
        assert!(!is_fresh(&info, now_ms() + 11 * 60 * 1000));
        let bad = PeerInfo {
            endpoint_id: vec![1, 2],
            ..info
        };
        assert!(to_addr(&bad).is_none());
    }
}
