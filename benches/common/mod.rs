//! Helpers shared by the criterion benches (`mod common;`).
//!
//! Not every bench uses every helper.
#![allow(dead_code)]

/// Single-threaded `matrixmultiply::sgemm` throughput on a 1024×1024×1024
/// product, in GFLOP/s (`2·m·n·k` per call; median of 5 timed runs after one
/// warm-up). A yardstick of what this machine's core delivers on a large,
/// compute-bound GEMM, printed next to the benches' own numbers so results
/// from different machines (or a busy one) can be read relative to it.
pub fn sgemm_yardstick_gflops() -> f64 {
    dien_engine::gemm::sgemm_yardstick_gflops(1024, 5)
}
