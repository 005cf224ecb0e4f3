//! One RIBLT reconciliation, turn by turn, pure.
//!
//! - Turn 0 (initiator): Open (a fresh salt, its id count), Digest (its whole set's
//!   fingerprint) and, for sets of at most [`EAGER_ITEMS`] ids, the first
//!   [`FIRST_SYMBOLS`] coded symbols.
//! - Responder's turns: a digest equal to its own ends the session (Done) before any id is
//!   keyed. Else it subtracts its own symbols and peels. Not decoded yet: More (how
//!   many symbols in all it wants next, sized from the symbols that came out zero). Decoded:
//!   Ids (the ids the initiator lacks, in full: it must learn them), Keys (the keys of the
//!   ids it lacks itself) and Done. Too large for RIBLT: Fallback.
//! - Initiator's turns: the symbols asked for; after Done, Ids: the keys resolved to ids.
//!   A turn needs an answer unless it is a Done without Keys, a resolution or a Fallback.
//!
//! Equal sets take one round trip (the digests match); d differences take
//! about 1.4 d symbols of 13 bytes, then 32 bytes per id each side must learn and 8 per
//! key resolved. Everything a peer sends is checked: symbols only as many as asked, ids a
//! side is told it lacks must not be its own, resolved ids must hash to the keys asked for.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::OnceLock;

use rand::Rng;

use super::super::fingerprint::{Fingerprint, fingerprint};
use super::super::session::{Frame, MAX_NEED, MAX_TURNS, Step, check_turn};
use super::super::{Hash, ReconcileError};
use super::codec::{self, FrameWriter, Section};
use super::{
    Decoder, EAGER_ITEMS, Encoder, FIRST_SYMBOLS, Found, MAX_ITEMS, MAX_SYMBOLS, Salt, Symbol, key,
};

/// Our ids with their keys under the session's salt, for key → id lookups.
#[derive(Debug)]
struct Keyed {
    items: Arc<[Hash]>,
    /// The key of each id, in the order of `items` (shared with the session's encoder or
    /// decoder).
    keys: Arc<[u64]>,
    /// (key, index into items), sorted by key: built at the first lookup, which equal sets
    /// never make (sorting a million keys is most of their cost otherwise).
    by_key: OnceLock<Vec<(u64, u32)>>,
}

impl Keyed {
    fn new(items: Arc<[Hash]>, salt: &Salt) -> Self {
        let keys = items.iter().map(|id| key(salt, id)).collect();
        Self {
            items,
            keys,
            by_key: OnceLock::new(),
        }
    }

    /// The id with key `k`. Two of our ids sharing a key (≈ N² / 2^65 per session) would
    /// cancel in our symbols, so the difference never decodes: the session runs to its
    /// symbol cap and falls back to RBSR, and the next session draws another salt.
    fn id(&self, k: u64) -> Option<Hash> {
        let by_key = self.by_key.get_or_init(|| {
            let mut v: Vec<(u64, u32)> = self
                .keys
                .iter()
                .enumerate()
                .map(|(i, &k)| (k, i as u32))
                .collect();
            v.sort_unstable();
            v
        });
        let i = by_key.binary_search_by_key(&k, |&(k, _)| k).ok()?;
        Some(self.items[by_key[i].1 as usize])
    }
}

#[derive(Debug)]
enum Role {
    Initiator {
        salt: Salt,
        /// Built at turn 0 for small sets, else at the first request (equal large sets
        /// never key a single id).
        enc: Option<Encoder>,
        /// Most symbols the responder may ask for, once its Open told its id count.
        cap: Option<u64>,
    },
    /// Waiting for the initiator's Open.
    Responder,
    Decoding(Box<Decoding>),
}

/// The responder once the session is open.
#[derive(Debug)]
struct Decoding {
    salt: Salt,
    dec: Decoder,
    /// Symbols in all the initiator must have sent by the end of its turn.
    requested: Option<u64>,
    /// Most symbols this session will ask for.
    cap: u64,
    /// Keys we asked the initiator to resolve (after Done).
    asked: HashSet<u64>,
    /// Their keys decoded so far.
    theirs: Vec<u64>,
    /// Our ids they lack, decoded so far.
    ours: Vec<Hash>,
}

/// What the current incoming turn has said so far.
#[derive(Debug, Default)]
struct Incoming {
    open: Option<(Salt, u64)>,
    digest: Option<Fingerprint>,
    symbols: Vec<Symbol>,
    more: Option<u64>,
    keys: Vec<u64>,
    done: bool,
    fallback: bool,
    ids: bool,
}

/// One RIBLT reconciliation against a fixed snapshot of our ids.
#[derive(Debug)]
pub struct RibltSession {
    /// Our ids (sorted).
    items: Arc<[Hash]>,
    /// Our ids' keys, once the session needs them.
    keyed: Option<Keyed>,
    role: Role,
    expect_round: u32,
    incoming: Incoming,
    need: HashSet<Hash>,
    have: HashSet<Hash>,
    done: bool,
    fallback: bool,
}

impl RibltSession {
    /// Starts a session as the initiator with turn 0, or `None` if our set is beyond RIBLT
    /// (more than [`MAX_ITEMS`] ids): use RBSR.
    pub fn initiate(items: Arc<[Hash]>) -> Option<(Self, Vec<Frame>)> {
        if items.len() > MAX_ITEMS {
            return None;
        }
        let salt: Salt = rand::rng().random();
        let mut w = FrameWriter::default();
        w.push(Section::Open {
            salt,
            items: items.len() as u64,
        });
        w.push(Section::Digest(fingerprint(&items)));
        // Small sets also send the first symbols: a few differences then decode in this
        // one round trip. Large ones wait to be asked (most often they are equal).
        let (keyed, enc) = if items.len() <= EAGER_ITEMS {
            let keyed = Keyed::new(items.clone(), &salt);
            let mut enc = Encoder::new(keyed.keys.clone());
            w.push(Section::Symbols {
                first: 0,
                symbols: enc.next_batch(FIRST_SYMBOLS),
            });
            (Some(keyed), Some(enc))
        } else {
            (None, None)
        };
        let s = Self {
            items,
            keyed,
            role: Role::Initiator {
                salt,
                enc,
                cap: None,
            },
            expect_round: 1,
            incoming: Incoming::default(),
            need: HashSet::new(),
            have: HashSet::new(),
            done: false,
            fallback: false,
        };
        Some((s, frames(0, w)))
    }

    /// A session that answers the initiator's turn 0.
    pub fn respond(items: Arc<[Hash]>) -> Self {
        Self {
            items,
            keyed: None,
            role: Role::Responder,
            expect_round: 0,
            incoming: Incoming::default(),
            need: HashSet::new(),
            have: HashSet::new(),
            done: false,
            fallback: false,
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The session ended in a Fallback: the initiator reconciles with RBSR instead.
    pub fn fell_back(&self) -> bool {
        self.fallback
    }

    /// Our ids (what a fallback to RBSR reconciles).
    pub fn items(&self) -> Arc<[Hash]> {
        self.items.clone()
    }

    pub fn need_count(&self) -> usize {
        self.need.len()
    }

    pub fn have_count(&self) -> usize {
        self.have.len()
    }

    /// Handles one incoming frame of turn `round`; `more` says whether the turn goes on.
    pub fn receive(
        &mut self,
        round: u32,
        bytes: &[u8],
        more: bool,
    ) -> Result<Step, ReconcileError> {
        check_turn(self.done, self.expect_round, round)?;
        let mut step = Step::default();
        for section in codec::decode(bytes)? {
            self.section(section, &mut step)?;
        }
        if !more {
            let incoming = std::mem::take(&mut self.incoming);
            self.end_of_turn(round, incoming, &mut step)?;
            self.expect_round += 2;
        }
        step.done = self.done;
        Ok(step)
    }

    /// Takes in one section of the incoming turn.
    fn section(&mut self, s: Section, step: &mut Step) -> Result<(), ReconcileError> {
        let initiator = matches!(self.role, Role::Initiator { .. });
        let inc = &mut self.incoming;
        match s {
            Section::Open { salt, items } if self.expect_round <= 1 => {
                if inc.open.is_some() {
                    return Err(ReconcileError::Malformed("two Open sections"));
                }
                inc.open = Some((salt, items));
            }
            Section::Digest(d) if !initiator && self.expect_round == 0 => {
                if inc.digest.is_some() {
                    return Err(ReconcileError::Malformed("two Digest sections"));
                }
                inc.digest = Some(d);
            }
            Section::Symbols { first, symbols } if !initiator => {
                let before = match &self.role {
                    Role::Decoding(d) => d.dec.received(),
                    _ => 0,
                };
                if first != before + inc.symbols.len() as u64 {
                    return Err(ReconcileError::Inconsistent("symbols out of order"));
                }
                let total = first + symbols.len() as u64;
                let limit = match &self.role {
                    Role::Decoding(d) => d.requested.unwrap_or(0),
                    // Turn 0 carries the first symbols, no more.
                    _ => FIRST_SYMBOLS,
                };
                if total > limit {
                    return Err(ReconcileError::Inconsistent("more symbols than asked for"));
                }
                inc.symbols.extend(symbols);
            }
            Section::More { total } if initiator => inc.more = Some(total),
            Section::Keys(keys) if initiator => {
                let ours = self.items.len();
                if inc.keys.len() + keys.len() > ours {
                    return Err(ReconcileError::Inconsistent("more keys than we have ids"));
                }
                inc.keys.extend(keys);
            }
            Section::Done if initiator => inc.done = true,
            Section::Fallback if initiator => inc.fallback = true,
            Section::Ids(ids) => {
                inc.ids = true;
                self.learn_need(ids, step)?;
            }
            _ => return Err(ReconcileError::Malformed("riblt section out of place")),
        }
        Ok(())
    }

    /// Ids the peer says we lack: never ours; as the responder, only ids whose keys we
    /// asked it to resolve.
    fn learn_need(&mut self, ids: Vec<Hash>, step: &mut Step) -> Result<(), ReconcileError> {
        if matches!(self.role, Role::Responder) {
            return Err(ReconcileError::Malformed("ids before the session opened"));
        }
        for id in ids {
            if self.items.binary_search(&id).is_ok() {
                return Err(ReconcileError::Inconsistent("told we lack an id we have"));
            }
            if let Role::Decoding(d) = &self.role
                && !d.asked.contains(&key(&d.salt, &id))
            {
                return Err(ReconcileError::Inconsistent("an id for a key never asked"));
            }
            if self.need.insert(id) {
                if self.need.len() > MAX_NEED {
                    return Err(ReconcileError::TooManyIds(MAX_NEED));
                }
                step.need.push(id);
            }
        }
        Ok(())
    }

    fn end_of_turn(
        &mut self,
        round: u32,
        inc: Incoming,
        step: &mut Step,
    ) -> Result<(), ReconcileError> {
        let reply = round + 1;
        match &mut self.role {
            Role::Initiator { salt, enc, cap } => {
                if let Some((their_salt, their_items)) = inc.open {
                    // The responder's first answer tells its id count: the same cap it
                    // applies to itself bounds what it may make us compute and send.
                    if their_salt != *salt || their_items > MAX_ITEMS as u64 || cap.is_some() {
                        return Err(ReconcileError::Inconsistent(
                            "a responder's Open that does not fit",
                        ));
                    }
                    *cap = Some(symbol_cap(self.items.len() as u64, their_items));
                }
                if inc.fallback {
                    self.fallback = true;
                    self.done = true;
                } else if let Some(total) = inc.more {
                    let Some(cap) = *cap else {
                        return Err(ReconcileError::Malformed(
                            "More before the responder's Open",
                        ));
                    };
                    // An honest request is at most 8× what it has (`Decoder::next_request`),
                    // and the first after a turn 0 without symbols is the first symbols.
                    // Checked before our ids are keyed: a refused request costs nothing.
                    let produced = enc.as_ref().map_or(0, Encoder::produced);
                    let most = produced.saturating_mul(8).max(FIRST_SYMBOLS);
                    if total <= produced || total > cap || total > most {
                        return Err(ReconcileError::Inconsistent(
                            "a request for no new symbols or past the cap",
                        ));
                    }
                    let enc = match enc {
                        Some(enc) => enc,
                        None => {
                            let keyed = Keyed::new(self.items.clone(), salt);
                            let enc = enc.insert(Encoder::new(keyed.keys.clone()));
                            self.keyed = Some(keyed);
                            enc
                        }
                    };
                    let first = enc.produced();
                    let mut w = FrameWriter::default();
                    w.push(Section::Symbols {
                        first,
                        symbols: enc.next_batch(total),
                    });
                    step.frames = frames(reply, w);
                } else if inc.done {
                    let resolved: Vec<Hash> = match &self.keyed {
                        Some(keyed) => inc.keys.iter().filter_map(|&k| keyed.id(k)).collect(),
                        // We sent no symbol: the responder cannot have decoded a key.
                        None if inc.keys.is_empty() => Vec::new(),
                        None => {
                            return Err(ReconcileError::Inconsistent(
                                "keys to resolve from a session without symbols",
                            ));
                        }
                    };
                    if !inc.keys.is_empty() {
                        let mut w = FrameWriter::default();
                        w.push(Section::Ids(resolved.clone()));
                        step.frames = frames(reply, w);
                    }
                    for id in resolved {
                        if self.have.insert(id) {
                            step.have.push(id);
                        }
                    }
                    self.done = true;
                } else {
                    return Err(ReconcileError::Malformed("a riblt turn that says nothing"));
                }
            }
            Role::Responder => {
                let Some((salt, their_items)) = inc.open else {
                    return Err(ReconcileError::Malformed("turn 0 without Open"));
                };
                let Some(digest) = inc.digest else {
                    return Err(ReconcileError::Malformed("turn 0 without Digest"));
                };
                // Equal sets end here, before a single id is keyed: at a million ids keying
                // alone costs ten times the fingerprint.
                if digest == fingerprint(&self.items) {
                    let mut w = FrameWriter::default();
                    w.push(Section::Ids(Vec::new()));
                    w.push(Section::Done);
                    step.frames = frames(reply, w);
                    self.done = true;
                    return Ok(());
                }
                let items = self.items.clone();
                let keyed = (items.len() <= MAX_ITEMS && their_items <= MAX_ITEMS as u64)
                    .then(|| Keyed::new(items, &salt));
                let Some(keyed) = keyed else {
                    let mut w = FrameWriter::default();
                    w.push(Section::Fallback);
                    step.frames = frames(reply, w);
                    self.fallback = true;
                    self.done = true;
                    return Ok(());
                };
                let cap = symbol_cap(keyed.items.len() as u64, their_items);
                self.role = Role::Decoding(Box::new(Decoding {
                    salt,
                    dec: Decoder::new(keyed.keys.clone()),
                    requested: None,
                    cap,
                    asked: HashSet::new(),
                    theirs: Vec::new(),
                    ours: Vec::new(),
                }));
                self.keyed = Some(keyed);
                self.decode(reply, inc.symbols, step)?;
            }
            Role::Decoding(d) => {
                if !d.asked.is_empty() {
                    if !inc.ids {
                        return Err(ReconcileError::Malformed("Done answered without ids"));
                    }
                    self.done = true;
                } else {
                    self.decode(reply, inc.symbols, step)?;
                }
            }
        }
        Ok(())
    }

    /// Peels the turn's symbols and answers: More, Done or Fallback.
    fn decode(
        &mut self,
        reply: u32,
        symbols: Vec<Symbol>,
        step: &mut Step,
    ) -> Result<(), ReconcileError> {
        let Role::Decoding(d) = &mut self.role else {
            return Err(ReconcileError::AfterEnd);
        };
        let Decoding {
            salt,
            dec,
            requested,
            cap,
            asked,
            theirs,
            ours,
        } = d.as_mut();
        let keyed = self.keyed.as_ref().ok_or(ReconcileError::AfterEnd)?;
        if let Some(r) = requested
            && dec.received() + symbols.len() as u64 != *r
        {
            return Err(ReconcileError::Inconsistent("fewer symbols than asked for"));
        }
        // Only turn 0 of a large set comes without symbols: ask for the first ones.
        if symbols.is_empty() && requested.is_some() {
            return Err(ReconcileError::Malformed("a turn without symbols"));
        }
        for f in dec.add(&symbols, |k| keyed.id(k).is_some()) {
            match f {
                Found::Theirs(k) => theirs.push(k),
                Found::Ours(k) => ours.extend(keyed.id(k)),
            }
            if theirs.len() > MAX_NEED {
                return Err(ReconcileError::TooManyIds(MAX_NEED));
            }
        }
        let mut w = FrameWriter::default();
        // We decode only after the digests differed: a difference that peels to nothing
        // means two of our ids share a key, or forged symbols. RBSR instead of "in sync".
        let empty = dec.is_done() && theirs.is_empty() && ours.is_empty();
        if dec.is_done() && !empty {
            w.push(Section::Ids(ours.clone()));
            w.push(Section::Keys(theirs.clone()));
            w.push(Section::Done);
            for id in ours.iter() {
                if self.have.insert(*id) {
                    step.have.push(*id);
                }
            }
            asked.extend(theirs.iter().copied());
            if asked.is_empty() {
                self.done = true;
            }
        } else if empty || dec.received() >= *cap || dec.stuck() || reply + 3 >= MAX_TURNS {
            // Out of symbols, stuck, or no turn left for another request: RBSR instead of
            // an error that would end the connection.
            w.push(Section::Fallback);
            self.fallback = true;
            self.done = true;
        } else {
            if reply == 1 {
                // Our id count, with the first request: the initiator applies the same cap.
                w.push(Section::Open {
                    salt: *salt,
                    items: keyed.items.len() as u64,
                });
            }
            let total = if symbols.is_empty() {
                FIRST_SYMBOLS
            } else {
                dec.next_request()
            }
            .min(*cap);
            *requested = Some(total);
            w.push(Section::More { total });
        }
        step.frames = frames(reply, w);
        Ok(())
    }
}

/// Most symbols a session over sets of these sizes may carry: a difference is at most both
/// sets, and RIBLT decodes one within ≈ 1.4× its size.
fn symbol_cap(ours: u64, theirs: u64) -> u64 {
    (ours.saturating_add(theirs).saturating_mul(3) / 2 + 256).min(MAX_SYMBOLS)
}

fn frames(round: u32, w: FrameWriter) -> Vec<Frame> {
    let parts = w.finish();
    let last = parts.len().saturating_sub(1);
    parts
        .into_iter()
        .enumerate()
        .map(|(i, ranges)| Frame {
            round,
            ranges,
            more: i < last,
        })
        .collect()
}
