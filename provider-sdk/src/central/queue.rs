//! [`SubmissionQueue`]: a durable spool of ticket submissions and the
//! background sender that drains it to central.
//!
//! Layout of the spool directory (one process at a time: `open` takes an
//! exclusive lock on `.lock`):
//!
//! | path | what |
//! |---|---|
//! | `<ticket id>.json` | a submission waiting for central |
//! | `.tmp-*` | a push in progress (left over after a crash: removed on open) |
//! | `rejected/<ticket id>.json` + `.reason.json` | refused by central for good, with central's status, reason and detail |
//! | `corrupt/<file>` + `.reason.json` | a spool file that could not be read as a submission |
//!
//! Guarantees:
//!
//! - [`push`](SubmissionQueue::push) returns only once the submission is on
//!   disk (temporary file, fsync, rename, fsync of the directory), so a
//!   crash after it returns loses nothing. Pushing the same submission
//!   again is a no-op; the same ticket id with other content is refused
//!   ([`QueueError::Conflict`]) rather than overwriting what is queued.
//! - A file is deleted only after central answered that it recorded the
//!   submission (new or duplicate). Every failure to reach central keeps
//!   it, and the sender retries with exponential backoff and jitter.
//!   Submissions cut off mid-send (a crash, [`QueueSender::stop`]) are sent
//!   again; central answers those as duplicates.
//! - A submission central refuses for good (a 4xx other than 408 and 429,
//!   per item or, for a one-item request, for the request) moves to
//!   `rejected/` with the reason beside it and is logged at error level.
//!   Moving it back into the spool directory queues it again.
//! - A whole request refused for its contents (400, 409, 413, 422) is
//!   retried one submission at a time, so one bad item cannot hold up the
//!   rest. A whole request refused for who is asking (401, 403), or because
//!   central has no such endpoint (404, 405), keeps every item and retries
//!   with backoff: that is a credential or version problem, not the
//!   tickets'.
//! - A spool file that is not a submission moves to `corrupt/` with a log
//!   line; the sender carries on.
//!
//! [`counts`](SubmissionQueue::counts) gives the gauges and counters for
//! metrics.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rand::Rng;
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use super::client::CentralClient;
use super::durable::{sync_dir, temp_path, write_atomic, write_synced, TEMP_PREFIX};
use super::error::CentralError;
use super::tickets::{Refusal, Submission, SubmissionOutcome, MAX_SUBMISSION_BATCH};
use crate::ticket::TicketError;

const REJECTED_DIR: &str = "rejected";
const CORRUPT_DIR: &str = "corrupt";
const LOCK_FILE: &str = ".lock";
const REASON_SUFFIX: &str = ".reason.json";

/// How the sender behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueOptions {
    /// Submissions per request (at most [`MAX_SUBMISSION_BATCH`]).
    pub batch_size: usize,
    /// First wait after a failed attempt; doubles with every further one.
    pub initial_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
    /// How often an idle sender looks at the spool without being woken by
    /// a push (picks up files moved back from `rejected/` by hand).
    pub rescan_interval: Duration,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            batch_size: 100,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            rescan_interval: Duration::from_secs(30),
        }
    }
}

/// Gauges and counters of a queue (counters since it was opened).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Submissions waiting in the spool now.
    pub queued: u64,
    /// Submissions central recorded (new or duplicate) and that were deleted.
    pub sent: u64,
    /// Of `sent`, those central already had.
    pub duplicates: u64,
    /// Submissions moved to `rejected/`.
    pub rejected: u64,
    /// Spool files moved to `corrupt/`.
    pub corrupt: u64,
    /// Attempts that left submissions queued (central unreachable, busy, ...).
    pub failed_attempts: u64,
}

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the spool {0} is in use by another process")]
    InUse(PathBuf),
    #[error("not a valid submission: {0}")]
    Invalid(#[from] TicketError),
    #[error("ticket {0} is already queued with other content")]
    Conflict(Uuid),
    #[error("a sender is already running for this queue")]
    SenderRunning,
    #[error("{0}")]
    Credential(String),
    #[error("queue task failed: {0}")]
    Task(String),
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> QueueError + 'a {
    move |source| QueueError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// A durable queue of submissions for central; see the module docs.
/// Cheap to clone (clones share the spool).
#[derive(Debug, Clone)]
pub struct SubmissionQueue {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    options: QueueOptions,
    /// Held for the queue's lifetime: the exclusive lock on the spool.
    _lock: File,
    /// Serialises pushes against the sender's deletes and moves, so a push
    /// never races a file being taken out of the spool.
    spool: Mutex<()>,
    sender_running: AtomicBool,
    wake: Notify,
    queued: AtomicU64,
    sent: AtomicU64,
    duplicates: AtomicU64,
    rejected: AtomicU64,
    corrupt: AtomicU64,
    failed_attempts: AtomicU64,
}

/// Decrements a gauge without wrapping below zero (files removed by hand
/// are noticed late).
fn decrement(gauge: &AtomicU64) {
    let _ = gauge.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
}

/// `<uuid>.json`: the name of a queued submission.
fn queued_id(name: &str) -> Option<Uuid> {
    let stem = name.strip_suffix(".json")?;
    let id = Uuid::parse_str(stem).ok()?;
    // One spelling only, so a ticket has one file.
    (id.hyphenated().to_string() == stem).then_some(id)
}

fn file_name(id: Uuid) -> String {
    format!("{}.json", id.hyphenated())
}

impl SubmissionQueue {
    /// Opens (creating when needed) the spool at `dir`, takes its lock,
    /// removes leftovers of interrupted pushes and counts what is queued.
    pub fn open(
        dir: impl AsRef<Path>,
        options: QueueOptions,
    ) -> Result<SubmissionQueue, QueueError> {
        let dir = dir.as_ref().to_path_buf();
        for d in [dir.clone(), dir.join(REJECTED_DIR), dir.join(CORRUPT_DIR)] {
            std::fs::create_dir_all(&d).map_err(io("cannot create spool directory", &d))?;
        }
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("cannot open spool lock", &lock_path))?;
        lock_exclusive(&lock, &dir)?;
        let mut queued = 0u64;
        for entry in std::fs::read_dir(&dir).map_err(io("cannot list spool", &dir))? {
            let entry = entry.map_err(io("cannot list spool", &dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(TEMP_PREFIX) {
                // Its push never returned: nothing was promised about it.
                let path = entry.path();
                std::fs::remove_file(&path).map_err(io("cannot remove temporary file", &path))?;
            } else if queued_id(&name).is_some() {
                queued += 1;
            }
        }
        let options = QueueOptions {
            batch_size: options.batch_size.clamp(1, MAX_SUBMISSION_BATCH),
            ..options
        };
        Ok(SubmissionQueue {
            inner: Arc::new(Inner {
                dir,
                options,
                _lock: lock,
                spool: Mutex::new(()),
                sender_running: AtomicBool::new(false),
                wake: Notify::new(),
                queued: AtomicU64::new(queued),
                sent: AtomicU64::new(0),
                duplicates: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
                corrupt: AtomicU64::new(0),
                failed_attempts: AtomicU64::new(0),
            }),
        })
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Where refused submissions go, each with its `.reason.json`.
    pub fn rejected_dir(&self) -> PathBuf {
        self.inner.dir.join(REJECTED_DIR)
    }

    /// Where unreadable spool files go, each with its `.reason.json`.
    pub fn corrupt_dir(&self) -> PathBuf {
        self.inner.dir.join(CORRUPT_DIR)
    }

    pub fn counts(&self) -> QueueCounts {
        let i = &self.inner;
        QueueCounts {
            queued: i.queued.load(Ordering::Relaxed),
            sent: i.sent.load(Ordering::Relaxed),
            duplicates: i.duplicates.load(Ordering::Relaxed),
            rejected: i.rejected.load(Ordering::Relaxed),
            corrupt: i.corrupt.load(Ordering::Relaxed),
            failed_attempts: i.failed_attempts.load(Ordering::Relaxed),
        }
    }

    /// Queues `submission` durably (see the module docs) and returns its
    /// ticket id. Blocks on disk writes: from async code use [`push`](Self::push).
    pub fn push_blocking(&self, submission: Submission) -> Result<Uuid, QueueError> {
        self.inner.push(submission)
    }

    /// [`push_blocking`](Self::push_blocking) on a blocking thread.
    pub async fn push(&self, submission: Submission) -> Result<Uuid, QueueError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.push(submission))
            .await
            .map_err(|e| QueueError::Task(e.to_string()))?
    }

    /// Starts the background sender on the current tokio runtime. One
    /// sender per queue; `client` must carry a provider's certificate.
    pub fn start(&self, client: CentralClient) -> Result<QueueSender, QueueError> {
        if client.provider_id().is_none() {
            return Err(QueueError::Credential(
                "submitting tickets needs a client with the provider's certificate".into(),
            ));
        }
        if self.inner.sender_running.swap(true, Ordering::AcqRel) {
            return Err(QueueError::SenderRunning);
        }
        let (stop, stop_rx) = watch::channel(false);
        let sender = Sender {
            inner: self.inner.clone(),
            client,
            stop: stop_rx,
        };
        let task = tokio::spawn(sender.run());
        Ok(QueueSender {
            stop,
            task: Some(task),
        })
    }
}

#[cfg(unix)]
fn lock_exclusive(file: &File, dir: &Path) -> Result<(), QueueError> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock on a file descriptor this function borrows; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.kind() == std::io::ErrorKind::WouldBlock {
        Err(QueueError::InUse(dir.to_path_buf()))
    } else {
        Err(QueueError::Io {
            action: "cannot lock spool",
            path: dir.to_path_buf(),
            source: err,
        })
    }
}

#[cfg(not(unix))]
fn lock_exclusive(_file: &File, _dir: &Path) -> Result<(), QueueError> {
    Ok(())
}

impl Inner {
    fn push(&self, submission: Submission) -> Result<Uuid, QueueError> {
        let id = submission.check()?;
        let bytes = serde_json::to_vec(&submission)
            .map_err(|e| QueueError::Task(format!("cannot encode submission: {e}")))?;
        let path = self.dir.join(file_name(id));
        let _spool = self.spool.lock();
        match std::fs::read(&path) {
            Ok(existing) if existing == bytes => return Ok(id),
            Ok(_) => return Err(QueueError::Conflict(id)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("cannot read queued submission", &path)(e)),
        }
        let tmp = temp_path(&path).map_err(io("cannot name temporary file", &path))?;
        let written = write_synced(&tmp, &bytes, None).and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(io("cannot write submission", &path)(e));
        }
        sync_dir(&self.dir).map_err(io("cannot sync spool directory", &self.dir))?;
        self.queued.fetch_add(1, Ordering::Relaxed);
        self.wake.notify_one();
        Ok(id)
    }

    /// Up to `limit` queued submissions; unreadable files are moved aside.
    fn scan(&self, limit: usize) -> Vec<Item> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(dir = %self.dir.display(), error = %e, "cannot list the ticket spool");
                return Vec::new();
            }
        };
        let mut items = Vec::new();
        for entry in entries {
            if items.len() >= limit {
                break;
            }
            let Ok(entry) = entry else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let path = entry.path();
            let counted = queued_id(&name).is_some();
            match read_item(&path, &name) {
                Ok(item) => items.push(item),
                Err(ReadError::Gone) => {}
                Err(ReadError::Corrupt(why)) => self.set_aside_corrupt(&path, &name, &why, counted),
            }
        }
        if items.is_empty() {
            self.recount();
        }
        items
    }

    /// Sets the `queued` gauge from the spool itself (it drifts when files
    /// are removed or moved back by hand). Under the spool lock, so a push
    /// is counted either by the listing or by its own increment, not both.
    fn recount(&self) {
        let _spool = self.spool.lock();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let n = entries
            .filter_map(Result::ok)
            .filter(|e| queued_id(&e.file_name().to_string_lossy()).is_some())
            .count();
        self.queued.store(n as u64, Ordering::Relaxed);
    }

    fn set_aside_corrupt(&self, path: &Path, name: &str, why: &str, counted: bool) {
        let reason = serde_json::json!({
            "file": name,
            "moved_at": chrono::Utc::now(),
            "problem": why,
        });
        let _spool = self.spool.lock();
        match move_aside(&self.dir, path, &self.dir.join(CORRUPT_DIR), name, &reason) {
            Ok(dest) => {
                self.corrupt.fetch_add(1, Ordering::Relaxed);
                if counted {
                    decrement(&self.queued);
                }
                tracing::error!(file = %path.display(), moved_to = %dest.display(), problem = %why,
                    "unreadable file in the ticket spool moved aside");
            }
            Err(e) => tracing::error!(file = %path.display(), error = %e, problem = %why,
                "unreadable file in the ticket spool, and it cannot be moved aside"),
        }
    }

    /// Deletes what central recorded, sets aside what it refused for good.
    /// Returns whether any item is left to retry.
    fn settle(&self, items: &[Item], outcomes: &[SubmissionOutcome]) -> bool {
        let mut retry = false;
        let _spool = self.spool.lock();
        for (item, outcome) in items.iter().zip(outcomes) {
            match outcome {
                SubmissionOutcome::Recorded(r) => match std::fs::remove_file(&item.path) {
                    Ok(()) => {
                        decrement(&self.queued);
                        self.sent.fetch_add(1, Ordering::Relaxed);
                        if r.duplicate {
                            self.duplicates.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    // Already gone (removed by hand).
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        decrement(&self.queued);
                    }
                    Err(e) => {
                        // Central has it; sending it again gets a duplicate.
                        tracing::error!(file = %item.path.display(), error = %e,
                            "cannot delete a submission central recorded");
                    }
                },
                SubmissionOutcome::Refused(refusal) if refusal.is_permanent() => {
                    self.reject(item, refusal);
                }
                SubmissionOutcome::Refused(refusal) => {
                    tracing::warn!(ticket = %item.id, status = refusal.status,
                        reason = refusal.reason.as_deref().unwrap_or(""),
                        detail = %refusal.detail, "central could not record a ticket now; will retry");
                    retry = true;
                }
            }
        }
        if let Err(e) = sync_dir(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot sync the ticket spool");
        }
        retry
    }

    /// Moves a refused item to `rejected/` (caller holds the spool lock).
    fn reject(&self, item: &Item, refusal: &Refusal) {
        let name = file_name(item.id);
        let reason = serde_json::json!({
            "ticket_id": item.id,
            "rejected_at": chrono::Utc::now(),
            "status": refusal.status,
            "reason": refusal.reason,
            "detail": refusal.detail,
        });
        match move_aside(
            &self.dir,
            &item.path,
            &self.dir.join(REJECTED_DIR),
            &name,
            &reason,
        ) {
            Ok(dest) => {
                decrement(&self.queued);
                self.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::error!(ticket = %item.id, status = refusal.status,
                    reason = refusal.reason.as_deref().unwrap_or(""), detail = %refusal.detail,
                    moved_to = %dest.display(), "central refused a ticket submission");
            }
            Err(e) => tracing::error!(ticket = %item.id, error = %e, refusal = %refusal,
                "central refused a ticket submission, and it cannot be moved aside"),
        }
    }
}

/// A queued submission read back from the spool.
#[derive(Debug, Clone)]
struct Item {
    id: Uuid,
    path: PathBuf,
    submission: Submission,
}

enum ReadError {
    Gone,
    Corrupt(String),
}

fn read_item(path: &Path, name: &str) -> Result<Item, ReadError> {
    let Some(id) = queued_id(name) else {
        return Err(ReadError::Corrupt(
            "not a queued submission (expected <ticket id>.json)".into(),
        ));
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ReadError::Gone),
        Err(e) => return Err(ReadError::Corrupt(format!("cannot read: {e}"))),
    };
    let submission: Submission = serde_json::from_slice(&bytes)
        .map_err(|e| ReadError::Corrupt(format!("not a submission: {e}")))?;
    match submission.check() {
        Ok(found) if found == id => Ok(Item {
            id,
            path: path.to_path_buf(),
            submission,
        }),
        Ok(found) => Err(ReadError::Corrupt(format!(
            "holds ticket {found}, not the {id} its name says"
        ))),
        Err(e) => Err(ReadError::Corrupt(format!("not a valid submission: {e}"))),
    }
}

/// Writes `reason` beside the file's new place in `to_dir`, then moves it
/// there (never over an earlier one of the same name). Returns the new path.
fn move_aside(
    spool: &Path,
    from: &Path,
    to_dir: &Path,
    name: &str,
    reason: &serde_json::Value,
) -> std::io::Result<PathBuf> {
    let mut dest = to_dir.join(name);
    if dest.exists() {
        dest = to_dir.join(format!(
            "{}-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
            name
        ));
    }
    let mut reason_name = dest.file_name().unwrap_or_default().to_os_string();
    reason_name.push(REASON_SUFFIX);
    let text = serde_json::to_vec_pretty(reason).unwrap_or_default();
    write_atomic(&to_dir.join(reason_name), &text, None)?;
    std::fs::rename(from, &dest)?;
    sync_dir(to_dir)?;
    sync_dir(spool)?;
    Ok(dest)
}

/// The running background sender; see [`SubmissionQueue::start`].
/// Dropping it stops the sender too (abruptly; prefer [`stop`](Self::stop)).
#[derive(Debug)]
pub struct QueueSender {
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl QueueSender {
    /// Stops the sender and waits until it has. A request in flight is
    /// abandoned; its submissions stay queued and are sent again later.
    pub async fn stop(mut self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "ticket sender task failed");
            }
        }
    }
}

impl Drop for QueueSender {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Resets the queue's "sender running" flag however the task ends.
struct RunningFlag(Arc<Inner>);

impl Drop for RunningFlag {
    fn drop(&mut self) {
        self.0.sender_running.store(false, Ordering::Release);
    }
}

struct Sender {
    inner: Arc<Inner>,
    client: CentralClient,
    stop: watch::Receiver<bool>,
}

/// What a delivery attempt asks of the loop.
enum Next {
    /// Carry on at once.
    Continue,
    /// Something is left to retry: wait the backoff.
    Backoff,
    Stop,
}

/// Whole-request statuses that are about the submissions themselves.
fn refuses_contents(e: &CentralError) -> bool {
    matches!(e.status(), Some(400 | 409 | 413 | 422))
}

fn refusal_of(e: &CentralError) -> Refusal {
    match e.problem() {
        Some(p) => Refusal {
            status: p.status,
            reason: p.reason.clone(),
            detail: p.detail.clone(),
        },
        None => Refusal {
            status: 0,
            reason: None,
            detail: e.to_string(),
        },
    }
}

impl Sender {
    async fn run(mut self) {
        let _running = RunningFlag(self.inner.clone());
        let options = self.inner.options;
        let mut backoff = options.initial_backoff;
        loop {
            if *self.stop.borrow() {
                return;
            }
            let inner = self.inner.clone();
            let items =
                match tokio::task::spawn_blocking(move || inner.scan(options.batch_size)).await {
                    Ok(items) => items,
                    Err(e) => {
                        tracing::error!(error = %e, "ticket spool scan failed");
                        Vec::new()
                    }
                };
            if items.is_empty() {
                backoff = options.initial_backoff;
                tokio::select! {
                    () = self.inner.wake.notified() => {}
                    () = tokio::time::sleep(options.rescan_interval) => {}
                    _ = self.stop.changed() => return,
                }
                continue;
            }
            match self.deliver(items).await {
                Next::Continue => backoff = options.initial_backoff,
                Next::Stop => return,
                Next::Backoff => {
                    self.inner.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    let wait = jittered(backoff);
                    backoff = (backoff * 2).min(options.max_backoff);
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        _ = self.stop.changed() => return,
                    }
                }
            }
        }
    }

    /// Sends one batch; on a whole-request refusal of its contents, sends
    /// its items one by one.
    async fn deliver(&mut self, items: Vec<Item>) -> Next {
        match self.send(&items).await {
            Ok(next) => next,
            Err(e) if refuses_contents(&e) && items.len() > 1 => {
                tracing::warn!(error = %e, items = items.len(),
                    "central refused a ticket batch as a whole; sending its tickets one by one");
                for item in items {
                    match self.send(std::slice::from_ref(&item)).await {
                        Ok(Next::Continue) => {}
                        Ok(next) => return next,
                        Err(e) if refuses_contents(&e) => self.settle_refused(item, &e).await,
                        Err(e) => return self.failed(&e),
                    }
                }
                Next::Continue
            }
            Err(e) if refuses_contents(&e) => {
                let mut items = items;
                if let Some(item) = items.pop() {
                    self.settle_refused(item, &e).await;
                }
                Next::Continue
            }
            Err(e) => self.failed(&e),
        }
    }

    /// Sends `items` and settles the answers; `Err` when central answered
    /// for none of them.
    async fn send(&mut self, items: &[Item]) -> Result<Next, CentralError> {
        let submissions: Vec<Submission> = items.iter().map(|i| i.submission.clone()).collect();
        let outcomes = tokio::select! {
            r = self.client.submit_tickets(&submissions) => r?,
            _ = self.stop.changed() => return Ok(Next::Stop),
        };
        let inner = self.inner.clone();
        let items = items.to_vec();
        let retry = tokio::task::spawn_blocking(move || inner.settle(&items, &outcomes))
            .await
            .unwrap_or(true);
        Ok(if retry { Next::Backoff } else { Next::Continue })
    }

    async fn settle_refused(&self, item: Item, e: &CentralError) {
        let inner = self.inner.clone();
        let refusal = refusal_of(e);
        let settled = tokio::task::spawn_blocking(move || {
            let _spool = inner.spool.lock();
            inner.reject(&item, &refusal);
        })
        .await;
        if let Err(e) = settled {
            tracing::error!(error = %e, "ticket spool update failed");
        }
    }

    fn failed(&self, e: &CentralError) -> Next {
        if e.is_transient() {
            tracing::warn!(error = %e, queued = self.inner.queued.load(Ordering::Relaxed),
                "cannot submit tickets to central now; will retry");
        } else {
            // 401/403/404/405 and the like: nothing the tickets can fix.
            tracing::error!(error = %e, queued = self.inner.queued.load(Ordering::Relaxed),
                "central does not take ticket submissions from this client; will retry");
        }
        Next::Backoff
    }
}

/// Somewhere in `[d/2, d]`, so restarted providers do not retry in step.
fn jittered(d: Duration) -> Duration {
    let half = d / 2;
    let spread = d.saturating_sub(half).as_millis() as u64;
    half + Duration::from_millis(rand::thread_rng().gen_range(0..=spread))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_names() {
        let id = Uuid::now_v7();
        assert_eq!(queued_id(&file_name(id)), Some(id));
        assert_eq!(queued_id("junk.json"), None);
        assert_eq!(queued_id(&format!("{}.json", id.simple())), None);
        assert_eq!(
            queued_id(&format!("{}.json", id.hyphenated()).to_uppercase()),
            None
        );
    }

    #[test]
    fn jitter_stays_in_range() {
        for _ in 0..100 {
            let d = jittered(Duration::from_millis(1000));
            assert!(d >= Duration::from_millis(500) && d <= Duration::from_millis(1000));
        }
    }

    fn submission(jti: Uuid, tid: Uuid) -> Submission {
        use crate::ticket::{RateTerms, Ticket, TicketSigner, UsageReceipt};
        let payer = TicketSigner::new(crate::pki::ParticipantKey::generate(), "https://c");
        let carrier = TicketSigner::new(crate::pki::ParticipantKey::generate(), "https://c");
        let ticket = Ticket {
            iss: 1,
            payer: "home".into(),
            aud: 2,
            orig: "+4930123456".parse().unwrap(),
            dest: "+33639980001".parse().unwrap(),
            call_id: "x@127.0.0.1".into(),
            rate: RateTerms {
                per_minute: "0.01".parse().unwrap(),
                connect_fee: "0".parse().unwrap(),
                first_increment: 1,
                next_increment: 1,
                currency: "EUR".parse().unwrap(),
                version: 1,
            },
            iat: 1_000,
            exp: 1_060,
            jti,
        };
        let receipt = UsageReceipt {
            iss: 1,
            aud: 2,
            tid,
            answer: 1_010,
            end: 1_030,
            billable: 20,
            iat: 1_031,
        };
        let payer_receipt = payer.sign_receipt(&receipt).unwrap();
        Submission {
            ticket: payer.sign_ticket(&ticket).unwrap(),
            provider_receipt: carrier.countersign_receipt(&payer_receipt).unwrap(),
            receipt: Some(payer_receipt),
        }
    }

    #[test]
    fn pushes_are_on_disk_idempotent_and_never_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let q = SubmissionQueue::open(dir.path(), QueueOptions::default()).unwrap();
        let id = Uuid::now_v7();
        let s = submission(id, id);
        assert_eq!(q.push_blocking(s.clone()).unwrap(), id);
        let stored: Submission =
            serde_json::from_slice(&std::fs::read(dir.path().join(file_name(id))).unwrap())
                .unwrap();
        assert_eq!(stored, s);
        assert_eq!(q.push_blocking(s.clone()).unwrap(), id);
        assert_eq!(q.counts().queued, 1);
        assert!(matches!(
            q.push_blocking(submission(id, id)),
            Err(QueueError::Conflict(c)) if c == id
        ));
        // Receipts for another ticket are not a submission.
        let other = Uuid::now_v7();
        assert!(matches!(
            q.push_blocking(submission(other, Uuid::now_v7())),
            Err(QueueError::Invalid(TicketError::ReceiptTicketMismatch(_)))
        ));
        let mut swapped = submission(other, other);
        std::mem::swap(&mut swapped.ticket, &mut swapped.provider_receipt);
        assert!(matches!(
            q.push_blocking(swapped),
            Err(QueueError::Invalid(TicketError::WrongTokenType { .. }))
        ));
        assert_eq!(q.counts().queued, 1);
        drop(q);
        let q = SubmissionQueue::open(dir.path(), QueueOptions::default()).unwrap();
        assert_eq!(q.counts().queued, 1);
    }

    #[test]
    fn one_process_per_spool() {
        let dir = tempfile::tempdir().unwrap();
        let q = SubmissionQueue::open(dir.path(), QueueOptions::default()).unwrap();
        assert!(matches!(
            SubmissionQueue::open(dir.path(), QueueOptions::default()),
            Err(QueueError::InUse(_))
        ));
        drop(q);
        SubmissionQueue::open(dir.path(), QueueOptions::default()).unwrap();
    }
}
