//! The central server: provider directory, route queries, certificate
//! authority and (later) the settlement ledger.

pub mod ca;
pub mod index;
