//! Sans-IO SMTP client protocol, for outbound delivery.
//!
//! Purpose: everything the delivery engine needs to speak to a remote SMTP
//! server once the connection is open and greeted, without doing any I/O.
//! [`ReplyReader`] frames the server's bytes into replies, [`Capabilities`]
//! reads the EHLO reply, and [`Transaction`] runs one mail transaction
//! (MAIL, RCPT, DATA or BDAT, RSET when needed) and decides every recipient.
//!
//! RFCs: 5321 (SMTP), 2920 (PIPELINING), 1870 (SIZE), 6152 (8BITMIME),
//! 6531 (SMTPUTF8), 3461 (DSN parameters), 3030 (CHUNKING), 3463/2034
//! (enhanced status codes).
//!
//! Failure behaviour: malformed replies are typed errors ([`ReplyError`]),
//! never panics; after one, the caller should close the connection. A
//! transaction never leaves a recipient undecided: a reply it cannot make
//! sense of, or a 421, defers every open recipient (temporary) and marks the
//! connection as not reusable. Replies made up locally (checks that need no
//! round trip) say `facteur:` in their text.
//!
//! Layout: `client/reply.rs` (reply framing), `client/caps.rs` (EHLO
//! keywords), `client/command.rs` (MAIL/RCPT lines, xtext, dot-stuffing),
//! `client/tx.rs` (the transaction state machine).

mod caps;
mod command;
mod reply;
mod tx;

pub use caps::Capabilities;
pub use command::xtext_encode;
pub use reply::{MAX_REPLY_LINE, MAX_REPLY_LINES, ReplyError, ReplyReader};
pub use tx::{OutboundEnvelope, OutboundRecipient, RcptOutcome, Transaction, TxResult, TxStep};
