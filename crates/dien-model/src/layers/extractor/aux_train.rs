//! Auxiliary loss (docs/MODEL.md#auxiliary-loss) over chunks of samples, forward and backward
//! fused (the loss is a leaf, so its gradient is known as soon as it is
//! computed).
//!
//! `mlp` head with the algebra of docs/MODEL.md#cost: the first layer of
//! `g([h_t; e])` splits into `W_h·h_t + W_e·e + b`, and the `W_h·h_t + b`
//! block is computed once for the positive and the negative term.

// Index loops mirror the equations' subscripts.
#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

use dien_engine::gemm::tile::Accumulate;

use crate::config::AuxForm;
use crate::fast::dense::{Dense, softplus, weight_grad};
use crate::fast::per_thread::Scratch;
use crate::fast::{grow, vec_at};
use crate::params::ParamStore;
use dien_engine::simd::{LANES, V, axpy, dot, load, load_n, pad_lanes, sigmoid, store_n};
use dien_engine::vecmath::simd::{sigmoid_v, softplus_v};

/// Hidden widths of the auxiliary MLP (docs/MODEL.md#auxiliary-loss).
pub(crate) const F1: usize = 100;
pub(crate) const F2: usize = 50;

/// Packed auxiliary-head weights.
#[derive(Clone, Debug)]
pub(crate) struct AuxPacked {
    pub form: AuxForm,
    pub h: usize,
    pub e: usize,
    fc1_h: Dense,
    fc1_e: Dense,
    /// Biases zero-padded to whole vectors, read by the products' epilogues.
    fc1_b: Vec<f32>,
    fc2: Dense,
    fc2_b: Vec<f32>,
    fc3_w: Vec<f32>,
    fc3_b: f32,
    tmp_h: Vec<f32>,
    tmp_e: Vec<f32>,
}

impl AuxPacked {
    pub fn new(form: AuxForm, h: usize, e: usize) -> Self {
        Self {
            form,
            h,
            e,
            fc1_h: Dense::new(F1, h),
            fc1_e: Dense::new(F1, e),
            fc1_b: vec![0.0; pad_lanes(F1)],
            fc2: Dense::new(F2, F1),
            fc2_b: vec![0.0; pad_lanes(F2)],
            fc3_w: vec![0.0; F2],
            fc3_b: 0.0,
            tmp_h: vec![0.0; F1 * h],
            tmp_e: vec![0.0; F1 * e],
        }
    }

    pub fn set(&mut self, p: &ParamStore<f32>) {
        if self.form == AuxForm::Dot {
            return;
        }
        let (h, e) = (self.h, self.e);
        let w1 = p.get("aux.fc1.w");
        for o in 0..F1 {
            self.tmp_h[o * h..(o + 1) * h].copy_from_slice(&w1[o * (h + e)..o * (h + e) + h]);
            self.tmp_e[o * e..(o + 1) * e].copy_from_slice(&w1[o * (h + e) + h..(o + 1) * (h + e)]);
        }
        self.fc1_h.set(&self.tmp_h);
        self.fc1_e.set(&self.tmp_e);
        self.fc1_b[..F1].copy_from_slice(p.get("aux.fc1.b"));
        self.fc2.set(p.get("aux.fc2.w"));
        self.fc2_b[..F2].copy_from_slice(p.get("aux.fc2.b"));
        self.fc3_w.copy_from_slice(p.get("aux.fc3.w"));
        self.fc3_b = p.get("aux.fc3.b")[0];
    }
}

/// Gradients of the auxiliary head (tensors of docs/MODEL.md#tensors).
#[derive(Clone, Debug, Default)]
pub(crate) struct AuxGrads {
    pub fc1_w: Vec<f32>,
    pub fc1_b: Vec<f32>,
    pub fc2_w: Vec<f32>,
    pub fc2_b: Vec<f32>,
    pub fc3_w: Vec<f32>,
    pub fc3_b: Vec<f32>,
    // The split first-layer gradients before they are interleaved.
    d_wh: Vec<f32>,
    d_we: Vec<f32>,
}

impl AuxGrads {
    /// Tensor names of [`AuxGrads::parts`], in the same order.
    pub const NAMES: [&'static str; 6] = ["aux.fc1.w", "aux.fc1.b", "aux.fc2.w", "aux.fc2.b", "aux.fc3.w", "aux.fc3.b"];

    /// The gradients in [`AuxGrads::NAMES`] order (an array: no allocation).
    pub fn parts(&self) -> [&[f32]; 6] {
        [&self.fc1_w, &self.fc1_b, &self.fc2_w, &self.fc2_b, &self.fc3_w, &self.fc3_b]
    }

    pub fn zero(&mut self) {
        for v in [&mut self.fc1_w, &mut self.fc1_b, &mut self.fc2_w, &mut self.fc2_b, &mut self.fc3_w, &mut self.fc3_b]
        {
            v.fill(0.0);
        }
    }
}

/// Rows of one block of the MLP head: the valid rows of consecutive
/// samples are packed until a block holds about this many (a sample longer
/// than that is a block alone). Short histories then still make products
/// of many rows, and the weights and their gradients are read once per
/// block rather than once per sample; the activations of a block (twice
/// these rows of 100 and 50 values, and their gradients) stay in L2.
pub(crate) const AUX_BLOCK: usize = 128;

/// Scratch of one chunk. The MLP head runs forward and backward one block
/// of rows at a time ([`AUX_BLOCK`]), over valid rows only: padded steps
/// cost nothing, and since no padded row enters any product, padding
/// changes no bit. Inputs are packed into the block's buffers; the
/// activation buffers hold the block's positive rows first, then its
/// negative rows, so the products shared by both terms run once over both.
#[derive(Clone, Debug, Default)]
pub(crate) struct AuxChunk {
    bc: usize,
    t: usize,
    /// The thread's scratch while the chunk runs (see
    /// [`PerThread`](crate::fast::per_thread::PerThread)); empty otherwise.
    pub scr: AuxScratch,
    /// The block's samples: (first row in the chunk, terms).
    segs: Vec<(usize, usize)>,
    pub grads: AuxGrads,
}

/// A block's packed inputs and activations: kept per thread, not per chunk.
#[derive(Clone, Debug, Default)]
pub(crate) struct AuxScratch {
    pack: Packing,
    acts: Acts,
}

impl Scratch<AuxScratch> for AuxChunk {
    fn scratch(&mut self) -> &mut AuxScratch {
        &mut self.scr
    }
}

impl AuxScratch {
    /// Sizes the buffers for blocks of chunks of `t` steps (grows only).
    pub(crate) fn fit(&mut self, pk: &AuxPacked, t: usize) {
        let m = AUX_BLOCK.max(t);
        let (h, e) = (pk.h, pk.e);
        let (a, x) = (&mut self.acts, &mut self.pack);
        for (v, n) in [
            (&mut x.xh, m * h),
            (&mut x.xp, m * e),
            (&mut x.xn, m * e),
            (&mut x.dh, m * h),
            (&mut x.dp, m * e),
            (&mut x.dn, m * e),
            (&mut a.y1, 2 * m * F1),
            (&mut a.y2, 2 * m * F2),
            (&mut a.g2, 2 * m * F2),
            (&mut a.g1, 2 * m * F1),
            (&mut a.g, 2 * m),
        ] {
            grow(v, n);
        }
    }
}

/// One block's packed inputs and their gradients (blocks of several
/// samples; a block of one sample reads and writes the chunk's rows in
/// place).
#[derive(Clone, Debug, Default)]
struct Packing {
    /// States `[m, H]`, positive and negative embeddings `[m, E]`.
    xh: Vec<f32>,
    xp: Vec<f32>,
    xn: Vec<f32>,
    /// Their gradients, same shapes.
    dh: Vec<f32>,
    dp: Vec<f32>,
    dn: Vec<f32>,
}

/// The inputs of one block and where their gradients go.
struct BlockIo<'a> {
    /// States `[m, H]`, positive and negative embeddings `[m, E]`.
    hs: &'a [f32],
    ps: &'a [f32],
    ns: &'a [f32],
    /// Their gradients, same shapes (empty without a backward).
    dh: &'a mut [f32],
    dp: &'a mut [f32],
    dn: &'a mut [f32],
    /// Whether the input gradients overwrite or add to `dh`, `dp`, `dn`.
    d_acc: Accumulate,
}

/// One block's activations and their gradients.
#[derive(Clone, Debug, Default)]
struct Acts {
    y1: Vec<f32>,
    y2: Vec<f32>,
    g: Vec<f32>,
    g2: Vec<f32>,
    g1: Vec<f32>,
}

impl AuxChunk {
    pub fn prepare(&mut self, pk: &AuxPacked, bc: usize, t: usize) {
        self.bc = bc;
        self.t = t;
        if pk.form == AuxForm::Mlp {
            let (h, e) = (pk.h, pk.e);
            self.segs.clear();
            self.segs.reserve(bc);
            if self.grads.fc1_w.is_empty() {
                self.grads = AuxGrads {
                    fc1_w: vec![0.0; F1 * (h + e)],
                    fc1_b: vec![0.0; F1],
                    fc2_w: vec![0.0; F2 * F1],
                    fc2_b: vec![0.0; F2],
                    fc3_w: vec![0.0; F2],
                    fc3_b: vec![0.0; 1],
                    d_wh: vec![0.0; F1 * h],
                    d_we: vec![0.0; F1 * e],
                };
            }
        }
    }

    /// Sum over the chunk of `softplus(−p⁺) + softplus(p⁻)` for `t + 1 < L`.
    /// With `scale = Some(c)` also backpropagates `c ×` that sum: writes
    /// `d_h [bc, t, H]`, `d_pos`/`d_neg [bc, t, E]` (gradients of the history
    /// and negative embeddings; row `t + 1` receives the term of step `t`,
    /// rows without a term get zeros) and overwrites `self.grads` (zeros
    /// when the chunk has no term). Being the first to write these
    /// gradients, the loss spares the step a pass that would clear them.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &mut self,
        pk: &AuxPacked,
        h: &[f32],
        pos: &[f32],
        neg: &[f32],
        lengths: &[usize],
        scale: Option<f32>,
        d_h: &mut [f32],
        d_pos: &mut [f32],
        d_neg: &mut [f32],
    ) -> f64 {
        let (hw, e, bc, t) = (pk.h, pk.e, self.bc, self.t);
        let rows = bc * t;
        if scale.is_some() {
            // Element-by-element sums start from zero; the products of the
            // first block overwrite theirs (or nothing runs: all zero).
            let g = &mut self.grads;
            g.fc3_w.fill(0.0);
            g.fc3_b.fill(0.0);
            if lengths[..bc].iter().all(|&l| l.min(t) < 2) {
                g.zero();
            }
        }
        if scale.is_some() {
            clear_rows_without_terms(pk.form, &lengths[..bc], t, hw, e, d_h, d_pos, d_neg);
        }
        if rows < 2 {
            return 0.0;
        }
        let valid = |r: usize| (r % t) + 1 < lengths[r / t];
        // Pair row r (sample s, step t) with embedding row r + 1; the last row
        // of the chunk is never valid (t = T − 1), so m = rows − 1 rows suffice.
        let m = rows - 1;
        let mut loss = 0.0f64;
        match pk.form {
            AuxForm::Mlp => {
                self.scr.fit(pk, t);
                // Rows s·t + i with i + 1 < L: a term each, packed in blocks.
                // From the lengths alone, so that padding cannot move a
                // block boundary (the buffers hold AUX_BLOCK.max(t) rows).
                let longest = lengths[..bc].iter().map(|&l| l.min(t).saturating_sub(1)).max().unwrap_or(0);
                let cap = AUX_BLOCK.max(longest);
                let (mut rows_in, mut acc) = (0, Accumulate::No);
                self.segs.clear();
                for (s, &len) in lengths.iter().enumerate().take(bc) {
                    let mb = len.min(t).saturating_sub(1);
                    if mb == 0 {
                        continue;
                    }
                    if rows_in + mb > cap {
                        loss += self.block(pk, h, pos, neg, scale, acc, d_h, d_pos, d_neg);
                        (rows_in, acc) = (0, Accumulate::Yes);
                        self.segs.clear();
                    }
                    self.segs.push((s * t, mb));
                    rows_in += mb;
                }
                if rows_in > 0 {
                    loss += self.block(pk, h, pos, neg, scale, acc, d_h, d_pos, d_neg);
                    if scale.is_some() {
                        let g = &mut self.grads;
                        for o in 0..F1 {
                            let row = &mut g.fc1_w[o * (hw + e)..(o + 1) * (hw + e)];
                            row[..hw].copy_from_slice(&g.d_wh[o * hw..(o + 1) * hw]);
                            row[hw..].copy_from_slice(&g.d_we[o * e..(o + 1) * e]);
                        }
                    }
                }
            }
            AuxForm::Dot => {
                for r in 0..m {
                    if !valid(r) {
                        continue;
                    }
                    let hr = &h[r * hw..(r + 1) * hw];
                    let pr = &pos[(r + 1) * e..(r + 2) * e];
                    let nr = &neg[(r + 1) * e..(r + 2) * e];
                    let (zp, zn) = (dot(hr, pr), dot(hr, nr));
                    loss += (softplus(-zp) + softplus(zn)) as f64;
                    if let Some(c) = scale {
                        let (dp, dn) = (-c * sigmoid(-zp), c * sigmoid(zn));
                        let dh = &mut d_h[r * hw..(r + 1) * hw];
                        axpy(dp, pr, dh);
                        axpy(dn, nr, dh);
                        axpy(dp, hr, &mut d_pos[(r + 1) * e..(r + 2) * e]);
                        axpy(dn, hr, &mut d_neg[(r + 1) * e..(r + 2) * e]);
                    }
                }
            }
        }
        loss
    }

    /// The MLP head on the rows of `self.segs` (all valid): packs their
    /// inputs, runs the block, and with `scale` writes the input gradients
    /// back to the chunk's rows; its parameter gradients overwrite or add
    /// to the chunk's (`acc`). Returns the block's loss terms. A block of
    /// one sample has its rows contiguous in the chunk: the products read
    /// them and write their input gradients in place, with the bits of the
    /// packed form.
    fn block(
        &mut self,
        pk: &AuxPacked,
        h: &[f32],
        pos: &[f32],
        neg: &[f32],
        scale: Option<f32>,
        acc: Accumulate,
        d_h: &mut [f32],
        d_pos: &mut [f32],
        d_neg: &mut [f32],
    ) -> f64 {
        let (hw, e) = (pk.h, pk.e);
        let (a, x) = (&mut self.scr.acts, &mut self.scr.pack);
        // State row r pairs with embedding row r + 1.
        if let [(r0, mb)] = self.segs[..] {
            let (sh, se) = (r0 * hw..(r0 + mb) * hw, (r0 + 1) * e..(r0 + 1 + mb) * e);
            let back = scale.is_some();
            let io = BlockIo {
                hs: &h[sh.clone()],
                ps: &pos[se.clone()],
                ns: &neg[se.clone()],
                dh: if back { &mut d_h[sh] } else { &mut [] },
                dp: if back { &mut d_pos[se.clone()] } else { &mut [] },
                dn: if back { &mut d_neg[se] } else { &mut [] },
                d_acc: Accumulate::No,
            };
            return mlp_block(pk, a, &mut self.grads, mb, scale, acc, io);
        }
        let mut m = 0;
        for &(r0, mb) in &self.segs {
            x.xh[m * hw..(m + mb) * hw].copy_from_slice(&h[r0 * hw..(r0 + mb) * hw]);
            x.xp[m * e..(m + mb) * e].copy_from_slice(&pos[(r0 + 1) * e..(r0 + 1 + mb) * e]);
            x.xn[m * e..(m + mb) * e].copy_from_slice(&neg[(r0 + 1) * e..(r0 + 1 + mb) * e]);
            m += mb;
        }
        let io = BlockIo {
            hs: &x.xh[..m * hw],
            ps: &x.xp[..m * e],
            ns: &x.xn[..m * e],
            dh: &mut x.dh,
            dp: &mut x.dp,
            dn: &mut x.dn,
            d_acc: Accumulate::No,
        };
        let loss = mlp_block(pk, a, &mut self.grads, m, scale, acc, io);
        if scale.is_some() {
            let mut i = 0;
            for &(r0, mb) in &self.segs {
                d_h[r0 * hw..(r0 + mb) * hw].copy_from_slice(&x.dh[i * hw..(i + mb) * hw]);
                d_pos[(r0 + 1) * e..(r0 + 1 + mb) * e].copy_from_slice(&x.dp[i * e..(i + mb) * e]);
                d_neg[(r0 + 1) * e..(r0 + 1 + mb) * e].copy_from_slice(&x.dn[i * e..(i + mb) * e]);
                i += mb;
            }
        }
        loss
    }
}

/// Zeros the gradient rows of a chunk that no term of the auxiliary loss
/// writes: the MLP form writes, for a sample of length `L`, the state rows
/// `0 .. L − 1` and the embedding rows `1 .. L` (each once); the dot form
/// adds into its rows, so all of them start from zero.
#[allow(clippy::too_many_arguments)]
fn clear_rows_without_terms(
    form: AuxForm,
    lengths: &[usize],
    t: usize,
    hw: usize,
    e: usize,
    d_h: &mut [f32],
    d_pos: &mut [f32],
    d_neg: &mut [f32],
) {
    if form == AuxForm::Dot || t == 0 {
        for v in [d_h, d_pos, d_neg] {
            v.fill(0.0);
        }
        return;
    }
    for (s, &len) in lengths.iter().enumerate() {
        let terms = len.min(t).saturating_sub(1);
        d_h[(s * t + terms) * hw..(s + 1) * t * hw].fill(0.0);
        for d in [&mut *d_pos, &mut *d_neg] {
            d[s * t * e..(s * t + 1) * e].fill(0.0);
            d[(s * t + 1 + terms) * e..(s + 1) * t * e].fill(0.0);
        }
    }
}

/// The MLP head on the `m` rows of `io` (`hs`, `ps`, `ns`): their loss
/// terms, and with `scale` their backward (input gradients written to or
/// added to `io`'s `dh`, `dp`, `dn` as its `d_acc` says; the products'
/// parameter gradients written to or added to `g` as `acc` says, the output
/// layer's always added).
///
/// Biases, sigmoids and sigmoid gradients run in the products' epilogues,
/// on each vector as it leaves the registers: every value is the one the
/// separate passes (bias, product, then activation) would give, without
/// the passes over memory.
fn mlp_block(
    pk: &AuxPacked,
    a: &mut Acts,
    g: &mut AuxGrads,
    m: usize,
    scale: Option<f32>,
    acc: Accumulate,
    io: BlockIo<'_>,
) -> f64 {
    let (hw, e) = (pk.h, pk.e);
    let (n1, n2) = (m * F1, m * F2);
    let (hs, ps, ns) = (io.hs, io.ps, io.ns);
    // Layer 1: the state block W_h·h + b is shared by both terms; each
    // term adds its embedding block to it, then σ. The negative rows go
    // first: the positive ones overwrite the shared block in place.
    let (y1p, y1n) = a.y1.split_at_mut(n1);
    pk.fc1_h.forward_ep(m, hs, hw, &mut |i: usize, v: usize, acc: V| {
        let (o, w) = vec_at(i, v, F1);
        store_n(y1p, o, w, acc + load(&pk.fc1_b, v * LANES));
    });
    pk.fc1_e.forward_ep(m, ns, e, &mut |i: usize, v: usize, acc: V| {
        let (o, w) = vec_at(i, v, F1);
        store_n(y1n, o, w, sigmoid_v(acc + load_n(y1p, o, w)));
    });
    pk.fc1_e.forward_ep(m, ps, e, &mut |i: usize, v: usize, acc: V| {
        let (o, w) = vec_at(i, v, F1);
        store_n(y1p, o, w, sigmoid_v(acc + load_n(y1p, o, w)));
    });
    let y1 = &a.y1[..2 * n1];
    let y2 = &mut a.y2[..2 * n2];
    pk.fc2.forward_ep(2 * m, y1, F1, &mut |i: usize, v: usize, acc: V| {
        let (o, w) = vec_at(i, v, F2);
        store_n(y2, o, w, sigmoid_v(acc + load(&pk.fc2_b, v * LANES)));
    });
    let y2 = &a.y2[..2 * n2];
    let mut loss = 0.0f64;
    let (gp, gn) = a.g.split_at_mut(m);
    // The logits first, then their losses and gradients a vector of rows
    // at a time (the gradient buffers hold the logits in between).
    for i in 0..m {
        gp[i] = dot(&y2[i * F2..(i + 1) * F2], &pk.fc3_w) + pk.fc3_b;
        gn[i] = dot(&y2[n2 + i * F2..n2 + (i + 1) * F2], &pk.fc3_w) + pk.fc3_b;
    }
    for o in (0..m).step_by(LANES) {
        let w = (m - o).min(LANES);
        let (zp, zn) = (load_n(gp, o, w), load_n(gn, o, w));
        // Summed per row in f64, in row order; lanes past `w` are padding.
        for &l in &(softplus_v(-zp) + softplus_v(zn)).to_array()[..w] {
            loss += l as f64;
        }
        // d/dz softplus(−z) = −σ(−z); d/dz softplus(z) = σ(z).
        store_n(gp, o, w, -sigmoid_v(-zp));
        store_n(gn, o, w, sigmoid_v(zn));
    }
    let Some(c) = scale else { return loss };
    // Output layer, rows of both terms in order (positives, then
    // negatives), and through the second layer's σ: g2 = d·w ∘ y(1 − y).
    let g2 = &mut a.g2[..2 * n2];
    for (k, &gk) in a.g[..2 * m].iter().enumerate() {
        let d = c * gk;
        g.fc3_b[0] += d;
        let y2r = &y2[k * F2..(k + 1) * F2];
        axpy(d, y2r, &mut g.fc3_w);
        for ((o, &w), &y) in g2[k * F2..(k + 1) * F2].iter_mut().zip(&pk.fc3_w).zip(y2r) {
            *o = (d * w) * (y * (1.0 - y));
        }
    }
    weight_grad(2 * m, g2, F2, F2, y1, F1, F1, &mut g.fc2_w, &mut g.fc2_b, acc);
    // Through the second layer and the first layer's σ.
    let g1 = &mut a.g1[..2 * n1];
    pk.fc2.backward_input_ep(2 * m, g2, F2, &mut |i: usize, v: usize, acc: V| {
        let (o, w) = vec_at(i, v, F1);
        let y = load_n(y1, o, w);
        store_n(g1, o, w, acc * (y * (V::ONE - y)));
    });
    let (g1p, g1n) = g1.split_at_mut(n1);
    // Embedding side: separate products for the two terms.
    pk.fc1_e.backward_input(m, g1p, F1, io.dp, e, io.d_acc);
    pk.fc1_e.backward_input(m, g1n, F1, io.dn, e, io.d_acc);
    weight_grad(m, g1p, F1, F1, ps, e, e, &mut g.d_we, &mut [], acc);
    weight_grad(m, g1n, F1, F1, ns, e, e, &mut g.d_we, &mut [], Accumulate::Yes);
    // State side: the shared block gets the sum of both terms.
    for (x, &y) in g1p.iter_mut().zip(g1n.iter()) {
        *x += y;
    }
    pk.fc1_h.backward_input(m, g1p, F1, io.dh, hw, io.d_acc);
    weight_grad(m, g1p, F1, F1, hs, hw, hw, &mut g.d_wh, &mut g.fc1_b, acc);
    loss
}
