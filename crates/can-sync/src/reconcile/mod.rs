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
//! - [`riblt`]: the other method, rateless IBLT ("riblt-v2"): for asset hashes when both
//!   sides offer it, since a difference then costs ≈ 1.7× the differing ids where RBSR
//!   costs ≈ 9×; RBSR stays its fallback and reconciles tombstones.
//! - here: the sessions of one peer connection, mapped onto `Reconcile` messages.

pub mod codec;
pub mod fingerprint;
pub mod riblt;
pub mod session;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use can_proto::peer::Reconcile;
use prost::Message;

pub use session::{Frame, Session, Step};

use riblt::session::RibltSession;

pub type Hash = [u8; 32];

/// Sorts ids as `sort_unstable` would, faster: pdqsort compares 16-byte prefixes as
/// integers instead of calling `memcmp` on 32 bytes, then the rare runs of equal prefixes
/// (ids are BLAKE3 hashes: equal prefixes take ~2^64 ids) are put in order whole. At a
/// million ids this is the one O(N log N) step of an in-sync reconciliation.
pub fn sort_ids(ids: &mut [Hash]) {
    fn prefix(id: &Hash) -> u128 {
        let mut head = [0u8; 16];
        head.copy_from_slice(&id[..16]);
        u128::from_be_bytes(head)
    }
    ids.sort_unstable_by_key(prefix);
    let mut start = 0;
    while start < ids.len() {
        let head = prefix(&ids[start]);
        let end = start
            + ids[start..]
                .iter()
                .take_while(|id| prefix(id) == head)
                .count();
        if end - start > 1 {
            ids[start..end].sort_unstable();
        }
        start = end;
    }
}

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
    /// "rbsr" or "riblt" (`Reconcile.method` 0 or 1).
    pub method: &'static str,
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

/// `Reconcile.method` of RBSR and of RIBLT.
pub const METHOD_RBSR: u32 = 0;
pub const METHOD_RIBLT: u32 = 1;

#[derive(Debug)]
enum Method {
    Rbsr(Session),
    Riblt(RibltSession),
}

impl Method {
    fn code(&self) -> u32 {
        match self {
            Method::Rbsr(_) => METHOD_RBSR,
            Method::Riblt(_) => METHOD_RIBLT,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Method::Rbsr(_) => "rbsr",
            Method::Riblt(_) => "riblt",
        }
    }

    fn receive(&mut self, round: u32, bytes: &[u8], more: bool) -> Result<Step, ReconcileError> {
        match self {
            Method::Rbsr(s) => s.receive(round, bytes, more),
            Method::Riblt(s) => s.receive(round, bytes, more),
        }
    }

    fn counts(&self) -> (usize, usize) {
        match self {
            Method::Rbsr(s) => (s.need_count(), s.have_count()),
            Method::Riblt(s) => (s.need_count(), s.have_count()),
        }
    }

    fn fell_back(&self) -> bool {
        matches!(self, Method::Riblt(s) if s.fell_back())
    }

    /// The ids a RIBLT session we started runs over (for its RBSR fallback).
    fn items(&self) -> Option<Arc<[Hash]>> {
        match self {
            Method::Riblt(s) => Some(s.items()),
            Method::Rbsr(_) => None,
        }
    }
}

#[derive(Debug)]
struct Running {
    id: u64,
    session: Method,
    summary: Summary,
}

impl Running {
    fn new(id: u64, session: Method, initiated: bool) -> Self {
        let summary = Summary {
            method: session.name(),
            initiated,
            ..Summary::default()
        };
        Self {
            id,
            session,
            summary,
        }
    }
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
    /// Both sides offered "riblt-v2": sessions we start use it.
    riblt: bool,
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

    /// Starts sessions with RIBLT when `on` (both sides offered "riblt-v2"), and answers
    /// the peer's RIBLT sessions; otherwise RIBLT messages are refused.
    pub fn with_riblt(mut self, on: bool) -> Self {
        self.riblt = on;
        self
    }

    /// Starts a new session over `items` (sorted, unique), replacing one we started before.
    /// Returns turn 0 (it always asks for an answer).
    pub fn start(&mut self, items: Arc<[Hash]>) -> Vec<Reconcile> {
        let riblt = if self.riblt {
            RibltSession::initiate(items.clone())
        } else {
            None
        };
        match riblt {
            Some((session, frames)) => self.start_with(Method::Riblt(session), frames),
            None => {
                let (session, frames) = Session::initiate(items);
                self.start_with(Method::Rbsr(session), frames)
            }
        }
    }

    fn start_with(&mut self, session: Method, frames: Vec<Frame>) -> Vec<Reconcile> {
        self.started += 1;
        let mut running = Running::new(self.started, session, true);
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
                let session = match msg.method {
                    METHOD_RBSR => Method::Rbsr(Session::respond(items())),
                    METHOD_RIBLT if self.riblt => Method::Riblt(RibltSession::respond(items())),
                    _ => return Err(ReconcileError::Malformed("a method not negotiated")),
                };
                self.theirs_id = msg.session;
                self.theirs = Some(Running::new(msg.session, session, false));
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
        if msg.method != running.session.code() {
            return Err(ReconcileError::Inconsistent(
                "method changed within a session",
            ));
        }
        running.summary.bytes_received += wire_len(msg);
        running.summary.frames_received += 1;
        let step = running.session.receive(msg.round, &msg.ranges, msg.more)?;
        running.summary.turns = running.summary.turns.max(msg.round + 1);
        let mut out = wrap(running, step.frames, !msg.initiator, self.set);
        let fell_back = step.done && running.session.fell_back();
        let finished = (step.done && !fell_back).then(|| {
            let mut s = running.summary;
            (s.need, s.have) = running.session.counts();
            s
        });
        // A RIBLT session the peer would not run: ours goes on as RBSR over the same ids,
        // the RIBLT turns' bytes counted in its summary. (The peer's side simply ends.)
        let restart = (fell_back && !msg.initiator)
            .then(|| {
                running
                    .session
                    .items()
                    .map(|items| (items, running.summary))
            })
            .flatten();
        if step.done {
            *slot = None;
        }
        if let Some((items, before)) = restart {
            let (session, frames) = Session::initiate(items);
            out.extend(self.start_with(Method::Rbsr(session), frames));
            if let Some(r) = self.ours.as_mut() {
                r.summary.bytes_sent += before.bytes_sent;
                r.summary.bytes_received += before.bytes_received;
                r.summary.frames_sent += before.frames_sent;
                r.summary.frames_received += before.frames_received;
            }
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
                method: running.session.code(),
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
