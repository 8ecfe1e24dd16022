//! Sans-IO SMTP server protocol for facteur.
//!
//! Purpose: turn the bytes a client sends into commands and the session's
//! replies, and tell the I/O layer (crate `facteur-smtp`) when it must act:
//! start TLS, check credentials, vet a sender or a recipient, store a message.
//! No sockets, no clock, no storage here: the caller feeds bytes and answers
//! [`Event`]s, so every rule can be tested and fuzzed byte by byte.
//!
//! RFCs: 5321 (SMTP), 1870 (SIZE), 6152 (8BITMIME), 6531 (SMTPUTF8),
//! 2034/3463 (enhanced status codes), 3461 (DSN), 3030 (CHUNKING/BDAT),
//! 2920 (PIPELINING), 3207 (STARTTLS), 4954 (AUTH), 4616 (PLAIN).
//!
//! Failure behaviour: malformed input yields a standard reply (never a panic);
//! every limit of [`SessionConfig`] is enforced while framing, and once a limit
//! is hit the offending line, DATA or BDAT chunk is consumed and discarded so
//! its bytes are never read as commands. Message content with a bare CR or
//! LF is refused after reading to the real CRLF.CRLF (SMTP smuggling), and
//! input buffered before a STARTTLS handshake is discarded (CVE-2011-0411).
//!
//! The [`client`] module is the other side, for outbound delivery: reply
//! framing, EHLO capabilities and one mail transaction (MAIL, RCPT, DATA or
//! BDAT) with per-recipient outcomes, equally sans-IO.
//!
//! Layout: `address` (paths), `command` (command lines and ESMTP parameters),
//! `framing` (lines, DATA content, BDAT chunks), `reply`, and `session` (the
//! state machine, its command table and one handler per command). Byte-script
//! tests live in `tests/`, fuzz targets in `fuzz/`; RFC coverage is listed in
//! `docs/rfc-index.md`, deliberate deviations in `docs/quirks.md`.

pub mod address;
pub mod client;
pub mod command;
mod framing;
pub mod reply;
pub mod session;

pub use address::{Address, AddressError};
pub use command::{BodyType, Command, MailParams, Notify, RcptParams, Ret};
pub use reply::Reply;
pub use session::{AuthRequest, Envelope, Event, Recipient, Refusal, Session, SessionConfig};
