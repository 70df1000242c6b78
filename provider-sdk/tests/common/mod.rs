//! Shared by the SIPp tests: starting SIPp with a scenario from
//! `ops/sipp/`, waiting for it within a bound, and a B2BUA on loopback.
#![allow(dead_code)] // each test binary uses a subset

use std::time::Duration;

use provider_sdk::sip::b2bua::{B2bua, B2buaConfig, CallRecord};
use provider_sdk::sip::control::FixedTargets;
use provider_sdk::sip::SipTarget;

pub mod network;
mod sipp;
pub use sipp::*;

pub async fn b2bua(targets: Vec<SipTarget>, attempt_timeout: Duration) -> B2bua {
    let config = B2buaConfig::with_control(std::sync::Arc::new(FixedTargets {
        targets,
        attempt_timeout,
    }));
    B2bua::bind(config).await.expect("bind b2bua")
}

/// The record of the one call, once the B2BUA has finished with it.
pub async fn record(b2bua: &B2bua) -> CallRecord {
    for _ in 0..100 {
        if let Some(r) = b2bua.records().into_iter().next() {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the B2BUA recorded no finished call");
}

/// The outcomes of a record's attempts, in order.
pub fn outcomes(record: &CallRecord) -> Vec<provider_sdk::sip::Outcome> {
    record.attempts.iter().map(|a| a.outcome.clone()).collect()
}

/// A short pause (callees are already listening when `spawn_sipp` returns).
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// A B2BUA with `configure` applied to the loopback configuration for
/// `targets` (e.g. to add a TCP listener).
pub async fn b2bua_with(
    targets: Vec<SipTarget>,
    attempt_timeout: Duration,
    configure: impl FnOnce(&mut B2buaConfig),
) -> B2bua {
    let mut config = B2buaConfig::with_control(std::sync::Arc::new(FixedTargets {
        targets,
        attempt_timeout,
    }));
    configure(&mut config);
    B2bua::bind(config).await.expect("bind b2bua")
}
