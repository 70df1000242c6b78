//! `provider-gateway`: the reference terminating-provider gateway.
//!
//! ```text
//! provider-gateway --config gateway.toml
//! ```

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use provider_sdk::gateway::{Gateway, GatewayConfig};

#[derive(Parser)]
#[command(
    name = "provider-gateway",
    version,
    about = "Reference terminating-provider gateway: accepts calls with a valid ticket, bridges them to the termination target, settles them with central",
    long_about = "Reference terminating-provider gateway.\n\n\
On start it enrolls with central (first start: key, CSR, one-time token), publishes the rate deck, \
and listens for SIP over UDP. INVITEs need a valid X-LCR-Ticket; accepted calls go to the \
termination target with media relayed; after hangup ticket and receipts are queued durably and \
sent to central's ledger.\n\n\
Settings come from the TOML file (see ops/provider-gateway.toml), overridden by the environment: \
PROVIDER_GATEWAY_CENTRAL_URL, PROVIDER_GATEWAY_ENROLLMENT_TOKEN, PROVIDER_GATEWAY_SIP_LISTEN, \
PROVIDER_GATEWAY_TERMINATION, PROVIDER_GATEWAY_SPOOL. Logs go to stderr; RUST_LOG sets the level \
(default info)."
)]
struct Cli {
    /// Configuration file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    // One rustls provider for the whole process, before anything uses TLS.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = GatewayConfig::load(&cli.config)
        .with_context(|| format!("loading {}", cli.config.display()))?;
    let gateway = Gateway::start(config)
        .await
        .context("starting the gateway")?;
    println!(
        "provider-gateway: provider {} listening on udp {}",
        gateway.provider_id(),
        gateway.sip_addr()
    );
    wait_for_signal().await?;
    let counts = gateway.counts();
    let queue = gateway.queue_counts();
    gateway.shutdown().await;
    eprintln!(
        "provider-gateway: stopped; calls accepted {}, refused {}; receipts countersigned {}, disputed {}, provider-only {}; ledger queue: {} waiting, {} sent, {} rejected",
        counts.accepted,
        counts.refused,
        counts.settled,
        counts.disputed,
        counts.provider_only,
        queue.queued,
        queue.sent,
        queue.rejected
    );
    Ok(())
}

async fn wait_for_signal() -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}
