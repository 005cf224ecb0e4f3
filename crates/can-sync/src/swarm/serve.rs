//! Answering swarm requests: the piece map of an asset in our store, and ranges, from our
//! store or from a fetch of ours in progress.

use bytes::Bytes;
use can_proto::peer::{Response, response};
use can_proto::sync_api::Asset;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::pieces::{Layout, encode_map};
use crate::can_client::CanError;
use crate::context::Context;
use crate::plan::Hash;

/// Content to send, as the store gives it.
pub(crate) type Content = BoxStream<'static, Result<Bytes, CanError>>;

/// A range of a fetch of ours in progress, if it holds every piece of it:
/// `(asset, content)` like the store's answer.
pub(crate) async fn from_partial(
    ctx: &Context,
    hash: &Hash,
    offset: u64,
    len: u64,
) -> Option<(Asset, Content)> {
    let partial = ctx.swarm.partial(hash)?;
    let pieces = partial.layout.pieces_of(offset, len)?;
    if !partial.holds(pieces) {
        return None;
    }
    let mut file = tokio::fs::File::open(&partial.path).await.ok()?;
    file.seek(std::io::SeekFrom::Start(offset)).await.ok()?;
    let content = tokio_util::io::ReaderStream::with_capacity(file.take(len), 256 * 1024)
        .map(|r| r.map_err(|e| CanError::Protocol(format!("piece file: {e}"))));
    Some((partial.asset.clone(), content.boxed()))
}

/// At most `len` bytes of `content` (0: all of it).
pub(crate) fn limit(content: Content, len: u64) -> Content {
    if len == 0 {
        return content;
    }
    futures_util::stream::unfold((content, len), |(mut content, left)| async move {
        if left == 0 {
            return None;
        }
        match content.next().await? {
            Ok(mut chunk) => {
                if chunk.len() as u64 > left {
                    chunk.truncate(left as usize);
                }
                let left = left - chunk.len() as u64;
                Some((Ok(chunk), (content, left)))
            }
            Err(e) => Some((Err(e), (content, 0))),
        }
    })
    .boxed()
}

/// The answer to a piece-map request for an asset large enough to be fetched in pieces:
/// the map, computed from `content` (the whole asset) unless kept.
pub(crate) async fn map_response(
    ctx: &Context,
    hash: Hash,
    layout: Layout,
    asset: Asset,
    content: Content,
) -> Result<Response, String> {
    let map = ctx.swarm.map_of(hash, layout, content).await?;
    Ok(Response {
        kind: Some(response::Kind::Asset(asset)),
        offset: 0,
        pieces: encode_map(&map),
        piece_len: layout.piece_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_range_ends_exactly_at_its_length() {
        let chunks: Vec<Result<Bytes, CanError>> = vec![
            Ok(Bytes::from_static(b"abcd")),
            Ok(Bytes::from_static(b"efgh")),
            Ok(Bytes::from_static(b"ijkl")),
        ];
        let content: Content = futures_util::stream::iter(chunks).boxed();
        let got: Vec<Bytes> = limit(content, 6)
            .map(|c| c.unwrap())
            .collect::<Vec<_>>()
            .await;
        assert_eq!(got.concat(), b"abcdef");
        let again: Content =
            futures_util::stream::iter(vec![Ok(Bytes::from_static(b"xy"))]).boxed();
        let all: Vec<Bytes> = limit(again, 0).map(|c| c.unwrap()).collect().await;
        assert_eq!(all.concat(), b"xy");
    }
}
