//! The tensors of a model (SPEC §2–§7, §9, §10): their names, shapes, kinds
//! and initialisers ([`tensor_specs`]), and a flat store holding one buffer
//! per tensor ([`ParamStore`]), used for parameters, gradients and optimiser
//! state alike.

use std::collections::HashMap;
use std::fmt;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::{AttForm, ModelConfig};

/// Whether a tensor is trained or is a running statistic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TensorKind {
    /// A trainable parameter (has a gradient).
    Param,
    /// A running statistic of BatchNorm or Dice (no gradient).
    Buffer,
}

/// How a tensor starts (SPEC §2–§7).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// Independent `N(0, std²)` entries.
    Normal {
        /// Standard deviation.
        std: f32,
    },
    /// Glorot (Xavier) uniform: `U(±sqrt(6 / (fan_in + fan_out)))` for a
    /// `[out, in]` weight.
    GlorotUniform,
    /// `U(±bound)`.
    Uniform {
        /// Half-width of the interval.
        bound: f32,
    },
    /// Every entry equal to the constant.
    Const(f32),
    /// GRU bias `[3H]`: 1.0 for the `r` and `u` blocks, 0.0 for `c`.
    GruBias,
}

/// A tensor's position in the canonical order of [`tensor_specs`]: how the
/// training step addresses parameters, gradients and optimiser state, so
/// that no step looks a tensor up by name. Resolved once, when a model or an
/// optimiser is built ([`ParamStore::id`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(pub(crate) u32);

impl TensorId {
    /// The id of the `i`-th tensor of [`tensor_specs`].
    pub fn from_index(i: usize) -> Self {
        Self(u32::try_from(i).expect("fewer than 2^32 tensors"))
    }

    /// The position in [`tensor_specs`] order.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Name, shape, kind and initialiser of one tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    /// Canonical name (the checkpoint key), e.g. `gru1.w_ih`.
    pub name: String,
    /// Shape, row-major; weights are `[out, in]`.
    pub shape: Vec<usize>,
    /// Parameter or buffer.
    pub kind: TensorKind,
    /// Initialiser.
    pub init: Init,
}

impl TensorSpec {
    fn new(name: impl Into<String>, shape: &[usize], kind: TensorKind, init: Init) -> Self {
        Self { name: name.into(), shape: shape.to_vec(), kind, init }
    }

    /// Number of elements (product of the shape).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Appends a dense layer `prefix.w [out, inp]` (Glorot) and `prefix.b [out]` (0).
fn dense(specs: &mut Vec<TensorSpec>, prefix: &str, out: usize, inp: usize) {
    specs.push(TensorSpec::new(format!("{prefix}.w"), &[out, inp], TensorKind::Param, Init::GlorotUniform));
    specs.push(TensorSpec::new(format!("{prefix}.b"), &[out], TensorKind::Param, Init::Const(0.0)));
}

/// Appends a GRU `prefix.w_ih [3H, inp]`, `prefix.w_hh [3H, H]`, `prefix.b [3H]`.
fn gru(specs: &mut Vec<TensorSpec>, prefix: &str, hidden: usize, inp: usize) {
    let bound = (1.0 / hidden as f64).sqrt() as f32;
    let w = Init::Uniform { bound };
    specs.push(TensorSpec::new(format!("{prefix}.w_ih"), &[3 * hidden, inp], TensorKind::Param, w));
    specs.push(TensorSpec::new(format!("{prefix}.w_hh"), &[3 * hidden, hidden], TensorKind::Param, w));
    specs.push(TensorSpec::new(format!("{prefix}.b"), &[3 * hidden], TensorKind::Param, Init::GruBias));
}

/// Appends a Dice layer's `alpha` (Param, 0) and running statistics.
fn dice(specs: &mut Vec<TensorSpec>, prefix: &str, width: usize) {
    specs.push(TensorSpec::new(format!("{prefix}.alpha"), &[width], TensorKind::Param, Init::Const(0.0)));
    specs.push(TensorSpec::new(format!("{prefix}.running_mean"), &[width], TensorKind::Buffer, Init::Const(0.0)));
    specs.push(TensorSpec::new(format!("{prefix}.running_var"), &[width], TensorKind::Buffer, Init::Const(1.0)));
}

/// Exactly the SPEC §10 tensors of `cfg`, in a fixed canonical order:
/// embeddings, `gru1`, `gru2`, `aux`, `att`, `head`.
///
/// The configuration is assumed valid ([`ModelConfig::validate`]).
pub fn tensor_specs(cfg: &ModelConfig) -> Vec<TensorSpec> {
    use TensorKind::{Buffer, Param};
    let (d, e, h) = (cfg.d, cfg.e(), cfg.hidden);
    let mut s = Vec::new();

    let emb = Init::Normal { std: 0.01 };
    s.push(TensorSpec::new("emb.uid", &[cfg.n_uid, d], Param, emb));
    s.push(TensorSpec::new("emb.mid", &[cfg.n_mid, d], Param, emb));
    s.push(TensorSpec::new("emb.cat", &[cfg.n_cat, d], Param, emb));

    if cfg.has_gru() {
        gru(&mut s, "gru1", h, e);
        gru(&mut s, "gru2", h, h);
    }

    if cfg.has_aux_head() {
        dense(&mut s, "aux.fc1", 100, h + e);
        dense(&mut s, "aux.fc2", 50, 100);
        dense(&mut s, "aux.fc3", 1, 50);
    }

    if cfg.has_attention() {
        let a = cfg.att_width();
        match cfg.att {
            AttForm::Mlp => {
                dense(&mut s, "att.q", a, e);
                s.push(TensorSpec::new("att.q.prelu", &[a], Param, Init::Const(0.1)));
                dense(&mut s, "att.fc1", 80, 4 * a);
                dense(&mut s, "att.fc2", 40, 80);
                dense(&mut s, "att.fc3", 1, 40);
            }
            AttForm::Bilinear => {
                s.push(TensorSpec::new("att.w", &[a, e], Param, Init::GlorotUniform));
            }
        }
    }

    let dh = cfg.head_in();
    s.push(TensorSpec::new("head.bn.gamma", &[dh], Param, Init::Const(1.0)));
    s.push(TensorSpec::new("head.bn.beta", &[dh], Param, Init::Const(0.0)));
    s.push(TensorSpec::new("head.bn.running_mean", &[dh], Buffer, Init::Const(0.0)));
    s.push(TensorSpec::new("head.bn.running_var", &[dh], Buffer, Init::Const(1.0)));
    dense(&mut s, "head.fc1", 200, dh);
    dice(&mut s, "head.dice1", 200);
    dense(&mut s, "head.fc2", 80, 200);
    dice(&mut s, "head.dice2", 80);
    dense(&mut s, "head.fc3", 1, 80);
    s
}

/// One flat buffer per tensor of a model, addressed by name or by index in
/// the canonical order of [`tensor_specs`].
///
/// `T` is `f32` for parameters and gradients, `f64` for the reference path,
/// or whatever an optimiser keeps per element.
#[derive(Clone, PartialEq)]
pub struct ParamStore<T> {
    specs: Vec<TensorSpec>,
    data: Vec<Vec<T>>,
    index: HashMap<String, usize>,
}

impl<T> fmt::Debug for ParamStore<T> {
    /// Names and shapes only: the values of a model are too many to print.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.specs.iter().map(|s| (&s.name, &s.shape))).finish()
    }
}

fn index_map(specs: &[TensorSpec]) -> HashMap<String, usize> {
    specs.iter().enumerate().map(|(i, s)| (s.name.clone(), i)).collect()
}

impl<T: Copy + Default> ParamStore<T> {
    /// Every tensor of `cfg`, filled with `T::default()` (zero).
    pub fn zeros(cfg: &ModelConfig) -> Self {
        let specs = tensor_specs(cfg);
        let data = specs.iter().map(|s| vec![T::default(); s.numel()]).collect();
        let index = index_map(&specs);
        Self { specs, data, index }
    }

    /// The specs, in canonical order.
    pub fn specs(&self) -> &[TensorSpec] {
        &self.specs
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// Whether the store holds no tensor (never, for a valid configuration).
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// Total number of elements over all tensors.
    pub fn numel(&self) -> usize {
        self.data.iter().map(Vec::len).sum()
    }

    /// Canonical index of the tensor `name`, if the model has it.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// The id of tensor `name`, if the model has it.
    pub fn id(&self, name: &str) -> Option<TensorId> {
        self.index_of(name).map(TensorId::from_index)
    }

    /// The id of tensor `name`.
    ///
    /// # Panics
    /// If the model has no such tensor (a programming error).
    pub fn expect_id(&self, name: &str) -> TensorId {
        self.id(name).unwrap_or_else(|| panic!("no tensor named `{name}` in this model"))
    }

    /// The values of tensor `id`.
    pub fn at(&self, id: TensorId) -> &[T] {
        &self.data[id.index()]
    }

    /// Mutable values of tensor `id`.
    pub fn at_mut(&mut self, id: TensorId) -> &mut [T] {
        &mut self.data[id.index()]
    }

    /// The values of tensor `name`.
    ///
    /// # Panics
    /// If the model has no such tensor (a programming error; use
    /// [`ParamStore::try_get`] when the name comes from outside).
    pub fn get(&self, name: &str) -> &[T] {
        match self.try_get(name) {
            Some(v) => v,
            None => panic!("no tensor named `{name}` in this model"),
        }
    }

    /// The values of tensor `name`, or `None` if the model has no such tensor.
    pub fn try_get(&self, name: &str) -> Option<&[T]> {
        self.index_of(name).map(|i| self.data[i].as_slice())
    }

    /// Mutable values of tensor `name`.
    ///
    /// # Panics
    /// If the model has no such tensor.
    pub fn get_mut(&mut self, name: &str) -> &mut [T] {
        match self.index_of(name) {
            Some(i) => &mut self.data[i],
            None => panic!("no tensor named `{name}` in this model"),
        }
    }

    /// Mutable values of tensor `name`, or `None` if the model has no such tensor.
    pub fn try_get_mut(&mut self, name: &str) -> Option<&mut [T]> {
        self.index_of(name).map(|i| self.data[i].as_mut_slice())
    }

    /// The values of the `i`-th tensor in canonical order.
    pub fn data(&self, i: usize) -> &[T] {
        &self.data[i]
    }

    /// Mutable values of the `i`-th tensor in canonical order.
    pub fn data_mut(&mut self, i: usize) -> &mut [T] {
        &mut self.data[i]
    }

    /// `(spec, values)` for every tensor, in canonical order.
    pub fn iter(&self) -> impl Iterator<Item = (&TensorSpec, &[T])> {
        self.specs.iter().zip(self.data.iter().map(Vec::as_slice))
    }

    /// `(spec, values)` with mutable values, in canonical order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&TensorSpec, &mut [T])> {
        self.specs.iter().zip(self.data.iter_mut().map(Vec::as_mut_slice))
    }

    /// A store of the same tensors with `f` applied elementwise (e.g. `f32 → f64`).
    pub fn map<U>(&self, f: impl Fn(T) -> U) -> ParamStore<U> {
        ParamStore {
            specs: self.specs.clone(),
            data: self.data.iter().map(|v| v.iter().map(|&x| f(x)).collect()).collect(),
            index: self.index.clone(),
        }
    }

    /// Sets every element of every tensor to `value` (e.g. zeroing gradients).
    pub fn fill(&mut self, value: T) {
        for v in &mut self.data {
            v.fill(value);
        }
    }

    /// A store for `cfg` holding the given buffers, one per spec in canonical
    /// order; `None` if the count or any length does not match the specs.
    pub fn from_data(cfg: &ModelConfig, data: Vec<Vec<T>>) -> Option<Self> {
        let specs = tensor_specs(cfg);
        if data.len() != specs.len() || specs.iter().zip(&data).any(|(s, v)| s.numel() != v.len()) {
            return None;
        }
        let index = index_map(&specs);
        Some(Self { specs, data, index })
    }
}

/// FNV-1a of a tensor name: the ChaCha stream of that tensor, so each tensor's
/// initial values depend only on the seed and its name, not on which other
/// tensors the model has (the models of an ablation share their embeddings
/// and head initialisation for one seed).
fn name_stream(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// Fills `out` with independent standard-normal draws (Box–Muller in f64).
fn fill_normal(rng: &mut ChaCha8Rng, std: f32, out: &mut [f32]) {
    let std = f64::from(std);
    for pair in out.chunks_mut(2) {
        // 1 − U lies in (0, 1], so the logarithm is finite.
        let u1 = 1.0 - rng.random::<f64>();
        let u2 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt() * std;
        let theta = std::f64::consts::TAU * u2;
        pair[0] = (r * theta.cos()) as f32;
        if let Some(second) = pair.get_mut(1) {
            *second = (r * theta.sin()) as f32;
        }
    }
}

/// Fills `out` with `U(−bound, bound)` draws.
fn fill_uniform(rng: &mut ChaCha8Rng, bound: f32, out: &mut [f32]) {
    let bound = f64::from(bound);
    for x in out {
        *x = ((rng.random::<f64>() * 2.0 - 1.0) * bound) as f32;
    }
}

/// Half-width of the Glorot-uniform interval of a `[out, in]` weight.
pub fn glorot_bound(shape: &[usize]) -> f32 {
    let (fan_out, fan_in) = match shape {
        [out, inp] => (*out, *inp),
        _ => {
            let n = shape.iter().product();
            (n, n)
        }
    };
    (6.0 / (fan_in + fan_out) as f64).sqrt() as f32
}

impl<T> ParamStore<T> {
    /// Checks that this store holds exactly the tensors of `cfg` (names,
    /// order, shapes and lengths); the error names the first mismatch.
    pub fn check_matches(&self, cfg: &ModelConfig) -> Result<(), crate::ModelError> {
        let specs = tensor_specs(cfg);
        if specs.len() != self.specs.len() {
            return Err(crate::ModelError::Config(format!(
                "parameter store has {} tensors, config needs {}",
                self.specs.len(),
                specs.len()
            )));
        }
        for (want, (have, data)) in specs.iter().zip(self.specs.iter().zip(&self.data)) {
            if want.name != have.name || want.shape != have.shape || data.len() != want.numel() {
                return Err(crate::ModelError::Config(format!(
                    "tensor {} {:?} does not match the config's {} {:?}",
                    have.name, have.shape, want.name, want.shape
                )));
            }
        }
        Ok(())
    }
}

impl ParamStore<f32> {
    /// Every tensor of `cfg` initialised by its [`Init`] rule (SPEC §2–§7).
    ///
    /// Deterministic: each tensor draws from `ChaCha8Rng` seeded with `seed`
    /// on a stream derived from the tensor's name.
    pub fn init(cfg: &ModelConfig, seed: u64) -> Self {
        let mut store = Self::zeros(cfg);
        for (spec, out) in store.iter_mut() {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(name_stream(&spec.name));
            match spec.init {
                Init::Normal { std } => fill_normal(&mut rng, std, out),
                Init::GlorotUniform => fill_uniform(&mut rng, glorot_bound(&spec.shape), out),
                Init::Uniform { bound } => fill_uniform(&mut rng, bound, out),
                Init::Const(c) => out.fill(c),
                Init::GruBias => {
                    let h = out.len() / 3;
                    out[..2 * h].fill(1.0);
                    out[2 * h..].fill(0.0);
                }
            }
        }
        store
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuxForm, ModelKind, Variant};

    /// The SPEC §10 tensor list written out independently of `tensor_specs`.
    fn expected(cfg: &ModelConfig) -> Vec<(String, Vec<usize>)> {
        let (d, e, h) = (cfg.d, cfg.e(), cfg.hidden);
        let mut v: Vec<(&str, Vec<usize>)> =
            vec![("emb.uid", vec![cfg.n_uid, d]), ("emb.mid", vec![cfg.n_mid, d]), ("emb.cat", vec![cfg.n_cat, d])];
        let gru_model = matches!(cfg.model, ModelKind::Dien | ModelKind::DienNoaux);
        if gru_model {
            v.extend([
                ("gru1.w_ih", vec![3 * h, e]),
                ("gru1.w_hh", vec![3 * h, h]),
                ("gru1.b", vec![3 * h]),
                ("gru2.w_ih", vec![3 * h, h]),
                ("gru2.w_hh", vec![3 * h, h]),
                ("gru2.b", vec![3 * h]),
            ]);
        }
        if cfg.model == ModelKind::Dien && cfg.aux == AuxForm::Mlp {
            v.extend([
                ("aux.fc1.w", vec![100, h + e]),
                ("aux.fc1.b", vec![100]),
                ("aux.fc2.w", vec![50, 100]),
                ("aux.fc2.b", vec![50]),
                ("aux.fc3.w", vec![1, 50]),
                ("aux.fc3.b", vec![1]),
            ]);
        }
        let a = if gru_model { h } else { e };
        if cfg.model != ModelKind::Base {
            match cfg.att {
                AttForm::Mlp => v.extend([
                    ("att.q.w", vec![a, e]),
                    ("att.q.b", vec![a]),
                    ("att.q.prelu", vec![a]),
                    ("att.fc1.w", vec![80, 4 * a]),
                    ("att.fc1.b", vec![80]),
                    ("att.fc2.w", vec![40, 80]),
                    ("att.fc2.b", vec![40]),
                    ("att.fc3.w", vec![1, 40]),
                    ("att.fc3.b", vec![1]),
                ]),
                AttForm::Bilinear => v.push(("att.w", vec![a, e])),
            }
        }
        let dh = d + 3 * e + if gru_model { h } else { e };
        v.extend([
            ("head.bn.gamma", vec![dh]),
            ("head.bn.beta", vec![dh]),
            ("head.bn.running_mean", vec![dh]),
            ("head.bn.running_var", vec![dh]),
            ("head.fc1.w", vec![200, dh]),
            ("head.fc1.b", vec![200]),
            ("head.dice1.alpha", vec![200]),
            ("head.dice1.running_mean", vec![200]),
            ("head.dice1.running_var", vec![200]),
            ("head.fc2.w", vec![80, 200]),
            ("head.fc2.b", vec![80]),
            ("head.dice2.alpha", vec![80]),
            ("head.dice2.running_mean", vec![80]),
            ("head.dice2.running_var", vec![80]),
            ("head.fc3.w", vec![1, 80]),
            ("head.fc3.b", vec![1]),
        ]);
        v.into_iter().map(|(n, s)| (n.to_string(), s)).collect()
    }

    fn all_configs() -> Vec<ModelConfig> {
        let mut out = Vec::new();
        for &model in ModelKind::ALL {
            for &variant in Variant::ALL {
                for &att in AttForm::ALL {
                    for &aux in AuxForm::ALL {
                        for (d, hidden) in [(18, 36), (3, 5)] {
                            let mut c = ModelConfig::new(model, 7, 11, 4);
                            c.variant = variant;
                            c.att = att;
                            c.aux = aux;
                            c.d = d;
                            c.hidden = hidden;
                            if c.validate().is_ok() {
                                out.push(c);
                            }
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn specs_match_spec_for_every_combination() {
        let configs = all_configs();
        // models × variants × att forms × aux forms × 2 sizes, minus dien/dot
        // with H ≠ E (variants × att forms, small size only).
        let (m, v, a, x) = (ModelKind::ALL.len(), Variant::ALL.len(), AttForm::ALL.len(), AuxForm::ALL.len());
        assert_eq!(configs.len(), m * v * a * x * 2 - v * a);
        for cfg in &configs {
            let got: Vec<_> = tensor_specs(cfg).into_iter().map(|s| (s.name, s.shape)).collect();
            assert_eq!(got, expected(cfg), "{cfg:?}");
        }
        let dien = ModelConfig::new(ModelKind::Dien, 7, 11, 4);
        let mut dot = dien.clone();
        dot.aux = AuxForm::Dot;
        assert!(tensor_specs(&dot).iter().all(|s| !s.name.starts_with("aux.")));
        assert!(tensor_specs(&dien).iter().any(|s| s.name == "aux.fc1.w"));
    }

    #[test]
    fn kinds_and_init_rules() {
        let cfg = ModelConfig::new(ModelKind::Dien, 7, 11, 4);
        for s in tensor_specs(&cfg) {
            let is_buffer = s.name.ends_with("running_mean") || s.name.ends_with("running_var");
            assert_eq!(s.kind == TensorKind::Buffer, is_buffer, "{}", s.name);
            let want = if s.name.starts_with("emb.") {
                Init::Normal { std: 0.01 }
            } else if s.name.starts_with("gru") && s.name.ends_with(".b") {
                Init::GruBias
            } else if s.name.starts_with("gru") {
                Init::Uniform { bound: (1.0f64 / 36.0).sqrt() as f32 }
            } else if s.name.ends_with(".w") {
                Init::GlorotUniform
            } else if [".b", "beta", "running_mean", "alpha"].iter().any(|x| s.name.ends_with(x)) {
                Init::Const(0.0)
            } else if s.name.ends_with("gamma") || s.name.ends_with("running_var") {
                Init::Const(1.0)
            } else if s.name == "att.q.prelu" {
                Init::Const(0.1)
            } else {
                panic!("unexpected tensor {}", s.name)
            };
            assert_eq!(s.init, want, "{}", s.name);
        }
    }

    fn mean_std(v: &[f32]) -> (f64, f64) {
        let n = v.len() as f64;
        let m = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = v.iter().map(|&x| (f64::from(x) - m).powi(2)).sum::<f64>() / n;
        (m, var.sqrt())
    }

    #[test]
    fn init_statistics() {
        let mut cfg = ModelConfig::new(ModelKind::Dien, 5, 20_000, 50);
        cfg.hidden = 36;
        let p = ParamStore::init(&cfg, 7);

        // Embeddings: N(0, 0.01²). 360k samples: the std estimate is good to ~0.2 %.
        let mid = p.get("emb.mid");
        let (m, s) = mean_std(mid);
        assert!(m.abs() < 1e-4, "mean {m}");
        assert!((s - 0.01).abs() < 1e-4, "std {s}");
        // Normal, not uniform: about 4.55 % beyond 2σ (uniform with this std: 0 %).
        let tail = mid.iter().filter(|&&x| x.abs() > 0.02).count() as f64 / mid.len() as f64;
        assert!((tail - 0.0455).abs() < 0.003, "tail {tail}");

        // Glorot: bound sqrt(6 / (in + out)), filling it (max near bound), mean ~0.
        let w = p.get("head.fc1.w");
        let bound = (6.0f64 / (162.0 + 200.0)).sqrt();
        let max = w.iter().fold(0.0f64, |a, &x| a.max(f64::from(x).abs()));
        assert!(max <= bound && max > 0.99 * bound, "max {max} bound {bound}");
        let (m, s) = mean_std(w);
        assert!(m.abs() < 0.01 * bound && (s - bound / 3f64.sqrt()).abs() < 0.01 * bound, "{m} {s}");

        // GRU weights: U(±sqrt(1/H)).
        let b = (1.0f64 / 36.0).sqrt();
        for name in ["gru1.w_ih", "gru1.w_hh", "gru2.w_ih", "gru2.w_hh"] {
            let w = p.get(name);
            let max = w.iter().fold(0.0f64, |a, &x| a.max(f64::from(x).abs()));
            assert!(max <= b && max > 0.95 * b, "{name}: max {max}");
        }
        // GRU bias: r and u blocks 1, c block 0.
        for name in ["gru1.b", "gru2.b"] {
            let bias = p.get(name);
            assert!(bias[..72].iter().all(|&x| x == 1.0) && bias[72..].iter().all(|&x| x == 0.0), "{name}");
        }
        // Constants.
        assert!(p.get("att.q.prelu").iter().all(|&x| x == 0.1));
        assert!(p.get("head.bn.gamma").iter().all(|&x| x == 1.0));
        assert!(p.get("head.bn.running_var").iter().all(|&x| x == 1.0));
        assert!(p.get("head.dice2.running_mean").iter().all(|&x| x == 0.0));
        assert!(p.get("head.dice1.alpha").iter().all(|&x| x == 0.0));
        assert!(p.get("aux.fc2.b").iter().all(|&x| x == 0.0));
    }

    #[test]
    fn init_is_deterministic_and_seed_dependent() {
        let cfg = ModelConfig::new(ModelKind::Dien, 9, 13, 5);
        let a = ParamStore::init(&cfg, 42);
        let b = ParamStore::init(&cfg, 42);
        let c = ParamStore::init(&cfg, 43);
        assert!(
            a.iter().zip(b.iter()).all(|((_, x), (_, y))| x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits()))
        );
        for (spec, x) in a.iter() {
            let y = c.get(&spec.name);
            let random = !matches!(spec.init, Init::Const(_) | Init::GruBias);
            assert_eq!(x != y, random, "{}", spec.name);
        }
        // Different tensors of one shape get different values.
        assert_ne!(a.get("gru2.w_hh"), a.get("gru1.w_hh"));
        // A tensor's values depend on seed and name only, not on the other tensors.
        let din = ParamStore::init(&ModelConfig::new(ModelKind::Din, 9, 13, 5), 42);
        assert_eq!(din.get("emb.mid"), a.get("emb.mid"));
    }

    #[test]
    fn store_access_and_map() {
        let cfg = ModelConfig::new(ModelKind::Din, 3, 4, 2);
        let mut p: ParamStore<f32> = ParamStore::zeros(&cfg);
        assert_eq!(p.len(), tensor_specs(&cfg).len());
        assert!(!p.is_empty());
        assert_eq!(p.numel(), tensor_specs(&cfg).iter().map(TensorSpec::numel).sum::<usize>());
        assert!(p.try_get("gru1.b").is_none() && p.index_of("gru1.b").is_none());
        let i = p.index_of("emb.cat").unwrap();
        assert_eq!(p.specs()[i].name, "emb.cat");
        p.get_mut("emb.cat")[5] = 2.5;
        assert_eq!(p.data(i)[5], 2.5);
        p.data_mut(i)[0] = -1.0;
        assert_eq!(p.get("emb.cat")[0], -1.0);
        let q: ParamStore<f64> = p.map(|x| f64::from(x) * 2.0);
        assert_eq!(q.get("emb.cat")[5], 5.0);
        assert_eq!(q.specs(), p.specs());
        for ((s, a), (t, b)) in p.iter().zip(q.iter()) {
            assert_eq!(s, t);
            assert_eq!(a.len(), b.len());
        }
        p.fill(0.0);
        assert!(p.iter().all(|(_, v)| v.iter().all(|&x| x == 0.0)));

        let data: Vec<Vec<f32>> = p.iter().map(|(_, v)| v.to_vec()).collect();
        assert!(ParamStore::from_data(&cfg, data.clone()).is_some());
        let mut short = data.clone();
        short[2].pop();
        assert!(ParamStore::from_data(&cfg, short).is_none());
        assert!(ParamStore::from_data(&cfg, data[1..].to_vec()).is_none());
    }

    #[test]
    #[should_panic(expected = "no tensor named `gru1.b`")]
    fn get_unknown_name_panics() {
        let p: ParamStore<f32> = ParamStore::zeros(&ModelConfig::new(ModelKind::Base, 3, 4, 2));
        let _ = p.get("gru1.b");
    }
}
