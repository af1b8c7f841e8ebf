//! Prediction head (docs/MODEL.md#prediction-head): BatchNorm → fc1 → Dice → fc2 → Dice → fc3,
//! and the target loss. Works on the whole batch (its statistics couple the
//! samples). The products and the element-wise layers run on all threads,
//! rows (or, for weight gradients, outputs) split between them; the
//! statistics and the parameter gradients of the element-wise layers are
//! column sums in row order (`stats.rs`), so the bits do not depend on the
//! number of threads.

// Index loops mirror the equations' subscripts.
#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

use dien_engine::gemm::tile::Accumulate;
use rayon::prelude::*;

use crate::error::ModelError;
use crate::fast::dense::{Dense, par_weight_grad, softplus};
use crate::fast::grow;
use crate::mode::Mode;
use crate::params::ParamStore;
use crate::sync::StatSync;
use dien_engine::simd::{LANES, V, dot, load_n, sigmoid, store_n};
use dien_engine::vecmath::simd::sigmoid_v;

mod recal;
mod stats;
pub(crate) use self::recal::{RecalScratch, recalibrate};
pub(crate) use self::stats::NormStats;
use self::stats::{SyncScratch, add_column_sums, column_stats, norm_backward_acc, par_cols2, par_rows};

pub(crate) const H1: usize = 200;
pub(crate) const H2: usize = 80;
const BN_EPS: f32 = 1e-3;
const DICE_EPS: f32 = 1e-8;
/// Weight of the new batch statistic in the running averages.
pub(crate) const MOMENTUM: f32 = 0.01;

/// Packed head weights.
#[derive(Clone, Debug)]
pub(crate) struct HeadPacked {
    pub d: usize,
    fc1: Dense,
    fc2: Dense,
}

impl HeadPacked {
    pub fn new(d: usize) -> Self {
        Self { d, fc1: Dense::new(H1, d), fc2: Dense::new(H2, H1) }
    }
    pub fn set(&mut self, p: &ParamStore<f32>) {
        self.fc1.set(p.get("head.fc1.w"));
        self.fc2.set(p.get("head.fc2.w"));
    }
}

/// Activations and scratch of the head for a batch.
#[derive(Clone, Debug, Default)]
pub(crate) struct HeadWs {
    rows: usize,
    /// Rows of the batch over every replica (`rows` for one process): the
    /// normaliser of the batch statistics and of the mean target loss.
    total_rows: usize,
    sync: SyncScratch,
    /// Head input `[B, D]` (filled by the model).
    pub x: Vec<f32>,
    xhat: Vec<f32>,
    y0: Vec<f32>,
    z1: Vec<f32>,
    z1hat: Vec<f32>,
    y1: Vec<f32>,
    z2: Vec<f32>,
    z2hat: Vec<f32>,
    y2: Vec<f32>,
    /// Logits `[B]`.
    pub logits: Vec<f32>,
    pub bn: NormStats,
    pub dice1: NormStats,
    pub dice2: NormStats,
    // backward
    g: Vec<f32>,
    g2: Vec<f32>,
    g1: Vec<f32>,
    gh: Vec<f32>,
    /// Terms of the Dice `α` gradients `[B, H1]`.
    ta: Vec<f32>,
    /// Gradient w.r.t. the head input `[B, D]`.
    pub dx: Vec<f32>,
}

/// Dice forward: `y = x·(α + ρ(1 − α))`, `ρ = σ(x̂)`.
fn dice_forward(z: &[f32], zhat: &mut [f32], y: &mut [f32], st: &NormStats, alpha: &[f32], rows: usize) {
    let cols = alpha.len();
    let n = rows * cols;
    zhat[..n]
        .par_chunks_mut(cols)
        .zip(y[..n].par_chunks_mut(cols))
        .zip(z[..n].par_chunks(cols))
        .with_min_len(16)
        .for_each(|((zh, y), z)| {
            for o in (0..cols).step_by(LANES) {
                let w = (cols - o).min(LANES);
                let zv = load_n(z, o, w);
                let xh = (zv - load_n(&st.mean, o, w)) * load_n(&st.inv_std, o, w);
                store_n(zh, o, w, xh);
                let (rho, a) = (sigmoid_v(xh), load_n(alpha, o, w));
                store_n(y, o, w, zv * rho.mul_add(V::ONE - a, a));
            }
        });
}

/// Dice backward: overwrites `g` (in: dL/dy, out: dL/dz), accumulates `dalpha`.
#[allow(clippy::too_many_arguments)]
fn dice_backward(
    mode: Mode,
    z: &[f32],
    zhat: &[f32],
    st: &NormStats,
    alpha: &[f32],
    rows: usize,
    total: usize,
    g: &mut [f32],
    gh: &mut [f32],
    ta: &mut [f32],
    dalpha: &mut [f32],
    sc: &mut SyncScratch,
    sync: &mut dyn StatSync,
) -> Result<(), ModelError> {
    let cols = alpha.len();
    let n = rows * cols;
    // Element-wise on all threads; the terms of dα summed below in row order.
    g[..n]
        .par_chunks_mut(cols)
        .zip(gh[..n].par_chunks_mut(cols))
        .zip(ta[..n].par_chunks_mut(cols))
        .zip(z[..n].par_chunks(cols).zip(zhat[..n].par_chunks(cols)))
        .with_min_len(16)
        .for_each(|(((g, gh), ta), (z, zhat))| {
            for o in (0..cols).step_by(LANES) {
                let w = (cols - o).min(LANES);
                let rho = sigmoid_v(load_n(zhat, o, w));
                let (a, gv) = (load_n(alpha, o, w), load_n(g, o, w));
                let (gz, one_rho) = (gv * load_n(z, o, w), V::ONE - rho);
                store_n(ta, o, w, gz * one_rho);
                // Through ρ(x̂): dy/dx̂ = x (1 − α) ρ (1 − ρ).
                store_n(gh, o, w, gz * (V::ONE - a) * rho * one_rho);
                store_n(g, o, w, gv * rho.mul_add(V::ONE - a, a));
            }
        });
    add_column_sums(dalpha, ta, rows, cols);
    norm_backward_acc(mode, &zhat[..n], &gh[..n], &st.inv_std, rows, total, &mut g[..n], sc, sync)
}

/// Head parameter gradients (tensor names of docs/MODEL.md#tensors).
#[derive(Clone, Debug, Default)]
pub(crate) struct HeadGrads {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub fc1_w: Vec<f32>,
    pub fc1_b: Vec<f32>,
    pub dice1_alpha: Vec<f32>,
    pub fc2_w: Vec<f32>,
    pub fc2_b: Vec<f32>,
    pub dice2_alpha: Vec<f32>,
    pub fc3_w: Vec<f32>,
    pub fc3_b: Vec<f32>,
}

impl HeadGrads {
    pub fn new(d: usize) -> Self {
        Self {
            gamma: vec![0.0; d],
            beta: vec![0.0; d],
            fc1_w: vec![0.0; H1 * d],
            fc1_b: vec![0.0; H1],
            dice1_alpha: vec![0.0; H1],
            fc2_w: vec![0.0; H2 * H1],
            fc2_b: vec![0.0; H2],
            dice2_alpha: vec![0.0; H2],
            fc3_w: vec![0.0; H2],
            fc3_b: vec![0.0; 1],
        }
    }
    /// Tensor names of [`HeadGrads::parts`], in the same order.
    pub const NAMES: [&'static str; 10] = [
        "head.bn.gamma",
        "head.bn.beta",
        "head.fc1.w",
        "head.fc1.b",
        "head.dice1.alpha",
        "head.fc2.w",
        "head.fc2.b",
        "head.dice2.alpha",
        "head.fc3.w",
        "head.fc3.b",
    ];

    /// The gradients in [`HeadGrads::NAMES`] order (an array: no allocation).
    pub fn parts(&self) -> [&[f32]; 10] {
        [
            &self.gamma,
            &self.beta,
            &self.fc1_w,
            &self.fc1_b,
            &self.dice1_alpha,
            &self.fc2_w,
            &self.fc2_b,
            &self.dice2_alpha,
            &self.fc3_w,
            &self.fc3_b,
        ]
    }

    /// Clears the gradients that [`HeadWs::backward`] accumulates element by
    /// element; the products' gradients it overwrites.
    fn zero_sums(&mut self) {
        for v in [
            &mut self.gamma,
            &mut self.beta,
            &mut self.dice1_alpha,
            &mut self.dice2_alpha,
            &mut self.fc3_w,
            &mut self.fc3_b,
        ] {
            v.fill(0.0);
        }
    }
}

impl HeadWs {
    pub fn prepare(&mut self, d: usize, rows: usize) {
        self.rows = rows;
        self.total_rows = rows;
        for (v, n) in [
            (&mut self.x, rows * d),
            (&mut self.xhat, rows * d),
            (&mut self.y0, rows * d),
            (&mut self.z1, rows * H1),
            (&mut self.z1hat, rows * H1),
            (&mut self.y1, rows * H1),
            (&mut self.z2, rows * H2),
            (&mut self.z2hat, rows * H2),
            (&mut self.y2, rows * H2),
            (&mut self.logits, rows),
            (&mut self.g, rows),
            (&mut self.g2, rows * H2),
            (&mut self.g1, rows * H1),
            (&mut self.gh, rows * H1.max(d)),
            (&mut self.ta, rows * H1),
            (&mut self.dx, rows * d),
        ] {
            grow(v, n);
        }
        if self.bn.mean.len() != d {
            self.bn = NormStats::new(d);
            self.dice1 = NormStats::new(H1);
            self.dice2 = NormStats::new(H2);
        }
    }

    /// Forward from `self.x` to `self.logits`. In training the batch
    /// statistics are those of every replica's rows together (`sync`).
    pub fn forward(
        &mut self,
        pk: &HeadPacked,
        p: &ParamStore<f32>,
        mode: Mode,
        sync: &mut dyn StatSync,
    ) -> Result<(), ModelError> {
        self.forward_fc1(pk, p, mode, sync)?;
        self.forward_fc2(pk, p, mode, sync)?;
        self.forward_fc3(p, mode, sync)
    }

    /// BatchNorm and fc1: `self.x` to `self.z1`, the input of Dice 1.
    fn forward_fc1(
        &mut self,
        pk: &HeadPacked,
        p: &ParamStore<f32>,
        mode: Mode,
        sync: &mut dyn StatSync,
    ) -> Result<(), ModelError> {
        let (d, rows) = (pk.d, self.rows);
        let n = rows * d;
        let sc = &mut self.sync;
        self.total_rows = self.bn.compute(
            mode,
            &self.x[..n],
            rows,
            p.get("head.bn.running_mean"),
            p.get("head.bn.running_var"),
            BN_EPS,
            sc,
            sync,
        )?;
        let (gamma, beta) = (p.get("head.bn.gamma"), p.get("head.bn.beta"));
        let bn = &self.bn;
        self.xhat[..n]
            .par_chunks_mut(d)
            .zip(self.y0[..n].par_chunks_mut(d))
            .zip(self.x[..n].par_chunks(d))
            .with_min_len(16)
            .for_each(|((xh, y0), x)| {
                for j in 0..d {
                    xh[j] = (x[j] - bn.mean[j]) * bn.inv_std[j];
                    y0[j] = gamma[j].mul_add(xh[j], beta[j]);
                }
            });
        pk.fc1.par_forward(rows, &self.y0, d, p.get("head.fc1.b"), &mut self.z1, H1);
        Ok(())
    }

    /// Dice 1 and fc2: `self.z1` to `self.z2`, the input of Dice 2.
    fn forward_fc2(
        &mut self,
        pk: &HeadPacked,
        p: &ParamStore<f32>,
        mode: Mode,
        sync: &mut dyn StatSync,
    ) -> Result<(), ModelError> {
        let (rows, sc) = (self.rows, &mut self.sync);
        let z1 = &self.z1[..rows * H1];
        let (m1, v1) = (p.get("head.dice1.running_mean"), p.get("head.dice1.running_var"));
        self.dice1.compute(mode, z1, rows, m1, v1, DICE_EPS, sc, sync)?;
        dice_forward(z1, &mut self.z1hat, &mut self.y1, &self.dice1, p.get("head.dice1.alpha"), rows);
        pk.fc2.par_forward(rows, &self.y1, H1, p.get("head.fc2.b"), &mut self.z2, H2);
        Ok(())
    }

    /// Dice 2 and fc3: `self.z2` to `self.logits`.
    fn forward_fc3(&mut self, p: &ParamStore<f32>, mode: Mode, sync: &mut dyn StatSync) -> Result<(), ModelError> {
        let (rows, sc) = (self.rows, &mut self.sync);
        let z2 = &self.z2[..rows * H2];
        let (m2, v2) = (p.get("head.dice2.running_mean"), p.get("head.dice2.running_var"));
        self.dice2.compute(mode, z2, rows, m2, v2, DICE_EPS, sc, sync)?;
        dice_forward(z2, &mut self.z2hat, &mut self.y2, &self.dice2, p.get("head.dice2.alpha"), rows);
        let (w3, b3) = (p.get("head.fc3.w"), p.get("head.fc3.b")[0]);
        for r in 0..rows {
            self.logits[r] = dot(&self.y2[r * H2..(r + 1) * H2], w3) + b3;
        }
        Ok(())
    }

    /// The inputs of Dice 1 and Dice 2 of the last forward.
    #[cfg(test)]
    pub(super) fn dice_inputs(&self) -> (&[f32], &[f32]) {
        (&self.z1[..self.rows * H1], &self.z2[..self.rows * H2])
    }

    /// This replica's part of the mean target loss over the batch
    /// (docs/MODEL.md#losses): its samples' losses over the rows of every
    /// replica (the whole mean for one process), computed in f64.
    pub fn target_loss(&self, labels: &[f32]) -> f64 {
        let rows = self.rows;
        let s: f64 = (0..rows)
            .map(|r| {
                let z = self.logits[r];
                (if labels[r] == 1.0 { softplus(-z) } else { softplus(z) }) as f64
            })
            .sum();
        s / self.total_rows as f64
    }

    /// Backward of the mean target loss (over every replica's rows):
    /// fills `self.dx` and overwrites `g`.
    pub fn backward(
        &mut self,
        pk: &HeadPacked,
        p: &ParamStore<f32>,
        mode: Mode,
        labels: &[f32],
        g: &mut HeadGrads,
        sync: &mut dyn StatSync,
    ) -> Result<(), ModelError> {
        let (d, rows, total) = (pk.d, self.rows, self.total_rows);
        let inv_b = 1.0 / total as f32;
        g.zero_sums();
        for r in 0..rows {
            let z = self.logits[r];
            self.g[r] = inv_b * if labels[r] == 1.0 { -sigmoid(-z) } else { sigmoid(z) };
        }
        let w3 = p.get("head.fc3.w");
        for r in 0..rows {
            let gr = self.g[r];
            g.fc3_b[0] += gr;
            for j in 0..H2 {
                g.fc3_w[j] += gr * self.y2[r * H2 + j];
                self.g2[r * H2 + j] = gr * w3[j];
            }
        }
        dice_backward(
            mode,
            &self.z2,
            &self.z2hat,
            &self.dice2,
            p.get("head.dice2.alpha"),
            rows,
            total,
            &mut self.g2,
            &mut self.gh,
            &mut self.ta,
            &mut g.dice2_alpha,
            &mut self.sync,
            sync,
        )?;
        par_weight_grad(rows, &self.g2, H2, H2, &self.y1, H1, H1, &mut g.fc2_w, &mut g.fc2_b, Accumulate::No);
        pk.fc2.par_backward_input(rows, &self.g2, H2, &mut self.g1, H1, Accumulate::No);
        dice_backward(
            mode,
            &self.z1,
            &self.z1hat,
            &self.dice1,
            p.get("head.dice1.alpha"),
            rows,
            total,
            &mut self.g1,
            &mut self.gh,
            &mut self.ta,
            &mut g.dice1_alpha,
            &mut self.sync,
            sync,
        )?;
        par_weight_grad(rows, &self.g1, H1, H1, &self.y0, d, d, &mut g.fc1_w, &mut g.fc1_b, Accumulate::No);
        // dL/dy0 into gh, then through BatchNorm.
        pk.fc1.par_backward_input(rows, &self.g1, H1, &mut self.gh, d, Accumulate::No);
        // BatchNorm's scale and shift: column sums in row order, then the
        // gradient through the scale.
        let (gh, xhat) = (&self.gh, &self.xhat);
        par_cols2(rows, &mut g.beta, &mut g.gamma, |j0, beta, gamma| {
            for r in 0..rows {
                let i = r * d + j0;
                for (j, (b, gm)) in beta.iter_mut().zip(gamma.iter_mut()).enumerate() {
                    *b += gh[i + j];
                    *gm += gh[i + j] * xhat[i + j];
                }
            }
        });
        let gamma = p.get("head.bn.gamma");
        par_rows(&mut self.gh[..rows * d], d, |_, row| {
            for (x, &gm) in row.iter_mut().zip(gamma) {
                *x *= gm;
            }
        });
        self.dx[..rows * d].fill(0.0);
        norm_backward_acc(mode, &self.xhat, &self.gh, &self.bn.inv_std, rows, total, &mut self.dx, &mut self.sync, sync)
    }
}
