//! Optimiser settings: the update rule ([`OptimKind`]) and its
//! hyperparameters ([`OptimConfig`]), with their validation.

use std::fmt;
use std::str::FromStr;

use crate::error::TrainError;

/// The update rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OptimKind {
    /// Adam (the default, docs/MODEL.md#training).
    #[default]
    Adam,
    /// Plain stochastic gradient descent, no momentum.
    Sgd,
}

impl OptimKind {
    /// Every optimiser, in the order `--help` lists them.
    pub const ALL: &'static [OptimKind] = &[OptimKind::Adam, OptimKind::Sgd];

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
    /// Lazy (sparse) Adam for embedding rows (the default, docs/MODEL.md#training); `false`
    /// moves every row every step as the reference's TensorFlow Adam does.
    pub lazy_embeddings: bool,
    /// Global gradient L2-norm limit (> 0), or no clipping.
    pub clip_norm: Option<f32>,
    /// Multiplier of the learning rate for the auxiliary head's tensors
    /// (`aux.*`); 1 trains them like every other tensor. A value above 1
    /// lets the auxiliary head keep up with an embedding space shaped by the
    /// click loss (the `aux-boost` recipe, docs/RESULTS.md).
    pub aux_lr_scale: f32,
}

impl Default for OptimConfig {
    /// [`OptimConfig::adam`].
    fn default() -> Self {
        Self::adam()
    }
}

impl OptimConfig {
    /// The defaults of docs/MODEL.md#training: Adam, lr 0.001, β = (0.9, 0.999), eps 1e-8, lazy embedding
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
            aux_lr_scale: 1.0,
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
        if !(self.aux_lr_scale.is_finite() && self.aux_lr_scale > 0.0) {
            return bad("aux_lr_scale", self.aux_lr_scale, "must be finite and > 0");
        }
        if let Some(c) = self.clip_norm
            && !(c.is_finite() && c > 0.0)
        {
            return bad("clip_norm", c, "must be finite and > 0");
        }
        Ok(())
    }
}
