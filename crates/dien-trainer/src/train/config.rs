//! What a training run needs ([`TrainConfig`]): its settings, their checks,
//! and the files the run writes.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use dien_model::checkpoint::{VOCAB_SUFFIX, sidecar_path};
use dien_model::vocab::Vocabs;
use dien_model::{ModelConfig, ModelKind};

use super::{Recipe, best_path};
use crate::data::{BatcherConfig, DEFAULT_VALID_FRAC, Shard, Side, UserFilter, UserSplit};
use crate::error::TrainError;
use crate::optim::OptimConfig;
use crate::paths::Role;

/// Everything a training run needs.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    /// Data directory in the layout of docs/MODEL.md#data-layout.
    pub data_dir: PathBuf,
    /// Checkpoint to write (sidecars go beside it).
    pub out: PathBuf,
    /// The model to train: its kind, architecture, longest kept history and
    /// auxiliary-loss weight (the defaults of [`ModelConfig::new`]). Its
    /// table sizes are ignored: a fresh run takes them from the
    /// vocabularies, a resumed one from the checkpoint.
    pub model: ModelConfig,
    /// Epochs (the learning rate halves after each).
    pub epochs: usize,
    /// Samples per batch (128).
    pub batch_size: usize,
    /// Seed of initialisation, negative sampling and recalibration samples.
    pub seed: u64,
    /// Threads of the compute pool (`None`: all cores).
    pub threads: Option<usize>,
    /// Optimiser settings.
    pub optim: OptimConfig,
    /// Evaluate every this many iterations (and at the end): on the
    /// validation split, and on the test file where [`Select::Test`] needs
    /// it (the test file is always evaluated at the end).
    pub eval_every: Option<u64>,
    /// Also evaluate at the end of every epoch (true by default), so that
    /// every epoch has its point on the validation curve.
    pub eval_each_epoch: bool,
    /// The fraction of the training file's users held out for validation,
    /// in `[0, 1)` (0.1; 0 trains on every user). See [`crate::data::split`].
    pub valid_frac: f64,
    /// What chooses the best checkpoint (and drives early stopping).
    pub select: Select,
    /// Stop after this many evaluations in a row without a new best of the
    /// selection metric (`None`: never).
    pub early_stop: Option<u64>,
    /// Save a checkpoint every this many iterations (and at the end).
    pub save_every: Option<u64>,
    /// Recalibrate BatchNorm/Dice statistics before every evaluation and at
    /// the end (docs/MODEL.md#recalibration); false keeps the moving averages, for comparison.
    pub recalibrate: bool,
    /// Training samples used for recalibration (at least 20,000 by docs/MODEL.md#recalibration
    /// when the set is larger; all of them when it is smaller).
    pub recal_samples: usize,
    /// Skip malformed lines instead of failing.
    pub skip_bad_lines: bool,
    /// Stop after this many iterations in total (for tests and quick runs).
    pub max_steps: Option<u64>,
    /// Continue from the checkpoint at `out` and its sidecars.
    pub resume: bool,
    /// Draw a progress bar on standard error.
    pub progress: bool,
    /// Write one JSON object per evaluation and per logging interval here.
    pub metrics_log: Option<PathBuf>,
    /// Write an SVG plot of the training and test curves here.
    pub plot: Option<PathBuf>,
    /// Iterations between training-loss records in the metrics log.
    pub log_every: u64,
    /// In a distributed run, compare a hash of the parameters across the
    /// ranks every this many iterations (and before the first and after
    /// the last); 0: only before the first and after the last.
    pub replica_check_every: u64,
    /// A named set of settings applied when training starts
    /// ([`Recipe::apply`]); recorded in the run record.
    pub recipe: Recipe,
    /// Write the run's initial parameters, every trained batch with its
    /// losses and every evaluation's inputs into this directory (new or
    /// empty), for a replay elsewhere (docs/MODEL.md#exported-runs).
    pub export_batches: Option<PathBuf>,
}

impl TrainConfig {
    /// The defaults of docs/MODEL.md#training for `model` on `data_dir`, writing `out`.
    pub fn new(data_dir: impl Into<PathBuf>, out: impl Into<PathBuf>, model: ModelKind) -> Self {
        Self {
            data_dir: data_dir.into(),
            out: out.into(),
            model: ModelConfig::new(model, 0, 0, 0),
            epochs: 1,
            batch_size: 128,
            seed: crate::DEFAULT_SEED,
            threads: None,
            optim: OptimConfig::default(),
            eval_every: None,
            eval_each_epoch: true,
            valid_frac: DEFAULT_VALID_FRAC,
            select: Select::Valid,
            early_stop: None,
            save_every: None,
            recalibrate: true,
            recal_samples: 20_000,
            skip_bad_lines: false,
            max_steps: None,
            resume: false,
            progress: false,
            metrics_log: None,
            plot: None,
            log_every: 50,
            replica_check_every: 100,
            recipe: Recipe::Reference,
            export_batches: None,
        }
    }

    /// The files a run writes (but the optimiser state, whose name is
    /// derived from its content).
    pub(super) fn outputs(&self) -> Vec<Role> {
        let best = best_path(&self.out);
        let mut v = vec![
            Role::new("the checkpoint", &self.out),
            Role::new("its vocabularies", sidecar_path(&self.out, VOCAB_SUFFIX)),
            Role::new("the best checkpoint", &best),
            Role::new("its vocabularies", sidecar_path(&best, VOCAB_SUFFIX)),
        ];
        v.extend(self.metrics_log.iter().map(|p| Role::new("the metrics log", p)));
        v.extend(self.plot.iter().map(|p| Role::new("the plot", p)));
        v
    }

    /// Refuses settings that would train nothing or make no sense.
    pub(super) fn check(&self) -> Result<(), TrainError> {
        let bad = |what: &str| Err(TrainError::Config(format!("{what} must be at least 1")));
        if self.epochs == 0 {
            return bad("epochs");
        }
        if self.batch_size == 0 {
            return bad("batch size");
        }
        if self.max_steps == Some(0) {
            return bad("max_steps (when given)");
        }
        if self.threads == Some(0) {
            return bad("threads (when given)");
        }
        if self.log_every == 0 {
            return bad("log_every");
        }
        if self.early_stop == Some(0) {
            return bad("early_stop (when given)");
        }
        let split = self.split()?;
        if self.select == Select::Valid && !split.is_active() {
            return Err(TrainError::Config(
                "--select valid chooses the best checkpoint by validation AUC, but --valid-frac 0 holds out no \
                 validation users: give --valid-frac above 0, or --select test to choose by test AUC"
                    .into(),
            ));
        }
        if self.early_stop.is_some() && !self.eval_each_epoch && self.eval_every.is_none() {
            return Err(TrainError::Config(
                "--early-stop counts evaluations during training, but there are none: give --eval-every, or leave \
                 out --no-epoch-eval"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The validation split of the training users (checked).
    pub fn split(&self) -> Result<UserSplit, TrainError> {
        UserSplit::new(self.valid_frac, self.seed)
    }

    /// The lines of `side` of the split (`None` without a split: every line
    /// is a training line, and there is no validation set).
    pub(super) fn users(&self, side: Side) -> Result<Option<UserFilter>, TrainError> {
        let split = self.split()?;
        Ok(split.is_active().then_some(UserFilter { split, side }))
    }

    /// The model configuration with the table sizes of `vocabs`, checked.
    pub(super) fn model_config(&self, vocabs: &Vocabs) -> Result<ModelConfig, TrainError> {
        let sizes = vocabs.table_sizes();
        let mut c = self.model.clone();
        (c.n_uid, c.n_mid, c.n_cat) = (sizes.uid, sizes.mid, sizes.cat);
        c.validate()?;
        Ok(c)
    }

    /// The batcher of the training lines (those of the users the split
    /// keeps for training).
    pub(super) fn batcher(&self, negatives: bool, shard: Option<Shard>, users: Option<UserFilter>) -> BatcherConfig {
        BatcherConfig {
            batch_size: self.batch_size,
            max_len: self.model.max_len,
            negatives,
            seed: self.seed,
            skip_bad_lines: self.skip_bad_lines,
            shard,
            users,
            ..BatcherConfig::default()
        }
    }
}

/// What chooses the best checkpoint of a run (`<out>.best.safetensors`)
/// and drives early stopping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Select {
    /// The best validation AUC: the test file plays no part in choosing.
    #[default]
    Valid,
    /// The best test AUC, as the reference code chooses: the test file then
    /// also picks the model, so the best model's test metrics are biased
    /// upwards.
    Test,
}

impl Select {
    /// Both, in the order `--help` lists them.
    pub const ALL: &'static [Select] = &[Select::Valid, Select::Test];

    /// The name used on the command line and in the run record.
    pub fn name(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Test => "test",
        }
    }
}

impl fmt::Display for Select {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Select {
    type Err = TrainError;

    /// Parses `valid` or `test`.
    fn from_str(s: &str) -> Result<Self, TrainError> {
        match s {
            "valid" => Ok(Self::Valid),
            "test" => Ok(Self::Test),
            other => Err(TrainError::Config(format!("select `{other}`: expected `valid` or `test`"))),
        }
    }
}

impl serde::Serialize for Select {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}
