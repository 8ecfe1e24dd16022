//! facteur watching itself.
//!
//! Purpose: notice trouble the way users would, before they do. This step
//! holds the synthetic probe ([`probe`]): on every node, every minute, a
//! message through the node's own SMTP listener into a probe mailbox, read
//! back over the node's own IMAPS listener; its result and end-to-end time
//! are metrics. [`incident`] holds the service objectives and the incident
//! state machine (sans I/O, on the caller's clock): when a breach opens an
//! incident, what counts as an update, when it resolves. Feeding it from
//! the node's events, keeping incidents in storage, alerts and the status
//! page come next.
//!
//! Failure behaviour: a probe that fails says which step failed and why
//! (logged once when the state changes, counted every time); it never
//! retries within a run, and a run is bounded by its timeout.

pub mod alert;
pub mod incident;
pub mod keeper;
pub mod probe;
pub mod status;
