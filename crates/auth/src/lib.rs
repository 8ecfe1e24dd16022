//! Message authentication for facteur.
//!
//! Inbound (mail from strangers on the MX port): SPF (RFC 7208) for the
//! HELO name and the MAIL FROM domain, DKIM (RFC 6376, RFC 8463 ed25519;
//! RFC 8301: no rsa-sha1, RSA keys of at least 1024 bits), ARC (RFC 8617)
//! and DMARC (RFC 7489), recorded in one Authentication-Results field
//! (RFC 8601) under our host name, after any field forged with that name
//! is removed; then what policy does with the verdict ([`policy`]).
//!
//! DKIM, ARC and DMARC are mail-auth's; SPF's parser and
//! evaluation are ours ([`spf`], checked against the OpenSPF suite) so that
//! RFC 7208 §4.6.4's limits are counted before each query goes out.

pub mod dns;
pub mod headers;
pub mod policy;
pub mod spf;
pub mod verify;

pub use policy::{Action, InboundConfig};
pub use verify::{Inbound, Verdict, Verifier};
