//! `forwarder`: the home provider's daemon and its operator command line.
//!
//! ```text
//! forwarder init --data DIR [--server-name NAME ...] [--api-listen ADDR] [--database-url URL]
//! forwarder serve --data DIR [--config FILE] [--api-listen ADDR]
//! forwarder subscriber add|show|list|change|suspend|resume|close ...
//! forwarder number add|remove|list ...
//! forwarder rule set|show ...
//! forwarder account payment|credit|adjust|show ...
//! forwarder cdr list|show ...
//! forwarder credential subscriber ID
//! forwarder statements run|list|show|resend|holds|schedule ...
//! ```
//!
//! The operator commands work on the database directly (the server need
//! not run) and print JSON.

mod cli;

/// The call path allocates and frees many small buffers on many threads
/// (SIP messages, SQL rows, JSON); mimalloc does that with less work and
/// less lock traffic than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context, Result};
use clap::Parser;
use forwarder::app;
use forwarder::config::Config;

fn main() -> std::process::ExitCode {
    // One rustls provider for the whole process, before anything uses TLS.
    forwarder::tls::install_crypto_provider();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,forwarder=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = cli::Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("forwarder: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: cli::Cli) -> Result<()> {
    match cli.command {
        cli::Command::Init(args) => cli::init(&cli.global, &args),
        cli::Command::Serve(args) => {
            let mut cfg = cli.global.config()?;
            if let Some(l) = args.api_listen {
                cfg.api_listen = l;
            }
            serve(cfg)
        }
        other => cli::operator(&cli.global, other),
    }
}

/// `forwarder serve`: the HTTPS API (when the data directory was
/// initialised) and the SIP call path (when `[sip]` is configured), until
/// SIGINT/SIGTERM.
fn serve(cfg: Config) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        forwarder::tls::install_crypto_provider();
        let initialised = cfg.data_dir.join(app::ROOT_CERT).exists();
        let calls = cfg.calls.clone();
        if !initialised && calls.is_none() {
            anyhow::bail!(
                "nothing to serve: {} is not initialised (forwarder init) and has no [sip] table",
                cfg.data_dir.display()
            );
        }
        let api = if initialised {
            let running = app::start_with_signals(cfg.clone()).await?;
            // Tests and scripts read the bound addresses from here.
            println!("API listening on https://{}", running.api_addr);
            Some(running)
        } else {
            eprintln!(
                "forwarder: {} is not initialised: serving SIP only, no HTTPS API (run `forwarder init`)",
                cfg.data_dir.display()
            );
            None
        };
        let service = match &calls {
            Some(calls) => {
                let db = match &api {
                    Some(a) => a.db().clone(),
                    None => {
                        let url = cfg.database_url.clone();
                        let pool = cfg.pool_size;
                        tokio::task::spawn_blocking(move || forwarder::db::Database::open(&url, pool))
                            .await?
                            .context("cannot open the database")?
                    }
                };
                let service = forwarder::service::start(calls, db).await?;
                // The metrics line first: scripts wait for the SIP line.
                if let Some(addr) = service.metrics_addr {
                    println!("call metrics on http://{addr}/metrics");
                }
                println!("SIP listening on udp {}", service.sip_addr());
                Some(service)
            }
            None => None,
        };
        let scheduler = match &cfg.statements {
            Some(settings) => {
                let db = match &api {
                    Some(a) => a.db().clone(),
                    None => {
                        let url = cfg.database_url.clone();
                        let pool = cfg.pool_size;
                        tokio::task::spawn_blocking(move || forwarder::db::Database::open(&url, pool))
                            .await?
                            .context("cannot open the database")?
                    }
                };
                let metrics = api
                    .as_ref()
                    .map_or_else(|| std::sync::Arc::new(forwarder::metrics::Metrics::new()), |a| a.metrics().clone());
                let mailer = std::sync::Arc::new(
                    forwarder::statements::mail::Mailer::new(&cfg.mail).context("[mail]")?,
                );
                let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
                let task = tokio::spawn(forwarder::statements::scheduler(
                    db,
                    mailer,
                    settings.clone(),
                    cfg.mail.concurrency,
                    metrics,
                    async move {
                        let _ = stop_rx.await;
                    },
                ));
                println!("statements scheduled: {}", settings.schedule.source());
                Some((stop_tx, task))
            }
            None => None,
        };
        match api {
            Some(running) => running.wait().await,
            None => forwarder::server::shutdown_signal().await,
        }
        if let Some(service) = service {
            service.shutdown();
        }
        if let Some((stop, task)) = scheduler {
            let _ = stop.send(());
            let _ = task.await;
        }
        Ok::<(), anyhow::Error>(())
    })
}
