//! The single SQLite writer: group commit with the fsync pipelined off the writer thread.
//!
//! Every write (ingest, claims, completions, alerts, exports) is a closure sent to one
//! thread that owns the write connection. The writer runs each closure as it arrives, in its
//! own savepoint inside an open `BEGIN IMMEDIATE` transaction (a failing closure rolls back
//! to its savepoint and fails alone), and commits the open transaction when the **syncer**
//! thread is free. The syncer calls `fdatasync` on the WAL file and only then answers the
//! group's callers; while it waits for the disk the writer already runs the next group's
//! closures. So each fsync covers one commit holding everything that arrived during the
//! previous fsync: commits are as large as the load makes them, and the bytes written per
//! report stay low (each commit rewrites the tail pages of every table and index it touched).
//!
//! Why this is durable: the connection runs `journal_mode=WAL, synchronous=NORMAL`, so a
//! commit writes its frames (commit frame included) to the WAL file without fsync; SQLite
//! still syncs the WAL before each checkpoint copies frames into the database and syncs
//! the WAL header when the file is reused. An answer is sent only after an `fdatasync` of
//! the WAL that started after the commit returned, so every acknowledged transaction's
//! frames are on disk, and WAL recovery replays every transaction whose commit frame and
//! checksums are intact. This is `synchronous=FULL`'s guarantee with the fsync shared and
//! moved off the writer. Readers may see a commit a few milliseconds before it is durable
//! (as with PostgreSQL's `synchronous_commit=off` for readers); what is acknowledged is
//! durable. If an fsync fails the store refuses all further writes
//! ([`StoreError::Durability`]): after a failed fsync the kernel may have dropped the pages,
//! so nothing later could be acknowledged honestly.
//!
//! Checkpoints run on a third thread (`PASSIVE`, every 100 ms), so copying the WAL into the
//! database does not stall commits; the writer's own auto-checkpoint only finishes what the
//! checkpointer has mostly done, so the WAL is rewound and stays bounded.

use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::error::{Result, StoreError};

/// Most queued messages taken before the writer checks whether it may commit.
pub(crate) const MAX_GROUP: usize = 1024;

/// Row ids the writer assigns (it is the only writer, so `max(id) + 1` is free).
#[derive(Debug, Default)]
pub(crate) struct Ids {
    pub next_report: i64,
    pub next_observation: i64,
}

/// A write: runs inside the group transaction, answers after the group is durable.
pub(crate) trait WriteOp: Send {
    fn run(&mut self, conn: &Connection, ids: &mut Ids);
    fn failed(&self) -> bool;
    fn finish(self: Box<Self>, outcome: std::result::Result<(), &StoreError>);
}

struct Op<T, F> {
    work: Option<F>,
    result: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
    /// Room in the queue, given back when the op is answered.
    _permit: OwnedSemaphorePermit,
}

impl<T, F> WriteOp for Op<T, F>
where
    T: Send,
    F: FnOnce(&Connection, &mut Ids) -> Result<T> + Send,
{
    fn run(&mut self, conn: &Connection, ids: &mut Ids) {
        if let Some(work) = self.work.take() {
            self.result = Some(work(conn, ids));
        }
    }

    fn failed(&self) -> bool {
        matches!(self.result, Some(Err(_)))
    }

    fn finish(self: Box<Self>, outcome: std::result::Result<(), &StoreError>) {
        let answer = match (self.result, outcome) {
            (Some(Err(e)), _) => Err(e),
            (_, Err(e)) => Err(e.duplicate()),
            (Some(Ok(v)), Ok(())) => Ok(v),
            (None, Ok(())) => Err(StoreError::Closed),
        };
        // The caller may have gone away (its request was cancelled): the write stands.
        let _ = self.reply.send(answer);
    }
}

/// What the writer thread waits for.
enum Msg {
    /// A write to run.
    Op(Box<dyn WriteOp>),
    /// The syncer finished an fsync: the next group may be committed.
    SyncerIdle,
    /// No more ops will come: finish what is queued and stop.
    Shutdown,
}

/// Handle to the writer, syncer and checkpointer threads.
pub(crate) struct Writer {
    queue: Mutex<Option<std_mpsc::Sender<Msg>>>,
    room: Arc<Semaphore>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stop_checkpoints: Mutex<Option<std_mpsc::Sender<()>>>,
}

struct Poison {
    failed: AtomicBool,
    reason: Mutex<String>,
}

impl Poison {
    fn check(&self) -> std::result::Result<(), StoreError> {
        if self.failed.load(Ordering::Acquire) {
            let reason = self.reason.lock().map(|r| r.clone()).unwrap_or_default();
            return Err(StoreError::Durability(reason));
        }
        Ok(())
    }

    fn set(&self, reason: String) {
        if let Ok(mut r) = self.reason.lock() {
            *r = reason;
        }
        self.failed.store(true, Ordering::Release);
    }
}

impl Writer {
    /// Starts the threads. `conn` is the migrated write connection, `wal` the open WAL file,
    /// `checkpoints` a second connection for the checkpointer; at most `queue` writes wait.
    pub fn start(conn: Connection, wal: File, checkpoints: Connection, queue: usize) -> Writer {
        let (tx, rx) = std_mpsc::channel::<Msg>();
        let (sync_tx, sync_rx) = std_mpsc::channel::<Vec<Box<dyn WriteOp>>>();
        let (stop_tx, stop_rx) = std_mpsc::channel::<()>();
        let poison = Arc::new(Poison {
            failed: AtomicBool::new(false),
            reason: Mutex::new(String::new()),
        });
        let p = poison.clone();
        let idle = tx.clone();
        let writer = std::thread::Builder::new()
            .name("medgate-store-writer".into())
            .spawn(move || write_loop(conn, rx, sync_tx, &p));
        let syncer = std::thread::Builder::new()
            .name("medgate-store-sync".into())
            .spawn(move || sync_loop(wal, sync_rx, idle, &poison));
        let checkpointer = std::thread::Builder::new()
            .name("medgate-store-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpoints, stop_rx));
        let threads = [writer, syncer, checkpointer]
            .into_iter()
            .filter_map(|t| match t {
                Ok(handle) => Some(handle),
                Err(e) => {
                    tracing::error!(error = %e, "cannot start a store thread");
                    None
                }
            })
            .collect();
        Writer {
            queue: Mutex::new(Some(tx)),
            room: Arc::new(Semaphore::new(queue.max(1))),
            threads: Mutex::new(threads),
            stop_checkpoints: Mutex::new(Some(stop_tx)),
        }
    }

    /// Runs `work` in the next group transaction; answers once it is durable.
    ///
    /// # Errors
    /// `work`'s own error (its savepoint was rolled back), a failed commit or fsync, or
    /// [`StoreError::Closed`].
    pub async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Ids) -> Result<T> + Send + 'static,
    {
        let permit = self
            .room
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let (reply, answer) = oneshot::channel();
        let op = Box::new(Op {
            work: Some(work),
            result: None,
            reply,
            _permit: permit,
        });
        {
            let queue = self.queue.lock().map_err(|_| StoreError::Closed)?;
            let queue = queue.as_ref().ok_or(StoreError::Closed)?;
            queue.send(Msg::Op(op)).map_err(|_| StoreError::Closed)?;
        }
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Stops accepting writes, lets the queued ones finish and joins the threads.
    pub fn shut_down(&self) {
        self.stop();
        let threads = self
            .threads
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        for t in threads {
            let _ = t.join();
        }
    }

    fn stop(&self) {
        if let Ok(mut q) = self.queue.lock() {
            if let Some(queue) = q.take() {
                let _ = queue.send(Msg::Shutdown);
            }
        }
        if let Ok(mut s) = self.stop_checkpoints.lock() {
            s.take();
        }
        self.room.close();
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue ends the writer loop after what is queued; the threads finish on
        // their own (a drop must not block an async runtime on joins).
        self.stop();
    }
}

/// The open group: a transaction whose ops ran but are not committed yet.
struct Group {
    ops: Vec<Box<dyn WriteOp>>,
    ids: Ids,
}

/// Runs each op as it arrives inside an open transaction, and commits the whole group only
/// when the syncer is free: while one fsync runs, the next group fills, so a commit carries
/// as much as possible (every commit rewrites the tail pages of each table and index it
/// touched; small commits would multiply the bytes that must be fsynced).
fn write_loop(
    conn: Connection,
    rx: std_mpsc::Receiver<Msg>,
    sync: std_mpsc::Sender<Vec<Box<dyn WriteOp>>>,
    poison: &Poison,
) {
    let mut group: Option<Group> = None;
    let mut syncer_busy = false;
    let mut closing = false;
    loop {
        if closing && group.is_none() && !syncer_busy {
            break;
        }
        let Ok(first) = rx.recv() else { break };
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(msg) = next.take() {
            match msg {
                Msg::Op(op) => run_op(&conn, &mut group, op, poison),
                Msg::SyncerIdle => syncer_busy = false,
                Msg::Shutdown => closing = true,
            }
            taken += 1;
            if taken < MAX_GROUP {
                next = rx.try_recv().ok();
            }
        }
        if !syncer_busy {
            if let Some(g) = group.take() {
                match commit(&conn) {
                    Ok(()) => match sync.send(g.ops) {
                        Ok(()) => syncer_busy = true,
                        Err(std_mpsc::SendError(ops)) => finish_all(ops, Err(&StoreError::Closed)),
                    },
                    Err(e) => finish_all(g.ops, Err(&e)),
                }
            }
        }
    }
    if let Some(g) = group.take() {
        let outcome = commit(&conn);
        finish_all(g.ops, outcome.as_ref().map(|_| ()));
    }
    // Hand the connection back to SQLite, which checkpoints and removes the WAL when the
    // last connection closes.
    drop(sync);
    if let Err((_, e)) = conn.close() {
        tracing::warn!(error = %e, "closing the store's write connection failed");
    }
}

/// Runs one op in the open group (opening it if needed).
fn run_op(conn: &Connection, group: &mut Option<Group>, mut op: Box<dyn WriteOp>, poison: &Poison) {
    if let Err(e) = poison.check() {
        op.finish(Err(&e));
        return;
    }
    if group.is_none() {
        match begin(conn) {
            Ok(ids) => {
                *group = Some(Group {
                    ops: Vec::with_capacity(64),
                    ids,
                })
            }
            Err(e) => {
                op.finish(Err(&e));
                return;
            }
        }
    }
    let Some(g) = group.as_mut() else { return };
    if let Err(e) = run_in_savepoint(conn, op.as_mut(), &mut g.ids) {
        // The transaction is lost: every op in it fails.
        if !conn.is_autocommit() {
            let _ = exec(conn, "ROLLBACK");
        }
        if let Some(g) = group.take() {
            finish_all(g.ops, Err(&e));
        }
        op.finish(Err(&e));
        return;
    }
    g.ops.push(op);
}

fn finish_all(group: Vec<Box<dyn WriteOp>>, outcome: std::result::Result<(), &StoreError>) {
    for op in group {
        op.finish(outcome);
    }
}

fn exec(conn: &Connection, sql: &str) -> Result<()> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute([]))
        .map(|_| ())
        .map_err(|e| StoreError::sqlite("commit", e))
}

fn begin(conn: &Connection) -> Result<Ids> {
    exec(conn, "BEGIN IMMEDIATE")?;
    next_ids(conn).inspect_err(|_| {
        let _ = exec(conn, "ROLLBACK");
    })
}

fn commit(conn: &Connection) -> Result<()> {
    exec(conn, "COMMIT").inspect_err(|_| {
        if !conn.is_autocommit() {
            let _ = exec(conn, "ROLLBACK");
        }
    })
}

/// Runs one op in a savepoint. `Err` only when the whole transaction is lost.
fn run_in_savepoint(conn: &Connection, op: &mut dyn WriteOp, ids: &mut Ids) -> Result<()> {
    exec(conn, "SAVEPOINT op")?;
    op.run(conn, ids);
    if conn.is_autocommit() {
        // SQLite rolled the whole transaction back (I/O error, disk full): every op of the
        // group is lost, not just this one.
        return Err(StoreError::db(
            "commit",
            "the transaction was rolled back by SQLite",
        ));
    }
    if op.failed() {
        exec(conn, "ROLLBACK TO op")?;
    }
    exec(conn, "RELEASE op")
}

fn next_ids(conn: &Connection) -> Result<Ids> {
    let next = |sql: &str| -> Result<i64> {
        conn.prepare_cached(sql)
            .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
            .map_err(|e| StoreError::sqlite("commit", e))
    };
    Ok(Ids {
        next_report: next("SELECT coalesce(max(id), 0) + 1 FROM reports")?,
        next_observation: next("SELECT coalesce(max(id), 0) + 1 FROM observations")?,
    })
}

fn sync_loop(
    wal: File,
    rx: std_mpsc::Receiver<Vec<Box<dyn WriteOp>>>,
    idle: std_mpsc::Sender<Msg>,
    poison: &Poison,
) {
    while let Ok(first) = rx.recv() {
        let mut groups = vec![first];
        while let Ok(more) = rx.try_recv() {
            groups.push(more);
        }
        let outcome = match wal.sync_data() {
            Ok(()) => Ok(()),
            Err(e) => {
                let reason = format!("fsync of the WAL failed: {e}");
                tracing::error!(error = %e, "fsync of the store's WAL failed; refusing further writes");
                poison.set(reason.clone());
                Err(StoreError::Durability(reason))
            }
        };
        for group in groups {
            finish_all(group, outcome.as_ref().map(|_| ()));
        }
        // The writer may be waiting for this to commit the next group.
        let _ = idle.send(Msg::SyncerIdle);
    }
}

fn checkpoint_loop(conn: Connection, stop: std_mpsc::Receiver<()>) {
    // Until the store stops (the sender is dropped).
    while let Err(std_mpsc::RecvTimeoutError::Timeout) =
        stop.recv_timeout(Duration::from_millis(100))
    {
        let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0));
        if let Err(e) = result {
            tracing::warn!(error = %e, "store checkpoint failed");
        }
    }
}
