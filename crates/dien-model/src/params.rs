//! The tensors of a model (docs/MODEL.md#tensors): their names, shapes, kinds
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

/// How a tensor starts (docs/MODEL.md#tensors).
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

/// Exactly the tensors of `cfg` listed in docs/MODEL.md#tensors, in a fixed canonical order:
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
    /// Every tensor of `cfg` initialised by its [`Init`] rule (docs/MODEL.md#tensors).
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
mod tests;
