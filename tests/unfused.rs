//! Runs the agreement test of the unfused benchmark cells
//! (`benches/common/unfused.rs`, kept out of the engine library) against
//! the reference cells.

#[allow(dead_code)]
#[path = "../benches/common/unfused.rs"]
mod unfused;
