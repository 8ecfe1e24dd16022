//! The POP3 server of facteur: POP3 (RFC 1939) with CAPA, UIDL, TOP,
//! RESP-CODES and PIPELINING (RFC 2449), STLS (RFC 2595), SASL PLAIN
//! (RFC 5034, RFC 4616) and the AUTH response code (RFC 3206).
//!
//! The maildrop is the user's INBOX, the same one IMAP shows: a snapshot is
//! taken at login (POP3 message numbers never change during a session), and
//! the messages deleted with DELE are removed at QUIT in one go, through the
//! store, so IMAP sessions watching the INBOX see them expunged.
//!
//! - [`session`]: the protocol state machine (AUTHORIZATION, TRANSACTION,
//!   UPDATE), sans-IO: bytes in, reply bytes out, and [`session::Action`]s
//!   for the edge to fulfil. No tokio, no storage.
//! - [`server`]: listeners (STLS and implicit TLS), timeouts, the
//!   maildrop lock, failed-login slowdown, and the store behind each action.

pub mod fuzz_checks;
pub mod server;
pub mod session;

pub use server::{Pop3Config, Pop3Context, serve};
