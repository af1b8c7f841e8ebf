//! Cross-crate benchmarks and integration tests live in `benches/` and `tests/`.
