//! Length-delimited framing helpers shared by the sync API's readers and writers.
//!
//! A frame is a protobuf varint length followed by that many bytes of message. Readers
//! call [`delimited_len`] on what they have buffered so far; it never allocates and never
//! trusts the length beyond the caller's limit.

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use prost::Message;

/// Where a length-delimited message sits in `buf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSpan {
    /// Bytes taken by the varint length prefix.
    pub prefix: usize,
    /// Bytes of the message that follows it.
    pub len: usize,
}

impl FrameSpan {
    /// Total bytes of prefix plus message.
    pub fn total(&self) -> usize {
        self.prefix + self.len
    }
}

/// Parses the varint length prefix at the start of `buf`.
///
/// `Ok(None)`: more bytes are needed to know the length. `Err`: the prefix is malformed or
/// announces more than `max` bytes. `Ok(Some(span))`: the message occupies
/// `buf[span.prefix..span.total()]` once that many bytes are buffered.
pub fn delimited_len(buf: &[u8], max: usize) -> Result<Option<FrameSpan>, FrameError> {
    let mut value: u64 = 0;
    for (i, byte) in buf.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let len = usize::try_from(value).map_err(|_| FrameError::TooLarge { max })?;
            if len > max {
                return Err(FrameError::TooLarge { max });
            }
            return Ok(Some(FrameSpan { prefix: i + 1, len }));
        }
    }
    if buf.len() >= 10 {
        return Err(FrameError::BadPrefix);
    }
    Ok(None)
}

/// A length prefix that cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The varint is longer than 10 bytes.
    #[error("malformed length prefix")]
    BadPrefix,
    /// The announced length is over the limit.
    #[error("frame longer than {max} bytes")]
    TooLarge { max: usize },
}

/// Why a length-delimited head could not be read from a byte stream.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("malformed {what}: {source}")]
    Frame {
        what: &'static str,
        source: FrameError,
    },
    #[error("malformed {what}: {source}")]
    Decode {
        what: &'static str,
        source: prost::DecodeError,
    },
    #[error("malformed {what}: body ended early")]
    Truncated { what: &'static str },
    #[error("stream failed: {0}")]
    Stream(String),
}

/// Reads one length-delimited message `M` from the front of a byte stream; returns it and
/// the bytes that followed it in the last chunk read (the start of the content).
pub async fn read_head<M, S, E>(
    stream: &mut S,
    max: usize,
    what: &'static str,
) -> Result<(M, Bytes), HeadError>
where
    M: Message + Default,
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut buf = BytesMut::new();
    loop {
        let span = delimited_len(&buf, max).map_err(|source| HeadError::Frame { what, source })?;
        if let Some(span) = span
            && buf.len() >= span.total()
        {
            let head = buf.split_to(span.total());
            let msg = M::decode(&head[span.prefix..])
                .map_err(|source| HeadError::Decode { what, source })?;
            return Ok((msg, buf.freeze()));
        }
        match stream.next().await {
            Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
            Some(Err(e)) => return Err(HeadError::Stream(e.to_string())),
            None => return Err(HeadError::Truncated { what }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn roundtrip_and_partial() {
        let msg = crate::sync_api::IngestEvent {
            hash: vec![7; 32],
            seq: 300,
            origin: "local".into(),
            size: 1,
            ..Default::default()
        };
        let buf = msg.encode_length_delimited_to_vec();
        for cut in 0..buf.len() {
            match delimited_len(&buf[..cut], 1024).unwrap() {
                None => assert_eq!(cut, 0),
                Some(span) => assert_eq!(span.total(), buf.len()),
            }
        }
        let span = delimited_len(&buf, 1024).unwrap().unwrap();
        let back = crate::sync_api::IngestEvent::decode(&buf[span.prefix..span.total()]).unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn rejects_oversized_and_garbage() {
        let big = prost::encoding::encode_varint;
        let mut buf = Vec::new();
        big(1 << 20, &mut buf);
        assert_eq!(
            delimited_len(&buf, 1024),
            Err(FrameError::TooLarge { max: 1024 })
        );
        assert_eq!(delimited_len(&[0xff; 10], 1024), Err(FrameError::BadPrefix));
        assert_eq!(delimited_len(&[0xff; 3], 1024), Ok(None));
    }
}

#[cfg(test)]
mod head_tests {
    use super::*;

    #[tokio::test]
    async fn head_split_across_chunks() {
        let msg = crate::sync_api::Asset {
            name: "x".repeat(300),
            ..Default::default()
        };
        let mut body = msg.encode_length_delimited_to_vec();
        body.extend_from_slice(b"content");
        let chunks: Vec<Result<Bytes, std::io::Error>> = body
            .chunks(7)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let mut stream = futures_util::stream::iter(chunks);
        let (got, rest): (crate::sync_api::Asset, Bytes) =
            read_head(&mut stream, 1024, "Asset").await.unwrap();
        assert_eq!(got, msg);
        let mut content = rest.to_vec();
        while let Some(c) = stream.next().await {
            content.extend_from_slice(&c.unwrap());
        }
        assert_eq!(content, b"content");
        let mut short =
            futures_util::stream::iter(vec![Ok::<_, std::io::Error>(Bytes::from_static(&[5, 1]))]);
        let e = read_head::<crate::sync_api::Asset, _, _>(&mut short, 1024, "Asset")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("ended early"), "{e}");
    }
}
