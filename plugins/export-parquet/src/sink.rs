//! [`ChunkSink`]: the synchronous writer the Parquet encoder writes into, handing bounded
//! chunks to the async side through a bounded channel.

use std::io;

use tokio::sync::mpsc;

/// Bytes per chunk sent to the output.
pub(crate) const CHUNK_BYTES: usize = 64 * 1024;

/// A `std::io::Write` that sends full [`CHUNK_BYTES`] chunks over a channel, blocking when
/// the output is behind (so the encoder never runs ahead of the client by more than the
/// channel's capacity). [`flush`](io::Write::flush) sends the last, shorter chunk; a sink
/// dropped without it never delivers its tail.
pub(crate) struct ChunkSink {
    chunk: Vec<u8>,
    tx: mpsc::Sender<Vec<u8>>,
}

impl ChunkSink {
    pub(crate) fn new(tx: mpsc::Sender<Vec<u8>>) -> ChunkSink {
        ChunkSink {
            chunk: Vec::with_capacity(CHUNK_BYTES),
            tx,
        }
    }

    fn send(&mut self) -> io::Result<()> {
        let full = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK_BYTES));
        self.tx
            .blocking_send(full)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the output was closed"))
    }
}

impl io::Write for ChunkSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        // Take only what fits, so no chunk exceeds CHUNK_BYTES (`write_all` loops).
        let taken = data.len().min(CHUNK_BYTES - self.chunk.len());
        self.chunk.extend_from_slice(&data[..taken]);
        if self.chunk.len() == CHUNK_BYTES {
            self.send()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn sends_bounded_chunks_and_the_tail_only_on_flush() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut sink = ChunkSink::new(tx);
        let data: Vec<u8> = (0..(2 * CHUNK_BYTES + 10)).map(|i| i as u8).collect();
        sink.write_all(&data).unwrap();
        let mut received = Vec::new();
        while let Ok(chunk) = rx.try_recv() {
            assert_eq!(chunk.len(), CHUNK_BYTES);
            received.extend(chunk);
        }
        assert_eq!(received.len(), 2 * CHUNK_BYTES, "the tail waits for flush");
        sink.flush().unwrap();
        received.extend(rx.try_recv().unwrap());
        assert_eq!(received, data);
        drop(sink);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_closed_output_is_an_error() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let mut sink = ChunkSink::new(tx);
        let error = sink.write_all(&vec![0; CHUNK_BYTES]).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::BrokenPipe);
    }
}
