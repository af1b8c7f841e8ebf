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

/// Scratch of one chunk.
#[derive(Clone, Debug, Default)]
pub(crate) struct AuxChunk {
    bc: usize,
    t: usize,
    ah: Vec<f32>,
    y1p: Vec<f32>,
    y1n: Vec<f32>,
    y2p: Vec<f32>,
    y2n: Vec<f32>,
    gp: Vec<f32>,
    gn: Vec<f32>,
    g2p: Vec<f32>,
    g2n: Vec<f32>,
    g1p: Vec<f32>,
    g1n: Vec<f32>,
    pub grads: AuxGrads,
}

impl AuxChunk {
    pub fn prepare(&mut self, pk: &AuxPacked, bc: usize, t: usize) {
        self.bc = bc;
        self.t = t;
        let rows = bc * t;
        if pk.form == AuxForm::Mlp {
            for (v, n) in [
                (&mut self.ah, rows * F1),
                (&mut self.y1p, rows * F1),
                (&mut self.y1n, rows * F1),
                (&mut self.y2p, rows * F2),
                (&mut self.y2n, rows * F2),
                (&mut self.g2p, rows * F2),
                (&mut self.g2n, rows * F2),
                (&mut self.g1p, rows * F1),
                (&mut self.g1n, rows * F1),
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
        grow(&mut self.gp, rows);
        grow(&mut self.gn, rows);
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
                pk.fc1_h.forward(m, h, hw, &pk.fc1_b, &mut self.ah, F1);
                self.y1p[..m * F1].copy_from_slice(&self.ah[..m * F1]);
                self.y1n[..m * F1].copy_from_slice(&self.ah[..m * F1]);
                pk.fc1_e.forward_acc(m, &pos[e..], e, &mut self.y1p, F1, Accumulate::Yes);
                pk.fc1_e.forward_acc(m, &neg[e..], e, &mut self.y1n, F1, Accumulate::Yes);
                sigmoid_inplace(&mut self.y1p[..m * F1]);
                sigmoid_inplace(&mut self.y1n[..m * F1]);
                pk.fc2.forward(m, &self.y1p, F1, &pk.fc2_b, &mut self.y2p, F2);
                pk.fc2.forward(m, &self.y1n, F1, &pk.fc2_b, &mut self.y2n, F2);
                sigmoid_inplace(&mut self.y2p[..m * F2]);
                sigmoid_inplace(&mut self.y2n[..m * F2]);
                for r in 0..m {
                    if valid(r) {
                        let zp = dot(&self.y2p[r * F2..(r + 1) * F2], &pk.fc3_w) + pk.fc3_b;
                        let zn = dot(&self.y2n[r * F2..(r + 1) * F2], &pk.fc3_w) + pk.fc3_b;
                        loss += (softplus(-zp) + softplus(zn)) as f64;
                        // d/dz softplus(−z) = −σ(−z); d/dz softplus(z) = σ(z).
                        self.gp[r] = -sigmoid(-zp);
                        self.gn[r] = sigmoid(zn);
                    } else {
                        self.gp[r] = 0.0;
                        self.gn[r] = 0.0;
                    }
                }
                let Some(c) = scale else { return loss };
                let g = &mut self.grads;
                for r in 0..m {
                    let (dp, dn) = (c * self.gp[r], c * self.gn[r]);
                    g.fc3_b[0] += dp + dn;
                    axpy(dp, &self.y2p[r * F2..(r + 1) * F2], &mut g.fc3_w);
                    axpy(dn, &self.y2n[r * F2..(r + 1) * F2], &mut g.fc3_w);
                    for j in 0..F2 {
                        self.g2p[r * F2 + j] = dp * pk.fc3_w[j];
                        self.g2n[r * F2 + j] = dn * pk.fc3_w[j];
                    }
                }
                sigmoid_backward_inplace(&mut self.g2p[..m * F2], &self.y2p[..m * F2]);
                sigmoid_backward_inplace(&mut self.g2n[..m * F2], &self.y2n[..m * F2]);
                weight_grad(m, &self.g2p, F2, F2, &self.y1p, F1, F1, &mut g.fc2_w, &mut g.fc2_b);
                weight_grad(m, &self.g2n, F2, F2, &self.y1n, F1, F1, &mut g.fc2_w, &mut g.fc2_b);
                pk.fc2.backward_input(m, &self.g2p, F2, &mut self.g1p, F1, Accumulate::No);
                pk.fc2.backward_input(m, &self.g2n, F2, &mut self.g1n, F1, Accumulate::No);
                sigmoid_backward_inplace(&mut self.g1p[..m * F1], &self.y1p[..m * F1]);
                sigmoid_backward_inplace(&mut self.g1n[..m * F1], &self.y1n[..m * F1]);
                // Embedding side: separate products for the two terms.
                pk.fc1_e.backward_input(m, &self.g1p, F1, &mut d_pos[e..], e, Accumulate::Yes);
                pk.fc1_e.backward_input(m, &self.g1n, F1, &mut d_neg[e..], e, Accumulate::Yes);
                g.d_we.fill(0.0);
                weight_grad(m, &self.g1p, F1, F1, &pos[e..], e, e, &mut g.d_we, &mut []);
                weight_grad(m, &self.g1n, F1, F1, &neg[e..], e, e, &mut g.d_we, &mut []);
                // State side: the shared block gets the sum of both terms.
                for (x, &y) in self.g1p[..m * F1].iter_mut().zip(&self.g1n[..m * F1]) {
                    *x += y;
                }
                pk.fc1_h.backward_input(m, &self.g1p, F1, d_h, hw, Accumulate::Yes);
                g.d_wh.fill(0.0);
                weight_grad(m, &self.g1p, F1, F1, h, hw, hw, &mut g.d_wh, &mut g.fc1_b);
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
}
