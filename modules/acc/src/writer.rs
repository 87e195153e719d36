//! The database writer: SIP threads hand records to a bounded in-memory queue and go on;
//! one writer thread inserts them in batches, one database transaction per batch. While
//! the database is unreachable (or slower than `db_timeout`), batches go to an on-disk
//! spool instead, one fsync'd file per batch, and are replayed oldest first once it
//! answers again; a spool file is deleted only after its batch's insert has committed.
//!
//! No duplicates: a replayed record is inserted only when no row with the same values is
//! in its table already, so a batch whose commit went through but whose answer was lost
//! (or a crash between a commit and the file's deletion) is not written twice. Records
//! inserted straight from the queue are new by construction and skip that check.
//!
//! Bounds: `queue_size` records in memory, `spool_max_records` records on disk. A record
//! that finds the queue full, or the spool full, is dropped: logged (at most once a
//! second) and counted ([`Counters`]); the SIP side never waits.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrosip_db::{Cond, Db, DbError, Op};
use tokio::sync::{mpsc, Notify};

use crate::config::WriterConfig;
use crate::record::Record;

/// What happened to records, for the operator (logged at stop, `acc.stats`).
#[derive(Default, Debug)]
pub struct Counters {
    pub queued: AtomicU64,
    pub inserted: AtomicU64,
    pub spooled: AtomicU64,
    pub replayed: AtomicU64,
    /// Replayed records already in the table (their first insert had committed).
    pub already_stored: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    pub dropped_spool_full: AtomicU64,
    /// The spool is not writable (disk full, permissions).
    pub dropped_spool_error: AtomicU64,
    /// Records the database refuses for what they hold (a NOT NULL or length constraint,
    /// a column the table lacks): kept in `rejected.spool` in the spool directory.
    pub rejected: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("queued", self.queued.load(Relaxed)),
            ("inserted", self.inserted.load(Relaxed)),
            ("spooled", self.spooled.load(Relaxed)),
            ("replayed", self.replayed.load(Relaxed)),
            ("already_stored", self.already_stored.load(Relaxed)),
            ("dropped_queue_full", self.dropped_queue_full.load(Relaxed)),
            ("dropped_spool_full", self.dropped_spool_full.load(Relaxed)),
            (
                "dropped_spool_error",
                self.dropped_spool_error.load(Relaxed),
            ),
            ("rejected", self.rejected.load(Relaxed)),
        ]
    }
}

/// Logs a dropped record at most once a second (a flood of drops is one line a second;
/// the counters have the exact number).
struct RateLimit(Mutex<Option<Instant>>);

impl RateLimit {
    fn ready(&self) -> bool {
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
            return false;
        }
        *last = Some(now);
        true
    }
}

/// The SIP side of the writer.
pub struct Writer {
    tx: mpsc::Sender<Record>,
    stop: Arc<Notify>,
    done: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    pub counters: Arc<Counters>,
    drop_log: RateLimit,
}

impl Writer {
    /// Queues a record; never waits.
    pub fn push(&self, record: Record) {
        match self.tx.try_send(record) {
            Ok(()) => {
                self.counters.queued.fetch_add(1, Relaxed);
            }
            Err(_) => {
                let n = self.counters.dropped_queue_full.fetch_add(1, Relaxed) + 1;
                if self.drop_log.ready() {
                    tracing::error!(
                        target: "acc",
                        dropped = n,
                        "acc: record queue full (queue_size): accounting record dropped"
                    );
                }
            }
        }
    }

    /// Stops the writer: what is queued is inserted or spooled; waits at most `limit`.
    pub fn stop(&self, limit: Duration) {
        self.stop.notify_one();
        let done = self.done.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(done) = done {
            if done.recv_timeout(limit).is_err() {
                tracing::error!(target: "acc", "acc: the writer did not finish in time; queued records may be lost");
            }
        }
        tracing::info!(target: "acc", counters = ?self.counters.snapshot(), "acc writer stopped");
    }
}

/// Starts the writer thread: connects to `db_url` on its own runtime, checks the tables'
/// versions (`tables`, when asked), opens the spool and replays what an earlier run left.
pub async fn start(
    db_url: String,
    tables: Vec<(String, i64)>,
    cfg: WriterConfig,
) -> Result<Writer, String> {
    let (tx, rx) = mpsc::channel(cfg.queue_size);
    let stop = Arc::new(Notify::new());
    let counters = Arc::new(Counters::default());
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let thread_stop = stop.clone();
    let thread_counters = counters.clone();
    std::thread::Builder::new()
        .name("acc-writer".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("cannot start the writer: {e}")));
                    return;
                }
            };
            runtime.block_on(async move {
                let setup = async {
                    let db = Db::connect(&db_url).await.map_err(|e| e.to_string())?;
                    for (table, want) in &tables {
                        match db.table_version(table).await {
                            Ok(Some(v)) if v == *want => {}
                            Ok(v) => {
                                return Err(format!(
                                    "table {table} has version {v:?}, {want} expected (ferrosip db init --modules acc)"
                                ))
                            }
                            Err(e) => return Err(e.to_string()),
                        }
                    }
                    let spool = Spool::open(&cfg.spool_dir, cfg.spool_max_records)
                        .map_err(|e| format!("spool_dir {}: {e}", cfg.spool_dir.display()))?;
                    Ok::<_, String>((db, spool))
                };
                let (db, spool) = match setup.await {
                    Ok(x) => {
                        let _ = ready_tx.send(Ok(()));
                        x
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let task = Task {
                    db,
                    spool,
                    rx,
                    cfg,
                    counters: thread_counters,
                    spool_log: RateLimit(Mutex::new(None)),
                };
                task.run(thread_stop).await;
            });
            let _ = done_tx.send(());
        })
        .map_err(|e| format!("cannot start the writer thread: {e}"))?;
    ready_rx
        .await
        .map_err(|_| "the writer thread ended".to_string())??;
    Ok(Writer {
        tx,
        stop,
        done: Mutex::new(Some(done_rx)),
        counters,
        drop_log: RateLimit(Mutex::new(None)),
    })
}

struct Task {
    db: Db,
    spool: Spool,
    rx: mpsc::Receiver<Record>,
    cfg: WriterConfig,
    counters: Arc<Counters>,
    spool_log: RateLimit,
}

/// How long the writer waits after a failed replay before it tries again.
const RETRY: Duration = Duration::from_secs(1);
/// How long the first record of a batch waits for others when the queue holds fewer
/// than `batch_size`.
const BATCH_LINGER: Duration = Duration::from_millis(20);
/// Spool files replayed between two looks at the queue.
const REPLAY_FILES_PER_ROUND: usize = 8;

impl Task {
    async fn run(mut self, stop: Arc<Notify>) {
        let mut db_ok = self.spool.is_empty();
        if !db_ok {
            tracing::info!(target: "acc", records = self.spool.records, "acc: replaying the spool an earlier run left");
        }
        let mut next_retry = Instant::now();
        let mut stopping = false;
        loop {
            let mut batch = Vec::new();
            if !stopping {
                tokio::select! {
                    r = self.rx.recv() => match r {
                        Some(r) => batch.push(r),
                        None => stopping = true,
                    },
                    _ = stop.notified() => stopping = true,
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
            }
            if stopping {
                self.rx.close();
            } else if !batch.is_empty() && self.rx.len() + 1 < self.cfg.batch_size {
                // Let a batch gather: one transaction per record costs the proxy several
                // times the CPU of one per few dozen, and a record may well wait 20 ms.
                tokio::time::sleep(BATCH_LINGER).await;
            }
            while batch.len() < self.cfg.batch_size {
                match self.rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                if db_ok {
                    match self.insert(&batch, false).await {
                        Ok(_) => {
                            self.counters
                                .inserted
                                .fetch_add(batch.len() as u64, Relaxed);
                        }
                        Err(Failure::Refused(e)) => {
                            // One record the table refuses must not hold back the others:
                            // each goes alone, and the refused ones are set aside.
                            tracing::warn!(target: "acc", error = %e, "acc: the database refused a batch: inserting its records one by one");
                            if let Some(rest) = self.one_by_one(&batch, false).await {
                                db_ok = false;
                                next_retry = Instant::now() + RETRY;
                                self.spool_batch(&rest);
                            }
                        }
                        Err(Failure::Unreachable(e)) => {
                            tracing::warn!(target: "acc", error = %e, "acc: database insert failed: records go to the spool until it answers");
                            db_ok = false;
                            next_retry = Instant::now() + RETRY;
                            self.spool_batch(&batch);
                        }
                    }
                } else {
                    self.spool_batch(&batch);
                }
            }
            if !db_ok && Instant::now() >= next_retry {
                db_ok = self.replay().await;
                if !db_ok {
                    next_retry = Instant::now() + RETRY;
                }
            }
            if stopping && batch.is_empty() && self.rx.is_empty() {
                return;
            }
        }
    }

    fn spool_batch(&mut self, batch: &[Record]) {
        match self.spool.write(batch) {
            Ok(kept) => {
                self.counters.spooled.fetch_add(kept as u64, Relaxed);
                let dropped = batch.len() - kept;
                if dropped > 0 {
                    let n = self
                        .counters
                        .dropped_spool_full
                        .fetch_add(dropped as u64, Relaxed)
                        + dropped as u64;
                    if self.spool_log.ready() {
                        tracing::error!(target: "acc", dropped = n, "acc: spool full (spool_max_records): accounting records dropped");
                    }
                }
            }
            Err(e) => {
                let n = self
                    .counters
                    .dropped_spool_error
                    .fetch_add(batch.len() as u64, Relaxed)
                    + batch.len() as u64;
                if self.spool_log.ready() {
                    tracing::error!(target: "acc", error = %e, dropped = n, "acc: cannot write the spool: accounting records dropped");
                }
            }
        }
    }

    /// Replays spool files oldest first; true when the spool is empty afterwards.
    async fn replay(&mut self) -> bool {
        for _ in 0..REPLAY_FILES_PER_ROUND {
            let records = match self.spool.oldest() {
                None => {
                    tracing::info!(target: "acc", "acc: spool replayed; records go straight to the database again");
                    return true;
                }
                Some(Ok(records)) => records,
                Some(Err(e)) => {
                    tracing::error!(target: "acc", error = %e, "acc: unreadable spool file kept aside");
                    self.spool.set_aside();
                    continue;
                }
            };
            match self.insert(&records, true).await {
                Ok(already) => {
                    self.spool.remove_oldest();
                    self.counters
                        .replayed
                        .fetch_add((records.len() - already) as u64, Relaxed);
                    self.counters
                        .already_stored
                        .fetch_add(already as u64, Relaxed);
                }
                Err(Failure::Refused(e)) => {
                    tracing::warn!(target: "acc", error = %e, "acc: the database refused a spooled batch: replaying its records one by one");
                    if self.one_by_one(&records, true).await.is_some() {
                        return false;
                    }
                    self.spool.remove_oldest();
                }
                Err(Failure::Unreachable(e)) => {
                    tracing::debug!(target: "acc", error = %e, "acc: database still unreachable");
                    return false;
                }
            }
        }
        self.spool.is_empty()
    }

    /// Inserts `records` one per transaction after their batch was refused; the ones the
    /// database refuses go to the rejected file. `Some(the rest)` when the database became
    /// unreachable on the way.
    async fn one_by_one(&mut self, records: &[Record], dedupe: bool) -> Option<Vec<Record>> {
        for (i, r) in records.iter().enumerate() {
            match self.insert(std::slice::from_ref(r), dedupe).await {
                Ok(already) => {
                    let counter = if dedupe {
                        if already == 0 {
                            &self.counters.replayed
                        } else {
                            &self.counters.already_stored
                        }
                    } else {
                        &self.counters.inserted
                    };
                    counter.fetch_add(1, Relaxed);
                }
                Err(Failure::Refused(e)) => self.reject(r, &e),
                Err(Failure::Unreachable(_)) => return Some(records[i..].to_vec()),
            }
        }
        None
    }

    /// Keeps a record the database refuses in `rejected.spool` (the spool's format, for an
    /// operator to fix and load), counted and logged.
    fn reject(&mut self, r: &Record, why: &str) {
        let mut line = String::new();
        r.encode(&mut line);
        let path = self.spool.dir.join("rejected.spool");
        let kept = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()).and_then(|_| f.sync_data()));
        let n = self.counters.rejected.fetch_add(1, Relaxed) + 1;
        match kept {
            Ok(()) => {
                tracing::error!(target: "acc", error = %why, table = %r.table, rejected = n, file = %path.display(), "acc: the database refuses a record: kept in the rejected file")
            }
            Err(e) => {
                tracing::error!(target: "acc", error = %why, table = %r.table, rejected = n, write_error = %e, "acc: the database refuses a record and the rejected file cannot be written: record lost")
            }
        }
    }

    /// Inserts `records` in one transaction (db_text: one by one); with `dedupe`, those
    /// already in their table are skipped and counted in the result.
    async fn insert(&self, records: &[Record], dedupe: bool) -> Result<usize, Failure> {
        let work = async {
            let mut todo: Vec<&Record> = Vec::with_capacity(records.len());
            for r in records {
                if dedupe && stored(&self.db, r).await? {
                    continue;
                }
                todo.push(r);
            }
            let already = records.len() - todo.len();
            if self.db.kind() == ferrosip_db::DbKind::Text {
                for r in todo {
                    let cols: Vec<&str> = r.cols.iter().map(String::as_str).collect();
                    self.db.insert(&r.table, &cols, &r.vals).await?;
                }
            } else if !todo.is_empty() {
                let mut tx = self.db.transaction().await?;
                for r in todo {
                    let cols: Vec<&str> = r.cols.iter().map(String::as_str).collect();
                    tx.insert(&r.table, &cols, &r.vals).await?;
                }
                tx.commit().await?;
            }
            Ok::<_, DbError>(already)
        };
        match tokio::time::timeout(self.cfg.db_timeout, work).await {
            Ok(Ok(already)) => Ok(already),
            Ok(Err(e)) if e.is_statement_refused() => Err(Failure::Refused(e.to_string())),
            Ok(Err(e)) => Err(Failure::Unreachable(e.to_string())),
            Err(_) => Err(Failure::Unreachable(format!(
                "no answer within db_timeout ({} ms)",
                self.cfg.db_timeout.as_millis()
            ))),
        }
    }
}

/// Why an insert did not go through.
enum Failure {
    /// The database did not answer, lost the connection, or failed in a way another try
    /// may not (busy, deadlock, shutting down): try again later.
    Unreachable(String),
    /// The database answered no to the statement: trying again gives the same answer.
    Refused(String),
}

/// Whether a row with the record's (non-NULL) values is in its table.
async fn stored(db: &Db, r: &Record) -> Result<bool, DbError> {
    let conds: Vec<Cond<'_>> = r
        .cols
        .iter()
        .zip(&r.vals)
        .filter(|(_, v)| !v.is_null())
        .map(|(c, v)| Cond::new(c, Op::Eq, v.clone()))
        .collect();
    let first = r.cols.first().map_or("id", String::as_str);
    Ok(!db
        .select(&r.table, &[first], &conds, None)
        .await?
        .is_empty())
}

/// The on-disk spool: `acc-<run>-<seq>.spool` files of one batch each, oldest first.
struct Spool {
    dir: PathBuf,
    max: u64,
    /// Records in the files.
    records: u64,
    files: VecDeque<(PathBuf, u64)>,
    run: u64,
    seq: u64,
}

impl Spool {
    fn open(dir: &Path, max: u64) -> std::io::Result<Spool> {
        std::fs::create_dir_all(dir)?;
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with("acc-") && name.ends_with(".tmp") {
                // Never renamed: its batch was not spooled (it went on being retried).
                let _ = std::fs::remove_file(&path);
            } else if name.starts_with("acc-") && name.ends_with(".spool") {
                names.push(path);
            }
        }
        names.sort();
        let mut files = VecDeque::new();
        let mut records = 0;
        for path in names {
            let n = std::fs::read_to_string(&path)?
                .lines()
                .filter(|l| !l.is_empty())
                .count() as u64;
            records += n;
            files.push_back((path, n));
        }
        let run = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        Ok(Spool {
            dir: dir.to_path_buf(),
            max,
            records,
            files,
            run,
            seq: 0,
        })
    }

    fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Writes what fits of `batch` as one file, synced; returns how many records it kept.
    fn write(&mut self, batch: &[Record]) -> std::io::Result<usize> {
        let room = self.max.saturating_sub(self.records) as usize;
        let kept = &batch[..batch.len().min(room)];
        if kept.is_empty() {
            return Ok(0);
        }
        let mut text = String::new();
        for r in kept {
            r.encode(&mut text);
        }
        self.seq += 1;
        let name = format!("acc-{:020}-{:010}", self.run, self.seq);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let path = self.dir.join(format!("{name}.spool"));
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        self.records += kept.len() as u64;
        self.files.push_back((path, kept.len() as u64));
        Ok(kept.len())
    }

    fn oldest(&self) -> Option<std::io::Result<Vec<Record>>> {
        let (path, _) = self.files.front()?;
        Some(std::fs::read_to_string(path).and_then(|text| {
            text.lines()
                .filter(|l| !l.is_empty())
                .map(|l| {
                    Record::decode(l).ok_or_else(|| {
                        std::io::Error::new(std::io::ErrorKind::InvalidData, "not a spool line")
                    })
                })
                .collect()
        }))
    }

    /// The oldest file's batch has committed: it goes.
    fn remove_oldest(&mut self) {
        if let Some((path, n)) = self.files.pop_front() {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::error!(target: "acc", error = %e, path = %path.display(), "acc: cannot delete a replayed spool file");
            }
            self.records -= n;
        }
    }

    /// An unreadable file is renamed `.bad` for the operator and no longer replayed.
    fn set_aside(&mut self) {
        if let Some((path, n)) = self.files.pop_front() {
            let _ = std::fs::rename(&path, path.with_extension("bad"));
            self.records -= n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrosip_db::DbValue;

    fn rec(i: i64) -> Record {
        Record {
            table: "acc".into(),
            cols: vec!["callid".to_string(), "time".into()].into(),
            vals: vec![DbValue::Str(format!("c{i}")), DbValue::Time(i)],
        }
    }

    #[test]
    fn the_spool_keeps_its_bound_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 5).unwrap();
        assert_eq!(s.write(&[rec(1), rec(2), rec(3)]).unwrap(), 3);
        assert_eq!(s.write(&[rec(4), rec(5), rec(6)]).unwrap(), 2);
        assert_eq!(s.write(&[rec(7)]).unwrap(), 0);
        drop(s);
        let mut s = Spool::open(dir.path(), 5).unwrap();
        assert_eq!(s.records, 5);
        assert_eq!(s.oldest().unwrap().unwrap(), vec![rec(1), rec(2), rec(3)]);
        s.remove_oldest();
        assert_eq!(s.oldest().unwrap().unwrap(), vec![rec(4), rec(5)]);
        assert_eq!(s.write(&[rec(8)]).unwrap(), 1);
        s.remove_oldest();
        assert_eq!(s.oldest().unwrap().unwrap(), vec![rec(8)]);
        s.remove_oldest();
        assert!(s.is_empty());
        assert_eq!(s.records, 0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}

#[cfg(test)]
mod refused {
    use super::*;
    use ferrosip_db::DbValue;

    fn cdr(callid: &str, duration: DbValue) -> Record {
        Record {
            table: "t".into(),
            cols: vec!["callid".to_string(), "duration".into()].into(),
            vals: vec![DbValue::Str(callid.into()), duration],
        }
    }

    /// A record the table refuses (a NULL in a NOT NULL column) goes to the rejected file;
    /// the records of its batch and those after it are inserted, none is spooled for ever.
    #[test]
    fn a_refused_record_is_set_aside_and_the_others_go_in() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("acc.db").display());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let db = Db::connect(&url).await.expect("db");
            db.raw_query(
                "CREATE TABLE t (callid VARCHAR(64) NOT NULL, duration REAL NOT NULL)",
                0,
            )
            .await
            .expect("table");
            let cfg = WriterConfig {
                queue_size: 100,
                batch_size: 10,
                spool_dir: dir.path().join("spool"),
                spool_max_records: 100,
                db_timeout: Duration::from_secs(5),
            };
            let w = start(url.clone(), Vec::new(), cfg).await.expect("writer");
            w.push(cdr("a", DbValue::Double(1.5)));
            w.push(cdr("bad", DbValue::Null));
            w.push(cdr("b", DbValue::Double(0.0)));
            tokio::time::sleep(Duration::from_millis(300)).await;
            w.push(cdr("c", DbValue::Double(2.0)));
            let deadline = Instant::now() + Duration::from_secs(10);
            while w.counters.inserted.load(Relaxed) < 3 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            w.stop(Duration::from_secs(5));
            let rows = db.select("t", &["callid"], &[], None).await.expect("rows");
            let mut ids: Vec<String> = rows
                .iter()
                .map(|r| r[0].as_str().unwrap_or("").to_string())
                .collect();
            ids.sort();
            assert_eq!(ids, ["a", "b", "c"]);
            assert_eq!(w.counters.rejected.load(Relaxed), 1);
            assert_eq!(w.counters.spooled.load(Relaxed), 0);
            let rejected = std::fs::read_to_string(dir.path().join("spool/rejected.spool"))
                .expect("rejected file");
            assert_eq!(rejected.lines().count(), 1);
            assert!(rejected.contains("bad"), "{rejected}");
        });
    }
}
