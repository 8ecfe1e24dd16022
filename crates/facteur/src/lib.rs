//! The `facteur` binary: configuration, TLS setup and the wiring of the
//! role crates (smtp, store, http). No protocol logic lives here.

pub mod backup;
pub mod cli;
pub mod config;
pub mod controls;
pub mod dkim;
pub mod domaincheck;
pub mod import;
pub mod incidents;
pub mod migrate;
pub mod queueview;
pub mod reload;
pub mod sendmail;
pub mod serve;
pub mod telemetry;
pub mod tls;
