//! Shared harness: a real database (SQLite file or a throwaway PostgreSQL
//! database) and a real forwarder API over real HTTPS with certificates
//! from its own CA.
#![allow(dead_code)]

use diesel::Connection;
use forwarder::app::{self, InitOptions, Running};
use forwarder::config::Config;
use forwarder::db::Database;
use reqwest::{Certificate, Client, Identity, Response};
use serde_json::Value;
use std::time::Duration;

pub enum Backend {
    Sqlite,
    Postgres(String),
}

/// A throwaway PostgreSQL database, dropped at the end of the test.
pub struct PgDb {
    admin_url: String,
    name: String,
    pub url: String,
}

impl PgDb {
    pub fn create(admin_url: &str) -> PgDb {
        use diesel::connection::SimpleConnection;
        let name = format!("forwarder_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = diesel::pg::PgConnection::establish(admin_url)
            .expect("TEST_POSTGRES_URL must be reachable");
        conn.batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create test database");
        let base = admin_url
            .rsplit_once('/')
            .map(|(b, _)| b.to_string())
            .expect("TEST_POSTGRES_URL needs a /database part");
        PgDb {
            admin_url: admin_url.to_string(),
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        use diesel::connection::SimpleConnection;
        if let Ok(mut c) = diesel::pg::PgConnection::establish(&self.admin_url) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// The PostgreSQL admin URL, or a loud skip message.
pub fn postgres_url(test: &str) -> Option<String> {
    match std::env::var("TEST_POSTGRES_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            eprintln!("SKIPPED (no TEST_POSTGRES_URL): {test} on PostgreSQL; run `ops/pg.sh start` and export TEST_POSTGRES_URL");
            None
        }
    }
}

/// Runs an async test body against SQLite, and against PostgreSQL when
/// TEST_POSTGRES_URL is set.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:path) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $body($crate::common::Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(url) = $crate::common::postgres_url(stringify!($name)) {
                    $body($crate::common::Backend::Postgres(url)).await;
                }
            }
        }
    };
}

/// Runs a blocking test body against both backends.
#[macro_export]
macro_rules! both_backends_sync {
    ($name:ident, $body:path) => {
        mod $name {
            #[test]
            fn sqlite() {
                $body($crate::common::Backend::Sqlite);
            }
            #[test]
            fn postgres() {
                if let Some(url) = $crate::common::postgres_url(stringify!($name)) {
                    $body($crate::common::Backend::Postgres(url));
                }
            }
        }
    };
}

/// A database for store tests: a temp SQLite file or a fresh PostgreSQL
/// database, migrated.
pub struct TestDb {
    pub db: Database,
    pub url: String,
    _dir: tempfile::TempDir,
    _pg: Option<PgDb>,
}

impl TestDb {
    pub fn new(backend: Backend) -> TestDb {
        let dir = tempfile::tempdir().expect("tempdir");
        let (url, pg) = match backend {
            Backend::Sqlite => (
                dir.path()
                    .join("test.sqlite")
                    .to_string_lossy()
                    .into_owned(),
                None,
            ),
            Backend::Postgres(admin) => {
                let pg = PgDb::create(&admin);
                (pg.url.clone(), Some(pg))
            }
        };
        let db = Database::open(&url, 8).expect("open database");
        TestDb {
            db,
            url,
            _dir: dir,
            _pg: pg,
        }
    }
}

/// A running forwarder API with its data directory.
pub struct Forwarder {
    pub dir: tempfile::TempDir,
    pub running: Option<Running>,
    pub base: String,
    pub root_pem: String,
    pub db: Database,
    pub pg: Option<PgDb>,
}

impl Forwarder {
    pub async fn start(backend: Backend) -> Forwarder {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Forwarder {
        let dir = tempfile::tempdir().expect("tempdir");
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres(admin) => Some(
                tokio::task::spawn_blocking(move || PgDb::create(&admin))
                    .await
                    .expect("create pg db"),
            ),
        };
        let url = pg.as_ref().map(|p| p.url.clone());
        let d = dir.path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            app::init(
                &d,
                &InitOptions {
                    database_url: url,
                    ..InitOptions::default()
                },
            )
            .expect("forwarder init")
        })
        .await
        .expect("init");
        let mut cfg = Config::load(dir.path(), None).expect("config");
        cfg.api_listen = "127.0.0.1:0".parse().expect("addr");
        tweak(&mut cfg);
        let running = app::start(cfg).await.expect("forwarder start");
        let base = format!("https://127.0.0.1:{}", running.api_addr.port());
        let root_pem = std::fs::read_to_string(dir.path().join(app::ROOT_CERT)).expect("root");
        let db = running.db().clone();
        Forwarder {
            dir,
            running: Some(running),
            base,
            root_pem,
            db,
            pg,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn anonymous(&self) -> Client {
        client(&self.root_pem, None)
    }

    pub fn operator(&self) -> Client {
        let cert = std::fs::read_to_string(self.dir.path().join(app::OPERATOR_CERT)).unwrap();
        let key = std::fs::read_to_string(self.dir.path().join(app::OPERATOR_KEY)).unwrap();
        client(&self.root_pem, Some((&cert, &key)))
    }

    pub async fn shutdown(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

pub fn client(root_pem: &str, identity: Option<(&str, &str)>) -> Client {
    let mut b = Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(Certificate::from_pem(root_pem.as_bytes()).expect("root pem"))
        .use_rustls_tls()
        .timeout(Duration::from_secs(60));
    if let Some((cert, key)) = identity {
        let pem = format!("{cert}\n{key}");
        b = b.identity(Identity::from_pem(pem.as_bytes()).expect("identity"));
    }
    b.build().expect("client")
}

/// Status and problem body of a response, checking the content type.
pub async fn problem(res: Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    assert_eq!(
        ct, "application/problem+json",
        "status {status} body {body}"
    );
    assert_eq!(body["status"].as_u64(), Some(u64::from(status)));
    (status, body)
}

/// Status and JSON body of a successful response.
pub async fn json(res: Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    (status, body)
}
