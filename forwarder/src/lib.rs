//! The home provider's forwarder: a subscriber's incoming call forwarded
//! through the best provider, with failover, CDRs and per-call billing.

pub mod calls;
pub mod ingress;
pub mod latency;
pub mod rating;
pub mod route_cache;
