//! Benchmarks live in benches/ (criterion) and scripts/ (side by side with tgt).
