//! Helpers shared by the criterion benches (`mod common;`).
//!
//! Not every bench uses every helper.
#![allow(dead_code)]

use std::time::Instant;

/// Single-threaded `matrixmultiply::sgemm` throughput on a 1024×1024×1024
/// product, in GFLOP/s (`2·m·n·k` per call; median of 5 timed runs after one
/// warm-up). A yardstick of what this machine's cores deliver on a large,
/// compute-bound GEMM, printed next to the benches' own numbers so results
/// from different machines can be compared relative to it.
pub fn sgemm_yardstick_gflops() -> f64 {
    const N: usize = 1024;
    let a: Vec<f32> = (0..N * N).map(|i| ((i % 251) as f32 - 125.0) / 125.0).collect();
    let b: Vec<f32> = (0..N * N).map(|i| ((i % 241) as f32 - 120.0) / 120.0).collect();
    let mut c = vec![0.0f32; N * N];
    let mut run = || {
        let t = Instant::now();
        // SAFETY: a, b and c are dense row-major N×N matrices (strides N, 1)
        // that live for the call; c is uniquely borrowed.
        unsafe {
            matrixmultiply::sgemm(
                N,
                N,
                N,
                1.0,
                a.as_ptr(),
                N as isize,
                1,
                b.as_ptr(),
                N as isize,
                1,
                0.0,
                c.as_mut_ptr(),
                N as isize,
                1,
            );
        }
        t.elapsed().as_secs_f64()
    };
    run();
    let mut secs: Vec<f64> = (0..5).map(|_| run()).collect();
    secs.sort_by(f64::total_cmp);
    std::hint::black_box(&c);
    2.0 * (N * N * N) as f64 / secs[secs.len() / 2] / 1e9
}
