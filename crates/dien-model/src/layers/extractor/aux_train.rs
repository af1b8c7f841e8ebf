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
use crate::fast::dense::{Dense, sigmoid_backward_inplace, sigmoid_inplace, softplus, weight_grad};
use crate::fast::grow;
use crate::params::ParamStore;
use dien_engine::simd::{axpy, dot, sigmoid};

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
            fc1_b: vec![0.0; F1],
            fc2: Dense::new(F2, F1),
            fc2_b: vec![0.0; F2],
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
        self.fc1_b.copy_from_slice(p.get("aux.fc1.b"));
        self.fc2.set(p.get("aux.fc2.w"));
        self.fc2_b.copy_from_slice(p.get("aux.fc2.b"));
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

/// Scratch of one chunk. The MLP head runs forward and backward one sample
/// at a time, over that sample's valid rows only: its activations (at most
/// `2·T` rows of 100 and 50 values, and their gradients) stay in a core's
/// L2 cache, padded steps cost nothing, and since no padded row enters any
/// product, padding changes no bit. The `2·T`-row buffers hold the
/// sample's positive rows first, then its negative rows, so the products
/// shared by both terms run once over both.
#[derive(Clone, Debug, Default)]
pub(crate) struct AuxChunk {
    bc: usize,
    t: usize,
    y1: Vec<f32>,
    y2: Vec<f32>,
    g: Vec<f32>,
    g2: Vec<f32>,
    g1: Vec<f32>,
    pub grads: AuxGrads,
}

impl AuxChunk {
    pub fn prepare(&mut self, pk: &AuxPacked, bc: usize, t: usize) {
        self.bc = bc;
        self.t = t;
        if pk.form == AuxForm::Mlp {
            for (v, n) in [
                (&mut self.y1, 2 * t * F1),
                (&mut self.y2, 2 * t * F2),
                (&mut self.g2, 2 * t * F2),
                (&mut self.g1, 2 * t * F1),
                (&mut self.g, 2 * t),
            ] {
                grow(v, n);
            }
            if self.grads.fc1_w.is_empty() {
                let (h, e) = (pk.h, pk.e);
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
    /// With `scale = Some(c)` also backpropagates `c ×` that sum: accumulates
    /// `d_h [bc, t, H]`, `d_pos`/`d_neg [bc, t, E]` (gradients of the history
    /// and negative embeddings; row `t + 1` receives the term of step `t`)
    /// and `self.grads` (zeroed by the caller).
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
                if scale.is_some() {
                    self.grads.d_wh.fill(0.0);
                    self.grads.d_we.fill(0.0);
                }
                for (s, &len) in lengths.iter().enumerate().take(bc) {
                    // Rows s·t + i with i + 1 < L: a term each.
                    let mb = len.min(t).saturating_sub(1);
                    if mb > 0 {
                        loss += self.mlp_block(pk, s * t, mb, h, pos, neg, scale, d_h, d_pos, d_neg);
                    }
                }
                if scale.is_some() {
                    let g = &mut self.grads;
                    for o in 0..F1 {
                        let row = &mut g.fc1_w[o * (hw + e)..(o + 1) * (hw + e)];
                        for j in 0..hw {
                            row[j] += g.d_wh[o * hw + j];
                        }
                        for j in 0..e {
                            row[hw + j] += g.d_we[o * e + j];
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

    /// The MLP head on rows `r0..r0 + mb` of the chunk (all valid): their
    /// loss terms, and with `scale` their backward (gradients added).
    #[allow(clippy::too_many_arguments)]
    fn mlp_block(
        &mut self,
        pk: &AuxPacked,
        r0: usize,
        mb: usize,
        h: &[f32],
        pos: &[f32],
        neg: &[f32],
        scale: Option<f32>,
        d_h: &mut [f32],
        d_pos: &mut [f32],
        d_neg: &mut [f32],
    ) -> f64 {
        let (hw, e) = (pk.h, pk.e);
        // Inputs of the block: states of rows r0.., embeddings of rows r0 + 1...
        let hs = &h[r0 * hw..];
        let (ps, ns) = (&pos[(r0 + 1) * e..], &neg[(r0 + 1) * e..]);
        let (n1, n2) = (mb * F1, mb * F2);
        // Layer 1: the state block W_h·h + b is shared by both terms.
        let (y1p, y1n) = self.y1.split_at_mut(n1);
        pk.fc1_h.forward(mb, hs, hw, &pk.fc1_b, y1p, F1);
        y1n[..n1].copy_from_slice(y1p);
        pk.fc1_e.forward_acc(mb, ps, e, y1p, F1, Accumulate::Yes);
        pk.fc1_e.forward_acc(mb, ns, e, y1n, F1, Accumulate::Yes);
        let y1 = &mut self.y1[..2 * n1];
        sigmoid_inplace(y1);
        pk.fc2.forward(2 * mb, y1, F1, &pk.fc2_b, &mut self.y2, F2);
        let y2 = &mut self.y2[..2 * n2];
        sigmoid_inplace(y2);
        let mut loss = 0.0f64;
        let (gp, gn) = self.g.split_at_mut(mb);
        for i in 0..mb {
            let zp = dot(&y2[i * F2..(i + 1) * F2], &pk.fc3_w) + pk.fc3_b;
            let zn = dot(&y2[n2 + i * F2..n2 + (i + 1) * F2], &pk.fc3_w) + pk.fc3_b;
            loss += (softplus(-zp) + softplus(zn)) as f64;
            // d/dz softplus(−z) = −σ(−z); d/dz softplus(z) = σ(z).
            gp[i] = -sigmoid(-zp);
            gn[i] = sigmoid(zn);
        }
        let Some(c) = scale else { return loss };
        let g = &mut self.grads;
        // Output layer, rows of both terms in order (positives, then negatives).
        let g2 = &mut self.g2[..2 * n2];
        for (k, &gk) in self.g[..2 * mb].iter().enumerate() {
            let d = c * gk;
            g.fc3_b[0] += d;
            let y2r = &y2[k * F2..(k + 1) * F2];
            axpy(d, y2r, &mut g.fc3_w);
            for (o, &w) in g2[k * F2..(k + 1) * F2].iter_mut().zip(&pk.fc3_w) {
                *o = d * w;
            }
        }
        sigmoid_backward_inplace(g2, y2);
        weight_grad(2 * mb, g2, F2, F2, y1, F1, F1, &mut g.fc2_w, &mut g.fc2_b);
        let g1 = &mut self.g1[..2 * n1];
        pk.fc2.backward_input(2 * mb, g2, F2, g1, F1, Accumulate::No);
        sigmoid_backward_inplace(g1, y1);
        let (g1p, g1n) = g1.split_at_mut(n1);
        // Embedding side: separate products for the two terms.
        pk.fc1_e.backward_input(mb, g1p, F1, &mut d_pos[(r0 + 1) * e..], e, Accumulate::Yes);
        pk.fc1_e.backward_input(mb, g1n, F1, &mut d_neg[(r0 + 1) * e..], e, Accumulate::Yes);
        weight_grad(mb, g1p, F1, F1, ps, e, e, &mut g.d_we, &mut []);
        weight_grad(mb, g1n, F1, F1, ns, e, e, &mut g.d_we, &mut []);
        // State side: the shared block gets the sum of both terms.
        for (x, &y) in g1p.iter_mut().zip(g1n.iter()) {
            *x += y;
        }
        pk.fc1_h.backward_input(mb, g1p, F1, &mut d_h[r0 * hw..], hw, Accumulate::Yes);
        weight_grad(mb, g1p, F1, F1, hs, hw, hw, &mut g.d_wh, &mut g.fc1_b);
        loss
    }
}
