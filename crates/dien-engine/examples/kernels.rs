//! Timing loops for single kernels on the model's shapes: the weight
//! gradients' register tiles (4 × 3 against the tall tiles of this build,
//! and `gemm_one_pass`, which past 128 rows carries its tiles from block to
//! block of rows) and the activations, per vector. Best of 5 timed loops each, on the
//! calling thread; the figures of docs/PERFORMANCE.md ("four changes that
//! keep every bit") come from it.
//!
//! Run: `cargo run --release -p dien-engine --example kernels` (add
//! `RUSTFLAGS="-C target-cpu=x86-64-v4"` and `--target-dir target/v4` for
//! the 16-lane build).

use dien_engine::gemm::tile::{Accumulate, Store, TALL_MR, gemm_ep, gemm_ep_tall, gemm_one_pass};
use dien_engine::simd::{LANES, V};
use dien_engine::vecmath::simd::{exp_v, sigmoid_v, tanh_v};
mod timing;
use timing::best_of;

/// `dW [out, inp] += dYᵀ [out, rows] · X [rows, inp]` over the whole
/// vectors of `inp`, in 4 × 3 tiles, in tall ones over all rows, and by
/// `gemm_one_pass`: GFLOP/s of each.
fn weight_gradient(out: usize, rows: usize, inp: usize) -> (f64, f64, f64) {
    let dy: Vec<f32> = (0..rows * out).map(|i| (i % 13) as f32 * 0.1).collect();
    let x: Vec<f32> = (0..rows * inp + LANES).map(|i| (i % 7) as f32 * 0.1).collect();
    let mut dw = vec![0.0f32; out * inp];
    let nvec = inp / LANES;
    let flops = 2.0 * (out * rows * nvec * LANES) as f64;
    let reps = (1e9 / flops) as usize + 1;
    let narrow = best_of(reps, || {
        let mut epi = Store { c: &mut dw, ldc: inp, n: nvec * LANES, acc: Accumulate::Yes };
        gemm_ep::<4, 3, _>(out, rows, nvec, std::hint::black_box(&dy), 1, out, &x, inp, &mut epi);
    });
    let tall = best_of(reps, || {
        let mut epi = Store { c: &mut dw, ldc: inp, n: nvec * LANES, acc: Accumulate::Yes };
        gemm_ep_tall(out, rows, nvec, std::hint::black_box(&dy), 1, out, &x, inp, &mut epi);
    });
    let one_pass = best_of(reps, || {
        gemm_one_pass(
            out,
            rows,
            nvec * LANES,
            std::hint::black_box(&dy),
            1,
            out,
            &x,
            inp,
            &mut dw,
            inp,
            Accumulate::Yes,
        );
    });
    (flops / narrow / 1e9, flops / tall / 1e9, flops / one_pass / 1e9)
}

/// Nanoseconds per vector of `f` over a block of 1,024 vectors.
fn per_vector(f: impl Fn(V) -> V) -> f64 {
    let xs: Vec<V> = (0..1024).map(|i| V::splat((i as f32 - 512.0) / 100.0)).collect();
    let mut out = vec![V::ZERO; xs.len()];
    let secs = best_of(2000, || {
        for (o, &x) in out.iter_mut().zip(&xs) {
            *o = f(x);
        }
        std::hint::black_box(&mut out);
    });
    secs / xs.len() as f64 * 1e9
}

fn main() {
    println!("{LANES} lanes; tall tiles {TALL_MR} rows x 3 vectors");
    println!("weight gradient dW[out, inp] over rows: GFLOP/s, 4x3 tiles -> tall tiles -> one pass");
    for (out, rows, inp) in
        [(100, 128, 36), (50, 256, 100), (36, 64, 108), (80, 2048, 72), (100, 256, 36), (80, 800, 72), (40, 800, 80)]
    {
        let (narrow, tall, one_pass) = weight_gradient(out, rows, inp);
        println!("  [{out}, {inp}] over {rows} rows: {narrow:.1} -> {tall:.1} -> {one_pass:.1}");
    }
    println!(
        "activations, ns per vector: exp {:.2}, sigmoid {:.2}, tanh {:.2}",
        per_vector(exp_v),
        per_vector(sigmoid_v),
        per_vector(tanh_v)
    );
}
