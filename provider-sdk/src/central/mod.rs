//! The client of central: enrollment, rate publishing, route queries,
//! certificates for ticket verification, and durable ticket submission.
//!
//! Central speaks HTTPS with JSON; its root certificate is obtained once,
//! out of band, and pinned (nothing else is trusted). Route queries,
//! certificate fetches and `/health` work without a client certificate;
//! publishing rates and submitting tickets need the provider's own
//! certificate (mutual TLS). Every error is one [`CentralError`] variant:
//! unreachable, timeout, TLS, an HTTP status with central's problem
//! document ([`Problem`]: title, detail, refusal `reason`, and every bad
//! line of a refused upload), or an answer this client cannot read.
//!
//! # A provider daemon
//!
//! ```no_run
//! use provider_sdk::central::{
//!     ensure_enrolled, CacheSettings, EnrollmentConfig, QueueOptions, RateUpload, RouteQuery,
//!     Submission, SubmissionQueue, Timeouts,
//! };
//! use provider_sdk::pki::RootCertificate;
//! use provider_sdk::ticket::TicketVerifier;
//! # async fn daemon(config: EnrollmentConfig, invite_ticket: &str) -> Result<(), Box<dyn std::error::Error>> {
//! // 1. First start: creates the key (mode 0600), enrolls with the one-time
//! //    token, stores the certificate next to the key. Later starts reuse them.
//! let me = ensure_enrolled(&config).await?;
//! let central = me
//!     .client_builder(&config.central_url)
//!     .timeouts(Timeouts::default())
//!     .cache(CacheSettings::default()) // certificates re-checked every 60 s
//!     .build()?;
//!
//! // 2. Publish the rate deck (full replacement; `RateUpload::Delta` for changes).
//! let csv = std::fs::read_to_string("deck.csv")?;
//! match central.publish_rates(RateUpload::Csv(&csv)).await {
//!     Ok(v) => println!("rate version {}", v.version),
//!     // Every bad line, with its number, is in the error.
//!     Err(e) => eprintln!("deck refused: {e}"),
//! }
//!
//! // 3. Verify the tickets on INVITEs: fetch the signer's certificate
//! //    first (async), then verify from memory (sync).
//! let root = RootCertificate::from_pem(&me.root_pem)?;
//! let provider_id = me.provider_id().ok_or("not a provider's certificate")?;
//! let verifier = TicketVerifier::new(root, central.certificate_cache(), provider_id);
//! central.prefetch_for_token(invite_ticket).await?;
//! // verifier.verify_ticket(invite_ticket, &call, chrono::Utc::now()) ...
//! # let _ = verifier;
//!
//! // 4. After hangup: queue what goes to the ledger; a background sender
//! //    delivers it, retrying while central is unreachable.
//! let queue = SubmissionQueue::open("/var/lib/provider/tickets", QueueOptions::default())?;
//! let sender = queue.start(central.clone())?;
//! # let (ticket, payer_receipt, my_receipt) = (String::new(), None, String::new());
//! queue
//!     .push(Submission { ticket, receipt: payer_receipt, provider_receipt: my_receipt })
//!     .await?;
//! println!("{:?}", queue.counts()); // queued, sent, rejected, ... for metrics
//! sender.stop().await;
//! # Ok(()) }
//! ```
//!
//! # A route query (no certificate needed)
//!
//! ```no_run
//! use provider_sdk::central::{CentralClient, RouteQuery};
//! # async fn q() -> Result<(), Box<dyn std::error::Error>> {
//! let root_pem = std::fs::read_to_string("central-root.crt")?;
//! let central = CentralClient::anonymous("https://central.example.net:8443", &root_pem)?;
//! let query = RouteQuery {
//!     max_rate: Some("0.05".parse()?),
//!     currency: Some("EUR".parse()?),
//!     limit: Some(10),
//!     ..RouteQuery::new("+49 30 123456".parse()?)
//! };
//! for route in central.routes(&query).await? {
//!     println!(
//!         "{} ({}) prefix {}: {} {}/min, {:?}",
//!         route.provider_name, route.provider_id, route.prefix,
//!         route.rate_per_minute, route.currency, route.sip_addresses
//!     );
//! }
//! # Ok(()) }
//! ```
//!
//! # Certificates and revocation
//!
//! [`TicketVerifier`](crate::ticket::TicketVerifier) looks certificates up
//! synchronously, so it reads the [`CertificateCache`] (memory only), which
//! [`CentralClient::prefetch`] (or [`CentralClient::prefetch_for_token`])
//! fills. The contract, with the default [`CacheSettings`]:
//!
//! - a certificate central calls valid is used for `ttl` (60 s) after it
//!   was fetched; after that, until fetched again, lookups answer
//!   "unavailable" (the ticket is refused), never a stale "valid". So a
//!   revocation takes effect within the TTL, and a provider that cannot
//!   reach central for longer than the TTL refuses tickets whose signer's
//!   certificate it cannot refresh;
//! - a revoked certificate stays revoked for as long as it is cached;
//! - "central never certified this key" is remembered for `negative_ttl`
//!   (10 s), so made-up key ids do not each cost a request.
//!
//! # Ticket submissions
//!
//! [`CentralClient::submit_tickets`] sends up to [`MAX_SUBMISSION_BATCH`]
//! [`Submission`]s in one `POST /v1/tickets` and returns each one's
//! [`SubmissionOutcome`]. [`SubmissionQueue`] makes that durable: see the
//! [`queue`] module for what it guarantees and its spool layout.
//!
//! # Modules
//!
//! - [`client`]: [`CentralClient`], [`ClientBuilder`], [`Timeouts`], [`Health`].
//! - [`enroll`](mod@enroll): [`enroll()`], [`ensure_enrolled`], [`EnrollmentConfig`], [`Enrolled`].
//! - [`rates`]: [`RateUpload`], [`RateVersion`].
//! - [`routes`]: [`RouteQuery`], [`Route`], [`SipAddress`], [`Transport`].
//! - [`certificates`]: [`CertificateInfo`], [`CertificateState`].
//! - [`cache`]: [`CertificateCache`], [`CacheSettings`].
//! - [`tickets`]: [`Submission`], [`SubmissionOutcome`], [`Recorded`], [`Refusal`].
//! - [`queue`]: [`SubmissionQueue`], [`QueueSender`], [`QueueOptions`], [`QueueCounts`].
//! - [`error`]: [`CentralError`], [`Problem`].

pub mod cache;
pub mod certificates;
pub mod client;
mod durable;
pub mod enroll;
pub mod error;
pub mod queue;
pub mod rates;
pub mod routes;
pub mod tickets;

pub use cache::{CacheSettings, CertificateCache};
pub use certificates::{CertificateInfo, CertificateState};
pub use client::{
    CentralClient, ClientBuilder, Health, HealthStatus, IndexHealth, Timeouts, MAX_ANSWER_BYTES,
};
pub use enroll::{
    enroll, ensure_enrolled, load_or_create_key, read_root, Enrolled, EnrollmentConfig,
};
pub use error::{CentralError, Problem, ProblemLine};
pub use queue::{QueueCounts, QueueError, QueueOptions, QueueSender, SubmissionQueue};
pub use rates::{RateUpload, RateVersion, UploadKind};
pub use routes::{Route, RouteQuery, SipAddress, Transport, MAX_ROUTE_LIMIT};
pub use tickets::{
    LedgerStatus, Recorded, Refusal, Submission, SubmissionOutcome, MAX_SUBMISSION_BATCH,
};
