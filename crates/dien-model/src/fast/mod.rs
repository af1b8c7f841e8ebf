//! The fast `f32` path of every model: forward (training and evaluation)
//! and whole-model backward, batch-parallel and bit-identical for any
//! number of threads.
//!
//! Stages run one after another; inside a stage the batch is cut into fixed
//! chunks ([`CHUNK`] samples here, `dien_engine::cell::fast::CHUNK` inside
//! the recurrent cells) that run on `rayon`, and per-chunk parameter
//! gradients are summed in chunk order. BatchNorm and Dice couple the
//! samples, so the head runs on the whole batch.
//!
//! Buffers live in the model and are reused: after the first batch of a
//! given size, a step allocates nothing of its own (the weight-gradient
//! GEMMs go through `matrixmultiply`, which manages its own packing buffer).

// Index loops mirror the equations' subscripts; stage functions take many slices.
#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

mod attention;
mod aux;
pub(crate) mod dense;
mod head;

use std::collections::HashMap;

use dien_engine::cell::fast::{CellWorkspace, GruCell, Mode as CellMode};
use dien_engine::cell::{CellKind, GruGrads, GruParams, SeqInput};
use rayon::prelude::*;

use self::attention::{AttChunk, AttPacked};
use self::aux::{AuxChunk, AuxPacked};
use self::head::{HeadGrads, HeadPacked, HeadWs, MOMENTUM};
use crate::batch::Batch;
use crate::config::{ModelConfig, ModelKind, Variant};
use crate::error::ModelError;
use crate::mode::Mode;
use crate::params::{ParamStore, TensorId, TensorKind, tensor_specs};

/// Samples per chunk in the attention and auxiliary stages: the unit of
/// parallel work and of the fixed gradient-reduction order.
pub const CHUNK: usize = 8;

/// The three parts of the loss of one batch (SPEC §4, §7).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Losses {
    /// `L_target + α_aux · L_aux`: the training objective.
    pub loss: f64,
    /// Mean target log loss.
    pub loss_target: f64,
    /// Auxiliary loss (0 without negatives or without an auxiliary head).
    pub loss_aux: f64,
}

/// Gradient rows of one embedding table: only the rows looked up by the
/// batch (at non-padded positions, negatives included), duplicates summed,
/// sorted by row index.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SparseRows {
    /// Row width (`d`).
    pub width: usize,
    /// Touched row indices, ascending.
    pub rows: Vec<u32>,
    /// `rows.len() × width` gradient values, row `i` for `rows[i]`.
    pub values: Vec<f32>,
    slot: HashMap<u32, u32>,
    scratch: Vec<f32>,
    order: Vec<(u32, u32)>,
}

impl SparseRows {
    fn new(width: usize) -> Self {
        Self { width, ..Default::default() }
    }
    fn clear(&mut self) {
        self.slot.clear();
        self.scratch.clear();
    }
    fn add(&mut self, row: u32, g: &[f32]) {
        let w = self.width;
        let next = self.slot.len() as u32;
        let s = *self.slot.entry(row).or_insert(next) as usize;
        if s == self.scratch.len() / w {
            self.scratch.extend_from_slice(g);
        } else {
            for (x, &y) in self.scratch[s * w..(s + 1) * w].iter_mut().zip(g) {
                *x += y;
            }
        }
    }
    fn finish(&mut self) {
        let w = self.width;
        self.order.clear();
        self.order.extend(self.slot.iter().map(|(&r, &s)| (r, s)));
        self.order.sort_unstable();
        self.rows.clear();
        self.values.clear();
        for &(r, s) in &self.order {
            self.rows.push(r);
            self.values.extend_from_slice(&self.scratch[s as usize * w..(s as usize + 1) * w]);
        }
    }
    /// The gradient of row `row`, if the batch touched it.
    pub fn row(&self, row: u32) -> Option<&[f32]> {
        let i = self.rows.binary_search(&row).ok()?;
        Some(&self.values[i * self.width..(i + 1) * self.width])
    }
    /// Writes the rows into a dense `[n_rows, width]` gradient (others zero).
    pub fn to_dense(&self, n_rows: usize) -> Vec<f32> {
        let mut out = vec![0.0; n_rows * self.width];
        for (i, &r) in self.rows.iter().enumerate() {
            out[r as usize * self.width..(r as usize + 1) * self.width]
                .copy_from_slice(&self.values[i * self.width..(i + 1) * self.width]);
        }
        out
    }
}

/// Gradients of one training step, addressed by [`TensorId`].
#[derive(Clone, Debug)]
pub struct Gradients {
    names: Vec<String>,
    /// Dense gradient per tensor of [`tensor_specs`] order; empty for
    /// embeddings (see `emb`) and running-statistic buffers.
    dense: Vec<Vec<f32>>,
    /// Ids of the tensors with a dense gradient, ascending.
    dense_ids: Vec<TensorId>,
    /// Sparse gradients of `emb.uid`, `emb.mid`, `emb.cat`.
    pub emb: [SparseRows; 3],
}

/// Embedding table names, in the order of [`Gradients::emb`].
pub const EMB_TABLES: [&str; 3] = ["emb.uid", "emb.mid", "emb.cat"];

impl Gradients {
    fn new(cfg: &ModelConfig) -> Self {
        let specs = tensor_specs(cfg);
        let dense: Vec<Vec<f32>> = specs
            .iter()
            .map(|s| {
                if s.kind == TensorKind::Param && !EMB_TABLES.contains(&s.name.as_str()) {
                    vec![0.0; s.numel()]
                } else {
                    Vec::new()
                }
            })
            .collect();
        let d = cfg.d;
        let dense_ids = (0..specs.len()).filter(|&i| !dense[i].is_empty()).map(TensorId::from_index).collect();
        Self {
            names: specs.into_iter().map(|s| s.name).collect(),
            dense,
            dense_ids,
            emb: [SparseRows::new(d), SparseRows::new(d), SparseRows::new(d)],
        }
    }
    /// The dense gradient of tensor `id` (`None` for embeddings and buffers).
    pub fn dense_at(&self, id: TensorId) -> Option<&[f32]> {
        let g = &self.dense[id.index()];
        (!g.is_empty()).then_some(g.as_slice())
    }
    /// Iterates over `(id, dense gradient)` of the non-embedding parameters,
    /// in [`tensor_specs`] order: what an optimiser step walks (no lookup,
    /// no allocation).
    pub fn dense_by_id(&self) -> impl Iterator<Item = (TensorId, &[f32])> {
        self.dense_ids.iter().map(|&id| (id, self.dense[id.index()].as_slice()))
    }
    /// The canonical name of tensor `id` (for messages).
    pub fn name(&self, id: TensorId) -> &str {
        &self.names[id.index()]
    }
    /// The dense gradient of a non-embedding parameter (`None` for
    /// embeddings, buffers and unknown names).
    pub fn dense(&self, name: &str) -> Option<&[f32]> {
        let i = self.names.iter().position(|n| n == name)?;
        let g = &self.dense[i];
        (!g.is_empty()).then_some(g.as_slice())
    }
    /// The sparse gradient of an embedding table (`emb.uid`, `emb.mid`, `emb.cat`).
    pub fn embedding(&self, name: &str) -> Option<&SparseRows> {
        EMB_TABLES.iter().position(|&t| t == name).map(|i| &self.emb[i])
    }
    /// Iterates over `(name, dense gradient)` of the non-embedding parameters.
    pub fn dense_iter(&self) -> impl Iterator<Item = (&str, &[f32])> {
        self.names.iter().zip(&self.dense).filter(|(_, g)| !g.is_empty()).map(|(n, g)| (n.as_str(), g.as_slice()))
    }
    /// The gradient of every parameter as a dense `ParamStore` (zero for
    /// buffers; embeddings densified). Allocates: meant for tools and tests.
    pub fn to_dense_store(&self, cfg: &ModelConfig) -> ParamStore<f32> {
        let mut out = ParamStore::<f32>::zeros(cfg);
        for (i, name) in self.names.iter().enumerate() {
            if let Some(t) = EMB_TABLES.iter().position(|t| t == name) {
                let n = out.get(name).len() / cfg.d;
                out.get_mut(name).copy_from_slice(&self.emb[t].to_dense(n));
            } else if !self.dense[i].is_empty() {
                out.get_mut(name).copy_from_slice(&self.dense[i]);
            }
        }
        out
    }
    fn zero(&mut self) {
        for g in &mut self.dense {
            g.fill(0.0);
        }
        for e in &mut self.emb {
            e.clear();
        }
    }
    fn add(&mut self, id: TensorId, g: &[f32]) {
        for (x, &y) in self.dense[id.index()].iter_mut().zip(g) {
            *x += y;
        }
    }
    /// Adds a layer's gradients, given in the order of its resolved `ids`
    /// (tensors the model lacks have no id and an empty gradient).
    fn add_parts<const N: usize>(&mut self, ids: &LayerIds<N>, parts: [&[f32]; N]) {
        for (id, g) in ids.0.iter().zip(parts) {
            if let Some(id) = *id
                && !g.is_empty()
            {
                self.add(id, g);
            }
        }
    }
}

/// The ids of a layer's gradient tensors, resolved once from their names.
#[derive(Clone, Copy, Debug)]
struct LayerIds<const N: usize>([Option<TensorId>; N]);

impl<const N: usize> LayerIds<N> {
    fn resolve(p: &ParamStore<f32>, names: [&str; N]) -> Self {
        Self(names.map(|n| p.id(n)))
    }
}

/// Packed weights of every layer.
struct Packed {
    gru1: Option<GruCell>,
    gru2: Option<GruCell>,
    att: Option<AttPacked>,
    aux: Option<AuxPacked>,
    head: HeadPacked,
}

/// Reused buffers of one model.
#[derive(Default)]
struct Workspace {
    b: usize,
    t: usize,
    e_hist: Vec<f32>,
    e_neg: Vec<f32>,
    e_a: Vec<f32>,
    u: Vec<f32>,
    s: Vec<f32>,
    h1: Vec<f32>,
    h1_last: Vec<f32>,
    h2: Vec<f32>,
    h2_last: Vec<f32>,
    att_w: Vec<f32>,
    interest: Vec<f32>,
    cell1: CellWorkspace,
    cell2: CellWorkspace,
    att: Vec<AttChunk>,
    aux: Vec<AuxChunk>,
    aux_loss: Vec<f64>,
    head: HeadWs,
    // gradients of activations
    d_e_hist: Vec<f32>,
    d_e_neg: Vec<f32>,
    d_e_a: Vec<f32>,
    d_s: Vec<f32>,
    d_h1: Vec<f32>,
    d_h2: Vec<f32>,
    d_att: Vec<f32>,
    d_int: Vec<f32>,
    d_x: Vec<f32>,
    g_gru1: Option<GruGrads<f32>>,
    g_gru2: Option<GruGrads<f32>>,
    g_head: Option<HeadGrads>,
}

fn fit(v: &mut Vec<f32>, n: usize) {
    if v.len() != n {
        v.resize(n, 0.0);
    }
}

/// A model (SPEC §9) with its parameters, ready to run batches.
///
/// ```
/// use dien_model::{Batch, Mode, ModelConfig, ModelKind};
/// use dien_model::fast::Model;
///
/// let cfg = ModelConfig::new(ModelKind::Dien, 10, 20, 5);
/// let mut model = Model::init(cfg, 7).unwrap();
/// let batch = Batch::from_samples(
///     vec![1, 2], vec![3, 4], vec![1, 2],
///     &[vec![5, 6, 7], vec![]], &[vec![1, 2, 1], vec![]],
///     Some(&[vec![8, 9, 1], vec![]]), Some(&[vec![2, 2, 2], vec![]]),
///     vec![1.0, 0.0],
/// ).unwrap();
/// let train = model.forward_backward(&batch).unwrap();
/// assert!(train.loss.is_finite());
/// let g = model.gradients().dense("head.fc3.b").unwrap();
/// assert_eq!(g.len(), 1);
/// model.forward(&batch, Mode::Eval).unwrap();
/// let p: Vec<f32> = model.logits().iter().map(|z| 1.0 / (1.0 + (-z).exp())).collect();
/// assert_eq!(p.len(), 2);
/// ```
pub struct Model {
    cfg: ModelConfig,
    params: ParamStore<f32>,
    dirty: bool,
    pk: Packed,
    ws: Workspace,
    grads: Gradients,
    ids: Ids,
    has_stats: bool,
}

/// Tensor ids the step needs, resolved when the model is built.
struct Ids {
    gru1: LayerIds<3>,
    gru2: LayerIds<3>,
    att: LayerIds<10>,
    aux: LayerIds<6>,
    head: LayerIds<10>,
    /// `(running_mean, running_var)` of BatchNorm, Dice 1, Dice 2.
    stats: [(TensorId, TensorId); 3],
}

impl Ids {
    fn new(p: &ParamStore<f32>) -> Self {
        let stat = |prefix: &str| {
            (p.expect_id(&format!("{prefix}.running_mean")), p.expect_id(&format!("{prefix}.running_var")))
        };
        Self {
            gru1: LayerIds::resolve(p, ["gru1.w_ih", "gru1.w_hh", "gru1.b"]),
            gru2: LayerIds::resolve(p, ["gru2.w_ih", "gru2.w_hh", "gru2.b"]),
            att: LayerIds::resolve(p, attention::AttGrads::NAMES),
            aux: LayerIds::resolve(p, aux::AuxGrads::NAMES),
            head: LayerIds::resolve(p, HeadGrads::NAMES),
            stats: [stat("head.bn"), stat("head.dice1"), stat("head.dice2")],
        }
    }
}

impl Model {
    /// Wraps `params` (which must match `cfg`'s tensor list) in a model.
    pub fn new(cfg: ModelConfig, params: ParamStore<f32>) -> Result<Self, ModelError> {
        cfg.validate()?;
        params.check_matches(&cfg)?;
        let (e, h) = (cfg.e(), cfg.hidden);
        let pk = Packed {
            gru1: cfg.has_gru().then(|| GruCell::new(CellKind::Gru, e, h)),
            gru2: cfg.has_gru().then(|| GruCell::new(gru2_kind(cfg.variant), h, h)),
            att: cfg.has_attention().then(|| AttPacked::new(cfg.att, cfg.att_width(), e)),
            aux: cfg.has_aux().then(|| AuxPacked::new(cfg.aux, h, e)),
            head: HeadPacked::new(cfg.head_in()),
        };
        let grads = Gradients::new(&cfg);
        let ids = Ids::new(&params);
        Ok(Self { cfg, params, dirty: true, pk, ws: Workspace::default(), grads, ids, has_stats: false })
    }

    /// A freshly initialised model (SPEC init rules, deterministic in `seed`).
    pub fn init(cfg: ModelConfig, seed: u64) -> Result<Self, ModelError> {
        cfg.validate()?;
        let p = ParamStore::init(&cfg, seed);
        Self::new(cfg, p)
    }

    /// The configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }
    /// The parameters and running statistics.
    pub fn params(&self) -> &ParamStore<f32> {
        &self.params
    }
    /// Mutable parameters (e.g. for an optimiser step); the packed weights
    /// are refreshed before the next forward.
    pub fn params_mut(&mut self) -> &mut ParamStore<f32> {
        self.dirty = true;
        &mut self.params
    }
    /// Mutable parameters together with the gradients of the last
    /// [`Model::forward_backward`], for an optimiser step.
    pub fn params_and_gradients(&mut self) -> (&mut ParamStore<f32>, &Gradients) {
        self.dirty = true;
        (&mut self.params, &self.grads)
    }
    /// Consumes the model, returning its parameters.
    pub fn into_params(self) -> ParamStore<f32> {
        self.params
    }
    /// Logits `[B]` of the last forward.
    pub fn logits(&self) -> &[f32] {
        &self.ws.head.logits[..self.ws.b]
    }
    /// Gradients of the last [`Model::forward_backward`].
    pub fn gradients(&self) -> &Gradients {
        &self.grads
    }

    fn repack(&mut self) {
        if !self.dirty {
            return;
        }
        let p = &self.params;
        let (e, h) = (self.cfg.e(), self.cfg.hidden);
        if let Some(c) = &mut self.pk.gru1 {
            c.set_params(&GruParams {
                w_ih: p.get("gru1.w_ih"),
                w_hh: p.get("gru1.w_hh"),
                b: p.get("gru1.b"),
                input: e,
                hidden: h,
            });
        }
        if let Some(c) = &mut self.pk.gru2 {
            c.set_params(&GruParams {
                w_ih: p.get("gru2.w_ih"),
                w_hh: p.get("gru2.w_hh"),
                b: p.get("gru2.b"),
                input: h,
                hidden: h,
            });
        }
        if let Some(a) = &mut self.pk.att {
            a.set(p);
        }
        if let Some(a) = &mut self.pk.aux {
            a.set(p);
        }
        self.pk.head.set(p);
        self.dirty = false;
    }

    /// Evaluates the batch in `mode` (no gradients). The logits are in
    /// [`Model::logits`]; `loss_aux` is evaluated when the batch has
    /// negatives and the model an auxiliary head.
    pub fn forward(&mut self, batch: &Batch, mode: Mode) -> Result<Losses, ModelError> {
        self.run(batch, mode, false)
    }

    /// One training-mode forward and backward pass. Gradients are in
    /// [`Model::gradients`]; parameters and running statistics are left
    /// unchanged (see [`Model::update_running_stats`]).
    pub fn forward_backward(&mut self, batch: &Batch) -> Result<Losses, ModelError> {
        self.run(batch, Mode::Train, true)
    }

    /// Moves the running statistics of BatchNorm and both Dice layers
    /// towards the batch statistics of the last training-mode forward:
    /// `running = 0.99·running + 0.01·batch` (SPEC §7).
    pub fn update_running_stats(&mut self) {
        if !self.has_stats {
            return;
        }
        let hw = &self.ws.head;
        for (&(mean, var), st) in self.ids.stats.iter().zip([&hw.bn, &hw.dice1, &hw.dice2]) {
            for (id, v) in [(mean, &st.mean), (var, &st.var)] {
                let r = self.params.at_mut(id);
                for (x, &y) in r.iter_mut().zip(v) {
                    *x = (1.0 - MOMENTUM) * *x + MOMENTUM * y;
                }
            }
        }
    }

    /// The statistics (`mean`, biased `var`) of the BatchNorm and Dice
    /// layers used by the last forward, named like the running buffers
    /// (`head.bn.running_mean`, …).
    pub fn last_stats(&self) -> Vec<(String, Vec<f32>)> {
        let hw = &self.ws.head;
        let mut out = Vec::new();
        for (prefix, st) in [("head.bn", &hw.bn), ("head.dice1", &hw.dice1), ("head.dice2", &hw.dice2)] {
            out.push((format!("{prefix}.running_mean"), st.mean.clone()));
            out.push((format!("{prefix}.running_var"), st.var.clone()));
        }
        out
    }

    /// Head inputs `[B, D]` (`D = config().head_in()`) of the last forward:
    /// `[u; e_a; s; e_a ∘ s; interest]` per sample. They do not depend on the
    /// BatchNorm or Dice statistics, so recalibration collects them once.
    pub fn head_input(&self) -> &[f32] {
        &self.ws.head.x[..self.ws.b * self.cfg.head_in()]
    }

    /// Recalibrates the running statistics of BatchNorm and both Dice layers
    /// (SPEC §11) from head inputs `[n, D]` collected with
    /// [`Model::head_input`] over the training set or a sample of it: each
    /// becomes the exact mean and biased variance of its layer's input, in
    /// order, with the network in evaluation mode.
    pub fn recalibrate(&mut self, head_inputs: &[f32]) -> Result<(), ModelError> {
        let d = self.cfg.head_in();
        if head_inputs.is_empty() || !head_inputs.len().is_multiple_of(d) {
            return Err(ModelError::Batch(format!(
                "recalibration needs a non-empty [n, {d}] matrix of head inputs, got {} values",
                head_inputs.len()
            )));
        }
        self.repack();
        head::recalibrate(&self.pk.head, &mut self.params, head_inputs, head_inputs.len() / d);
        Ok(())
    }

    fn prepare(&mut self, b: usize, t: usize, with_neg: bool) {
        let cfg = &self.cfg;
        let (d, e, h) = (cfg.d, cfg.e(), cfg.hidden);
        let ws = &mut self.ws;
        ws.b = b;
        ws.t = t;
        fit(&mut ws.e_hist, b * t * e);
        fit(&mut ws.e_neg, if with_neg { b * t * e } else { 0 });
        fit(&mut ws.e_a, b * e);
        fit(&mut ws.u, b * d);
        fit(&mut ws.s, b * e);
        let hb = if cfg.has_gru() { b * t * h } else { 0 };
        fit(&mut ws.h1, hb);
        fit(&mut ws.h1_last, if cfg.has_gru() { b * h } else { 0 });
        fit(&mut ws.h2, hb);
        fit(&mut ws.h2_last, if cfg.has_gru() { b * h } else { 0 });
        fit(&mut ws.att_w, b * t);
        fit(&mut ws.interest, b * cfg.interest_width());
        fit(&mut ws.d_e_hist, b * t * e);
        fit(&mut ws.d_e_neg, if with_neg { b * t * e } else { 0 });
        fit(&mut ws.d_e_a, b * e);
        fit(&mut ws.d_s, b * e);
        fit(&mut ws.d_h1, hb);
        fit(&mut ws.d_h2, hb);
        fit(&mut ws.d_att, b * t);
        fit(&mut ws.d_int, b * cfg.interest_width());
        fit(&mut ws.d_x, b * t * e.max(h));
        let nc = b.div_ceil(CHUNK);
        if let Some(pk) = &self.pk.att {
            if ws.att.len() < nc {
                ws.att.resize_with(nc, AttChunk::default);
            }
            for (c, ch) in ws.att[..nc].iter_mut().enumerate() {
                ch.prepare(pk, CHUNK.min(b - c * CHUNK), t);
            }
        }
        if let Some(pk) = &self.pk.aux {
            if ws.aux.len() < nc {
                ws.aux.resize_with(nc, AuxChunk::default);
            }
            for (c, ch) in ws.aux[..nc].iter_mut().enumerate() {
                ch.prepare(pk, CHUNK.min(b - c * CHUNK), t);
            }
            ws.aux_loss.resize(nc, 0.0);
        }
        ws.head.prepare(cfg.head_in(), b);
        if ws.g_gru1.is_none() && cfg.has_gru() {
            ws.g_gru1 = Some(GruGrads::zeros(e, h));
            ws.g_gru2 = Some(GruGrads::zeros(h, h));
        }
        if ws.g_head.is_none() {
            ws.g_head = Some(HeadGrads::new(cfg.head_in()));
        }
    }

    fn gather(&mut self, batch: &Batch) {
        let (d, e) = (self.cfg.d, self.cfg.e());
        let t = batch.steps;
        let p = &self.params;
        let (eu, em, ec) = (p.get("emb.uid"), p.get("emb.mid"), p.get("emb.cat"));
        let row = |i: u32| i as usize * d..(i as usize + 1) * d;
        let ws = &mut self.ws;
        for s in 0..batch.batch {
            ws.u[s * d..(s + 1) * d].copy_from_slice(&eu[row(batch.uid[s])]);
            let ea = &mut ws.e_a[s * e..(s + 1) * e];
            ea[..d].copy_from_slice(&em[row(batch.mid[s])]);
            ea[d..].copy_from_slice(&ec[row(batch.cat[s])]);
            let l = batch.lengths[s];
            let sum = &mut ws.s[s * e..(s + 1) * e];
            sum.fill(0.0);
            for tt in 0..t {
                let i = s * t + tt;
                let x = &mut ws.e_hist[i * e..(i + 1) * e];
                if tt < l {
                    x[..d].copy_from_slice(&em[row(batch.hist_mid[i])]);
                    x[d..].copy_from_slice(&ec[row(batch.hist_cat[i])]);
                    for (a, &b) in sum.iter_mut().zip(x.iter()) {
                        *a += b;
                    }
                } else {
                    x.fill(0.0);
                }
                if let (Some(nm), Some(nc)) = (&batch.neg_mid, &batch.neg_cat)
                    && !ws.e_neg.is_empty()
                {
                    let x = &mut ws.e_neg[i * e..(i + 1) * e];
                    if tt < l {
                        x[..d].copy_from_slice(&em[row(nm[i])]);
                        x[d..].copy_from_slice(&ec[row(nc[i])]);
                    } else {
                        x.fill(0.0);
                    }
                }
            }
        }
    }

    fn run(&mut self, batch: &Batch, mode: Mode, grad: bool) -> Result<Losses, ModelError> {
        let cfg = self.cfg.clone();
        batch.validate(cfg.n_uid, cfg.n_mid, cfg.n_cat)?;
        if batch.batch == 0 {
            return Err(ModelError::Batch("empty batch".into()));
        }
        self.repack();
        let (b, t) = (batch.batch, batch.steps);
        let with_neg = cfg.has_aux() && batch.has_negatives();
        self.prepare(b, t, with_neg);
        self.gather(batch);
        let (d, e, h) = (cfg.d, cfg.e(), cfg.hidden);
        let lengths = &batch.lengths[..];
        let cell_mode = if grad { CellMode::Train } else { CellMode::Infer };
        let ws = &mut self.ws;
        let pk = &self.pk;
        if grad {
            ws.d_e_hist.fill(0.0);
            ws.d_e_neg.fill(0.0);
            ws.d_e_a.fill(0.0);
            ws.d_h1.fill(0.0);
            ws.d_h2.fill(0.0);
        }

        // Interest extractor.
        if let Some(c) = &pk.gru1 {
            let input = SeqInput { x: &ws.e_hist, lengths, att: None, h0: None, batch: b, steps: t };
            c.forward(&input, &mut ws.cell1, cell_mode, &mut ws.h1, &mut ws.h1_last);
        }

        // Auxiliary loss, backpropagated at once (it is a leaf).
        let mut loss_aux = 0.0;
        if let (Some(apk), true) = (&pk.aux, with_neg) {
            let n_terms: usize = lengths.iter().map(|&l| l.saturating_sub(1)).sum();
            if n_terms > 0 && t > 0 {
                let scale = grad.then(|| cfg.alpha_aux / n_terms as f32);
                let nc = b.div_ceil(CHUNK);
                let (h1, e_hist, e_neg) = (&ws.h1, &ws.e_hist, &ws.e_neg);
                ws.aux[..nc]
                    .par_iter_mut()
                    .zip(ws.aux_loss[..nc].par_iter_mut())
                    .zip(ws.d_h1.par_chunks_mut(CHUNK * t * h))
                    .zip(ws.d_e_hist.par_chunks_mut(CHUNK * t * e))
                    .zip(ws.d_e_neg.par_chunks_mut(CHUNK * t * e))
                    .enumerate()
                    .for_each(|(c, ((((ch, lo), dh), dp), dn))| {
                        let s0 = c * CHUNK;
                        let bc = ch_len(b, c);
                        if scale.is_some() {
                            ch.grads.zero();
                        }
                        *lo = ch.run(
                            apk,
                            &h1[s0 * t * h..(s0 + bc) * t * h],
                            &e_hist[s0 * t * e..(s0 + bc) * t * e],
                            &e_neg[s0 * t * e..(s0 + bc) * t * e],
                            &lengths[s0..s0 + bc],
                            scale,
                            dh,
                            dp,
                            dn,
                        );
                    });
                loss_aux = ws.aux_loss[..nc].iter().sum::<f64>() / n_terms as f64;
            }
        }

        // Interest.
        let iw = cfg.interest_width();
        match cfg.model {
            ModelKind::Dien | ModelKind::DienNoaux => {
                let apk = pk.att.as_ref().expect("attention");
                let c2 = pk.gru2.as_ref().expect("gru2");
                if cfg.variant == Variant::GruAtt {
                    let input = SeqInput { x: &ws.h1, lengths, att: None, h0: None, batch: b, steps: t };
                    c2.forward(&input, &mut ws.cell2, cell_mode, &mut ws.h2, &mut ws.h2_last);
                    attention_forward(apk, &mut ws.att, &ws.h2, &ws.e_a, lengths, &mut ws.att_w, b, t, h, e);
                    weighted_sum(&ws.att_w, &ws.h2, lengths, &mut ws.interest, b, t, h);
                } else {
                    attention_forward(apk, &mut ws.att, &ws.h1, &ws.e_a, lengths, &mut ws.att_w, b, t, h, e);
                    let input = SeqInput { x: &ws.h1, lengths, att: Some(&ws.att_w), h0: None, batch: b, steps: t };
                    c2.forward(&input, &mut ws.cell2, cell_mode, &mut ws.h2, &mut ws.h2_last);
                    ws.interest.copy_from_slice(&ws.h2_last);
                }
            }
            ModelKind::Din => {
                let apk = pk.att.as_ref().expect("attention");
                attention_forward(apk, &mut ws.att, &ws.e_hist, &ws.e_a, lengths, &mut ws.att_w, b, t, e, e);
                weighted_sum(&ws.att_w, &ws.e_hist, lengths, &mut ws.interest, b, t, e);
            }
            ModelKind::Base => ws.interest.copy_from_slice(&ws.s),
        }

        // Head.
        let dh = cfg.head_in();
        for s in 0..b {
            let x = &mut ws.head.x[s * dh..(s + 1) * dh];
            let (ea, sm) = (&ws.e_a[s * e..(s + 1) * e], &ws.s[s * e..(s + 1) * e]);
            x[..d].copy_from_slice(&ws.u[s * d..(s + 1) * d]);
            x[d..d + e].copy_from_slice(ea);
            x[d + e..d + 2 * e].copy_from_slice(sm);
            for j in 0..e {
                x[d + 2 * e + j] = ea[j] * sm[j];
            }
            x[d + 3 * e..].copy_from_slice(&ws.interest[s * iw..(s + 1) * iw]);
        }
        ws.head.forward(&pk.head, &self.params, mode);
        self.has_stats = mode == Mode::Train;
        let loss_target = ws.head.target_loss(&batch.label);
        let alpha = if cfg.has_aux() { cfg.alpha_aux as f64 } else { 0.0 };
        let losses = Losses { loss: loss_target + alpha * loss_aux, loss_target, loss_aux };
        if !losses.loss.is_finite() {
            return Err(ModelError::NonFinite(format!(
                "loss {} (target {}, aux {})",
                losses.loss, losses.loss_target, losses.loss_aux
            )));
        }
        if !grad {
            return Ok(losses);
        }

        // ---- Backward ----
        self.grads.zero();
        let g_head = ws.g_head.as_mut().expect("head grads");
        g_head.zero();
        ws.head.backward(&pk.head, &self.params, mode, &batch.label, g_head);
        self.grads.add_parts(&self.ids.head, g_head.parts());
        // Split the head-input gradient.
        let mut d_u_rows = std::mem::take(&mut ws.d_x);
        d_u_rows.resize(d_u_rows.len().max(b * d), 0.0);
        for s in 0..b {
            let dx = &ws.head.dx[s * dh..(s + 1) * dh];
            d_u_rows[s * d..(s + 1) * d].copy_from_slice(&dx[..d]);
            let (ea, sm) = (&ws.e_a[s * e..(s + 1) * e], &ws.s[s * e..(s + 1) * e]);
            let dea = &mut ws.d_e_a[s * e..(s + 1) * e];
            let ds = &mut ws.d_s[s * e..(s + 1) * e];
            for j in 0..e {
                let dp = dx[d + 2 * e + j];
                dea[j] += dx[d + j] + dp * sm[j];
                ds[j] = dx[d + e + j] + dp * ea[j];
            }
            ws.d_int[s * iw..(s + 1) * iw].copy_from_slice(&dx[d + 3 * e..]);
        }
        // Embedding rows of the user (scattered at the end).
        for s in 0..b {
            self.grads.emb[0].add(batch.uid[s], &d_u_rows[s * d..(s + 1) * d]);
        }
        ws.d_x = d_u_rows;

        match cfg.model {
            ModelKind::Dien | ModelKind::DienNoaux => {
                let apk = pk.att.as_ref().expect("attention");
                let c2 = pk.gru2.as_ref().expect("gru2");
                let g2 = ws.g_gru2.as_mut().expect("gru2 grads");
                zero_gru(g2);
                let dx = &mut ws.d_x[..b * t * h];
                if cfg.variant == Variant::GruAtt {
                    weighted_sum_backward(&ws.att_w, &ws.h2, &ws.d_int, lengths, &mut ws.d_att, &mut ws.d_h2, b, t, h);
                    attention_backward(
                        apk,
                        &mut ws.att,
                        &ws.h2,
                        &ws.e_a,
                        lengths,
                        &ws.d_att,
                        &mut ws.d_h2,
                        &mut ws.d_e_a,
                        b,
                        t,
                        h,
                        e,
                    );
                    let input = SeqInput { x: &ws.h1, lengths, att: None, h0: None, batch: b, steps: t };
                    c2.backward(&input, &mut ws.cell2, Some(&ws.d_h2), None, g2, dx, None, None);
                    add_into(&mut ws.d_h1, dx);
                } else {
                    let input = SeqInput { x: &ws.h1, lengths, att: Some(&ws.att_w), h0: None, batch: b, steps: t };
                    c2.backward(&input, &mut ws.cell2, None, Some(&ws.d_int), g2, dx, Some(&mut ws.d_att), None);
                    add_into(&mut ws.d_h1, dx);
                    attention_backward(
                        apk,
                        &mut ws.att,
                        &ws.h1,
                        &ws.e_a,
                        lengths,
                        &ws.d_att,
                        &mut ws.d_h1,
                        &mut ws.d_e_a,
                        b,
                        t,
                        h,
                        e,
                    );
                }
                add_gru(&mut self.grads, &self.ids.gru2, g2);
            }
            ModelKind::Din => {
                let apk = pk.att.as_ref().expect("attention");
                weighted_sum_backward(
                    &ws.att_w,
                    &ws.e_hist,
                    &ws.d_int,
                    lengths,
                    &mut ws.d_att,
                    &mut ws.d_e_hist,
                    b,
                    t,
                    e,
                );
                attention_backward(
                    apk,
                    &mut ws.att,
                    &ws.e_hist,
                    &ws.e_a,
                    lengths,
                    &ws.d_att,
                    &mut ws.d_e_hist,
                    &mut ws.d_e_a,
                    b,
                    t,
                    e,
                    e,
                );
            }
            ModelKind::Base => add_into(&mut ws.d_s, &ws.d_int),
        }
        if pk.att.is_some() {
            let nc = b.div_ceil(CHUNK);
            for ch in &ws.att[..nc] {
                self.grads.add_parts(&self.ids.att, ch.grads.parts());
            }
        }
        if pk.aux.is_some() && with_neg {
            let nc = b.div_ceil(CHUNK);
            for ch in &ws.aux[..nc] {
                self.grads.add_parts(&self.ids.aux, ch.grads.parts());
            }
        }
        if let Some(c1) = &pk.gru1 {
            let g1 = ws.g_gru1.as_mut().expect("gru1 grads");
            zero_gru(g1);
            let input = SeqInput { x: &ws.e_hist, lengths, att: None, h0: None, batch: b, steps: t };
            let dx = &mut ws.d_x[..b * t * e];
            c1.backward(&input, &mut ws.cell1, Some(&ws.d_h1), None, g1, dx, None, None);
            add_into(&mut ws.d_e_hist, dx);
            add_gru(&mut self.grads, &self.ids.gru1, g1);
        }
        // Sum pooling: every valid e_t receives d_s; then scatter the rows.
        for s in 0..b {
            let ds = &ws.d_s[s * e..(s + 1) * e];
            for tt in 0..lengths[s] {
                let i = s * t + tt;
                add_into(&mut ws.d_e_hist[i * e..(i + 1) * e], ds);
            }
        }
        let (emb_mid, rest) = self.grads.emb.split_at_mut(2);
        let (gm, gc) = (&mut emb_mid[1], &mut rest[0]);
        for s in 0..b {
            let dea = &ws.d_e_a[s * e..(s + 1) * e];
            gm.add(batch.mid[s], &dea[..d]);
            gc.add(batch.cat[s], &dea[d..]);
            for tt in 0..lengths[s] {
                let i = s * t + tt;
                let g = &ws.d_e_hist[i * e..(i + 1) * e];
                gm.add(batch.hist_mid[i], &g[..d]);
                gc.add(batch.hist_cat[i], &g[d..]);
                if let (Some(nm), Some(nc), true) = (&batch.neg_mid, &batch.neg_cat, with_neg) {
                    let g = &ws.d_e_neg[i * e..(i + 1) * e];
                    gm.add(nm[i], &g[..d]);
                    gc.add(nc[i], &g[d..]);
                }
            }
        }
        for emb in &mut self.grads.emb {
            emb.finish();
        }
        Ok(losses)
    }
}

fn gru2_kind(v: Variant) -> CellKind {
    match v {
        Variant::Augru => CellKind::Augru,
        Variant::AugruRef => CellKind::AugruRef,
        Variant::Agru => CellKind::Agru,
        Variant::Aigru => CellKind::Aigru,
        Variant::GruAtt => CellKind::Gru,
    }
}

fn ch_len(b: usize, c: usize) -> usize {
    CHUNK.min(b - c * CHUNK)
}

fn add_into(dst: &mut [f32], src: &[f32]) {
    for (x, &y) in dst.iter_mut().zip(src) {
        *x += y;
    }
}

fn zero_gru(g: &mut GruGrads<f32>) {
    g.w_ih.fill(0.0);
    g.w_hh.fill(0.0);
    g.b.fill(0.0);
}

fn add_gru(grads: &mut Gradients, ids: &LayerIds<3>, g: &GruGrads<f32>) {
    grads.add_parts(ids, [&g.w_ih, &g.w_hh, &g.b]);
}

/// Attention weights `att_w [B, T]` of `keys [B, T, A]` for targets `e_a`.
#[allow(clippy::too_many_arguments)]
fn attention_forward(
    pk: &AttPacked,
    chunks: &mut [AttChunk],
    keys: &[f32],
    e_a: &[f32],
    lengths: &[usize],
    att_w: &mut [f32],
    b: usize,
    t: usize,
    a: usize,
    e: usize,
) {
    let nc = b.div_ceil(CHUNK);
    chunks[..nc].par_iter_mut().zip(att_w.par_chunks_mut(CHUNK * t.max(1))).enumerate().for_each(|(c, (ch, w))| {
        let (s0, bc) = (c * CHUNK, ch_len(b, c));
        ch.forward(pk, &keys[s0 * t * a..(s0 + bc) * t * a], &e_a[s0 * e..(s0 + bc) * e], &lengths[s0..s0 + bc]);
        w.copy_from_slice(&ch.weights[..bc * t]);
    });
}

/// Backward of [`attention_forward`]: accumulates `d_keys` and `d_e_a`;
/// parameter gradients stay in the chunks.
#[allow(clippy::too_many_arguments)]
fn attention_backward(
    pk: &AttPacked,
    chunks: &mut [AttChunk],
    keys: &[f32],
    e_a: &[f32],
    lengths: &[usize],
    d_w: &[f32],
    d_keys: &mut [f32],
    d_e_a: &mut [f32],
    b: usize,
    t: usize,
    a: usize,
    e: usize,
) {
    let nc = b.div_ceil(CHUNK);
    chunks[..nc]
        .par_iter_mut()
        .zip(d_keys.par_chunks_mut(CHUNK * t.max(1) * a))
        .zip(d_e_a.par_chunks_mut(CHUNK * e))
        .enumerate()
        .for_each(|(c, ((ch, dk), dea))| {
            let (s0, bc) = (c * CHUNK, ch_len(b, c));
            ch.grads.zero();
            ch.backward(
                pk,
                &keys[s0 * t * a..(s0 + bc) * t * a],
                &e_a[s0 * e..(s0 + bc) * e],
                &lengths[s0..s0 + bc],
                &d_w[s0 * t..(s0 + bc) * t],
                dk,
                dea,
            );
        });
}

/// `out_b = Σ_{t<L} w_t v_t`.
fn weighted_sum(w: &[f32], v: &[f32], lengths: &[usize], out: &mut [f32], b: usize, t: usize, a: usize) {
    for s in 0..b {
        let o = &mut out[s * a..(s + 1) * a];
        o.fill(0.0);
        for tt in 0..lengths[s] {
            let i = s * t + tt;
            dense::axpy(w[i], &v[i * a..(i + 1) * a], o);
        }
    }
}

/// Backward of [`weighted_sum`]: `d_w` overwritten, `d_v` accumulated.
#[allow(clippy::too_many_arguments)]
fn weighted_sum_backward(
    w: &[f32],
    v: &[f32],
    d_out: &[f32],
    lengths: &[usize],
    d_w: &mut [f32],
    d_v: &mut [f32],
    b: usize,
    t: usize,
    a: usize,
) {
    for s in 0..b {
        let g = &d_out[s * a..(s + 1) * a];
        for tt in 0..t {
            let i = s * t + tt;
            if tt < lengths[s] {
                d_w[i] = dense::dot(&v[i * a..(i + 1) * a], g);
                dense::axpy(w[i], g, &mut d_v[i * a..(i + 1) * a]);
            } else {
                d_w[i] = 0.0;
            }
        }
    }
}
