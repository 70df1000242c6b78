//! The annotated sample `ops/forwarder.toml` loads with the real loader and
//! its rating plans pass the same validation `forwarder serve` applies, so
//! the sample cannot drift from what the forwarder accepts.

use std::path::Path;

use forwarder::rating::Plans;
use provider_sdk::ratedeck::RateDeck;

#[test]
fn the_sample_configuration_loads_with_every_table() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/forwarder.toml");
    let dir = tempfile::tempdir().expect("tempdir");
    // The retail plan's deck, in the data directory as the sample says.
    std::fs::write(
        dir.path().join("retail.csv"),
        "prefix,rate_per_minute,connect_fee,first_increment,next_increment\n49,0.0300,0,1,1\n",
    )
    .expect("deck");
    let config = forwarder::config::Config::load(dir.path(), Some(&sample))
        .unwrap_or_else(|e| panic!("{}: {e}", sample.display()));
    let calls = config.calls.expect("the sample has the call path");
    assert_eq!(calls.sip.listen.port(), 5060);
    assert_eq!(calls.sip.ingress.trusted, ["127.0.0.1", "::1"]);
    assert_eq!(calls.central.name, "home-telecom");
    assert_eq!(calls.central.key, dir.path().join("forwarder.key"));
    assert_eq!(calls.routing.cache_ttl_secs, 300);
    assert_eq!(calls.selection, provider_sdk::select::Policy::default());
    assert_eq!(calls.media.first_port, 30000);
    assert_eq!(
        calls.rating.plans.keys().collect::<Vec<_>>(),
        ["flat", "standard"]
    );
    assert!(calls.rating.rounding.contains_key("EUR"));
    let plans = Plans::from_config(&calls.rating, |path| {
        let text = std::fs::read(path).map_err(|e| e.to_string())?;
        RateDeck::parse_csv(&text[..]).map_err(|e| e.to_string())
    })
    .expect("the sample's plans are valid");
    assert!(plans.get("standard").is_some());
    assert!(plans.get("flat").is_some());
}
