//! The IMAP server of facteur: IMAP4rev2 (RFC 9051), with IMAP4rev1
//! (RFC 3501) for older clients.
//!
//! Commands are parsed and responses written by `imap-codec`; this crate
//! answers them from the store.
//!
//! - [`server`]: listeners (STARTTLS and implicit TLS), framing of lines and
//!   literals, limits, and the wait for changes in IDLE. The only I/O.
//! - [`session`]: the states and commands of RFC 9051 over decoded commands.
//! - [`extended`]: the IMAP4rev2 forms the codec does not parse yet (SEARCH
//!   RETURN, LIST selection and return options), taken apart (pure).
//! - [`view`]: a session's snapshot of its selected mailbox and the untagged
//!   updates that bring a client up to date (pure).
//! - [`mime`]: ENVELOPE, BODY/BODYSTRUCTURE and `BODY[section]<partial>`
//!   from the raw message (RFC 9051 §6.4.5, §7.5.2).
//! - [`address`]: address fields as RFC 5322 writes them (comments,
//!   groups, source routes) for ENVELOPE and SEARCH (pure).
//! - [`search`]: SEARCH keys against one message (RFC 9051 §6.4.4).
//! - [`seqset`]: sequence and UID sets against the existing messages
//!   (RFC 9051 §6.4.8), and compact UID sets for COPYUID/APPENDUID.
//! - [`quota`]: QUOTA (RFC 9208): one quota root per user, its STORAGE
//!   and MESSAGE resources as the QUOTA response shows them, and whether
//!   an APPEND or COPY fits (pure).
//! - [`thread`]: SORT and THREAD (RFC 5256, and SORT=DISPLAY, RFC 5957):
//!   sort keys from a message's header, the base subject, the
//!   ORDEREDSUBJECT and REFERENCES algorithms and the THREAD response
//!   (pure).
//! - [`utf7`]: modified UTF-7 mailbox names (RFC 3501 §5.1.3).

pub mod address;
pub mod extended;
pub mod fuzz_checks;
pub mod mime;
pub mod names;
pub mod notify;
pub mod quota;
pub mod search;
pub mod seqset;
pub mod server;
pub mod session;
pub mod thread;
pub mod url;
pub mod utf7;
pub mod view;

pub use server::{ImapConfig, ImapContext, serve};
