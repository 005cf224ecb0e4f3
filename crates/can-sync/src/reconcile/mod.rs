//! Range-based set reconciliation (RBSR, Aljoscha Meyer; the Negentropy protocol's shape):
//! two peers find the difference of their id sets by comparing fingerprints of ranges of
//! ids and recursing only into ranges that differ, so equal sets cost one round trip and a
//! few hundred bytes, and a small difference costs about its own size plus O(log N) turns of
//! fingerprints, instead of both full hash lists.
//!
//! Pure: id sets in, frames and decisions out; no I/O, no clocks. The engine owns one
//! [`Reconciliations`] per peer and carries out what it returns.
//!
//! - [`fingerprint`]: the range digest (sum mod 2^256 ‖ count, hashed) and why.
//! - [`codec`]: the compact range encoding inside `Reconcile.ranges`, with its limits.
//! - [`session`]: one reconciliation's turns.
//! - here: the sessions of one peer connection, mapped onto `Reconcile` messages.

pub mod codec;
pub mod fingerprint;
pub mod session;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use can_proto::peer::Reconcile;
use prost::Message;

pub use session::{Frame, Session, Step};

pub type Hash = [u8; 32];

/// The feature name in `Hello.features`.
pub const FEATURE: &str = "rbsr-v1";

/// A reconciliation message that cannot be accepted. Every one ends the connection (code 2):
/// the peer's state no longer matches ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReconcileError {
    #[error("reconcile frame of {0} bytes is over the limit")]
    FrameTooLarge(usize),
    #[error("reconcile frame has too many ranges")]
    TooManyRanges,
    #[error("reconcile frame ends inside a range")]
    Truncated,
    #[error("reconcile frame: bounds or ids out of order")]
    Unsorted,
    #[error("reconcile frame: an id outside its range")]
    IdOutOfRange,
    #[error("malformed reconcile frame: {0}")]
    Malformed(&'static str),
    #[error("reconcile frame inconsistent with our ids: {0}")]
    Inconsistent(&'static str),
    #[error("reconcile frame for round {got}, expected {expected}")]
    UnexpectedRound { expected: u32, got: u32 },
    #[error("reconciliation did not converge within {0} turns")]
    TooManyRounds(u32),
    #[error("peer claims more than {0} ids we lack in one reconciliation")]
    TooManyIds(usize),
    #[error("reconcile frame after the session ended")]
    AfterEnd,
}

/// How a finished session went, for logs, events and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// We started it.
    pub initiated: bool,
    /// Turns taken (both directions); two turns are one round trip.
    pub turns: u32,
    /// Ids the peer has and we lack.
    pub need: usize,
    /// Ids we have and the peer lacks.
    pub have: usize,
    /// Bytes of `Control{reconcile}` frames (with their length prefixes) each way.
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub frames_sent: u64,
    pub frames_received: u64,
}

/// What one incoming message led to.
#[derive(Debug, Default)]
pub struct Progress {
    /// To send to the peer, in order.
    pub out: Vec<Reconcile>,
    /// Ids the peer has and we lack, newly learnt: fetch them.
    pub need: Vec<Hash>,
    /// Ids we have and the peer lacks, newly learnt (the peer learns them too, from us).
    pub have: Vec<Hash>,
    /// The session this message belonged to ended.
    pub finished: Option<Summary>,
}

#[derive(Debug)]
struct Running {
    id: u64,
    session: Session,
    summary: Summary,
}

/// The reconciliations of one set with one peer: at most one we started and one it started.
#[derive(Debug, Default)]
pub struct Reconciliations {
    /// `Reconcile.set` of this set's messages (0: asset hashes, 1: tombstone ids).
    set: u32,
    /// Number of the last session we started.
    started: u64,
    ours: Option<Running>,
    /// Number of the last session the peer started.
    theirs_id: u64,
    theirs: Option<Running>,
}

/// Bytes a message takes on the control stream.
pub fn wire_len(msg: &Reconcile) -> u64 {
    use prost::encoding::encoded_len_varint;
    // Control{reconcile = 4}: one key byte, the message's length, the message; then the
    // frame's own length prefix.
    let inner = msg.encoded_len();
    let control = 1 + encoded_len_varint(inner as u64) + inner;
    (control + encoded_len_varint(control as u64)) as u64
}

impl Reconciliations {
    /// The reconciliations of set `set` (`Reconcile.set`).
    pub fn for_set(set: u32) -> Self {
        Self {
            set,
            ..Self::default()
        }
    }

    /// Starts a new session over `items` (sorted, unique), replacing one we started before.
    /// Returns turn 0 (it always asks for an answer).
    pub fn start(&mut self, items: Arc<[Hash]>) -> Vec<Reconcile> {
        self.started += 1;
        let (session, frames) = Session::initiate(items);
        let mut running = Running {
            id: self.started,
            session,
            summary: Summary {
                initiated: true,
                ..Summary::default()
            },
        };
        let out = wrap(&mut running, frames, true, self.set);
        self.ours = Some(running);
        out
    }

    /// Whether `msg` opens a new session of the peer's: work over our whole set, which the
    /// caller budgets.
    pub fn starts_session(&self, msg: &Reconcile) -> bool {
        msg.initiator && msg.session > self.theirs_id
    }

    /// Whether a session is running (either side's).
    pub fn busy(&self) -> bool {
        self.ours.is_some() || self.theirs.is_some()
    }

    /// Handles one message. `items` gives our sorted ids if the peer starts a new session.
    pub fn receive(
        &mut self,
        msg: &Reconcile,
        items: impl FnOnce() -> Arc<[Hash]>,
    ) -> Result<Progress, ReconcileError> {
        let slot = if msg.initiator {
            if msg.session < self.theirs_id {
                return Ok(Progress::default()); // an older session it has replaced
            }
            if msg.session > self.theirs_id {
                self.theirs_id = msg.session;
                self.theirs = Some(Running {
                    id: msg.session,
                    session: Session::respond(items()),
                    summary: Summary::default(),
                });
            }
            &mut self.theirs
        } else {
            if msg.session < self.started {
                return Ok(Progress::default()); // an answer to a session we replaced
            }
            if msg.session > self.started {
                return Err(ReconcileError::Inconsistent(
                    "an answer to a session we never started",
                ));
            }
            &mut self.ours
        };
        let Some(running) = slot.as_mut() else {
            return Err(ReconcileError::AfterEnd);
        };
        debug_assert_eq!(running.id, msg.session);
        running.summary.bytes_received += wire_len(msg);
        running.summary.frames_received += 1;
        let step = running.session.receive(msg.round, &msg.ranges, msg.more)?;
        running.summary.turns = running.summary.turns.max(msg.round + 1);
        let out = wrap(running, step.frames, !msg.initiator, self.set);
        let finished = step.done.then(|| {
            let mut s = running.summary;
            s.need = running.session.need_count();
            s.have = running.session.have_count();
            s
        });
        if finished.is_some() {
            *slot = None;
        }
        Ok(Progress {
            out,
            need: step.need,
            have: step.have,
            finished,
        })
    }
}

fn wrap(running: &mut Running, frames: Vec<Frame>, initiator: bool, set: u32) -> Vec<Reconcile> {
    frames
        .into_iter()
        .map(|f| {
            let msg = Reconcile {
                session: running.id,
                initiator,
                round: f.round,
                ranges: f.ranges,
                more: f.more,
                set,
            };
            running.summary.bytes_sent += wire_len(&msg);
            running.summary.frames_sent += 1;
            running.summary.turns = running.summary.turns.max(f.round + 1);
            msg
        })
        .collect()
}
