//! What facteur's listeners (SMTP, IMAP, POP3) share at the I/O edge, so
//! that every protocol is bounded the same way against a hostile network:
//!
//! - [`serve`]: the one connection driver: accept, the gate, implicit TLS
//!   or STARTTLS, the protocol's session (a [`Protocol`]), shutdown with a
//!   deadline.
//! - [`gate`]: connection caps per protocol and per client address,
//!   pressure, and room kept for new clients (a stalled connection is
//!   evicted at the cap).
//! - [`conn`]: timeouts: idle, before login, a deadline per request that
//!   grows with a minimum data rate, writes; tighter under pressure.
//! - [`auth`]: failed logins throttled by address and by account, before
//!   the password is checked.
//! - [`reject`]: one rate-limited log event per rejection.
//! - [`fd`]: the descriptor limit raised, and shared between protocols.
//! - [`local`]: this machine's interface addresses (loop detection).
//!
//! No protocol and no storage here.

pub mod auth;
pub mod conn;
pub mod fd;
pub mod gate;
pub mod local;
pub mod reject;
pub mod serve;

pub use auth::{Attempt, AuthPolicy, AuthThrottle};

/// Record how long the server took over one command
/// (`facteur_command_duration_seconds`): `command` from a fixed set (the
/// protocol's command names, or the steps that wait on storage).
pub fn command_took(protocol: &'static str, command: &'static str, started: std::time::Instant) {
    metrics::histogram!("facteur_command_duration_seconds", "protocol" => protocol, "command" => command)
        .record(started.elapsed().as_secs_f64());
}
pub use conn::{Conn, Input, Stream, Timeouts, Waited, Wake, limits};
pub use gate::{Gate, GateConfig, Refused};
pub use serve::{Busy, Ended, Listener, Protocol, serve};
