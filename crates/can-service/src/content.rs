//! Streaming a stored file out: large chunks read ahead of the consumer on the blocking
//! pool, so the network side never waits on a read and each byte is copied once on its
//! way out of the page cache.
//!
//! `tokio::fs::File` reads only when polled (no read-ahead: the next read starts after
//! the last chunk was sent) and copies each chunk twice (into its own buffer, then into
//! the caller's). Each read here is one blocking-pool job, as there, so a slow consumer
//! holds no thread: only its queued chunks.

use std::io::Read;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Bytes per chunk: large enough that per-chunk costs (a channel hop, a QUIC write, a
/// syscall) vanish, small enough that a few in flight cost little memory.
pub const CHUNK: usize = 256 * 1024;
/// Chunks read ahead of the consumer: at most three chunks (768 KiB) per open stream, two
/// queued and one being read.
const AHEAD: usize = 2;

/// `file` from its current position to its end, as a stream of [`CHUNK`]-sized pieces
/// (the last may be shorter). Reading stops when the stream is dropped. A read that fails,
/// or a reading job that dies, ends the stream with an error: it never ends short quietly.
/// Call within a Tokio runtime.
pub fn read_ahead(file: std::fs::File) -> impl Stream<Item = std::io::Result<Bytes>> {
    let (tx, rx) = mpsc::channel(AHEAD);
    tokio::spawn(async move {
        let mut file = file;
        loop {
            // A slot first, so nothing is read for a consumer that is gone or behind.
            let Ok(slot) = tx.reserve().await else {
                return;
            };
            let read = tokio::task::spawn_blocking(move || {
                let chunk = read_chunk(&mut file);
                (file, chunk)
            })
            .await;
            match read {
                Ok((back, Ok(chunk))) => {
                    let full = chunk.len() == CHUNK;
                    if !chunk.is_empty() {
                        slot.send(Ok(chunk));
                    }
                    if !full {
                        return;
                    }
                    file = back;
                }
                Ok((_, Err(e))) => {
                    slot.send(Err(e));
                    return;
                }
                Err(e) => {
                    slot.send(Err(std::io::Error::other(format!("reading failed: {e}"))));
                    return;
                }
            }
        }
    });
    ReceiverStream::new(rx)
}

/// Up to [`CHUNK`] bytes: fewer only at the end of the file.
fn read_chunk(file: &mut std::fs::File) -> std::io::Result<Bytes> {
    let mut buf = BytesMut::zeroed(CHUNK);
    let mut filled = 0;
    while filled < CHUNK {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use std::io::{Seek, SeekFrom, Write};

    use futures_util::StreamExt;

    use super::*;

    async fn collect(file: std::fs::File) -> Vec<Bytes> {
        read_ahead(file).map(|c| c.expect("read")).collect().await
    }

    #[tokio::test]
    async fn streams_the_rest_of_the_file_in_whole_chunks() {
        let data: Vec<u8> = (0..(2 * CHUNK + 1000)).map(|i| (i % 251) as u8).collect();
        let mut file = tempfile::tempfile().expect("temp file");
        file.write_all(&data).expect("write");
        file.seek(SeekFrom::Start(10)).expect("seek");
        let chunks = collect(file).await;
        let sizes: Vec<usize> = chunks.iter().map(Bytes::len).collect();
        assert_eq!(sizes, [CHUNK, CHUNK, 990]);
        assert_eq!(chunks.concat(), data[10..]);
    }

    #[tokio::test]
    async fn an_empty_rest_and_an_exact_multiple_end_cleanly() {
        let mut file = tempfile::tempfile().expect("temp file");
        assert!(collect(file.try_clone().expect("clone")).await.is_empty());
        file.write_all(&vec![7u8; CHUNK]).expect("write");
        file.seek(SeekFrom::Start(0)).expect("seek");
        let chunks = collect(file).await;
        assert_eq!(chunks.iter().map(Bytes::len).collect::<Vec<_>>(), [CHUNK]);
    }
}
