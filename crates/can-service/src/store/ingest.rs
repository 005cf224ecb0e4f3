//! Streaming ingest: hash and write on a blocking thread while the body arrives, then
//! fsync, rename into place and commit the row. Memory stays bounded by the channel.

use std::fmt::Display;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tempfile::NamedTempFile;
use tokio::sync::mpsc;

use super::names::strip_format_chars;
use super::space::{CHECK_EVERY, SpaceGuard};
use super::{AssetMeta, Store, StoreError};
use crate::hash::AssetHash;

/// Chunks buffered between the network and the writer thread.
pub(super) const CHANNEL_CHUNKS: usize = 16;
/// Write buffer of the temp file: small chunks (HTTP frames) are gathered into writes this
/// large; a chunk at least this large (the sync engine's, [`crate::content::CHUNK`]) goes
/// straight to the file, without a copy into the buffer.
const WRITE_BUFFER: usize = crate::content::CHUNK;
/// How much is written before the kernel is asked to start writing it back.
const WRITEBACK_STEP: u64 = 8 << 20;
/// Longest accepted name, in bytes.
pub const MAX_NAME_BYTES: usize = 4096;
/// Longest accepted origin, in bytes.
pub const MAX_ORIGIN_BYTES: usize = 256;

/// Metadata that comes with new content.
#[derive(Debug, Clone)]
pub struct NewAsset {
    pub name: String,
    pub content_type: String,
    /// RFC 3339; `None` = now.
    pub created_at: Option<String>,
    pub origin: String,
    /// The stamp of the upload (a peer's, passed along); `None` = a new one of this
    /// store's clock (an upload here). Against a deletion of the same content the later
    /// stamp wins: a later upload restores the asset, an earlier one is refused.
    pub stamp: Option<u64>,
}

/// What an ingest did.
#[derive(Debug, Clone)]
pub enum IngestOutcome {
    /// The content was new and is now stored.
    Created(AssetMeta),
    /// The same content was already stored; nothing changed.
    Existing(AssetMeta),
}

impl IngestOutcome {
    pub fn meta(&self) -> &AssetMeta {
        match self {
            IngestOutcome::Created(m) | IngestOutcome::Existing(m) => m,
        }
    }
}

/// Why an ingest stored nothing.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{field} {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("asset is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("content hashes to {actual}, not to the claimed {expected}")]
    HashMismatch {
        expected: AssetHash,
        actual: AssetHash,
    },
    #[error("content is {actual} bytes, not the claimed {expected}")]
    SizeMismatch { expected: u64, actual: u64 },
    #[error(
        "not enough free space for {needed} more bytes: {available} bytes are free and the \
         store keeps {reserve} bytes free (free_space_reserve_bytes)"
    )]
    NoSpace {
        needed: u64,
        available: u64,
        reserve: u64,
    },
    #[error("upload interrupted: {0}")]
    Interrupted(String),
    #[error("another upload of this asset is in progress")]
    Busy,
    #[error("cannot resume at byte {offset}: the partial upload holds {received} bytes")]
    BeyondPartial { offset: u64, received: u64 },
    #[error("this asset was deleted here by a later change (stamp {stamp})")]
    Superseded { stamp: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl NewAsset {
    /// The asset with its name cleaned of Unicode format characters (see [`super::names`]).
    /// Every ingest applies it, so no path can store such a name.
    pub fn cleaned(self) -> Self {
        Self {
            name: strip_format_chars(&self.name),
            ..self
        }
    }

    /// Checks every field; the error names the field.
    pub fn validate(&self) -> Result<(), IngestError> {
        let invalid = |field, message: &str| IngestError::Invalid {
            field,
            message: message.to_owned(),
        };
        if self.name.len() > MAX_NAME_BYTES {
            return Err(invalid("name", "is longer than 4096 bytes"));
        }
        if self.name.chars().any(char::is_control) {
            return Err(invalid("name", "contains control characters"));
        }
        if self.content_type.parse::<mime::Mime>().is_err() {
            return Err(invalid("content_type", "is not a valid MIME type"));
        }
        if let Some(at) = &self.created_at {
            let format = &time::format_description::well_known::Rfc3339;
            if time::OffsetDateTime::parse(at, format).is_err() {
                return Err(invalid("created_at", "is not an RFC 3339 timestamp"));
            }
        }
        if self.origin.is_empty() || self.origin.len() > MAX_ORIGIN_BYTES {
            return Err(invalid("origin", "must be 1 to 256 bytes"));
        }
        if self.origin.chars().any(char::is_control) {
            return Err(invalid("origin", "contains control characters"));
        }
        check_stamp(self.stamp)?;
        Ok(())
    }
}

/// A stamp a peer gave, refused when out of the range stores keep.
pub(super) fn check_stamp(stamp: Option<u64>) -> Result<(), IngestError> {
    match stamp {
        Some(s) if s > super::clock::MAX_STAMP => Err(IngestError::Invalid {
            field: "stamp",
            message: "is out of range (at most 2^63 - 1)".to_owned(),
        }),
        _ => Ok(()),
    }
}

pub(super) enum Msg {
    Data(Bytes),
    Finish,
}

/// A file written whole and fsynced, not yet in place.
pub(super) struct Written<F> {
    pub file: F,
    pub hash: AssetHash,
    pub size: u64,
}

impl<F> Written<F> {
    /// The written content is `hash`'s and `size` bytes long, or the mismatch.
    pub(super) fn verify(&self, hash: AssetHash, size: u64) -> Result<(), IngestError> {
        if self.size != size {
            return Err(IngestError::SizeMismatch {
                expected: size,
                actual: self.size,
            });
        }
        if self.hash != hash {
            return Err(IngestError::HashMismatch {
                expected: hash,
                actual: self.hash,
            });
        }
        Ok(())
    }
}

/// How the writer thread ended: every byte written and fsynced, or the body ended early
/// (the bytes that did arrive are written to the file, not fsynced).
pub(super) enum Ended<F> {
    Finished(Written<F>),
    Interrupted(F),
}

/// A file the writer writes into: a temp file (deleted when dropped) or a partial upload
/// (kept for a resume).
pub(super) trait Sink: Write + Send + 'static {
    fn file(&self) -> &File;
}

impl Sink for NamedTempFile {
    fn file(&self) -> &File {
        self.as_file()
    }
}

impl Sink for File {
    fn file(&self) -> &File {
        self
    }
}

/// A written file that can be moved to its final name, or thrown away.
pub(super) trait Landing: Send + 'static + Sized {
    /// Renames the file to `dest`; on failure returns it with the error (to retry).
    fn land(self, dest: &Path) -> Result<(), (Self, std::io::Error)>;
    /// The content turned out to be stored already.
    fn discard(self);
}

impl Landing for NamedTempFile {
    fn land(self, dest: &Path) -> Result<(), (Self, std::io::Error)> {
        self.persist(dest)
            .map(|_| ())
            .map_err(|e| (e.file, e.error))
    }

    fn discard(self) {}
}

impl Store {
    /// Stores `body` as one asset, whole and verified or not at all.
    ///
    /// `expected` (hash and size claimed by a sync peer) is checked against what arrives;
    /// any mismatch stores nothing. If the future is dropped midway, the temp file goes too.
    pub async fn ingest<S, E>(
        &self,
        body: S,
        new: NewAsset,
        expected: Option<(AssetHash, u64)>,
    ) -> Result<IngestOutcome, IngestError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: Display,
    {
        let new = new.cleaned();
        new.validate()?;
        let limit = self.inner.max_asset_bytes;
        if let Some((_, size)) = expected
            && size > limit
        {
            return Err(IngestError::TooLarge { limit });
        }
        if let Some((hash, _)) = expected
            && let Some(existing) = self.existing_for_upload(hash, new.stamp).await?
        {
            return Ok(IngestOutcome::Existing(existing));
        }
        // Refuse before a byte of the body is read (the writer checks again as it goes).
        let claimed = expected.map(|(_, size)| size);
        self.check_space_reclaiming(claimed.unwrap_or(0), None)?;
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        let tmp_dir = self.inner.tmp.clone();
        let space = self.inner.space.clone();
        let writer = tokio::task::spawn_blocking(move || write_temp(&tmp_dir, &space, claimed, rx));

        let streamed = feed(body, tx, 0, limit, claimed).await;
        let written = writer
            .await
            .map_err(|e| StoreError::Task(e.to_string()))??;
        streamed?;
        let Ended::Finished(written) = written else {
            return Err(IngestError::Interrupted("writer stopped".into()));
        };
        if let Some((hash, size)) = expected {
            written.verify(hash, size)?;
        }
        self.commit(written, new).await
    }
}

/// Passes the body's chunks to the writer thread, counting from `start`: over `limit` or
/// the claimed size is an error; at the end of the body it tells the writer to finish.
pub(super) async fn feed<S, E>(
    body: S,
    tx: mpsc::Sender<Msg>,
    start: u64,
    limit: u64,
    claimed: Option<u64>,
) -> Result<(), IngestError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: Display,
{
    let mut body = std::pin::pin!(body);
    let mut received = start;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| IngestError::Interrupted(e.to_string()))?;
        received += chunk.len() as u64;
        if received > limit {
            return Err(IngestError::TooLarge { limit });
        }
        if let Some(size) = claimed
            && received > size
        {
            return Err(IngestError::SizeMismatch {
                expected: size,
                actual: received,
            });
        }
        if tx.send(Msg::Data(chunk)).await.is_err() {
            // The writer failed; its error is reported by the caller.
            return Ok(());
        }
    }
    let _ = tx.send(Msg::Finish).await;
    Ok(())
}

/// The writer thread of an upload into a new temp file: see [`write_chunks`].
fn write_temp(
    tmp_dir: &Path,
    space: &SpaceGuard,
    claimed: Option<u64>,
    rx: mpsc::Receiver<Msg>,
) -> Result<Ended<NamedTempFile>, IngestError> {
    let file = NamedTempFile::new_in(tmp_dir).map_err(StoreError::io(tmp_dir))?;
    let path = file.path().to_owned();
    write_chunks(file, &path, blake3::Hasher::new(), 0, space, claimed, rx)
}

/// The writer thread: hashes and writes chunks after the `start` bytes already in `file`
/// (and in `hasher`) until `Finish` (then fsyncs) or until the channel closes without it, or
/// the disk fills up.
///
/// Every [`CHECK_EVERY`] bytes it checks that the rest of the claimed size (or, when no size
/// was claimed, the next stretch) still fits above the reserve: other writers may be filling
/// the same disk while a long upload streams.
pub(super) fn write_chunks<F: Sink>(
    file: F,
    path: &Path,
    mut hasher: blake3::Hasher,
    start: u64,
    space: &SpaceGuard,
    claimed: Option<u64>,
    mut rx: mpsc::Receiver<Msg>,
) -> Result<Ended<F>, IngestError> {
    let mut out = BufWriter::with_capacity(WRITE_BUFFER, file);
    let mut size = start;
    let mut flushed = start;
    let mut checked = start;
    let full = |source: std::io::Error, size: u64| {
        if source.kind() == std::io::ErrorKind::StorageFull {
            IngestError::NoSpace {
                needed: claimed.unwrap_or(size).max(size),
                available: 0,
                reserve: space.reserve(),
            }
        } else {
            StoreError::Io {
                path: path.to_owned(),
                source,
            }
            .into()
        }
    };
    while let Some(msg) = rx.blocking_recv() {
        match msg {
            Msg::Data(chunk) => {
                hasher.update(&chunk);
                out.write_all(&chunk).map_err(|e| full(e, size))?;
                size += chunk.len() as u64;
                if size - flushed >= WRITEBACK_STEP {
                    start_writeback(out.get_ref().file(), flushed, size - flushed);
                    flushed = size;
                }
                if size - checked >= CHECK_EVERY {
                    let rest = match claimed {
                        Some(total) => total.saturating_sub(size),
                        None => CHECK_EVERY,
                    };
                    space.check(rest)?;
                    checked = size;
                }
            }
            Msg::Finish => {
                let file = out.into_inner().map_err(|e| full(e.into_error(), size))?;
                file.file().sync_all().map_err(|e| full(e, size))?;
                return Ok(Ended::Finished(Written {
                    file,
                    hash: hasher.finalize().into(),
                    size,
                }));
            }
        }
    }
    let file = out.into_inner().map_err(|e| full(e.into_error(), size))?;
    Ok(Ended::Interrupted(file))
}

/// Asks the kernel to start writing a written range to disk now, without waiting, so the
/// final fsync has little left to do and disk I/O overlaps the network transfer.
#[cfg(target_os = "linux")]
pub(super) fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on a file descriptor we own; it reads no memory of ours.
    // Failure only loses the head start: the final fsync still makes the data durable.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

#[cfg(not(target_os = "linux"))]
pub(super) fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

/// Now, UTC, RFC 3339 with millisecond precision.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_millisecond(now.millisecond()).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}
