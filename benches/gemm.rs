//! Criterion benches (gemm); filled in by its module's author.
fn main() {}
