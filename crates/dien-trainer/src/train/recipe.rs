//! Named training recipes: settings that go together, chosen by one name
//! (`dien train --recipe NAME`) and recorded with the run.
//!
//! `reference` (the default) trains with the documented defaults.
//! `aux-boost` makes the auxiliary loss learn: with the defaults it stays at
//! chance (2 ln 2) on the Amazon data, because the embeddings and the
//! extractor are shaped by the click loss and the auxiliary head, trained at
//! the same rate, never catches up. The recipe weights the auxiliary loss 10×
//! (`alpha_aux = 10`), trains the auxiliary head's tensors at 10× the
//! learning rate (`aux_lr_scale = 10`) and uses the reference code's AUGRU
//! form (`variant = augru-ref`). It learns more slowly than the defaults and
//! keeps improving for several epochs, so it goes with more epochs and
//! selection by validation; docs/RESULTS.md has what was tried and what it
//! gives.

use std::fmt;
use std::str::FromStr;

use dien_model::Variant;

use super::TrainConfig;
use crate::error::TrainError;

/// A named set of training settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Recipe {
    /// The documented defaults, unchanged.
    #[default]
    Reference,
    /// `alpha_aux = 10`, `aux_lr_scale = 10` and `variant = augru-ref`: an
    /// auxiliary loss that learns.
    AuxBoost,
}

impl Recipe {
    /// Every recipe, in the order of `--help`.
    pub const ALL: &'static [Recipe] = &[Recipe::Reference, Recipe::AuxBoost];

    /// The recipe's name on the command line and in run records.
    pub fn name(self) -> &'static str {
        match self {
            Self::Reference => "reference",
            Self::AuxBoost => "aux-boost",
        }
    }

    /// Sets the recipe's settings in `cfg`. A setting still at its default
    /// takes the recipe's value; one already at the recipe's value stays
    /// (a resumed run's recorded settings); any other value conflicts and is
    /// refused, naming the setting.
    pub fn apply(self, cfg: &mut TrainConfig) -> Result<(), TrainError> {
        if self == Self::Reference {
            return Ok(());
        }
        self.set(&mut cfg.model.alpha_aux, "alpha-aux", 1.0, 10.0)?;
        self.set(&mut cfg.optim.aux_lr_scale, "aux-lr-scale", 1.0, 10.0)?;
        self.set(&mut cfg.model.variant, "variant", Variant::default(), Variant::AugruRef)
    }

    /// Sets `slot` (the setting of flag `--flag`, whose default is
    /// `default`) to `value`, as [`Recipe::apply`] describes.
    fn set<T: PartialEq + fmt::Display>(
        self,
        slot: &mut T,
        flag: &str,
        default: T,
        value: T,
    ) -> Result<(), TrainError> {
        if *slot != default && *slot != value {
            return Err(TrainError::Config(format!(
                "--{flag} {slot} conflicts with --recipe {}, which sets it to {value}: leave it out, or train without \
                 the recipe",
                self.name()
            )));
        }
        *slot = value;
        Ok(())
    }
}

impl fmt::Display for Recipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Recipe {
    type Err = TrainError;

    fn from_str(s: &str) -> Result<Self, TrainError> {
        Self::ALL.iter().copied().find(|r| r.name() == s).ok_or_else(|| {
            let names: Vec<_> = Self::ALL.iter().map(|r| r.name()).collect();
            TrainError::Config(format!("recipe `{s}`: expected one of {}", names.join(", ")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dien_model::ModelKind;

    fn cfg() -> TrainConfig {
        TrainConfig::new("data", "out.safetensors", ModelKind::Dien)
    }

    #[test]
    fn names_round_trip() {
        for &r in Recipe::ALL {
            assert_eq!(r.name().parse::<Recipe>().unwrap(), r);
        }
        let e = "boost".parse::<Recipe>().unwrap_err().to_string();
        assert!(e.contains("reference, aux-boost"), "{e}");
    }

    #[test]
    fn reference_changes_nothing_aux_boost_sets_its_values() {
        let mut c = cfg();
        Recipe::Reference.apply(&mut c).unwrap();
        assert_eq!((c.model.alpha_aux, c.optim.aux_lr_scale), (1.0, 1.0));
        Recipe::AuxBoost.apply(&mut c).unwrap();
        assert_eq!((c.model.alpha_aux, c.optim.aux_lr_scale, c.model.variant), (10.0, 10.0, Variant::AugruRef));
        // Applied again (a resumed run's recorded settings): unchanged.
        Recipe::AuxBoost.apply(&mut c).unwrap();
        assert_eq!((c.model.alpha_aux, c.optim.aux_lr_scale), (10.0, 10.0));
    }

    #[test]
    fn aux_boost_refuses_other_values_of_its_settings() {
        let mut c = cfg();
        c.model.alpha_aux = 3.0;
        let e = Recipe::AuxBoost.apply(&mut c).unwrap_err().to_string();
        assert!(e.contains("--alpha-aux 3 conflicts with --recipe aux-boost"), "{e}");
        let mut c = cfg();
        c.optim.aux_lr_scale = 2.0;
        let e = Recipe::AuxBoost.apply(&mut c).unwrap_err().to_string();
        assert!(e.contains("--aux-lr-scale 2"), "{e}");
        let mut c = cfg();
        c.model.variant = Variant::Agru;
        let e = Recipe::AuxBoost.apply(&mut c).unwrap_err().to_string();
        assert!(e.contains("--variant agru conflicts with --recipe aux-boost, which sets it to augru-ref"), "{e}");
    }
}
