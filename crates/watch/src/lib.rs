//! facteur watching itself.
//!
//! Purpose: notice trouble the way users would, before they do. This step
//! holds the synthetic probe ([`probe`]): on every node, every minute, a
//! message through the node's own SMTP listener into a probe mailbox, read
//! back over the node's own IMAPS listener; its result and end-to-end time
//! are metrics. Service objectives and incidents, which will read them,
//! come next.
//!
//! Failure behaviour: a probe that fails says which step failed and why
//! (logged once when the state changes, counted every time); it never
//! retries within a run, and a run is bounded by its timeout.

pub mod probe;
