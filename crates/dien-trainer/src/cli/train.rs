//! The flags of `dien train` and `dien sweep`.

use std::path::PathBuf;

use clap::Args;
use dien_trainer::optim::OptimKind;
use dien_trainer::train::{Recipe, Select};

use super::*;

#[derive(Args)]
pub(crate) struct TrainArgs {
    /// Settings file (TOML, or JSON such as a run record) whose keys are
    /// these flags with underscores (`max_len = 50`); flags given here
    /// override it.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Data directory (layout: docs/MODEL.md#data-layout).
    #[arg(long)]
    pub(crate) data: PathBuf,
    /// Model.
    #[arg(long, default_value = "dien", value_parser = model_values())]
    pub(crate) model: ModelKind,
    /// Checkpoint to write; the vocabularies, optimiser state and best model
    /// go beside it.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Epochs (the learning rate halves after each).
    #[arg(long, default_value_t = 1, value_parser = positive())]
    pub(crate) epochs: usize,
    /// Seed.
    #[arg(long, default_value_t = dien_trainer::DEFAULT_SEED)]
    pub(crate) seed: u64,
    /// Compute threads (default: all cores).
    #[arg(long, value_parser = threads_value)]
    pub(crate) threads: Option<usize>,
    #[command(flatten)]
    pub(crate) arch: ArchArgs,
    /// Batch size.
    #[arg(long, default_value_t = 128, value_parser = batch_value())]
    pub(crate) batch: usize,
    /// Longest kept history: longer ones keep their most recent behaviours.
    #[arg(long, default_value_t = 100, value_parser = positive())]
    pub(crate) max_len: usize,
    /// Optimiser.
    #[arg(long, default_value = "adam", value_parser = optim_values())]
    pub(crate) optimizer: OptimKind,
    /// Learning rate.
    #[arg(long, default_value_t = 0.001)]
    pub(crate) lr: f32,
    /// Move every embedding row every step (TensorFlow Adam) instead of lazily.
    #[arg(long)]
    pub(crate) dense_embedding_updates: bool,
    /// Clip the global gradient norm to this value.
    #[arg(long)]
    pub(crate) clip_norm: Option<f32>,
    /// Learning-rate multiplier of the auxiliary head's tensors.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) aux_lr_scale: f32,
    /// Named settings: `reference` (the defaults) or `aux-boost` (an
    /// auxiliary loss that learns: --alpha-aux 10, --aux-lr-scale 10,
    /// --variant augru-ref; train it for more epochs, docs/RESULTS.md).
    #[arg(long, default_value = "reference", value_parser = recipe_values())]
    pub(crate) recipe: Recipe,
    /// Evaluate every N iterations, as well as at the end of every epoch
    /// and of the run: on the validation users, and on the test file when
    /// --select test needs it (else only at the end).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<u64>::new().range(1..))]
    pub(crate) eval_every: Option<u64>,
    /// Do not evaluate at the end of every epoch (only every --eval-every
    /// iterations and at the end).
    #[arg(long)]
    pub(crate) no_epoch_eval: bool,
    /// Fraction of the training users held out for validation (chosen by a
    /// seeded hash of the user id: every line of a user on the same side);
    /// 0 trains on every user.
    #[arg(long, default_value_t = dien_trainer::data::DEFAULT_VALID_FRAC, value_name = "F", value_parser = valid_frac_value)]
    pub(crate) valid_frac: f64,
    /// What chooses the best model (<out>.best.safetensors): `valid`, the
    /// best validation AUC; `test`, the best test AUC, as the reference
    /// code does (the test set then picks the model, so its test metrics
    /// are optimistic).
    #[arg(long, default_value = "valid", value_parser = select_values())]
    pub(crate) select: Select,
    /// Stop after N evaluations in a row without a new best AUC of the
    /// --select metric (default: never stop early).
    #[arg(long, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<u64>::new().range(1..))]
    pub(crate) early_stop: Option<u64>,
    /// Save a checkpoint every N iterations (and at the end).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<u64>::new().range(1..))]
    pub(crate) save_every: Option<u64>,
    /// Keep the moving-average BatchNorm/Dice statistics instead of
    /// recalibrating them before each evaluation.
    #[arg(long)]
    pub(crate) no_recalibrate: bool,
    /// Training samples used for recalibration.
    #[arg(long, default_value_t = 20_000)]
    pub(crate) recal_samples: usize,
    /// Skip malformed lines (counted and reported) instead of failing.
    #[arg(long)]
    pub(crate) skip_bad_lines: bool,
    /// Stop after N iterations.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<u64>::new().range(1..))]
    pub(crate) max_steps: Option<u64>,
    /// Continue from the checkpoint at --out.
    #[arg(long)]
    pub(crate) resume: bool,
    /// Metrics log (JSON lines); default: beside the checkpoint.
    #[arg(long)]
    pub(crate) metrics_log: Option<PathBuf>,
    /// Plot of the curves (SVG); default: beside the checkpoint.
    #[arg(long)]
    pub(crate) plot: Option<PathBuf>,
    /// Iterations between training-loss records in the metrics log (1: the
    /// loss of every step).
    #[arg(long, default_value_t = 50, value_parser = clap::builder::RangedU64ValueParser::<u64>::new().range(1..))]
    pub(crate) log_every: u64,
    /// Train as one rank of an MPI job (`mpirun -np N dien train
    /// --distributed ...`): every rank trains on its share of each batch of
    /// --batch samples (a multiple of N) and the ranks together train the
    /// model one process trains (docs/DISTRIBUTED.md). Needs a dien built
    /// with the `mpi` feature.
    #[arg(long)]
    pub(crate) distributed: bool,
    /// With --distributed, compare a hash of the parameters across the
    /// ranks every N iterations (also before the first and after the last;
    /// 0: only then).
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub(crate) replica_check_every: u64,
    /// Write the initial parameters, every trained batch with its losses
    /// and each evaluation's inputs into DIR (new or empty), to replay the
    /// run elsewhere (docs/MODEL.md#exported-runs).
    #[arg(long, value_name = "DIR")]
    pub(crate) export_batches: Option<PathBuf>,
    /// Hide the progress bar.
    #[arg(long)]
    pub(crate) quiet: bool,
}

#[derive(Args)]
pub(crate) struct SweepArgs {
    /// Data directory (as `dien train --data`).
    #[arg(long)]
    pub(crate) data: PathBuf,
    /// Models, comma-separated.
    #[arg(long, default_value = "base,din,dien", value_name = "LIST")]
    pub(crate) models: String,
    /// Seeds: inclusive ranges and lists, `1-5`, `1,2,7`, `1-3,10`.
    #[arg(long, default_value = "1-5", value_name = "SEEDS")]
    pub(crate) seeds: String,
    /// Sweeps a setting of `dien train` (its flag name with underscores,
    /// e.g. lr, alpha_aux, hidden) over the values; repeat the flag for
    /// more settings: the cells are every model with every combination.
    #[arg(long = "set", value_name = "KEY=V1,V2")]
    pub(crate) sets: Vec<String>,
    /// Epochs per run (default: that of `dien train`, 1).
    #[arg(long, value_parser = positive())]
    pub(crate) epochs: Option<usize>,
    /// The sweep folder: created if needed; a folder of an earlier sweep is
    /// resumed.
    #[arg(long, default_value = "sweep", value_name = "DIR")]
    pub(crate) out: PathBuf,
    /// Compute threads of each run (default: all cores); runs go one after
    /// another.
    #[arg(long, value_parser = threads_value)]
    pub(crate) threads: Option<usize>,
    /// Hide progress bars.
    #[arg(long)]
    pub(crate) quiet: bool,
    /// Flags of `dien train` for every run, such as `--eval-every 100`; they
    /// may be written among the flags above or after `--`.
    #[arg(last = true, value_name = "TRAIN FLAGS")]
    pub(crate) train: Vec<String>,
}
