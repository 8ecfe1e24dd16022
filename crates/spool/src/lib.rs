//! The spool side of acceptance, shared by the SMTP listeners (which accept
//! mail) and the delivery engine (which finishes it).
//!
//! Purpose: decide which classes of mail the door takes now
//! ([`admission`]: watermarks over the queue's depth and age and the
//! disk), and compose the notices a sender gets ([`notices`]: DSNs of
//! RFC 3464, routed and ready to be stored in the same transaction as the
//! state change that caused them, through [`facteur_store::Spool`]).
//!
//! Invariants: pure decisions over what the caller measured; nothing here
//! talks to the network, and storage is reached only through the store
//! contract.

pub mod addressing;
pub mod admission;
pub mod notices;
pub mod srs;

pub use admission::{Admission, Load, Verdict, Watermarks};
pub use notices::{About, Notice, NoticeItem};
