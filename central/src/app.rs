//! Running central: [`init`] prepares a data directory, [`start`] serves it.
//!
//! Data directory layout after `central init --data DIR`:
//!
//! | file | what |
//! |---|---|
//! | `ca/` | the certificate authority (root key 0600 and certificate) |
//! | `ca.crt` | the root certificate (clients pin it: `curl --cacert`) |
//! | `server.crt`, `server.key` | central's TLS credential |
//! | `operator.crt`, `operator.key` | the operator's client credential |
//! | `central.sqlite` | the database, unless a database URL is configured |
//! | `central.toml` | settings given to `init` (listen, database_url) |
//!
//! Library users (and the tests) call [`start`] with a [`Config`] and get a
//! [`Running`] server bound to `config.listen` (port 0 picks a free port).

use crate::api::{self, AppState};
use crate::ca::{CertificateAuthority, Validity};
use crate::config::{Config, CONFIG_FILE};
use crate::db::store::{self, CertOwner, StoredCertificate};
use crate::db::Database;
use crate::metrics::Metrics;
use crate::routing::LiveIndex;
use anyhow::{bail, Context, Result};
use provider_sdk::pki::{ParticipantKey, Role};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::watch;

pub const CA_DIR: &str = "ca";
pub const ROOT_CERT: &str = "ca.crt";
pub const SERVER_CERT: &str = "server.crt";
pub const SERVER_KEY: &str = "server.key";
pub const OPERATOR_CERT: &str = "operator.crt";
pub const OPERATOR_KEY: &str = "operator.key";

/// What `central init` needs.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Common name of the root certificate.
    pub name: String,
    /// Names (DNS or IP) the server certificate is valid for.
    pub server_names: Vec<String>,
    /// Written to `central.toml` when given.
    pub listen: Option<SocketAddr>,
    /// Written to `central.toml` when given; SQLite in DIR otherwise.
    pub database_url: Option<String>,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            name: "central root CA".into(),
            server_names: vec!["127.0.0.1".into(), "localhost".into()],
            listen: None,
            database_url: None,
        }
    }
}

/// Paths of what `init` created.
#[derive(Debug, Clone)]
pub struct DataDir {
    pub dir: PathBuf,
}

impl DataDir {
    pub fn root_cert(&self) -> PathBuf {
        self.dir.join(ROOT_CERT)
    }
    pub fn operator_cert(&self) -> PathBuf {
        self.dir.join(OPERATOR_CERT)
    }
    pub fn operator_key(&self) -> PathBuf {
        self.dir.join(OPERATOR_KEY)
    }
}

fn write_new(path: &Path, contents: &str, private: bool) -> Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(contents.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Creates the database, the CA, the server certificate and the operator
/// credential in `dir`. Refuses when `dir` already holds a CA.
pub fn init(dir: &Path, opts: &InitOptions) -> Result<DataDir> {
    crate::tls::install_crypto_provider();
    if dir.join(CA_DIR).exists() || dir.join(ROOT_CERT).exists() {
        bail!(
            "{} already holds a certificate authority; refusing to overwrite it",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if opts.listen.is_some() || opts.database_url.is_some() {
        let mut toml = String::from("# Written by `central init`; CENTRAL_* variables override.\n");
        if let Some(l) = opts.listen {
            toml.push_str(&format!("listen = \"{l}\"\n"));
        }
        if let Some(u) = &opts.database_url {
            toml.push_str(&format!("database_url = {}\n", toml_string(u)));
        }
        write_new(&dir.join(CONFIG_FILE), &toml, true)?;
    }
    let config = Config::load(dir, None)?;
    let db = Database::open(&config.database_url, 2).context("cannot open the database")?;

    let ca = CertificateAuthority::create(&opts.name).context("cannot create the CA")?;
    ca.save(dir.join(CA_DIR)).context("cannot save the CA")?;
    write_new(&dir.join(ROOT_CERT), &ca.root_cert_pem(), false)?;

    let mut dns = Vec::new();
    let mut ips = Vec::new();
    for n in &opts.server_names {
        match n.parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => dns.push(n.clone()),
        }
    }
    let server = ca
        .issue_server_cert(&dns, &ips, Validity::days(825))
        .context("cannot issue the server certificate")?;
    write_new(&dir.join(SERVER_CERT), &server.cert.cert_pem, false)?;
    write_key_v1(&dir.join(SERVER_KEY), &server.key)?;

    let operator = ca
        .issue_key_pair("operator", Role::Operator, Validity::days(3650))
        .context("cannot issue the operator credential")?;
    write_key_v1(&dir.join(OPERATOR_KEY), &operator.key)?;
    write_new(&dir.join(OPERATOR_CERT), &operator.cert.cert_pem, false)?;
    let stored = StoredCertificate {
        key_id: operator.cert.key_id.to_string(),
        serial: operator.cert.serial.to_string(),
        owner: CertOwner::Operator,
        subject_cn: "operator".into(),
        cert_pem: operator.cert.cert_pem.clone(),
        not_before: operator.cert.not_before,
        not_after: operator.cert.not_after,
        revoked_at: None,
    };
    let mut conn = db.conn()?;
    store::insert_certificate(&mut conn, &stored, chrono::Utc::now())?;
    tracing::info!(dir = %dir.display(), "data directory initialised");
    Ok(DataDir {
        dir: dir.to_path_buf(),
    })
}

/// Writes an Ed25519 key as PKCS#8 v1 PEM (mode 0600, never overwriting):
/// the form OpenSSL, and so curl, reads.
fn write_key_v1(path: &Path, key: &ParticipantKey) -> Result<()> {
    let pem = key
        .to_pkcs8_pem()
        .with_context(|| format!("encoding {}", path.display()))?;
    write_new(path, &pem, true)
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A running server.
pub struct Running {
    pub addr: SocketAddr,
    pub index: Arc<LiveIndex>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    _listener: Option<crate::notify::ListenerGuard>,
}

impl Running {
    /// Stops accepting, lets open requests finish, stops background work.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "server task failed");
        }
    }

    /// Waits until the server stops (after a signal when started with
    /// [`start_with_signals`]).
    pub async fn wait(self) {
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "server task failed");
        }
        self.stop.send_replace(true);
    }
}

/// Starts serving `config.data_dir` (must have been initialised).
pub async fn start(config: Config) -> Result<Running> {
    start_inner(config, false).await
}

/// Like [`start`], and also stops on SIGINT/SIGTERM.
pub async fn start_with_signals(config: Config) -> Result<Running> {
    start_inner(config, true).await
}

async fn start_inner(config: Config, signals: bool) -> Result<Running> {
    crate::tls::install_crypto_provider();
    let dir = config.data_dir.clone();
    let ca = CertificateAuthority::load(dir.join(CA_DIR)).with_context(|| {
        format!(
            "cannot load the CA from {} (run `central init`?)",
            dir.display()
        )
    })?;
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .with_context(|| format!("cannot read {}", dir.join(name).display()))
    };
    let tls =
        crate::tls::server_config(ca.root_cert_der(), &read(SERVER_CERT)?, &read(SERVER_KEY)?)?;
    let url = config.database_url.clone();
    let pool_size = config.pool_size;
    let db = tokio::task::spawn_blocking(move || Database::open(&url, pool_size))
        .await?
        .context("cannot open the database")?;
    let db2 = db.clone();
    let index = tokio::task::spawn_blocking(move || LiveIndex::load(&db2))
        .await?
        .context("cannot build the route index")?;
    let metrics = Arc::new(Metrics::new());
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let (stop, stop_rx) = watch::channel(false);
    let body_limit = config.max_body_bytes;
    let ledger = Arc::new(crate::ledger::verifier(ca.root().clone(), db.clone()));
    let state = AppState {
        db: db.clone(),
        ledger,
        ca: Arc::new(ca),
        index: index.clone(),
        metrics: metrics.clone(),
        config: Arc::new(config),
    };
    let app = api::router(state).layer(axum::extract::DefaultBodyLimit::max(body_limit));
    tokio::spawn(
        index
            .clone()
            .run_rebuilder(db.clone(), metrics, stop_rx.clone()),
    );
    let rebuild = index.clone();
    let listen_guard = crate::notify::spawn_listener(&db, move || rebuild.request_rebuild());
    let mut stop_wait = stop_rx;
    let task = tokio::spawn(async move {
        let stopped = async move {
            // Resolves when stop is set (or its sender is gone).
            while !*stop_wait.borrow() {
                if stop_wait.changed().await.is_err() {
                    break;
                }
            }
        };
        if signals {
            let both = async {
                tokio::select! {
                    () = stopped => {}
                    () = crate::server::shutdown_signal() => {}
                }
            };
            crate::server::serve(listener, tls, app, both).await;
        } else {
            crate::server::serve(listener, tls, app, stopped).await;
        }
    });
    tracing::info!(%addr, backend = ?db.backend(), "central serving HTTPS");
    Ok(Running {
        addr,
        index,
        stop,
        task,
        _listener: listen_guard,
    })
}
