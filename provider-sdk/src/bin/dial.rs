//! `dial`: places a call through the best provider and says why.
//!
//! ```text
//! dial --config dial.toml [--max-rate 0.05] [--play in.wav] [--record out.wav] [--duration 10] [--json] NUMBER
//! dial --via 127.0.0.1:5060 --from +15550100 [--play in.wav] [--record out.wav] [--duration 10] NUMBER
//! dial answer --listen 127.0.0.1:5090 [--play out.wav] [--record DIR]
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use clap::Subcommand;
use provider_sdk::dialer::answer::{AnswerConfig, Answerer};
use provider_sdk::dialer::direct::{self, DirectRequest};
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
1 not answered, 2 could not try.\n\n\
With --via ADDR the call goes straight to that SIP address (UDP) without central or a ticket, as \
an upstream carrier hands a call to a forwarder; no --config is needed then.\n\n\
`dial answer` is the other end: a callee that answers every call, plays a WAV file and records \
what it hears.",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Configuration file (not needed with --via).
    #[arg(long, value_name = "FILE", required_unless_present = "via")]
    config: Option<PathBuf>,
    /// Call this SIP address (host:port, UDP) directly: no central, no ticket.
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["config", "max_rate"])]
    via: Option<SocketAddr>,
    /// The calling number with --via.
    #[arg(
        long,
        value_name = "NUMBER",
        default_value = "+15550100",
        requires = "via"
    )]
    from: String,
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
    #[arg(required = true)]
    number: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Answer every call: a callee that plays a WAV file and records what it hears.
    #[command(
        long_about = "Answer every call on a UDP address: 100, 180 and 200 with an SDP answer for \
the first G.711 codec offered, the --play file looped (silence without it), what the caller sends \
recorded to DIR/<n>-<number>.wav, one line printed per finished call. OPTIONS, CANCEL and session \
refreshes are answered. Runs until Ctrl-C or SIGTERM."
    )]
    Answer {
        /// UDP address for SIP.
        #[arg(long, value_name = "ADDR")]
        listen: SocketAddr,
        /// WAV file played to every caller (8 kHz mono, 16-bit PCM or G.711).
        #[arg(long, value_name = "WAV")]
        play: Option<PathBuf>,
        /// Directory for the recordings.
        #[arg(long, value_name = "DIR")]
        record: Option<PathBuf>,
        /// IPv4 address for RTP.
        #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
        media_ip: Ipv4Addr,
        /// A call without BYE is dropped after this many seconds.
        #[arg(long, default_value_t = 3600)]
        max_call_secs: u64,
        /// Print each finished call as JSON.
        #[arg(long)]
        json: bool,
    },
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
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        on_signal.cancel();
    });
    if let Some(Command::Answer {
        listen,
        play,
        record,
        media_ip,
        max_call_secs,
        json,
    }) = cli.command
    {
        let answerer = Answerer::bind(AnswerConfig {
            listen,
            media_ip,
            play,
            record_dir: record,
            max_call: Duration::from_secs(max_call_secs),
        })
        .await
        .context("starting the callee")?;
        println!("dial answer: listening on udp {}", answerer.local_addr());
        answerer
            .run(stop, |call| {
                if json {
                    println!("{}", serde_json::to_string(&call).unwrap_or_default());
                } else {
                    println!("{}", call.render());
                }
            })
            .await
            .context("answering")?;
        return Ok(true);
    }
    let raw = cli.number.unwrap_or_default();
    let number: E164 = raw
        .parse()
        .with_context(|| format!("{raw:?} is not a phone number"))?;
    if let Some(via) = cli.via {
        let from: E164 = cli
            .from
            .parse()
            .with_context(|| format!("--from {:?} is not a phone number", cli.from))?;
        let request = DirectRequest {
            number,
            via,
            from,
            play: cli.play,
            record: cli.record,
            duration: Duration::from_secs(cli.duration),
            answer_timeout: Duration::from_secs(60),
        };
        let report = direct::call(&request, stop).await.context("calling")?;
        if cli.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).context("encoding the report")?
            );
        } else {
            print!("{}", report.render());
        }
        return Ok(report.succeeded());
    }
    let Some(path) = cli.config else {
        anyhow::bail!("--config is needed (or --via)");
    };
    let config =
        DialerConfig::load(&path).with_context(|| format!("loading {}", path.display()))?;
    let dialer = Dialer::new(config).await.context("starting the dialer")?;
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
