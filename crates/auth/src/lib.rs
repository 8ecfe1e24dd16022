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
pub mod fuzz_checks;
pub mod headers;
pub mod policy;
pub mod sign;
pub mod spf;
pub mod verify;

pub use mail_auth::SpfResult;
pub use policy::{Action, InboundConfig};
pub use verify::{Inbound, Verdict, Verifier};

/// Messages at least this large are hashed off the async threads.
const BLOCKING_SIZE: usize = 256 * 1024;

/// Run `f`, whose work grows with a message of `len` octets (body hashes):
/// for a large message on a multi-threaded runtime, with the thread handed
/// over to blocking work so other connections are not held up.
pub fn heavy<T>(len: usize, f: impl FnOnce() -> T) -> T {
    let multi = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if len >= BLOCKING_SIZE && multi { tokio::task::block_in_place(f) } else { f() }
}
