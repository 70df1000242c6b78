//! `central`: the central server's command line.
//!
//! ```text
//! central init  --data DIR [--name NAME] [--server-name 127.0.0.1 ...] [--listen ADDR] [--database-url URL]
//! central serve --data DIR [--listen ADDR] [--config FILE]
//! ```

use anyhow::{Context, Result};
use central::app::{self, InitOptions};
use central::config::Config;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "central",
    version,
    about = "Central server: provider directory, route queries and certificate authority",
    long_about = "Central server: provider directory, route queries and certificate authority.\n\n\
Settings come from DIR/central.toml (or --config), overridden by the environment: \
CENTRAL_LISTEN, CENTRAL_DATABASE_URL, CENTRAL_MAX_BODY_BYTES, CENTRAL_REQUEST_TIMEOUT_SECS, \
CENTRAL_POOL_SIZE. Logs go to stderr; RUST_LOG sets the level (default info)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the database, the certificate authority, the server's TLS
    /// certificate and the operator's client credential in DIR.
    Init {
        /// Data directory (created if missing; must not hold a CA yet).
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// Common name of the root certificate.
        #[arg(long, default_value = "central root CA")]
        name: String,
        /// DNS name or IP address for the server certificate (repeatable).
        #[arg(long = "server-name", value_name = "NAME", default_values_t = ["127.0.0.1".to_string(), "localhost".to_string()])]
        server_names: Vec<String>,
        /// Listen address to record in DIR/central.toml.
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// Database URL to record in DIR/central.toml (postgres://... or a
        /// SQLite path; default: SQLite file in DIR).
        #[arg(
            long,
            value_name = "URL",
            env = "CENTRAL_DATABASE_URL",
            hide_env_values = true
        )]
        database_url: Option<String>,
    },
    /// Serve HTTPS until SIGINT or SIGTERM.
    Serve {
        /// Data directory made by `central init`.
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// Listen address (overrides config and CENTRAL_LISTEN).
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// Config file (default: DIR/central.toml when present).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

fn main() -> Result<()> {
    // One rustls provider for the whole process, before anything uses TLS.
    central::tls::install_crypto_provider();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Init {
            data,
            name,
            server_names,
            listen,
            database_url,
        } => {
            let opts = InitOptions {
                name,
                server_names,
                listen,
                database_url,
            };
            let dd = app::init(&data, &opts)?;
            println!("initialised {}", dd.dir.display());
            println!("  root certificate:    {}", dd.root_cert().display());
            println!(
                "  operator credential: {} {}",
                dd.operator_cert().display(),
                dd.operator_key().display()
            );
            Ok(())
        }
        Command::Serve {
            data,
            listen,
            config,
        } => {
            let mut cfg = Config::load(&data, config.as_deref())
                .with_context(|| format!("cannot load settings for {}", data.display()))?;
            if let Some(l) = listen {
                cfg.listen = l;
            }
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            rt.block_on(async move {
                let running = app::start_with_signals(cfg).await?;
                // Tests and scripts read the bound address from here.
                println!("listening on https://{}", running.addr);
                running.wait().await;
                Ok::<(), anyhow::Error>(())
            })
        }
    }
}
