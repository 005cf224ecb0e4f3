//! One reconciliation between two sets: the turn-by-turn state machine, pure.
//!
//! The initiator opens with turn 0 over the whole id space; the sides then alternate turns.
//! A turn is a sequence of ranges covering the id space in order, split into frames of at
//! most [`MAX_FRAME_BYTES`]; a frame ends the turn unless `more` is set. Each side answers
//! range by range, frame by frame, so neither ever holds more than one incoming frame:
//!
//! - Skip → nothing to do.
//! - Fingerprint equal to ours → Skip. Different: if we have at most [`ID_LIST_MAX`] ids
//!   there, we send them all (IdList); otherwise we split our ids there into up to
//!   [`BRANCH`] equal-count sub-ranges (of at least [`MIN_BUCKET`] ids) and send their
//!   fingerprints.
//! - IdList → we now know the exact difference in that range; we answer with an IdDiff: the
//!   ids they lack, and a bitmap of which of theirs we lack (chunked into sub-ranges of at
//!   most [`IDS_PER_DIFF`] ids). An IdDiff is final: it needs no answer.
//!
//! A turn that contains no Fingerprint or IdList needs no answer, and ends the session. So
//! two equal sets finish in one round trip (turn 0: sixteen fingerprints, turn 1: empty).

use std::collections::HashSet;
use std::sync::Arc;

use super::codec::{
    self, Bound, MAX_FRAME_BYTES, MAX_RANGES_PER_FRAME, Payload, PayloadRef, range_len,
};
use super::fingerprint::{Fingerprint, fingerprint};
use super::{Hash, ReconcileError};

/// Sub-ranges a mismatched range is split into.
pub const BRANCH: usize = 16;
/// Fewest of our ids per sub-range when splitting. Near the bottom of the tree a range of
/// ~24 ids holds about one difference; sixteen fingerprints of 1–2 ids each cost more than
/// eight of 3 and a short id list after (measured: 1 % missing each side of 100,000 takes
/// 755 KB with 1, 593 KB with 3, in the same 6 turns).
pub const MIN_BUCKET: usize = 3;
/// A mismatched range with at most this many of our ids is answered with the ids themselves.
pub const ID_LIST_MAX: usize = 8;
/// Ids the receiver lacks per IdDiff range (32 KiB), so one range always fits a frame.
pub const IDS_PER_DIFF: usize = 1024;
/// Turns one session may take. Honest sessions need about 2·log16(N) + 2 (20 for four
/// billion ids); the limit stops a peer that never converges.
pub const MAX_TURNS: u32 = 48;
/// Distinct ids a peer may claim we lack in one session (128 MiB of ids).
pub const MAX_NEED: usize = 1 << 22;

/// One frame of a turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub round: u32,
    pub ranges: Vec<u8>,
    /// More frames of the same turn follow.
    pub more: bool,
}

/// What one incoming frame taught us and what to send back.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Step {
    pub frames: Vec<Frame>,
    /// Ids the peer has and we lack, first learnt now.
    pub need: Vec<Hash>,
    /// Ids we have and the peer lacks, first learnt now.
    pub have: Vec<Hash>,
    /// The session is over (nothing more will be sent or accepted).
    pub done: bool,
}

/// One reconciliation against a fixed snapshot of our ids.
#[derive(Debug)]
pub struct Session {
    /// Our ids, sorted ascending, no duplicates. Fixed for the session: IdDiff bitmaps refer
    /// to "our ids in the range", which must mean the same set on both turns.
    items: Arc<[Hash]>,
    /// The round the next incoming frame must carry.
    expect_round: u32,
    /// Where the next incoming range starts.
    cursor: Bound,
    /// The incoming turn so far asked for an answer (had a Fingerprint or IdList).
    answer_wanted: bool,
    out: TurnWriter,
    need: HashSet<Hash>,
    have: HashSet<Hash>,
    done: bool,
}

impl Session {
    /// Starts a session as the initiator: returns it and turn 0.
    pub fn initiate(items: Arc<[Hash]>) -> (Self, Vec<Frame>) {
        let mut s = Self::new(items, 1);
        let all = s.items.clone();
        s.mismatch(Bound::Infinity, &all);
        let frames = s.end_turn(0);
        (s, frames)
    }

    /// A session that answers the peer's turn 0.
    pub fn respond(items: Arc<[Hash]>) -> Self {
        Self::new(items, 0)
    }

    fn new(items: Arc<[Hash]>, expect_round: u32) -> Self {
        debug_assert!(items.windows(2).all(|w| w[0] < w[1]), "sorted, unique");
        Self {
            items,
            expect_round,
            cursor: Bound::ZERO,
            answer_wanted: false,
            out: TurnWriter::default(),
            need: HashSet::new(),
            have: HashSet::new(),
            done: false,
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Ids the peer has and we lack, learnt so far.
    pub fn need_count(&self) -> usize {
        self.need.len()
    }

    /// Ids we have and the peer lacks, learnt so far.
    pub fn have_count(&self) -> usize {
        self.have.len()
    }

    /// Handles one incoming frame.
    pub fn receive(
        &mut self,
        round: u32,
        ranges: &[u8],
        more: bool,
    ) -> Result<Step, ReconcileError> {
        check_turn(self.done, self.expect_round, round)?;
        let ranges = codec::decode(ranges, self.cursor)?;
        let mut step = Step::default();
        for range in ranges {
            let lower = self.cursor;
            self.cursor = range.upper;
            self.range(lower, range.upper, range.payload, &mut step)?;
        }
        if more {
            step.frames = self
                .out
                .take_full()
                .into_iter()
                .map(|ranges| Frame {
                    round: round + 1,
                    ranges,
                    more: true,
                })
                .collect();
            return Ok(step);
        }
        if self.answer_wanted {
            let asks = self.out.asks;
            step.frames = self.end_turn(round + 1);
            self.done = !asks;
            self.expect_round = round + 2;
        } else {
            // Nothing to answer: their turn held only Skips and IdDiffs, so ours would too.
            self.done = true;
        }
        self.cursor = Bound::ZERO;
        self.answer_wanted = false;
        step.done = self.done;
        Ok(step)
    }

    /// Ends our outgoing turn: every frame, the last without `more`.
    fn end_turn(&mut self, round: u32) -> Vec<Frame> {
        let frames = std::mem::take(&mut self.out).finish();
        let last = frames.len() - 1;
        frames
            .into_iter()
            .enumerate()
            .map(|(i, ranges)| Frame {
                round,
                ranges,
                more: i < last,
            })
            .collect()
    }

    /// Our ids in [lower, upper) (`lower` is where the previous range ended).
    fn ours(&self, lower: &Bound, upper: &Bound) -> std::ops::Range<usize> {
        let start = match lower {
            Bound::Key(k) => self.items.partition_point(|id| id < k),
            Bound::Infinity => self.items.len(),
        };
        let end = match upper {
            Bound::Key(k) => self.items.partition_point(|id| id < k),
            Bound::Infinity => self.items.len(),
        };
        start..end.max(start)
    }

    fn range(
        &mut self,
        lower: Bound,
        upper: Bound,
        payload: Payload,
        step: &mut Step,
    ) -> Result<(), ReconcileError> {
        let items = self.items.clone();
        let ours = &items[self.ours(&lower, &upper)];
        match payload {
            Payload::Skip => self.out.skip(upper),
            Payload::Fingerprint(theirs) => {
                self.answer_wanted = true;
                if fingerprint(ours) == theirs {
                    self.out.skip(upper);
                } else {
                    self.mismatch(upper, ours);
                }
            }
            Payload::IdList(theirs) => {
                self.answer_wanted = true;
                self.id_list(upper, ours, &theirs, step)?;
            }
            Payload::IdDiff {
                ids,
                count,
                lacking,
            } => {
                if count != ours.len() {
                    return Err(ReconcileError::Inconsistent(
                        "an IdDiff counts other ids than ours in its range",
                    ));
                }
                for id in ids {
                    if ours.binary_search(&id).is_ok() {
                        return Err(ReconcileError::Inconsistent(
                            "an IdDiff says we lack an id we have",
                        ));
                    }
                    self.learn_need(id, step)?;
                }
                for (i, id) in ours.iter().enumerate() {
                    if lacking[i / 8] >> (i % 8) & 1 == 1 && self.have.insert(*id) {
                        step.have.push(*id);
                    }
                }
                self.out.skip(upper);
            }
        }
        Ok(())
    }

    /// The range ending at `upper` differs and `ours` are our ids in it.
    fn mismatch(&mut self, upper: Bound, ours: &[Hash]) {
        if ours.len() <= ID_LIST_MAX {
            self.out.push(upper, PayloadRef::IdList(ours));
            return;
        }
        // Equal counts of our ids per sub-range, at least MIN_BUCKET in each.
        let n = ours.len();
        let buckets = (n / MIN_BUCKET).clamp(2, BRANCH);
        for k in 0..buckets {
            let (start, end) = (n * k / buckets, n * (k + 1) / buckets);
            let bound = if end == n {
                upper
            } else {
                Bound::between(&ours[end - 1], &ours[end])
            };
            let fp: Fingerprint = fingerprint(&ours[start..end]);
            self.out.push(bound, PayloadRef::Fingerprint(&fp));
        }
    }

    /// They listed all their ids in the range ending at `upper`; `ours` are ours there.
    fn id_list(
        &mut self,
        upper: Bound,
        ours: &[Hash],
        theirs: &[Hash],
        step: &mut Step,
    ) -> Result<(), ReconcileError> {
        // Merge the two sorted lists: what they lack (to send) and which of theirs we lack.
        let mut extra: Vec<Hash> = Vec::new();
        let mut lacking = vec![0u8; theirs.len().div_ceil(8)];
        let (mut i, mut j) = (0, 0);
        while i < ours.len() || j < theirs.len() {
            match (ours.get(i), theirs.get(j)) {
                (Some(a), Some(b)) if a == b => {
                    i += 1;
                    j += 1;
                }
                (Some(a), b) if b.is_none_or(|b| a < b) => {
                    extra.push(*a);
                    i += 1;
                }
                (_, Some(b)) => {
                    lacking[j / 8] |= 1 << (j % 8);
                    self.learn_need(*b, step)?;
                    j += 1;
                }
                (_, None) => break,
            }
        }
        for id in &extra {
            if self.have.insert(*id) {
                step.have.push(*id);
            }
        }
        // Answer in sub-ranges of at most IDS_PER_DIFF extra ids each.
        let mut start_theirs = 0;
        let mut chunks = extra.chunks(IDS_PER_DIFF).peekable();
        if chunks.peek().is_none() && lacking.iter().all(|b| *b == 0) {
            self.out.skip(upper);
            return Ok(());
        }
        let mut sent_any = false;
        while let Some(chunk) = chunks.next() {
            let bound = match (chunks.peek(), chunk.last()) {
                (Some(next), Some(last)) => Bound::between(last, &next[0]),
                _ => upper,
            };
            let end_theirs = match bound {
                Bound::Key(k) => theirs.partition_point(|id| *id < k),
                Bound::Infinity => theirs.len(),
            };
            let bits = bitmap_slice(&lacking, start_theirs, end_theirs);
            self.out.push(
                bound,
                PayloadRef::IdDiff {
                    ids: chunk,
                    count: end_theirs - start_theirs,
                    lacking: &bits,
                },
            );
            start_theirs = end_theirs;
            sent_any = true;
        }
        if !sent_any {
            // Only bits to tell (we lack some of theirs, they lack none of ours).
            self.out.push(
                upper,
                PayloadRef::IdDiff {
                    ids: &[],
                    count: theirs.len(),
                    lacking: &lacking,
                },
            );
        }
        Ok(())
    }

    fn learn_need(&mut self, id: Hash, step: &mut Step) -> Result<(), ReconcileError> {
        if self.need.insert(id) {
            if self.need.len() > MAX_NEED {
                return Err(ReconcileError::TooManyIds(MAX_NEED));
            }
            step.need.push(id);
        }
        Ok(())
    }
}

/// Bits `start..end` of a bitmap, shifted down to start at bit 0.
/// Refuses a frame after the session ended, of another turn than expected, or past the
/// turn limit (both methods).
pub(crate) fn check_turn(done: bool, expect: u32, round: u32) -> Result<(), ReconcileError> {
    if done {
        return Err(ReconcileError::AfterEnd);
    }
    if round != expect {
        return Err(ReconcileError::UnexpectedRound {
            expected: expect,
            got: round,
        });
    }
    if round >= MAX_TURNS {
        return Err(ReconcileError::TooManyRounds(MAX_TURNS));
    }
    Ok(())
}

fn bitmap_slice(bits: &[u8], start: usize, end: usize) -> Vec<u8> {
    let mut out = vec![0u8; (end - start).div_ceil(8)];
    for i in start..end {
        if bits[i / 8] >> (i % 8) & 1 == 1 {
            let k = i - start;
            out[k / 8] |= 1 << (k % 8);
        }
    }
    out
}

/// Builds one outgoing turn: merges Skips, cuts frames at the size and range limits.
#[derive(Debug, Default)]
struct TurnWriter {
    full: Vec<Vec<u8>>,
    current: Vec<u8>,
    ranges: usize,
    /// A Skip not written yet: merged with following Skips, dropped at the end of the turn
    /// (whatever follows the last range is skipped implicitly).
    pending_skip: Option<Bound>,
    /// The turn holds a Fingerprint or IdList, so the peer will answer it.
    asks: bool,
}

impl TurnWriter {
    fn skip(&mut self, upper: Bound) {
        self.pending_skip = Some(upper);
    }

    fn push(&mut self, upper: Bound, payload: PayloadRef<'_>) {
        if let Some(skip) = self.pending_skip.take() {
            self.write(skip, PayloadRef::Skip);
        }
        if matches!(payload, PayloadRef::Fingerprint(_) | PayloadRef::IdList(_)) {
            self.asks = true;
        }
        self.write(upper, payload);
    }

    fn write(&mut self, upper: Bound, payload: PayloadRef<'_>) {
        let len = range_len(&upper, &payload);
        if self.ranges > 0
            && (self.current.len() + len > MAX_FRAME_BYTES || self.ranges == MAX_RANGES_PER_FRAME)
        {
            self.full.push(std::mem::take(&mut self.current));
            self.ranges = 0;
        }
        codec::encode_range(&mut self.current, &upper, &payload);
        self.ranges += 1;
    }

    /// Frames already full (the turn goes on).
    fn take_full(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.full)
    }

    /// Every remaining frame of the turn; at least one (possibly empty).
    fn finish(mut self) -> Vec<Vec<u8>> {
        self.full.push(self.current);
        self.full
    }
}
