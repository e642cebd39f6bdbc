//! Criterion benchmarks live in `benches/benches/`; this library holds shared bench helpers.
