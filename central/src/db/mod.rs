//! Storage: one set of diesel queries for SQLite (embedded default) and
//! PostgreSQL.
//!
//! [`Database::open`] takes a URL (`postgres://…` / `postgresql://…` for
//! PostgreSQL, anything else is a SQLite file path, optionally prefixed with
//! `sqlite://`), builds an r2d2 pool and runs the embedded migrations of that
//! backend. Queries live in [`store`] and are written once against
//! [`DbConnection`], a `diesel::MultiConnection` over both backends.

pub mod ledger;
pub mod money;
pub mod schema;
pub mod store;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use std::time::Duration;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

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

pub type Pooled = PooledConnection<ConnectionManager<DbConnection>>;

/// Applies per-connection settings when the pool opens a connection.
#[derive(Debug)]
struct Setup;

impl CustomizeConnection<DbConnection, diesel::r2d2::Error> for Setup {
    fn on_acquire(&self, conn: &mut DbConnection) -> Result<(), diesel::r2d2::Error> {
        if let DbConnection::Sqlite(c) = conn {
            // WAL lets readers run beside the single writer; NORMAL is safe
            // with WAL (a crash loses at most the last commits, never
            // corrupts). busy_timeout makes concurrent writers wait instead
            // of failing at once; it comes first, because switching the
            // journal to WAL takes the database's lock, which the pool's
            // other new connections may hold at that moment.
            c.batch_execute(
                "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
                 PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
            )
            .map_err(diesel::r2d2::Error::QueryError)?;
        }
        Ok(())
    }
}

/// The database: a connection pool plus what backend it is.
#[derive(Clone)]
pub struct Database {
    pool: Pool<ConnectionManager<DbConnection>>,
    backend: Backend,
    url: String,
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
        let manager = ConnectionManager::<DbConnection>::new(url.clone());
        let pool = Pool::builder()
            .max_size(pool_size.max(1))
            .connection_timeout(Duration::from_secs(10))
            .connection_customizer(Box::new(Setup))
            .build(manager)
            .map_err(|e| DbError::Open(e.to_string()))?;
        Ok(Database { pool, backend, url })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A pooled connection (blocking: call from `spawn_blocking`).
    pub fn conn(&self) -> Result<Pooled, DbError> {
        Ok(self.pool.get()?)
    }

    /// The URL, for opening dedicated connections (e.g. LISTEN).
    pub(crate) fn url(&self) -> &str {
        &self.url
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
