//! The central server: provider directory, route queries, certificate
//! authority and (later) the settlement ledger.

pub mod db;
pub mod index;
pub mod config;
pub mod metrics;
pub mod problem;
pub mod server;
pub mod tls;
pub mod notify;
