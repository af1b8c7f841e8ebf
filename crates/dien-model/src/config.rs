//! Model configuration (docs/MODEL.md#models, #tensors, #checkpoints): which model, which evolving-layer
//! variant, which attention and auxiliary forms, and every width.
//!
//! The configuration is what a checkpoint's `__metadata__` records
//! ([`ModelConfig::metadata`], [`ModelConfig::from_metadata`]), so that a
//! checkpoint alone determines every tensor name and shape.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use dien_engine::cell::CellKind;

use crate::error::ModelError;

/// The checkpoint format version this crate writes and reads.
pub const FORMAT_VERSION: &str = "1";

/// The widest embedding (`d`) or hidden state (`H`) a model may have.
pub const MAX_WIDTH: usize = 4096;

/// The most parameters (and running statistics) a model may have: 2^30
/// floats, 4 GiB (training holds about four times that).
pub const MAX_PARAMS: usize = 1 << 30;

/// Writes a `name()`-based `Display` and a `FromStr` accepting exactly those
/// names, so that the CLI, the metadata and error messages agree on spelling.
macro_rules! named_enum {
    ($ty:ident, $what:literal, [$($variant:ident => $name:literal),+ $(,)?]) => {
        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The canonical lowercase name (as in the CLI and checkpoint metadata).
            pub fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $ty {
            type Err = ModelError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(ModelError::Config(format!(
                        "{}: unknown value `{}` (expected one of: {})",
                        $what,
                        s,
                        [$($name),+].join(", ")
                    ))),
                }
            }
        }
    };
}

/// Which model (docs/MODEL.md#models).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ModelKind {
    /// Full DIEN: GRU extractor, auxiliary loss, attention, evolving GRU.
    #[default]
    Dien,
    /// DIEN without the auxiliary loss (`α_aux = 0`, no `aux.*` tensors).
    DienNoaux,
    /// DIN: attention over the raw behaviours, no GRUs.
    Din,
    /// Embedding & MLP: sum pooling only.
    Base,
}

named_enum!(ModelKind, "model", [Dien => "dien", DienNoaux => "dien-noaux", Din => "din", Base => "base"]);

/// The variant table: one entry per interest-evolving-layer variant, with
/// its name, the engine cell it runs and where the attention acts
/// ([`Evolution`]). Everything else (the fast, request and reference paths)
/// reads these through [`Variant::cell_kind`] and [`Variant::evolution`].
macro_rules! variant_table {
    ($(#[$first_doc:meta])* $first:ident => $first_name:literal, $first_cell:ident, $first_evo:ident;
     $($(#[$doc:meta])* $variant:ident => $name:literal, $cell:ident, $evo:ident;)*) => {
        /// Interest-evolving-layer variant.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
        pub enum Variant {
            $(#[$first_doc])*
            #[default]
            $first,
            $($(#[$doc])* $variant,)*
        }

        named_enum!(Variant, "variant", [$first => $first_name, $($variant => $name),*]);

        impl Variant {
            /// The engine cell of the evolving GRU.
            pub fn cell_kind(self) -> CellKind {
                match self {
                    Variant::$first => CellKind::$first_cell,
                    $(Variant::$variant => CellKind::$cell,)*
                }
            }

            /// Where the attention acts in the evolving layer.
            pub fn evolution(self) -> Evolution {
                match self {
                    Variant::$first => Evolution::$first_evo,
                    $(Variant::$variant => Evolution::$evo,)*
                }
            }
        }
    };
}

variant_table! {
    /// AUGRU as in the paper: the update gate scaled by the attention weight.
    Augru => "augru", Augru, Gated;
    /// The reference code's AUGRU form.
    AugruRef => "augru-ref", AugruRef, Gated;
    /// Attention replaces the update gate.
    Agru => "agru", Agru, Gated;
    /// Attention scales the GRU input.
    Aigru => "aigru", Aigru, Gated;
    /// Plain GRU, then attention pooling over its states.
    GruAtt => "gru_att", Gru, Pooled;
}

/// Where the attention acts in the interest-evolving layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Evolution {
    /// Attention scores of the extractor's states steer the evolving cell
    /// step by step; the interest is the cell's last state.
    Gated,
    /// The evolving cell runs unsteered; the interest is the
    /// attention-weighted sum of its states.
    Pooled,
}

/// Attention score form (docs/MODEL.md#attention).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AttForm {
    /// The reference code's MLP over `[q; h; q − h; q ∘ h]`.
    #[default]
    Mlp,
    /// The paper's bilinear form `hᵀ W e_a`.
    Bilinear,
}

named_enum!(AttForm, "att", [Mlp => "mlp", Bilinear => "bilinear"]);

/// Auxiliary-loss scoring form (docs/MODEL.md#auxiliary-loss).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AuxForm {
    /// The reference code's 3-layer MLP `g([h; e])`.
    #[default]
    Mlp,
    /// The paper's inner product `h · e` (requires `H = E`).
    Dot,
}

named_enum!(AuxForm, "aux", [Mlp => "mlp", Dot => "dot"]);

/// Everything that determines a model's tensors and computation.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// Which model.
    pub model: ModelKind,
    /// Evolving-layer variant (used by `dien` and `dien-noaux` only).
    pub variant: Variant,
    /// Attention form (used by `dien*` and `din`).
    pub att: AttForm,
    /// Auxiliary-loss form (used by `dien` only).
    pub aux: AuxForm,
    /// Embedding width `d` (default 18).
    pub d: usize,
    /// GRU hidden width `H` (default 36).
    pub hidden: usize,
    /// Longest history kept, `max_len` (default 100).
    pub max_len: usize,
    /// User vocabulary size (rows of `emb.uid`).
    pub n_uid: usize,
    /// Item vocabulary size (rows of `emb.mid`).
    pub n_mid: usize,
    /// Category vocabulary size (rows of `emb.cat`).
    pub n_cat: usize,
    /// Weight of the auxiliary loss in the training objective (1.0; 0.0 for
    /// `dien-noaux`).
    pub alpha_aux: f32,
}

impl ModelConfig {
    /// A configuration with the default widths and forms of docs/MODEL.md (`d = 18`, `H = 36`,
    /// `max_len = 100`, `augru`, `mlp` attention and auxiliary head,
    /// `α_aux = 1`, or 0 for `dien-noaux`).
    pub fn new(model: ModelKind, n_uid: usize, n_mid: usize, n_cat: usize) -> Self {
        Self {
            model,
            variant: Variant::default(),
            att: AttForm::default(),
            aux: AuxForm::default(),
            d: 18,
            hidden: 36,
            max_len: 100,
            n_uid,
            n_mid,
            n_cat,
            alpha_aux: Self::default_alpha_aux(model),
        }
    }

    /// The default stored `alpha_aux` of `model`: 0 for `dien-noaux` (its
    /// checkpoints must record 0), 1 otherwise (unused but recorded by
    /// `din` and `base`).
    pub fn default_alpha_aux(model: ModelKind) -> f32 {
        if model == ModelKind::DienNoaux { 0.0 } else { 1.0 }
    }

    /// The weight the training objective gives the auxiliary loss:
    /// `alpha_aux` for `dien`, 0 for every model without an auxiliary loss
    /// (whatever `alpha_aux` holds; only `dien-noaux` must store 0, since its
    /// checkpoints record it).
    pub fn aux_weight(&self) -> f32 {
        if self.has_aux() { self.alpha_aux } else { 0.0 }
    }

    /// Checks every field; the error names the offending field.
    pub fn validate(&self) -> Result<(), ModelError> {
        let positive = [
            ("d", self.d),
            ("H", self.hidden),
            ("max_len", self.max_len),
            ("n_uid", self.n_uid),
            ("n_mid", self.n_mid),
            ("n_cat", self.n_cat),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(ModelError::Config(format!("{field} must be at least 1, got 0")));
            }
        }
        // Tensor sizes must be addressable; a vocabulary this large is a typo.
        for (field, rows) in [("n_uid", self.n_uid), ("n_mid", self.n_mid), ("n_cat", self.n_cat)] {
            if rows.checked_mul(self.d).is_none_or(|n| n > isize::MAX as usize / 4) {
                return Err(ModelError::Config(format!(
                    "{field} = {rows} with d = {} gives a table too large to store",
                    self.d
                )));
            }
        }
        if self.d > MAX_WIDTH || self.hidden > MAX_WIDTH {
            return Err(ModelError::Config(format!(
                "d = {} / H = {}: widths above {MAX_WIDTH} are not supported",
                self.d, self.hidden
            )));
        }
        // Checked before anything is allocated: a vocabulary index in the
        // billions would otherwise ask for hundreds of gigabytes.
        let total = crate::params::tensor_specs(self)
            .iter()
            .try_fold(0usize, |acc, s| s.shape.iter().try_fold(1usize, |n, &x| n.checked_mul(x))?.checked_add(acc));
        if total.is_none_or(|n| n > MAX_PARAMS) {
            return Err(ModelError::Config(format!(
                "tables of {} / {} / {} rows (uid / mid / cat) with d = {} and H = {} need more than {MAX_PARAMS} \
                 parameters ({} GiB): is a vocabulary index far larger than its number of entries?",
                self.n_uid,
                self.n_mid,
                self.n_cat,
                self.d,
                self.hidden,
                (MAX_PARAMS * 4) >> 30
            )));
        }
        if !self.alpha_aux.is_finite() || self.alpha_aux < 0.0 {
            return Err(ModelError::Config(format!(
                "alpha_aux must be finite and non-negative, got {}",
                self.alpha_aux
            )));
        }
        if self.model == ModelKind::DienNoaux && self.alpha_aux != 0.0 {
            return Err(ModelError::Config(format!(
                "alpha_aux must be 0 for model dien-noaux, got {}",
                self.alpha_aux
            )));
        }
        if self.has_aux() && self.aux == AuxForm::Dot && self.hidden != self.e() {
            return Err(ModelError::Config(format!(
                "aux = dot needs H == E = 2d, got H = {} and E = {}",
                self.hidden,
                self.e()
            )));
        }
        Ok(())
    }

    /// Item width `E = 2d` (an item embedding concatenated with its category's).
    pub fn e(&self) -> usize {
        2 * self.d
    }

    /// Whether the model has the two GRUs (`dien`, `dien-noaux`).
    pub fn has_gru(&self) -> bool {
        matches!(self.model, ModelKind::Dien | ModelKind::DienNoaux)
    }

    /// Whether the auxiliary loss exists (only `dien`; with `aux = mlp` it
    /// also owns the `aux.*` tensors, with `aux = dot` it has none).
    pub fn has_aux(&self) -> bool {
        self.model == ModelKind::Dien
    }

    /// Whether the auxiliary MLP head's tensors exist.
    pub fn has_aux_head(&self) -> bool {
        self.has_aux() && self.aux == AuxForm::Mlp
    }

    /// Whether the model has an attention layer (`dien*`, `din`).
    pub fn has_attention(&self) -> bool {
        self.model != ModelKind::Base
    }

    /// Width `A` of the vectors attended over: `H` for `dien*`, `E` for `din`
    /// (and `base`, which has no attention).
    pub fn att_width(&self) -> usize {
        if self.has_gru() { self.hidden } else { self.e() }
    }

    /// Width of the interest slot of the head input: `H` for `dien*`, `E`
    /// for `din` and `base`.
    pub fn interest_width(&self) -> usize {
        if self.has_gru() { self.hidden } else { self.e() }
    }

    /// Head input width `D = d + 3E + interest_width` (162 with defaults).
    pub fn head_in(&self) -> usize {
        self.d + 3 * self.e() + self.interest_width()
    }

    /// The checkpoint `__metadata__` entries of docs/MODEL.md#checkpoints (string values),
    /// including `format_version`.
    pub fn metadata(&self) -> BTreeMap<String, String> {
        let entries: [(&str, String); 12] = [
            ("format_version", FORMAT_VERSION.to_string()),
            ("model", self.model.name().to_string()),
            ("variant", self.variant.name().to_string()),
            ("att", self.att.name().to_string()),
            ("aux", self.aux.name().to_string()),
            ("d", self.d.to_string()),
            ("H", self.hidden.to_string()),
            ("max_len", self.max_len.to_string()),
            ("n_uid", self.n_uid.to_string()),
            ("n_mid", self.n_mid.to_string()),
            ("n_cat", self.n_cat.to_string()),
            // `Display` of f32 is the shortest string that parses back to the
            // same value, so this round-trips exactly.
            ("alpha_aux", self.alpha_aux.to_string()),
        ];
        entries.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    /// Parses [`ModelConfig::metadata`] back (extra keys are ignored) and
    /// validates the result. Errors name the missing or malformed key.
    pub fn from_metadata(meta: &HashMap<String, String>) -> Result<Self, ModelError> {
        let get = |key: &str| {
            meta.get(key)
                .map(String::as_str)
                .ok_or_else(|| ModelError::Config(format!("metadata key `{key}` is missing")))
        };
        let version = get("format_version")?;
        if version != FORMAT_VERSION {
            return Err(ModelError::Config(format!(
                "metadata key `format_version`: unsupported version `{version}` (this build reads {FORMAT_VERSION})"
            )));
        }
        fn parse<T: FromStr>(key: &str, value: &str) -> Result<T, ModelError>
        where
            T::Err: fmt::Display,
        {
            value.parse().map_err(|e| ModelError::Config(format!("metadata key `{key}`: cannot parse `{value}`: {e}")))
        }
        let cfg = Self {
            model: parse("model", get("model")?)?,
            variant: parse("variant", get("variant")?)?,
            att: parse("att", get("att")?)?,
            aux: parse("aux", get("aux")?)?,
            d: parse("d", get("d")?)?,
            hidden: parse("H", get("H")?)?,
            max_len: parse("max_len", get("max_len")?)?,
            n_uid: parse("n_uid", get("n_uid")?)?,
            n_mid: parse("n_mid", get("n_mid")?)?,
            n_cat: parse("n_cat", get("n_cat")?)?,
            alpha_aux: parse("alpha_aux", get("alpha_aux")?)?,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_text(r: Result<(), ModelError>) -> String {
        match r {
            Ok(()) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn names_round_trip_and_unknown_names_fail() {
        for &m in ModelKind::ALL {
            assert_eq!(m.name().parse::<ModelKind>().unwrap(), m);
            assert_eq!(m.to_string(), m.name());
        }
        for &v in Variant::ALL {
            assert_eq!(v.name().parse::<Variant>().unwrap(), v);
        }
        for &a in AttForm::ALL {
            assert_eq!(a.name().parse::<AttForm>().unwrap(), a);
        }
        for &a in AuxForm::ALL {
            assert_eq!(a.name().parse::<AuxForm>().unwrap(), a);
        }
        let names: Vec<_> = ModelKind::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(names, ["dien", "dien-noaux", "din", "base"]);
        // Checkpoints and command lines record these spellings: they never
        // change, and a new variant is appended to the table.
        let names: Vec<_> = Variant::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(names[..5], ["augru", "augru-ref", "agru", "aigru", "gru_att"]);
        let e = "DIEN".parse::<ModelKind>().unwrap_err().to_string();
        assert!(e.contains("model") && e.contains("DIEN"), "{e}");
        let e = "gru-att".parse::<Variant>().unwrap_err().to_string();
        assert!(e.contains("variant") && e.contains("gru_att"), "{e}");
    }

    #[test]
    fn defaults_and_derived_widths() {
        let c = ModelConfig::new(ModelKind::Dien, 10, 20, 5);
        c.validate().unwrap();
        assert_eq!((c.d, c.hidden, c.max_len, c.e()), (18, 36, 100, 36));
        assert_eq!(c.alpha_aux, 1.0);
        assert_eq!(c.head_in(), 162);
        assert!(c.has_gru() && c.has_aux() && c.has_attention());

        let c = ModelConfig::new(ModelKind::DienNoaux, 10, 20, 5);
        assert_eq!(c.alpha_aux, 0.0);
        assert!(c.has_gru() && !c.has_aux() && c.has_attention());

        let mut c = ModelConfig::new(ModelKind::Din, 10, 20, 5);
        c.hidden = 7; // must not matter for din
        assert!(!c.has_gru() && !c.has_aux() && c.has_attention());
        assert_eq!((c.att_width(), c.interest_width(), c.head_in()), (36, 36, 18 + 4 * 36));

        let c = ModelConfig::new(ModelKind::Base, 10, 20, 5);
        assert!(!c.has_gru() && !c.has_aux() && !c.has_attention());
        assert_eq!(c.head_in(), 18 + 4 * 36);
    }

    #[test]
    fn validation_errors_name_the_field() {
        let base = ModelConfig::new(ModelKind::Dien, 10, 20, 5);
        type Edit = Box<dyn Fn(&mut ModelConfig)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("d", Box::new(|c| c.d = 0)),
            ("H", Box::new(|c| c.hidden = 0)),
            ("max_len", Box::new(|c| c.max_len = 0)),
            ("n_uid", Box::new(|c| c.n_uid = 0)),
            ("n_mid", Box::new(|c| c.n_mid = 0)),
            ("n_cat", Box::new(|c| c.n_cat = 0)),
            ("n_mid", Box::new(|c| c.n_mid = usize::MAX / 2)),
            ("alpha_aux", Box::new(|c| c.alpha_aux = f32::NAN)),
            ("alpha_aux", Box::new(|c| c.alpha_aux = -1.0)),
            (
                "alpha_aux",
                Box::new(|c| {
                    c.model = ModelKind::DienNoaux;
                    c.alpha_aux = 0.5;
                }),
            ),
            (
                "aux = dot",
                Box::new(|c| {
                    c.aux = AuxForm::Dot;
                    c.hidden = 20;
                }),
            ),
        ];
        for (field, edit) in cases {
            let mut c = base.clone();
            edit(&mut c);
            let e = err_text(c.validate());
            assert!(e.starts_with("config: ") && e.contains(field), "{field}: {e}");
        }
        // aux = dot with H == E is fine; for models without the aux loss H is free.
        let mut c = base.clone();
        c.aux = AuxForm::Dot;
        c.validate().unwrap();
        c.hidden = 20;
        c.model = ModelKind::Din;
        c.validate().unwrap();
    }

    #[test]
    fn metadata_round_trips_every_field() {
        let mut c = ModelConfig::new(ModelKind::Din, 11, 23, 7);
        c.variant = Variant::GruAtt;
        c.att = AttForm::Bilinear;
        c.aux = AuxForm::Dot;
        c.d = 5;
        c.hidden = 9;
        c.max_len = 42;
        c.alpha_aux = 0.1 + 0.2; // not exactly representable in decimal
        let meta = c.metadata();
        let keys: Vec<_> = meta.keys().map(String::as_str).collect();
        for k in [
            "format_version",
            "model",
            "variant",
            "att",
            "aux",
            "d",
            "H",
            "max_len",
            "n_uid",
            "n_mid",
            "n_cat",
            "alpha_aux",
        ] {
            assert!(keys.contains(&k), "missing {k}");
        }
        assert_eq!(meta["format_version"], "1");
        assert_eq!(meta["H"], "9");
        let back = ModelConfig::from_metadata(&meta.into_iter().collect()).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.alpha_aux.to_bits(), c.alpha_aux.to_bits());
    }

    #[test]
    fn from_metadata_errors_name_the_key() {
        let good: HashMap<String, String> = ModelConfig::new(ModelKind::Dien, 3, 4, 5).metadata().into_iter().collect();
        for key in good.keys() {
            let mut m = good.clone();
            m.remove(key);
            let e = ModelConfig::from_metadata(&m).unwrap_err().to_string();
            assert!(e.contains(&format!("`{key}`")) && e.contains("missing"), "{key}: {e}");

            let mut m = good.clone();
            m.insert(key.clone(), "x?".into());
            let e = ModelConfig::from_metadata(&m).unwrap_err().to_string();
            assert!(e.contains(&format!("`{key}`")), "{key}: {e}");
        }
        let mut m = good.clone();
        m.insert("format_version".into(), "2".into());
        let e = ModelConfig::from_metadata(&m).unwrap_err().to_string();
        assert!(e.contains("format_version") && e.contains("unsupported"), "{e}");
        // Parsed values are validated too.
        let mut m = good.clone();
        m.insert("n_mid".into(), "0".into());
        let e = ModelConfig::from_metadata(&m).unwrap_err().to_string();
        assert!(e.contains("n_mid"), "{e}");
        // Extra keys are allowed.
        let mut m = good;
        m.insert("note".into(), "anything".into());
        ModelConfig::from_metadata(&m).unwrap();
    }
}
