//! The virtual tape library in the gateway (issue 6): tapes stored in the
//! cache and the cloud, the changer and drives as iSCSI targets, and the
//! flows between the library and the archive shelf.
//!
//! - [`records`]: tape records, barcode and size rules, `tapes.json`;
//! - [`cached_tape`]: [`CachedTape`], one tape's byte stream over the cache
//!   (a `TapeStream` and a `ChunkOwner` of the upload engine);
//! - [`store`]: the book and the open tapes: the `MediaLibrary`;
//! - [`devices`]: target names, serials, NAA ids, drive metrics;
//! - [`library`]: [`TapeLibrary`], the changer, drives and admin requests;
//! - [`flows`]: import, archive, retrieve, in the background;
//! - [`cli`]: `sgw tape …`.

pub mod cached_tape;
pub mod cli;
pub mod devices;
mod flows;
pub mod library;
pub mod records;
pub mod store;

pub use cached_tape::CachedTape;
pub use library::{CreateTapes, LibraryInfo, LibraryPersonality, TapeConfig, TapeInfo, TapeLibrary};
pub use records::{Pool, TapeError, TapeState};
