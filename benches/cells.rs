//! Criterion benches (cells); filled in by its module's author.
fn main() {}
