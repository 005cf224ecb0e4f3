//! The "riblt-v2" encoding carried in `Reconcile.ranges` when `Reconcile.method` is 1: a
//! frame is a sequence of sections, each a tag byte and its fields (varints are LEB128):
//!
//! | tag | section | fields |
//! |---|---|---|
//! | 1 | Open | salt (16 B), the sender's id count (varint) |
//! | 2 | Symbols | first index, count (varints), then 13 bytes per symbol: key XOR (8 B LE), check XOR (4 B LE), count mod 256 (1 B) |
//! | 3 | More | total symbols wanted (varint) |
//! | 4 | Ids | count (varint), that many 32-byte ids the receiver lacks |
//! | 5 | Keys | count (varint), that many 8-byte keys (LE) the sender lacks, to be resolved to ids |
//! | 6 | Done | – (the difference is decoded; this turn's Ids and Keys are the rest of it) |
//! | 7 | Fallback | – (this side will not use RIBLT; the initiator starts RBSR instead) |
//! | 8 | Digest | 16 bytes: the fingerprint of the sender's whole set (RBSR's, fingerprint.rs) |
//!
//! Frames are at most [`MAX_FRAME_BYTES`]; every count is checked against the bytes left
//! before anything is allocated.

use prost::encoding::{decode_varint, encode_varint};

use super::super::codec::{MAX_FRAME_BYTES, take};
use super::super::fingerprint::{FINGERPRINT_LEN, Fingerprint};
use super::super::{Hash, ReconcileError};
use super::{Salt, Symbol};

/// One section of a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Section {
    Open { salt: Salt, items: u64 },
    Symbols { first: u64, symbols: Vec<Symbol> },
    More { total: u64 },
    Ids(Vec<Hash>),
    Keys(Vec<u64>),
    Done,
    Fallback,
    Digest(Fingerprint),
}

/// Bytes one symbol takes.
pub const SYMBOL_BYTES: usize = 13;

pub fn encode(out: &mut Vec<u8>, s: &Section) {
    match s {
        Section::Open { salt, items } => {
            out.push(1);
            out.extend_from_slice(salt);
            encode_varint(*items, out);
        }
        Section::Symbols { first, symbols } => {
            out.push(2);
            encode_varint(*first, out);
            encode_varint(symbols.len() as u64, out);
            for sym in symbols {
                out.extend_from_slice(&sym.sum.to_le_bytes());
                out.extend_from_slice(&sym.check.to_le_bytes());
                out.push(sym.count as u8);
            }
        }
        Section::More { total } => {
            out.push(3);
            encode_varint(*total, out);
        }
        Section::Ids(ids) => {
            out.push(4);
            encode_varint(ids.len() as u64, out);
            for id in ids {
                out.extend_from_slice(id);
            }
        }
        Section::Keys(keys) => {
            out.push(5);
            encode_varint(keys.len() as u64, out);
            for k in keys {
                out.extend_from_slice(&k.to_le_bytes());
            }
        }
        Section::Done => out.push(6),
        Section::Fallback => out.push(7),
        Section::Digest(d) => {
            out.push(8);
            out.extend_from_slice(d);
        }
    }
}

fn varint(buf: &mut &[u8]) -> Result<u64, ReconcileError> {
    decode_varint(buf).map_err(|_| ReconcileError::Truncated)
}

/// A count of items of at least `min_bytes` each, refused if the rest cannot hold them.
fn count(buf: &mut &[u8], min_bytes: usize) -> Result<usize, ReconcileError> {
    let n = varint(buf)?;
    if n.saturating_mul(min_bytes as u64) > buf.len() as u64 {
        return Err(ReconcileError::Truncated);
    }
    Ok(n as usize)
}

pub fn decode(mut buf: &[u8]) -> Result<Vec<Section>, ReconcileError> {
    if buf.len() > MAX_FRAME_BYTES {
        return Err(ReconcileError::FrameTooLarge(buf.len()));
    }
    let mut out = Vec::new();
    while let Some((&tag, rest)) = buf.split_first() {
        buf = rest;
        out.push(match tag {
            1 => {
                let mut salt = Salt::default();
                salt.copy_from_slice(take(&mut buf, 16)?);
                Section::Open {
                    salt,
                    items: varint(&mut buf)?,
                }
            }
            2 => {
                let first = varint(&mut buf)?;
                let n = count(&mut buf, SYMBOL_BYTES)?;
                let mut symbols = Vec::with_capacity(n);
                for _ in 0..n {
                    let sum = u64::from_le_bytes(take(&mut buf, 8)?.try_into().unwrap_or([0; 8]));
                    let check = u32::from_le_bytes(take(&mut buf, 4)?.try_into().unwrap_or([0; 4]));
                    let count = take(&mut buf, 1)?[0] as i8;
                    symbols.push(Symbol { sum, check, count });
                }
                Section::Symbols { first, symbols }
            }
            3 => Section::More {
                total: varint(&mut buf)?,
            },
            4 => {
                let n = count(&mut buf, 32)?;
                let mut ids = Vec::with_capacity(n);
                for _ in 0..n {
                    let mut id = [0u8; 32];
                    id.copy_from_slice(take(&mut buf, 32)?);
                    ids.push(id);
                }
                Section::Ids(ids)
            }
            5 => {
                let n = count(&mut buf, 8)?;
                let mut keys = Vec::with_capacity(n);
                for _ in 0..n {
                    keys.push(u64::from_le_bytes(
                        take(&mut buf, 8)?.try_into().unwrap_or([0; 8]),
                    ));
                }
                Section::Keys(keys)
            }
            6 => Section::Done,
            7 => Section::Fallback,
            8 => {
                let mut d = Fingerprint::default();
                d.copy_from_slice(take(&mut buf, FINGERPRINT_LEN)?);
                Section::Digest(d)
            }
            _ => return Err(ReconcileError::Malformed("unknown riblt section")),
        });
    }
    Ok(out)
}

/// Splits sections into frames of at most [`MAX_FRAME_BYTES`], cutting long Symbols, Ids
/// and Keys sections into several.
#[derive(Debug, Default)]
pub struct FrameWriter {
    frames: Vec<Vec<u8>>,
    cur: Vec<u8>,
}

impl FrameWriter {
    fn room(&mut self, need: usize) {
        if !self.cur.is_empty() && self.cur.len() + need > MAX_FRAME_BYTES {
            self.frames.push(std::mem::take(&mut self.cur));
        }
    }

    pub fn push(&mut self, s: Section) {
        // Per part: tag + two varints of headroom, then items.
        const HEAD: usize = 24;
        match s {
            Section::Symbols { first, symbols } => {
                let per = (MAX_FRAME_BYTES - HEAD) / SYMBOL_BYTES;
                for (i, chunk) in symbols.chunks(per).enumerate() {
                    self.room(HEAD + chunk.len() * SYMBOL_BYTES);
                    let part = Section::Symbols {
                        first: first + (i * per) as u64,
                        symbols: chunk.to_vec(),
                    };
                    encode(&mut self.cur, &part);
                }
            }
            Section::Ids(ids) => {
                let per = (MAX_FRAME_BYTES - HEAD) / 32;
                if ids.is_empty() {
                    // An empty Ids still says "this is the answer" (a resolution of keys
                    // that matched none of our ids).
                    self.room(HEAD);
                    encode(&mut self.cur, &Section::Ids(Vec::new()));
                }
                for chunk in ids.chunks(per) {
                    self.room(HEAD + chunk.len() * 32);
                    encode(&mut self.cur, &Section::Ids(chunk.to_vec()));
                }
            }
            Section::Keys(keys) => {
                let per = (MAX_FRAME_BYTES - HEAD) / 8;
                for chunk in keys.chunks(per) {
                    self.room(HEAD + chunk.len() * 8);
                    encode(&mut self.cur, &Section::Keys(chunk.to_vec()));
                }
            }
            other => {
                self.room(HEAD + 16);
                encode(&mut self.cur, &other);
            }
        }
    }

    /// The frames of the turn (at least one, possibly empty).
    pub fn finish(mut self) -> Vec<Vec<u8>> {
        if !self.cur.is_empty() || self.frames.is_empty() {
            self.frames.push(self.cur);
        }
        self.frames
    }
}
