//! The central server: provider directory, route queries, certificate
//! authority and (later) the settlement ledger.

pub mod db;
pub mod index;
