//! A deliberately naive `f32` implementation of every cell, kept as the
//! benchmark baseline the fused fast path is measured against (used by
//! `benches/cells.rs`; its agreement test runs from `tests/unfused.rs`).
//! It is not part of the engine library.
//!
//! It is written the way a direct port of a tensor-library model tends to
//! look: batch-wide tensors, one GEMM call per product per step (through
//! `dien_engine::gemm::gemm`, which allocates its packing buffer each call), and
//! every elementwise operation its own pass over memory producing a freshly
//! allocated `Vec` (add, sigmoid, tanh, multiply, `1 − x`, select, …). The
//! training forward keeps every intermediate a backward needs, one `Vec` per
//! tensor per step, like a tape. Padded rows are computed on masked (zeroed)
//! inputs and discarded by a select, so they never influence anything.
//!
//! Results agree with `dien_engine::cell::reference` to `f32` rounding; nothing here
//! is meant to be fast.

use dien_engine::cell::reference::RefInputGrads;
use dien_engine::cell::{CellKind, GruGrads, GruParams, SeqInput};
use dien_engine::gemm::{MatMut, MatRef, gemm};

/// Everything the naive backward reads, recorded per step by
/// [`forward_train`] (each per-step tensor is batch-wide).
#[derive(Clone, Debug)]
pub struct UnfusedCache {
    /// All states `[B, T, H]`, zero at padded steps.
    pub states: Vec<f32>,
    /// Final states `[B, H]`.
    pub last: Vec<f32>,
    steps: Vec<StepTape>,
}

/// Intermediates of one step.
#[derive(Clone, Debug)]
struct StepTape {
    /// 1 for rows with a real step, 0 for padding `[B]`.
    mask: Vec<f32>,
    /// Attention scores, zero on padded rows `[B]` (ones for `Gru`).
    a: Vec<f32>,
    /// Raw input rows, zero on padded rows `[B, input]`.
    x: Vec<f32>,
    /// Cell input (`a·x` for `Aigru`, else `x`) `[B, input]`.
    xe: Vec<f32>,
    /// State entering the step `[B, H]`.
    h_prev: Vec<f32>,
    /// Gates `[B, H]` each.
    r: Vec<f32>,
    u: Vec<f32>,
    c: Vec<f32>,
}

// ---- elementwise passes, one allocation each ----

fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

fn sub(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

fn mul(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x * y).collect()
}

fn one_minus(a: &[f32]) -> Vec<f32> {
    a.iter().map(|x| 1.0 - x).collect()
}

fn neg(a: &[f32]) -> Vec<f32> {
    a.iter().map(|x| -x).collect()
}

fn sigmoid(a: &[f32]) -> Vec<f32> {
    a.iter().map(|x| 1.0 / (1.0 + (-x).exp())).collect()
}

fn tanh(a: &[f32]) -> Vec<f32> {
    a.iter().map(|x| x.tanh()).collect()
}

/// `m [rows, width] + bias [width]` broadcast over rows.
fn add_bias(m: &[f32], bias: &[f32]) -> Vec<f32> {
    m.chunks_exact(bias.len()).flat_map(|row| row.iter().zip(bias).map(|(x, b)| x + b)).collect()
}

/// Scales row `i` of `m [rows, width]` by `s[i]`.
fn scale_rows(m: &[f32], s: &[f32], width: usize) -> Vec<f32> {
    m.chunks_exact(width).zip(s).flat_map(|(row, &k)| row.iter().map(move |x| x * k)).collect()
}

/// Row sums of `m [rows, width]`.
fn row_sums(m: &[f32], width: usize) -> Vec<f32> {
    m.chunks_exact(width).map(|row| row.iter().sum()).collect()
}

/// Column block `[start, start + len)` of `m [rows, width]`, copied.
fn cols(m: &[f32], width: usize, start: usize, len: usize) -> Vec<f32> {
    m.chunks_exact(width).flat_map(|row| row[start..start + len].iter().copied()).collect()
}

/// Row `i` is `a`'s row where `mask[i] = 1`, else `b`'s.
fn select_rows(mask: &[f32], a: &[f32], b: &[f32], width: usize) -> Vec<f32> {
    mask.iter()
        .zip(a.chunks_exact(width).zip(b.chunks_exact(width)))
        .flat_map(|(&m, (ra, rb))| if m != 0.0 { ra } else { rb }.iter().copied())
        .collect()
}

/// `a [m, k] · wᵀ` for a row-major weight `w [n, k]`.
fn matmul_wt(a: &[f32], m: usize, k: usize, w: &[f32], n: usize) -> Vec<f32> {
    let mut out = vec![0.0; m * n];
    gemm(1.0, MatRef::row_major(a, m, k), MatRef::row_major(w, n, k).t(), 0.0, MatMut::row_major(&mut out, m, n));
    out
}

/// `a [m, k] · w` for a row-major weight `w [k, n]`.
fn matmul_w(a: &[f32], m: usize, k: usize, w: &[f32], n: usize) -> Vec<f32> {
    let mut out = vec![0.0; m * n];
    gemm(1.0, MatRef::row_major(a, m, k), MatRef::row_major(w, k, n), 0.0, MatMut::row_major(&mut out, m, n));
    out
}

/// `acc [n, k] += gᵀ · v` for `g [m, n]`, `v [m, k]` (a weight gradient).
fn acc_outer(acc: &mut [f32], g: &[f32], v: &[f32], m: usize, n: usize, k: usize) {
    gemm(1.0, MatRef::row_major(g, m, n).t(), MatRef::row_major(v, m, k), 1.0, MatMut::row_major(acc, n, k));
}

/// Forward through time; `tape` receives the per-step intermediates when given.
fn run(
    kind: CellKind,
    p: &GruParams<'_, f32>,
    input: &SeqInput<'_, f32>,
    mut tape: Option<&mut Vec<StepTape>>,
) -> (Vec<f32>, Vec<f32>) {
    p.check();
    input.check(kind, p);
    let (hd, n, steps, batch) = (p.hidden, p.input, input.steps, input.batch);
    let mut h = match input.h0 {
        Some(h0) => h0.to_vec(),
        None => vec![0.0; batch * hd],
    };
    let mut states = vec![0.0; batch * steps * hd];
    let (w_ru, w_c) = p.w_hh.split_at(2 * hd * hd);
    for t in 0..steps {
        let mask: Vec<f32> = input.lengths.iter().map(|&l| if t < l { 1.0 } else { 0.0 }).collect();
        let a: Vec<f32> = (0..batch)
            .map(|b| match (kind.uses_attention(), input.att) {
                (true, Some(att)) if mask[b] != 0.0 => att[b * steps + t],
                (true, _) => 0.0,
                (false, _) => 1.0,
            })
            .collect();
        let x: Vec<f32> = (0..batch)
            .flat_map(|b| {
                let row = &input.x[(b * steps + t) * n..(b * steps + t + 1) * n];
                let keep = mask[b] != 0.0;
                row.iter().map(move |&v| if keep { v } else { 0.0 })
            })
            .collect();
        let xe = if kind == CellKind::Aigru { scale_rows(&x, &a, n) } else { x.clone() };

        let gi = add_bias(&matmul_wt(&xe, batch, n, p.w_ih, 3 * hd), p.b);
        let gh_ru = matmul_wt(&h, batch, hd, w_ru, 2 * hd);
        let r = sigmoid(&add(&cols(&gi, 3 * hd, 0, hd), &cols(&gh_ru, 2 * hd, 0, hd)));
        let u = sigmoid(&add(&cols(&gi, 3 * hd, hd, hd), &cols(&gh_ru, 2 * hd, hd, hd)));
        let rh = mul(&r, &h);
        let gh_c = matmul_wt(&rh, batch, hd, w_c, hd);
        let c = tanh(&add(&cols(&gi, 3 * hd, 2 * hd, hd), &gh_c));

        let h_new = match kind {
            CellKind::Gru | CellKind::Aigru => add(&mul(&one_minus(&u), &h), &mul(&u, &c)),
            CellKind::Augru => {
                let ut = scale_rows(&u, &a, hd);
                add(&mul(&one_minus(&ut), &h), &mul(&ut, &c))
            }
            CellKind::AugruRef => {
                let k = scale_rows(&one_minus(&u), &one_minus(&a), hd);
                add(&mul(&k, &h), &mul(&one_minus(&k), &c))
            }
            CellKind::Agru => add(&scale_rows(&h, &one_minus(&a), hd), &scale_rows(&c, &a, hd)),
        };
        let h_next = select_rows(&mask, &h_new, &h, hd);
        for b in 0..batch {
            if mask[b] != 0.0 {
                let o = (b * steps + t) * hd;
                states[o..o + hd].copy_from_slice(&h_next[b * hd..(b + 1) * hd]);
            }
        }
        if let Some(tape) = tape.as_deref_mut() {
            tape.push(StepTape { mask, a, x, xe, h_prev: h, r, u, c });
        }
        h = h_next;
    }
    (states, h)
}

/// Runs the cell over the batch; returns `(states [B, T, H], last [B, H])`.
pub fn forward(kind: CellKind, p: &GruParams<'_, f32>, input: &SeqInput<'_, f32>) -> (Vec<f32>, Vec<f32>) {
    run(kind, p, input, None)
}

/// Runs the cell and records what [`backward`] needs.
pub fn forward_train(kind: CellKind, p: &GruParams<'_, f32>, input: &SeqInput<'_, f32>) -> UnfusedCache {
    let mut tape = Vec::with_capacity(input.steps);
    let (states, last) = run(kind, p, input, Some(&mut tape));
    UnfusedCache { states, last, steps: tape }
}

/// Backward through time from the tape of [`forward_train`] (same `kind`,
/// `p` and `input`). `d_states [B, T, H]` (padded entries ignored) and
/// `d_last [B, H]` may be `None` for zero; parameter gradients are
/// accumulated into `grads`.
pub fn backward(
    kind: CellKind,
    p: &GruParams<'_, f32>,
    input: &SeqInput<'_, f32>,
    cache: &UnfusedCache,
    d_states: Option<&[f32]>,
    d_last: Option<&[f32]>,
    grads: &mut GruGrads<f32>,
) -> RefInputGrads<f32> {
    p.check();
    input.check(kind, p);
    let (hd, n, steps, batch) = (p.hidden, p.input, input.steps, input.batch);
    assert_eq!(cache.steps.len(), steps, "cache from a different input");
    if let Some(ds) = d_states {
        assert_eq!(ds.len(), batch * steps * hd, "d_states must be [B, T, H]");
    }
    if let Some(dl) = d_last {
        assert_eq!(dl.len(), batch * hd, "d_last must be [B, H]");
    }
    assert_eq!(grads.w_ih.len(), p.w_ih.len(), "grads.w_ih shape");
    assert_eq!(grads.w_hh.len(), p.w_hh.len(), "grads.w_hh shape");
    assert_eq!(grads.b.len(), p.b.len(), "grads.b shape");

    let mut out = RefInputGrads { x: vec![0.0; batch * steps * n], att: vec![0.0; batch * steps], h0: vec![] };
    let mut dh = match d_last {
        Some(dl) => dl.to_vec(),
        None => vec![0.0; batch * hd],
    };
    let (w_ru, w_c) = p.w_hh.split_at(2 * hd * hd);
    for t in (0..steps).rev() {
        let s = &cache.steps[t];
        let ds_t: Vec<f32> = (0..batch)
            .flat_map(|b| {
                let o = (b * steps + t) * hd;
                let valid = s.mask[b] != 0.0;
                (0..hd).map(move |j| match d_states {
                    Some(ds) if valid => ds[o + j],
                    _ => 0.0,
                })
            })
            .collect();
        let dh_in = add(&dh, &ds_t);
        // Only real steps feed the gates; padded rows pass dh straight through.
        let dh_step = scale_rows(&dh_in, &s.mask, hd);
        let dh_skip = scale_rows(&dh_in, &one_minus(&s.mask), hd);
        let hp = &s.h_prev;

        let (mut dhp, du, dc, da) = match kind {
            CellKind::Gru | CellKind::Aigru => {
                let dhp = mul(&one_minus(&s.u), &dh_step);
                let du = mul(&dh_step, &sub(&s.c, hp));
                let dc = mul(&dh_step, &s.u);
                (dhp, du, dc, None)
            }
            CellKind::Augru => {
                let ut = scale_rows(&s.u, &s.a, hd);
                let dut = mul(&dh_step, &sub(&s.c, hp));
                let dhp = mul(&one_minus(&ut), &dh_step);
                let du = scale_rows(&dut, &s.a, hd);
                let da = row_sums(&mul(&dut, &s.u), hd);
                let dc = mul(&dh_step, &ut);
                (dhp, du, dc, Some(da))
            }
            CellKind::AugruRef => {
                let one_minus_a = one_minus(&s.a);
                let k = scale_rows(&one_minus(&s.u), &one_minus_a, hd);
                let dk = mul(&dh_step, &sub(hp, &s.c));
                let dhp = mul(&k, &dh_step);
                let dc = mul(&one_minus(&k), &dh_step);
                let du = neg(&scale_rows(&dk, &one_minus_a, hd));
                let da = neg(&row_sums(&mul(&one_minus(&s.u), &dk), hd));
                (dhp, du, dc, Some(da))
            }
            CellKind::Agru => {
                let dhp = scale_rows(&dh_step, &one_minus(&s.a), hd);
                let dc = scale_rows(&dh_step, &s.a, hd);
                let da = row_sums(&mul(&dh_step, &sub(&s.c, hp)), hd);
                (dhp, vec![0.0; batch * hd], dc, Some(da))
            }
        };

        let dpre_c = mul(&dc, &one_minus(&mul(&s.c, &s.c)));
        let dpre_u = mul(&mul(&du, &s.u), &one_minus(&s.u));
        let rh = mul(&s.r, hp);
        let drh = matmul_w(&dpre_c, batch, hd, w_c, hd);
        acc_outer(&mut grads.w_hh[2 * hd * hd..], &dpre_c, &rh, batch, hd, hd);
        dhp = add(&dhp, &mul(&drh, &s.r));
        let dr = mul(&drh, hp);
        let dpre_r = mul(&mul(&dr, &s.r), &one_minus(&s.r));

        // Concatenate the gate blocks, [B, 3H] and [B, 2H].
        let dpre: Vec<f32> = (0..batch)
            .flat_map(|b| {
                let row = b * hd..(b + 1) * hd;
                [&dpre_r[row.clone()], &dpre_u[row.clone()], &dpre_c[row]].into_iter().flatten().copied()
            })
            .collect();
        let dpre_ru = cols(&dpre, 3 * hd, 0, 2 * hd);
        dhp = add(&dhp, &matmul_w(&dpre_ru, batch, 2 * hd, w_ru, hd));
        acc_outer(&mut grads.w_hh[..2 * hd * hd], &dpre_ru, hp, batch, 2 * hd, hd);
        acc_outer(&mut grads.w_ih, &dpre, &s.xe, batch, 3 * hd, n);
        let db = (0..3 * hd).map(|q| (0..batch).map(|b| dpre[b * 3 * hd + q]).sum::<f32>());
        for (g, d) in grads.b.iter_mut().zip(db) {
            *g += d;
        }
        let dxe = matmul_w(&dpre, batch, 3 * hd, p.w_ih, n);
        let (dx, da) = match kind {
            CellKind::Aigru => (scale_rows(&dxe, &s.a, n), Some(row_sums(&mul(&dxe, &s.x), n))),
            _ => (dxe, da),
        };
        for b in 0..batch {
            if s.mask[b] != 0.0 {
                let bt = b * steps + t;
                out.x[bt * n..(bt + 1) * n].copy_from_slice(&dx[b * n..(b + 1) * n]);
                if let Some(da) = &da {
                    out.att[bt] = da[b];
                }
            }
        }
        dh = add(&dhp, &dh_skip);
    }
    out.h0 = dh;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dien_engine::cell::reference;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn uniform(rng: &mut ChaCha8Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(lo..hi)).collect()
    }

    fn widen(v: &[f32]) -> Vec<f64> {
        v.iter().map(|&x| f64::from(x)).collect()
    }

    /// Relative agreement bound, on `|unfused − reference| / (|reference| + floor)`.
    const REL_TOL: f64 = 1e-4;

    /// Worst `|a − r| / (|r| + floor)` with `floor = 1e-2·max|r|` (entries
    /// far below the tensor's scale carry the cancellation error of its
    /// larger terms, so they are judged against that scale).
    fn worst(what: &str, a: &[f32], r: &[f64]) -> f64 {
        assert_eq!(a.len(), r.len(), "{what}: lengths");
        let scale = r.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let floor = 1e-2 * scale + 1e-30;
        let mut w = 0.0f64;
        for (i, (&x, &y)) in a.iter().zip(r).enumerate() {
            assert!(x.is_finite(), "{what}[{i}] not finite: {x}");
            w = w.max((f64::from(x) - y).abs() / (y.abs() + floor));
        }
        w
    }

    /// Compares forward and backward of the naive `f32` cell with the `f64`
    /// reference on the same (f32-representable) data. NaN sits at every
    /// padded input, so any leak shows.
    fn compare(
        kind: CellKind,
        batch: usize,
        steps: usize,
        input: usize,
        hidden: usize,
        with_h0: bool,
        seed: u64,
    ) -> f64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut lengths: Vec<usize> = vec![0, 1, steps];
        lengths.extend((3..batch).map(|_| rng.random_range(0..=steps)));
        lengths.shuffle(&mut rng);
        let bound = (1.0 / hidden as f32).sqrt();
        let w_ih = uniform(&mut rng, 3 * hidden * input, -bound, bound);
        let w_hh = uniform(&mut rng, 3 * hidden * hidden, -bound, bound);
        let b = uniform(&mut rng, 3 * hidden, -0.5, 1.0);
        let mut x = uniform(&mut rng, batch * steps * input, -1.0, 1.0);
        let mut att = uniform(&mut rng, batch * steps, 0.0, 1.0);
        let h0 = with_h0.then(|| uniform(&mut rng, batch * hidden, -0.8, 0.8));
        for bi in 0..batch {
            for t in lengths[bi]..steps {
                att[bi * steps + t] = f32::NAN;
                x[(bi * steps + t) * input..(bi * steps + t + 1) * input].fill(f32::NAN);
            }
        }
        let ds = uniform(&mut rng, batch * steps * hidden, -1.0, 1.0);
        let dl = uniform(&mut rng, batch * hidden, -1.0, 1.0);

        let p = GruParams { w_ih: &w_ih, w_hh: &w_hh, b: &b, input, hidden };
        let seq = SeqInput { x: &x, lengths: &lengths, att: Some(&att), h0: h0.as_deref(), batch, steps };
        let cache = forward_train(kind, &p, &seq);
        let (states, last) = forward(kind, &p, &seq);
        assert_eq!(states, cache.states, "forward and forward_train agree");
        assert_eq!(last, cache.last, "forward and forward_train agree");
        let mut g = GruGrads::zeros(input, hidden);
        let gi = backward(kind, &p, &seq, &cache, Some(&ds), Some(&dl), &mut g);

        let (w_ih64, w_hh64, b64, x64, att64) = (widen(&w_ih), widen(&w_hh), widen(&b), widen(&x), widen(&att));
        let h064 = h0.as_deref().map(widen);
        let p64 = GruParams { w_ih: &w_ih64, w_hh: &w_hh64, b: &b64, input, hidden };
        let seq64 = SeqInput { x: &x64, lengths: &lengths, att: Some(&att64), h0: h064.as_deref(), batch, steps };
        let fwd = reference::forward(kind, &p64, &seq64);
        let mut g64 = GruGrads::zeros(input, hidden);
        let gi64 = reference::backward(kind, &p64, &seq64, &fwd, Some(&widen(&ds)), Some(&widen(&dl)), &mut g64);

        let checks = [
            ("states", worst("states", &cache.states, &fwd.states)),
            ("last", worst("last", &cache.last, &fwd.last)),
            ("w_ih", worst("w_ih", &g.w_ih, &g64.w_ih)),
            ("w_hh", worst("w_hh", &g.w_hh, &g64.w_hh)),
            ("b", worst("b", &g.b, &g64.b)),
            ("x", worst("x", &gi.x, &gi64.x)),
            ("att", worst("att", &gi.att, &gi64.att)),
            ("h0", worst("h0", &gi.h0, &gi64.h0)),
        ];
        // Padded entries are exactly zero, as in the reference.
        for (i, v) in cache.states.iter().enumerate() {
            if fwd.states[i] == 0.0 {
                assert_eq!(*v, 0.0);
            }
        }
        let mut all = 0.0f64;
        for (name, w) in checks {
            assert!(w <= REL_TOL, "{} B={batch} T={steps} in={input} H={hidden}: {name} off by {w:e}", kind.name());
            all = all.max(w);
        }
        all
    }

    #[test]
    fn unfused_matches_reference() {
        let mut w = 0.0f64;
        for (k, kind) in CellKind::ALL.into_iter().enumerate() {
            let s = 10 * k as u64;
            w = w.max(compare(kind, 4, 5, 4, 3, true, s));
            w = w.max(compare(kind, 3, 5, 4, 3, false, s + 1));
            w = w.max(compare(kind, 6, 17, 9, 11, true, s + 2));
            // DIEN's default widths.
            w = w.max(compare(kind, 5, 30, 36, 36, true, s + 3));
        }
        eprintln!("worst {w:e}");
    }
}
