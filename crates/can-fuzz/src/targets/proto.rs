//! `can_proto::frame`: the length-delimited head of sync API bodies (`IngestRequest`,
//! `Asset`), as the service reads it from an HTTP body arriving in arbitrary chunks.

use arbitrary::Unstructured;
use bytes::Bytes;
use can_proto::MAX_META_FRAME;
use can_proto::frame::{FrameError, HeadError, delimited_len, read_head};
use can_proto::sync_api::{Asset, IngestRequest};
use futures_util::{FutureExt, StreamExt};
use prost::Message;

use super::{some_bytes, structured};

/// Splits `body` into the chunks an HTTP body might arrive in.
fn chunks(u: &mut Unstructured<'_>, body: &[u8]) -> arbitrary::Result<Vec<Bytes>> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let n = u.int_in_range(1..=rest.len())?;
        out.push(Bytes::copy_from_slice(&rest[..n]));
        rest = &rest[n..];
    }
    if u.ratio(1, 8)? {
        out.insert(0, Bytes::new()); // empty chunks happen too
    }
    Ok(out)
}

/// Reads one head of type `M` from `body` split into chunks; checks it agrees with
/// `delimited_len` on the whole body, and that head plus rest is exactly the body.
fn check<M: Message + Default + PartialEq + std::fmt::Debug>(
    u: &mut Unstructured<'_>,
    body: &[u8],
    max: usize,
) -> arbitrary::Result<()> {
    let parts = chunks(u, body)?;
    let mut stream = futures_util::stream::iter(parts.into_iter().map(Ok::<_, String>));
    let read = read_head::<M, _, _>(&mut stream, max, "head")
        .now_or_never()
        .expect("an in-memory stream never waits");
    let whole = delimited_len(body, max);
    match read {
        Ok((msg, rest)) => {
            let span = whole.expect("head read though the prefix is bad");
            let span = span.expect("head read without a full prefix");
            assert!(span.len <= max);
            assert_eq!(
                Ok(&msg),
                M::decode(&body[span.prefix..span.total()]).as_ref()
            );
            let mut after = rest.to_vec();
            while let Some(Ok(c)) = stream.next().now_or_never().flatten() {
                after.extend_from_slice(&c);
            }
            assert_eq!(
                after,
                &body[span.total()..],
                "content bytes lost or invented"
            );
        }
        Err(HeadError::Frame { source, .. }) => {
            assert_eq!(whole.err(), Some(source), "prefix judged differently");
        }
        Err(HeadError::Truncated { .. }) => match whole {
            Ok(None) => {}
            Ok(Some(span)) => assert!(body.len() < span.total(), "complete head called short"),
            Err(e) => panic!("bad prefix {e} reported as truncated"),
        },
        Err(HeadError::Decode { .. }) => {
            let span = whole
                .ok()
                .flatten()
                .expect("decoded without a complete frame");
            assert!(M::decode(&body[span.prefix..span.total()]).is_err());
        }
        Err(HeadError::Stream(e)) => panic!("the stream did not fail: {e}"),
    }
    Ok(())
}

/// `delimited_len` on raw bytes against its contract, and `read_head` of the sync API's
/// `IngestRequest` and `Asset` heads over arbitrary chunkings.
pub fn frames(data: &[u8]) {
    structured(data, |u| {
        let max = *u.choose(&[MAX_META_FRAME, 0, 1, 127, 128, 300])?;
        let valid_head = u.ratio(1, 2)?;
        let body: Vec<u8> = if valid_head {
            // A well-formed head of arbitrary content, then whatever follows.
            let asset: Asset = Asset {
                hash: some_bytes(u, 40)?.to_vec(),
                size: u.arbitrary()?,
                name: u.arbitrary()?,
                content_type: u.arbitrary()?,
                created_at: u.arbitrary()?,
                origin: u.arbitrary()?,
                seq: u.arbitrary()?,
                stamp: u.arbitrary()?,
                deleted: u.arbitrary()?,
            };
            let mut b = IngestRequest {
                asset: Some(asset),
                offset: 0,
            }
            .encode_length_delimited_to_vec();
            b.extend_from_slice(some_bytes(u, 64)?);
            b
        } else {
            {
                let max = u.len();
                some_bytes(u, max)?.to_vec()
            }
        };
        match delimited_len(&body, max) {
            Ok(Some(span)) => assert!(span.len <= max && span.prefix <= 10),
            Ok(None) => assert!(body.len() < 10, "no verdict on 10 bytes"),
            Err(FrameError::BadPrefix) => assert!(body.len() >= 10),
            Err(FrameError::TooLarge { .. }) => {}
        }
        if u.arbitrary()? {
            check::<IngestRequest>(u, &body, max)
        } else {
            check::<Asset>(u, &body, max)
        }
    })
}
