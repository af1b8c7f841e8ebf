//! Attention over chunks of samples, forward and backward (training path).
//!
//! The `mlp` form's first layer is split as in the
//! [layer documentation](super): the per-sample bracket is computed once
//! and the per-step product has inner width `2A` instead of `4A`.

// Index loops mirror the equations' subscripts.
#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

use dien_engine::gemm::tile::{Accumulate, Store, gemm_ep};
use dien_engine::simd::{LANES, V, load, load_n, pad_lanes, store, store_n};
use dien_engine::vecmath::simd::sigmoid_v;

use super::{F1, F2, split_first_layer};
use crate::config::AttForm;
use crate::fast::dense::{Dense, weight_grad};
use crate::fast::per_thread::Scratch;
use crate::fast::{grow, vec_at};
use crate::params::ParamStore;
use dien_engine::simd::{axpy, dot};

/// Packed attention weights.
#[derive(Clone, Debug)]
pub(crate) struct AttPacked {
    pub form: AttForm,
    /// Key width `A`.
    pub a: usize,
    /// Query (target item) width `E`.
    pub e: usize,
    // mlp form
    q: Dense,
    q_b: Vec<f32>,
    prelu: Vec<f32>,
    /// `[Wk − Wd | Wp]`, shape `[F1, 2A]`.
    fc1_kp: Dense,
    /// `Wq + Wd`, shape `[F1, A]`.
    fc1_q: Dense,
    fc1_b: Vec<f32>,
    fc2: Dense,
    fc2_b: Vec<f32>,
    fc3_w: Vec<f32>,
    fc3_b: f32,
    /// `fc2_b` and `fc3_w` zero-padded to whole vectors (fused epilogue).
    fc2_b_pad: Vec<f32>,
    fc3_w_pad: Vec<f32>,
    // bilinear form: `att.w [A, E]`
    bil: Dense,
    tmp_kp: Vec<f32>,
    tmp_q: Vec<f32>,
}

/// Per-chunk attention gradients (full tensors, as named in docs/MODEL.md#tensors).
#[derive(Clone, Debug, Default)]
pub(crate) struct AttGrads {
    pub q_w: Vec<f32>,
    pub q_b: Vec<f32>,
    pub prelu: Vec<f32>,
    pub fc1_w: Vec<f32>,
    pub fc1_b: Vec<f32>,
    pub fc2_w: Vec<f32>,
    pub fc2_b: Vec<f32>,
    pub fc3_w: Vec<f32>,
    pub fc3_b: Vec<f32>,
    pub bil_w: Vec<f32>,
}

impl AttGrads {
    fn new(form: AttForm, a: usize, e: usize) -> Self {
        match form {
            AttForm::Mlp => Self {
                q_w: vec![0.0; a * e],
                q_b: vec![0.0; a],
                prelu: vec![0.0; a],
                fc1_w: vec![0.0; F1 * 4 * a],
                fc1_b: vec![0.0; F1],
                fc2_w: vec![0.0; F2 * F1],
                fc2_b: vec![0.0; F2],
                fc3_w: vec![0.0; F2],
                fc3_b: vec![0.0; 1],
                bil_w: Vec::new(),
            },
            AttForm::Bilinear => Self { bil_w: vec![0.0; a * e], ..Default::default() },
        }
    }

    /// Tensor names of [`AttGrads::parts`], in the same order (the form
    /// not in use has empty gradients and no tensors).
    pub const NAMES: [&'static str; 10] = [
        "att.q.w",
        "att.q.b",
        "att.q.prelu",
        "att.fc1.w",
        "att.fc1.b",
        "att.fc2.w",
        "att.fc2.b",
        "att.fc3.w",
        "att.fc3.b",
        "att.w",
    ];

    /// The gradients in [`AttGrads::NAMES`] order (an array: no allocation).
    pub fn parts(&self) -> [&[f32]; 10] {
        [
            &self.q_w,
            &self.q_b,
            &self.prelu,
            &self.fc1_w,
            &self.fc1_b,
            &self.fc2_w,
            &self.fc2_b,
            &self.fc3_w,
            &self.fc3_b,
            &self.bil_w,
        ]
    }
}

impl AttPacked {
    pub fn new(form: AttForm, a: usize, e: usize) -> Self {
        Self {
            form,
            a,
            e,
            q: Dense::new(a, e),
            q_b: vec![0.0; a],
            prelu: vec![0.0; a],
            fc1_kp: Dense::new(F1, 2 * a),
            fc1_q: Dense::new(F1, a),
            fc1_b: vec![0.0; F1],
            fc2: Dense::new(F2, F1),
            fc2_b: vec![0.0; F2],
            fc3_w: vec![0.0; F2],
            fc3_b: 0.0,
            fc2_b_pad: vec![0.0; pad_lanes(F2)],
            fc3_w_pad: vec![0.0; pad_lanes(F2)],
            bil: Dense::new(a, e),
            tmp_kp: vec![0.0; F1 * 2 * a],
            tmp_q: vec![0.0; F1 * a],
        }
    }

    /// Repacks from the parameter store (no allocation).
    pub fn set(&mut self, p: &ParamStore<f32>) {
        let a = self.a;
        match self.form {
            AttForm::Mlp => {
                self.q.set(p.get("att.q.w"));
                self.q_b.copy_from_slice(p.get("att.q.b"));
                self.prelu.copy_from_slice(p.get("att.q.prelu"));
                let (kp, q) = (&mut self.tmp_kp, &mut self.tmp_q);
                split_first_layer(p.get("att.fc1.w"), a, |o, j, k_minus_d, wp, q_plus_d| {
                    kp[o * 2 * a + j] = k_minus_d;
                    kp[o * 2 * a + a + j] = wp;
                    q[o * a + j] = q_plus_d;
                });
                self.fc1_kp.set(&self.tmp_kp);
                self.fc1_q.set(&self.tmp_q);
                self.fc1_b.copy_from_slice(p.get("att.fc1.b"));
                self.fc2.set(p.get("att.fc2.w"));
                self.fc2_b.copy_from_slice(p.get("att.fc2.b"));
                self.fc3_w.copy_from_slice(p.get("att.fc3.w"));
                self.fc3_b = p.get("att.fc3.b")[0];
                self.fc2_b_pad[..F2].copy_from_slice(&self.fc2_b);
                self.fc3_w_pad[..F2].copy_from_slice(&self.fc3_w);
            }
            AttForm::Bilinear => self.bil.set(p.get("att.w")),
        }
    }
}

/// Cache of one chunk of `bc` samples with `t` steps, and the scratch its
/// forward and backward borrow from their thread ([`AttScratch`]).
///
/// The per-step rows (`x1`, `y1`, `y2` and their gradients) are compact:
/// sample `s`'s valid steps are rows `off[s]..off[s + 1]`, so padded steps
/// cost neither time nor memory and the chunk's products run over all its
/// valid rows at once.
#[derive(Clone, Debug, Default)]
pub(crate) struct AttChunk {
    bc: usize,
    t: usize,
    /// First compact row of each sample, `[bc + 1]` (`off[bc] = n`).
    off: Vec<usize>,
    /// Sample of each compact row `[n]`.
    sample: Vec<usize>,
    /// Query pre-activation `[bc, A]` (mlp) or `att.w·e_a` `[bc, A]` (bilinear).
    q_pre: Vec<f32>,
    /// Query after PReLU `[bc, A]`.
    q: Vec<f32>,
    /// Per-sample constant of the first layer `[bc, F1]`.
    cb: Vec<f32>,
    y1: Vec<f32>,
    y2: Vec<f32>,
    /// Attention weights `[bc, t]`.
    pub weights: Vec<f32>,
    /// The thread's scratch while the chunk runs (see
    /// [`PerThread`](crate::fast::per_thread::PerThread)); empty otherwise.
    pub scr: AttScratch,
    pub grads: AttGrads,
}

/// What a chunk's forward or backward writes and reads back within the call:
/// kept per thread, not per chunk.
#[derive(Clone, Debug, Default)]
pub(crate) struct AttScratch {
    /// `[k_t | q ∘ k_t]` rows `[n, 2A]`: built by the forward for the first
    /// layer and again by the backward for its weight gradient (a copy and
    /// a product per value, cheaper than keeping the rows until then).
    x1: Vec<f32>,
    /// Lane-wise partial scores of the rows `[n]`.
    score_acc: Vec<V>,
    ds: Vec<f32>,
    g2: Vec<f32>,
    g1: Vec<f32>,
    dx1: Vec<f32>,
    gsum: Vec<f32>,
    dq: Vec<f32>,
    tmp_p: Vec<f32>,
    tmp_q: Vec<f32>,
    tmp_r: Vec<f32>,
}

/// `x1 = [k_t | q_s ∘ k_t]` of every compact row of a chunk (`off` as
/// [`AttChunk`]'s, `q [bc, A]`, `keys [bc, t, A]`).
fn fill_x1(x1: &mut [f32], keys: &[f32], q: &[f32], off: &[usize], t: usize, a: usize) {
    for (s, w) in off.windows(2).enumerate() {
        let q = &q[s * a..(s + 1) * a];
        for (tt, rc) in (w[0]..w[1]).enumerate() {
            let x = &mut x1[rc * 2 * a..(rc + 1) * 2 * a];
            let r = s * t + tt;
            let k = &keys[r * a..(r + 1) * a];
            x[..a].copy_from_slice(k);
            for j in 0..a {
                x[a + j] = q[j] * k[j];
            }
        }
    }
}

impl Scratch<AttScratch> for AttChunk {
    fn scratch(&mut self) -> &mut AttScratch {
        &mut self.scr
    }
}

impl AttScratch {
    /// Sizes the buffers for `rows` rows (the chunk's `bc · t`, whatever
    /// the lengths) of `bc` samples (grows only).
    pub(crate) fn fit(&mut self, a: usize, bc: usize, rows: usize) {
        for (v, n) in [
            (&mut self.x1, rows * 2 * a),
            (&mut self.ds, rows),
            (&mut self.g2, rows * F2),
            (&mut self.g1, rows * F1),
            (&mut self.dx1, rows * 2 * a),
            (&mut self.gsum, bc * F1),
            (&mut self.dq, bc * a),
            (&mut self.tmp_p, F1 * a),
            (&mut self.tmp_q, F1 * a),
            (&mut self.tmp_r, F1 * a),
        ] {
            grow(v, n);
        }
        if self.score_acc.len() < rows {
            self.score_acc.resize(rows, V::ZERO);
        }
    }
}

impl AttChunk {
    /// Sizes the buffers for `bc` samples of `t` steps (grows only).
    pub fn prepare(&mut self, pk: &AttPacked, bc: usize, t: usize) {
        let (a, rows) = (pk.a, bc * t);
        self.bc = bc;
        self.t = t;
        for (v, n) in [
            (&mut self.q_pre, bc * a),
            (&mut self.q, bc * a),
            (&mut self.cb, bc * F1),
            (&mut self.y1, rows * F1),
            (&mut self.y2, rows * F2),
            (&mut self.weights, rows),
        ] {
            grow(v, n);
        }
        grow(&mut self.off, bc + 1);
        grow(&mut self.sample, rows);
        if self.grads.fc3_b.is_empty() && self.grads.bil_w.is_empty() {
            self.grads = AttGrads::new(pk.form, a, pk.e);
        }
    }

    /// Fills `off` and `sample` from the lengths; returns the number of
    /// compact rows.
    fn index_rows(&mut self, lengths: &[usize]) -> usize {
        let mut n = 0;
        for s in 0..self.bc {
            self.off[s] = n;
            let len = lengths[s].min(self.t);
            self.sample[n..n + len].fill(s);
            n += len;
        }
        self.off[self.bc] = n;
        n
    }

    /// Scores and softmax weights for `bc` samples: `keys [bc, t, A]`,
    /// `e_a [bc, E]`, `lengths [bc]`. Weights at padded steps are zero.
    pub fn forward(&mut self, pk: &AttPacked, keys: &[f32], e_a: &[f32], lengths: &[usize]) {
        let (a, bc, t) = (pk.a, self.bc, self.t);
        let n = self.index_rows(lengths);
        match pk.form {
            AttForm::Mlp => {
                pk.q.forward(bc, e_a, pk.e, &pk.q_b, &mut self.q_pre, a);
                for (qv, (&z, &s)) in
                    self.q[..bc * a].iter_mut().zip(self.q_pre[..bc * a].iter().zip(pk.prelu.iter().cycle()))
                {
                    *qv = if z > 0.0 { z } else { s * z };
                }
                pk.fc1_q.forward(bc, &self.q, a, &pk.fc1_b, &mut self.cb, F1);
                // Only the valid steps are computed, in compact rows.
                let (fc1, fc2) = (pk.fc1_kp.packed_t(), pk.fc2.packed_t());
                self.scr.fit(a, bc, bc * t);
                fill_x1(&mut self.scr.x1, keys, &self.q, &self.off[..=bc], t, a);
                // y1 = σ(x1·[Wk − Wd | Wp]ᵀ + cb_s), each row's sample
                // constant as the bias.
                let (cb, y1, rs) = (&self.cb, &mut self.y1, &self.sample);
                let mut epi1 = |i: usize, v: usize, acc: V| {
                    store(y1, i * F1 + v * LANES, sigmoid_v(acc + load(cb, rs[i] * F1 + v * LANES)));
                };
                gemm_ep::<4, 3, _>(n, 2 * a, fc1.nvec(), &self.scr.x1, 2 * a, 1, fc1.data(), fc1.ld(), &mut epi1);
                // y2 = σ(y1·W2ᵀ + b2) and the score y2·w3 + b3, summed
                // lane-wise as the vectors of a row arrive (in order).
                let (y2, score) = (&mut self.y2, &mut self.scr.score_acc[..n]);
                score.fill(V::ZERO);
                let (b2, w3) = (&pk.fc2_b_pad, &pk.fc3_w_pad);
                let mut epi2 = |i: usize, v: usize, acc: V| {
                    let y = sigmoid_v(acc + load(b2, v * LANES));
                    store_n(y2, i * F2 + v * LANES, F2 - v * LANES, y);
                    score[i] = y.mul_add(load(w3, v * LANES), score[i]);
                };
                gemm_ep::<4, 3, _>(n, F1, fc2.nvec(), &self.y1, F1, 1, fc2.data(), fc2.ld(), &mut epi2);
                for s in 0..bc {
                    let (o, len) = (self.off[s], self.off[s + 1] - self.off[s]);
                    for (w, sc) in self.weights[s * t..s * t + len].iter_mut().zip(&self.scr.score_acc[o..o + len]) {
                        *w = sc.reduce_add() + pk.fc3_b;
                    }
                }
            }
            AttForm::Bilinear => {
                // v = att.w · e_a, s_t = k_t · v
                pk.bil.forward(bc, e_a, pk.e, &[], &mut self.q_pre, a);
                for s in 0..bc {
                    let v = &self.q_pre[s * a..(s + 1) * a];
                    for tt in 0..lengths[s] {
                        let r = s * t + tt;
                        self.weights[r] = dot(&keys[r * a..(r + 1) * a], v);
                    }
                }
            }
        }
        // Masked, max-subtracted softmax per sample (in place over the scores).
        for s in 0..bc {
            let w = &mut self.weights[s * t..(s + 1) * t];
            let l = lengths[s];
            if l > 0 {
                let m = w[..l].iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut z = 0.0;
                for v in &mut w[..l] {
                    *v = (*v - m).exp();
                    z += *v;
                }
                let inv = 1.0 / z;
                for v in &mut w[..l] {
                    *v *= inv;
                }
            }
            w[l..].fill(0.0);
        }
    }

    /// Backward from `d_weights [bc, t]` (ignored at padded steps):
    /// accumulates `d_keys [bc, t, A]` and `d_e_a [bc, E]`; overwrites the
    /// chunk's parameter gradients (`self.grads`).
    pub fn backward(
        &mut self,
        pk: &AttPacked,
        keys: &[f32],
        e_a: &[f32],
        lengths: &[usize],
        d_weights: &[f32],
        d_keys: &mut [f32],
        d_e_a: &mut [f32],
    ) {
        let (a, bc, t) = (pk.a, self.bc, self.t);
        // The compact rows of the forward (`off`, `sample`).
        let rows = self.off[bc];
        self.scr.fit(a, bc, bc * t);
        debug_assert!((0..bc).all(|s| self.off[s + 1] - self.off[s] == lengths[s].min(t)), "forward's lengths");
        // Softmax backward: ds_t = a_t (da_t − Σ_j a_j da_j), compact.
        for s in 0..bc {
            let (o, l) = (self.off[s], self.off[s + 1] - self.off[s]);
            let w = &self.weights[s * t..s * t + l];
            let da = &d_weights[s * t..s * t + l];
            let inner: f32 = (0..l).map(|j| w[j] * da[j]).sum();
            let ds = &mut self.scr.ds[o..o + l];
            for j in 0..l {
                ds[j] = w[j] * (da[j] - inner);
            }
        }
        match pk.form {
            AttForm::Mlp => {
                let g = &mut self.grads;
                // The sums element by element start from zero; the products
                // below overwrite theirs.
                for v in [&mut g.fc3_w, &mut g.fc3_b, &mut g.prelu] {
                    v.fill(0.0);
                }
                let no = Accumulate::No;
                // fc3, and through the second layer's σ: g2 = d·w ∘ y(1 − y).
                for r in 0..rows {
                    // The rows the products below read, from far caches
                    // (the forward ran over every other chunk since).
                    dien_engine::simd::prefetch(&self.y1, r * F1, F1);
                    let d = self.scr.ds[r];
                    g.fc3_b[0] += d;
                    let y2 = &self.y2[r * F2..(r + 1) * F2];
                    axpy(d, y2, &mut g.fc3_w);
                    let g2 = &mut self.scr.g2[r * F2..(r + 1) * F2];
                    for j in 0..F2 {
                        g2[j] = (d * pk.fc3_w[j]) * (y2[j] * (1.0 - y2[j]));
                    }
                }
                weight_grad(rows, &self.scr.g2, F2, F2, &self.y1, F1, F1, &mut g.fc2_w, &mut g.fc2_b, no);
                // Through the second layer and the first layer's σ, and
                // G_s = Σ_t g1 (rows arrive in order for every column, so
                // each sum adds its rows in order).
                self.scr.gsum[..bc * F1].fill(0.0);
                let (g1, gsum, y1, rs) = (&mut self.scr.g1, &mut self.scr.gsum, &self.y1, &self.sample);
                pk.fc2.backward_input_ep(rows, &self.scr.g2, F2, &mut |i: usize, v: usize, acc: V| {
                    let (o, w) = vec_at(i, v, F1);
                    let y = load_n(y1, o, w);
                    let x = acc * (y * (V::ONE - y));
                    store_n(g1, o, w, x);
                    let so = rs[i] * F1 + v * LANES;
                    let sum = load_n(gsum, so, w) + x;
                    store_n(gsum, so, w, sum);
                });
                let mut store_dx1 = Store { c: &mut self.scr.dx1, ldc: 2 * a, n: 2 * a, acc: no };
                pk.fc1_kp.backward_input_ep(rows, &self.scr.g1, F1, &mut store_dx1);
                // P = Σ g1 kᵀ, Q = Σ g1 (q∘k)ᵀ over rows: weight_grad against the two halves of x1,
                // built again (the forward's went with its thread's scratch).
                fill_x1(&mut self.scr.x1, keys, &self.q, &self.off[..=bc], t, a);
                weight_grad(rows, &self.scr.g1, F1, F1, &self.scr.x1, 2 * a, a, &mut self.scr.tmp_p, &mut g.fc1_b, no);
                weight_grad(rows, &self.scr.g1, F1, F1, &self.scr.x1[a..], 2 * a, a, &mut self.scr.tmp_q, &mut [], no);
                // R = Σ_s G_s q_sᵀ.
                weight_grad(bc, &self.scr.gsum, F1, F1, &self.q, a, a, &mut self.scr.tmp_r, &mut [], no);
                // Map back to W1 = [Wq | Wk | Wd | Wp]: dWq = R, dWk = P, dWd = R − P, dWp = Q.
                for o in 0..F1 {
                    let row = &mut g.fc1_w[o * 4 * a..(o + 1) * 4 * a];
                    for j in 0..a {
                        let (p, q, r) =
                            (self.scr.tmp_p[o * a + j], self.scr.tmp_q[o * a + j], self.scr.tmp_r[o * a + j]);
                        row[j] = r;
                        row[a + j] = p;
                        row[2 * a + j] = r - p;
                        row[3 * a + j] = q;
                    }
                }
                // dq = (Wq + Wd)ᵀ G + Σ_t k_t ∘ dx1[t, A..]; dk_t += dx1[t, ..A] + q ∘ dx1[t, A..].
                pk.fc1_q.backward_input(bc, &self.scr.gsum, F1, &mut self.scr.dq, a, Accumulate::No);
                for s in 0..bc {
                    let q = &self.q[s * a..(s + 1) * a];
                    let dq = &mut self.scr.dq[s * a..(s + 1) * a];
                    for (tt, rc) in (self.off[s]..self.off[s + 1]).enumerate() {
                        let r = s * t + tt;
                        let dx = &self.scr.dx1[rc * 2 * a..(rc + 1) * 2 * a];
                        let k = &keys[r * a..(r + 1) * a];
                        let dk = &mut d_keys[r * a..(r + 1) * a];
                        for j in 0..a {
                            dk[j] += dx[j] + q[j] * dx[a + j];
                            dq[j] += k[j] * dx[a + j];
                        }
                    }
                }
                // PReLU and the query layer.
                for s in 0..bc {
                    for j in 0..a {
                        let i = s * a + j;
                        let z = self.q_pre[i];
                        if z > 0.0 {
                            // dq passes through unchanged.
                        } else {
                            g.prelu[j] += self.scr.dq[i] * z;
                            self.scr.dq[i] *= pk.prelu[j];
                        }
                    }
                }
                weight_grad(bc, &self.scr.dq, a, a, e_a, pk.e, pk.e, &mut g.q_w, &mut g.q_b, no);
                pk.q.backward_input(bc, &self.scr.dq, a, d_e_a, pk.e, Accumulate::Yes);
            }
            AttForm::Bilinear => {
                // s_t = k_t·v, v = W e_a: dk_t += ds_t v; dv = Σ_t ds_t k_t.
                for s in 0..bc {
                    let v = &self.q_pre[s * a..(s + 1) * a];
                    let dv = &mut self.scr.dq[s * a..(s + 1) * a];
                    dv.fill(0.0);
                    for (tt, rc) in (self.off[s]..self.off[s + 1]).enumerate() {
                        let r = s * t + tt;
                        let d = self.scr.ds[rc];
                        axpy(d, v, &mut d_keys[r * a..(r + 1) * a]);
                        axpy(d, &keys[r * a..(r + 1) * a], dv);
                    }
                }
                weight_grad(bc, &self.scr.dq, a, a, e_a, pk.e, pk.e, &mut self.grads.bil_w, &mut [], Accumulate::No);
                pk.bil.backward_input(bc, &self.scr.dq, a, d_e_a, pk.e, Accumulate::Yes);
            }
        }
    }
}
