//! The fast model: parameters, packed layers, workspace and gradients
//! behind the public API. The step itself is in [`super::stages`].

use super::Losses;
use super::gradients::{Gradients, LayerIds};
use super::stages::Depth;
use super::workspace::Workspace;
use crate::batch::Batch;
use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::layers::attention::train::AttGrads;
use crate::layers::extractor::aux_train::AuxGrads;
use crate::layers::head::train::{self, HeadGrads, MOMENTUM};
use crate::layers::{GRU1, GRU2, Layers};
use crate::mode::Mode;
use crate::params::{ParamStore, TensorId};
use crate::plan::Plan;
use crate::sync::{NoSync, StatSync};

/// A model (docs/MODEL.md#models) with its parameters, ready to run batches.
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
    pub(super) cfg: ModelConfig,
    pub(super) params: ParamStore<f32>,
    pub(super) dirty: bool,
    pub(super) plan: Plan,
    pub(super) layers: Layers,
    pub(super) ws: Workspace,
    pub(super) grads: Gradients,
    pub(super) ids: Ids,
    pub(super) has_stats: bool,
    /// Per-stage totals, when timing is on.
    pub(super) timing: Option<super::StageTimes>,
}

/// Tensor ids the step needs, resolved when the model is built.
pub(super) struct Ids {
    pub gru1: LayerIds<3>,
    pub gru2: LayerIds<3>,
    pub att: LayerIds<10>,
    pub aux: LayerIds<6>,
    pub head: LayerIds<10>,
    /// `(running_mean, running_var)` of BatchNorm, Dice 1, Dice 2.
    pub stats: [(TensorId, TensorId); 3],
}

impl Ids {
    fn new(p: &ParamStore<f32>) -> Self {
        let stat = |prefix: &str| {
            (p.expect_id(&format!("{prefix}.running_mean")), p.expect_id(&format!("{prefix}.running_var")))
        };
        Self {
            gru1: LayerIds::resolve(p, GRU1),
            gru2: LayerIds::resolve(p, GRU2),
            att: LayerIds::resolve(p, AttGrads::NAMES),
            aux: LayerIds::resolve(p, AuxGrads::NAMES),
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
        let plan = Plan::new(&cfg);
        let layers = Layers::new(&cfg, &plan);
        let grads = Gradients::new(&cfg);
        let ids = Ids::new(&params);
        Ok(Self {
            cfg,
            plan,
            params,
            dirty: true,
            layers,
            ws: Workspace::default(),
            grads,
            ids,
            has_stats: false,
            timing: None,
        })
    }

    /// A freshly initialised model (init rules of docs/MODEL.md#tensors, deterministic in `seed`).
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
    /// Mutable gradients of the last [`Model::forward_backward_synced`], for
    /// a data-parallel trainer to replace by their sum over the replicas.
    pub fn gradients_mut(&mut self) -> &mut Gradients {
        &mut self.grads
    }

    pub(super) fn repack(&mut self) {
        if !self.dirty {
            return;
        }
        self.layers.set(&self.cfg, &self.params);
        self.dirty = false;
    }

    /// Turns per-stage timing of the following steps on (`true`, totals
    /// reset) or off; see [`Model::stage_times`].
    pub fn time_stages(&mut self, on: bool) {
        self.timing = on.then(super::StageTimes::default);
    }

    /// Seconds per [`Stage`](super::Stage) over the steps run since timing
    /// was turned on ([`Model::time_stages`]), `None` when it is off.
    pub fn stage_times(&self) -> Option<&super::StageTimes> {
        self.timing.as_ref()
    }

    /// Evaluates the batch in `mode` (no gradients). The logits are in
    /// [`Model::logits`]; `loss_aux` is evaluated when the batch has
    /// negatives and the model an auxiliary head.
    pub fn forward(&mut self, batch: &Batch, mode: Mode) -> Result<Losses, ModelError> {
        self.run(batch, mode, Depth::Forward, &mut NoSync)
    }

    /// The head inputs of `batch` in evaluation mode ([`Model::head_input`]),
    /// without running the head: what recalibration collects. The logits
    /// are not computed.
    pub fn forward_head_input(&mut self, batch: &Batch) -> Result<(), ModelError> {
        self.run(batch, Mode::Eval, Depth::HeadInput, &mut NoSync).map(drop)
    }

    /// [`Model::forward`] as one replica of a data-parallel step: `batch`
    /// is this replica's share of a global batch, and in training mode the
    /// batch statistics of BatchNorm and Dice and the loss normalisers are
    /// those of the global batch, exchanged through `sync`
    /// ([`crate::sync`]); the losses returned are the global batch's. In
    /// evaluation mode nothing is exchanged (the statistics are the running
    /// ones) and the losses are this share's. The share may be empty in
    /// training mode when `sync` has more than one replica.
    pub fn forward_synced(&mut self, batch: &Batch, mode: Mode, sync: &mut dyn StatSync) -> Result<Losses, ModelError> {
        self.run(batch, mode, Depth::Forward, sync)
    }

    /// One training-mode forward and backward pass. Gradients are in
    /// [`Model::gradients`]; parameters and running statistics are left
    /// unchanged (see [`Model::update_running_stats`]).
    pub fn forward_backward(&mut self, batch: &Batch) -> Result<Losses, ModelError> {
        self.run(batch, Mode::Train, Depth::Backward, &mut NoSync)
    }

    /// [`Model::forward_backward`] as one replica of a data-parallel step
    /// (see [`Model::forward_synced`]): the gradients are this share's
    /// contribution to the gradient of the global batch's loss, so that
    /// their sum over the replicas is the gradient one process computes on
    /// the whole batch (up to the order of floating-point additions); the
    /// caller sums them. The batch statistics kept for
    /// [`Model::update_running_stats`] are the global batch's, the same on
    /// every replica.
    pub fn forward_backward_synced(&mut self, batch: &Batch, sync: &mut dyn StatSync) -> Result<Losses, ModelError> {
        self.run(batch, Mode::Train, Depth::Backward, sync)
    }

    /// Moves the running statistics of BatchNorm and both Dice layers
    /// towards the batch statistics of the last training-mode forward:
    /// `running = 0.99·running + 0.01·batch` (docs/MODEL.md#batchnorm).
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
    /// (docs/MODEL.md#recalibration) from head inputs `[n, D]` collected with
    /// [`Model::head_input`] over the training set or a sample of it: each
    /// becomes the exact mean and biased variance of its layer's input, in
    /// order, with the network in evaluation mode.
    pub fn recalibrate(&mut self, head_inputs: &[f32]) -> Result<(), ModelError> {
        self.recalibrate_synced(head_inputs, &mut NoSync)
    }

    /// [`Model::recalibrate`] as one replica of a data-parallel run:
    /// `head_inputs` is this replica's part of the sample (possibly empty),
    /// and the statistics are those of every replica's part together,
    /// exchanged through `sync`; every replica ends with the same running
    /// statistics. Every replica must call it, and the parts together must
    /// not be empty.
    pub fn recalibrate_synced(&mut self, head_inputs: &[f32], sync: &mut dyn StatSync) -> Result<(), ModelError> {
        let d = self.cfg.head_in();
        let empty_alone = head_inputs.is_empty() && sync.replicas() < 2;
        if empty_alone || !head_inputs.len().is_multiple_of(d) {
            return Err(ModelError::Batch(format!(
                "recalibration needs a non-empty [n, {d}] matrix of head inputs, got {} values",
                head_inputs.len()
            )));
        }
        self.repack();
        train::recalibrate(
            &self.layers.head,
            &mut self.params,
            head_inputs,
            head_inputs.len() / d,
            sync,
            &mut self.ws.recal,
        )
    }
}
