//! Cached volumes end to end (DESIGN.md §1, §3, §4): the volume as a block
//! device over the cache, the upload engine, chunk maps, manifests,
//! recovery points, snapshots, clones and disaster recovery.
//!
//! - [`map`]: chunk index → cloud object, copy-on-write pages, persisted
//!   locally;
//! - [`manifest`]: a volume version in the bucket (pages + JSON root);
//! - [`volume`]: [`CachedVolume`], the `BlockDevice`;
//! - [`engine`]: dirty chunks → uploader → chunk map → clean, with a
//!   backoff after failed uploads (`upload_errors`);
//! - [`recovery`]: recovery points;
//! - [`damage`]: chunks whose cloud object cannot be read back, and
//!   `scrub`, which looks for them;
//! - [`service`]: snapshots, the catalog, garbage collection, schedules;
//! - `schedule`: the background task (recovery points per volume, sweeps,
//!   gauges);
//! - `sweep`: the garbage sweep, which lists the bucket for objects
//!   nothing references (left by a stop before their collection).

pub mod damage;
pub mod engine;
pub mod manifest;
pub mod map;
pub mod metrics;
mod recovery;
pub mod scrub;
mod schedule;
pub mod service;
mod sweep;
mod upload_errors;
pub mod volume;

pub use engine::{ChunkOwner, Engine, Uploaded};
pub use schedule::BackgroundSchedule;
pub use service::{CachedVolumes, Catalog, SnapshotRecord};
pub use volume::{CachedVolume, VolumeIdentity};
