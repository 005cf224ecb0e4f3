//! Admission: both ends prove knowledge of the passphrase before anything else is said.
//!
//! SPAKE2 (Ed25519 group, symmetric mode) keyed by the admission subkey and bound to both
//! endpoint ids and the ALPN, then key confirmation with role-separated MACs over the
//! transcript. A stranger gets one online guess per connection and no transcript to test
//! passphrases offline. See docs/protocol.md.

use can_proto::peer::{Confirm, Pake};
use iroh::EndpointId;
use spake2::{Ed25519Group, Identity, Password, Spake2};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::wire::{MAX_PRE_ADMISSION_FRAME, WireError, expect_frame, write_frame};

/// The peer protocol's ALPN; the version is part of it.
pub const ALPN: &[u8] = b"can-sync/1";

#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error("the peer does not know the passphrase")]
    WrongPassphrase,
    #[error("malformed admission message")]
    Malformed,
    #[error("admission stream failed: {0}")]
    Wire(#[from] WireError),
}

/// Which end of the connection we are: the roles keep the two confirmations distinct, so a
/// peer cannot reflect ours back to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Dialer,
    Listener,
}

/// The SPAKE2 identity: protocol, ALPN and both endpoint ids in a fixed order.
fn binding(local: &EndpointId, remote: &EndpointId, role: Role) -> Vec<u8> {
    let (dialer, listener) = match role {
        Role::Dialer => (local, remote),
        Role::Listener => (remote, local),
    };
    let mut id = b"can-sync admission v1|".to_vec();
    id.extend_from_slice(ALPN);
    id.push(b'|');
    id.extend_from_slice(dialer.as_bytes());
    id.extend_from_slice(listener.as_bytes());
    id
}

fn mac(key: &[u8; 32], role: Role, transcript: &[u8; 32]) -> [u8; 32] {
    let label: &[u8] = match role {
        Role::Dialer => b"dialer confirms",
        Role::Listener => b"listener confirms",
    };
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(label);
    h.update(transcript);
    *h.finalize().as_bytes()
}

/// Runs admission on the first stream of a connection. On success, returns the shared key.
pub async fn admit<R, W>(
    recv: &mut R,
    send: &mut W,
    admission_key: &[u8; 32],
    local: EndpointId,
    remote: EndpointId,
    role: Role,
) -> Result<[u8; 32], AdmissionError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let id = binding(&local, &remote, role);
    let (state, ours) =
        Spake2::<Ed25519Group>::start_symmetric(&Password::new(admission_key), &Identity::new(&id));
    write_frame(
        send,
        &Pake {
            message: ours.clone(),
        },
    )
    .await?;
    let theirs: Pake = expect_frame(recv, MAX_PRE_ADMISSION_FRAME).await?;
    let shared = state
        .finish(&theirs.message)
        .map_err(|_| AdmissionError::Malformed)?;
    let key: [u8; 32] = blake3::derive_key("can-sync v1 admission session", &shared);

    let (dialer_msg, listener_msg) = match role {
        Role::Dialer => (&ours, &theirs.message),
        Role::Listener => (&theirs.message, &ours),
    };
    let mut t = blake3::Hasher::new();
    t.update(&id);
    t.update(dialer_msg);
    t.update(listener_msg);
    let transcript = *t.finalize().as_bytes();

    let (mine, other) = match role {
        Role::Dialer => (Role::Dialer, Role::Listener),
        Role::Listener => (Role::Listener, Role::Dialer),
    };
    // Both sides send before they check, so neither learns anything from the other's timing.
    write_frame(
        send,
        &Confirm {
            mac: mac(&key, mine, &transcript).to_vec(),
        },
    )
    .await?;
    let confirm: Confirm = expect_frame(recv, MAX_PRE_ADMISSION_FRAME).await?;
    let expected = mac(&key, other, &transcript);
    if confirm.mac.len() != 32 || !bool::from(confirm.mac.as_slice().ct_eq(&expected)) {
        return Err(AdmissionError::WrongPassphrase);
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (EndpointId, EndpointId) {
        (
            iroh::SecretKey::generate().public(),
            iroh::SecretKey::generate().public(),
        )
    }

    async fn run(
        ka: [u8; 32],
        kb: [u8; 32],
    ) -> (
        Result<[u8; 32], AdmissionError>,
        Result<[u8; 32], AdmissionError>,
    ) {
        let (a, b) = ids();
        let (sa, sb) = tokio::io::duplex(4096);
        let (mut ra, mut wa) = tokio::io::split(sa);
        let (mut rb, mut wb) = tokio::io::split(sb);
        tokio::join!(
            admit(&mut ra, &mut wa, &ka, a, b, Role::Dialer),
            admit(&mut rb, &mut wb, &kb, b, a, Role::Listener)
        )
    }

    #[tokio::test]
    async fn same_key_admits_both() {
        let (a, b) = run([7; 32], [7; 32]).await;
        assert_eq!(a.unwrap(), b.unwrap());
    }

    #[tokio::test]
    async fn different_key_refused_by_both() {
        let (a, b) = run([7; 32], [8; 32]).await;
        assert!(matches!(a, Err(AdmissionError::WrongPassphrase)));
        assert!(matches!(b, Err(AdmissionError::WrongPassphrase)));
    }

    #[tokio::test]
    async fn reflected_confirmation_is_refused() {
        // A peer that echoes our own messages back never passes: roles differ.
        let (a, b) = ids();
        let (sa, sb) = tokio::io::duplex(4096);
        let (mut ra, mut wa) = tokio::io::split(sa);
        let (mut rb, mut wb) = tokio::io::split(sb);
        let echo = async move {
            let pake: Pake = expect_frame(&mut rb, 256).await.unwrap();
            write_frame(&mut wb, &pake).await.unwrap();
            let confirm: Confirm = expect_frame(&mut rb, 256).await.unwrap();
            write_frame(&mut wb, &confirm).await.unwrap();
        };
        let (r, ()) = tokio::join!(admit(&mut ra, &mut wa, &[1; 32], a, b, Role::Dialer), echo);
        assert!(r.is_err());
    }
}
