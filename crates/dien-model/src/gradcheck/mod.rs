//! Whole-model gradient checks. This module: the analytic gradients of the
//! `f64` reference ([`crate::reference::forward_backward`]) against central
//! finite differences of the training-mode objective `L_target +
//! α_aux·L_aux`, for every trainable tensor (running statistics are buffers
//! and are skipped). [`check_fast_path`] then holds the fast `f32` training
//! path to the reference so checked (`fast.rs`).
//!
//! The numeric derivative is the fourth-order central difference
//!
//! ```text
//! f'(x) ≈ [8(f(x+h) − f(x−h)) − (f(x+2h) − f(x−2h))] / 12h
//! ```
//!
//! whose truncation error is O(h⁴). Measured on the tiny test models (losses
//! of order one): at `h = 2⁻¹¹` (≈ 4.9e-4) the truncation error of the
//! largest gradients (~0.2) is about 5e-9, and the rounding error of the
//! loss (a few 1e-16, from every activation), magnified by `1.5/h`, is about
//! 1e-12 absolute. So relative agreement of 1e-6 is meaningful for entries of
//! magnitude [`ABS_FLOOR`] (5e-6) or more, and the rest are judged by the
//! absolute tolerance `rel_tol · ABS_FLOOR` ([`ModelGradReport::passes`]):
//! every entry must satisfy `|a − n| ≤ rel_tol · max(|a|, |n|, ABS_FLOOR)`.
//! (The two-point difference bottoms out near 1e-11 absolute at its best
//! step, too coarse for this.)
//!
//! The best step depends on the scale of the parameters: truncation grows
//! with the curvature, and Dice (variance epsilon 1e-8) is steep wherever a
//! unit's batch variance is small. At the default initialisation with `d = 18`
//! (embeddings of standard deviation 0.01, zero `att.q.b` so the PReLU
//! inputs sit next to their kink) `h = 2⁻¹¹` leaves about 2e-5 relative
//! truncation error on embedding entries, while `h = 2⁻¹³` passes; below
//! about `2⁻¹⁵` rounding dominates. Batches of two samples make every Dice
//! unit nearly a step function of its inputs and defeat any step.

mod fast;

use std::fmt;

use dien_engine::gradcheck::{GradReport, TensorCheck, compare};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::ModelConfig;
use crate::mode::Mode;
use crate::params::{ParamStore, TensorKind};
use crate::reference::{forward, forward_backward};
use crate::{Batch, ModelError};

pub use self::fast::{
    F32_TOL, FastPathCheck, FastPathReport, FastStep, GRAD_FLOOR, OUTPUT_FLOOR, check_fast_path, compare_fast_step,
};

/// Suggested finite-difference step `h` (2⁻¹¹, exactly representable).
pub const DEFAULT_EPS: f64 = 1.0 / 2048.0;

/// Magnitude below which an entry is judged by absolute error only (see the
/// module docs for what the differences resolve).
pub const ABS_FLOOR: f64 = 5e-6;

/// Outcome of a whole-model check: the engine's per-tensor report (whose
/// `max_rel` covers the entries of magnitude at least `abs_floor`) and, per
/// tensor, the largest absolute error among the entries below the floor.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelGradReport {
    /// Per-tensor agreement, trainable tensors in canonical order.
    pub report: GradReport,
    /// Per tensor (same order), the largest `|analytic − numeric|` among the
    /// entries whose magnitude is below `report.abs_floor` (0 when none).
    pub max_abs_below_floor: Vec<f64>,
}

impl ModelGradReport {
    /// True when every checked entry satisfies
    /// `|a − n| ≤ rel_tol · max(|a|, |n|, abs_floor)`: relative error at
    /// most `rel_tol` above the floor, absolute error at most
    /// `rel_tol · abs_floor` below it.
    pub fn passes(&self, rel_tol: f64) -> bool {
        self.failures(rel_tol).is_empty()
    }

    /// The tensors failing [`ModelGradReport::passes`].
    pub fn failures(&self, rel_tol: f64) -> Vec<&TensorCheck> {
        let small_tol = rel_tol * self.report.abs_floor;
        self.report
            .tensors
            .iter()
            .zip(&self.max_abs_below_floor)
            .filter(|(t, small)| !(t.max_rel <= rel_tol && **small <= small_tol))
            .map(|(t, _)| t)
            .collect()
    }
}

impl fmt::Display for ModelGradReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.report)?;
        write!(f, "largest absolute error below the floor:")?;
        for (t, small) in self.report.tensors.iter().zip(&self.max_abs_below_floor) {
            write!(f, " {}={small:.1e}", t.name)?;
        }
        Ok(())
    }
}

/// Checks every entry of every trainable tensor. Costs four forward passes
/// per entry: meant for tiny configurations.
pub fn check_model(
    cfg: &ModelConfig,
    params: &ParamStore<f64>,
    batch: &Batch,
    eps: f64,
) -> Result<ModelGradReport, ModelError> {
    check_entries(cfg, params, batch, eps, |_, analytic| (0..analytic.len()).collect())
}

/// Like [`check_model`], but a tensor with more than
/// `max_entries_per_tensor` entries is checked on a subset: its
/// `max_entries_per_tensor / 4` largest-magnitude analytic entries (where a
/// wrong formula shows first) plus a seeded uniform sample of the rest
/// (which also probes entries whose gradient should be zero). Smaller
/// tensors are checked whole. `TensorCheck::len` is the number of entries
/// compared and `worst_index` a flat index into the whole tensor.
pub fn check_model_sampled(
    cfg: &ModelConfig,
    params: &ParamStore<f64>,
    batch: &Batch,
    eps: f64,
    max_entries_per_tensor: usize,
    seed: u64,
) -> Result<ModelGradReport, ModelError> {
    if max_entries_per_tensor == 0 {
        return Err(ModelError::Config("gradient check: max_entries_per_tensor must be positive".into()));
    }
    check_entries(cfg, params, batch, eps, |tensor, analytic| {
        let n = analytic.len();
        if n <= max_entries_per_tensor {
            return (0..n).collect();
        }
        let n_top = max_entries_per_tensor / 4;
        let mut by_mag: Vec<usize> = (0..n).collect();
        by_mag.sort_by(|&a, &b| analytic[b].abs().total_cmp(&analytic[a].abs()).then(a.cmp(&b)));
        let mut chosen: Vec<usize> = by_mag[..n_top].to_vec();
        let rest = &by_mag[n_top..];
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (tensor as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let picks = rand::seq::index::sample(&mut rng, rest.len(), max_entries_per_tensor - n_top);
        chosen.extend(picks.iter().map(|i| rest[i]));
        chosen.sort_unstable();
        chosen
    })
}

fn check_entries(
    cfg: &ModelConfig,
    params: &ParamStore<f64>,
    batch: &Batch,
    eps: f64,
    select: impl Fn(usize, &[f64]) -> Vec<usize>,
) -> Result<ModelGradReport, ModelError> {
    if !(eps.is_finite() && eps > 0.0 && eps < 1.0) {
        return Err(ModelError::Config(format!("gradient check: eps must be in (0, 1), got {eps}")));
    }
    let (_, grads) = forward_backward(cfg, params, batch)?;
    let mut work = params.clone();
    let mut report = GradReport { tensors: Vec::new(), eps, abs_floor: ABS_FLOOR };
    let mut max_abs_below_floor = Vec::new();
    for (ti, spec) in params.specs().iter().enumerate() {
        if spec.kind != TensorKind::Param {
            continue;
        }
        let analytic_all = grads.data(ti);
        let entries = select(ti, analytic_all);
        let mut analytic = Vec::with_capacity(entries.len());
        let mut numeric = Vec::with_capacity(entries.len());
        for &i in &entries {
            let x0 = work.data(ti)[i];
            let mut loss_at = |k: f64| -> Result<f64, ModelError> {
                work.data_mut(ti)[i] = x0 + k * eps;
                Ok(forward(cfg, &work, batch, Mode::Train)?.loss)
            };
            let (p1, m1, p2, m2) = (loss_at(1.0)?, loss_at(-1.0)?, loss_at(2.0)?, loss_at(-2.0)?);
            work.data_mut(ti)[i] = x0;
            numeric.push((8.0 * (p1 - m1) - (p2 - m2)) / (12.0 * eps));
            analytic.push(analytic_all[i]);
        }
        let mut c: TensorCheck = compare(&spec.name, &analytic, &numeric, ABS_FLOOR);
        if let Some(&flat) = entries.get(c.worst_index) {
            c.worst_index = flat;
        }
        report.tensors.push(c);
        let below = analytic.iter().zip(&numeric).filter(|(a, n)| a.abs().max(n.abs()) < ABS_FLOOR);
        // NaN must fail: `f64::max` would drop it.
        let small = below
            .map(|(a, n)| (a - n).abs())
            .fold(0.0f64, |m, e| if e.is_nan() || m.is_nan() { f64::NAN } else { m.max(e) });
        max_abs_below_floor.push(small);
    }
    Ok(ModelGradReport { report, max_abs_below_floor })
}

/// Random parameters of moderate size for a gradient check (not the default
/// initialisation: zero biases, unit gammas and tiny embeddings would hide
/// mistakes, and tiny embeddings under batch normalisation make the loss so
/// curved that finite differences lose accuracy), with positive running
/// variances. Deterministic in `seed`.
pub fn probe_params(cfg: &ModelConfig, seed: u64) -> ParamStore<f64> {
    use crate::params::Init;
    let mut p = ParamStore::<f32>::zeros(cfg).map(f64::from);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let specs = p.specs().to_vec();
    for (i, spec) in specs.iter().enumerate() {
        let fan = |k: usize| spec.shape.get(k).copied().unwrap_or(1) as f64;
        for v in p.data_mut(i) {
            *v = match (spec.kind, spec.init) {
                (TensorKind::Buffer, Init::Const(1.0)) => rng.random_range(0.5..2.0),
                (TensorKind::Buffer, _) => rng.random_range(-0.5..0.5),
                (_, Init::Normal { .. }) => rng.random_range(-0.6..0.6),
                (_, Init::GlorotUniform) => {
                    let b = 1.5 * (6.0 / (fan(0) + fan(1))).sqrt();
                    rng.random_range(-b..b)
                }
                (_, Init::Uniform { bound }) => rng.random_range(-1.5 * f64::from(bound)..1.5 * f64::from(bound)),
                (_, Init::Const(c)) => f64::from(c) + rng.random_range(-0.3..0.3),
                (_, Init::GruBias) => rng.random_range(-0.5..0.5),
            };
        }
    }
    p
}

/// A small batch for a gradient check: five samples with history lengths
/// 5, 0, 1, 3 and 5 (`T = 5`), negatives, repeated ids (so embedding rows
/// accumulate several contributions) and both labels. Deterministic in
/// `seed`; indices fit `cfg`'s tables.
pub fn probe_batch(cfg: &ModelConfig, seed: u64) -> Batch {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let lengths = [5usize, 0, 1, 3, 5];
    let (nu, nm, nc) = (cfg.n_uid as u32, cfg.n_mid as u32, cfg.n_cat as u32);
    let mut hist = |n: u32| -> Vec<Vec<u32>> {
        lengths.iter().map(|&l| (0..l).map(|_| rng.random_range(0..n)).collect()).collect()
    };
    let (hm, hc, gm, gc) = (hist(nm), hist(nc), hist(nm), hist(nc));
    let uid = (0..5).map(|_| rng.random_range(0..nu)).collect();
    let mid = (0..5).map(|_| rng.random_range(0..nm)).collect();
    let cat = (0..5).map(|_| rng.random_range(0..nc)).collect();
    Batch::from_samples(uid, mid, cat, &hm, &hc, Some(&gm), Some(&gc), vec![1.0, 0.0, 1.0, 0.0, 1.0])
        .expect("a consistent probe batch")
}
