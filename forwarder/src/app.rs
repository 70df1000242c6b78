//! Running the forwarder: [`init`] prepares a data directory, [`start`]
//! serves it.
//!
//! Data directory layout after `forwarder init --data DIR`:
//!
//! | file | what |
//! |---|---|
//! | `ca/` | the forwarder's own certificate authority (root key 0600, certificate) |
//! | `ca.crt` | its root certificate (API clients pin it: `curl --cacert`) |
//! | `server.crt`, `server.key` | the API's TLS credential |
//! | `operator.crt`, `operator.key` | the operator's client credential |
//! | `forwarder.sqlite` | the database, unless a database URL is configured |
//! | `forwarder.toml` | settings given to `init` (api_listen, database_url) |
//!
//! [`start`] opens the database (running its migrations), binds the API and
//! returns a [`Running`] handle. The SIP side plugs in next to it: it takes
//! [`Running::db`] and [`Running::config`], and stops when the
//! [`StopSignal`] from [`Running::stop_signal`] resolves:
//!
//! ```no_run
//! # async fn sip(_db: forwarder::db::Database, _stop: forwarder::app::StopSignal) {}
//! # async fn run() -> anyhow::Result<()> {
//! let config = forwarder::config::Config::load("/var/lib/forwarder".as_ref(), None)?;
//! let running = forwarder::app::start_with_signals(config).await?;
//! let sip = tokio::spawn(sip(running.db().clone(), running.stop_signal()));
//! running.wait().await; // until SIGINT/SIGTERM
//! sip.await?;
//! # Ok(()) }
//! ```

use crate::api::{self, AppState};
use crate::ca::{CertificateAuthority, Validity};
use crate::config::{Config, CONFIG_FILE};
use crate::db::Database;
use crate::metrics::Metrics;
use crate::store::credentials::{self, OperatorCertificate};
use anyhow::{bail, Context, Result};
use provider_sdk::pki::{ParticipantKey, Role, RootCertificate};
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

/// What `forwarder init` needs.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Common name of the API's root certificate.
    pub name: String,
    /// Names (DNS or IP) the API's server certificate is valid for.
    pub server_names: Vec<String>,
    /// Written to `forwarder.toml` when given.
    pub api_listen: Option<SocketAddr>,
    /// Written to `forwarder.toml` when given; SQLite in DIR otherwise.
    pub database_url: Option<String>,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            name: "forwarder API root CA".into(),
            server_names: vec!["127.0.0.1".into(), "localhost".into()],
            api_listen: None,
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

/// Creates the database, the CA, the API's server certificate and the
/// operator credential in `dir`. Refuses when `dir` already holds a CA.
pub fn init(dir: &Path, opts: &InitOptions) -> Result<DataDir> {
    crate::tls::install_crypto_provider();
    if dir.join(CA_DIR).exists() || dir.join(ROOT_CERT).exists() {
        bail!(
            "{} already holds a certificate authority; refusing to overwrite it",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if opts.api_listen.is_some() || opts.database_url.is_some() {
        let mut toml =
            String::from("# Written by `forwarder init`; FORWARDER_* variables override.\n");
        if let Some(l) = opts.api_listen {
            toml.push_str(&format!("api_listen = \"{l}\"\n"));
        }
        if let Some(u) = &opts.database_url {
            toml.push_str(&format!(
                "database_url = {}\n",
                toml::Value::String(u.clone())
            ));
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
    write_key(&dir.join(SERVER_KEY), &server.key)?;

    let operator = ca
        .issue_key_pair("operator", Role::Operator, Validity::days(3650))
        .context("cannot issue the operator credential")?;
    write_key(&dir.join(OPERATOR_KEY), &operator.key)?;
    write_new(&dir.join(OPERATOR_CERT), &operator.cert.cert_pem, false)?;
    let mut conn = db.conn()?;
    credentials::record_operator_certificate(
        &mut conn,
        &OperatorCertificate {
            key_id: operator.cert.key_id.to_string(),
            serial: operator.cert.serial.to_string(),
            subject_cn: "operator".into(),
            cert_pem: operator.cert.cert_pem.clone(),
            not_after: operator.cert.not_after,
        },
        chrono::Utc::now(),
    )?;
    tracing::info!(dir = %dir.display(), "data directory initialised");
    Ok(DataDir {
        dir: dir.to_path_buf(),
    })
}

/// Writes an Ed25519 key as PKCS#8 PEM (mode 0600, never overwriting): the
/// form OpenSSL, and so curl, reads.
fn write_key(path: &Path, key: &ParticipantKey) -> Result<()> {
    let pem = key
        .to_pkcs8_pem()
        .with_context(|| format!("encoding {}", path.display()))?;
    write_new(path, &pem, true)
}

/// Resolves once the forwarder is stopping.
#[derive(Clone)]
pub struct StopSignal(watch::Receiver<bool>);

impl StopSignal {
    /// Waits until stop is requested (or the server is gone).
    pub async fn stopped(mut self) {
        while !*self.0.borrow() {
            if self.0.changed().await.is_err() {
                break;
            }
        }
    }

    pub fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }
}

/// A running forwarder (for now: its HTTPS API).
pub struct Running {
    /// Where the HTTPS API listens (the port is real when 0 was configured).
    pub api_addr: SocketAddr,
    db: Database,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// The database the API uses; the SIP side shares it.
    pub fn db(&self) -> &Database {
        &self.db
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The registry `/metrics` serves (the statement scheduler reports here).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// A future-maker for parts that must stop with the server.
    pub fn stop_signal(&self) -> StopSignal {
        StopSignal(self.stop.subscribe())
    }

    /// Stops accepting, lets open requests finish.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "server task failed");
        }
    }

    /// Waits until the server stops (after a signal when started with
    /// [`start_with_signals`]), then tells every [`StopSignal`].
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
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name)).with_context(|| {
            format!(
                "cannot read {} (run `forwarder init --data {}`?)",
                dir.join(name).display(),
                dir.display()
            )
        })
    };
    let root = RootCertificate::from_pem(&read(ROOT_CERT)?).context("bad root certificate")?;
    let tls =
        crate::tls::server_config(root.der().as_ref(), &read(SERVER_CERT)?, &read(SERVER_KEY)?)?;
    let url = config.database_url.clone();
    let pool_size = config.pool_size;
    let db = tokio::task::spawn_blocking(move || Database::open(&url, pool_size))
        .await?
        .context("cannot open the database")?;
    let listener = tokio::net::TcpListener::bind(config.api_listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.api_listen))?;
    let api_addr = listener.local_addr()?;
    let (stop, stop_rx) = watch::channel(false);
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::new());
    let state = AppState {
        db: db.clone(),
        root: Arc::new(root),
        metrics: metrics.clone(),
        config: config.clone(),
    };
    let app = api::router(state);
    let stopped = StopSignal(stop_rx).stopped();
    let task = tokio::spawn(async move {
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
    tracing::info!(%api_addr, backend = ?db.backend(), "forwarder API serving HTTPS");
    Ok(Running {
        api_addr,
        db,
        config,
        metrics,
        stop,
        task,
    })
}
