//! Who may send calls: trusted peers (addresses and CIDR blocks) and a
//! per-source request rate limit. Everything else is dropped without an
//! answer (the B2BUA asks [`Ingress::admit`] for every request that belongs
//! to no call in progress).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use ipnet::IpNet;
use parking_lot::Mutex;
use provider_sdk::sip::b2bua::Admission;
use serde::Deserialize;

/// Most sources tracked by the rate limiter; beyond it the oldest are forgotten.
const MAX_TRACKED_SOURCES: usize = 65_536;

/// The ingress settings (`[sip.ingress]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IngressConfig {
    /// Addresses or CIDR blocks allowed to send calls (`"192.0.2.10"`,
    /// `"198.51.100.0/24"`, `"::1"`). Empty: nobody.
    pub trusted: Vec<String>,
    /// Requests per second a source may send outside calls in progress.
    #[serde(default = "default_rate")]
    pub rate_per_sec: f64,
    /// How many requests a source may send at once before the rate applies.
    #[serde(default = "default_burst")]
    pub burst: f64,
}

fn default_rate() -> f64 {
    50.0
}
fn default_burst() -> f64 {
    100.0
}

/// Why an ingress configuration was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IngressError {
    #[error("sip.ingress.trusted: {0:?} is neither an IP address nor a CIDR block")]
    Trusted(String),
    #[error("sip.ingress: rate_per_sec and burst must be positive")]
    Rate,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Trusted peers and a token bucket per source address.
pub struct Ingress {
    trusted: Vec<IpNet>,
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
    refused: std::sync::atomic::AtomicU64,
    limited: std::sync::atomic::AtomicU64,
}

impl Ingress {
    pub fn new(config: &IngressConfig) -> Result<Ingress, IngressError> {
        let trusted = config
            .trusted
            .iter()
            .map(|t| {
                t.parse::<IpNet>()
                    .or_else(|_| t.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| IngressError::Trusted(t.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !(config.rate_per_sec > 0.0 && config.burst >= 1.0) {
            return Err(IngressError::Rate);
        }
        Ok(Ingress {
            trusted,
            rate: config.rate_per_sec,
            burst: config.burst,
            buckets: Mutex::new(HashMap::new()),
            refused: Default::default(),
            limited: Default::default(),
        })
    }

    /// Whether `ip` is a trusted peer.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// Requests dropped because the source is not trusted / over its rate.
    pub fn dropped(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.refused.load(Relaxed), self.limited.load(Relaxed))
    }

    fn take_token(&self, ip: IpAddr, now: Instant) -> bool {
        let mut buckets = self.buckets.lock();
        if buckets.len() >= MAX_TRACKED_SOURCES && !buckets.contains_key(&ip) {
            // Full buckets carry no information: forget them first.
            let burst = self.burst;
            let rate = self.rate;
            buckets
                .retain(|_, b| b.tokens + now.duration_since(b.last).as_secs_f64() * rate < burst);
            if buckets.len() >= MAX_TRACKED_SOURCES {
                buckets.clear();
            }
        }
        let bucket = buckets.entry(ip).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        let elapsed = now.duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Admission for Ingress {
    fn admit(&self, source: SocketAddr) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        if !self.is_trusted(source.ip()) {
            self.refused.fetch_add(1, Relaxed);
            return false;
        }
        if !self.take_token(source.ip(), Instant::now()) {
            self.limited.fetch_add(1, Relaxed);
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ingress(trusted: &[&str], rate: f64, burst: f64) -> Ingress {
        Ingress::new(&IngressConfig {
            trusted: trusted.iter().map(|s| s.to_string()).collect(),
            rate_per_sec: rate,
            burst,
        })
        .unwrap()
    }

    #[test]
    fn only_trusted_peers_are_admitted() {
        let i = ingress(
            &["127.0.0.1", "198.51.100.0/24", "2001:db8::/32"],
            1000.0,
            1000.0,
        );
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(i.admit(at("127.0.0.1:5060")));
        assert!(i.admit(at("198.51.100.77:5060")));
        assert!(i.admit(at("[2001:db8::1]:5060")));
        assert!(i.admit(at("[::ffff:127.0.0.1]:5060")), "v4-mapped");
        assert!(!i.admit(at("127.0.0.2:5060")));
        assert!(!i.admit(at("198.51.101.1:5060")));
        assert_eq!(i.dropped(), (2, 0));
    }

    #[test]
    fn a_source_over_its_rate_is_dropped_until_it_slows_down() {
        let i = ingress(&["127.0.0.0/8"], 10.0, 3.0);
        let now = Instant::now();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert!((0..3).all(|_| i.take_token(ip, now)));
        assert!(!i.take_token(ip, now), "burst used up");
        // Another source has its own bucket.
        assert!(i.take_token("127.0.0.2".parse().unwrap(), now));
        // 100 ms later one token is back.
        let later = now + std::time::Duration::from_millis(100);
        assert!(i.take_token(ip, later));
        assert!(!i.take_token(ip, later));
    }

    #[test]
    fn bad_settings_are_refused() {
        let bad = IngressConfig {
            trusted: vec!["10.0.0.0/33".into()],
            rate_per_sec: 1.0,
            burst: 1.0,
        };
        assert!(matches!(Ingress::new(&bad), Err(IngressError::Trusted(_))));
        let bad = IngressConfig {
            trusted: vec![],
            rate_per_sec: 0.0,
            burst: 1.0,
        };
        assert_eq!(Ingress::new(&bad).err(), Some(IngressError::Rate));
    }
}
