//! The model described once: which stages run, with which cell and which
//! attention and auxiliary forms. The training path ([`crate::fast`]), the
//! request path ([`crate::serve`]) and the reference path
//! ([`crate::reference`]) all build from a [`Plan`], so the wiring of a
//! [`ModelConfig`] is decided here and nowhere else.

use dien_engine::cell::CellKind;

use crate::config::{AttForm, AuxForm, Evolution, ModelConfig, ModelKind};

/// How the interest slot of the head input is computed; each stage names
/// exactly the layers it owns, so no path has to unwrap an optional layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interest {
    /// Embedding & MLP: the interest is the sum-pooled history.
    SumPool,
    /// DIN: attention over the raw behaviours, then their weighted sum.
    AttentionPool {
        /// Attention score form.
        att: AttForm,
    },
    /// DIEN: the interest-extractor GRU, optionally its auxiliary head, the
    /// attention and the interest-evolving GRU.
    Evolving(EvolvingPlan),
}

/// The layers of a DIEN interest stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvolvingPlan {
    /// Auxiliary head form, `None` without an auxiliary loss (`dien-noaux`).
    pub aux: Option<AuxForm>,
    /// Attention score form.
    pub att: AttForm,
    /// Where the attention acts.
    pub evolution: Evolution,
    /// The evolving GRU's engine cell (the extractor is always a plain GRU).
    pub cell: CellKind,
}

/// What a [`ModelConfig`] computes, decided once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Plan {
    /// The interest stage.
    pub interest: Interest,
    /// Weight of the auxiliary loss in the objective (0 without one).
    pub aux_weight: f32,
}

impl Plan {
    /// The plan of `cfg` (assumed valid).
    pub fn new(cfg: &ModelConfig) -> Self {
        let interest = match cfg.model {
            ModelKind::Base => Interest::SumPool,
            ModelKind::Din => Interest::AttentionPool { att: cfg.att },
            ModelKind::Dien | ModelKind::DienNoaux => Interest::Evolving(EvolvingPlan {
                aux: cfg.has_aux().then_some(cfg.aux),
                att: cfg.att,
                evolution: cfg.variant.evolution(),
                cell: cfg.variant.cell_kind(),
            }),
        };
        Self { interest, aux_weight: cfg.aux_weight() }
    }

    /// The DIEN stage, if the model has one.
    pub fn evolving(&self) -> Option<&EvolvingPlan> {
        match &self.interest {
            Interest::Evolving(p) => Some(p),
            _ => None,
        }
    }

    /// The auxiliary head form, if the model has an auxiliary loss.
    pub fn aux(&self) -> Option<AuxForm> {
        self.evolving().and_then(|p| p.aux)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Variant;

    #[test]
    fn every_configuration_has_a_plan_matching_its_tensors() {
        for &model in ModelKind::ALL {
            for &variant in Variant::ALL {
                for &att in AttForm::ALL {
                    for &aux in AuxForm::ALL {
                        let mut cfg = ModelConfig::new(model, 5, 5, 5);
                        (cfg.variant, cfg.att, cfg.aux) = (variant, att, aux);
                        let plan = Plan::new(&cfg);
                        assert_eq!(plan.evolving().is_some(), cfg.has_gru());
                        assert_eq!(plan.aux().is_some(), cfg.has_aux());
                        assert_eq!(matches!(plan.interest, Interest::SumPool), !cfg.has_attention());
                        if let Some(p) = plan.evolving() {
                            assert_eq!(p.cell, variant.cell_kind());
                            assert_eq!(p.evolution == Evolution::Pooled, variant == Variant::GruAtt);
                        }
                        assert_eq!(plan.aux_weight, if model == ModelKind::Dien { 1.0 } else { 0.0 });
                    }
                }
            }
        }
    }
}
