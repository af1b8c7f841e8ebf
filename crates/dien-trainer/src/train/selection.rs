//! Model selection: the evaluations during a run (recalibration, then the
//! validation split, then the test file where needed), the best model they
//! choose (`<out>.best.safetensors`), early stopping, and the test metrics
//! of the best model at the end.
//!
//! With [`Select::Valid`] the test file is scored only at the end, for the
//! final model and for the best one: nothing of it reaches the choice. With
//! [`Select::Test`] it is scored at every evaluation and picks the best
//! model, as the reference code does.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use dien_model::fast::Model;
use dien_model::{ModelConfig, ParamStore};
use serde::Serialize;
use serde_json::json;

use super::config::Select;
use super::eval::{self, RecalSource, recalibrate_on};
use super::evalsets::{EvalSets, Plan, Set};
use super::export::{Exporter, Scored};
use super::log::MetricsLog;
use super::passes::Workers;
use super::state::{Best, Progress, RunMeta, save_best};
use super::timing::{Stage, StageTimes};
use super::{Event, TrainConfig};
use crate::data::{DataSet, Shard, Side, SplitCounts, UserFilter};
use crate::dist::Replicas;
use crate::error::TrainError;
use crate::metrics::EvalMetrics;
use crate::record::LogRecord;

/// The best model of a run, as its summary reports it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BestSummary {
    /// What chose it.
    pub select: Select,
    /// The step it was evaluated at.
    pub step: u64,
    /// Its epoch (0-based; `None` for a run recorded before epochs were
    /// kept with the best model).
    pub epoch: Option<u64>,
    /// Its validation AUC (`None` without a validation split).
    pub valid_auc: Option<f64>,
    /// Its test metrics, measured once at the end of the run.
    pub test: EvalMetrics,
}

/// What one evaluation measured.
#[derive(Clone, Debug)]
pub(super) struct Outcome {
    /// Metrics on the validation split (`None` without one).
    pub(super) valid: Option<EvalMetrics>,
    /// Metrics on the test file, when it was scored.
    pub(super) test: Option<EvalMetrics>,
    /// Early stopping ends the run here.
    pub(super) stop: bool,
}

/// The files and settings of a run that evaluations read.
pub(super) struct Sources<'a> {
    pub(super) cfg: &'a TrainConfig,
    pub(super) data: &'a Arc<DataSet>,
    pub(super) train_file: &'a Path,
    pub(super) test_file: &'a Path,
    pub(super) split: &'a SplitCounts,
    pub(super) run_meta: &'a RunMeta,
    /// This rank writes the files.
    pub(super) lead: bool,
    pub(super) start: Instant,
    /// Training samples seen when this sitting began.
    pub(super) samples_at_start: u64,
    /// The run's export (`--export-batches`), which records every
    /// evaluation's inputs.
    pub(super) export: Option<&'a Exporter>,
}

/// The state of model selection over a run.
pub(super) struct Selection<'a> {
    src: Sources<'a>,
    train_users: Option<UserFilter>,
    valid_users: Option<UserFilter>,
    /// The best model so far.
    pub(super) best: Option<Best>,
    /// Evaluations in a row without a new best.
    pub(super) since_best: u64,
    /// The best model's parameters (every rank keeps them, so that the ranks
    /// can score it together at the end).
    best_params: Option<ParamStore<f32>>,
    /// The batches evaluations read, prepared once.
    sets: EvalSets,
    /// Replicas of the model that score batches beside it.
    workers: Workers,
    /// The wall time of recalibration, scoring and saving the best model.
    pub(super) times: StageTimes,
}

type OnEvent<'e> = dyn FnMut(Event<'_>) + Send + 'e;

impl<'a> Selection<'a> {
    /// Selection resuming from `prog` (a fresh run: nothing chosen yet),
    /// with the best model's parameters when there is one, for a model of
    /// configuration `mc` (this rank's part `shard` of every batch in a
    /// data-parallel run). Starts preparing the batches evaluations read.
    pub(super) fn new(
        src: Sources<'a>,
        prog: &Progress,
        best_params: Option<ParamStore<f32>>,
        mc: &ModelConfig,
        shard: Option<Shard>,
    ) -> Result<Self, TrainError> {
        let (train_users, valid_users) = (src.cfg.users(Side::Train)?, src.cfg.users(Side::Valid)?);
        let cfg = src.cfg;
        let (batch, skip) = (cfg.batch_size, cfg.skip_bad_lines);
        let mut plans = Vec::new();
        if cfg.recalibrate {
            plans.push(Plan::recal(mc, &recal_source(&src, train_users), shard));
        }
        if valid_users.is_some() {
            plans.push(Plan::scored(Set::Valid, mc, src.train_file.into(), batch, skip, shard, valid_users));
        }
        plans.push(Plan::scored(Set::Test, mc, src.test_file.into(), batch, skip, shard, None));
        let sets = EvalSets::start(src.data, plans)?;
        Ok(Self {
            src,
            train_users,
            valid_users,
            best: prog.best,
            since_best: prog.since_best,
            best_params,
            sets,
            workers: Workers::default(),
            times: StageTimes::default(),
        })
    }

    /// The lines training reads (the training side of the split).
    pub(super) fn train_users(&self) -> Option<UserFilter> {
        self.train_users
    }

    /// Whether early stopping has already ended the run (a resumed run
    /// whose saved progress reached the limit).
    pub(super) fn stopped(&self) -> bool {
        self.src.cfg.early_stop.is_some_and(|n| self.since_best >= n)
    }

    /// Evaluates `model` at `prog`: recalibrates it, scores the validation
    /// split, and the test file when selecting by it or when this is the
    /// run's `last` evaluation (or early stopping makes it so); keeps a new
    /// best; logs the record. `counted`: whether it counts towards early
    /// stopping (not when a resumed run re-evaluates the model it loaded).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn evaluate(
        &mut self,
        model: &mut Model,
        prog: &Progress,
        lr: f32,
        mut dist: Option<&mut Replicas<'_>>,
        last: bool,
        counted: bool,
        log: &mut MetricsLog<'_>,
        on_event: &mut OnEvent<'_>,
    ) -> Result<Outcome, TrainError> {
        let (cfg, data) = (self.src.cfg, self.src.data);
        let rs = recal_source(&self.src, self.train_users);
        let (sets, workers, times) = (&mut self.sets, &mut self.workers, &mut self.times);
        if cfg.recalibrate {
            times.time(Stage::Recalibration, || -> Result<usize, TrainError> {
                let (batches, samples) = sets.batches(Set::Recal)?;
                recalibrate_on(model, workers, batches, samples, dist.as_deref_mut())
            })?;
        }
        let mut scored = |set, model: &mut Model, dist: Option<&mut Replicas<'_>>| {
            times.time(Stage::Evaluation, || eval::score(model, workers, sets.batches(set)?.0, dist))
        };
        let valid = match self.valid_users {
            Some(_) => Some(scored(Set::Valid, model, dist.as_deref_mut())?),
            None => None,
        };
        let mut test = None;
        if cfg.select == Select::Test {
            test = Some(scored(Set::Test, model, dist.as_deref_mut())?);
        }
        let score = match cfg.select {
            Select::Valid => valid.as_ref().and_then(|m| m.auc),
            Select::Test => test.as_ref().and_then(|m| m.auc),
        };
        if let Some(auc) = score
            && self.best.is_none_or(|b| auc > b.auc)
        {
            let best =
                Best { auc, step: prog.step, epoch: Some(prog.epoch), valid_auc: valid.as_ref().and_then(|m| m.auc) };
            if self.src.lead {
                let meta = self.src.run_meta;
                self.times.time(Stage::Saving, || save_best(&cfg.out, model, &data.vocabs, meta, &best, cfg.select))?;
            }
            self.best = Some(best);
            self.best_params = Some(model.params().clone());
            self.since_best = 0;
        } else if counted {
            self.since_best += 1;
        }
        let stop = counted && self.stopped();
        if test.is_none() && (last || stop) {
            let (sets, workers) = (&mut self.sets, &mut self.workers);
            let score = || eval::score(model, workers, sets.batches(Set::Test)?.0, dist);
            test = Some(self.times.time(Stage::Evaluation, score)?);
        }
        // The export records the test file's batches when it was scored, else
        // the validation split's (every evaluation scores one of them).
        let scored = match (&test, &valid) {
            (Some(m), _) => Some((Scored { set: "test", file: self.src.test_file, users: None }, m)),
            (None, Some(m)) => Some((Scored { set: "valid", file: self.src.train_file, users: self.valid_users }, m)),
            (None, None) => None,
        };
        if let (Some(x), Some((scored, m))) = (self.src.export, scored) {
            x.evaluation(model, data, prog.step, prog.epoch, cfg.recalibrate.then_some(&rs), scored, m)?;
        }
        let el = self.src.start.elapsed().as_secs_f64();
        log.emit(
            LogRecord {
                kind: "eval",
                step: prog.step,
                epoch: prog.epoch,
                samples: prog.samples,
                train_loss: None,
                train_loss_target: None,
                train_loss_aux: None,
                valid: valid.clone(),
                test: test.clone(),
                lr,
                elapsed_s: el,
                samples_per_s: (prog.samples - self.src.samples_at_start) as f64 / el.max(1e-9),
            },
            on_event,
        )?;
        if stop && let Some(b) = self.best {
            on_event(Event::Info(format!(
                "stopping early at step {}: {} evaluations without a better {} AUC than {:.6} (step {})",
                prog.step, self.since_best, cfg.select, b.auc, b.step
            )));
        }
        Ok(Outcome { valid, test, stop })
    }

    /// The best model's test metrics, scored once now (or taken from the
    /// final evaluation `last` at `step` when the best model is the final
    /// one); written to the log as a `best` line. `None` when no evaluation
    /// chose a model (no AUC was defined).
    pub(super) fn finish(
        &mut self,
        model: &Model,
        step: u64,
        last: &Outcome,
        dist: Option<&mut Replicas<'_>>,
        log: &mut MetricsLog<'_>,
        on_event: &mut OnEvent<'_>,
    ) -> Result<Option<BestSummary>, TrainError> {
        let Some(b) = self.best else { return Ok(None) };
        let cfg = self.src.cfg;
        let test = match (&last.test, b.step == step) {
            // Chosen at the final evaluation: the best model is the final one.
            (Some(t), true) => t.clone(),
            _ => {
                let params = self.best_params.clone().ok_or_else(|| {
                    TrainError::Config(format!("the parameters of the best model (step {}) are missing", b.step))
                })?;
                let mut best = Model::new(model.config().clone(), params)?;
                let (sets, workers) = (&mut self.sets, &mut self.workers);
                let score = || eval::score(&mut best, workers, sets.batches(Set::Test)?.0, dist);
                self.times.time(Stage::Evaluation, score)?
            }
        };
        let s = BestSummary { select: cfg.select, step: b.step, epoch: b.epoch, valid_auc: b.valid_auc, test };
        log.line(&json!({
            "kind": "best",
            "select": s.select,
            "step": s.step,
            "epoch": s.epoch,
            "valid_auc": s.valid_auc,
            "test": s.test,
        }))?;
        on_event(Event::Info(format!(
            "best model (by {} AUC {:.6}, step {}): test auc {:.4}  gauc {:.4}  logloss {:.4}",
            s.select,
            b.auc,
            s.step,
            s.test.auc.unwrap_or(f64::NAN),
            s.test.gauc.unwrap_or(f64::NAN),
            s.test.logloss.unwrap_or(f64::NAN)
        )));
        Ok(Some(s))
    }
}

/// Where recalibration draws from in a run: the training side of its split.
fn recal_source<'s>(src: &Sources<'s>, train_users: Option<UserFilter>) -> RecalSource<'s> {
    let cfg = src.cfg;
    RecalSource {
        train_file: src.train_file,
        lines: src.split.train_lines,
        users: train_users,
        samples: cfg.recal_samples,
        seed: cfg.seed,
        batch_size: cfg.batch_size,
        skip_bad_lines: cfg.skip_bad_lines,
    }
}
