//! One swarm fetch: pieces from every peer that has them, each verified against the piece
//! map as it arrives, written into a piece file under the data dir; once all are here the
//! file is streamed into our store, which re-hashes the whole asset.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use can_proto::peer::{Request, Response, response};
use can_proto::sync_api::Asset;
use iroh::EndpointId;
use iroh::endpoint::Connection;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufReader};
use tokio::task::JoinSet;

use super::pick::{self, Source};
use super::pieces::{Bits, Cv, Layout};
use super::registry::SourcePeer as Peer;
use super::{Partial, have_msg};
use crate::context::{Cmd, Context};
use crate::plan::Hash;
use crate::progress::{Direction, Guard};
use crate::transfer::{FetchError, Fetched, classify_store_error};
use crate::wire::{MAX_FRAME, expect_frame, write_frame};

/// How often we ask the actor who is connected and who has the asset.
const REFRESH: Duration = Duration::from_millis(500);
/// Have updates to our peers at most this often (and always at the end).
const HAVE_EVERY: Duration = Duration::from_millis(250);
/// A peer whose piece failed (refused, broken off) is not asked again for this long.
const REST: Duration = Duration::from_secs(2);
const READ_BUFFER: usize = 256 * 1024;

/// How fetching one piece failed.
#[derive(Debug)]
enum PieceError {
    /// Refused, broken off or stalled: ask another peer.
    Retry(String),
    /// The peer sent bytes that are not the piece, or broke the protocol.
    Bad(String),
}

/// What every fetch of the asset shares.
struct Job {
    ctx: Arc<Context>,
    hash: Hash,
    layout: Layout,
    map: Arc<[Cv]>,
    path: PathBuf,
    progress: Guard,
    /// When the last byte of any piece arrived: the fetch is stalled only when no bytes
    /// move at all (a slow link may take longer than the idle timeout for a whole piece).
    last_byte: std::sync::Mutex<Instant>,
}

impl Job {
    fn touch(&self) {
        if let Ok(mut t) = self.last_byte.lock() {
            *t = Instant::now();
        }
    }

    fn idle_for(&self) -> Duration {
        self.last_byte
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or_default()
    }
}

/// Removes our fetch from the registry and its file, however the fetch ends, and tells
/// the peers we no longer fetch it.
struct Cleanup {
    ctx: Arc<Context>,
    hash: Hash,
    path: PathBuf,
    ended: tokio_util::sync::CancellationToken,
    /// The piece file goes (the asset is stored, or will not be). Otherwise it stays for
    /// the next attempt, which keeps the pieces that still verify.
    remove_file: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.ctx.swarm.end(&self.hash);
        self.ended.cancel();
        if self.remove_file {
            // Unix keeps the file readable for a range being served from it right now.
            let _ = std::fs::remove_file(&self.path);
        }
        let gone = can_proto::peer::Have {
            hash: self.hash.to_vec(),
            gone: true,
            ..Default::default()
        };
        let _ = self.ctx.cmd.try_send(Cmd::SwarmHave(gone));
    }
}

/// Fetches `asset` in pieces; `lead` is the peer that sent the map (for progress and
/// events). The map was verified against the hash by the caller.
pub(crate) async fn run(
    ctx: Arc<Context>,
    lead_conn: Connection,
    asset: Asset,
    layout: Layout,
    map: Vec<Cv>,
) -> Result<Fetched, FetchError> {
    let hash: Hash = asset
        .hash
        .as_slice()
        .try_into()
        .map_err(|_| FetchError::Misbehaved("malformed hash".into()))?;
    let lead = lead_conn.remote_id();
    let local = |e: std::io::Error| FetchError::Transport(format!("piece file: {e}"));
    let dir = ctx.data_dir.join(super::DIR);
    tokio::fs::create_dir_all(&dir).await.map_err(local)?;
    let path = dir.join(format!("{}.part", hex::encode(hash)));
    let map: Arc<[Cv]> = map.into();
    let partial = Arc::new(Partial {
        path: path.clone(),
        layout,
        asset: asset.clone(),
        have: std::sync::Mutex::new(Bits::new(layout.count())),
        ended: tokio_util::sync::CancellationToken::new(),
    });
    if !ctx.swarm.begin(hash, partial.clone()) {
        return Err(FetchError::Transport("already fetching it".into()));
    }
    let mut cleanup = Cleanup {
        ctx: ctx.clone(),
        hash,
        path: path.clone(),
        ended: partial.ended.clone(),
        remove_file: false,
    };
    // What an earlier attempt left is kept, piece by piece, where it still verifies.
    let kept = kept_pieces(path.clone(), layout, map.clone(), ctx.cancel.clone()).await;
    if let Ok(mut have) = partial.have.lock() {
        *have = kept.clone();
    }
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(&path)
        .await
        .map_err(local)?;
    file.set_len(layout.size).await.map_err(local)?;
    drop(file);
    let done: u64 = (0..layout.count())
        .filter(|&i| kept.get(i))
        .map(|i| layout.range(i).1)
        .sum();
    let job = Arc::new(Job {
        ctx: ctx.clone(),
        hash,
        layout,
        map,
        path: path.clone(),
        progress: ctx.transfers.start(
            Direction::Download,
            lead,
            hash,
            &asset.name,
            (done, layout.size),
        ),
        last_byte: std::sync::Mutex::new(Instant::now()),
    });
    let mut kept = kept;
    // The map proves the pieces' hashes, not the asset's size (the tree's shape is the
    // same for other sizes with as many pieces): the last piece, whose length the size
    // sets, is taken from the peer that sent the map before anything is asked of others,
    // so a false size is that peer's fault and never makes honest peers look wrong.
    let last = layout.count() - 1;
    if !kept.get(last) {
        match piece(&job, &lead_conn, last).await {
            Ok(()) => {
                kept.set(last, true);
                partial.mark(last);
            }
            Err(PieceError::Bad(reason)) => {
                cleanup.remove_file = true;
                return Err(FetchError::Misbehaved(reason));
            }
            Err(PieceError::Retry(e)) => return Err(FetchError::Transport(e)),
        }
    }
    fetch_pieces(&job, &partial, kept).await?;

    // Every piece is verified; the store re-hashes the whole as it takes it.
    let file = tokio::fs::File::open(&path).await.map_err(local)?;
    let body = tokio_util::io::ReaderStream::with_capacity(file, READ_BUFFER);
    let mut asset = asset;
    asset.origin = format!("peer:{lead}");
    asset.seq = 0;
    let (name, size) = (asset.name.clone(), asset.size);
    let result = match ctx.can.ingest(asset, 0, body).await {
        Ok(ingested) => Ok(Fetched {
            name,
            size,
            created: ingested.created,
        }),
        // Verified piece by piece, so a refusal is the store's own, or a disk fault here:
        // the next attempt keeps only the pieces that still verify.
        Err(crate::can_client::CanError::Rejected(message)) => Err(FetchError::Transport(format!(
            "the assembled asset did not verify ({message})"
        ))),
        Err(e) => Err(classify_store_error(e)),
    };
    // The pieces are worth keeping only for a retry: not once stored, refused for good,
    // deleted here, or when they take the space the store lacks.
    cleanup.remove_file = !matches!(result, Err(FetchError::Transport(_) | FetchError::Store(_)));
    result
}

/// Fetches until every piece is here, or no piece arrived for the idle timeout.
async fn fetch_pieces(
    job: &Arc<Job>,
    partial: &Arc<Partial>,
    mut ours: Bits,
) -> Result<(), FetchError> {
    let ctx = &job.ctx;
    let count = job.layout.count();
    let mut asked = Bits::new(count);
    let mut asking: HashMap<EndpointId, usize> = HashMap::new();
    let mut resting: HashMap<EndpointId, Instant> = HashMap::new();
    // Failures in a row per peer: each doubles its rest, so a peer that claims pieces and
    // never sends them stops holding the fetch up.
    let mut strikes: HashMap<EndpointId, u32> = HashMap::new();
    let mut running: HashMap<tokio::task::Id, (EndpointId, usize)> = HashMap::new();
    let mut banned: Vec<EndpointId> = Vec::new();
    let mut peers: Vec<Peer> = Vec::new();
    let mut refreshed: Option<Instant> = None;
    let mut last_have: Option<Instant> = None;
    let mut have_dirty = true;
    let mut tasks: JoinSet<Result<(), PieceError>> = JoinSet::new();
    let idle = ctx.idle_timeout;

    while !ours.all() {
        if ctx.is_paused() {
            return Err(FetchError::Transport("paused here".into()));
        }
        if refreshed.is_none_or(|t| t.elapsed() >= REFRESH) {
            peers = sources(ctx, job.hash).await;
            peers.retain(|p| !banned.contains(&p.id));
            refreshed = Some(Instant::now());
        }
        let now = Instant::now();
        resting.retain(|_, until| *until > now);
        let held = ctx.swarm.held(&job.hash);
        let view: Vec<Source<EndpointId>> = peers
            .iter()
            .filter_map(|p| {
                let theirs = held.get(&p.id);
                if !p.full && theirs.is_none() {
                    return None;
                }
                Some(Source {
                    id: p.id,
                    full: p.full,
                    have: theirs.map(|h| h.have.clone()),
                    pending: theirs.map(|h| h.pending.clone()),
                    in_flight: asking.get(&p.id).copied().unwrap_or(0),
                    ready: !resting.contains_key(&p.id),
                })
            })
            .collect();
        let mut view = view;
        let rarity = pick::rarity(count, &view);
        while let Some((s, i)) = pick::pick(
            &ours,
            &asked,
            &view,
            &rarity,
            rand::random::<u32>() as usize,
        ) {
            let Some(peer) = peers.iter().find(|p| p.id == view[s].id) else {
                break;
            };
            asked.set(i, true);
            view[s].in_flight += 1;
            *asking.entry(peer.id).or_default() += 1;
            have_dirty = true;
            let (job, conn) = (job.clone(), peer.conn.clone());
            let task = tasks.spawn(async move { piece(&job, &conn, i).await });
            running.insert(task.id(), (peer.id, i));
        }
        if have_dirty && last_have.is_none_or(|t| t.elapsed() >= HAVE_EVERY) {
            let msg = have_msg(&job.hash, &job.layout, &ours, &asked);
            let _ = ctx.cmd.try_send(Cmd::SwarmHave(msg));
            last_have = Some(Instant::now());
            have_dirty = false;
        }
        if job.idle_for() >= idle {
            return Err(FetchError::Stalled(idle));
        }
        tokio::select! {
            Some(joined) = tasks.join_next_with_id() => {
                let (task, result) = match joined {
                    Ok((task, result)) => (task, result),
                    // A piece task that panicked: its piece is asked again.
                    Err(e) => (e.id(), Err(PieceError::Retry(e.to_string()))),
                };
                let Some((id, i)) = running.remove(&task) else { continue };
                asked.set(i, false);
                if let Some(n) = asking.get_mut(&id) {
                    *n = n.saturating_sub(1);
                }
                have_dirty = true;
                match result {
                    Ok(()) => {
                        ours.set(i, true);
                        partial.mark(i);
                        strikes.remove(&id);
                    }
                    Err(PieceError::Retry(e)) => {
                        tracing::debug!(peer = %id.fmt_short(), piece = i, error = %e, "piece failed; asking another peer");
                        let n = strikes.entry(id).or_default();
                        *n = n.saturating_add(1);
                        let rest = REST.saturating_mul(1 << (*n - 1).min(5));
                        resting.insert(id, Instant::now() + crate::util::jitter(rest));
                        // What it said it holds is not to be relied on until it says again.
                        ctx.swarm.forget_have(&job.hash, &id);
                    }
                    Err(PieceError::Bad(reason)) => {
                        banned.push(id);
                        peers.retain(|p| p.id != id);
                        let _ = ctx.cmd.send(Cmd::PieceMisbehaved { id, reason }).await;
                    }
                }
            }
            _ = tokio::time::sleep(REFRESH) => {}
            _ = ctx.cancelled() => return Err(FetchError::Transport("shutting down".into())),
        }
    }
    let msg = have_msg(&job.hash, &job.layout, &ours, &asked);
    let _ = ctx.cmd.try_send(Cmd::SwarmHave(msg));
    Ok(())
}

/// The pieces of an earlier attempt's file that match the map (none if there is no file).
/// Read from disk, so checked like anything from outside.
async fn kept_pieces(
    path: PathBuf,
    layout: Layout,
    map: Arc<[Cv]>,
    cancel: tokio_util::sync::CancellationToken,
) -> Bits {
    let count = layout.count();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut kept = Bits::new(count);
        let Ok(file) = std::fs::File::open(&path) else {
            return kept;
        };
        if file.metadata().map(|m| m.len()).ok() != Some(layout.size) {
            return kept;
        }
        let mut reader = std::io::BufReader::with_capacity(READ_BUFFER, file);
        let mut buf = vec![0u8; READ_BUFFER];
        for i in 0..count {
            if cancel.is_cancelled() {
                return kept;
            }
            let (offset, len) = layout.range(i);
            let mut hasher = blake3::Hasher::new();
            blake3::hazmat::HasherExt::set_input_offset(&mut hasher, offset);
            let mut left = len;
            while left > 0 {
                let want = (left as usize).min(buf.len());
                if reader.read_exact(&mut buf[..want]).is_err() {
                    return kept;
                }
                hasher.update(&buf[..want]);
                left -= want as u64;
            }
            kept.set(
                i,
                blake3::hazmat::HasherExt::finalize_non_root(&hasher) == map[i],
            );
        }
        kept
    })
    .await
    .unwrap_or_else(|_| Bits::new(count))
}

/// The connected swarm peers, from the actor.
async fn sources(ctx: &Context, hash: Hash) -> Vec<Peer> {
    let (reply, rx) = tokio::sync::oneshot::channel();
    if ctx
        .cmd
        .send(Cmd::SwarmSources { hash, reply })
        .await
        .is_err()
    {
        return Vec::new();
    }
    rx.await.unwrap_or_default()
}

/// Fetches piece `i` from one peer into the piece file, verifying it on the way.
async fn piece(job: &Job, conn: &Connection, i: usize) -> Result<(), PieceError> {
    let ctx = &job.ctx;
    let idle = ctx.idle_timeout;
    let (offset, len) = job.layout.range(i);
    let retry = |e: &dyn std::fmt::Display| PieceError::Retry(e.to_string());
    let stalled = || PieceError::Retry("stalled".into());
    crate::flow::fit(conn);
    let (mut send, recv) = tokio::time::timeout(idle, conn.open_bi())
        .await
        .map_err(|_| stalled())?
        .map_err(|e| retry(&e))?;
    let request = Request {
        hash: job.hash.to_vec(),
        offset,
        length: len,
        pieces: false,
    };
    tokio::time::timeout(idle, write_frame(&mut send, &request))
        .await
        .map_err(|_| stalled())?
        .map_err(|e| retry(&e))?;
    send.finish().map_err(|e| retry(&e))?;
    let mut recv = BufReader::with_capacity(READ_BUFFER, recv);
    let response: Response = tokio::time::timeout(idle, expect_frame(&mut recv, MAX_FRAME))
        .await
        .map_err(|_| stalled())?
        .map_err(|e| retry(&e))?;
    match response.kind {
        Some(response::Kind::Asset(a)) if a.hash == job.hash && a.size == job.layout.size => {}
        Some(response::Kind::Asset(_)) => {
            return Err(PieceError::Bad("sent another asset than asked".into()));
        }
        Some(response::Kind::Refused(r)) => return Err(PieceError::Retry(r)),
        None => return Err(PieceError::Retry("unsupported response".into())),
    }
    if response.offset != offset {
        return Err(PieceError::Bad(format!(
            "sent from byte {} when asked from byte {offset}",
            response.offset
        )));
    }
    let lan = crate::bandwidth::is_lan_conn(conn);
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .open(&job.path)
        .await
        .map_err(|e| retry(&e))?;
    file.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(|e| retry(&e))?;
    let mut hasher = blake3::Hasher::new();
    blake3::hazmat::HasherExt::set_input_offset(&mut hasher, offset);
    let mut body = crate::wire::body_after_frame(recv).take(len);
    let mut buf = vec![0u8; READ_BUFFER];
    let mut got = 0u64;
    while got < len {
        // QUIC hands over what has arrived, often a few packets: gather a whole buffer
        // (or the piece's rest) so that hashing and the file write work in large pieces.
        let want = usize::try_from(len - got).map_or(buf.len(), |rest| rest.min(buf.len()));
        let mut n = 0;
        while n < want {
            let read = tokio::time::timeout(idle, body.read(&mut buf[n..want]))
                .await
                .map_err(|_| stalled())?
                .map_err(|e| retry(&e))?;
            if read == 0 {
                return Err(PieceError::Retry("the peer's stream broke off".into()));
            }
            job.touch();
            n += read;
        }
        ctx.shaper.take(Direction::Download, lan, n as u64).await;
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).await.map_err(|e| retry(&e))?;
        got += n as u64;
    }
    // Written through to the page cache before the piece counts as held: a peer's range
    // request reads it through another handle.
    file.flush().await.map_err(|e| retry(&e))?;
    let cv = blake3::hazmat::HasherExt::finalize_non_root(&hasher);
    if cv != job.map[i] {
        return Err(PieceError::Bad(format!(
            "piece {i} does not match the asset's piece map"
        )));
    }
    // Counted once verified: a piece that fails is fetched again and must not count twice.
    job.progress.add(len);
    Ok(())
}
