//! Read connections: a small pool, used from blocking threads.
//!
//! WAL lets readers run beside the writer on their own snapshot. A query runs on a
//! `spawn_blocking` thread with a pooled connection; a streamed query sends its rows through
//! a bounded channel, so a large result is never held in memory and a consumer that goes
//! away (a cancelled download) stops the query at its next row.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures::stream::BoxStream;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, Semaphore};

use crate::error::{Result, StoreError};

/// Rows in flight between a streaming query and its consumer.
const STREAM_BUFFER: usize = 256;

pub(crate) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl Readers {
    pub fn new(path: PathBuf, size: usize) -> Readers {
        Readers {
            path,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(size.max(1))),
        }
    }

    fn take(&self) -> Result<Connection> {
        if let Some(conn) = self.idle.lock().ok().and_then(|mut idle| idle.pop()) {
            return Ok(conn);
        }
        open_reader(&self.path)
    }

    fn put(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
    }

    /// Runs `f` with a read connection on a blocking thread.
    pub async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = this.take()?;
            let result = f(&conn);
            this.put(conn);
            drop(permit);
            result
        })
        .await
        .map_err(|e| StoreError::db("read", format!("the reading thread failed: {e}")))?
    }

    /// Streams what `f` sends: `f` gets a read connection and a sink; it stops when the sink
    /// says the consumer is gone. An error `f` returns becomes the stream's last item.
    pub fn stream<T, F>(self: &Arc<Self>, f: F) -> BoxStream<'static, Result<T>>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &Sink<T>) -> Result<()> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let this = self.clone();
        tokio::spawn(async move {
            let Ok(permit) = this.permits.clone().acquire_owned().await else {
                let _ = tx.send(Err(StoreError::Closed)).await;
                return;
            };
            let pool = this.clone();
            let _ = tokio::task::spawn_blocking(move || {
                let sink = Sink(tx);
                let outcome = pool.take().and_then(|conn| {
                    let r = f(&conn, &sink);
                    pool.put(conn);
                    r
                });
                if let Err(e) = outcome {
                    let _ = sink.0.blocking_send(Err(e));
                }
                drop(permit);
            })
            .await;
        });
        Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }))
    }
}

/// Where a streaming query puts its items.
pub(crate) struct Sink<T>(mpsc::Sender<Result<T>>);

impl<T> Sink<T> {
    /// Sends one item; `false` when the consumer is gone (stop reading).
    pub fn send(&self, item: Result<T>) -> bool {
        self.0.blocking_send(item).is_ok()
    }
}

fn open_reader(path: &std::path::Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| StoreError::sqlite("open a read connection", e))?;
    conn.execute_batch(
        "PRAGMA cache_size = -16384; PRAGMA mmap_size = 268435456; PRAGMA busy_timeout = 5000;",
    )
    .map_err(|e| StoreError::sqlite("open a read connection", e))?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}
