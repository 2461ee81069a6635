//! Model test: random interleavings of write, fill, read, flush, evict,
//! upload start and completion, discard, pin and reopen, run against the
//! cache and an in-memory model that must agree at every step.

mod common;

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use cache::{Cache, CacheConfig, ChunkId, ChunkState, ErrorKind};
use proptest::prelude::*;

const SECTOR: usize = 4096;
const SECTORS: usize = 4;
const CHUNK: u32 = (SECTOR * SECTORS) as u32;

#[derive(Debug, Clone)]
enum Op {
    Write { chunk: usize, offset: u32, len: u32 },
    Fill { chunk: usize, first: usize, count: usize },
    Read { chunk: usize },
    Flush,
    Evict { max: usize },
    UploadStart { max: usize },
    UploadComplete { pick: usize },
    UploadAbandon { pick: usize },
    Discard { chunk: usize },
    Pin { chunk: usize },
    Unpin { chunk: usize },
    Reopen,
}

fn chunk_ids() -> Vec<ChunkId> {
    (0..8).map(|i| ChunkId::new(1 + i / 4, i % 4)).collect()
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..8usize, 0..CHUNK).prop_flat_map(|(chunk, offset)| (Just(chunk), Just(offset), 1..=CHUNK - offset))
            .prop_map(|(chunk, offset, len)| Op::Write { chunk, offset, len }),
        6 => (0..8usize, 0..SECTORS).prop_flat_map(|(chunk, first)| (Just(chunk), Just(first), 1..=SECTORS - first))
            .prop_map(|(chunk, first, count)| Op::Write { chunk, offset: (first * SECTOR) as u32, len: (count * SECTOR) as u32 }),
        3 => (0..8usize, 0..SECTORS).prop_flat_map(|(chunk, first)| (Just(chunk), Just(first), 1..=SECTORS - first))
            .prop_map(|(chunk, first, count)| Op::Fill { chunk, first, count }),
        6 => (0..8usize).prop_map(|chunk| Op::Read { chunk }),
        3 => Just(Op::Flush),
        2 => (1..4usize).prop_map(|max| Op::Evict { max }),
        3 => (1..4usize).prop_map(|max| Op::UploadStart { max }),
        3 => any::<usize>().prop_map(|pick| Op::UploadComplete { pick }),
        1 => any::<usize>().prop_map(|pick| Op::UploadAbandon { pick }),
        1 => (0..8usize).prop_map(|chunk| Op::Discard { chunk }),
        1 => (0..8usize).prop_map(|chunk| Op::Pin { chunk }),
        1 => (0..8usize).prop_map(|chunk| Op::Unpin { chunk }),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Debug, Clone, Default)]
struct ModelChunk {
    sectors: Vec<Option<Vec<u8>>>,
    dirty_seq: Option<u64>,
    uploading: bool,
    generation: u64,
    pins: u32,
}

#[derive(Default)]
struct Model {
    chunks: HashMap<ChunkId, ModelChunk>,
    next_seq: u64,
    in_flight: Vec<(ChunkId, u64)>,
}

impl Model {
    fn chunk(&mut self, id: ChunkId) -> &mut ModelChunk {
        self.chunks.entry(id).or_insert_with(|| ModelChunk { sectors: vec![None; SECTORS], ..Default::default() })
    }

    fn dirty_order(&self) -> Vec<ChunkId> {
        let queue: BTreeMap<u64, ChunkId> = self
            .chunks
            .iter()
            .filter(|(_, c)| !c.uploading)
            .filter_map(|(id, c)| c.dirty_seq.map(|s| (s, *id)))
            .collect();
        queue.into_values().collect()
    }
}

/// Distinct content for every operation, so a stale sector shows.
fn pattern(stamp: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (stamp.wrapping_mul(131).wrapping_add(i as u64 * 7) % 251) as u8).collect()
}

struct Harness {
    rt: tokio::runtime::Runtime,
    config: CacheConfig,
    cache: Option<Cache>,
    model: Model,
    stamp: u64,
}

impl Harness {
    fn cache(&self) -> &Cache {
        self.cache.as_ref().expect("cache open")
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let ids = chunk_ids();
        self.stamp += 1;
        match *op {
            Op::Write { chunk, offset, len } => {
                let id = ids[chunk];
                let data = pattern(self.stamp, len as usize);
                let result = self.rt.block_on(self.cache().write(id, offset, Bytes::from(data.clone())));
                let first = offset as usize / SECTOR;
                let last = (offset + len - 1) as usize / SECTOR;
                let model = self.model.chunks.get(&id);
                let held = |s: usize| model.is_some_and(|c| c.sectors[s].is_some());
                let head_partial = offset as usize % SECTOR != 0;
                let tail_partial = (offset + len) as usize % SECTOR != 0;
                let refused = (head_partial && !held(first)) || (tail_partial && !held(last));
                if refused {
                    let kind = result.err().map(|e| e.kind());
                    prop_assert_eq!(kind, Some(ErrorKind::InvalidInput));
                    return Ok(());
                }
                result.map_err(|e| TestCaseError::fail(format!("write failed: {e}")))?;
                let seq = self.model.next_seq;
                let c = self.model.chunk(id);
                let mut bytes: Vec<u8> = (first..=last).flat_map(|s| c.sectors[s].clone().unwrap_or(vec![0; SECTOR])).collect();
                let at = offset as usize - first * SECTOR;
                bytes[at..at + len as usize].copy_from_slice(&data);
                for (i, s) in (first..=last).enumerate() {
                    c.sectors[s] = Some(bytes[i * SECTOR..(i + 1) * SECTOR].to_vec());
                }
                c.generation += 1;
                if c.dirty_seq.is_none() {
                    c.dirty_seq = Some(seq);
                    self.model.next_seq += 1;
                }
            }
            Op::Fill { chunk, first, count } => {
                let id = ids[chunk];
                let data = pattern(self.stamp, count * SECTOR);
                self.rt
                    .block_on(self.cache().fill(id, (first * SECTOR) as u32, Bytes::from(data.clone())))
                    .map_err(|e| TestCaseError::fail(format!("fill failed: {e}")))?;
                let c = self.model.chunk(id);
                for (i, s) in (first..first + count).enumerate() {
                    if c.sectors[s].is_none() {
                        c.sectors[s] = Some(data[i * SECTOR..(i + 1) * SECTOR].to_vec());
                    }
                }
            }
            Op::Read { chunk } => {
                let id = ids[chunk];
                let got = self.rt.block_on(self.cache().read(id, 0, CHUNK)).map_err(|e| TestCaseError::fail(format!("read failed: {e}")))?;
                let expected = self.model.chunks.get(&id).cloned().unwrap_or(ModelChunk { sectors: vec![None; SECTORS], ..Default::default() });
                for s in 0..SECTORS {
                    prop_assert_eq!(got.valid.contains(s as u32), expected.sectors[s].is_some(), "validity of {} sector {}", id, s);
                    let bytes = &got.data[s * SECTOR..(s + 1) * SECTOR];
                    match &expected.sectors[s] {
                        Some(want) => prop_assert!(bytes == want.as_slice(), "content of {} sector {}", id, s),
                        None => prop_assert!(bytes.iter().all(|b| *b == 0)),
                    }
                }
                let info = self.cache().lookup(id);
                if self.model.chunks.contains_key(&id) {
                    let info = info.ok_or_else(|| TestCaseError::fail("chunk missing"))?;
                    let state = match (expected.dirty_seq, expected.uploading) {
                        (None, _) => ChunkState::Clean,
                        (Some(_), false) => ChunkState::Dirty,
                        (Some(_), true) => ChunkState::Uploading,
                    };
                    prop_assert_eq!(info.state, state);
                    prop_assert_eq!(info.generation, expected.generation);
                    prop_assert_eq!(info.pinned, expected.pins > 0);
                } else {
                    prop_assert!(info.is_none());
                }
            }
            Op::Flush => self.rt.block_on(self.cache().flush()).map_err(|e| TestCaseError::fail(format!("flush failed: {e}")))?,
            Op::Evict { max } => {
                let evicted = self.rt.block_on(self.cache().evict(max)).map_err(|e| TestCaseError::fail(format!("evict: {e}")))?;
                prop_assert!(evicted.len() <= max);
                for id in evicted {
                    let c = self.model.chunks.remove(&id).ok_or_else(|| TestCaseError::fail("evicted an absent chunk"))?;
                    prop_assert!(c.dirty_seq.is_none() && c.pins == 0, "evicted dirty or pinned {}", id);
                }
            }
            Op::UploadStart { max } => {
                let expected: Vec<ChunkId> = self.model.dirty_order().into_iter().take(max).collect();
                let batch = self.cache().dirty_batch(max);
                let got: Vec<ChunkId> = batch.iter().map(|d| d.id).collect();
                prop_assert_eq!(&got, &expected);
                for d in batch {
                    let c = self.model.chunk(d.id);
                    prop_assert_eq!(d.generation, c.generation);
                    c.uploading = true;
                    self.model.in_flight.push((d.id, d.generation));
                }
            }
            Op::UploadComplete { pick } | Op::UploadAbandon { pick } if !self.model.in_flight.is_empty() => {
                let (id, generation) = self.model.in_flight.remove(pick % self.model.in_flight.len());
                let c = self.model.chunk(id);
                c.uploading = false;
                if matches!(op, Op::UploadAbandon { .. }) {
                    self.cache().abandon_upload(id);
                    return Ok(());
                }
                let clean = c.generation == generation;
                if clean {
                    c.dirty_seq = None;
                }
                let got = self.cache().mark_uploaded(id, generation).map_err(|e| TestCaseError::fail(format!("mark: {e}")))?;
                prop_assert_eq!(got, clean);
            }
            Op::UploadComplete { .. } | Op::UploadAbandon { .. } => {}
            Op::Discard { chunk } => {
                let id = ids[chunk];
                self.rt
                    .block_on(self.cache().discard(id.namespace, id.index..id.index + 1))
                    .map_err(|e| TestCaseError::fail(format!("discard: {e}")))?;
                self.model.chunks.remove(&id);
                self.model.in_flight.retain(|(i, _)| *i != id);
            }
            Op::Pin { chunk } => {
                let id = ids[chunk];
                let cached = self.model.chunks.contains_key(&id);
                prop_assert_eq!(self.cache().pin(id), cached);
                if cached {
                    self.model.chunk(id).pins += 1;
                }
            }
            Op::Unpin { chunk } => {
                let id = ids[chunk];
                self.cache().unpin(id);
                if let Some(c) = self.model.chunks.get_mut(&id) {
                    c.pins = c.pins.saturating_sub(1);
                }
            }
            Op::Reopen => {
                if let Some(cache) = self.cache.take() {
                    self.rt.block_on(cache.close()).map_err(|e| TestCaseError::fail(format!("close: {e}")))?;
                }
                self.cache = Some(common::open(&self.config));
                // Uploads in flight and pins do not survive a restart.
                self.model.in_flight.clear();
                for c in self.model.chunks.values_mut() {
                    c.uploading = false;
                    c.pins = 0;
                }
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn cache_agrees_with_model(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = common::config(dir.path(), CHUNK, 24, 20, 16);
        let mut harness = Harness {
            rt: tokio::runtime::Builder::new_current_thread().build().expect("runtime"),
            cache: Some(common::open(&config)),
            config,
            model: Model::default(),
            stamp: 0,
        };
        for op in &ops {
            harness.apply(op)?;
        }
        // Every chunk reads back as modelled at the end, after a reopen too.
        for op in [Op::Reopen].iter().chain((0..8).map(|chunk| Op::Read { chunk }).collect::<Vec<_>>().iter()) {
            harness.apply(op)?;
        }
    }
}
