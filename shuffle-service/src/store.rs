//! Durable registrations: executors (RegisterExecutor) and drivers (RegisterDriver and their
//! last heartbeat), kept in one redb file so a restarted service still knows the executors of
//! running applications.
//!
//! Records use Spark's own layout for its registered-executor DB: key
//! `AppExecShuffleInfo;{"appId":…,"execId":…}`, value the JSON of `ExecutorShuffleInfo`, plus a
//! `StoreVersion` record. Drivers go to a table of their own (Spark's Mesos service keeps them in
//! memory only), keyed by appId.
//!
//! Writes go through one committer thread that commits whatever is queued in one durable
//! transaction (group commit), so concurrent registrations share an fsync.
//!
//! When a caller is answered is [`SyncPolicy`] (`croupier.state.sync`):
//! - `background` (the default): a journal thread first appends the queued operations to
//!   `registrations-<port>.journal` ([`crate::journal`]) with one `write` and answers; the
//!   committer then commits them, commits starting at least `COMMIT_SPACING` (50 ms) apart
//!   (at once for a Close, or when the journal thread needs the journal committed to empty
//!   it), so a stream of registrations shares a few fsyncs instead of taking one after
//!   another. What was answered survives a crash or kill of the service (the kernel holds it;
//!   the journal is replayed at the next start), as Spark's own LevelDB store does; a power
//!   loss before the commit can lose it. The journal
//!   is emptied whenever everything in it is committed. A failed append is reported to the
//!   callers (nothing is answered that is not at least in the journal); a commit that fails
//!   is retried, its operations kept, and the journal is not emptied until it succeeds; if it
//!   keeps failing until the journal holds [`MAX_JOURNAL`] bytes, new writes are refused.
//! - `always`: the committer answers once the transaction is on disk (fsynced), which also
//!   survives a power loss, at the cost of an fsync in every registration's answer.
//!
//! Blocking callers are blocking-pool jobs, never reactor threads; async callers
//! ([`Store::put_executor_async`], [`Store::put_driver_async`]) await the answer without
//! holding a thread.
//!
//! A failed commit is never reported as stored. After any write error redb refuses every later
//! transaction (`PreviousIo`) until the file is reopened, so the committer closes the database,
//! reopens it (redb repairs the file) and retries the batch once; if that fails too, the
//! batch's waiting callers get [`StoreError::Write`], and the next batch starts by reopening.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::journal::{AppendError, Journal};
use crate::protocol::ExecutorShuffleInfo;
use crate::stamp::{BootTime, Stamp};

const EXECUTORS: TableDefinition<&str, &str> = TableDefinition::new("registered_executors");
const DRIVERS: TableDefinition<&str, &str> = TableDefinition::new("registered_drivers");
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");

/// Spark's key prefix for an executor record.
const APP_KEY_PREFIX: &str = "AppExecShuffleInfo;";
const VERSION_KEY: &str = "StoreVersion";
const CURRENT_VERSION: &str = r#"{"major":1,"minor":0}"#;

/// The store file's name inside `croupier.state.dir`, per service port (two services on one
/// host never share a file, and a restart on the same port finds its own).
pub fn file_name(port: u16) -> String {
    format!("registrations-{port}.redb")
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the state directory {dir} (croupier.state.dir): {source}")]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("the registration store {path} is in use by another process (another croupier-shuffle-service with the same croupier.state.dir and port?)")]
    InUse { path: PathBuf },
    #[error("the registration store {path} is unreadable: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("cannot write to the registration store {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("the registration store {path} is closed (its writer thread stopped)")]
    Closed { path: PathBuf },
}

impl StoreError {
    /// A write may succeed later (disk full, transient I/O); opening problems need an operator.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Write { .. })
    }
}

#[derive(Serialize)]
struct AppExecId<'a> {
    #[serde(rename = "appId")]
    app_id: &'a str,
    #[serde(rename = "execId")]
    exec_id: &'a str,
}

#[derive(Serialize, Deserialize)]
struct AppExecIdOwned {
    #[serde(rename = "appId")]
    app_id: String,
    #[serde(rename = "execId")]
    exec_id: String,
}

#[derive(Serialize, Deserialize)]
struct InfoRecord {
    #[serde(rename = "localDirs")]
    local_dirs: Vec<String>,
    #[serde(rename = "subDirsPerLocalDir")]
    sub_dirs_per_local_dir: i32,
    #[serde(rename = "shuffleManager")]
    shuffle_manager: String,
}

#[derive(Serialize, Deserialize)]
struct DriverRecord {
    #[serde(rename = "heartbeatTimeoutMs")]
    heartbeat_timeout_ms: u64,
    /// Wall-clock milliseconds since the epoch of the last RegisterDriver or heartbeat.
    #[serde(rename = "lastHeartbeatMs")]
    last_heartbeat_ms: u64,
    /// The same moment on `CLOCK_BOOTTIME` (milliseconds) and the boot it was read in: what
    /// its age is measured by after a restart in the same boot (see [`crate::stamp`]). Absent
    /// in records of earlier versions, which are aged by the wall clock.
    #[serde(rename = "bootId", default, skip_serializing_if = "Option::is_none")]
    boot_id: Option<String>,
    #[serde(
        rename = "bootTimeMs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    boot_time_ms: Option<u64>,
}

impl DriverRecord {
    fn last_heartbeat(&self) -> Stamp {
        let wall = UNIX_EPOCH + Duration::from_millis(self.last_heartbeat_ms);
        let boot = match (&self.boot_id, self.boot_time_ms) {
            (Some(id), Some(ms)) => Some(BootTime {
                boot_id: id.clone(),
                since_boot: Duration::from_millis(ms),
            }),
            _ => None,
        };
        Stamp { wall, boot }
    }
}

fn executor_key(app_id: &str, exec_id: &str) -> String {
    let json = serde_json::to_string(&AppExecId { app_id, exec_id }).unwrap_or_default();
    format!("{APP_KEY_PREFIX}{json}")
}

/// Every executor key of `app_id` starts with this.
fn app_prefix(app_id: &str) -> String {
    let k = executor_key(app_id, "");
    // Drop the empty execId's closing `"}`, keeping `…,"execId":"`.
    k[..k.len() - 2].to_owned()
}

pub fn to_unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A stored driver registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDriver {
    pub app_id: String,
    pub heartbeat_timeout: Duration,
    pub last_heartbeat: Stamp,
}

/// What was read back at start-up.
#[derive(Debug, Default)]
pub struct Restored {
    pub executors: Vec<(String, String, ExecutorShuffleInfo)>,
    pub drivers: Vec<StoredDriver>,
    /// Records that could not be decoded (skipped, and logged by the caller).
    pub bad_records: Vec<String>,
}

/// How opening went when the service still starts.
#[derive(Debug)]
pub enum Opened {
    /// The file was read (or created empty).
    Clean,
    /// The file was corrupt or unreadable: moved aside to `moved_to`, started empty.
    MovedAside { reason: String, moved_to: PathBuf },
}

/// When a write is answered (`croupier.state.sync`; see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncPolicy {
    /// Once in the journal: survives a crash of the service, not a power loss.
    #[default]
    Background,
    /// Once fsynced.
    Always,
}

impl SyncPolicy {
    /// The setting's value.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncPolicy::Background => "background",
            SyncPolicy::Always => "always",
        }
    }

    /// Parses `background` or `always`.
    pub fn parse(v: &str) -> Option<SyncPolicy> {
        match v {
            "background" => Some(SyncPolicy::Background),
            "always" => Some(SyncPolicy::Always),
            _ => None,
        }
    }
}

enum Op {
    PutExecutor {
        app_id: String,
        exec_id: String,
        info: ExecutorShuffleInfo,
    },
    PutDriver(StoredDriver),
    /// Last-heartbeat updates (app, wall-clock time); unknown apps are skipped.
    Heartbeats(Vec<(String, Stamp)>),
    RemoveApp(String),
    /// Write what is queued, close the file cleanly (so the next open needs no repair), stop.
    Close,
}

impl Op {
    fn put_executor(app_id: &str, exec_id: &str, info: &ExecutorShuffleInfo) -> Op {
        Op::PutExecutor {
            app_id: app_id.to_owned(),
            exec_id: exec_id.to_owned(),
            info: info.clone(),
        }
    }

    /// The journal record of this operation (`None` for [`Op::Close`], which is not one).
    fn logged(&self) -> Option<Logged> {
        Some(match self {
            Op::PutExecutor {
                app_id,
                exec_id,
                info,
            } => Logged::PutExecutor {
                app_id: app_id.clone(),
                exec_id: exec_id.clone(),
                info: info_record(info),
            },
            Op::PutDriver(d) => Logged::PutDriver {
                app_id: d.app_id.clone(),
                driver: driver_record(d.heartbeat_timeout, &d.last_heartbeat),
            },
            Op::Heartbeats(beats) => Logged::Heartbeats {
                beats: beats
                    .iter()
                    .map(|(app, at)| (app.clone(), driver_record(Duration::ZERO, at)))
                    .collect(),
            },
            Op::RemoveApp(app) => Logged::RemoveApp {
                app_id: app.clone(),
            },
            Op::Close => return None,
        })
    }
}

/// An operation as the journal keeps it (JSON).
#[derive(Serialize, Deserialize)]
#[serde(tag = "op")]
enum Logged {
    PutExecutor {
        app_id: String,
        exec_id: String,
        info: InfoRecord,
    },
    PutDriver {
        app_id: String,
        driver: DriverRecord,
    },
    /// The records' timeouts are unused (a heartbeat keeps the stored one).
    Heartbeats {
        beats: Vec<(String, DriverRecord)>,
    },
    RemoveApp {
        app_id: String,
    },
}

impl Logged {
    fn into_op(self) -> Op {
        match self {
            Logged::PutExecutor {
                app_id,
                exec_id,
                info,
            } => Op::PutExecutor {
                app_id,
                exec_id,
                info: info.into_info(),
            },
            Logged::PutDriver { app_id, driver } => Op::PutDriver(StoredDriver {
                app_id,
                heartbeat_timeout: Duration::from_millis(driver.heartbeat_timeout_ms),
                last_heartbeat: driver.last_heartbeat(),
            }),
            Logged::Heartbeats { beats } => Op::Heartbeats(
                beats
                    .into_iter()
                    .map(|(app, d)| (app, d.last_heartbeat()))
                    .collect(),
            ),
            Logged::RemoveApp { app_id } => Op::RemoveApp(app_id),
        }
    }
}

/// Operations in order, each with the caller waiting for it (if any).
type Queued = Vec<(Op, Option<Done>)>;

/// Operations on their way to the committer, in order, each with the caller still waiting for
/// it (`None`: answered already, from the journal), and how far the journal held them.
struct Commit {
    ops: Queued,
    journal_end: Option<u64>,
    /// Commit now, without waiting out [`COMMIT_SPACING`]: the journal thread waits for the
    /// committer to catch up.
    wake: bool,
}

impl Commit {
    /// Operations the journal holds up to `journal_end`.
    fn journaled(ops: Queued, journal_end: Option<u64>) -> Commit {
        Commit {
            ops,
            journal_end,
            wake: false,
        }
    }

    /// No operation: tells a committer waiting out [`COMMIT_SPACING`] to commit now.
    fn wake() -> Commit {
        Commit {
            ops: Vec::new(),
            journal_end: None,
            wake: true,
        }
    }

    /// Whether the committer should commit without waiting out the spacing: a wake-up, or an
    /// operation someone waits on.
    fn urgent(&self) -> bool {
        self.wake || self.ops.iter().any(|(_, done)| done.is_some())
    }

    /// Adds `later` (queued behind these operations) to this batch.
    fn merge(&mut self, later: Commit) {
        self.journal_end = self.journal_end.max(later.journal_end);
        self.wake |= later.wake;
        self.ops.extend(later.ops);
    }

    /// One caller's operation, as [`Store`] hands it to the first thread.
    fn one(op: Op, done: Done) -> Commit {
        Commit::journaled(vec![(op, Some(done))], None)
    }
}

/// Where a caller is told how its write went.
enum Done {
    Blocking(mpsc::SyncSender<Result<(), String>>),
    Async(tokio::sync::oneshot::Sender<Result<(), String>>),
}

impl Done {
    fn send(self, r: Result<(), String>) {
        // A caller that went away (its connection closed) needs no answer.
        let _ = match self {
            Done::Blocking(tx) => tx.send(r).map_err(|_| ()),
            Done::Async(tx) => tx.send(r).map_err(|_| ()),
        };
    }
}

/// Most operations one transaction (or one journal append) carries.
const MAX_BATCH: usize = 1024;

/// Journal bytes not yet committed beyond which new writes are refused (the commit keeps
/// failing; see the module docs).
pub const MAX_JOURNAL: u64 = 64 << 20;

/// How long the committer waits before retrying operations whose commit failed, when nothing
/// new arrives; and how often an idle journal thread empties a committed journal.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// Least time between the starts of two commits of operations already answered from the
/// journal. Each commit is a redb transaction and an fsync; under a stream of registrations
/// committing as fast as possible takes CPU and disk time from the connections it serves, for
/// nothing: the journal already has what it commits. Operations someone waits on (`always`,
/// Close) and a wake-up from the journal thread waiting to empty the journal are committed at
/// once.
const COMMIT_SPACING: Duration = Duration::from_millis(50);

/// Journal bytes past which the journal thread, before its next append, waits for the
/// committer to catch up and empties the file: under a steady stream of registrations the
/// committer is always a little behind, so the file would otherwise never be empty.
#[cfg(not(test))]
const EMPTY_AT: u64 = 4 << 20;
#[cfg(test)]
const EMPTY_AT: u64 = 64 << 10;

/// How long the journal thread waits for a healthy committer to catch up (a few commits).
const CATCH_UP_WAIT: Duration = Duration::from_secs(2);

/// What the committer tells the journal thread.
#[derive(Default)]
struct Progress {
    /// The journal offset up to which everything is committed.
    committed: AtomicU64,
    /// Whether the last commit failed (then nobody waits for the committer to catch up).
    failing: AtomicBool,
    /// The journal offset after the last append.
    appended: AtomicU64,
    /// Commits that failed (after one reopen-and-retry), whoever was waiting for them.
    commit_failures: AtomicU64,
    /// Commits that succeeded.
    commits: AtomicU64,
}

/// A handle on the store; cheap to clone (its threads own the database and the journal).
#[derive(Clone)]
pub struct Store {
    path: PathBuf,
    tx: mpsc::Sender<Commit>,
    progress: Arc<Progress>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.path.display())
    }
}

impl Store {
    /// [`Store::open_with`] the default [`SyncPolicy`].
    pub fn open(dir: &Path, port: u16) -> Result<(Store, Restored, Opened), StoreError> {
        Store::open_with(dir, port, SyncPolicy::default())
    }

    /// Opens (or creates) `<dir>/registrations-<port>.redb`, applies what its journal holds
    /// (operations answered before a crash and not yet committed) and reads every record. A
    /// file that cannot be read is moved aside and a new one started; only a file held by
    /// another process or a directory that cannot be created or written is an error.
    pub fn open_with(
        dir: &Path,
        port: u16,
        sync: SyncPolicy,
    ) -> Result<(Store, Restored, Opened), StoreError> {
        Store::open_spaced(dir, port, sync, COMMIT_SPACING)
    }

    /// [`Store::open_with`], committing answered operations at most once per `spacing`.
    fn open_spaced(
        dir: &Path,
        port: u16,
        sync: SyncPolicy,
        spacing: Duration,
    ) -> Result<(Store, Restored, Opened), StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            dir: dir.to_owned(),
            source,
        })?;
        let path = dir.join(file_name(port));
        let journal_path = dir.join(crate::journal::file_name(port));
        let (db, restored, opened) = match open_and_read(&path, &journal_path) {
            Ok((db, r)) => (db, r, Opened::Clean),
            Err(OpenFailure::InUse) => return Err(StoreError::InUse { path }),
            Err(OpenFailure::Replay(reason)) => {
                return Err(StoreError::Write {
                    path: journal_path,
                    reason,
                })
            }
            Err(OpenFailure::Bad(reason)) => {
                let moved_to = aside_name(&path);
                std::fs::rename(&path, &moved_to).map_err(|e| StoreError::Unreadable {
                    path: path.clone(),
                    reason: format!(
                        "{reason}; and it cannot be moved aside to {}: {e}",
                        moved_to.display()
                    ),
                })?;
                let (db, r) =
                    open_and_read(&path, &journal_path).map_err(|e| StoreError::Unreadable {
                        path: path.clone(),
                        reason: match e {
                            OpenFailure::InUse => "in use after moving the bad file aside".into(),
                            OpenFailure::Bad(r) | OpenFailure::Replay(r) => {
                                format!("a new store cannot be created: {r}")
                            }
                        },
                    })?;
                (db, r, Opened::MovedAside { reason, moved_to })
            }
        };
        let cannot_start = |what: &str, e: std::io::Error| StoreError::Unreadable {
            path: path.clone(),
            reason: format!("cannot start the {what}: {e}"),
        };
        let (to_commit, commits) = mpsc::channel::<Commit>();
        let committed = Arc::new(Progress::default());
        let tx = match sync {
            SyncPolicy::Always => {
                // Its records were applied above; left in place they would be applied again at
                // every start, over whatever was removed since.
                match std::fs::remove_file(&journal_path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(cannot_start(
                            &format!(
                                "store without the journal {} (cannot remove it)",
                                journal_path.display()
                            ),
                            e,
                        ))
                    }
                    _ => {}
                }
                to_commit.clone()
            }
            SyncPolicy::Background => {
                // The journal's records were applied above: it starts empty.
                let journal = Journal::create(&journal_path)
                    .map_err(|e| cannot_start(&format!("journal {}", journal_path.display()), e))?;
                let (tx, rx) = mpsc::channel::<Commit>();
                let seen = committed.clone();
                let to_commit = to_commit.clone();
                std::thread::Builder::new()
                    .name("croupier-journal".into())
                    .spawn(move || journaler(journal, rx, to_commit, seen))
                    .map_err(|e| cannot_start("journal thread", e))?;
                tx
            }
        };
        drop(to_commit);
        let thread_path = path.clone();
        let progress = committed.clone();
        std::thread::Builder::new()
            .name("croupier-store".into())
            .spawn(move || committer(db, commits, &thread_path, committed, spacing))
            .map_err(|e| cannot_start("committer thread", e))?;
        Ok((Store { path, tx, progress }, restored, opened))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Commits that failed (after one reopen-and-retry) since the store was opened, including
    /// those of operations already answered from the journal (kept and retried).
    pub fn commit_failures(&self) -> u64 {
        self.progress.commit_failures.load(Ordering::Relaxed)
    }

    /// Commits that succeeded since the store was opened (each a transaction and an fsync).
    pub fn commits(&self) -> u64 {
        self.progress.commits.load(Ordering::Relaxed)
    }

    /// Journal bytes answered but not yet committed (0 with `croupier.state.sync=always`).
    pub fn uncommitted_bytes(&self) -> u64 {
        let appended = self.progress.appended.load(Ordering::Acquire);
        appended.saturating_sub(self.progress.committed.load(Ordering::Acquire))
    }

    /// Blocking: returns once the record is stored (see [`SyncPolicy`]).
    fn submit(&self, op: Op) -> Result<(), StoreError> {
        let (done, wait) = mpsc::sync_channel(1);
        self.enqueue(op, Done::Blocking(done))?;
        self.outcome(wait.recv().ok())
    }

    /// Hands `op` to the store's first thread (the journal's, or the committer).
    fn enqueue(&self, op: Op, done: Done) -> Result<(), StoreError> {
        self.tx
            .send(Commit::one(op, done))
            .map_err(|_| StoreError::Closed {
                path: self.path.clone(),
            })
    }

    /// What the writer answered; `None`: it went away without answering.
    fn outcome(&self, answer: Option<Result<(), String>>) -> Result<(), StoreError> {
        match answer {
            Some(Ok(())) => Ok(()),
            Some(Err(reason)) => Err(StoreError::Write {
                path: self.path.clone(),
                reason,
            }),
            None => Err(StoreError::Closed {
                path: self.path.clone(),
            }),
        }
    }

    pub fn put_executor(
        &self,
        app_id: &str,
        exec_id: &str,
        info: &ExecutorShuffleInfo,
    ) -> Result<(), StoreError> {
        self.submit(Op::put_executor(app_id, exec_id, info))
    }

    pub fn put_driver(&self, d: StoredDriver) -> Result<(), StoreError> {
        self.submit(Op::PutDriver(d))
    }

    /// Like [`Store::submit`], for async callers.
    async fn submit_async(&self, op: Op) -> Result<(), StoreError> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.enqueue(op, Done::Async(done))?;
        self.outcome(wait.await.ok())
    }

    /// [`Store::put_executor`] without holding a thread while the record is written.
    pub async fn put_executor_async(
        &self,
        app_id: &str,
        exec_id: &str,
        info: &ExecutorShuffleInfo,
    ) -> Result<(), StoreError> {
        self.submit_async(Op::put_executor(app_id, exec_id, info))
            .await
    }

    /// [`Store::put_driver`] without holding a thread while the record is written.
    pub async fn put_driver_async(&self, d: StoredDriver) -> Result<(), StoreError> {
        self.submit_async(Op::PutDriver(d)).await
    }

    pub fn heartbeats(&self, beats: Vec<(String, Stamp)>) -> Result<(), StoreError> {
        if beats.is_empty() {
            return Ok(());
        }
        self.submit(Op::Heartbeats(beats))
    }

    /// Blocking: writes what is queued and closes the file cleanly (at shutdown). Later writes
    /// fail with [`StoreError::Closed`].
    pub fn close(&self) -> Result<(), StoreError> {
        self.submit(Op::Close)
    }

    /// Removes the app's executor and driver records.
    pub fn remove_app(&self, app_id: &str) -> Result<(), StoreError> {
        self.submit(Op::RemoveApp(app_id.to_owned()))
    }
}

enum OpenFailure {
    InUse,
    Bad(String),
    /// The journal could not be read or applied: the store file itself is fine and is left
    /// as it is, and so is the journal (the next start tries again).
    Replay(String),
}

fn aside_name(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".corrupt-{}", to_unix_ms(SystemTime::now())));
    PathBuf::from(name)
}

fn open_and_read(path: &Path, journal: &Path) -> Result<(Database, Restored), OpenFailure> {
    // redb asserts on some impossible states in debug builds; a damaged file must never take
    // the service down, so a panic while opening counts as "unreadable".
    let (p, j) = (path.to_owned(), journal.to_owned());
    match std::panic::catch_unwind(move || open_and_read_inner(&p, &j)) {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            Err(OpenFailure::Bad(format!("reading it failed: {what}")))
        }
    }
}

fn open_and_read_inner(path: &Path, journal: &Path) -> Result<(Database, Restored), OpenFailure> {
    // redb checks and repairs the file itself after an unclean shutdown; a damaged file fails
    // here or while its records are read below, and is then moved aside.
    let db = crate::store_file::open_database(path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => OpenFailure::InUse,
        other => OpenFailure::Bad(other.to_string()),
    })?;
    let bad = |e: &dyn std::fmt::Display| OpenFailure::Bad(e.to_string());
    // A store this service wrote before needs no write at start-up (a commit is an fsync);
    // a new one gets its tables and version record.
    let current = db
        .begin_read()
        .ok()
        .and_then(|r| r.open_table(META).ok())
        .and_then(|m| {
            m.get(VERSION_KEY)
                .ok()
                .flatten()
                .map(|v| v.value() == CURRENT_VERSION)
        })
        .unwrap_or(false);
    if !current {
        let w = db.begin_write().map_err(|e| bad(&e))?;
        {
            let mut meta = w.open_table(META).map_err(|e| bad(&e))?;
            let version = meta
                .get(VERSION_KEY)
                .map_err(|e| bad(&e))?
                .map(|v| v.value().to_owned());
            match version.as_deref() {
                None => {
                    meta.insert(VERSION_KEY, CURRENT_VERSION)
                        .map_err(|e| bad(&e))?;
                }
                Some(CURRENT_VERSION) => {}
                Some(other) => {
                    return Err(OpenFailure::Bad(format!(
                        "store version {other}, this service reads {CURRENT_VERSION}"
                    )))
                }
            }
            w.open_table(EXECUTORS).map_err(|e| bad(&e))?;
            w.open_table(DRIVERS).map_err(|e| bad(&e))?;
        }
        w.commit().map_err(|e| bad(&e))?;
    }
    replay(&db, journal).map_err(OpenFailure::Replay)?;
    let mut restored = Restored::default();
    let r = db.begin_read().map_err(|e| bad(&e))?;
    let execs = r.open_table(EXECUTORS).map_err(|e| bad(&e))?;
    for entry in execs.iter().map_err(|e| bad(&e))? {
        let (k, v) = entry.map_err(|e| bad(&e))?;
        let (k, v) = (k.value(), v.value());
        let parsed = k
            .strip_prefix(APP_KEY_PREFIX)
            .and_then(|j| serde_json::from_str::<AppExecIdOwned>(j).ok())
            .zip(serde_json::from_str::<InfoRecord>(v).ok());
        match parsed {
            Some((id, info)) => restored
                .executors
                .push((id.app_id, id.exec_id, info.into_info())),
            None => restored.bad_records.push(k.to_owned()),
        }
    }
    let drivers = r.open_table(DRIVERS).map_err(|e| bad(&e))?;
    for entry in drivers.iter().map_err(|e| bad(&e))? {
        let (k, v) = entry.map_err(|e| bad(&e))?;
        match serde_json::from_str::<DriverRecord>(v.value()) {
            Ok(d) => restored.drivers.push(StoredDriver {
                app_id: k.value().to_owned(),
                heartbeat_timeout: Duration::from_millis(d.heartbeat_timeout_ms),
                last_heartbeat: d.last_heartbeat(),
            }),
            Err(_) => restored.bad_records.push(k.value().to_owned()),
        }
    }
    drop(execs);
    drop(drivers);
    drop(r);
    Ok((db, restored))
}

/// Applies, in one durable commit, the operations the journal at `path` holds: what was
/// answered before the service stopped and may not have been committed (applying a committed
/// one again changes nothing). A torn end loses only what it cannot give, and says so; a
/// journal that cannot be read or applied fails the open, leaving the store file and the
/// journal as they are (never moved aside or emptied for it).
fn replay(db: &Database, path: &Path) -> Result<(), String> {
    let read = Journal::read(path, 2 * MAX_JOURNAL)
        .map_err(|e| format!("the journal cannot be read ({e}); it is kept for the next start"))?;
    if let Some(torn) = &read.torn {
        tracing::warn!(
            "registration store journal {}: {torn} (a write cut short by the stop, or a failed append that could not be cut back; what it held was never answered as stored)",
            path.display()
        );
    }
    let mut ops = Vec::with_capacity(read.records.len());
    for (i, r) in read.records.iter().enumerate() {
        match serde_json::from_slice::<Logged>(r) {
            Ok(l) => ops.push(l.into_op()),
            Err(e) => tracing::warn!(
                "registration store journal {}: record {i} is not an operation ({e}); skipped",
                path.display()
            ),
        }
    }
    if ops.is_empty() {
        return Ok(());
    }
    apply(db, ops.iter()).map_err(|e| {
        format!(
            "applying its {} operation(s) to the store failed ({e}); both are kept for the next start",
            ops.len()
        )
    })?;
    tracing::info!(
        "registration store journal {}: {} operation(s) applied",
        path.display(),
        ops.len()
    );
    Ok(())
}

/// The journal thread (`croupier.state.sync=background`): appends what callers queue, answers
/// them, and hands the operations to the committer, whose `progress` says how far the journal
/// is committed.
fn journaler(
    mut journal: Journal,
    rx: mpsc::Receiver<Commit>,
    to_commit: mpsc::Sender<Commit>,
    progress: Arc<Progress>,
) {
    let mut broken: Option<String> = None;
    loop {
        let first = match rx.recv_timeout(RETRY_AFTER) {
            Ok(c) => c,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                forget_committed(&mut journal, &progress);
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let (batch, payloads) = encode(gather(first, &rx).ops, journal.path());
        if journal.len() >= EMPTY_AT {
            catch_up(&journal, &progress, &to_commit);
        }
        forget_committed(&mut journal, &progress);
        if broken.is_some() {
            // A torn record may end the file: start a new one once all before it is committed.
            catch_up(&journal, &progress, &to_commit);
            broken = restart_journal(&mut journal, &progress);
        }
        let closing = batch.iter().any(|(op, _)| matches!(op, Op::Close));
        let appended = match &broken {
            Some(why) => Err(why.clone()),
            None if journal.len() >= MAX_JOURNAL => Err(format!(
                "its journal {} holds {} bytes not yet committed (the store's commits keep failing)",
                journal.path().display(),
                journal.len()
            )),
            None => journal.append(&payloads).map_err(|e| {
                let why = format!("journal {}: {e}", journal.path().display());
                if matches!(e, AppendError::Broken { .. }) {
                    broken = Some(why.clone());
                }
                why
            }),
        };
        let (ops, journal_end) = match appended {
            Ok(end) => {
                progress.appended.store(end, Ordering::Release);
                // In the journal: answered now; Close waits for its commit (below).
                let ops = batch
                    .into_iter()
                    .map(|(op, done)| match op {
                        Op::Close => (op, done),
                        _ => {
                            if let Some(d) = done {
                                d.send(Ok(()));
                            }
                            (op, None)
                        }
                    })
                    .collect();
                (ops, Some(end))
            }
            Err(why) => {
                tracing::error!(
                    "registration store: cannot journal {} operation(s): {why}",
                    batch.len()
                );
                for (op, done) in batch {
                    if let Some(d) = done {
                        match op {
                            Op::Close => to_commit_close(&to_commit, d),
                            _ => d.send(Err(why.clone())),
                        }
                    }
                }
                if closing {
                    return;
                }
                continue;
            }
        };
        if !closing {
            if to_commit.send(Commit::journaled(ops, journal_end)).is_err() {
                return;
            }
            continue;
        }
        // Close: wait for the commit, empty the journal if all of it is in, then answer.
        let mut ops = ops;
        let (tx, rx_close) = mpsc::sync_channel(1);
        let caller = ops
            .iter_mut()
            .find(|(op, _)| matches!(op, Op::Close))
            .and_then(|(_, d)| d.replace(Done::Blocking(tx)));
        let result = match to_commit.send(Commit::journaled(ops, journal_end)) {
            Ok(()) => rx_close
                .recv()
                .unwrap_or_else(|_| Err("the committer stopped".into())),
            Err(_) => Err("the committer stopped".into()),
        };
        if result.is_ok() {
            forget_committed(&mut journal, &progress);
        }
        if let Some(d) = caller {
            d.send(result);
        }
        return;
    }
}

/// Hands a Close whose journal append failed straight to the committer.
fn to_commit_close(to_commit: &mpsc::Sender<Commit>, done: Done) {
    let close = Commit::one(Op::Close, done);
    if let Err(mpsc::SendError(c)) = to_commit.send(close) {
        for (_, d) in c.ops {
            if let Some(d) = d {
                d.send(Err("the committer stopped".into()));
            }
        }
    }
}

/// Everything queued behind `first`, up to [`MAX_BATCH`] operations, in order, with the
/// furthest journal end among them.
fn gather(first: Commit, rx: &mpsc::Receiver<Commit>) -> Commit {
    let mut batch = first;
    while batch.ops.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(c) => batch.merge(c),
            Err(_) => break,
        }
    }
    batch
}

/// The journal records of `batch`, in order. An operation that cannot be one (over
/// [`crate::journal::MAX_RECORD`] once encoded) is refused to its own caller alone and left
/// out; the rest of the batch goes on.
fn encode(batch: Queued, journal: &Path) -> (Queued, Vec<Vec<u8>>) {
    let mut kept = Vec::with_capacity(batch.len());
    let mut payloads = Vec::with_capacity(batch.len());
    for (op, done) in batch {
        let Some(logged) = op.logged() else {
            kept.push((op, done));
            continue;
        };
        let refused = match serde_json::to_vec(&logged) {
            Ok(bytes) if bytes.len() <= crate::journal::MAX_RECORD => {
                payloads.push(bytes);
                kept.push((op, done));
                continue;
            }
            Ok(bytes) => format!(
                "journal {}: this registration is {} bytes as a record, over the {} a record may hold",
                journal.display(),
                bytes.len(),
                crate::journal::MAX_RECORD
            ),
            Err(e) => format!("journal {}: cannot encode it: {e}", journal.display()),
        };
        tracing::error!("registration store: {refused}");
        if let Some(d) = done {
            d.send(Err(refused));
        }
    }
    (kept, payloads)
}

/// Wakes the committer and waits (bounded) until it has committed all the journal holds,
/// unless its commits are failing (then it retries on its own schedule: a wake-up per batch
/// would make it retry a failing transaction for every batch).
fn catch_up(journal: &Journal, progress: &Progress, to_commit: &mpsc::Sender<Commit>) {
    if progress.committed.load(Ordering::Acquire) >= journal.end()
        || progress.failing.load(Ordering::Acquire)
    {
        return;
    }
    let until = std::time::Instant::now() + CATCH_UP_WAIT;
    // Nothing new reaches the committer while this thread waits: one wake-up is enough.
    if to_commit.send(Commit::wake()).is_err() {
        return;
    }
    while progress.committed.load(Ordering::Acquire) < journal.end()
        && !progress.failing.load(Ordering::Acquire)
        && std::time::Instant::now() < until
    {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `first` (operations already answered) and whatever arrives behind it until `spacing` has
/// passed since the start of the last commit; sooner for an operation someone waits on, a
/// wake-up, or a full batch ([`MAX_BATCH`]).
fn gather_spaced(
    first: Commit,
    rx: &mpsc::Receiver<Commit>,
    last_commit: std::time::Instant,
    spacing: Duration,
) -> Commit {
    let mut batch = first;
    loop {
        let since = last_commit.elapsed();
        if since >= spacing || batch.ops.len() >= MAX_BATCH {
            return batch;
        }
        match rx.recv_timeout(spacing - since) {
            Ok(c) => {
                let urgent = c.urgent();
                batch.merge(c);
                if urgent {
                    return batch;
                }
            }
            Err(_) => return batch,
        }
    }
}

fn forget_committed(journal: &mut Journal, progress: &Progress) {
    if let Err(e) = journal.forget_committed(progress.committed.load(Ordering::Acquire)) {
        tracing::warn!(
            "registration store journal {}: cannot empty it ({e}); it keeps growing until it can",
            journal.path().display()
        );
    }
}

/// After an append that could not be undone: once everything before it is committed, a new,
/// empty journal replaces the file. `None` once it has; else why not yet.
fn restart_journal(journal: &mut Journal, progress: &Progress) -> Option<String> {
    let path = journal.path().to_owned();
    let behind = progress.committed.load(Ordering::Acquire) < journal.end();
    if behind {
        return Some(format!(
            "journal {}: a failed append could not be undone; waiting for the store to commit what is before it",
            path.display()
        ));
    }
    match Journal::create(&path) {
        Ok(mut fresh) => {
            // Keep offsets monotonic: the committer's mark must never look ahead of the file.
            fresh.continue_from(journal.end());
            *journal = fresh;
            tracing::warn!(
                "registration store journal {}: started anew",
                path.display()
            );
            None
        }
        Err(e) => Some(format!(
            "journal {}: a failed append could not be undone, and starting it anew failed: {e}",
            path.display()
        )),
    }
}

/// The committer thread: commits whatever is queued in one transaction, answers the callers
/// still waiting, and (journal mode) records how far the journal is committed. Operations
/// answered from the journal whose commit failed are kept and committed first next time.
fn committer(
    db: Database,
    rx: mpsc::Receiver<Commit>,
    path: &Path,
    progress: Arc<Progress>,
    spacing: Duration,
) {
    let mut db = Some(db);
    let mut kept: Vec<Op> = Vec::new();
    let mut kept_end: Option<u64> = None;
    let mut last_commit = std::time::Instant::now();
    loop {
        let first = if kept.is_empty() {
            match rx.recv() {
                Ok(c) => Some(c),
                Err(_) => return,
            }
        } else {
            match rx.recv_timeout(RETRY_AFTER) {
                Ok(c) => Some(c),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                // Last try for what was kept; the journal still has it if this fails.
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    if write_batch(&mut db, kept.iter(), path).is_ok() {
                        progress
                            .committed
                            .fetch_max(kept_end.unwrap_or(0), Ordering::AcqRel);
                    }
                    return;
                }
            }
        };
        let (batch, end) = match first {
            Some(c) => {
                let c = if c.urgent() {
                    c
                } else {
                    // Only operations already answered: let more gather behind them.
                    gather_spaced(c, &rx, last_commit, spacing)
                };
                let c = gather(c, &rx);
                (c.ops, kept_end.max(c.journal_end))
            }
            None => (Vec::new(), kept_end),
        };
        if batch.is_empty() && kept.is_empty() {
            // A wake-up with nothing queued: nothing to commit.
            continue;
        }
        let closing = batch.iter().any(|(op, _)| matches!(op, Op::Close));
        last_commit = std::time::Instant::now();
        let result = write_batch(
            &mut db,
            kept.iter().chain(batch.iter().map(|(op, _)| op)),
            path,
        );
        let mut answers = Vec::new();
        if result.is_ok() {
            progress.commits.fetch_add(1, Ordering::Relaxed);
            kept.clear();
            kept_end = None;
            if let Some(e) = end {
                progress.committed.fetch_max(e, Ordering::AcqRel);
            }
        }
        progress.failing.store(result.is_err(), Ordering::Release);
        if result.is_err() {
            progress.commit_failures.fetch_add(1, Ordering::Relaxed);
        }
        for (op, done) in batch {
            match done {
                Some(d) => answers.push(d),
                // Answered from the journal: kept for the next attempt if this one failed.
                None if result.is_err() => kept.push(op),
                None => {}
            }
        }
        if result.is_err() {
            kept_end = end;
        }
        if closing {
            // Dropping the database marks the file clean before anyone is told it is closed.
            db = None;
        }
        for d in answers {
            d.send(result.clone());
        }
        if closing {
            return;
        }
    }
}

/// Writes one batch; on failure reopens the file and tries once more (see the module docs).
fn write_batch<'a>(
    db: &mut Option<Database>,
    ops: impl Iterator<Item = &'a Op> + Clone,
    path: &Path,
) -> Result<(), String> {
    let count = ops.clone().count();
    let mut first_error = None;
    for attempt in 0..2 {
        if db.is_none() {
            match reopen(path) {
                Ok(d) => *db = Some(d),
                Err(e) => {
                    tracing::error!(
                        "registration store {}: cannot reopen it after a write error: {e}",
                        path.display()
                    );
                    return Err(first_error.unwrap_or(e));
                }
            }
        }
        let Some(open) = db.as_ref() else { continue };
        match apply(open, ops.clone()) {
            Ok(()) => {
                if attempt > 0 {
                    tracing::warn!(
                        "registration store {}: reopened; the write of {count} record(s) succeeded on the second attempt",
                        path.display(),
                    );
                }
                return Ok(());
            }
            Err(e) => {
                tracing::error!(
                    "registration store {}: a write of {count} record(s) failed (attempt {}): {e}",
                    path.display(),
                    attempt + 1
                );
                first_error.get_or_insert_with(|| e.to_string());
                // redb refuses everything after an I/O error until the file is reopened.
                *db = None;
            }
        }
    }
    Err(first_error.unwrap_or_else(|| "the write failed".into()))
}

/// Reopens the store file after a write error. The database was dropped just before, which
/// releases its lock; a moment's wait covers a transaction still finishing.
fn reopen(path: &Path) -> Result<Database, String> {
    let mut last = String::new();
    for _ in 0..5 {
        match crate::store_file::open_database(path) {
            Ok(d) => return Ok(d),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(last)
}

fn apply<'a>(db: &Database, ops: impl Iterator<Item = &'a Op>) -> Result<(), redb::Error> {
    let w = db.begin_write()?;
    {
        let mut execs = w.open_table(EXECUTORS)?;
        let mut drivers = w.open_table(DRIVERS)?;
        for op in ops {
            match op {
                Op::PutExecutor {
                    app_id,
                    exec_id,
                    info,
                } => {
                    let v = serde_json::to_string(&info_record(info)).unwrap_or_default();
                    execs.insert(executor_key(app_id, exec_id).as_str(), v.as_str())?;
                }
                Op::PutDriver(d) => {
                    let v = driver_json(d.heartbeat_timeout, &d.last_heartbeat);
                    drivers.insert(d.app_id.as_str(), v.as_str())?;
                }
                Op::Heartbeats(beats) => {
                    for (app, at) in beats {
                        let timeout = drivers
                            .get(app.as_str())?
                            .and_then(|v| serde_json::from_str::<DriverRecord>(v.value()).ok())
                            .map(|d| d.heartbeat_timeout_ms);
                        if let Some(t) = timeout {
                            let v = driver_json(Duration::from_millis(t), at);
                            drivers.insert(app.as_str(), v.as_str())?;
                        }
                    }
                }
                Op::Close => {}
                Op::RemoveApp(app) => {
                    let prefix = app_prefix(app);
                    let keys: Vec<String> = execs
                        .range(prefix.as_str()..)?
                        .map_while(|e| {
                            e.ok()
                                .map(|(k, _)| k.value().to_owned())
                                .filter(|k| k.starts_with(&prefix))
                        })
                        .collect();
                    for k in keys {
                        execs.remove(k.as_str())?;
                    }
                    drivers.remove(app.as_str())?;
                }
            }
        }
    }
    w.commit()?;
    Ok(())
}

fn info_record(info: &ExecutorShuffleInfo) -> InfoRecord {
    InfoRecord {
        local_dirs: info.local_dirs.clone(),
        sub_dirs_per_local_dir: info.sub_dirs_per_local_dir,
        shuffle_manager: info.shuffle_manager.clone(),
    }
}

impl InfoRecord {
    fn into_info(self) -> ExecutorShuffleInfo {
        ExecutorShuffleInfo {
            local_dirs: self.local_dirs,
            sub_dirs_per_local_dir: self.sub_dirs_per_local_dir,
            shuffle_manager: self.shuffle_manager,
        }
    }
}

fn driver_record(timeout: Duration, last: &Stamp) -> DriverRecord {
    DriverRecord {
        heartbeat_timeout_ms: timeout.as_millis() as u64,
        last_heartbeat_ms: to_unix_ms(last.wall),
        boot_id: last.boot.as_ref().map(|b| b.boot_id.clone()),
        boot_time_ms: last.boot.as_ref().map(|b| b.since_boot.as_millis() as u64),
    }
}

fn driver_json(timeout: Duration, last: &Stamp) -> String {
    serde_json::to_string(&driver_record(timeout, last)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(dir: &str) -> ExecutorShuffleInfo {
        ExecutorShuffleInfo {
            local_dirs: vec![dir.into()],
            sub_dirs_per_local_dir: 64,
            shuffle_manager: "org.apache.spark.shuffle.sort.SortShuffleManager".into(),
        }
    }

    /// Failpoints are process-wide; each test scopes its faults to its own directory.
    fn fault(point: &str, spec: &str) {
        crate::faults::set(point, spec);
    }

    fn reopen_until_free(dir: &Path) -> (Store, Restored) {
        loop {
            match Store::open(dir, 7337) {
                Err(StoreError::InUse { .. }) => std::thread::sleep(Duration::from_millis(10)),
                other => {
                    let (s, r, _) = other.unwrap();
                    return (s, r);
                }
            }
        }
    }

    /// Closes `s` cleanly and reads back what the next open restores.
    fn close_and_reopen(s: Store, dir: &Path) -> Restored {
        s.close().unwrap();
        drop(s);
        reopen_until_free(dir).1
    }

    fn stored_execs(r: &Restored) -> Vec<String> {
        let mut v: Vec<String> = r
            .executors
            .iter()
            .map(|(a, e, _)| format!("{a}/{e}"))
            .collect();
        v.sort();
        v
    }

    /// One EIO while writing: redb latches PreviousIo after it, which used to make every later
    /// registration fail to be stored. Now the writer reopens the file and retries: the put
    /// succeeds, later puts too, and everything is there after a restart.
    #[test]
    fn one_eio_on_write_is_retried_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().to_string_lossy().into_owned();
        let _serial = crate::faults::serial();
        let (s, _, _) = Store::open_with(dir.path(), 7337, SyncPolicy::Always).unwrap();
        s.put_executor("app", "0", &info("/x/0")).unwrap();
        let arg = format!("EIO*1:{part}");
        fault("store_file::write", &format!("return({arg})"));
        s.put_executor("app", "1", &info("/x/1")).unwrap();
        for i in 2..5 {
            s.put_executor("app", &i.to_string(), &info("/x/i"))
                .unwrap();
        }
        assert_eq!(
            crate::faults::fired("store_file::write", &arg),
            1,
            "the fault happened"
        );
        fail::remove("store_file::write");
        let r = close_and_reopen(s, dir.path());
        assert_eq!(
            stored_execs(&r),
            ["app/0", "app/1", "app/2", "app/3", "app/4"]
        );
    }

    /// A disk that stays full (ENOSPC on every sync): the caller gets a retryable error naming
    /// the file, never a success; once space is back the store recovers by itself and nothing
    /// that was acknowledged is lost.
    #[test]
    fn enospc_is_reported_and_the_store_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().to_string_lossy().into_owned();
        let _serial = crate::faults::serial();
        let (s, _, _) = Store::open_with(dir.path(), 7337, SyncPolicy::Always).unwrap();
        s.put_executor("app", "before", &info("/x/b")).unwrap();
        fault("store_file::sync", &format!("return(ENOSPC:{part})"));
        for attempt in ["during", "during-again"] {
            let e = s.put_executor("app", attempt, &info("/x/d")).unwrap_err();
            assert!(e.is_retryable(), "{e}");
            let msg = e.to_string();
            assert!(
                msg.contains(&part) && msg.contains("registrations-7337.redb"),
                "{msg}"
            );
            assert!(msg.contains("No space left on device"), "{msg}");
        }
        fail::remove("store_file::sync");
        s.put_executor("app", "after", &info("/x/a")).unwrap();
        let r = close_and_reopen(s, dir.path());
        let got = stored_execs(&r);
        assert!(
            got.contains(&"app/before".to_string()) && got.contains(&"app/after".to_string()),
            "{got:?}"
        );
        // A refused write may still be found later (its pages reached the file before the
        // failed fsync: its durability was unknown, so it was refused; registrations are
        // idempotent and the client retries); what was acknowledged must be there.
        assert!(got.len() <= 4, "{got:?}");
    }

    /// EIO while growing the file (set_len) is handled the same way.
    #[test]
    fn eio_on_resize_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().to_string_lossy().into_owned();
        let _serial = crate::faults::serial();
        let (s, _, _) = Store::open_with(dir.path(), 7337, SyncPolicy::Always).unwrap();
        let arg = format!("EIO*1:{part}");
        fault("store_file::set_len", &format!("return({arg})"));
        // Enough data to make the file grow.
        for i in 0..200 {
            let dirs = info(&format!("/{}", "d".repeat(200 + i)));
            s.put_executor("big", &i.to_string(), &dirs).unwrap();
        }
        assert_eq!(
            crate::faults::fired("store_file::set_len", &arg),
            1,
            "the fault happened"
        );
        fail::remove("store_file::set_len");
        let r = close_and_reopen(s, dir.path());
        assert_eq!(r.executors.len(), 200);
    }

    /// Waits (bounded) until `s` has counted a failed commit.
    fn wait_for_a_failed_commit(s: &Store) {
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while s.commit_failures() == 0 {
            assert!(
                std::time::Instant::now() < until,
                "no failed commit counted"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops `s` without a clean close (a crash leaves the same files behind), removes the
    /// failpoint `fault`, and reads back what the next open restores (without repair).
    fn crash_and_reopen(s: Store, dir: &Path, fault: &str) -> Restored {
        drop(s);
        wait_released(dir);
        fail::remove(fault);
        let (_s, r, o) = Store::open(dir, 7337).unwrap();
        assert!(matches!(o, Opened::Clean), "{o:?}");
        r
    }

    /// Waits until the store's threads have let go of the file, without writing to it through
    /// the failpoints (redb's own file backend).
    fn wait_released(dir: &Path) {
        let path = dir.join(file_name(7337));
        loop {
            match Database::open(&path) {
                Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => panic!("{e}"),
                Ok(_) => return,
            }
        }
    }

    fn journal_of(dir: &Path) -> PathBuf {
        dir.join(crate::journal::file_name(7337))
    }

    /// Background mode answers from the journal: with every commit failing, what was answered
    /// (puts, a removal, a driver, in that order) is still there after the service stops, from
    /// the journal, and the journal is emptied once that is committed.
    #[test]
    fn answered_from_the_journal_survives_commits_that_never_happened() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().to_string_lossy().into_owned();
        let _serial = crate::faults::serial();
        let (s, _, _) = Store::open(dir.path(), 7337).unwrap();
        s.put_executor("gone", "0", &info("/g/0")).unwrap();
        fault("store_file::write", &format!("return(EIO:{part})"));
        s.put_executor("a", "1", &info("/x/1")).unwrap();
        s.put_executor("a", "2", &info("/x/2")).unwrap();
        s.remove_app("gone").unwrap();
        s.put_executor("b", "1", &info("/y/1")).unwrap();
        s.put_driver(StoredDriver {
            app_id: "b".into(),
            heartbeat_timeout: Duration::from_secs(90),
            last_heartbeat: Stamp::wall_only(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        })
        .unwrap();
        assert!(
            std::fs::metadata(journal_of(dir.path())).unwrap().len() > 0,
            "the answers are in the journal"
        );
        assert!(s.uncommitted_bytes() > 0);
        wait_for_a_failed_commit(&s);
        let r = crash_and_reopen(s, dir.path(), "store_file::write");
        assert_eq!(stored_execs(&r), ["a/1", "a/2", "b/1"]);
        assert_eq!(r.drivers.len(), 1);
        assert_eq!(r.drivers[0].heartbeat_timeout, Duration::from_secs(90));
        assert_eq!(
            std::fs::metadata(journal_of(dir.path())).unwrap().len(),
            0,
            "replayed, committed and emptied"
        );
    }

    /// A journal that cannot be applied at start-up (a passing EIO on the store file) fails the
    /// open and leaves both files as they are: the store is not taken for corrupt and moved
    /// aside, the journal is not emptied; the next open applies it.
    #[test]
    fn a_replay_that_fails_leaves_the_store_and_the_journal_alone() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().to_string_lossy().into_owned();
        let _serial = crate::faults::serial();
        let (s, _, _) = Store::open(dir.path(), 7337).unwrap();
        s.put_executor("old", "0", &info("/o/0")).unwrap();
        s.put_executor("old", "1", &info("/o/1")).unwrap();
        s.close().unwrap();
        drop(s);
        let (s, _) = reopen_until_free(dir.path());
        fault("store_file::write", &format!("return(EIO:{part})"));
        s.put_executor("new", "0", &info("/n/0")).unwrap();
        drop(s);
        wait_released(dir.path());
        let journal = std::fs::read(journal_of(dir.path())).unwrap();
        assert!(!journal.is_empty());
        let e = Store::open(dir.path(), 7337).unwrap_err();
        fail::remove("store_file::write");
        let msg = e.to_string();
        assert!(e.is_retryable(), "{msg}");
        assert!(msg.contains("registrations-7337.journal"), "{msg}");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.contains("corrupt")), "{names:?}");
        assert_eq!(std::fs::read(journal_of(dir.path())).unwrap(), journal);
        let (_s, r) = reopen_until_free(dir.path());
        assert_eq!(stored_execs(&r), ["new/0", "old/0", "old/1"]);
    }

    /// A registration too large for a journal record is refused to its caller alone; the
    /// others queued with it are journaled and answered.
    #[test]
    fn an_oversized_registration_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let _serial = crate::faults::serial();
        let (s, _, _) = Store::open(dir.path(), 7337).unwrap();
        let big = {
            let s = s.clone();
            std::thread::spawn(move || {
                let huge = "d".repeat(crate::journal::MAX_RECORD + 1);
                (0..3)
                    .map(|i| s.put_executor("big", &i.to_string(), &info(&huge)))
                    .collect::<Vec<_>>()
            })
        };
        for i in 0..200 {
            s.put_executor("small", &i.to_string(), &info("/s"))
                .unwrap();
        }
        for r in big.join().unwrap() {
            let msg = r.unwrap_err().to_string();
            assert!(
                msg.contains("registrations-7337.journal") && msg.contains("over the"),
                "{msg}"
            );
        }
        let r = close_and_reopen(s, dir.path());
        assert_eq!(r.executors.len(), 200);
    }

    /// A commit that fails a few times does not lose what was answered: the committer keeps
    /// it and commits it once the disk is back; a clean close then leaves an empty journal.
    #[test]
    fn kept_operations_are_committed_once_the_disk_is_back() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().to_string_lossy().into_owned();
        let _serial = crate::faults::serial();
        let (s, _, _) = Store::open(dir.path(), 7337).unwrap();
        // Commits of this store fail until the failpoint is removed. (Not a count such as
        // `2*return`: other tests' stores, committing in the background after their test has
        // ended, would use it up.)
        fault("store_file::write", &format!("return(EIO:{part})"));
        for i in 0..5 {
            s.put_executor("app", &i.to_string(), &info("/x")).unwrap();
        }
        wait_for_a_failed_commit(&s);
        assert!(s.uncommitted_bytes() > 0);
        fail::remove("store_file::write");
        // With nothing more arriving, the committer retries by itself and the journal thread
        // then empties the journal.
        let journal = journal_of(dir.path());
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&journal).unwrap().len() > 0 {
            assert!(
                std::time::Instant::now() < until,
                "the journal was never emptied"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(s.uncommitted_bytes(), 0);
        s.close().unwrap();
        assert_eq!(std::fs::metadata(journal_of(dir.path())).unwrap().len(), 0);
        drop(s);
        let (_s, r) = reopen_until_free(dir.path());
        assert_eq!(stored_execs(&r).len(), 5);
    }

    /// Under a steady stream of writes the committer is always a little behind; the journal is
    /// still emptied once it passes EMPTY_AT, so it does not grow with the stream.
    #[test]
    fn the_journal_stays_small_under_a_steady_stream() {
        // Writes evaluate the failpoints, using up the counts another test configured.
        let _serial = crate::faults::serial();
        let dir = tempfile::tempdir().unwrap();
        let (s, _, _) = Store::open(dir.path(), 7337).unwrap();
        let journal = journal_of(dir.path());
        let done = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (journal, done) = (journal.clone(), done.clone());
            std::thread::spawn(move || {
                let mut largest = 0;
                while !done.load(Ordering::Relaxed) {
                    largest = largest.max(std::fs::metadata(&journal).map_or(0, |m| m.len()));
                    std::thread::sleep(Duration::from_millis(1));
                }
                largest
            })
        };
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..2500 {
                        s.put_executor(&format!("app-{w}"), &i.to_string(), &info("/x/y/z"))
                            .unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, Ordering::Relaxed);
        let largest = sampler.join().unwrap();
        // 10,000 records of about 200 bytes were written: 2 MB if never emptied.
        assert!(
            largest < EMPTY_AT + (MAX_BATCH as u64) * 300,
            "the journal reached {largest} bytes"
        );
        let r = close_and_reopen(s, dir.path());
        assert_eq!(r.executors.len(), 10_000);
    }

    /// Registrations answered from the journal are committed in batches at most one per
    /// COMMIT_SPACING, not one transaction and fsync each; with `always`, where each caller
    /// waits for its commit, every one is committed at once.
    #[test]
    fn answered_registrations_are_committed_in_spaced_batches() {
        let _serial = crate::faults::serial();
        for (sync, puts) in [(SyncPolicy::Background, 200u64), (SyncPolicy::Always, 20)] {
            let dir = tempfile::tempdir().unwrap();
            let (s, _, _) = Store::open_with(dir.path(), 7337, sync).unwrap();
            let started = std::time::Instant::now();
            for i in 0..puts {
                s.put_executor("app", &i.to_string(), &info("/x")).unwrap();
                // Paced: committing each one as it comes would be one commit per put.
                std::thread::sleep(Duration::from_millis(1));
            }
            let took = started.elapsed();
            // Wait until everything is committed.
            let until = std::time::Instant::now() + Duration::from_secs(10);
            while s.uncommitted_bytes() > 0 && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
            assert_eq!(s.uncommitted_bytes(), 0, "{sync:?}: still uncommitted");
            let commits = s.commits();
            match sync {
                SyncPolicy::Background => {
                    let spaced = took.as_millis() / COMMIT_SPACING.as_millis() + 2;
                    assert!(
                        (1..=spaced as u64).contains(&commits),
                        "{commits} commits for {puts} answered puts in {took:?}"
                    );
                }
                SyncPolicy::Always => assert_eq!(commits, puts),
            }
            let r = close_and_reopen(s, dir.path());
            assert_eq!(r.executors.len() as u64, puts, "{sync:?}");
        }
    }

    /// A Close (someone waits on it) is committed at once, not after the spacing that the
    /// answered operations before it would otherwise wait out.
    #[test]
    fn a_close_does_not_wait_out_the_commit_spacing() {
        let _serial = crate::faults::serial();
        let dir = tempfile::tempdir().unwrap();
        let spacing = Duration::from_secs(30);
        let (s, _, _) =
            Store::open_spaced(dir.path(), 7337, SyncPolicy::Background, spacing).unwrap();
        let started = std::time::Instant::now();
        for i in 0..3 {
            s.put_executor("app", &i.to_string(), &info("/x")).unwrap();
        }
        s.close().unwrap();
        let took = started.elapsed();
        assert!(took < spacing / 3, "close took {took:?}");
        assert_eq!(s.uncommitted_bytes(), 0);
        drop(s);
        let (_s, r) = reopen_until_free(dir.path());
        assert_eq!(stored_execs(&r).len(), 3);
    }

    /// A journal past EMPTY_AT wakes a committer that is waiting out its spacing, so the
    /// journal is emptied at once instead of after a catch-up that times out.
    #[test]
    fn a_full_journal_wakes_a_spaced_committer() {
        let _serial = crate::faults::serial();
        let dir = tempfile::tempdir().unwrap();
        let spacing = Duration::from_secs(30);
        let (s, _, _) =
            Store::open_spaced(dir.path(), 7337, SyncPolicy::Background, spacing).unwrap();
        let started = std::time::Instant::now();
        // About 200 bytes a record: well past EMPTY_AT (64 KiB in tests) several times over.
        let puts = 2_000u64;
        let dirs = "/x".repeat(40);
        // Each catch-up that went unheeded would cost CATCH_UP_WAIT and leave the file full,
        // so every later put would wait that long again.
        let deadline = 10 * CATCH_UP_WAIT;
        for i in 0..puts {
            s.put_executor("app", &i.to_string(), &info(&dirs)).unwrap();
            let took = started.elapsed();
            assert!(took < deadline, "{i} puts took {took:?}");
        }
        let len = std::fs::metadata(journal_of(dir.path())).unwrap().len();
        assert!(len < 2 * EMPTY_AT, "the journal holds {len} bytes");
        assert!(s.commits() >= 1);
        let r = close_and_reopen(s, dir.path());
        assert_eq!(r.executors.len() as u64, puts);
    }

    /// While commits fail, a journal past EMPTY_AT does not wake the committer for every batch
    /// (each wake-up would be one more failing transaction): it retries at most once per
    /// spacing, and everything is committed once the disk recovers.
    #[test]
    fn failing_commits_are_retried_once_per_spacing_not_per_batch() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().to_string_lossy().into_owned();
        let _serial = crate::faults::serial();
        let (s, _, _) = Store::open(dir.path(), 7337).unwrap();
        fault("store_file::write", &format!("return(EIO:{part})"));
        let started = std::time::Instant::now();
        // About 500 bytes a record: past EMPTY_AT (64 KiB in tests) after some 130, then a
        // stream of batches each of which would wake the committer.
        let puts = 600u64;
        let dirs = "/x".repeat(200);
        for i in 0..puts {
            s.put_executor("app", &i.to_string(), &info(&dirs)).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        let took = started.elapsed();
        let failures = s.commit_failures();
        fail::remove("store_file::write");
        let bound = (took.as_millis() / COMMIT_SPACING.as_millis()) as u64 + 3;
        assert!(
            (1..=bound).contains(&failures),
            "{failures} failed commits in {took:?} ({puts} puts)"
        );
        let r = close_and_reopen(s, dir.path());
        assert_eq!(r.executors.len() as u64, puts);
    }

    /// An append that fails is an error for its callers, naming the journal; nothing of it is
    /// stored, and the next write is journaled and answered as usual.
    #[test]
    fn a_failed_journal_append_is_an_error_for_its_callers() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().to_string_lossy().into_owned();
        let _serial = crate::faults::serial();
        let (s, _, _) = Store::open(dir.path(), 7337).unwrap();
        fault("journal::write", &format!("return(ENOSPC*1:{part})"));
        let e = s.put_executor("app", "refused", &info("/x")).unwrap_err();
        assert!(e.is_retryable(), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("registrations-7337.journal") && msg.contains("No space left on device"),
            "{msg}"
        );
        fail::remove("journal::write");
        s.put_executor("app", "kept", &info("/x")).unwrap();
        let r = close_and_reopen(s, dir.path());
        assert_eq!(stored_execs(&r), ["app/kept"]);
    }

    /// An append that fails and cannot be cut back (a torn record may end the journal): that
    /// caller gets an error saying so; the next write starts a new journal once what was before
    /// is committed, and what is answered from the new one survives a crash.
    #[test]
    fn an_append_that_cannot_be_undone_starts_a_new_journal() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().to_string_lossy().into_owned();
        let _serial = crate::faults::serial();
        let (s, _, _) = Store::open(dir.path(), 7337).unwrap();
        s.put_executor("app", "before", &info("/x")).unwrap();
        let arg = format!("EIO*1:{part}");
        fault("journal::write", &format!("return({arg})"));
        fault("journal::truncate", &format!("return({arg})"));
        let e = s.put_executor("app", "torn", &info("/x")).unwrap_err();
        fail::remove("journal::write");
        fail::remove("journal::truncate");
        let msg = e.to_string();
        assert!(
            msg.contains("registrations-7337.journal")
                && msg.contains("cutting the file back failed"),
            "{msg}"
        );
        s.put_executor("app", "after", &info("/x")).unwrap();
        // The new journal's offsets follow on from the old one's: were they to start again
        // at 0, what is committed would make it look committed and it would be emptied.
        fault("store_file::write", &format!("return(EIO:{part})"));
        s.put_executor("app", "uncommitted", &info("/x")).unwrap();
        wait_for_a_failed_commit(&s);
        let r = crash_and_reopen(s, dir.path(), "store_file::write");
        let mut got = stored_execs(&r);
        got.sort();
        assert_eq!(got, ["app/after", "app/before", "app/uncommitted"]);
    }

    /// `always` applies a journal left by `background` once, then removes it: a removal made
    /// afterwards is not undone by replaying it again at the next start.
    #[test]
    fn always_applies_a_left_journal_once() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().to_string_lossy().into_owned();
        let _serial = crate::faults::serial();
        {
            let (s, _, _) = Store::open(dir.path(), 7337).unwrap();
            fault("store_file::write", &format!("return(EIO:{part})"));
            s.put_executor("app", "1", &info("/x")).unwrap();
        }
        wait_released(dir.path());
        fail::remove("store_file::write");
        let open_always = || loop {
            match Store::open_with(dir.path(), 7337, SyncPolicy::Always) {
                Err(StoreError::InUse { .. }) => std::thread::sleep(Duration::from_millis(10)),
                other => return other.unwrap(),
            }
        };
        let (s, r, _) = open_always();
        assert_eq!(stored_execs(&r), ["app/1"]);
        assert!(!journal_of(dir.path()).exists());
        s.remove_app("app").unwrap();
        s.close().unwrap();
        drop(s);
        let (_s, r, _) = open_always();
        assert!(r.executors.is_empty(), "{:?}", stored_execs(&r));
    }

    #[test]
    fn spark_key_layout() {
        assert_eq!(
            executor_key("app-1", "3"),
            r#"AppExecShuffleInfo;{"appId":"app-1","execId":"3"}"#
        );
        assert!(executor_key("app-1", "3").starts_with(&app_prefix("app-1")));
        assert!(!executor_key("app-10", "3").starts_with(&app_prefix("app-1")));
    }

    #[test]
    fn round_trip_and_remove() {
        // Writes evaluate the failpoints, using up the counts another test configured.
        let _serial = crate::faults::serial();
        let beat = || Stamp {
            wall: UNIX_EPOCH + Duration::from_millis(1_700_000_005_123),
            boot: Some(BootTime {
                boot_id: "b00t".into(),
                since_boot: Duration::from_millis(4_000_321),
            }),
        };
        let dir = tempfile::tempdir().unwrap();
        {
            let (s, r, o) = Store::open(dir.path(), 7337).unwrap();
            assert!(matches!(o, Opened::Clean));
            assert!(r.executors.is_empty() && r.drivers.is_empty());
            s.put_executor("a", "1", &info("/x/1")).unwrap();
            s.put_executor("a", "2", &info("/x/2")).unwrap();
            s.put_executor("a-b", "1", &info("/y/1")).unwrap();
            let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
            s.put_driver(StoredDriver {
                app_id: "a".into(),
                heartbeat_timeout: Duration::from_secs(120),
                last_heartbeat: Stamp::wall_only(t),
            })
            .unwrap();
            s.heartbeats(vec![("a".into(), beat())]).unwrap();
        }
        // The writer thread holds the file until its channel closes; wait for it to let go.
        let reopen = || loop {
            match Store::open(dir.path(), 7337) {
                Err(StoreError::InUse { .. }) => std::thread::sleep(Duration::from_millis(10)),
                other => return other.unwrap(),
            }
        };
        let (s, r, _) = reopen();
        let mut ids: Vec<_> = r
            .executors
            .iter()
            .map(|(a, e, i)| (a.as_str(), e.as_str(), i.local_dirs[0].as_str()))
            .collect();
        ids.sort();
        assert_eq!(
            ids,
            [("a", "1", "/x/1"), ("a", "2", "/x/2"), ("a-b", "1", "/y/1")]
        );
        assert_eq!(r.drivers.len(), 1);
        assert_eq!(
            r.drivers[0].last_heartbeat,
            beat(),
            "the flushed heartbeat is what was restored, on both clocks"
        );
        assert_eq!(
            to_unix_ms(r.drivers[0].last_heartbeat.wall),
            1_700_000_005_123
        );
        s.remove_app("a").unwrap();
        // Closed, not just dropped: nothing of this test is still committing once it ends
        // (a background commit would evaluate failpoints another test has set).
        s.close().unwrap();
        drop(s);
        let (_s, r, _) = reopen();
        assert_eq!(r.executors.len(), 1);
        assert_eq!(r.executors[0].0, "a-b");
        assert!(r.drivers.is_empty());
    }

    #[test]
    fn damaged_pages_are_moved_aside_or_read_cleanly() {
        // Writes evaluate the failpoints, using up the counts another test configured.
        let _serial = crate::faults::serial();
        let dir = tempfile::tempdir().unwrap();
        {
            let (s, _, _) = Store::open(dir.path(), 2).unwrap();
            for i in 0..120 {
                s.put_executor("app", &i.to_string(), &info(&format!("/d/{i}")))
                    .unwrap();
            }
        }
        let path = dir.path().join(file_name(2));
        // Wait for the writer thread to close the file, then damage its middle.
        let mut bytes = loop {
            match Store::open(dir.path(), 2) {
                Err(StoreError::InUse { .. }) => std::thread::sleep(Duration::from_millis(10)),
                Ok(_) => break std::fs::read(&path).unwrap(),
                Err(e) => panic!("{e}"),
            }
        };
        std::thread::sleep(Duration::from_millis(50));
        let n = bytes.len();
        for b in &mut bytes[n / 4..n / 2] {
            *b = 0xA5;
        }
        std::fs::write(&path, &bytes).unwrap();
        // Never a crash: either the damage is detected (moved aside, empty) or what is read
        // back is only records that decode.
        let (s, r, o) = loop {
            match Store::open(dir.path(), 2) {
                Err(StoreError::InUse { .. }) => std::thread::sleep(Duration::from_millis(10)),
                other => break other.unwrap(),
            }
        };
        match o {
            Opened::MovedAside { .. } => assert!(r.executors.is_empty()),
            Opened::Clean => assert!(r
                .executors
                .iter()
                .all(|(a, _, i)| a == "app" && i.local_dirs[0].starts_with("/d/"))),
        }
        s.put_executor("app", "new", &info("/d/new")).unwrap();
        s.close().unwrap();
    }

    #[test]
    fn garbage_file_is_moved_aside() {
        // Writes evaluate the failpoints, using up the counts another test configured.
        let _serial = crate::faults::serial();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(1));
        std::fs::write(&path, vec![0x5au8; 64 * 1024]).unwrap();
        let (s, r, o) = Store::open(dir.path(), 1).unwrap();
        assert!(r.executors.is_empty());
        match o {
            Opened::MovedAside { moved_to, .. } => {
                assert_eq!(std::fs::read(moved_to).unwrap(), vec![0x5au8; 64 * 1024])
            }
            Opened::Clean => panic!("a garbage file was read as a store"),
        }
        s.put_executor("a", "1", &info("/x")).unwrap();
        s.close().unwrap();
    }
}
