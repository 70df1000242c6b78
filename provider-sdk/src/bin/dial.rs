//! `dial`: places a call through the best provider and says why.
//!
//! ```text
//! dial --config dial.toml [--max-rate 0.05] [--play in.wav] [--record out.wav] [--duration 10] [--json] NUMBER
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use provider_sdk::dialer::{DialRequest, Dialer, DialerConfig};
use provider_sdk::number::E164;
use rust_decimal::Decimal;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "dial",
    version,
    about = "Place a call: ask central who carries it, probe them, pick the best by unit cost and latency, sign a ticket, call with failover",
    long_about = "Place a call through the network.\n\n\
Asks central which providers will carry a call to NUMBER (at most --max-rate per minute), probes \
them with OPTIONS in parallel, ranks them by the unit cost of a typical call and, within a cost \
band, by latency, signs a ticket for each attempt and calls through the best, failing over to the \
next. Once answered it plays --play (8 kHz mono WAV; silence without it) as G.711 RTP, records what \
it hears to --record, and hangs up after --duration seconds with a signed usage receipt. Prints the \
decision (candidates, rates, latencies, the choice, every attempt) and the outcome.\n\n\
Settings (central, the dialer's own key and certificate, the calling number) come from the TOML \
file; DIALER_ENROLLMENT_TOKEN and DIALER_CENTRAL_URL override it. Exit status: 0 answered, \
1 not answered, 2 could not try."
)]
struct Cli {
    /// Configuration file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Highest rate per minute accepted.
    #[arg(long, value_name = "DECIMAL")]
    max_rate: Option<Decimal>,
    /// WAV file to play once answered (8 kHz mono, 16-bit PCM or G.711).
    #[arg(long, value_name = "WAV")]
    play: Option<PathBuf>,
    /// Where to write what was received (WAV).
    #[arg(long, value_name = "WAV")]
    record: Option<PathBuf>,
    /// Seconds to stay on the call once answered.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    json: bool,
    /// The number to call (E.164; spaces, dashes and a leading 00 are accepted).
    number: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("dial: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run() -> Result<bool> {
    let cli = Cli::parse();
    // One rustls provider for the whole process, before anything uses TLS.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let number: E164 = cli
        .number
        .parse()
        .with_context(|| format!("{:?} is not a phone number", cli.number))?;
    let config = DialerConfig::load(&cli.config)
        .with_context(|| format!("loading {}", cli.config.display()))?;
    let dialer = Dialer::new(config).await.context("starting the dialer")?;
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.cancel();
        }
    });
    let request = DialRequest {
        number,
        max_rate: cli.max_rate,
        play: cli.play,
        record: cli.record,
        duration: Duration::from_secs(cli.duration),
    };
    let report = dialer.dial(&request, stop).await.context("dialing")?;
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("encoding the report")?
        );
    } else {
        print!("{}", report.render());
    }
    Ok(report.succeeded())
}
