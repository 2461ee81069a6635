//! Crash test: a child process writes at random, flushing now and then and
//! running an uploader, while the parent SIGKILLs it at a random moment.
//! After each kill the parent reopens the cache and checks every sector:
//! a write acknowledged before the last completed flush reads back exactly
//! (or a later write to the same sector does), and no sector holds content
//! that was never written whole.
//!
//! The binary is its own child (selected by an environment variable), so
//! it runs without the libtest harness. Set CRASH_SEED and
//! CRASH_ITERATIONS to reproduce or extend a run.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cache::{CacheConfig, ChunkId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SECTOR: usize = 4096;
const SECTORS: u32 = 16;
const CHUNK: u32 = SECTOR as u32 * SECTORS;
const CHUNKS: u64 = 24;
const TASKS: u64 = 2;
const CHILD_ENV: &str = "CACHE_CRASH_CHILD";
/// How long the whole test may take before it stops early (it fails if it
/// did fewer than the required iterations).
const TIME_BUDGET: Duration = Duration::from_secs(150);

fn config(dir: &Path) -> CacheConfig {
    common::config(dir, CHUNK, 64, 56, 40)
}

/// One write of the child: deterministic from (seed, iteration, task, op).
#[derive(Debug, Clone, Copy)]
struct WriteOp {
    chunk: u64,
    first: u32,
    count: u32,
}

fn write_op(seed: u64, iteration: u64, task: u64, op: u64) -> WriteOp {
    let mut rng = StdRng::seed_from_u64(seed ^ (iteration << 40) ^ (task << 32) ^ op.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let chunk = rng.gen_range(0..CHUNKS / TASKS) * TASKS + task;
    let first = rng.gen_range(0..SECTORS);
    let count = rng.gen_range(1..=SECTORS - first);
    WriteOp { chunk, first, count }
}

/// Who wrote a sector: its first bytes say so, the rest derives from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Tag {
    iteration: u64,
    task: u64,
    op: u64,
}

fn sector_content(tag: Tag, chunk: u64, sector: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(SECTOR);
    for v in [tag.iteration, tag.task, tag.op, chunk, u64::from(sector)] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let mut x = tag.iteration ^ (tag.op << 8) ^ (chunk << 20) ^ (u64::from(sector) << 28) ^ tag.task;
    while out.len() < SECTOR {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        out.push((x >> 56) as u8);
    }
    out
}

fn decode_tag(bytes: &[u8], chunk: u64, sector: u32) -> Option<Tag> {
    let word = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
    let tag = Tag { iteration: word(0), task: word(1), op: word(2) };
    (bytes == sector_content(tag, chunk, sector).as_slice()).then_some(tag)
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child(&spec);
        return;
    }
    let seed: u64 = std::env::var("CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_cafe);
    let iterations: u64 = std::env::var("CRASH_ITERATIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(200);
    match parent(seed, iterations) {
        Ok((done, totals)) => {
            println!(
                "crash: {} acknowledged writes, {} flushes, {} sector checks against a flushed value over {done} kills",
                totals.writes, totals.flushes, totals.flushed_checks
            );
            println!("crash: {done} passed, 0 failed (seed {seed})");
        }
        Err(message) => {
            eprintln!("crash test failed (seed {seed}, CRASH_SEED={seed} to reproduce): {message}");
            println!("crash: 0 passed, 1 failed");
            std::process::exit(1);
        }
    }
}

/// The child: `dir:seed:iteration` in the environment.
fn child(spec: &str) {
    let mut parts = spec.splitn(3, ':');
    let (Some(dir), Some(seed), Some(iteration)) = (parts.next(), parts.next(), parts.next()) else {
        eprintln!("bad child spec {spec}");
        std::process::exit(2);
    };
    let (seed, iteration): (u64, u64) = match (seed.parse(), iteration.parse()) {
        (Ok(s), Ok(i)) => (s, i),
        _ => std::process::exit(2),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let result = rt.block_on(child_run(PathBuf::from(dir), seed, iteration));
    if let Err(e) = result {
        println!("E {e}");
        std::process::exit(1);
    }
}

async fn child_run(dir: PathBuf, seed: u64, iteration: u64) -> Result<(), String> {
    let cache = common::open(&config(&dir));
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..TASKS).map(|_| AtomicU64::new(0)).collect());
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (cache, acked) = (cache.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ iteration ^ (task << 50));
            for op in 0.. {
                let w = write_op(seed, iteration, task, op);
                let tag = Tag { iteration, task, op };
                let data: Vec<u8> = (w.first..w.first + w.count).flat_map(|s| sector_content(tag, w.chunk, s)).collect();
                cache
                    .write(ChunkId::new(1, w.chunk), w.first * SECTOR as u32, Bytes::from(data))
                    .await
                    .map_err(|e| format!("write: {e}"))?;
                acked[task as usize].store(op + 1, Ordering::SeqCst);
                println!("W {task} {op}");
                if rng.gen_ratio(1, 6) {
                    let snapshot: Vec<u64> = acked.iter().map(|a| a.load(Ordering::SeqCst)).collect();
                    cache.flush().await.map_err(|e| format!("flush: {e}"))?;
                    println!("F {}", snapshot.iter().map(u64::to_string).collect::<Vec<_>>().join(" "));
                }
            }
            Ok::<(), String>(())
        }));
    }
    // An uploader, so that chunks also go clean and dirty again.
    let uploader = cache.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(3)).await;
            for d in uploader.dirty_batch(3) {
                let read = uploader.read(d.id, 0, CHUNK).await.map_err(|e| format!("upload read: {e}"))?;
                uploader.mark_uploaded(d.id, read.generation).map_err(|e| format!("mark: {e}"))?;
            }
        }
    }));
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

/// What the runs exercised, reported so that a passing run shows it did
/// real work.
#[derive(Default)]
struct Totals {
    writes: u64,
    flushes: u64,
    flushed_checks: u64,
}

/// What the parent knows of the sectors: the value each held when last
/// verified.
type Sectors = HashMap<(u64, u32), Option<Tag>>;

fn parent(seed: u64, iterations: u64) -> Result<(u64, Totals), String> {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut tmp = None;
    let mut known: Sectors = HashMap::new();
    let mut done = 0;
    let mut totals = Totals::default();
    for iteration in 1..=iterations {
        if started.elapsed() > TIME_BUDGET {
            return Err(format!("time budget exhausted after {done} iterations"));
        }
        // A fresh cache now and then; otherwise each run recovers from the
        // previous one's crash.
        if iteration % 25 == 1 {
            tmp = Some(tempfile::tempdir().map_err(|e| e.to_string())?);
            known.clear();
        }
        let dir = tmp.as_ref().map(|t| t.path().to_path_buf()).ok_or("no dir")?;
        let lines = run_child(&exe, &dir, seed, iteration, Duration::from_millis(rng.gen_range(20..400)))?;
        verify(&dir, seed, iteration, &lines, &mut known, &mut totals).map_err(|e| format!("iteration {iteration}: {e}"))?;
        done += 1;
    }
    Ok((done, totals))
}

fn run_child(exe: &Path, dir: &Path, seed: u64, iteration: u64, after: Duration) -> Result<Vec<String>, String> {
    let mut child = Command::new(exe)
        .env(CHILD_ENV, format!("{}:{seed}:{iteration}", dir.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| e.to_string())?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let reader = std::thread::spawn(move || BufReader::new(stdout).lines().map_while(Result::ok).collect::<Vec<_>>());
    std::thread::sleep(after);
    // Child::kill sends SIGKILL.
    child.kill().map_err(|e| e.to_string())?;
    child.wait().map_err(|e| e.to_string())?;
    reader.join().map_err(|_| "reader thread panicked".to_string())
}

fn verify(dir: &Path, seed: u64, iteration: u64, lines: &[String], known: &mut Sectors, totals: &mut Totals) -> Result<(), String> {
    let mut acked = vec![0u64; TASKS as usize];
    let mut flushed = vec![0u64; TASKS as usize];
    for line in lines {
        let fields: Vec<&str> = line.split(' ').collect();
        match fields.as_slice() {
            ["W", task, op] => {
                let (task, op): (usize, u64) = (task.parse().map_err(|_| line.clone())?, op.parse().map_err(|_| line.clone())?);
                acked[task] = acked[task].max(op + 1);
                totals.writes += 1;
            }
            ["F", counts @ ..] => {
                totals.flushes += 1;
                for (task, count) in counts.iter().enumerate() {
                    flushed[task] = flushed[task].max(count.parse().map_err(|_| line.clone())?);
                }
            }
            _ => return Err(format!("child reported: {line}")),
        }
    }
    // For each sector: the value it must at least have (as of the last
    // flush), and the values later writes may have replaced it with.
    let mut required: Sectors = known.clone();
    let mut allowed: HashMap<(u64, u32), Vec<Tag>> = HashMap::new();
    for task in 0..TASKS {
        let t = task as usize;
        let in_flight = acked[t].max(flushed[t]);
        for op in 0..=in_flight {
            let w = write_op(seed, iteration, task, op);
            let tag = Tag { iteration, task, op };
            for s in w.first..w.first + w.count {
                if op < flushed[t] {
                    required.insert((w.chunk, s), Some(tag));
                } else {
                    allowed.entry((w.chunk, s)).or_default().push(tag);
                }
            }
        }
    }
    let cache = common::open(&config(dir));
    let rt = tokio::runtime::Builder::new_current_thread().build().map_err(|e| e.to_string())?;
    for chunk in 0..CHUNKS {
        let read = rt.block_on(cache.read(ChunkId::new(1, chunk), 0, CHUNK)).map_err(|e| format!("chunk {chunk}: {e}"))?;
        for s in 0..SECTORS {
            let bytes = &read.data[s as usize * SECTOR..(s as usize + 1) * SECTOR];
            let found = if read.valid.contains(s) {
                Some(decode_tag(bytes, chunk, s).ok_or(format!("chunk {chunk} sector {s}: torn or foreign data"))?)
            } else {
                None
            };
            let must = required.get(&(chunk, s)).copied().flatten();
            totals.flushed_checks += u64::from(must.is_some());
            let later = allowed.get(&(chunk, s)).map(Vec::as_slice).unwrap_or(&[]);
            let ok = found == must || found.is_some_and(|f| later.contains(&f));
            if !ok {
                return Err(format!(
                    "chunk {chunk} sector {s}: found {found:?}, flushed value {must:?}, later writes {later:?} (acked {acked:?}, flushed {flushed:?})"
                ));
            }
            known.insert((chunk, s), found);
        }
    }
    Ok(())
}
