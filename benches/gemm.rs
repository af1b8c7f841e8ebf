//! GEMM benches: the register-tiled kernel on a pre-packed right-hand side
//! (`gemm::tile::gemm_packed`, its store epilogue) against the
//! `matrixmultiply` wrapper (`gemm::gemm`) on the shapes of the DIEN GRU
//! layers (hidden 36, batch·time 12800), plus the cost of (re)packing the
//! right-hand side.
//!
//! Throughput is reported as elements = `m·n·k` multiply-adds per second, so
//! GFLOP/s = 2 × Gelem/s. The 1024³ `sgemm` yardstick is printed first.
//!
//! Run: `cargo bench --bench gemm -- --warm-up-time 1 --measurement-time 2`
//!
//! With `GEMM_CROSSOVER=1` in the environment, a sweep over `m` (best of 25
//! interleaved rounds, robust to a busy machine) is printed first, showing
//! where `matrixmultiply` overtakes the small kernel. With `GEMM_BF16=1`,
//! the bf16 product (`gemm::bf16`, on CPUs with AVX512_BF16) against the
//! `f32` one on the request path's shapes, the same way.

mod common;

use criterion::{BenchmarkId, Criterion, Throughput};
use dien_engine::gemm::bf16::{Bf16Cpu, Bf16Rows, PackedBf16};
use dien_engine::gemm::tile::{Accumulate, Packed, gemm_long_k, gemm_packed};
use dien_engine::gemm::{MatMut, MatRef, gemm};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;
use std::time::Instant;

fn rand_vec(rng: &mut ChaCha8Rng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// `[m, k] · [k, n]` products: forward `h·U_ruᵀ`, `(r∘h)·U_cᵀ`, backward
/// `dz·U`, and the hoisted input projection.
const SHAPES: &[(usize, usize, usize)] =
    &[(16, 36, 72), (32, 36, 72), (16, 36, 36), (32, 72, 36), (128, 36, 108), (12800, 36, 108)];

fn products(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for &(m, k, n) in SHAPES {
        let a = rand_vec(&mut rng, m * k);
        let b = rand_vec(&mut rng, k * n);
        let mut out = vec![0.0f32; m * n];
        let packed = Packed::from_weight(&b, k, n);
        let mut g = c.benchmark_group(format!("gemm/{m}x{k}x{n}"));
        g.throughput(Throughput::Elements((m * n * k) as u64));
        g.bench_function("tile", |bn| {
            bn.iter(|| gemm_packed(m, black_box(&a), k, &packed, &mut out, n, Accumulate::No))
        });
        g.bench_function("matrixmultiply", |bn| {
            bn.iter(|| {
                gemm(
                    1.0,
                    MatRef::row_major(black_box(&a), m, k),
                    MatRef::row_major(&b, k, n),
                    0.0,
                    MatMut::row_major(&mut out, m, n),
                )
            })
        });
        g.finish();
    }
}

/// Weight gradient `dW [108, 36] += dGᵀ · X` over all `B·T = 12800` rows,
/// through transposed views (no copy), against the tiled kernel's long-`k`
/// form computing the transpose `dWᵀ [36, 108] += Xᵀ · dG` the way the
/// cells do (strided `A`, `B` read with 8 values of slack).
fn weight_gradient(c: &mut Criterion) {
    let (rows, out_w, in_w) = (12800, 108, 36);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let mut dg = rand_vec(&mut rng, rows * out_w);
    dg.extend([0.0; 8]);
    let dg_rows = &dg[..rows * out_w];
    let x = rand_vec(&mut rng, rows * in_w);
    let mut dw = vec![0.0f32; out_w * in_w];
    let mut g = c.benchmark_group(format!("gemm/{out_w}x{rows}x{in_w}"));
    g.throughput(Throughput::Elements((out_w * rows * in_w) as u64));
    g.bench_function("matrixmultiply_tn", |bn| {
        bn.iter(|| {
            gemm(
                1.0,
                MatRef::row_major(black_box(dg_rows), rows, out_w).t(),
                MatRef::row_major(&x, rows, in_w),
                1.0,
                MatMut::row_major(&mut dw, out_w, in_w),
            )
        })
    });
    let mut dw_t = vec![0.0f32; in_w * out_w];
    g.bench_function("tile_long_k", |bn| {
        bn.iter(|| {
            gemm_long_k(in_w, rows, out_w, black_box(&x), 1, in_w, &dg, out_w, &mut dw_t, out_w, Accumulate::Yes)
        })
    });
    g.finish();
}

/// Refilling a pack, once per training step per weight: from a `[n, k]`
/// weight (`x·Wᵀ` layout, columns of B contiguous) and from a `[k, n]` one
/// (`g·W`, rows contiguous). Elements = `k·n` values packed.
fn packing(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut g = c.benchmark_group("gemm/pack");
    for &(k, n) in &[(36, 72), (36, 36), (72, 36), (36, 108)] {
        let w = rand_vec(&mut rng, n * k);
        let mut packed_t = Packed::from_weight_t(&w, n, k);
        let mut packed = Packed::from_weight(&w, k, n);
        g.throughput(Throughput::Elements((k * n) as u64));
        g.bench_function(BenchmarkId::new("fill_t", format!("{k}x{n}")), |bn| {
            bn.iter(|| packed_t.fill_t(black_box(&w), n, k))
        });
        g.bench_function(BenchmarkId::new("fill_n", format!("{k}x{n}")), |bn| {
            bn.iter(|| packed.fill_n(black_box(&w), k, n))
        });
    }
    g.finish();
}

/// Best-of-rounds GFLOP/s of both kernels for `m` from 1 to 4096, the two
/// timed alternately so that background load hits both alike.
fn crossover_sweep() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    println!("crossover: GFLOP/s tile / matrixmultiply (best of 25 rounds)");
    for &(k, n) in &[(36, 36), (36, 72), (72, 36), (36, 108)] {
        let mut line = format!("  k={k:<3} n={n:<3}:");
        for &m in &[1, 4, 8, 16, 32, 64, 128, 256, 1024, 4096] {
            let a = rand_vec(&mut rng, m * k);
            let b = rand_vec(&mut rng, k * n);
            let packed = Packed::from_weight(&b, k, n);
            let mut out = vec![0.0f32; m * n];
            let reps = (4_000_000 / (m * n * k)).max(1);
            let mut best = [f64::MAX; 2];
            for _ in 0..25 {
                let t = Instant::now();
                for _ in 0..reps {
                    gemm_packed(m, black_box(&a), k, &packed, &mut out, n, Accumulate::No);
                }
                best[0] = best[0].min(t.elapsed().as_secs_f64() / reps as f64);
                let t = Instant::now();
                for _ in 0..reps {
                    let (av, bv) = (MatRef::row_major(black_box(&a), m, k), MatRef::row_major(&b, k, n));
                    gemm(1.0, av, bv, 0.0, MatMut::row_major(&mut out, m, n));
                }
                best[1] = best[1].min(t.elapsed().as_secs_f64() / reps as f64);
            }
            let gflops = |secs: f64| 2.0 * (m * n * k) as f64 / secs / 1e9;
            line += &format!(" m{m}={:.0}/{:.0}", gflops(best[0]), gflops(best[1]));
        }
        println!("{line}");
    }
}

/// Best-of-rounds multiply-adds per nanosecond of the `f32` product
/// (`gemm_packed`), the bf16 product with the conversion of `A`
/// (`Bf16Cpu::gemm_f32`) and the bf16 kernel alone (`A` converted before),
/// timed alternately, on the request path's shapes: attention layers 1
/// and 2 over 256 candidate × step rows, the query layer, the head's two
/// hidden layers over a block of 32 candidates, a GRU input projection
/// over 100 steps.
fn bf16_sweep() {
    let Some(cpu) = Bf16Cpu::detect() else {
        println!("bf16: skipped, this CPU lacks AVX512_BF16");
        return;
    };
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    println!("bf16: multiply-adds per ns, f32 tile / bf16 with conversion / bf16 kernel (best of 25 rounds)");
    for &(m, k, n) in &[(256, 36, 80), (256, 80, 40), (32, 18, 36), (32, 162, 200), (32, 200, 80), (100, 36, 108)] {
        let a = rand_vec(&mut rng, m * k);
        let w = rand_vec(&mut rng, n * k);
        let (pf, pb) = (Packed::from_weight_t(&w, n, k), PackedBf16::from_weight_t(&w, n, k));
        let mut out = vec![0.0f32; m * n];
        let mut ws = Bf16Rows::new();
        let reps = (4_000_000 / (m * n * k)).max(1);
        let mut best = [f64::MAX; 3];
        for _ in 0..25 {
            let mut time = |i: usize, f: &mut dyn FnMut()| {
                let t = Instant::now();
                for _ in 0..reps {
                    f();
                }
                best[i] = best[i].min(t.elapsed().as_secs_f64() / reps as f64);
            };
            time(0, &mut || gemm_packed(m, black_box(&a), k, &pf, &mut out, n, Accumulate::Yes));
            time(1, &mut || cpu.gemm_f32(m, black_box(&a), k, &pb, &mut out, n, Accumulate::Yes, &mut ws));
            cpu.convert(m, &a, k, k, &mut ws);
            time(2, &mut || cpu.gemm(m, black_box(&ws), &pb, &mut out, n, Accumulate::Yes));
        }
        let rate = |secs: f64| (m * n * k) as f64 / secs / 1e9;
        println!("  {m}x{k}x{n}: {:.1} / {:.1} / {:.1}", rate(best[0]), rate(best[1]), rate(best[2]));
    }
}

fn main() {
    if std::env::var_os("GEMM_CROSSOVER").is_some() {
        crossover_sweep();
    }
    if std::env::var_os("GEMM_BF16").is_some() {
        bf16_sweep();
    }
    println!(
        "yardstick: matrixmultiply::sgemm 1024x1024x1024, 1 thread: {:.1} GFLOP/s ({})",
        common::sgemm_yardstick_gflops(),
        dien_engine::simd_target()
    );
    let mut c = Criterion::default().configure_from_args();
    products(&mut c);
    weight_gradient(&mut c);
    packing(&mut c);
    c.final_summary();
}
