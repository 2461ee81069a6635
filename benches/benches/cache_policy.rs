//! Hit ratio of the cache's eviction policy (S3-FIFO) against plain LRU,
//! replaying Zipf traces, with and without one-pass scans mixed in (a
//! backup job reading a volume once). Prints the table, then measures the
//! policies' speed with criterion.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use cache::eviction::S3Fifo;
use criterion::{criterion_group, Criterion, Throughput};
use rand::{Rng, SeedableRng};

const KEYS: u64 = 100_000;
const REQUESTS: usize = 1_000_000;

/// Inverse-CDF Zipf sampler over 0..n (rank 0 is the most popular).
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: u64, alpha: f64) -> Self {
        let mut cdf = Vec::with_capacity(n as usize);
        let mut sum = 0.0;
        for rank in 1..=n {
            sum += 1.0 / (rank as f64).powf(alpha);
            cdf.push(sum);
        }
        cdf.iter_mut().for_each(|c| *c /= sum);
        Zipf { cdf }
    }

    fn sample(&self, rng: &mut impl Rng) -> u64 {
        let u: f64 = rng.gen();
        self.cdf.partition_point(|c| *c < u) as u64
    }
}

/// A trace of chunk numbers; with `scans`, every 50 000 requests a run of
/// 20 000 never-seen-again chunks is read once.
fn trace(alpha: f64, scans: bool, seed: u64) -> Vec<u64> {
    let zipf = Zipf::new(KEYS, alpha);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Popular ranks are scattered over the key space, as on a real volume.
    let mut out = Vec::with_capacity(REQUESTS);
    let mut next_scan_key = KEYS * 10;
    while out.len() < REQUESTS {
        if scans && out.len() % 50_000 == 49_999 {
            out.extend(next_scan_key..next_scan_key + 20_000);
            next_scan_key += 20_000;
        }
        out.push(zipf.sample(&mut rng).wrapping_mul(0x9e37_79b9_7f4a_7c15) % (KEYS * 7));
    }
    out.truncate(REQUESTS);
    out
}

trait Policy {
    fn hit_ratio(&mut self, trace: &[u64], capacity: usize) -> f64;
}

struct Lru;

impl Policy for Lru {
    fn hit_ratio(&mut self, trace: &[u64], capacity: usize) -> f64 {
        let mut last_use: HashMap<u64, u64> = HashMap::new();
        let mut by_age: BTreeMap<u64, u64> = BTreeMap::new();
        let mut hits = 0;
        for (t, key) in trace.iter().enumerate() {
            let t = t as u64;
            if let Some(old) = last_use.insert(*key, t) {
                by_age.remove(&old);
                hits += 1;
            } else if last_use.len() > capacity {
                if let Some((_, victim)) = by_age.pop_first() {
                    last_use.remove(&victim);
                }
            }
            by_age.insert(t, *key);
        }
        hits as f64 / trace.len() as f64
    }
}

struct S3FifoPolicy;

impl Policy for S3FifoPolicy {
    fn hit_ratio(&mut self, trace: &[u64], capacity: usize) -> f64 {
        let mut policy = S3Fifo::new(capacity);
        let mut resident = HashSet::new();
        let mut hits = 0;
        for key in trace {
            if resident.contains(key) {
                policy.access(key);
                hits += 1;
                continue;
            }
            while resident.len() >= capacity {
                match policy.pop_victim() {
                    Some(victim) => resident.remove(&victim),
                    None => break,
                };
            }
            policy.insert(*key);
            resident.insert(*key);
        }
        hits as f64 / trace.len() as f64
    }
}

fn hit_ratio_report() {
    println!("cache_policy hit ratio, {REQUESTS} requests over {KEYS} Zipf-distributed chunks:");
    println!("{:>6} {:>6} {:>9} {:>8} {:>8} {:>8}", "alpha", "scans", "capacity", "LRU", "S3-FIFO", "gain");
    for (alpha, scans) in [(0.8, false), (1.0, false), (0.8, true), (1.0, true)] {
        let trace = trace(alpha, scans, 42);
        for percent in [1, 5, 10] {
            let capacity = (KEYS as usize) * percent / 100;
            let lru = Lru.hit_ratio(&trace, capacity);
            let s3 = S3FifoPolicy.hit_ratio(&trace, capacity);
            println!(
                "{alpha:>6} {:>6} {:>8}% {:>7.2}% {:>7.2}% {:>+7.2}",
                if scans { "yes" } else { "no" },
                percent,
                lru * 100.0,
                s3 * 100.0,
                (s3 - lru) * 100.0
            );
        }
    }
}

fn bench_policies(c: &mut Criterion) {
    let trace = trace(1.0, true, 7)[..200_000].to_vec();
    let mut group = c.benchmark_group("cache_policy");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(trace.len() as u64));
    group.bench_function("s3fifo_replay", |b| b.iter(|| S3FifoPolicy.hit_ratio(&trace, 5_000)));
    group.bench_function("lru_replay", |b| b.iter(|| Lru.hit_ratio(&trace, 5_000)));
    group.finish();
}

criterion_group!(benches, bench_policies);

fn main() {
    hit_ratio_report();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
