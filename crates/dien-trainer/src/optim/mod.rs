//! Optimisers (docs/MODEL.md#training): Adam for the dense parameters, lazy (sparse) Adam
//! for the embedding rows, the reference's dense-embedding Adam as an
//! option, and plain SGD; global-norm gradient clipping; the learning-rate
//! schedule; and the state kept in checkpoints.
//!
//! # Update rules
//!
//! Adam follows Kingma & Ba (Algorithm 1) with one step counter `t` shared
//! by every tensor, incremented once per [`Optimizer::step`]:
//!
//! ```text
//! m ← β1·m + (1 − β1)·g
//! v ← β2·v + (1 − β2)·g²
//! p ← p − lr / (1 − β1^t) · m / (sqrt(v) / sqrt(1 − β2^t) + eps)
//! ```
//!
//! Embedding tables receive sparse gradients ([`SparseRows`]): only the rows
//! the batch looked up. With `lazy_embeddings` (the default, TensorFlow's
//! `LazyAdamOptimizer` semantics) a row's moments and value move only in the
//! steps where the row is listed in the sparse gradient (looked up by the
//! batch, even if its gradient is zero: then its moments decay); every other
//! row stays bit-identical.
//! The bias correction of such a row uses the *global* step `t`, not a
//! per-row count, as LazyAdam does: a row first touched at step 1000 takes
//! the nearly uncorrected step `lr · m / (sqrt(v) + eps)` with `m = 0.1·g`,
//! i.e. a small first move, and it needs no per-row counter in the state.
//! Without `lazy_embeddings` (TensorFlow's plain Adam, the reference code)
//! every row moves every step: untouched rows get the update for a zero
//! gradient, so their moments decay and their values keep drifting along
//! the old momentum.
//!
//! SGD is `p ← p − lr·g`; for embeddings only the touched rows move (a zero
//! gradient is no move), whatever `lazy_embeddings` says.
//!
//! # Clipping and checks
//!
//! Before anything changes, one pass over every gradient (the dense ones in
//! the order given, then the embedding rows of `emb.uid`, `emb.mid`,
//! `emb.cat`) accumulates the sum of squares in f64: each tensor's sum in
//! the fixed blocked order of [`sum_sq`] (the same bits on any number of
//! threads), the tensors' sums added in that order. A NaN or infinity
//! anywhere refuses the step with
//! [`TrainError::NonFiniteGradient`] and leaves parameters and state
//! untouched. With `clip_norm = Some(c)` and a global L2 norm `n > c`, every
//! gradient element is multiplied by the f32 `scale = (c / n) as f32` before
//! the update rule. The auxiliary head's tensors (`aux.*`) take the
//! learning rate times `aux_lr_scale` (1 by default).
//!
//! # State
//!
//! [`Optimizer::state_tensors`] holds `adam.m.<param>` and `adam.v.<param>`
//! for every trainable tensor (full embedding tables, zero rows where never
//! touched); [`Optimizer::state_metadata`] the step count, the current
//! learning rate and the hyperparameters. [`Optimizer::save`] writes both to
//! a checksummed safetensors sidecar ([`sidecar_path`], beside
//! `model.safetensors` as `model.optim.safetensors`); a restored optimiser
//! continues bit-identically.
//!
//! # Layout
//!
//! [`OptimKind`] and [`OptimConfig`] live in `config`, the update rules in
//! `adam` and `sgd`, the step (checks, clipping, dispatch) in `step`, and
//! the checkpointed state in `state`; [`Optimizer`] itself is defined here.
//!
//! [`SparseRows`]: dien_model::fast::SparseRows
//! [`TrainError::NonFiniteGradient`]: crate::error::TrainError::NonFiniteGradient

use std::fmt;

use dien_model::fast::EMB_TABLES;
use dien_model::{ParamStore, TensorKind};

use crate::error::TrainError;

mod adam;
mod config;
mod sgd;
mod state;
mod step;

pub use config::{OptimConfig, OptimKind};
pub use state::{STATE_FORMAT_VERSION, sidecar_path};
pub use step::{SUM_SQ_BLOCK, sum_sq};

/// State of one trainable tensor.
struct Slot {
    /// Canonical tensor name.
    name: String,
    /// Tensor shape.
    shape: Vec<usize>,
    /// Index of the tensor in the parameter store.
    param: usize,
    /// Position in [`Gradients::emb`](dien_model::fast::Gradients::emb) for
    /// embedding tables.
    emb: Option<usize>,
    /// First moment (Adam; empty for SGD).
    m: Vec<f32>,
    /// Second moment (Adam; empty for SGD).
    v: Vec<f32>,
    /// Call stamp of the last gradient seen, to reject a tensor given twice.
    seen: u64,
    /// A tensor of the auxiliary head (its learning rate is scaled by
    /// [`OptimConfig::aux_lr_scale`]).
    aux: bool,
}

impl Slot {
    fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Adam or SGD over a model's parameters, with its state.
///
/// Built once for a parameter store ([`Optimizer::new`]), which sizes every
/// buffer: a step allocates nothing.
pub struct Optimizer {
    cfg: OptimConfig,
    lr: f32,
    step: u64,
    slots: Vec<Slot>,
    /// Slot of each parameter-store index (`None` for buffers).
    by_param: Vec<Option<usize>>,
    /// Slot of each embedding table of [`EMB_TABLES`].
    emb_slot: [Option<usize>; 3],
    /// Calls to `step_with`, successful or not (stamps for `Slot::seen`).
    calls: u64,
    /// Global gradient norm of the last successful step, before clipping.
    last_norm: f64,
}

impl fmt::Debug for Optimizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Optimizer")
            .field("cfg", &self.cfg)
            .field("lr", &self.lr)
            .field("step", &self.step)
            .field("tensors", &self.slots.len())
            .finish()
    }
}

impl Optimizer {
    /// An optimiser for the trainable tensors of `params` (buffers are
    /// never touched), with zero moments, step 0 and learning rate `cfg.lr`.
    pub fn new(cfg: OptimConfig, params: &ParamStore<f32>) -> Result<Self, TrainError> {
        cfg.validate()?;
        let adam = cfg.kind == OptimKind::Adam;
        let mut slots = Vec::new();
        let mut by_param = vec![None; params.len()];
        let mut emb_slot = [None; 3];
        for (i, spec) in params.specs().iter().enumerate() {
            if spec.kind != TensorKind::Param {
                continue;
            }
            let emb = EMB_TABLES.iter().position(|&t| t == spec.name);
            if let Some(t) = emb {
                if spec.shape.len() != 2 {
                    return Err(TrainError::Config(format!(
                        "embedding table `{}` has shape {:?}, expected [rows, width]",
                        spec.name, spec.shape
                    )));
                }
                emb_slot[t] = Some(slots.len());
            }
            let n = if adam { spec.numel() } else { 0 };
            by_param[i] = Some(slots.len());
            slots.push(Slot {
                name: spec.name.clone(),
                shape: spec.shape.clone(),
                param: i,
                emb,
                m: vec![0.0; n],
                v: vec![0.0; n],
                seen: 0,
                aux: spec.name.starts_with("aux."),
            });
        }
        Ok(Self { lr: cfg.lr, cfg, step: 0, slots, by_param, emb_slot, calls: 0, last_norm: 0.0 })
    }

    /// The settings this optimiser was built with (`lr` is the initial one;
    /// see [`Optimizer::lr`]).
    pub fn config(&self) -> &OptimConfig {
        &self.cfg
    }

    /// The current learning rate.
    pub fn lr(&self) -> f32 {
        self.lr
    }

    /// Sets the learning rate (finite and > 0).
    pub fn set_lr(&mut self, lr: f32) -> Result<(), TrainError> {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(TrainError::Config(format!("optimizer lr {lr}: must be finite and > 0")));
        }
        self.lr = lr;
        Ok(())
    }

    /// Halves the learning rate (after each epoch, docs/MODEL.md#training) and returns the
    /// new one.
    pub fn halve_lr(&mut self) -> f32 {
        self.lr *= 0.5;
        self.lr
    }

    /// Steps taken so far (Adam's `t` after the last step).
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Global L2 norm of the gradients of the last successful step, before
    /// clipping (0 before the first).
    pub fn last_grad_norm(&self) -> f64 {
        self.last_norm
    }
}
