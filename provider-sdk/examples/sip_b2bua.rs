//! The B2BUA test harness as a process, for load tests with SIPp.
//!
//! ```text
//! cargo run --release -p provider-sdk --example sip_b2bua -- \
//!     --listen 127.0.0.1:5060 --target sip:callee@127.0.0.1:5070 [--target ...] [--attempt-timeout-ms 5000] \
//!     [--media-ports 30000-30999 [--media-timeout-s 30]]
//! ```
//! With `--media-ports` the calls' RTP is anchored in the media relay on
//! loopback (ports from that range) and calls without RTP for
//! `--media-timeout-s` are ended with BYE to both legs; without it SDP passes
//! through unchanged.
//! Runs until interrupted (Ctrl-C / SIGTERM via the shell) and prints the
//! number of finished calls by final status on exit.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use provider_sdk::media::{MediaRelay, RelayConfig};
use provider_sdk::sip::anchor::RelayAnchor;
use provider_sdk::sip::b2bua::{B2bua, B2buaConfig};
use provider_sdk::sip::call::HangupCause;
use provider_sdk::sip::control::FixedTargets;
use provider_sdk::sip::SipTarget;

fn usage() -> &'static str {
    "usage: sip_b2bua --listen ADDR:PORT --target SIP-URI [--target SIP-URI ...] [--attempt-timeout-ms N] [--media-ports FIRST-LAST [--media-timeout-s N]]"
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut listen: Option<SocketAddr> = None;
    let mut targets = Vec::new();
    let mut attempt_timeout = Duration::from_secs(5);
    let mut media_ports: Option<(u16, u16)> = None;
    let mut media_timeout: Option<Duration> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{arg} needs a value\n{}", usage()))
        };
        match arg.as_str() {
            "--listen" => listen = Some(value()?.parse().context("--listen must be ADDR:PORT")?),
            "--target" => targets.push(SipTarget::parse(&value()?).context("bad --target")?),
            "--attempt-timeout-ms" => {
                attempt_timeout = Duration::from_millis(
                    value()?
                        .parse()
                        .context("--attempt-timeout-ms must be a number")?,
                )
            }
            "--media-ports" => {
                let v = value()?;
                let (a, b) = v
                    .split_once('-')
                    .with_context(|| format!("--media-ports must be FIRST-LAST, got {v}"))?;
                media_ports = Some((
                    a.parse().context("--media-ports: bad first port")?,
                    b.parse().context("--media-ports: bad last port")?,
                ));
            }
            "--media-timeout-s" => {
                media_timeout = Some(Duration::from_secs(
                    value()?
                        .parse()
                        .context("--media-timeout-s must be a number")?,
                ))
            }
            "-h" | "--help" => {
                println!("{}", usage());
                return Ok(());
            }
            other => bail!("unknown argument {other}\n{}", usage()),
        }
    }
    let listen = listen.with_context(|| format!("--listen is required\n{}", usage()))?;
    if targets.is_empty() {
        bail!("at least one --target is required\n{}", usage());
    }
    let mut config = B2buaConfig::with_control(Arc::new(FixedTargets {
        targets,
        attempt_timeout,
    }));
    config.bind = listen;
    match (media_ports, media_timeout) {
        (Some((first, last)), timeout) => {
            let mut relay_config = RelayConfig::loopback(first..=last);
            if let Some(t) = timeout {
                relay_config.media_timeout = t;
            }
            let relay = MediaRelay::new(relay_config).context("starting the media relay")?;
            eprintln!("media anchored on ports {first}-{last}");
            config.media = RelayAnchor::factory(relay);
        }
        (None, Some(_)) => bail!("--media-timeout-s needs --media-ports\n{}", usage()),
        (None, None) => {}
    }
    let b2bua = B2bua::bind(config)
        .await
        .with_context(|| format!("binding {listen}"))?;
    eprintln!("b2bua listening on udp {}", b2bua.local_addr());
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for record in b2bua.records() {
        let key = record
            .final_status
            .map_or("none".to_owned(), |s| s.to_string());
        *by_status.entry(key).or_default() += 1;
    }
    eprintln!("finished calls by final status: {by_status:?}");
    let media_timeouts = b2bua
        .records()
        .iter()
        .filter(|r| matches!(r.hangup, Some(HangupCause::MediaTimeout { .. })))
        .count();
    eprintln!("calls ended by media timeout: {media_timeouts}");
    Ok(())
}
