//! The home provider's forwarder: subscribers, their numbers and forwarding
//! rules, authorization of calls, the account ledger, call detail records,
//! the operator's command line and the HTTPS API.
//!
//! A call to a subscriber's number goes through this crate like this (the
//! SIP side is the caller of these functions):
//!
//! 1. [`store::numbers::subscriber_by_number`] finds the subscriber;
//!    [`store::ledger::standing`] loads balance, spend and calls in progress;
//!    [`authorize::authorize`] decides (404/403/402/486 with a reason).
//! 2. [`store::rules::get`] and [`rules::select`] give the forwarding rule
//!    in force now, in the subscriber's time zone.
//! 3. [`store::cdrs::open`] records the call; [`store::cdrs::update`] and
//!    [`store::cdrs::media_seen`] follow it; [`authorize::max_call_seconds`]
//!    limits a prepaid call.
//! 4. [`store::cdrs::close_and_charge`] writes the end of the call and its
//!    charge in one transaction. After a crash, [`store::cdrs::open_cdrs`]
//!    lists what to close.
//!
//! 5. [`statements`] issues each subscriber's statement on a schedule and
//!    e-mails it exactly once.
//!
//! [`app::init`] prepares a data directory and [`app::start`] runs the
//! HTTPS API; the `forwarder` binary is a command line over both and over
//! the store.

pub mod amount;
pub mod api;
pub mod app;
pub mod authorize;
pub mod book;
pub mod ca;
pub mod call_config;
pub mod call_metrics;
pub mod calls;
pub mod config;
pub mod db;
pub mod ingress;
pub mod latency;
pub mod metrics;
pub mod problem;
pub mod rating;
pub mod route_cache;
pub mod rules;
pub mod server;
pub mod service;
pub mod statements;
pub mod store;
pub mod subscriber;
pub mod tls;
