//! Vector-math benches: the SIMD slice forms of `dien_engine::vecmath`
//! against a plain scalar loop over the standard-library formula, and, where
//! `wide` has one, `wide`'s own `f32x8` function through the same loop.
//!
//! Throughput is in elements per second on 4096 inputs uniform in
//! `[-10, 10]` (the working range of gate pre-activations).
//!
//! Run: `cargo bench --bench vecmath -- --warm-up-time 1 --measurement-time 2`

use criterion::{Criterion, Throughput};
use dien_engine::vecmath;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;
use wide::f32x8;

const N: usize = 4096;

type SliceFn = fn(&[f32], &mut [f32]);

/// `out[i] = f(x[i])`, one element at a time.
#[inline(always)]
fn scalar_loop(x: &[f32], out: &mut [f32], f: impl Fn(f32) -> f32) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = f(v);
    }
}

/// `out = f(x)` 8 lanes at a time (`N` is a multiple of 8).
#[inline(always)]
fn wide_loop(x: &[f32], out: &mut [f32], f: impl Fn(f32x8) -> f32x8) {
    for (xc, oc) in x.chunks_exact(8).zip(out.chunks_exact_mut(8)) {
        let v = f32x8::from(<[f32; 8]>::try_from(xc).expect("chunk of 8"));
        oc.copy_from_slice(&f(v).to_array());
    }
}

fn softplus_std(x: f32) -> f32 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

fn functions(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let x: Vec<f32> = (0..N).map(|_| rng.random_range(-10.0f32..10.0)).collect();
    let mut out = vec![0.0f32; N];

    let cases: [(&str, SliceFn, SliceFn, Option<SliceFn>); 5] = [
        ("exp", vecmath::exp, |x, o| scalar_loop(x, o, f32::exp), Some(|x, o| wide_loop(x, o, f32x8::exp))),
        (
            "sigmoid",
            vecmath::sigmoid,
            |x, o| scalar_loop(x, o, |v| 1.0 / (1.0 + (-v).exp())),
            Some(|x, o| wide_loop(x, o, |v| f32x8::ONE / (f32x8::ONE + (-v).exp()))),
        ),
        ("tanh", vecmath::tanh, |x, o| scalar_loop(x, o, f32::tanh), Some(|x, o| wide_loop(x, o, f32x8::tanh))),
        ("softplus", vecmath::softplus, |x, o| scalar_loop(x, o, softplus_std), None),
        ("log_sigmoid", vecmath::log_sigmoid, |x, o| scalar_loop(x, o, |v| -softplus_std(-v)), None),
    ];

    for (name, simd, scalar, wide_fn) in cases {
        let mut g = c.benchmark_group(format!("vecmath/{name}"));
        g.throughput(Throughput::Elements(N as u64));
        g.bench_function("simd", |b| b.iter(|| simd(black_box(&x), black_box(&mut out))));
        g.bench_function("scalar_std", |b| b.iter(|| scalar(black_box(&x), black_box(&mut out))));
        if let Some(w) = wide_fn {
            g.bench_function("wide_builtin", |b| b.iter(|| w(black_box(&x), black_box(&mut out))));
        }
        g.finish();
    }
}

fn main() {
    println!("vecmath benches, {N} elements, build: {}", dien_engine::simd_target());
    let mut c = Criterion::default().configure_from_args();
    functions(&mut c);
    c.final_summary();
}
