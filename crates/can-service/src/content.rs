//! Streaming a stored file out: a blocking thread reads it ahead in large chunks, so the
//! network side never waits on a read and each byte is copied once on its way out of the
//! page cache.
//!
//! `tokio::fs::File` would hop to the blocking pool for every read, only when polled (no
//! read-ahead: the next read starts after the last chunk was sent), and copy each chunk
//! twice (into its own buffer, then into the caller's).

use std::io::Read;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Bytes per chunk: large enough that per-chunk costs (a channel hop, a QUIC write, a
/// syscall) vanish, small enough that a few in flight cost little memory.
pub const CHUNK: usize = 256 * 1024;
/// Chunks read ahead of the consumer (1 MiB per open stream).
const AHEAD: usize = 4;

/// `file` from its current position to its end, as a stream of [`CHUNK`]-sized pieces
/// (the last may be shorter). The reading thread stops when the stream is dropped; while a
/// slow consumer holds the stream, the thread waits (parked, not spinning).
pub fn read_ahead(mut file: std::fs::File) -> impl Stream<Item = std::io::Result<Bytes>> {
    let (tx, rx) = mpsc::channel(AHEAD);
    tokio::task::spawn_blocking(move || {
        loop {
            let mut buf = BytesMut::zeroed(CHUNK);
            let mut filled = 0;
            while filled < CHUNK {
                match file.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
            if filled == 0 {
                return;
            }
            buf.truncate(filled);
            if tx.blocking_send(Ok(buf.freeze())).is_err() || filled < CHUNK {
                return;
            }
        }
    });
    ReceiverStream::new(rx)
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
