//! The annotated sample `ops/provider-gateway.toml` loads with the real
//! loader and its rate deck parses, so the sample cannot drift from what
//! the gateway accepts.

use std::path::Path;

use provider_sdk::gateway::GatewayConfig;
use provider_sdk::ratedeck::RateDeck;

#[test]
fn the_gateway_sample_loads_and_its_deck_parses() {
    let ops = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops");
    let config = GatewayConfig::load(&ops.join("provider-gateway.toml"))
        .unwrap_or_else(|e| panic!("ops/provider-gateway.toml: {e}"));
    assert_eq!(config.central.name, "carrier-a");
    assert_eq!(config.sip.listen.port(), 5071);
    assert_eq!(config.media_ports(), 40000..=40999);
    assert_eq!(
        config
            .metrics
            .as_ref()
            .map(|m| m.listen.to_string())
            .as_deref(),
        Some("127.0.0.1:9102")
    );
    // The demo knobs stay commented out in the sample.
    assert_eq!(config.demo.sip_delay_ms, 0);
    assert_eq!(config.demo.reject_calls, None);
    let deck = std::fs::read(&config.rates.deck).expect("the sample's deck exists");
    RateDeck::parse_csv(&deck).expect("the sample's deck parses");
}
