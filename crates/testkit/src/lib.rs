//! Test utilities for facteur: a programmable downstream SMTP server.
//!
//! Purpose: outbound delivery tests need a peer that accepts, defers,
//! refuses, hangs or drops on cue. [`Downstream`] listens on `127.0.0.1:0`
//! and answers each step of the dialogue as its [`Behavior`] says; the tests
//! then look at what it received ([`Downstream::received`]), the command
//! lines it saw ([`Downstream::transcript`]) and how many connections were
//! made. The `facteur-sim` binary runs one from the command line. [`dns::StubDns`]
//! is a DNS server on loopback answering from a zone the test fills.
//!
//! ```no_run
//! # async fn example() {
//! use facteur_testkit::{Behavior, Downstream};
//! let sim = Downstream::start(Behavior::accept_only(&["bob@example.net"])).await;
//! // ... point the delivery code at sim.addr() and send to bob and eve ...
//! assert!(sim.wait_for(1, std::time::Duration::from_secs(5)).await);
//! assert_eq!(sim.received()[0].rcpts, ["bob@example.net"]);
//! # }
//! ```
//!
//! It is deliberately independent of facteur's own SMTP code (that is the
//! thing under test): a small session of its own, one handler per command.
//!
//! RFCs: 5321 (the dialogue, dot-stuffing §4.5.2, reply lines §4.2.1),
//! 1870 (SIZE), 2920 (PIPELINING), 3030 (CHUNKING/BDAT), 3207 (STARTTLS),
//! 3461 (DSN parameters), 6152 (8BITMIME), 6531 (SMTPUTF8), 2034 (enhanced
//! status codes).
//!
//! Failure behaviour: a client error gets the reply a strict server would
//! give (503 out of sequence, 555 for a parameter of an extension that was
//! not advertised); an I/O error or timeout just ends that session. Every
//! wait is bounded (5 minutes idle, 1 hour per connection), and dropping the
//! [`Downstream`] closes everything.

mod behavior;
pub mod dns;
pub mod dnssec;
mod downstream;
pub mod https;
mod io;
mod rate;
mod session;
mod tls;

pub use behavior::{Behavior, Step};
pub use downstream::{Downstream, ReceivedMessage};
pub use rate::TokenBucket;

/// A loopback port that refuses connections for as long as this lives: the
/// port is bound but not listening, so a SYN gets a reset, and no other
/// socket (another test's server picking a free port) can take it
/// meanwhile, as it could a port merely found free and let go.
pub struct RefusingPort {
    _socket: tokio::net::TcpSocket,
    addr: std::net::SocketAddr,
}

impl RefusingPort {
    pub fn new() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
        socket.bind(([127, 0, 0, 1], 0).into()).expect("a loopback port");
        let addr = socket.local_addr().expect("its address");
        RefusingPort { _socket: socket, addr }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }
}

impl Default for RefusingPort {
    fn default() -> Self {
        Self::new()
    }
}
