//! The `sgw` gateway: volumes, the daemon, the REST API and the CLI.
pub mod admin;
pub mod api;
pub mod cached;
pub mod client;
pub mod client_tls;
pub mod cloud;
pub mod config;
pub mod console;
pub mod daemon;
pub mod files;
pub mod metrics;
pub mod progress;
pub mod openapi;
pub mod tapes;
pub mod targets;
pub mod units;
pub mod volumes;
