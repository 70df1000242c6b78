//! Shared harness for the end-to-end tests: a real central server over real
//! HTTPS (certificates from its own CA), on SQLite or PostgreSQL.
#![allow(dead_code)]

use central::app::{self, InitOptions, Running};
use central::config::Config;
use diesel::Connection;
use provider_sdk::pki::ParticipantKey;
use reqwest::{Certificate, Client, Identity, Response};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
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
        let name = format!("central_test_{}", uuid::Uuid::new_v4().simple());
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

/// Runs a test body against SQLite, and against PostgreSQL when
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

/// A running server with its data directory and clients.
pub struct Central {
    pub dir: tempfile::TempDir,
    pub running: Option<Running>,
    pub base: String,
    pub root_pem: String,
    pub pg: Option<PgDb>,
    pub database_url: String,
}

pub fn init_dir(dir: &Path, database_url: Option<String>) {
    app::init(
        dir,
        &InitOptions {
            database_url,
            ..InitOptions::default()
        },
    )
    .expect("central init");
}

impl Central {
    pub async fn start(backend: Backend) -> Central {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Central {
        let dir = tempfile::tempdir().expect("tempdir");
        let (pg, url) = match backend {
            Backend::Sqlite => (None, None),
            Backend::Postgres(admin) => {
                let db = tokio::task::spawn_blocking(move || PgDb::create(&admin))
                    .await
                    .expect("create pg db");
                let url = db.url.clone();
                (Some(db), Some(url))
            }
        };
        let d = dir.path().to_path_buf();
        let u = url.clone();
        tokio::task::spawn_blocking(move || init_dir(&d, u))
            .await
            .expect("init");
        let mut central = Self::serve_dir(dir, pg, tweak).await;
        if let Some(u) = url {
            central.database_url = u;
        }
        central
    }

    /// Starts a server on an initialised directory.
    pub async fn serve_dir(
        dir: tempfile::TempDir,
        pg: Option<PgDb>,
        tweak: impl FnOnce(&mut Config),
    ) -> Central {
        let mut cfg = Config::load(dir.path(), None).expect("config");
        cfg.listen = "127.0.0.1:0".parse().expect("addr");
        tweak(&mut cfg);
        let database_url = cfg.database_url.clone();
        let running = app::start(cfg).await.expect("central start");
        let base = format!("https://127.0.0.1:{}", running.addr.port());
        let root_pem = std::fs::read_to_string(dir.path().join(app::ROOT_CERT)).expect("root cert");
        Central {
            dir,
            running: Some(running),
            base,
            root_pem,
            pg,
            database_url,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A client with no client certificate.
    pub fn anonymous(&self) -> Client {
        client(&self.root_pem, None)
    }

    /// The operator's client.
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

    /// Registers a provider and enrolls its key; returns it ready to use.
    pub async fn provider(&self, name: &str, currency: &str) -> TestProvider {
        let res = self
            .operator()
            .post(self.url("/v1/providers"))
            .json(&json!({
                "name": name,
                "sip_addresses": [{"address": "127.0.0.1:5060", "transport": "udp"}],
                "currency": currency,
                "contact": "noc@example.net",
            }))
            .send()
            .await
            .expect("register");
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        assert_eq!(status, 201, "register {name}: {body}");
        let id = body["id"].as_i64().expect("id");
        let token = body["enrollment_token"]
            .as_str()
            .expect("token")
            .to_string();
        let (key_pem, key) = new_key(self.dir.path(), name);
        let csr = key.csr_pem(name).expect("csr");
        let res = self
            .anonymous()
            .post(self.url("/v1/certificates"))
            .json(&json!({"csr": csr, "enrollment_token": token}))
            .send()
            .await
            .expect("enroll");
        assert_eq!(res.status(), 201, "enroll {name}");
        let cert: Value = res.json().await.unwrap();
        let cert_pem = cert["certificate"].as_str().expect("cert pem").to_string();
        TestProvider {
            id,
            key_id: cert["key_id"].as_str().expect("key id").to_string(),
            client: client(&self.root_pem, Some((&cert_pem, &key_pem))),
            cert_pem,
            key_pem,
        }
    }

    /// Polls route answers until `pred` holds (bounded: 30 s), returning the
    /// last answer. Rebuilds happen off the request path.
    pub async fn routes_until(&self, query: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.routes(query).await;
            if pred(&v) || std::time::Instant::now() > deadline {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn routes(&self, query: &str) -> Value {
        let res = self
            .anonymous()
            .get(self.url(&format!("/v1/routes?{query}")))
            .send()
            .await
            .expect("routes");
        assert_eq!(res.status(), 200, "routes {query}");
        res.json().await.unwrap()
    }
}

pub fn new_key(dir: &Path, name: &str) -> (String, ParticipantKey) {
    let path: PathBuf = dir.join(format!("{name}-{}.key", uuid::Uuid::new_v4().simple()));
    let key = ParticipantKey::generate();
    key.save_pem(&path).expect("save key");
    (std::fs::read_to_string(&path).expect("read key"), key)
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

pub struct TestProvider {
    pub id: i64,
    pub key_id: String,
    pub client: Client,
    pub cert_pem: String,
    pub key_pem: String,
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
