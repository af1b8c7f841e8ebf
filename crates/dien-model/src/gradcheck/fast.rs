//! The fast `f32` training path ([`crate::fast::Model`]) against the `f64`
//! reference ([`crate::reference::forward_backward`]) on one batch and the
//! same weights: the objective, the logits and the gradient of every
//! trainable tensor, each compared as a whole.
//!
//! Finite differences cannot judge the fast path (in `f32` they resolve
//! about three digits), but the reference, once checked against them,
//! can: both paths compute the same function of the same `f32` weights, so
//! their difference is the fast path's rounding and nothing else. A
//! formula error shows up as a difference of the size of the gradient.
//!
//! Per quantity (`r` the reference, `f` the fast path):
//!
//! ```text
//! rel_err = ‖f − r‖₂ / max(‖r‖₂, floor)
//! max_abs = max_i |f_i − r_i|
//! passes  ⇔  rel_err ≤ tol  and  max_abs ≤ tol · max(max_i |r_i|, floor)
//! ```
//!
//! The norm-wise error judges the tensor as a whole, so entries that are
//! small only because they cancel (and carry `f32` rounding of the terms
//! they cancel) do not fail it; the elementwise bound catches one wrong
//! entry that a large tensor's norm would dilute.
//!
//! The floor is [`OUTPUT_FLOOR`] for the losses and logits and
//! [`GRAD_FLOOR`] (1%) of the norm of the whole reference gradient for the
//! gradients. `f32` rounding in the backward pass is relative to the
//! magnitudes flowing through it, not to each tensor's own gradient, which
//! can be far smaller, most of all where terms cancel. The gradient of the
//! attention's last bias (`att.fc3.b`) is zero in exact arithmetic (the
//! softmax ignores a shift of all scores) and comes out of `f32` as noise
//! of about 1e-8; the other attention tensors, whose gradients are 1e-5 of
//! the whole on the probe models, carry errors of the same 1e-8; and when
//! the five samples of the probe batch share two users, each `emb.uid`
//! row's gradient is a part of a sum that BatchNorm makes zero. Against
//! their own norms those errors read 1e-2, 4e-4 and 1e-4; against the
//! floor they stay below 3e-5 (measured over 9,000 probe runs, see
//! `docs/MODEL.md#gradient-checks`).
//!
//! Embedding tables are compared on the rows the batch touches (the rows
//! of the fast path's sparse gradient and every row where the reference
//! gradient is nonzero), which are all the rows a step changes.

use std::fmt;

use serde::Serialize;

use crate::config::ModelConfig;
use crate::fast::{EMB_TABLES, Gradients, Losses, Model};
use crate::params::{ParamStore, TensorKind};
use crate::reference::forward_backward;
use crate::{Batch, ModelError};

/// Default tolerance of [`check_fast_path`] (see the module docs for what
/// it bounds and `docs/MODEL.md#gradient-checks` for the measured errors).
pub const F32_TOL: f64 = 1e-4;

/// Floor of the gradient comparisons, as a fraction of the norm of the
/// whole reference gradient (every trainable tensor together): a tensor
/// whose gradient is smaller than this is judged against it instead of
/// its own norm, so its error must stay below `tol · GRAD_FLOOR` of the
/// whole gradient.
pub const GRAD_FLOOR: f64 = 1e-2;

/// Floor of the loss and logit comparisons: a loss (in nats) or a logit
/// is judged on the unit scale when it is smaller than one.
pub const OUTPUT_FLOOR: f64 = 1.0;

/// The outputs of one training step of the fast path: what
/// [`compare_fast_step`] compares with the reference.
#[derive(Clone, Debug)]
pub struct FastStep {
    /// Objective and its parts.
    pub losses: Losses,
    /// One logit per sample.
    pub logits: Vec<f32>,
    /// Gradients of every trainable tensor (embeddings as sparse rows).
    pub gradients: Gradients,
}

impl FastStep {
    /// One training-mode forward and backward pass of the fast path of `cfg`
    /// with `params` on `batch` (a fresh model: nothing is changed).
    pub fn run(cfg: &ModelConfig, params: &ParamStore<f32>, batch: &Batch) -> Result<Self, ModelError> {
        let mut model = Model::new(cfg.clone(), params.clone())?;
        let losses = model.forward_backward(batch)?;
        Ok(Self { losses, logits: model.logits().to_vec(), gradients: model.gradients().clone() })
    }
}

/// Agreement of one quantity of the fast path with the reference (as JSON,
/// an object with these field names; an infinite error, which is what a
/// NaN on either side gives, is `null`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FastPathCheck {
    /// `loss`, `loss_aux`, `logits` or a tensor name (`emb.mid`, `gru1.w_ih`, …).
    pub name: String,
    /// Shape compared: the tensor's, except `[rows touched, d]` for an
    /// embedding table; `[]` for a scalar.
    pub shape: Vec<usize>,
    /// For an embedding table, the number of rows of the whole table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table_rows: Option<usize>,
    /// `‖reference‖₂`.
    pub norm: f64,
    /// `‖fast − reference‖₂ / max(‖reference‖₂, floor)`.
    pub rel_err: f64,
    /// `max |fast − reference|` over the entries.
    pub max_abs: f64,
    /// `max |reference|` over the entries.
    pub peak: f64,
    /// The floor of the denominators (module docs).
    pub floor: f64,
    /// Whether both bounds of the module docs hold at the report's tolerance.
    pub passed: bool,
}

/// Outcome of [`check_fast_path`]: one [`FastPathCheck`] per quantity, the
/// losses and logits first, then the trainable tensors in canonical order.
#[derive(Clone, Debug, PartialEq)]
pub struct FastPathReport {
    /// The comparisons.
    pub checks: Vec<FastPathCheck>,
    /// The tolerance they were judged at.
    pub tol: f64,
    /// The floor of the gradient comparisons: [`GRAD_FLOOR`] times the
    /// norm of the whole reference gradient.
    pub grad_floor: f64,
}

impl FastPathReport {
    /// True when every quantity passes.
    pub fn passes(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
    /// The quantities that fail.
    pub fn failures(&self) -> Vec<&FastPathCheck> {
        self.checks.iter().filter(|c| !c.passed).collect()
    }
    /// Largest relative error over every quantity (NaN counts as
    /// infinite).
    pub fn max_rel_err(&self) -> f64 {
        self.checks.iter().map(|c| nan_inf(c.rel_err)).fold(0.0, f64::max)
    }
}

impl fmt::Display for FastPathReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<24} {:>16} {:>11} {:>11} {:>11}  result", "tensor", "shape", "norm", "rel_err", "max_abs")?;
        for c in &self.checks {
            writeln!(
                f,
                "{:<24} {:>16} {:>11.3e} {:>11.3e} {:>11.3e}  {}",
                c.name,
                shape_text(&c.shape, c.table_rows),
                c.norm,
                c.rel_err,
                c.max_abs,
                if c.passed { "pass" } else { "FAIL" }
            )?;
        }
        write!(
            f,
            "tolerance {:e}: rel_err ≤ tol and max_abs ≤ tol · max|reference|; norms and magnitudes below \
             {OUTPUT_FLOOR} (losses, logits) or {:.3e} (gradients: {GRAD_FLOOR:e} of the whole) count as that",
            self.tol, self.grad_floor
        )
    }
}

/// `[3, 4]`, or `[5 of 10, 2]` for the touched rows of a table of 10 rows.
fn shape_text(shape: &[usize], table_rows: Option<usize>) -> String {
    let mut dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    if let (Some(n), Some(first)) = (table_rows, dims.first_mut()) {
        *first = format!("{first} of {n}");
    }
    format!("[{}]", dims.join(", "))
}

fn nan_inf(x: f64) -> f64 {
    if x.is_nan() { f64::INFINITY } else { x }
}

/// Runs the fast path and the reference on `batch` with `params` (the
/// reference gets the same values, widened to `f64`) in training mode and
/// compares them at tolerance `tol`, in (0, 1).
pub fn check_fast_path(
    cfg: &ModelConfig,
    params: &ParamStore<f32>,
    batch: &Batch,
    tol: f64,
) -> Result<FastPathReport, ModelError> {
    let step = FastStep::run(cfg, params, batch)?;
    compare_fast_step(cfg, params, batch, &step, tol)
}

/// Compares a given fast-path step (normally [`FastStep::run`] on the same
/// inputs) with the reference's forward and backward pass on `batch` with
/// `params`, at tolerance `tol`, in (0, 1). Errors: a tolerance out of
/// range, inputs the reference refuses, or a step whose shapes do not
/// match the model.
pub fn compare_fast_step(
    cfg: &ModelConfig,
    params: &ParamStore<f32>,
    batch: &Batch,
    step: &FastStep,
    tol: f64,
) -> Result<FastPathReport, ModelError> {
    if !(tol > 0.0 && tol < 1.0) {
        return Err(ModelError::Config(format!("fast-path check: tolerance must be in (0, 1), got {tol}")));
    }
    let p64 = params.map(f64::from);
    let (out, grads) = forward_backward(cfg, &p64, batch)?;
    let mismatch = |what: &str, got: usize, want: usize| {
        ModelError::Config(format!("fast-path check: {what}: the fast step has {got} values, the model {want}"))
    };
    let outputs = Judge { tol, floor: OUTPUT_FLOOR };
    let mut checks = vec![outputs.check("loss", vec![], &[step.losses.loss], &[out.loss])];
    if cfg.has_aux() {
        checks.push(outputs.check("loss_aux", vec![], &[step.losses.loss_aux], &[out.loss_aux]));
    }
    if step.logits.len() != out.logits.len() {
        return Err(mismatch("logits", step.logits.len(), out.logits.len()));
    }
    let logits: Vec<f64> = step.logits.iter().map(|&x| f64::from(x)).collect();
    checks.push(outputs.check("logits", vec![logits.len()], &logits, &out.logits));

    let trainable = || grads.iter().filter(|(s, _)| s.kind == TensorKind::Param);
    let whole: f64 = trainable().flat_map(|(_, g)| g.iter()).map(|x| x * x).sum::<f64>().sqrt();
    // The smallest positive value keeps 0 / 0 out when every gradient is zero.
    let gradients = Judge { tol, floor: (GRAD_FLOOR * whole).max(f64::MIN_POSITIVE) };
    for (spec, g64) in trainable() {
        let name = spec.name.as_str();
        let check = if EMB_TABLES.contains(&name) {
            let rows = step.gradients.embedding(name).ok_or_else(|| mismatch(name, 0, g64.len()))?;
            if rows.width != cfg.d || rows.values.len() != rows.rows.len() * rows.width {
                return Err(mismatch(name, rows.values.len(), rows.rows.len() * cfg.d));
            }
            let (fast, reference, touched) = touched_rows(rows.width, &rows.rows, &rows.values, g64)
                .ok_or_else(|| mismatch(name, rows.values.len(), g64.len()))?;
            let c = gradients.check(name, vec![touched, cfg.d], &fast, &reference);
            FastPathCheck { table_rows: Some(spec.shape[0]), ..c }
        } else {
            let g32 = step.gradients.dense(name).ok_or_else(|| mismatch(name, 0, g64.len()))?;
            if g32.len() != g64.len() {
                return Err(mismatch(name, g32.len(), g64.len()));
            }
            let fast: Vec<f64> = g32.iter().map(|&x| f64::from(x)).collect();
            gradients.check(name, spec.shape.clone(), &fast, g64)
        };
        checks.push(check);
    }
    Ok(FastPathReport { checks, tol, grad_floor: gradients.floor })
}

/// The rows of an embedding gradient that either side touched (the fast
/// path's sparse rows and the reference's nonzero rows, so a row one side
/// forgot still counts), as `(fast, reference, row count)` flattened in
/// ascending row order; `None` when a fast row lies outside the table.
fn touched_rows(width: usize, rows: &[u32], values: &[f32], dense64: &[f64]) -> Option<(Vec<f64>, Vec<f64>, usize)> {
    let n_rows = dense64.len() / width.max(1);
    let mut fast_dense = vec![0.0f64; dense64.len()];
    let mut touched = vec![false; n_rows];
    for (&r, g) in rows.iter().zip(values.chunks_exact(width.max(1))) {
        let r = r as usize;
        *touched.get_mut(r)? = true;
        for (x, &y) in fast_dense[r * width..(r + 1) * width].iter_mut().zip(g) {
            *x = f64::from(y);
        }
    }
    let (mut fast, mut reference) = (Vec::new(), Vec::new());
    let mut count = 0;
    for (r, &hit) in touched.iter().enumerate() {
        let span = r * width..(r + 1) * width;
        if hit || dense64[span.clone()].iter().any(|&x| x != 0.0) {
            fast.extend_from_slice(&fast_dense[span.clone()]);
            reference.extend_from_slice(&dense64[span]);
            count += 1;
        }
    }
    Some((fast, reference, count))
}

/// A tolerance and the floor of its denominators.
struct Judge {
    tol: f64,
    floor: f64,
}

impl Judge {
    /// Compares `fast` with `reference` (same length) by the bounds of the
    /// module docs.
    fn check(&self, name: &str, shape: Vec<usize>, fast: &[f64], reference: &[f64]) -> FastPathCheck {
        let (mut sq_ref, mut sq_diff, mut max_abs, mut peak) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
        for (&f, &r) in fast.iter().zip(reference) {
            let d = nan_inf((f - r).abs());
            sq_ref += r * r;
            sq_diff += d * d;
            max_abs = max_abs.max(d);
            peak = peak.max(r.abs());
        }
        let norm = sq_ref.sqrt();
        let rel_err = sq_diff.sqrt() / norm.max(self.floor);
        // A NaN on either side made `d` infinite, so it fails here.
        let passed = rel_err <= self.tol && max_abs <= self.tol * peak.max(self.floor);
        FastPathCheck {
            name: name.to_string(),
            shape,
            table_rows: None,
            norm,
            rel_err,
            max_abs,
            peak,
            floor: self.floor,
            passed,
        }
    }
}
