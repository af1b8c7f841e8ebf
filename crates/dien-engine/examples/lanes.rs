//! A layout experiment: the GRU training forward of one chunk of samples
//! with the *samples* in the vector lanes ("batch in lanes") against the
//! engine's cell, which puts the hidden units in the lanes.
//!
//! With `H = 36` a row of hidden units fills 3 vectors of 16 lanes with 36
//! values (75 %), and every product and element-wise pass of the cell pays
//! for the empty lanes. Holding one chunk of `LANES` samples as
//! `hᵀ [H, LANES]` fills every lane whatever `H` is: the recurrent product
//! becomes `ruᵀ = U_ru · hᵀ` (weights broadcast, one vector of states per
//! inner index) and the gates are whole vectors. This prototype runs that
//! form (same equations, training caches kept) and times it against
//! `GruCell::forward` on the same chunk; it also prints the largest
//! difference between the two results: zero, since every value is the same
//! chain of fused multiply-adds in the same order.
//!
//! Outcome (docs/PERFORMANCE.md, "later still", item 3): the recurrence runs
//! no faster than the engine's, because each broadcast weight feeds a
//! single multiply-add where the engine's tiles reuse it over 3 vectors,
//! and the projection and transposes cost more; two vectors of samples per
//! tile (`NV = 2`) measured slower still. The layout is not used.
//!
//! Run: `cargo run --release -p dien-engine --example lanes` (add
//! `RUSTFLAGS="-C target-cpu=x86-64-v4"` and `--target-dir target/v4`
//! for the 16-lane build).

// Index loops mirror the equations' subscripts.
#![allow(clippy::needless_range_loop)]

use dien_engine::cell::fast::{CellWorkspace, GruCell, Mode};
use dien_engine::cell::{CellKind, GruParams, SeqInput};
use dien_engine::simd::{LANES, V, load, store};
use dien_engine::vecmath::simd::{sigmoid_v, tanh_v};
use std::time::Instant;

mod timing;
use timing::best_of;

const H: usize = 36;
const IN: usize = 36;
const T: usize = 100;
/// Vectors of samples per register tile.
const NV: usize = 1;
/// Samples of the chunk.
const B: usize = NV * LANES;
/// Weight rows per register tile (accumulators).
const MR: usize = 12;

/// `acc[i] = Σ_p w[(o0 + i)·ldw + p] · bt[p·ldb + off ..][..LANES]` for
/// `i < MR`: weight values broadcast, one vector of the lane-major operand
/// per inner index.
#[inline(always)]
fn tile(w: &[f32], ldw: usize, o0: usize, k: usize, bt: &[f32], ldb: usize, off: usize) -> [[V; NV]; MR] {
    let wr: [&[f32]; MR] = std::array::from_fn(|i| &w[(o0 + i) * ldw..(o0 + i) * ldw + k]);
    let mut acc = [[V::ZERO; NV]; MR];
    for p in 0..k {
        let b: [V; NV] = std::array::from_fn(|v| load(bt, p * ldb + off + v * LANES));
        for i in 0..MR {
            let a = V::splat(wr[i][p]);
            for v in 0..NV {
                acc[i][v] = a.mul_add(b[v], acc[i][v]);
            }
        }
    }
    acc
}

/// The lane-major forward's buffers (the training cache).
struct LaneMajor {
    /// Inputs `[T, IN, B]`.
    xt: Vec<f32>,
    /// Gates `[T, 3H, B]`: projection + bias, then `r | u | c`.
    g: Vec<f32>,
    /// States `[T + 1, H, B]` (step `t` reads row block `t`).
    hs: Vec<f32>,
    /// `r ∘ h_{t−1}`, `[T, H, B]`.
    rh: Vec<f32>,
    /// Seconds spent so far: transposes into and out of lanes, input
    /// projection, recurrence.
    secs: [f64; 3],
}

impl LaneMajor {
    fn new() -> Self {
        Self {
            xt: vec![0.0; IN * T * B],
            g: vec![0.0; 3 * H * T * B],
            hs: vec![0.0; (T + 1) * H * B],
            rh: vec![0.0; T * H * B],
            secs: [0.0; 3],
        }
    }

    /// GRU forward of `x [B, T, IN]` with `w_ih [3H, IN]`, `w_hh [3H, H]`,
    /// `b [3H]`; writes `states [B, T, H]`.
    fn forward(&mut self, x: &[f32], w_ih: &[f32], w_hh: &[f32], bias: &[f32], states: &mut [f32]) {
        let start = Instant::now();
        let Self { xt, g, hs, rh, .. } = self;
        // Inputs into lanes: xt[t, k, b] = x[b, t, k].
        for b in 0..B {
            for t in 0..T {
                for k in 0..IN {
                    xt[(t * IN + k) * B + b] = x[(b * T + t) * IN + k];
                }
            }
        }
        let t0 = Instant::now();
        // Input projection of every step: G[t, o, :] = W_ih[o, :] · xt[t, :, :] + b[o].
        for t in 0..T {
            for o0 in (0..3 * H).step_by(MR) {
                let acc = tile(w_ih, IN, o0, IN, xt, B, t * IN * B);
                for (i, a) in acc.iter().enumerate() {
                    let o = o0 + i;
                    for v in 0..NV {
                        store(g, (t * 3 * H + o) * B + v * LANES, a[v] + V::splat(bias[o]));
                    }
                }
            }
        }
        let t1 = Instant::now();
        hs[..H * B].fill(0.0);
        let (u_ru, u_c) = w_hh.split_at(2 * H * H);
        for t in 0..T {
            let (prev, next) = hs.split_at_mut((t + 1) * H * B);
            let hp = &prev[t * H * B..];
            // [r | u] = σ(G_ru + U_ru · h), and r ∘ h.
            for o0 in (0..2 * H).step_by(MR) {
                let acc = tile(u_ru, H, o0, H, hp, B, 0);
                for (i, a) in acc.iter().enumerate() {
                    let o = o0 + i;
                    for v in 0..NV {
                        let go = (t * 3 * H + o) * B + v * LANES;
                        let s = sigmoid_v(a[v] + load(g, go));
                        store(g, go, s);
                        if o < H {
                            store(rh, (t * H + o) * B + v * LANES, s * load(hp, o * B + v * LANES));
                        }
                    }
                }
            }
            // c = tanh(G_c + U_c · (r ∘ h)); h' = u ∘ (c − h) + h.
            for o0 in (0..H).step_by(MR) {
                let acc = tile(u_c, H, o0, H, rh, B, t * H * B);
                for (i, a) in acc.iter().enumerate() {
                    let o = o0 + i;
                    for v in 0..NV {
                        let gc = (t * 3 * H + 2 * H + o) * B + v * LANES;
                        let c = tanh_v(a[v] + load(g, gc));
                        store(g, gc, c);
                        let u = load(g, (t * 3 * H + H + o) * B + v * LANES);
                        let h = load(hp, o * B + v * LANES);
                        store(next, o * B + v * LANES, u.mul_add(c - h, h));
                    }
                }
            }
        }
        let t2 = Instant::now();
        // States out of lanes: states[b, t, j] = hs[t + 1, j, b].
        for t in 0..T {
            for j in 0..H {
                for b in 0..B {
                    states[(b * T + t) * H + j] = hs[((t + 1) * H + j) * B + b];
                }
            }
        }
        let t3 = Instant::now();
        self.secs[0] += (t0 - start).as_secs_f64() + (t3 - t2).as_secs_f64();
        self.secs[1] += (t1 - t0).as_secs_f64();
        self.secs[2] += (t2 - t1).as_secs_f64();
    }
}

fn main() {
    const { assert!((3 * H).is_multiple_of(MR) && H.is_multiple_of(MR)) };
    rayon::ThreadPoolBuilder::new().num_threads(1).build_global().expect("a one-thread pool");
    let val = |i: usize, m: usize| ((i * 7919) % m) as f32 / m as f32 - 0.5;
    let x: Vec<f32> = (0..B * T * IN).map(|i| val(i, 1013)).collect();
    let w_ih: Vec<f32> = (0..3 * H * IN).map(|i| 0.4 * val(i, 331)).collect();
    let w_hh: Vec<f32> = (0..3 * H * H).map(|i| 0.4 * val(i, 347)).collect();
    let bias: Vec<f32> = (0..3 * H).map(|i| 0.2 * val(i, 37)).collect();
    let lengths = vec![T; B];

    let mut cell = GruCell::new(CellKind::Gru, IN, H);
    cell.set_params(&GruParams { w_ih: &w_ih, w_hh: &w_hh, b: &bias, input: IN, hidden: H });
    let input = SeqInput { x: &x, lengths: &lengths, att: None, h0: None, batch: B, steps: T };
    let mut ws = CellWorkspace::new();
    let (mut st_a, mut last) = (vec![0.0f32; B * T * H], vec![0.0f32; B * H]);
    let mut st_b = vec![0.0f32; B * T * H];
    let mut lm = LaneMajor::new();

    cell.forward(&input, &mut ws, Mode::Train, &mut st_a, &mut last);
    lm.forward(&x, &w_ih, &w_hh, &bias, &mut st_b);
    let diff = st_a.iter().zip(&st_b).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);

    let flops = 2.0 * (B * T * (3 * H * IN + 3 * H * H)) as f64;
    let engine = best_of(200, || cell.forward(&input, &mut ws, Mode::Train, &mut st_a, &mut last));
    let lanes = best_of(200, || lm.forward(&x, &w_ih, &w_hh, &bias, &mut st_b));
    println!("GRU training forward, {B} samples x {T} steps, H = {H}, input {IN}, {LANES} lanes");
    println!("  engine (hidden units in lanes): {:.1} us, {:.1} GFLOP/s", engine * 1e6, flops / engine / 1e9);
    println!("  samples in lanes (prototype):   {:.1} us, {:.1} GFLOP/s", lanes * 1e6, flops / lanes / 1e9);
    // The sections' shares of all timed calls, scaled to the best call.
    let share = |i: usize| lm.secs[i] / lm.secs.iter().sum::<f64>() * lanes * 1e6;
    println!(
        "    of which transposes {:.1} us, input projection {:.1} us, recurrence {:.1} us",
        share(0),
        share(1),
        share(2)
    );
    println!("  largest state difference: {diff:.2e}");
}
