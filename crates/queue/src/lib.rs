//! facteur's outbound delivery.
//!
//! Purpose: take recipients that the SMTP layer queued for other domains and
//! deliver them: route (static routes, relay host, MX per RFC 5321 §5.1 with
//! null MX per RFC 7505), connect and talk SMTP (the sans-IO client of
//! `facteur-smtp-proto`), and record per recipient: delivered, deferred with
//! exponential backoff and jitter, or bounced — with the DSNs of RFC 3461/3464
//! (failure, delay, success) to the sender, stored in the same transaction.
//!
//! Failure behaviour: nothing is lost. A crash between the remote `250` and
//! our record repeats that delivery (at-least-once); leases on in-flight
//! recipients are released when the engine starts. Every accepted recipient
//! ends delivered, bounced (with a DSN unless the sender was `<>` or NOTIFY
//! said otherwise), or deleted by an operator.

pub mod client;
pub mod config;
pub mod dane;
pub mod engine;
pub mod fair;
pub mod mta_sts;
pub mod outcome;
pub mod resolver;
pub mod route;
pub mod shaping;

pub use config::{DeliveryConfig, RouteAuth, RouteConfig, TlsPolicy};
pub use engine::Engine;
pub use resolver::{DnsResolver, Resolver, StaticResolver};
pub use route::Router;
