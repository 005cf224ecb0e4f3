//! One large asset from one peer over several QUIC streams at once, into the built-in
//! store in parts (docs/protocol.md, "Split transfers").
//!
//! One stream may have only `flow::STREAM_WINDOW` in flight, so a single stream is capped
//! at that window per round trip, and the round trip stretches whenever the machine is
//! busy. The asset's first stream (the ordinary request, which the peer answers with the
//! whole asset in order) writes parts from the front; [`RANGE_STREAMS`] more streams ask
//! for single parts (swarm-v1 range requests) from the back. Where they meet, the first
//! stream is stopped with [`super::close::TAKEN_AS_RANGES`]. Parts are the swarm layout's
//! pieces, whole BLAKE3 subtrees: the store hashes each as it writes it and stores the
//! asset only if their hashes merge to its name (`can_service::store::PartsUpload`).
//!
//! A stream that fails gives its part back; a part nobody finished is asked once more on
//! a new stream, and if that fails too, the fetch fails and the store keeps the whole parts
//! from byte 0 as its partial: the next attempt resumes from there on one stream.

use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use can_proto::peer::{Request, Response, response};
use can_proto::sync_api::Asset;
use iroh::endpoint::{Connection, RecvStream, VarInt};
use tokio::io::{AsyncRead, AsyncReadExt, BufReader};

// Bytes are read in the store's chunk size, which its writer takes without a copy.
use can_service::content::CHUNK;

use super::close;
use super::fetch::Flow;
use crate::builtin_store::{BuiltinStore, PartWriter, PartsUpload, part_error};
use crate::context::Context;
use crate::transfer::{FetchError, Fetched, classify_store_error};
use crate::wire::{MAX_FRAME, WireError, body_after_frame, expect_frame, write_frame};

/// Streams besides the first: each is one more `flow::STREAM_WINDOW` in flight.
pub(crate) const RANGE_STREAMS: usize = 2;

/// Who writes which part: pure. The first stream takes parts in order from the front,
/// range streams from the back, so each stream's parts are contiguous and they meet once.
#[derive(Debug)]
pub(crate) struct Claims {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Free,
    Taken,
    Done,
}

impl Claims {
    pub(crate) fn new(count: usize) -> Self {
        Self {
            parts: vec![Part::Free; count],
        }
    }

    /// The first stream goes on with part `i` (the next in its order), unless another
    /// stream has it.
    pub(crate) fn take_front(&mut self, i: usize) -> bool {
        let free = self.parts.get(i) == Some(&Part::Free);
        if free {
            self.parts[i] = Part::Taken;
        }
        free
    }

    /// A range stream's next part: the last free one.
    pub(crate) fn take_back(&mut self) -> Option<usize> {
        let i = self.parts.iter().rposition(|p| *p == Part::Free)?;
        self.parts[i] = Part::Taken;
        Some(i)
    }

    pub(crate) fn done(&mut self, i: usize) {
        self.parts[i] = Part::Done;
    }

    /// A stream failed on part `i`: another may take it.
    pub(crate) fn release(&mut self, i: usize) {
        if self.parts[i] == Part::Taken {
            self.parts[i] = Part::Free;
        }
    }

    pub(crate) fn all_done(&self) -> bool {
        self.parts.iter().all(|p| *p == Part::Done)
    }
}

/// What the parts' streams share.
struct Job {
    ctx: Arc<Context>,
    conn: Connection,
    hash: [u8; 32],
    size: u64,
    upload: PartsUpload,
    claims: Mutex<Claims>,
    flow: Flow,
}

impl Job {
    fn claims(&self) -> std::sync::MutexGuard<'_, Claims> {
        self.claims.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Fetches `asset` into `upload`, the first stream's body being `first` (from byte 0).
pub(super) async fn fetch(
    ctx: Arc<Context>,
    conn: Connection,
    asset: Asset,
    first: First,
    upload: PartsUpload,
    flow: Flow,
) -> Result<Fetched, FetchError> {
    let hash: [u8; 32] = asset
        .hash
        .as_slice()
        .try_into()
        .map_err(|_| FetchError::Misbehaved("malformed hash".into()))?;
    let (name, size) = (asset.name.clone(), asset.size);
    let count = upload.count();
    let job = Job {
        ctx,
        conn,
        hash,
        size,
        upload,
        claims: Mutex::new(Claims::new(count)),
        flow,
    };
    let others = futures_util::future::join_all((0..RANGE_STREAMS).map(|_| ranges(&job)));
    let (front, others) = tokio::join!(front(&job, first), others);
    // A refusal or a broken stream left parts undone: one more stream for them, and
    // nothing more (the store keeps what is whole from byte 0 for the next attempt).
    let mut failure = None;
    for result in std::iter::once(front).chain(others) {
        match result {
            Err(e @ FetchError::Misbehaved(_)) => return Err(e),
            Err(e) => failure = failure.or(Some(e)),
            Ok(()) => {}
        }
    }
    if !job.claims().all_done() {
        if let Some(e) = &failure {
            tracing::debug!(error = %e, "a stream of a split transfer failed; asking its parts again");
        }
        ranges(&job).await?;
    }
    if !job.claims().all_done() {
        return Err(failure.unwrap_or_else(|| FetchError::Transport("parts are missing".into())));
    }
    let ingested = BuiltinStore::finish_parts(job.upload)
        .await
        .map_err(classify_store_error)?;
    Ok(Fetched {
        name,
        size,
        created: ingested.created,
    })
}

/// The first stream's body after the response.
pub(super) type First = crate::wire::Body<RecvStream>;

/// The first stream: parts in order from byte 0 until it meets a part another stream has.
async fn front(job: &Job, mut body: First) -> Result<(), FetchError> {
    let mut i = 0;
    while job.claims().take_front(i) {
        if let Err(e) = copy_part(job, &mut body, i).await {
            job.claims().release(i);
            return Err(e);
        }
        job.claims().done(i);
        i += 1;
    }
    tracing::debug!(
        parts = i,
        of = job.upload.count(),
        "split transfer: the first stream is done"
    );
    if i < job.upload.count() {
        // The sender counts the asset as sent (docs/protocol.md).
        let _ = body
            .get_mut()
            .1
            .stop(VarInt::from_u32(close::TAKEN_AS_RANGES));
    }
    Ok(())
}

/// One range stream after another, each for the last free part, until none is free or one
/// fails.
async fn ranges(job: &Job) -> Result<(), FetchError> {
    loop {
        let Some(i) = job.claims().take_back() else {
            return Ok(());
        };
        match range(job, i).await {
            Ok(()) => job.claims().done(i),
            Err(e) => {
                job.claims().release(i);
                return Err(e);
            }
        }
    }
}

/// Part `i` on a stream of its own (a swarm-v1 range request).
async fn range(job: &Job, i: usize) -> Result<(), FetchError> {
    let idle = job.ctx.idle_timeout;
    let (offset, length) = job.upload.range(i);
    let transport = |e: &dyn std::fmt::Display| FetchError::Transport(e.to_string());
    let (mut send, recv) = tokio::time::timeout(idle, job.conn.open_bi())
        .await
        .map_err(|_| FetchError::Stalled(idle))?
        .map_err(|e| transport(&e))?;
    let request = Request {
        hash: job.hash.to_vec(),
        offset,
        length,
        pieces: false,
    };
    tokio::time::timeout(idle, write_frame(&mut send, &request))
        .await
        .map_err(|_| FetchError::Stalled(idle))?
        .map_err(|e| transport(&e))?;
    send.finish().map_err(|e| transport(&e))?;
    let mut recv = BufReader::with_capacity(CHUNK, recv);
    let response: Response = tokio::time::timeout(idle, expect_frame(&mut recv, MAX_FRAME))
        .await
        .map_err(|_| FetchError::Stalled(idle))?
        .map_err(|e| match e {
            WireError::Io(_) | WireError::Truncated => transport(&e),
            other => FetchError::Misbehaved(other.to_string()),
        })?;
    match response.kind {
        Some(response::Kind::Asset(a)) if a.hash == job.hash && a.size == job.size => {}
        Some(response::Kind::Asset(_)) => {
            return Err(FetchError::Misbehaved(
                "sent another asset than asked".into(),
            ));
        }
        Some(response::Kind::Refused(reason)) => return Err(FetchError::Refused(reason)),
        None => return Err(FetchError::Refused("unsupported response".into())),
    }
    if response.offset != offset {
        return Err(FetchError::Misbehaved(format!(
            "sent from byte {} when asked from byte {offset}",
            response.offset
        )));
    }
    copy_part(job, &mut body_after_frame(recv), i).await
}

/// Part `i`'s bytes from `body` into the store, in chunks of [`CHUNK`].
async fn copy_part<R>(job: &Job, body: &mut R, i: usize) -> Result<(), FetchError>
where
    R: AsyncRead + Unpin,
{
    let idle = job.ctx.idle_timeout;
    let (_, len) = job.upload.range(i);
    let store = |e| classify_store_error(part_error(e));
    let mut part: PartWriter = job.upload.part(i).map_err(store)?;
    let mut got = 0u64;
    while got < len {
        let want = (len - got).min(CHUNK as u64);
        let mut chunk = BytesMut::with_capacity(want as usize);
        let mut limited = (&mut *body).take(want);
        while (chunk.len() as u64) < want {
            let read = tokio::time::timeout(idle, limited.read_buf(&mut chunk))
                .await
                .map_err(|_| FetchError::Stalled(idle))?
                .map_err(|e| FetchError::Transport(e.to_string()))?;
            if read == 0 {
                return Err(FetchError::Transport("the peer's stream broke off".into()));
            }
        }
        got += want;
        job.flow.pass(want).await;
        part.write(chunk.freeze()).await.map_err(store)?;
    }
    part.finish().await.map_err(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_stream_and_the_range_streams_meet_once() {
        let mut c = Claims::new(5);
        assert!(c.take_front(0));
        assert_eq!(c.take_back(), Some(4));
        assert_eq!(c.take_back(), Some(3));
        c.done(0);
        assert!(c.take_front(1));
        c.done(1);
        assert!(c.take_front(2));
        // The range streams find nothing free; the first stream stops at part 3.
        assert_eq!(c.take_back(), None);
        c.done(2);
        assert!(!c.take_front(3));
        c.done(3);
        assert!(!c.all_done());
        c.done(4);
        assert!(c.all_done());
        assert!(!c.take_front(5), "past the last part");
    }

    #[test]
    fn a_failed_part_is_taken_again() {
        let mut c = Claims::new(3);
        assert!(c.take_front(0));
        assert_eq!(c.take_back(), Some(2));
        c.release(2);
        c.done(0);
        assert!(c.take_front(1));
        c.done(1);
        assert!(
            c.take_front(2),
            "given back, so the first stream goes on with it"
        );
        c.release(2);
        assert_eq!(c.take_back(), Some(2));
        c.done(2);
        // Releasing a finished part does not undo it.
        c.release(2);
        assert!(c.all_done());
    }
}
