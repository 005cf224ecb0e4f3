//! The control stream of one admitted connection, in three tasks joined by bounded queues:
//!
//! - the reader decodes frames and hands them over one at a time (when the handler is
//!   busy, it stops reading and QUIC's flow control holds the peer back);
//! - the handler owns this connection's reconciliation state and budget, answers the
//!   peer, and reports what it learns to the actor (every message to the actor carries at
//!   most one frame's worth of hashes);
//! - the writer sends what the handler queued. A full hash list is queued as one shared,
//!   immutable snapshot and paginated as it is written, so asking for it costs O(1) memory.
//!
//! Work that costs O(N) in our store's size (our full list, a reconciliation the peer starts
//! from the top) is taken from a [`Budget`]; a peer over budget is disconnected and refused
//! for a while. A peer that does not read what we send is cut off after [`WRITE_STALL`],
//! never buffered without bound. None of this runs on the actor, which stays responsive.

use std::sync::Arc;
use std::time::{Duration, Instant};

use can_proto::peer::{Announce, Control, HashList, Reconcile, Records, control};
use iroh::EndpointId;
use iroh::endpoint::{RecvStream, SendStream};
use tokio::io::BufReader;
use tokio::sync::{mpsc, oneshot};

use super::SessionError;
use crate::context::{Cmd, Context, PeerCmd};
use crate::limits::Budget;
use crate::plan::Hash;
use crate::reconcile::Reconciliations;
use crate::tombs::{self, TombSnapshot};

mod records;
use crate::wire::{
    HASHES_PER_FRAME, MAX_FRAME, join_hashes, read_frame, split_hashes, write_frame,
};

/// Items the handler may queue for the writer.
const OUTBOX: usize = 16;
/// A peer that accepts none of our queued frames for this long is cut off.
pub(crate) const WRITE_STALL: Duration = Duration::from_secs(20);

/// Who this connection is, for the actor.
pub(super) struct Link {
    pub ctx: Arc<Context>,
    pub id: EndpointId,
    pub conn_id: usize,
    pub rbsr: bool,
    /// Both offered "riblt-v2" (and "rbsr-v1"): asset hashes are reconciled with RIBLT.
    pub riblt: bool,
    /// Both offered "tombstones-v1": `Records`, and tombstone reconciliation with RBSR.
    pub tombs: bool,
}

/// What the writer sends.
enum Outgoing {
    Frame(Control),
    /// Our full hash list, paginated while it is written.
    List {
        items: Arc<[Hash]>,
        round: u64,
        reply_wanted: bool,
    },
}

pub(super) async fn run(
    link: Link,
    send: SendStream,
    recv: BufReader<RecvStream>,
    cmds: mpsc::Receiver<PeerCmd>,
) -> Result<String, SessionError> {
    let (out_tx, out_rx) = mpsc::channel(OUTBOX);
    let (in_tx, in_rx) = mpsc::channel(1);
    let handler = Handler {
        recon: Reconciliations::default().with_riblt(link.riblt),
        recon_tombs: Reconciliations::for_set(tombs::SET),
        budget: Budget::for_peer(Instant::now()),
        tomb_budget: Budget::for_peer(Instant::now()),
        tomb_snapshot: None,
        round: 0,
        list_bytes_sent: 0,
        out: out_tx,
        link,
    };
    tokio::select! {
        r = write_loop(send, out_rx) => r,
        r = read_loop(recv, in_tx) => r,
        r = handler.run(in_rx, cmds) => r,
    }
}

async fn read_loop(
    mut recv: BufReader<RecvStream>,
    frames: mpsc::Sender<Control>,
) -> Result<String, SessionError> {
    loop {
        match read_frame::<Control, _>(&mut recv, MAX_FRAME).await? {
            Some(msg) => {
                if frames.send(msg).await.is_err() {
                    return Ok("control handler ended".into());
                }
            }
            None => return Ok("peer closed the control stream".into()),
        }
    }
}

async fn write_loop(
    mut send: SendStream,
    mut out: mpsc::Receiver<Outgoing>,
) -> Result<String, SessionError> {
    while let Some(item) = out.recv().await {
        match item {
            Outgoing::Frame(msg) => write_frame(&mut send, &msg).await?,
            Outgoing::List {
                items,
                round,
                reply_wanted,
            } => {
                let pages = pages(items.len());
                for (i, range) in pages.iter().enumerate() {
                    let msg = hash_list(
                        round,
                        &items[range.clone()],
                        i + 1 == pages.len(),
                        reply_wanted,
                    );
                    write_frame(&mut send, &msg).await?;
                }
            }
        }
    }
    Ok("engine closed the control stream".into())
}

/// Index ranges of the pages of a list of `n` hashes (one empty page for an empty list).
fn pages(n: usize) -> Vec<std::ops::Range<usize>> {
    if n == 0 {
        // One empty page: the list still needs its `last` frame.
        #[allow(clippy::single_range_in_vec_init)]
        return vec![0..0];
    }
    (0..n)
        .step_by(HASHES_PER_FRAME)
        .map(|start| start..(start + HASHES_PER_FRAME).min(n))
        .collect()
}

fn hash_list(round: u64, page: &[Hash], last: bool, reply_wanted: bool) -> Control {
    Control {
        kind: Some(control::Kind::HashList(HashList {
            round,
            hashes: join_hashes(page.iter()),
            last,
            reply_wanted,
        })),
    }
}

/// Bytes a list of `n` hashes takes on the control stream (length prefixes included).
fn list_wire_len(n: usize, round: u64, reply_wanted: bool) -> u64 {
    use prost::Message;
    let pages = pages(n);
    let count = pages.len();
    pages
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            // The page without its hashes, plus the hashes field as prost writes it (none
            // when empty): measured without building a 512 KiB buffer per page.
            let bare = HashList {
                round,
                hashes: Vec::new(),
                last: i + 1 == count,
                reply_wanted,
            };
            let bytes = r.len() * 32;
            let hashes = if bytes == 0 {
                0
            } else {
                1 + prost::encoding::encoded_len_varint(bytes as u64) + bytes
            };
            control_frame_len(bare.encoded_len() + hashes)
        })
        .sum()
}

/// Bytes a hash-list page takes on the control stream (length prefix included).
pub(crate) fn hash_list_wire_len(list: &HashList) -> u64 {
    use prost::Message;
    control_frame_len(list.encoded_len())
}

/// A `Control{hash_list}` frame around a HashList of `inner` bytes: one key byte, the
/// message's length, the message; then the frame's own length prefix.
fn control_frame_len(inner: usize) -> u64 {
    let control = 1 + prost::encoding::encoded_len_varint(inner as u64) + inner;
    (control + prost::encoding::encoded_len_varint(control as u64)) as u64
}

struct Handler {
    link: Link,
    recon: Reconciliations,
    /// Tombstone sessions (`Reconcile.set = 1`), with a budget of their own.
    recon_tombs: Reconciliations,
    budget: Budget,
    tomb_budget: Budget,
    /// The tombstones the running tombstone sessions work on (to send the records the peer
    /// lacks).
    tomb_snapshot: Option<Arc<TombSnapshot>>,
    /// Number of our last full list.
    round: u64,
    list_bytes_sent: u64,
    out: mpsc::Sender<Outgoing>,
}

impl Handler {
    async fn run(
        mut self,
        mut frames: mpsc::Receiver<Control>,
        mut cmds: mpsc::Receiver<PeerCmd>,
    ) -> Result<String, SessionError> {
        loop {
            tokio::select! {
                msg = frames.recv() => match msg {
                    Some(msg) => self.on_frame(msg).await?,
                    None => return Ok("control stream ended".into()),
                },
                cmd = cmds.recv() => match cmd {
                    Some(cmd) => self.on_cmd(cmd).await?,
                    None => return Ok("engine dropped the connection".into()),
                },
            }
        }
    }

    async fn report(&self, cmd: Cmd) -> Result<(), SessionError> {
        self.link
            .ctx
            .cmd
            .send(cmd)
            .await
            .map_err(|_| SessionError::Engine)
    }

    /// Queues for the writer; a peer that reads nothing for [`WRITE_STALL`] is cut off.
    async fn send(&self, item: Outgoing) -> Result<(), SessionError> {
        match tokio::time::timeout(WRITE_STALL, self.out.send(item)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(SessionError::Engine),
            Err(_) => Err(SessionError::NotReading),
        }
    }

    /// One unit of O(N) work, or the peer is over its budget.
    fn charge(&mut self) -> Result<(), SessionError> {
        if self.budget.take(Instant::now()) {
            Ok(())
        } else {
            Err(SessionError::OverBudget)
        }
    }

    /// Our tombstones, sorted by id, from the actor.
    async fn tomb_snapshot(&self) -> Result<Arc<TombSnapshot>, SessionError> {
        let (tx, rx) = oneshot::channel();
        self.report(Cmd::TombSnapshot(tx)).await?;
        rx.await.map_err(|_| SessionError::Engine)
    }

    /// Our sorted hashes, from the actor (which caches them until our set changes).
    async fn snapshot(&self) -> Result<Arc<[Hash]>, SessionError> {
        let (tx, rx) = oneshot::channel();
        self.report(Cmd::Snapshot(tx)).await?;
        rx.await.map_err(|_| SessionError::Engine)
    }

    async fn on_cmd(&mut self, cmd: PeerCmd) -> Result<(), SessionError> {
        match cmd {
            PeerCmd::Announce(hash) => {
                self.send(Outgoing::Frame(Control {
                    kind: Some(control::Kind::Announce(Announce {
                        hashes: hash.to_vec(),
                    })),
                }))
                .await
            }
            PeerCmd::Have(have) => {
                self.send(Outgoing::Frame(Control {
                    kind: Some(control::Kind::Have(have)),
                }))
                .await
            }
            PeerCmd::Reconcile => {
                tracing::debug!("starting a reconciliation");
                let items = self.snapshot().await?;
                for msg in self.off_workers(move |r| r.start(items)).await? {
                    self.send(reconcile_frame(msg)).await?;
                }
                if self.link.tombs {
                    let snap = self.tomb_snapshot().await?;
                    let frames = self.recon_tombs.start(snap.ids.clone());
                    self.tomb_snapshot = Some(snap);
                    for msg in frames {
                        self.send(reconcile_frame(msg)).await?;
                    }
                }
                Ok(())
            }
            PeerCmd::Records(records) => {
                self.send(Outgoing::Frame(Control {
                    kind: Some(control::Kind::Records(Records { records })),
                }))
                .await
            }
            PeerCmd::SendList { reply_wanted } => self.send_list(reply_wanted).await,
        }
    }

    async fn send_list(&mut self, reply_wanted: bool) -> Result<(), SessionError> {
        let items = self.snapshot().await?;
        self.round += 1;
        self.list_bytes_sent = list_wire_len(items.len(), self.round, reply_wanted);
        self.send(Outgoing::List {
            items,
            round: self.round,
            reply_wanted,
        })
        .await
    }

    async fn on_frame(&mut self, msg: Control) -> Result<(), SessionError> {
        let Link { id, conn_id, .. } = self.link;
        match msg.kind {
            Some(control::Kind::HashList(list)) => {
                let hashes = split_hashes(&list.hashes)?;
                let bytes = hash_list_wire_len(&list);
                self.report(Cmd::ListPage {
                    id,
                    conn_id,
                    round: list.round,
                    last: list.last,
                    bytes,
                    bytes_sent: self.list_bytes_sent,
                    hashes,
                })
                .await?;
                if list.reply_wanted && list.last {
                    self.charge()?;
                    self.send_list(false).await?;
                }
                Ok(())
            }
            Some(control::Kind::Announce(a)) => {
                let hashes = split_hashes(&a.hashes)?;
                self.report(Cmd::PeerHas {
                    id,
                    conn_id,
                    hashes,
                })
                .await
            }
            Some(control::Kind::Reconcile(r)) if r.set == tombs::SET => {
                self.on_tomb_reconcile(r).await
            }
            Some(control::Kind::Reconcile(r)) if r.set == 0 => self.on_reconcile(r).await,
            Some(control::Kind::Reconcile(_)) => Err(SessionError::Protocol(
                "reconcile message for an unknown set".into(),
            )),
            Some(control::Kind::Records(r)) => self.on_records(r).await,
            Some(control::Kind::Have(have)) => self
                .link
                .ctx
                .swarm
                .peer_have(id, &have)
                .map_err(|e| SessionError::Protocol(e.into())),
            // A second Hello, or a message kind from a newer version: nothing to do.
            Some(control::Kind::Hello(_)) | None => Ok(()),
        }
    }

    /// Runs `f` on the asset-hash reconciliations on the blocking pool: at a million ids a
    /// RIBLT turn keys every id (tens of ms), and where the sets differ maps them too
    /// (≈ 0.1 s), which would otherwise stall this async worker's other connections.
    async fn off_workers<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Reconciliations) -> T + Send + 'static,
    ) -> Result<T, SessionError> {
        let mut recon = std::mem::take(&mut self.recon);
        let (recon, out) = tokio::task::spawn_blocking(move || {
            let out = f(&mut recon);
            (recon, out)
        })
        .await
        .map_err(|e| match e.try_into_panic() {
            // A bug of ours, not the peer's: surface it as it would have inline.
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(_) => SessionError::Engine,
        })?;
        self.recon = recon;
        Ok(out)
    }

    /// One RBSR frame: answer it and report what we lack. What the peer lacks it learns
    /// from our answers and fetches itself (pull), so nothing needs announcing.
    async fn on_reconcile(&mut self, msg: Reconcile) -> Result<(), SessionError> {
        if !self.link.rbsr {
            return Err(SessionError::Protocol(
                "reconcile message without rbsr-v1 negotiated".into(),
            ));
        }
        let items = if self.recon.starts_session(&msg) {
            tracing::debug!("the peer starts a reconciliation");
            self.charge()?;
            Some(self.snapshot().await?)
        } else {
            None
        };
        let progress = self
            .off_workers(move |r| {
                r.receive(&msg, || items.unwrap_or_else(|| Arc::from(Vec::new())))
            })
            .await?
            .map_err(|e| SessionError::Protocol(e.to_string()))?;
        for out in progress.out {
            self.send(reconcile_frame(out)).await?;
        }
        let Link { id, conn_id, .. } = self.link;
        for hashes in progress.need.chunks(HASHES_PER_FRAME) {
            self.report(Cmd::PeerHas {
                id,
                conn_id,
                hashes: hashes.to_vec(),
            })
            .await?;
        }
        if let Some(summary) = progress.finished {
            self.report(Cmd::Reconciled {
                id,
                conn_id,
                summary,
            })
            .await?;
        }
        Ok(())
    }
}

fn reconcile_frame(msg: Reconcile) -> Outgoing {
    Outgoing::Frame(Control {
        kind: Some(control::Kind::Reconcile(msg)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_paged_and_sized_like_the_frames_written() {
        assert_eq!(pages(0), vec![0..0]);
        assert_eq!(pages(5), vec![0..5]);
        let p = pages(2 * HASHES_PER_FRAME + 1);
        assert_eq!(p.len(), 3);
        assert_eq!(p[2], 2 * HASHES_PER_FRAME..2 * HASHES_PER_FRAME + 1);
        let items: Vec<Hash> = (0..HASHES_PER_FRAME + 3).map(|i| [i as u8; 32]).collect();
        let written: u64 = pages(items.len())
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let Some(control::Kind::HashList(l)) =
                    hash_list(7, &items[r.clone()], i == 1, true).kind
                else {
                    unreachable!()
                };
                hash_list_wire_len(&l)
            })
            .sum();
        assert_eq!(list_wire_len(items.len(), 7, true), written);
        // An empty list is one empty last page.
        let Some(control::Kind::HashList(empty)) = hash_list(3, &[], true, false).kind else {
            unreachable!()
        };
        assert_eq!(list_wire_len(0, 3, false), hash_list_wire_len(&empty));
    }
}
