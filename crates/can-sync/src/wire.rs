//! Framing of peer messages on QUIC streams: length-delimited protobuf with a hard maximum,
//! so a peer can never make us allocate more than the limit or read forever.
//! Generic over tokio I/O, so it is tested without sockets.

use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest frame after admission (a hash-list page is at most 512 KiB).
pub const MAX_FRAME: usize = 1 << 20;
/// Largest frame before admission completes: strangers get no room to waste our memory.
pub const MAX_PRE_ADMISSION_FRAME: usize = 256;
/// Hashes per HashList / Announce frame (16,384 × 32 bytes = 512 KiB).
pub const HASHES_PER_FRAME: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("stream error: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {len} bytes is over the limit of {max}")]
    TooLarge { len: u64, max: usize },
    #[error("malformed frame length")]
    BadLength,
    #[error("malformed frame: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("stream ended inside a frame")]
    Truncated,
    #[error("unexpected message: {0}")]
    Unexpected(&'static str),
}

/// Reads one frame. `Ok(None)`: the stream ended cleanly before a frame began.
pub async fn read_frame<M, R>(r: &mut R, max: usize) -> Result<Option<M>, WireError>
where
    M: Message + Default,
    R: AsyncRead + Unpin,
{
    let mut len: u64 = 0;
    for i in 0..10 {
        let byte = match r.read_u8().await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return if i == 0 {
                    Ok(None)
                } else {
                    Err(WireError::Truncated)
                };
            }
            Err(e) => return Err(e.into()),
        };
        len |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if len > max as u64 {
                return Err(WireError::TooLarge { len, max });
            }
            let mut buf = vec![0u8; len as usize];
            r.read_exact(&mut buf).await.map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => WireError::Truncated,
                _ => WireError::Io(e),
            })?;
            return Ok(Some(M::decode(buf.as_slice())?));
        }
    }
    Err(WireError::BadLength)
}

/// Reads one frame that must be there.
pub async fn expect_frame<M, R>(r: &mut R, max: usize) -> Result<M, WireError>
where
    M: Message + Default,
    R: AsyncRead + Unpin,
{
    read_frame(r, max).await?.ok_or(WireError::Truncated)
}

/// Writes one frame.
pub async fn write_frame<M, W>(w: &mut W, msg: &M) -> Result<(), WireError>
where
    M: Message,
    W: AsyncWrite + Unpin,
{
    w.write_all(&msg.encode_length_delimited_to_vec()).await?;
    Ok(())
}

/// Splits concatenated 32-byte hashes; a remainder is malformed.
/// A raw body that follows a frame read through `reader`: what the reader buffered past
/// the frame, then the stream itself (read through the `BufReader`, a short read would be
/// copied twice).
pub type Body<R> = tokio::io::Chain<std::io::Cursor<bytes::Bytes>, R>;

/// The body after the frame `reader` just read (see [`Body`]).
pub fn body_after_frame<R: AsyncRead>(reader: tokio::io::BufReader<R>) -> Body<R> {
    let buffered = std::io::Cursor::new(bytes::Bytes::copy_from_slice(reader.buffer()));
    buffered.chain(reader.into_inner())
}

pub fn split_hashes(bytes: &[u8]) -> Result<Vec<[u8; 32]>, WireError> {
    if !bytes.len().is_multiple_of(32) {
        return Err(WireError::Unexpected(
            "hash list length is not a multiple of 32",
        ));
    }
    Ok(bytes
        .chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            h
        })
        .collect())
}

pub fn join_hashes<'a>(hashes: impl IntoIterator<Item = &'a [u8; 32]>) -> Vec<u8> {
    hashes.into_iter().flat_map(|h| h.iter().copied()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use can_proto::peer::{Control, Hello, control};

    #[tokio::test]
    async fn roundtrip_and_clean_eof() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let msg = Control {
            kind: Some(control::Kind::Hello(Hello {
                device_name: "laptop".into(),
                agent_version: "1".into(),
                features: vec!["rbsr-v1".into()],
                instance: 7,
            })),
        };
        write_frame(&mut a, &msg).await.unwrap();
        drop(a);
        let got: Control = read_frame(&mut b, MAX_FRAME).await.unwrap().unwrap();
        assert_eq!(got, msg);
        assert!(
            read_frame::<Control, _>(&mut b, MAX_FRAME)
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn hostile_frames_are_errors_not_allocations() {
        // Announces 1 GiB: refused before any allocation.
        let mut prefix = Vec::new();
        prost::encoding::encode_varint(1 << 30, &mut prefix);
        let r = read_frame::<Control, _>(&mut prefix.as_slice(), MAX_FRAME).await;
        assert!(matches!(r, Err(WireError::TooLarge { .. })), "{r:?}");
        // Eleven continuation bytes.
        let r = read_frame::<Control, _>(&mut [0xffu8; 11].as_slice(), MAX_FRAME).await;
        assert!(matches!(r, Err(WireError::BadLength)), "{r:?}");
        // Garbage payload.
        let r = read_frame::<Control, _>(&mut [3u8, 0xff, 0xff, 0xff].as_slice(), MAX_FRAME).await;
        assert!(matches!(r, Err(WireError::Decode(_))), "{r:?}");
        // Truncated payload.
        let r = read_frame::<Control, _>(&mut [10u8, 1, 2].as_slice(), MAX_FRAME).await;
        assert!(matches!(r, Err(WireError::Truncated)), "{r:?}");
        // Over the pre-admission limit.
        let r = read_frame::<Control, _>(&mut [200u8, 3].as_slice(), MAX_PRE_ADMISSION_FRAME).await;
        assert!(matches!(r, Err(WireError::TooLarge { .. })), "{r:?}");
        assert!(split_hashes(&[0u8; 33]).is_err());
        assert_eq!(split_hashes(&[1u8; 64]).unwrap().len(), 2);
    }
}
