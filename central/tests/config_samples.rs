//! The annotated sample `ops/central.toml` loads with the real loader, so it
//! cannot drift from what central accepts.

use std::path::Path;

#[test]
fn the_sample_configuration_loads() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/central.toml");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = central::config::Config::load(dir.path(), Some(&sample))
        .unwrap_or_else(|e| panic!("{}: {e}", sample.display()));
    // The sample documents the defaults: loading it changes nothing.
    let defaults = central::config::Config::defaults(dir.path());
    assert_eq!(config.listen, defaults.listen);
    assert_eq!(config.database_url, defaults.database_url);
    assert_eq!(config.max_body_bytes, defaults.max_body_bytes);
    assert_eq!(config.request_timeout, defaults.request_timeout);
    assert_eq!(config.pool_size, defaults.pool_size);
}
