//! The `sgw` gateway: volumes, the daemon, the REST API and the CLI.
pub mod api;
pub mod cached;
pub mod client;
pub mod cloud;
pub mod config;
pub mod daemon;
pub mod metrics;
pub mod tapes;
pub mod targets;
pub mod units;
pub mod volumes;
