//! The root package of the workspace holds no code of its own: cross-crate
//! benchmarks live in `benches/`, integration tests in `tests/` and
//! examples of the library API in `examples/`.
