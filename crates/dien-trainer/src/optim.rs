//! Optimisers (SPEC §11): Adam for the dense parameters, lazy (sparse) Adam
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
//! `emb.cat`) accumulates the sum of squares in one f64 running sum, element
//! after element. A NaN or infinity anywhere refuses the step with
//! [`TrainError::NonFiniteGradient`] and leaves parameters and state
//! untouched. With `clip_norm = Some(c)` and a global L2 norm `n > c`, every
//! gradient element is multiplied by the f32 `scale = (c / n) as f32` before
//! the update rule.
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

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use dien_model::checkpoint::{self, OPTIM_SUFFIX, TensorRef};
use dien_model::fast::{EMB_TABLES, Gradients, SparseRows};
use dien_model::{ModelError, ParamStore, TensorId, TensorKind};
use rayon::prelude::*;

use crate::error::TrainError;

/// Version of the optimiser-state file layout (metadata `optim.format_version`).
pub const STATE_FORMAT_VERSION: &str = "1";

/// Elements per parallel task when a whole embedding table is swept
/// (dense-embedding Adam): large enough that rayon's per-task cost vanishes.
const SWEEP_CHUNK: usize = 1 << 16;

/// Metadata keys read back by [`Optimizer::load_state`].
const META_VERSION: &str = "optim.format_version";
const META_KIND: &str = "optim.kind";
const META_STEP: &str = "optim.step";
const META_LR: &str = "optim.lr";
const META_BETA1: &str = "optim.beta1";
const META_BETA2: &str = "optim.beta2";
const META_EPS: &str = "optim.eps";

/// Origin named in errors of [`Optimizer::load_state`].
const STATE_ORIGIN: &str = "<optimiser state>";

/// The update rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OptimKind {
    /// Adam (SPEC §11, the default).
    #[default]
    Adam,
    /// Plain stochastic gradient descent, no momentum.
    Sgd,
}

impl OptimKind {
    /// The name used on the command line and in the state file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Adam => "adam",
            Self::Sgd => "sgd",
        }
    }
}

impl fmt::Display for OptimKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for OptimKind {
    type Err = TrainError;

    /// Parses `adam` or `sgd`.
    fn from_str(s: &str) -> Result<Self, TrainError> {
        match s {
            "adam" => Ok(Self::Adam),
            "sgd" => Ok(Self::Sgd),
            other => Err(TrainError::Config(format!("optimizer `{other}`: expected `adam` or `sgd`"))),
        }
    }
}

/// Optimiser settings.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimConfig {
    /// Update rule.
    pub kind: OptimKind,
    /// Initial learning rate (> 0).
    pub lr: f32,
    /// Adam's first-moment decay, in `[0, 1)`.
    pub beta1: f32,
    /// Adam's second-moment decay, in `[0, 1)`.
    pub beta2: f32,
    /// Adam's denominator term (> 0).
    pub eps: f32,
    /// Lazy (sparse) Adam for embedding rows (SPEC §11 default); `false`
    /// moves every row every step as the reference's TensorFlow Adam does.
    pub lazy_embeddings: bool,
    /// Global gradient L2-norm limit (> 0), or no clipping.
    pub clip_norm: Option<f32>,
}

impl Default for OptimConfig {
    /// [`OptimConfig::adam`].
    fn default() -> Self {
        Self::adam()
    }
}

impl OptimConfig {
    /// SPEC §11: Adam, lr 0.001, β = (0.9, 0.999), eps 1e-8, lazy embedding
    /// updates, no clipping.
    pub fn adam() -> Self {
        Self {
            kind: OptimKind::Adam,
            lr: 0.001,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            lazy_embeddings: true,
            clip_norm: None,
        }
    }

    /// Plain SGD with learning rate `lr`, no clipping.
    pub fn sgd(lr: f32) -> Self {
        Self { kind: OptimKind::Sgd, lr, ..Self::adam() }
    }

    /// Checks every field; the error names the offending one.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |field: &str, v: f32, want: &str| Err(TrainError::Config(format!("optimizer {field} {v}: {want}")));
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", self.lr, "must be finite and > 0");
        }
        if self.kind == OptimKind::Adam {
            for (field, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
                if !(0.0..1.0).contains(&b) {
                    return bad(field, b, "must lie in [0, 1)");
                }
            }
            if !(self.eps.is_finite() && self.eps > 0.0) {
                return bad("eps", self.eps, "must be finite and > 0");
            }
        }
        if let Some(c) = self.clip_norm
            && !(c.is_finite() && c > 0.0)
        {
            return bad("clip_norm", c, "must be finite and > 0");
        }
        Ok(())
    }
}

/// The optimiser-state sidecar of checkpoint `ckpt`:
/// `run/model.safetensors` → `run/model.optim.safetensors`.
pub fn sidecar_path(ckpt: &Path) -> PathBuf {
    checkpoint::sidecar_path(ckpt, OPTIM_SUFFIX)
}

/// State of one trainable tensor.
struct Slot {
    /// Canonical tensor name.
    name: String,
    /// Tensor shape.
    shape: Vec<usize>,
    /// Index of the tensor in the parameter store.
    param: usize,
    /// Position in [`Gradients::emb`] for embedding tables.
    emb: Option<usize>,
    /// First moment (Adam; empty for SGD).
    m: Vec<f32>,
    /// Second moment (Adam; empty for SGD).
    v: Vec<f32>,
    /// Call stamp of the last gradient seen, to reject a tensor given twice.
    seen: u64,
}

impl Slot {
    fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Per-step constants of the Adam update.
#[derive(Clone, Copy)]
struct AdamStep {
    b1: f32,
    c1: f32,
    b2: f32,
    c2: f32,
    /// `lr / (1 − β1^t)`.
    step_size: f32,
    /// `1 / sqrt(1 − β2^t)`.
    inv_sqrt_bc2: f32,
    eps: f32,
}

impl AdamStep {
    fn new(cfg: &OptimConfig, lr: f32, t: u64) -> Self {
        // β^t in f64; beyond i32::MAX steps both powers are 0 anyway.
        let t = i32::try_from(t).unwrap_or(i32::MAX);
        let (b1, b2) = (f64::from(cfg.beta1), f64::from(cfg.beta2));
        let bc1 = 1.0 - b1.powi(t);
        let bc2 = 1.0 - b2.powi(t);
        Self {
            b1: cfg.beta1,
            c1: (1.0 - b1) as f32,
            b2: cfg.beta2,
            c2: (1.0 - b2) as f32,
            step_size: (f64::from(lr) / bc1) as f32,
            inv_sqrt_bc2: (1.0 / bc2.sqrt()) as f32,
            eps: cfg.eps,
        }
    }

    /// Adam on one element with gradient `g` (already scaled).
    #[inline(always)]
    fn elem(&self, p: &mut f32, m: &mut f32, v: &mut f32, g: f32) {
        let mm = self.b1 * *m + self.c1 * g;
        let vv = self.b2 * *v + self.c2 * (g * g);
        *m = mm;
        *v = vv;
        *p -= self.step_size * (mm / (vv.sqrt() * self.inv_sqrt_bc2 + self.eps));
    }

    /// Adam on equal-length slices with gradient `g · scale`.
    fn update(&self, p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], scale: f32) {
        assert!(p.len() == m.len() && p.len() == v.len() && p.len() == g.len());
        for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
            self.elem(p, m, v, g * scale);
        }
    }

    /// Adam with a zero gradient: the moments decay and `p` follows the old
    /// momentum. Bit-identical to [`AdamStep::update`] with `g = 0`.
    fn decay(&self, p: &mut [f32], m: &mut [f32], v: &mut [f32]) {
        assert!(p.len() == m.len() && p.len() == v.len());
        let run = |p: &mut [f32], m: &mut [f32], v: &mut [f32]| {
            for ((p, m), v) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()) {
                self.elem(p, m, v, 0.0);
            }
        };
        if p.len() <= SWEEP_CHUNK {
            run(p, m, v);
        } else {
            // Elementwise, so the split cannot change any result.
            p.par_chunks_mut(SWEEP_CHUNK)
                .zip(m.par_chunks_mut(SWEEP_CHUNK))
                .zip(v.par_chunks_mut(SWEEP_CHUNK))
                .for_each(|((p, m), v)| run(p, m, v));
        }
    }
}

/// `p ← p − lr · (g · scale)`.
fn sgd_update(p: &mut [f32], g: &[f32], lr: f32, scale: f32) {
    assert_eq!(p.len(), g.len());
    for (p, &g) in p.iter_mut().zip(g) {
        *p -= lr * (g * scale);
    }
}

/// `acc` plus the sum of squares of `g`, in f64, one element after the other
/// (the documented order, so a caller can reproduce the clipping norm bit
/// for bit).
fn add_sum_sq(acc: f64, g: &[f32]) -> f64 {
    g.iter().fold(acc, |s, &x| {
        let x = f64::from(x);
        s + x * x
    })
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

    /// Halves the learning rate (SPEC §11: after each epoch) and returns the
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

    /// One update of `params` with the gradients of the last
    /// [`dien_model::fast::Model::forward_backward`].
    ///
    /// A non-finite gradient returns [`TrainError::NonFiniteGradient`] and
    /// changes nothing (not even the step count).
    ///
    /// # Panics
    /// If `params` or `grads` do not belong to the model this optimiser was
    /// built for (a programming error).
    pub fn step(&mut self, params: &mut ParamStore<f32>, grads: &Gradients) -> Result<(), TrainError> {
        self.step_by_id(params, || grads.dense_by_id(), &grads.emb)
    }

    /// [`Optimizer::step`] with the gradients given by parts, addressed by
    /// tensor id: `dense` yields `(id, gradient)` of non-embedding
    /// parameters (it is called twice: once to check, once to update) and
    /// `emb` holds the sparse rows of [`EMB_TABLES`] in order. Each tensor
    /// is found by its index: no name or hash lookup.
    ///
    /// # Panics
    /// As [`Optimizer::step_with`].
    pub fn step_by_id<'g, I, F>(
        &mut self,
        params: &mut ParamStore<f32>,
        dense: F,
        emb: &[SparseRows; 3],
    ) -> Result<(), TrainError>
    where
        F: Fn() -> I,
        I: Iterator<Item = (TensorId, &'g [f32])>,
    {
        self.step_impl(params, dense, emb, |_, id: TensorId| id.index())
    }

    /// [`Optimizer::step`] with the gradients given by parts: `dense` yields
    /// `(name, gradient)` of non-embedding parameters (it is called twice:
    /// once to check, once to update) and `emb` holds the sparse rows of
    /// [`EMB_TABLES`] in order. Trainable tensors without a gradient are left
    /// as they are (moments included); the step count still advances.
    ///
    /// Each name is looked up in the parameter store (a convenience for
    /// tools and tests; the training loop uses [`Optimizer::step`]).
    ///
    /// # Panics
    /// On an unknown or repeated name, a buffer, an embedding table given
    /// densely, a length that does not match the tensor, or sparse rows that
    /// are not ascending, unique and in range.
    pub fn step_with<'g, I, F>(
        &mut self,
        params: &mut ParamStore<f32>,
        dense: F,
        emb: &[SparseRows; 3],
    ) -> Result<(), TrainError>
    where
        F: Fn() -> I,
        I: Iterator<Item = (&'g str, &'g [f32])>,
    {
        self.step_impl(params, dense, emb, |p, name: &str| {
            p.index_of(name).unwrap_or_else(|| panic!("gradient for unknown tensor `{name}`"))
        })
    }

    /// The step, with `index` mapping a gradient's key (name or id) to its
    /// position in the parameter store.
    fn step_impl<'g, K, I, F>(
        &mut self,
        params: &mut ParamStore<f32>,
        dense: F,
        emb: &[SparseRows; 3],
        index: impl Fn(&ParamStore<f32>, K) -> usize,
    ) -> Result<(), TrainError>
    where
        K: Copy,
        F: Fn() -> I,
        I: Iterator<Item = (K, &'g [f32])>,
    {
        assert_eq!(params.len(), self.by_param.len(), "parameter store of another model");
        self.calls += 1;
        let stamp = self.calls;
        let attempt = self.step + 1;

        // Pass 1: check everything and accumulate the squared norm.
        let mut ss = 0.0f64;
        for (key, g) in dense() {
            let slot = self.slot_of(params, index(params, key));
            let slot = &mut self.slots[slot];
            let name = &slot.name;
            assert!(slot.emb.is_none(), "embedding `{name}` must be given as sparse rows");
            assert_eq!(g.len(), slot.numel(), "gradient of `{name}` has the wrong length");
            assert_ne!(slot.seen, stamp, "two gradients for `{name}`");
            slot.seen = stamp;
            ss = add_sum_sq(ss, g);
            if !ss.is_finite() {
                return Err(non_finite(name, g, |i| i, attempt));
            }
        }
        for (t, rows) in emb.iter().enumerate() {
            if rows.rows.is_empty() {
                assert!(rows.values.is_empty(), "`{}`: values without rows", EMB_TABLES[t]);
                continue;
            }
            let slot = self.emb_slot[t].unwrap_or_else(|| panic!("no trainable table `{}`", EMB_TABLES[t]));
            let slot = &self.slots[slot];
            assert_eq!(params.specs()[slot.param].name, slot.name, "parameter store of another model");
            let (n, w) = (slot.shape[0], slot.shape[1]);
            assert_eq!(rows.width, w, "`{}`: sparse row width", slot.name);
            assert_eq!(rows.values.len(), rows.rows.len() * w, "`{}`: sparse values length", slot.name);
            assert!(
                rows.rows.windows(2).all(|p| p[0] < p[1]) && (*rows.rows.last().unwrap() as usize) < n,
                "`{}`: sparse rows must be ascending, unique and below {n}",
                slot.name
            );
            ss = add_sum_sq(ss, &rows.values);
            if !ss.is_finite() {
                let index = |i: usize| rows.rows[i / w] as usize * w + i % w;
                return Err(non_finite(&slot.name, &rows.values, index, attempt));
            }
        }
        let norm = ss.sqrt();
        let scale = match self.cfg.clip_norm {
            Some(c) if norm > f64::from(c) => (f64::from(c) / norm) as f32,
            _ => 1.0,
        };

        // Pass 2: update. Nothing below can fail.
        self.step = attempt;
        self.last_norm = norm;
        let lr = self.lr;
        match self.cfg.kind {
            OptimKind::Adam => {
                let k = AdamStep::new(&self.cfg, lr, self.step);
                for (key, g) in dense() {
                    let slot = &mut self.slots[self.by_param[index(params, key)].expect("checked")];
                    k.update(params.data_mut(slot.param), &mut slot.m, &mut slot.v, g, scale);
                }
                for (t, rows) in emb.iter().enumerate() {
                    let Some(si) = self.emb_slot[t] else { continue };
                    let slot = &mut self.slots[si];
                    let p = params.data_mut(slot.param);
                    if self.cfg.lazy_embeddings {
                        adam_rows_lazy(&k, p, &mut slot.m, &mut slot.v, rows, scale);
                    } else {
                        adam_rows_dense(&k, p, &mut slot.m, &mut slot.v, rows, scale);
                    }
                }
            }
            OptimKind::Sgd => {
                for (key, g) in dense() {
                    let slot = &self.slots[self.by_param[index(params, key)].expect("checked")];
                    sgd_update(params.data_mut(slot.param), g, lr, scale);
                }
                for (t, rows) in emb.iter().enumerate() {
                    let Some(si) = self.emb_slot[t] else { continue };
                    let p = params.data_mut(self.slots[si].param);
                    let w = rows.width;
                    for (&r, g) in rows.rows.iter().zip(rows.values.chunks_exact(w.max(1))) {
                        let r = r as usize;
                        sgd_update(&mut p[r * w..(r + 1) * w], g, lr, scale);
                    }
                }
            }
        }
        Ok(())
    }

    /// The slot of the dense gradient of parameter-store tensor `i`,
    /// checking it is a trainable tensor of this model.
    fn slot_of(&self, params: &ParamStore<f32>, i: usize) -> usize {
        self.by_param.get(i).copied().flatten().unwrap_or_else(|| {
            let name = params.specs().get(i).map_or("<out of range>", |s| s.name.as_str());
            panic!("gradient for non-trainable tensor `{name}`")
        })
    }

    /// The optimiser state as named tensors: `adam.m.<param>` and
    /// `adam.v.<param>` for every trainable tensor (none for SGD), in
    /// parameter order. Copies; [`Optimizer::save`] writes without copying.
    pub fn state_tensors(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        self.write_set().into_iter().map(|(n, s, d)| (n, s.to_vec(), d.to_vec())).collect()
    }

    /// String metadata of the state, every key under `optim.` so that a
    /// caller may add its own: `optim.format_version`, `optim.kind`,
    /// `optim.step`, `optim.lr` (current; shortest round-trip decimal),
    /// `optim.beta1`, `optim.beta2`, `optim.eps`, `optim.lazy_embeddings` and
    /// `optim.clip_norm` (`none` or the limit).
    pub fn state_metadata(&self) -> BTreeMap<String, String> {
        let c = &self.cfg;
        [
            (META_VERSION, STATE_FORMAT_VERSION.to_string()),
            (META_KIND, c.kind.name().to_string()),
            (META_STEP, self.step.to_string()),
            (META_LR, self.lr.to_string()),
            (META_BETA1, c.beta1.to_string()),
            (META_BETA2, c.beta2.to_string()),
            (META_EPS, c.eps.to_string()),
            ("optim.lazy_embeddings", c.lazy_embeddings.to_string()),
            ("optim.clip_norm", c.clip_norm.map_or_else(|| "none".to_string(), |x| x.to_string())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Borrowed state tensors for writing, with their owned names.
    fn write_set(&self) -> Vec<(String, &[usize], &[f32])> {
        let mut out = Vec::new();
        if self.cfg.kind == OptimKind::Adam {
            for s in &self.slots {
                out.push((format!("adam.m.{}", s.name), s.shape.as_slice(), s.m.as_slice()));
                out.push((format!("adam.v.{}", s.name), s.shape.as_slice(), s.v.as_slice()));
            }
        }
        out
    }

    /// Writes the state to `path` (atomically, checksummed; see
    /// [`checkpoint::save_tensors`]).
    pub fn save(&self, path: &Path) -> Result<(), TrainError> {
        let set = self.write_set();
        let refs: Vec<TensorRef<'_>> = set.iter().map(|(n, s, d)| (n.as_str(), *s, *d)).collect();
        checkpoint::save_tensors(path, &refs, &self.state_metadata())?;
        Ok(())
    }

    /// The state file as bytes (what [`Optimizer::save`] writes).
    pub fn state_to_bytes(&self) -> Result<Vec<u8>, TrainError> {
        let set = self.write_set();
        let refs: Vec<TensorRef<'_>> = set.iter().map(|(n, s, d)| (n.as_str(), *s, *d)).collect();
        Ok(checkpoint::tensors_to_bytes(&refs, &self.state_metadata())?)
    }

    /// Restores the state written by [`Optimizer::save`] at `path`.
    pub fn load(&mut self, path: &Path) -> Result<(), TrainError> {
        let (meta, tensors) = checkpoint::load_tensors(path)?;
        self.load_state_from(&meta, tensors, &path.display().to_string())
    }

    /// Restores the state from the bytes of [`Optimizer::state_to_bytes`].
    pub fn load_bytes(&mut self, bytes: &[u8]) -> Result<(), TrainError> {
        let (meta, tensors) = checkpoint::tensors_from_bytes(bytes)?;
        self.load_state_from(&meta, tensors, STATE_ORIGIN)
    }

    /// Restores the state from metadata and tensors (as
    /// [`checkpoint::load_tensors`] returns them): step count, learning rate
    /// and moments. Metadata keys outside `optim.` are ignored. The kind,
    /// `beta1`, `beta2` and `eps` must equal this optimiser's (a resumed run
    /// continues the same rule); `lazy_embeddings` and `clip_norm` come from
    /// this optimiser's configuration. Every tensor must be present with its shape, finite,
    /// and `adam.v.*` non-negative; unknown tensors are rejected. On error
    /// nothing is changed.
    pub fn load_state(
        &mut self,
        meta: &BTreeMap<String, String>,
        tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    ) -> Result<(), TrainError> {
        self.load_state_from(meta, tensors, STATE_ORIGIN)
    }

    fn load_state_from(
        &mut self,
        meta: &BTreeMap<String, String>,
        tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
        origin: &str,
    ) -> Result<(), TrainError> {
        let key_err = |key: &str, msg: String| {
            TrainError::from(ModelError::Checkpoint(key.to_string(), format!("{msg} (in {origin})")))
        };
        let get = |key: &str| meta.get(key).ok_or_else(|| key_err(key, "metadata key is missing".into()));
        let version = get(META_VERSION)?;
        if version != STATE_FORMAT_VERSION {
            return Err(key_err(META_VERSION, format!("unsupported version `{version}`")));
        }
        let kind = get(META_KIND)?;
        if kind != self.cfg.kind.name() {
            return Err(key_err(META_KIND, format!("state of `{kind}`, this optimiser is `{}`", self.cfg.kind)));
        }
        let step: u64 = get(META_STEP)?.parse().map_err(|e| key_err(META_STEP, format!("not a step count: {e}")))?;
        let lr: f32 = get(META_LR)?.parse().map_err(|e| key_err(META_LR, format!("not a number: {e}")))?;
        if !(lr.is_finite() && lr > 0.0) {
            return Err(key_err(META_LR, format!("{lr} must be finite and > 0")));
        }
        if self.cfg.kind == OptimKind::Adam {
            for (key, want) in [(META_BETA1, self.cfg.beta1), (META_BETA2, self.cfg.beta2), (META_EPS, self.cfg.eps)] {
                let got: f32 = get(key)?.parse().map_err(|e| key_err(key, format!("not a number: {e}")))?;
                if got.to_bits() != want.to_bits() {
                    return Err(key_err(key, format!("state has {got}, this optimiser {want}")));
                }
            }
        }

        // Match every tensor to its slot before changing anything.
        let mut m_new: Vec<Option<Vec<f32>>> = vec![None; self.slots.len()];
        let mut v_new: Vec<Option<Vec<f32>>> = vec![None; self.slots.len()];
        for (name, shape, data) in tensors {
            let tensor_err =
                |msg: String| TrainError::from(ModelError::Checkpoint(name.clone(), format!("{msg} (in {origin})")));
            let target = if self.cfg.kind != OptimKind::Adam {
                None
            } else if let Some(p) = name.strip_prefix("adam.m.") {
                self.slots.iter().position(|s| s.name == p).map(|i| (i, &mut m_new))
            } else if let Some(p) = name.strip_prefix("adam.v.") {
                self.slots.iter().position(|s| s.name == p).map(|i| (i, &mut v_new))
            } else {
                None
            };
            let Some((i, dst)) = target else {
                return Err(tensor_err(format!("unknown tensor for a `{}` optimiser", self.cfg.kind)));
            };
            if shape != self.slots[i].shape || data.len() != self.slots[i].numel() {
                return Err(tensor_err(format!("shape {shape:?}, expected {:?}", self.slots[i].shape)));
            }
            if let Some(j) = data.iter().position(|x| !x.is_finite()) {
                return Err(tensor_err(format!("non-finite value {} at element {j}", data[j])));
            }
            if name.starts_with("adam.v.")
                && let Some(j) = data.iter().position(|&x| x < 0.0)
            {
                return Err(tensor_err(format!("negative second moment {} at element {j}", data[j])));
            }
            dst[i] = Some(data);
        }
        if self.cfg.kind == OptimKind::Adam {
            for (i, s) in self.slots.iter().enumerate() {
                for (prefix, got) in [("adam.m.", &m_new[i]), ("adam.v.", &v_new[i])] {
                    if got.is_none() {
                        let name = format!("{prefix}{}", s.name);
                        return Err(TrainError::from(ModelError::Checkpoint(name, format!("missing (in {origin})"))));
                    }
                }
            }
            for ((s, m), v) in self.slots.iter_mut().zip(m_new).zip(v_new) {
                s.m = m.expect("checked");
                s.v = v.expect("checked");
            }
        }
        self.step = step;
        self.lr = lr;
        Ok(())
    }
}

/// The error for the first non-finite element of gradient `g` of `tensor`;
/// `index` maps a position in `g` to the flat index in the full tensor.
fn non_finite(tensor: &str, g: &[f32], index: impl Fn(usize) -> usize, step: u64) -> TrainError {
    let i = g.iter().position(|x| !x.is_finite()).expect("a non-finite sum has a non-finite term");
    TrainError::NonFiniteGradient { tensor: tensor.to_string(), index: index(i), value: g[i], step }
}

/// Lazy Adam: only the rows of `rows` move.
fn adam_rows_lazy(k: &AdamStep, p: &mut [f32], m: &mut [f32], v: &mut [f32], rows: &SparseRows, scale: f32) {
    let w = rows.width;
    if w == 0 {
        return;
    }
    for (&r, g) in rows.rows.iter().zip(rows.values.chunks_exact(w)) {
        let span = r as usize * w..(r as usize + 1) * w;
        k.update(&mut p[span.clone()], &mut m[span.clone()], &mut v[span], g, scale);
    }
}

/// Dense-embedding Adam: touched rows take their gradient, every other row
/// the zero-gradient update, swept as contiguous runs.
fn adam_rows_dense(k: &AdamStep, p: &mut [f32], m: &mut [f32], v: &mut [f32], rows: &SparseRows, scale: f32) {
    let w = rows.width;
    let mut done = 0; // elements already updated
    if w > 0 {
        for (&r, g) in rows.rows.iter().zip(rows.values.chunks_exact(w)) {
            let start = r as usize * w;
            k.decay(&mut p[done..start], &mut m[done..start], &mut v[done..start]);
            let span = start..start + w;
            k.update(&mut p[span.clone()], &mut m[span.clone()], &mut v[span], g, scale);
            done = start + w;
        }
    }
    k.decay(&mut p[done..], &mut m[done..], &mut v[done..]);
}
