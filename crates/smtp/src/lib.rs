//! facteur's SMTP listeners (MX, submission, submissions).
//!
//! Purpose: the I/O edge around the sans-IO session of `facteur-smtp-proto`:
//! accept TCP connections, run TLS (STARTTLS or implicit), answer the
//! session's questions — credentials, relay policy, recipient lookup — and
//! commit each message through `facteur-store` before the final reply.
//!
//! RFCs: 5321 (timeouts §4.5.3.2, Received §4.4), 6409 (submission: AUTH
//! required, Message-ID/Date completed §8), 8314 (implicit TLS), 3848 (the
//! `with` protocol keywords), 5322 (date format).
//!
//! Failure behaviour: a storage error becomes `451 4.3.0` (the client retries;
//! nothing is lost); an unknown local user is refused at RCPT with `550 5.1.1`
//! (no backscatter); relaying is only for authenticated submission or trusted
//! networks (`554 5.7.1` otherwise — no open relay).

pub mod config;
pub mod headers;
pub mod limits;
pub mod pickup;
mod policy;
pub mod quota;
mod repeats;
pub mod server;

pub use config::{QuotaConfig, SmtpConfig};
pub use server::{ListenerKind, SmtpContext, serve};
