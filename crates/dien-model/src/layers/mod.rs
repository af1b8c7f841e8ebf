//! The model's layers, one folder per layer. Each holds its parameters and
//! their packing, its training forward and backward (fast `f32`), its
//! request-path form where it has one, its `f64` reference, and a test of
//! the fast layer against the reference.
//!
//! - `embedding`: table lookups, sum pooling, gradient rows.
//! - [`extractor`]: the interest-extractor GRU and the auxiliary head.
//! - [`attention`]: attention scores over a history and attention pooling.
//! - `evolution`: the interest-evolving GRU, in every variant.
//! - [`head`]: the prediction head (BatchNorm, Dice MLP) and its input.
//!
//! `Layers` is the packed form of a [`Plan`]: exactly the layers the
//! model has, so no stage unwraps an optional layer.

pub mod attention;
pub(crate) mod embedding;
pub(crate) mod evolution;
pub mod extractor;
pub mod head;

use dien_engine::cell::fast::GruCell;
use dien_engine::cell::{CellKind, GruParams};

use self::attention::train::AttPacked;
use self::extractor::aux_train::AuxPacked;
use self::head::train::HeadPacked;
use crate::config::{Evolution, ModelConfig};
use crate::params::ParamStore;
use crate::plan::{Interest, Plan};

/// Packed weights of every layer of a model (training path).
pub(crate) struct Layers {
    pub interest: InterestLayers,
    pub head: HeadPacked,
}

/// The layers of the interest stage of [`Interest`].
// One per model, built once and never moved on the step path: the size
// difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum InterestLayers {
    SumPool,
    AttentionPool(AttPacked),
    Evolving(EvolvingLayers),
}

/// The layers of a DIEN interest stage.
pub(crate) struct EvolvingLayers {
    pub gru1: GruCell,
    pub aux: Option<AuxPacked>,
    pub att: AttPacked,
    pub gru2: GruCell,
    pub evolution: Evolution,
}

impl InterestLayers {
    /// The attention, where the stage has one.
    pub fn attention(&self) -> Option<&AttPacked> {
        match self {
            Self::SumPool => None,
            Self::AttentionPool(att) => Some(att),
            Self::Evolving(ev) => Some(&ev.att),
        }
    }

    /// The auxiliary head, where the stage has one.
    pub fn aux(&self) -> Option<&AuxPacked> {
        match self {
            Self::Evolving(ev) => ev.aux.as_ref(),
            _ => None,
        }
    }
}

fn gru_params<'a>(p: &'a ParamStore<f32>, names: [&str; 3], input: usize, hidden: usize) -> GruParams<'a, f32> {
    GruParams { w_ih: p.get(names[0]), w_hh: p.get(names[1]), b: p.get(names[2]), input, hidden }
}

/// Tensor names of the extractor GRU, in [`dien_engine::cell::GruGrads`] order.
pub(crate) const GRU1: [&str; 3] = ["gru1.w_ih", "gru1.w_hh", "gru1.b"];
/// Tensor names of the evolving GRU, in [`dien_engine::cell::GruGrads`] order.
pub(crate) const GRU2: [&str; 3] = ["gru2.w_ih", "gru2.w_hh", "gru2.b"];

impl Layers {
    /// The layers of `plan` (weights zero until [`Layers::set`]).
    pub fn new(cfg: &ModelConfig, plan: &Plan) -> Self {
        let (e, h) = (cfg.e(), cfg.hidden);
        let interest = match plan.interest {
            Interest::SumPool => InterestLayers::SumPool,
            Interest::AttentionPool { att } => InterestLayers::AttentionPool(AttPacked::new(att, cfg.att_width(), e)),
            Interest::Evolving(ev) => InterestLayers::Evolving(EvolvingLayers {
                gru1: GruCell::new(CellKind::Gru, e, h),
                aux: ev.aux.map(|form| AuxPacked::new(form, h, e)),
                att: AttPacked::new(ev.att, cfg.att_width(), e),
                gru2: GruCell::new(ev.cell, h, h),
                evolution: ev.evolution,
            }),
        };
        Self { interest, head: HeadPacked::new(cfg.head_in()) }
    }

    /// Repacks every layer from the parameters (no allocation).
    /// The layers are independent, so they are packed side by side on all
    /// threads.
    pub fn set(&mut self, cfg: &ModelConfig, p: &ParamStore<f32>) {
        let (e, h) = (cfg.e(), cfg.hidden);
        let Layers { interest, head } = self;
        match interest {
            InterestLayers::SumPool => head.set(p),
            InterestLayers::AttentionPool(att) => {
                rayon::join(|| att.set(p), || head.set(p));
            }
            InterestLayers::Evolving(ev) => {
                let EvolvingLayers { gru1, gru2, att, aux, .. } = ev;
                rayon::join(
                    || rayon::join(|| gru1.set_params(&gru_params(p, GRU1, e, h)), || head.set(p)),
                    || {
                        rayon::join(
                            || gru2.set_params(&gru_params(p, GRU2, h, h)),
                            || {
                                att.set(p);
                                if let Some(aux) = aux {
                                    aux.set(p);
                                }
                            },
                        )
                    },
                );
            }
        }
    }
}

/// What the per-layer fast-vs-reference tests share.
#[cfg(test)]
pub(crate) mod testutil {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// `n` values uniform in `[-scale, scale]`, deterministic in `seed`.
    pub fn uniform(n: usize, scale: f32, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| (rng.random::<f32>() * 2.0 - 1.0) * scale).collect()
    }

    /// Widens to `f64`.
    pub fn wide(v: &[f32]) -> Vec<f64> {
        v.iter().map(|&x| f64::from(x)).collect()
    }

    /// Asserts `fast ≈ reference`: the largest difference at most `tol`
    /// times the larger of 1 and the reference's largest magnitude.
    pub fn assert_close(what: &str, fast: &[f32], reference: &[f64], tol: f64) {
        assert_eq!(fast.len(), reference.len(), "{what}: lengths");
        let scale = reference.iter().fold(1.0f64, |m, x| m.max(x.abs()));
        let err = fast.iter().zip(reference).fold(0.0f64, |m, (&f, &r)| m.max((f64::from(f) - r).abs()));
        assert!(err <= tol * scale, "{what}: max error {err:e} above {:e}", tol * scale);
    }
}
