//! The central server: provider directory, route queries, certificate
//! authority and the settlement ledger.
//!
//! - [`app`]: `init` a data directory and `start` the HTTPS server (the
//!   binary `central` is a thin command line over these).
//! - [`api`]: the HTTP endpoints (`central/openapi.yaml` describes them).
//! - [`db`]: storage on SQLite or PostgreSQL through one set of queries.
//! - [`routing`]: the live route index, rebuilt off the request path.
//! - [`index`]: the in-memory prefix index itself.
//! - [`ca`]: the certificate authority.
//! - [`ledger`]: the settlement ledger (tickets verified again and stored).
//! - [`notify`]: rate-change notifications between instances (PostgreSQL).
//! - [`config`], [`metrics`], [`problem`], [`server`], [`tls`]: settings,
//!   Prometheus metrics, problem+json errors, the TLS accept loop.

pub mod api;
pub mod app;
pub mod ca;
pub mod config;
pub mod db;
pub mod index;
pub mod ledger;
pub mod metrics;
pub mod notify;
pub mod problem;
pub mod routing;
pub mod server;
pub mod tls;
