//! Deletions on the control stream: `Records` from the peer (checked here, judged by the
//! actor and our store), and tombstone reconciliation sessions (`Reconcile.set = 1`), in
//! which whoever holds a deletion the other lacks sends it.

use std::sync::Arc;
use std::time::Instant;

use can_proto::peer::{Control, Reconcile, Records, control};

use super::{Handler, Link, Outgoing, reconcile_frame};
use crate::context::Cmd;
use crate::peer::SessionError;
use crate::tombs;

impl Handler {
    /// Changes of single hashes from the peer: checked here, judged by the actor (the
    /// mass-deletion guard) and our store (last writer wins).
    pub(super) async fn on_records(&mut self, msg: Records) -> Result<(), SessionError> {
        if !self.link.tombs {
            return Err(SessionError::Protocol(
                "records without tombstones-v1 negotiated".into(),
            ));
        }
        if msg.records.len() > tombs::RECORDS_PER_FRAME {
            return Err(SessionError::Protocol(
                "too many records in one message".into(),
            ));
        }
        let mut records = msg.records;
        for r in &mut records {
            if r.hash.len() != 32 {
                return Err(SessionError::Protocol("record hash is not 32 bytes".into()));
            }
            if r.stamp > tombs::MAX_STAMP {
                return Err(SessionError::Protocol("record stamp out of range".into()));
            }
            if r.name.len() > tombs::MAX_NAME_BYTES {
                return Err(SessionError::Protocol("record name too long".into()));
            }
            // Who sent it is ours to say.
            r.origin.clear();
            r.name = crate::text::strip_invisible(&r.name);
        }
        let Link { id, conn_id, .. } = self.link;
        self.report(Cmd::PeerRecords {
            id,
            conn_id,
            records,
        })
        .await
    }

    /// One frame of a tombstone session. We send the deletions the peer lacks (whoever holds
    /// a deletion sends it); what we lack arrives the same way from the peer.
    pub(super) async fn on_tomb_reconcile(&mut self, msg: Reconcile) -> Result<(), SessionError> {
        if !(self.link.rbsr && self.link.tombs) {
            return Err(SessionError::Protocol(
                "tombstone reconciliation without rbsr-v1 and tombstones-v1".into(),
            ));
        }
        let items = if self.recon_tombs.starts_session(&msg) {
            if !self.tomb_budget.take(Instant::now()) {
                return Err(SessionError::OverBudget);
            }
            let snap = self.tomb_snapshot().await?;
            let ids = snap.ids.clone();
            self.tomb_snapshot = Some(snap);
            Some(ids)
        } else {
            None
        };
        let progress = self
            .recon_tombs
            .receive(&msg, || items.unwrap_or_else(|| Arc::from(Vec::new())))
            .map_err(|e| SessionError::Protocol(e.to_string()))?;
        if !progress.have.is_empty()
            && let Some(snap) = &self.tomb_snapshot
        {
            let records: Vec<_> = progress
                .have
                .iter()
                .filter_map(|id| snap.by_id.get(id))
                .map(|t| t.record())
                .collect();
            for chunk in records.chunks(tombs::RECORDS_PER_FRAME) {
                self.send(Outgoing::Frame(Control {
                    kind: Some(control::Kind::Records(Records {
                        records: chunk.to_vec(),
                    })),
                }))
                .await?;
            }
        }
        for out in progress.out {
            self.send(reconcile_frame(out)).await?;
        }
        if progress.finished.is_some() && !self.recon_tombs.busy() {
            self.tomb_snapshot = None;
        }
        Ok(())
    }
}
