//! Storage: one set of diesel queries for SQLite (embedded default) and
//! PostgreSQL.
//!
//! [`Database::open`] takes a URL (`postgres://…` / `postgresql://…` for
//! PostgreSQL, anything else is a SQLite file path, optionally prefixed with
//! `sqlite://`), builds an r2d2 pool and runs the embedded migrations of that
//! backend (`migrations/forwarder/{sqlite,postgres}`). The queries live in
//! [`crate::store`] and are written once against [`DbConnection`], a
//! `diesel::MultiConnection` over both backends.
//!
//! ```no_run
//! use forwarder::db::Database;
//! # fn main() -> Result<(), forwarder::db::DbError> {
//! let db = Database::open("/var/lib/forwarder/forwarder.sqlite", 4)?;
//! let mut conn = db.conn()?; // blocking: call from spawn_blocking in async code
//! # let _ = &mut conn;
//! # Ok(()) }
//! ```

pub mod money;
pub mod schema;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{
    ConnectionManager, CustomizeConnection, ManageConnection, Pool, PooledConnection,
};
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/forwarder/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations =
    embed_migrations!("../migrations/forwarder/postgres");

/// A connection to either backend; queries are written once against it.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

/// Which database engine a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// PostgreSQL for `postgres://` / `postgresql://` URLs, SQLite otherwise.
    pub fn of_url(url: &str) -> Backend {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

/// Storage errors.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("database connection pool: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error("cannot open database: {0}")]
    Open(String),
    #[error("database migration failed: {0}")]
    Migration(String),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

/// A connection checked out of the pool.
pub type Pooled = PooledConnection<Manager>;

/// diesel's connection manager, plus a note of when the pool last dropped
/// a broken connection: a lost connection usually means the server went
/// away, and then every other one is suspect too, however recently checked.
#[derive(Debug)]
pub struct Manager {
    inner: ConnectionManager<DbConnection>,
    /// When the pool last found a connection broken (shared with the
    /// [`Database`], which r2d2 does not give its manager).
    lost_at: LostAt,
}

/// When a pool last found a connection broken.
#[derive(Debug, Clone, Default)]
struct LostAt(Arc<Mutex<Option<Instant>>>);

impl LostAt {
    fn note(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    fn since(&self, at: Instant) -> bool {
        let lost = self.0.lock().unwrap_or_else(|e| e.into_inner());
        lost.is_some_and(|l| l >= at)
    }
}

impl ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<DbConnection, Self::Error> {
        self.inner.connect()
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), Self::Error> {
        self.inner.is_valid(conn)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        let broken = self.inner.has_broken(conn);
        if broken {
            self.lost_at.note();
        }
        broken
    }
}

/// Applies per-connection settings when the pool opens a connection.
#[derive(Debug)]
struct Setup;

impl CustomizeConnection<DbConnection, diesel::r2d2::Error> for Setup {
    fn on_acquire(&self, conn: &mut DbConnection) -> Result<(), diesel::r2d2::Error> {
        if let DbConnection::Sqlite(c) = conn {
            // WAL lets readers run beside the single writer; NORMAL is safe
            // with WAL (a crash loses at most the last commits, never
            // corrupts). busy_timeout makes concurrent writers wait instead
            // of failing at once. Checkpoints are the checkpointer's
            // ([`Checkpointer`]); the automatic one stays only as a bound
            // on the WAL's size should that thread fall behind. The busy
            // timeout comes first, because switching the journal to WAL
            // takes the database's lock, which the pool's other new
            // connections may hold at that moment.
            c.batch_execute(
                "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
                 PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
                 PRAGMA wal_autocheckpoint = 10000;",
            )
            .map_err(diesel::r2d2::Error::QueryError)?;
        }
        Ok(())
    }
}

/// The database: a connection pool plus what backend it is.
#[derive(Clone)]
pub struct Database {
    pool: Pool<Manager>,
    backend: Backend,
    /// SQLite has one writer at a time; concurrent writers otherwise wait
    /// in SQLite's busy handler, which sleeps 1, 2, 5, 10 … 100 ms between
    /// tries. Queueing the call path's writers here wakes the next one the
    /// moment the previous commits (PostgreSQL: row locks, no queue).
    writer: Arc<Mutex<()>>,
    /// See [`LIVENESS_WINDOW`].
    liveness_window: Duration,
    lost_at: LostAt,
    /// SQLite file: checkpoints in a thread of its own, stopped when the
    /// last clone is dropped.
    _checkpointer: Option<Arc<Checkpointer>>,
}

/// How long a PostgreSQL connection that passed its `SELECT 1` is handed
/// out without another: the check is a round trip, and checking before
/// every use was 3 of a call's 19. A connection that dies within the window
/// fails the one statement it runs next and is then discarded (diesel marks
/// it broken); from then on every connection is checked again before use,
/// since a lost one usually means the server restarted. Half a second is
/// HikariCP's choice for the same trade.
pub const LIVENESS_WINDOW: Duration = Duration::from_millis(500);

/// When a pooled connection last passed its check (kept with it by r2d2).
#[derive(Debug, Clone, Copy)]
struct Checked(Instant);

/// Makes the pool discard `conn` when it is returned, whatever libpq
/// reported: r2d2 drops a connection whose transaction manager is in error.
fn mark_broken(conn: &mut DbConnection) {
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    if let DbConnection::Postgres(c) = conn {
        AnsiTransactionManager::transaction_manager_status_mut(c).set_in_error();
    }
}

/// How often the checkpointer copies the WAL into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// Copies committed pages from the WAL into the database file, off every
/// caller's path. SQLite's automatic checkpoint runs inside the commit that
/// crosses 1,000 WAL pages, fsyncs the file, and on the call path that
/// commit is a caller waiting for the INVITE to go out. A PASSIVE
/// checkpoint takes no lock that writers or readers wait for.
struct Checkpointer {
    /// Dropped with the last `Database`: the thread sees the channel close.
    _stop: std::sync::mpsc::SyncSender<()>,
}

impl Checkpointer {
    fn start(path: &str) -> Result<Arc<Checkpointer>, DbError> {
        use std::sync::mpsc::RecvTimeoutError;
        let mut conn =
            SqliteConnection::establish(path).map_err(|e| DbError::Open(e.to_string()))?;
        conn.batch_execute("PRAGMA busy_timeout = 10000;")?;
        let (stop, stopped) = std::sync::mpsc::sync_channel::<()>(0);
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || loop {
                match stopped.recv_timeout(CHECKPOINT_EVERY) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
                if let Err(e) = conn.batch_execute("PRAGMA wal_checkpoint(PASSIVE);") {
                    tracing::warn!(error = %e, "SQLite checkpoint failed; the next one retries");
                }
            })
            .map_err(|e| DbError::Open(format!("checkpoint thread: {e}")))?;
        Ok(Arc::new(Checkpointer { _stop: stop }))
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never print it.
        f.debug_struct("Database")
            .field("backend", &self.backend)
            .finish()
    }
}

impl Database {
    /// Opens (creating a SQLite file if needed) and migrates the database.
    pub fn open(url: &str, pool_size: u32) -> Result<Database, DbError> {
        let backend = Backend::of_url(url);
        let url = match backend {
            Backend::Sqlite => url.strip_prefix("sqlite://").unwrap_or(url).to_string(),
            Backend::Postgres => url.to_string(),
        };
        // Establish explicitly per backend (the derived `establish` would try
        // PostgreSQL first for every URL).
        let mut first = establish(backend, &url)?;
        run_migrations(&mut first)?;
        drop(first);
        let lost_at = LostAt::default();
        let manager = Manager {
            inner: ConnectionManager::<DbConnection>::new(url.clone()),
            lost_at: lost_at.clone(),
        };
        let pool = Pool::builder()
            .max_size(pool_size.max(1))
            .connection_timeout(Duration::from_secs(10))
            // Checked in `conn`, and only after a quiet spell: see
            // `LIVENESS_WINDOW`.
            .test_on_check_out(false)
            .connection_customizer(Box::new(Setup))
            .build(manager)
            .map_err(|e| DbError::Open(e.to_string()))?;
        let checkpointer = match backend {
            Backend::Sqlite if !url.contains(":memory:") => Some(Checkpointer::start(&url)?),
            _ => None,
        };
        Ok(Database {
            pool,
            backend,
            writer: Arc::new(Mutex::new(())),
            liveness_window: LIVENESS_WINDOW,
            lost_at,
            _checkpointer: checkpointer,
        })
    }

    /// The same database, with PostgreSQL connections checked before use
    /// unless they passed a check less than `window` ago (zero: always).
    pub fn with_liveness_window(mut self, window: Duration) -> Database {
        self.liveness_window = window;
        self
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A pooled connection (blocking: call from `spawn_blocking`).
    ///
    /// On PostgreSQL a connection that has not passed a check within the
    /// liveness window is checked with `SELECT 1` first; one that fails
    /// is discarded and the next one taken, so a server restart costs no
    /// call once the window has passed.
    pub fn conn(&self) -> Result<Pooled, DbError> {
        if self.backend == Backend::Sqlite {
            // A file in this process: nothing to lose touch with.
            return Ok(self.pool.get()?);
        }
        // Every pooled connection may be dead after a restart, plus one
        // newly opened.
        for _ in 0..=self.pool.max_size() {
            let mut conn = self.pool.get()?;
            let fresh = PooledConnection::extensions(&conn)
                .get::<Checked>()
                .is_some_and(|&Checked(at)| {
                    at.elapsed() < self.liveness_window && !self.lost_at.since(at)
                });
            if fresh {
                return Ok(conn);
            }
            match diesel::r2d2::R2D2Connection::ping(&mut *conn) {
                Ok(()) => {
                    PooledConnection::extensions_mut(&mut conn).insert(Checked(Instant::now()));
                    return Ok(conn);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "pooled database connection lost; opening another");
                    mark_broken(&mut conn);
                }
            }
        }
        Err(DbError::Open(
            "every database connection failed its check".into(),
        ))
    }

    /// Runs `f` with a connection as the only writer of a SQLite database
    /// in this process (blocking: call from `spawn_blocking`). For writes
    /// on the call path, where a busy wait would add to post-dial delay.
    pub fn write<T>(&self, f: impl FnOnce(&mut DbConnection) -> T) -> Result<T, DbError> {
        let _turn = match self.backend {
            // A panic in another writer leaves nothing to protect: the
            // transaction it was in has rolled back.
            Backend::Sqlite => Some(self.writer.lock().unwrap_or_else(|e| e.into_inner())),
            Backend::Postgres => None,
        };
        let mut conn = self.conn()?;
        Ok(f(&mut conn))
    }

    /// True when a trivial query succeeds.
    pub fn ping(&self) -> bool {
        match self.conn() {
            Ok(mut c) => c.batch_execute("SELECT 1").is_ok(),
            Err(_) => false,
        }
    }
}

fn establish(backend: Backend, url: &str) -> Result<DbConnection, DbError> {
    let mut conn = match backend {
        Backend::Postgres => PgConnection::establish(url).map(DbConnection::Postgres),
        Backend::Sqlite => SqliteConnection::establish(url).map(DbConnection::Sqlite),
    }
    .map_err(|e| DbError::Open(e.to_string()))?;
    Setup
        .on_acquire(&mut conn)
        .map_err(|e| DbError::Open(e.to_string()))?;
    Ok(conn)
}

fn run_migrations(conn: &mut DbConnection) -> Result<(), DbError> {
    let result = match conn {
        DbConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|_| ()),
        DbConnection::Postgres(c) => c.run_pending_migrations(POSTGRES_MIGRATIONS).map(|_| ()),
    };
    result.map_err(|e| DbError::Migration(e.to_string()))
}

/// Microseconds since the Unix epoch, the stored form of every timestamp.
pub fn to_micros(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_micros()
}

/// The inverse of [`to_micros`]; `None` for values outside chrono's range.
pub fn from_micros(us: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp_micros(us)
}
