//! Criterion benches (vecmath); filled in by its module's author.
fn main() {}
