//! The `dien` command line: every command's flags and their defaults.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use dien_model::{AttForm, AuxForm, ModelConfig, ModelKind, Variant};
use dien_trainer::optim::OptimKind;
use dien_trainer::prepare::{BehaviorFilter, DEFAULT_CHUNK_EVENTS, DEFAULT_TEST_FRAC, EventFormat};
use dien_trainer::train::Recipe;
use dien_trainer::train::Select;

/// Clap parsers for the model's named enums: the accepted values, listed in
/// `--help`, come from each enum's own `ALL` list, so a new variant or form
/// reaches the command line without an edit here.
macro_rules! named_values {
    ($($f:ident => $ty:ty),* $(,)?) => {$(
        fn $f() -> impl clap::builder::TypedValueParser<Value = $ty> {
            use clap::builder::TypedValueParser as _;
            clap::builder::PossibleValuesParser::new(<$ty>::ALL.iter().map(|v| v.name())).try_map(|s| s.parse::<$ty>())
        }
    )*};
}

named_values!(
    model_values => ModelKind,
    variant_values => Variant,
    att_values => AttForm,
    aux_values => AuxForm,
    format_values => EventFormat,
    optim_values => OptimKind,
    recipe_values => Recipe,
    select_values => Select,
);

/// The most threads a command accepts: eight per core (more only
/// oversubscribes the cores, and a slip such as `--threads 100000` would
/// exhaust the process table).
pub(crate) fn thread_limit() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).saturating_mul(8)
}

/// `--threads`: at least 1, at most [`thread_limit`].
fn threads_value(s: &str) -> std::result::Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("`{s}`: {e}"))?;
    let max = thread_limit();
    match n {
        0 => Err("must be at least 1 (leave the flag out to use every core)".into()),
        n if n > max => Err(format!("{n} is more than {max} (eight per core of this machine)")),
        n => Ok(n),
    }
}

/// A number strictly between 0 and 1 (finite-difference steps, tolerances).
fn unit_interval(s: &str) -> std::result::Result<f64, String> {
    let x: f64 = s.parse().map_err(|e| format!("`{s}`: {e}"))?;
    if x > 0.0 && x < 1.0 { Ok(x) } else { Err(format!("{x} is not between 0 and 1")) }
}

/// `--valid-frac`: at least 0 and below 1.
fn valid_frac_value(s: &str) -> std::result::Result<f64, String> {
    let x: f64 = s.parse().map_err(|e| format!("`{s}`: {e}"))?;
    if (0.0..1.0).contains(&x) {
        Ok(x)
    } else {
        Err(format!("{x} is not a fraction of the users: it must be at least 0 and below 1 (0 holds out no user)"))
    }
}

/// The largest batch a command accepts.
pub(crate) const MAX_BATCH: u64 = 1 << 16;

/// A batch size: 1 to [`MAX_BATCH`].
fn batch_value() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..=MAX_BATCH)
}

/// A layer width: 1 to the widest a model supports.
fn width() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..=dien_model::config::MAX_WIDTH as u64)
}

/// A count that must be at least 1 (epochs, steps, candidates).
fn positive() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..)
}

/// What `dien bench` times.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum BenchMode {
    /// Forward + backward + optimiser step.
    Train,
    /// Forward in evaluation mode.
    Infer,
    /// The request path: one user, `--candidates` items.
    Score,
}

impl BenchMode {
    /// The name printed in the JSON line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::Infer => "infer",
            Self::Score => "score",
        }
    }
}

/// What `dien gradcheck` checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum GradcheckPath {
    /// The f64 reference path against finite differences.
    F64,
    /// The f32 fast (training) path against the f64 reference.
    F32,
    /// Both, the f64 check first.
    Both,
}

impl GradcheckPath {
    /// The name printed in the JSON line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::F64 => "f64",
            Self::F32 => "f32",
            Self::Both => "both",
        }
    }
    /// Whether the f64 check runs.
    pub(crate) fn f64(self) -> bool {
        self != Self::F32
    }
    /// Whether the f32 check runs.
    pub(crate) fn f32(self) -> bool {
        self != Self::F64
    }
}

#[derive(Parser)]
// A flag given twice keeps its last value: `train --config` puts the file's
// settings first, so the command line's own flags override them.
#[command(args_override_self = true)]
#[command(name = "dien", version = dien_trainer::train::CODE_VERSION, about = "A hand-written CPU engine for DIEN (Deep Interest Evolution Network)")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) cmd: Cmd,
}

#[derive(Subcommand)]
pub(crate) enum Cmd {
    /// Generate the default synthetic data set, train `base`, `din` and
    /// `dien` on it, evaluate them and print a comparison table (and a plot).
    /// Takes about two minutes on two cores.
    Demo(DemoArgs),
    /// Write a synthetic data set in the reference layout (docs/DATA.md).
    Generate(GenerateArgs),
    /// Build a data directory in the reference layout from an event log;
    /// the last line is a JSON summary.
    ///
    /// Formats: CSV/TSV with a header, Taobao UserBehavior, Amazon reviews,
    /// MovieLens ratings. Each user's last event becomes the positive, the
    /// earlier events its history, with one popularity-drawn negative beside
    /// it (docs/DATA.md, "From an event log: dien prepare").
    Prepare(PrepareArgs),
    /// Train a model on DIR/local_train_splitByUser, less the users held out
    /// for validation (--valid-frac), choosing the best model on them and
    /// reporting test metrics from DIR/local_test_splitByUser; the last
    /// line is a JSON object.
    Train(TrainArgs),
    /// Evaluate a checkpoint on a data file or on DIR/local_test_splitByUser;
    /// the last line is a JSON object with auc, gauc, logloss, accuracy and
    /// samples.
    Eval(EvalArgs),
    /// Score a data file (reference line format), one probability per line,
    /// in input order.
    Predict(PredictArgs),
    /// Check the gradients of a tiny model on a probe batch: the f64
    /// reference path against finite differences, and the f32 fast (training)
    /// path against the f64 reference (loss, logits and every trainable
    /// tensor); prints per-tensor reports and a JSON line, and fails if any
    /// tensor disagrees.
    Gradcheck(GradcheckArgs),
    /// Run one forward (and backward) pass of a checkpoint on a JSON batch and
    /// write logits, losses and every parameter gradient to a safetensors file.
    Grads(GradsArgs),
    /// Time full steps on generated inputs; the last line is a JSON object.
    Bench(BenchArgs),
    /// Train every model × seed × value of the swept settings, one run
    /// after another, and compare the cells by mean ± sd over the seeds.
    ///
    /// Writes DIR/<cell>/seed<k>/ (checkpoint, metrics log), DIR/runs.jsonl
    /// (one JSON line per run, printed too), DIR/summary.md,
    /// DIR/summary.json and DIR/curves.svg. Flags of `dien train` given
    /// here (e.g. --eval-every 100 --dim 4) apply to every run. Rerun into
    /// the same DIR, it skips the runs it finished with the same settings.
    Sweep(SweepArgs),
}

/// Model architecture options.
#[derive(Args, Clone)]
pub(crate) struct ArchArgs {
    /// Interest-evolving variant.
    #[arg(long, default_value = "augru", value_parser = variant_values())]
    pub(crate) variant: Variant,
    /// Attention form.
    #[arg(long, default_value = "mlp", value_parser = att_values())]
    pub(crate) att: AttForm,
    /// Auxiliary head (dot needs H = 2d).
    #[arg(long, default_value = "mlp", value_parser = aux_values())]
    pub(crate) aux: AuxForm,
    /// Embedding width d.
    #[arg(long, default_value_t = 18, value_parser = width())]
    pub(crate) dim: usize,
    /// GRU hidden width H.
    #[arg(long, default_value_t = 36, value_parser = width())]
    pub(crate) hidden: usize,
    /// Weight of the auxiliary loss.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) alpha_aux: f32,
}

#[derive(Args)]
pub(crate) struct DemoArgs {
    /// Folder to write and keep the data set, checkpoints, logs and the plot
    /// in, about 370 MB (default: a fresh folder under the system's
    /// temporary directory, removed when the demo ends).
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Seed of data generation and training.
    #[arg(long, default_value_t = dien_trainer::DEFAULT_SEED)]
    pub(crate) seed: u64,
    /// Epochs per model. One by default: test users are new, and a second
    /// pass lets the user embeddings memorise the training pairs.
    #[arg(long, default_value_t = 1, value_parser = positive())]
    pub(crate) epochs: usize,
    /// Compute threads (default: all cores).
    #[arg(long, value_parser = threads_value)]
    pub(crate) threads: Option<usize>,
    /// Users of the generated set, each giving a positive and a negative
    /// (default: the generator's 150,000).
    #[arg(long)]
    pub(crate) users: Option<usize>,
    /// Hide progress bars.
    #[arg(long)]
    pub(crate) quiet: bool,
}

#[derive(Args)]
pub(crate) struct GenerateArgs {
    /// Output directory.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Seed.
    #[arg(long, default_value_t = dien_trainer::DEFAULT_SEED)]
    pub(crate) seed: u64,
    /// Users (each gives one positive and one negative line).
    #[arg(long)]
    pub(crate) users: Option<usize>,
    /// Items in the catalogue.
    #[arg(long)]
    pub(crate) items: Option<usize>,
    /// Categories.
    #[arg(long)]
    pub(crate) categories: Option<usize>,
    /// Shortest generated history.
    #[arg(long)]
    pub(crate) min_history: Option<usize>,
    /// Longest generated history.
    #[arg(long)]
    pub(crate) max_history: Option<usize>,
}

#[derive(Args)]
pub(crate) struct PrepareArgs {
    /// The event log (read once, streamed).
    #[arg(long)]
    pub(crate) events: PathBuf,
    /// Its format. csv/tsv: a header naming the columns user, item,
    /// category, timestamp and optionally behavior, rating (any order, other
    /// columns ignored). taobao: UserBehavior.csv
    /// (user,item,category,behavior,timestamp, no header). amazon-json:
    /// review JSON lines (reviewerID, asin, overall, unixReviewTime) with
    /// --items. movielens: ratings.csv with --items movies.csv.
    #[arg(long, value_parser = format_values())]
    pub(crate) format: EventFormat,
    /// Item file giving each item's category: Amazon metadata JSON lines
    /// (category = last entry of the first `categories` path) or MovieLens
    /// movies.csv (category = first genre). Required by amazon-json and
    /// movielens.
    #[arg(long, alias = "meta", value_name = "FILE")]
    pub(crate) items: Option<PathBuf>,
    /// Output directory (created if needed; must not contain an input file).
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Drop items with fewer than N events (after the behaviour filter):
    /// their events leave the log (histories, targets, negatives,
    /// reviews-info) and item-info no longer lists them. One pass, not an
    /// iterated k-core. Default: no item is dropped.
    #[arg(long, value_name = "N")]
    pub(crate) min_count: Option<u64>,
    /// Keep only the last L events of each history (default: all).
    #[arg(long, value_name = "L")]
    pub(crate) max_len: Option<usize>,
    /// Probability that a user's sample goes to the test file.
    #[arg(long, default_value_t = DEFAULT_TEST_FRAC, value_name = "F")]
    pub(crate) test_frac: f64,
    /// Seed of the negatives (the train/test split uses seed + 1).
    #[arg(long, default_value_t = dien_trainer::DEFAULT_SEED)]
    pub(crate) seed: u64,
    /// Behaviours kept as events: a comma-separated list (pv,buy) or `all`.
    /// Default: pv for taobao (as the reference data), all otherwise.
    #[arg(long, value_name = "LIST")]
    pub(crate) behavior: Option<BehaviorFilter>,
    /// Events sorted in memory at a time (about 100 bytes each); a larger
    /// log is sorted in runs on disk, inside --out, and merged.
    #[arg(long, default_value_t = DEFAULT_CHUNK_EVENTS, value_name = "N")]
    pub(crate) chunk_events: usize,
    /// Skip malformed lines (counted, the first few reported) instead of
    /// failing on the first.
    #[arg(long)]
    pub(crate) skip_bad_lines: bool,
}

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
pub(crate) struct EvalArgs {
    /// Checkpoint (with its vocabulary sidecar).
    #[arg(long)]
    pub(crate) checkpoint: PathBuf,
    /// Data file, or a data directory whose test file is scored
    /// (docs/MODEL.md#data-layout).
    #[arg(long)]
    pub(crate) data: PathBuf,
    /// Batch size.
    #[arg(long, default_value_t = 256, value_parser = batch_value())]
    pub(crate) batch: usize,
    /// Compute threads (default: all cores).
    #[arg(long, value_parser = threads_value)]
    pub(crate) threads: Option<usize>,
    /// Skip malformed lines instead of failing.
    #[arg(long)]
    pub(crate) skip_bad_lines: bool,
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

#[derive(Args)]
pub(crate) struct PredictArgs {
    /// Checkpoint (with its vocabulary sidecar).
    #[arg(long)]
    pub(crate) checkpoint: PathBuf,
    /// Data file in the reference line format, with or without the label
    /// column, or a data directory whose test file is scored
    /// (docs/MODEL.md#data-layout).
    #[arg(long)]
    pub(crate) data: PathBuf,
    /// Output file: one probability per input line.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Batch size.
    #[arg(long, default_value_t = 256, value_parser = batch_value())]
    pub(crate) batch: usize,
    /// Compute threads (default: all cores).
    #[arg(long, value_parser = threads_value)]
    pub(crate) threads: Option<usize>,
}

#[derive(Args)]
pub(crate) struct GradcheckArgs {
    /// Model.
    #[arg(long, default_value = "dien", value_parser = model_values())]
    pub(crate) model: ModelKind,
    /// Interest-evolving variant.
    #[arg(long, default_value = "augru", value_parser = variant_values())]
    pub(crate) variant: Variant,
    /// Attention form.
    #[arg(long, default_value = "mlp", value_parser = att_values())]
    pub(crate) att: AttForm,
    /// Auxiliary head (dot needs H = 2d).
    #[arg(long, default_value = "mlp", value_parser = aux_values())]
    pub(crate) aux: AuxForm,
    /// Embedding width d (tiny by default: every entry is probed four times).
    #[arg(long, default_value_t = 2)]
    pub(crate) dim: usize,
    /// GRU hidden width H.
    #[arg(long, default_value_t = 4)]
    pub(crate) hidden: usize,
    /// Which check to run: f64 (the reference path against finite
    /// differences), f32 (the fast path against the reference, on the same
    /// batch and weights) or both.
    #[arg(long, value_enum, default_value_t = GradcheckPath::Both)]
    pub(crate) path: GradcheckPath,
    /// Seed of the parameters and the batch.
    #[arg(long, default_value_t = dien_trainer::DEFAULT_SEED)]
    pub(crate) seed: u64,
    /// f64 check: finite-difference step (fourth-order central
    /// differences), in (0, 1).
    #[arg(long, default_value_t = dien_model::gradcheck::DEFAULT_EPS, value_parser = unit_interval)]
    pub(crate) eps: f64,
    /// f64 check: relative tolerance per entry (entries below the absolute
    /// floor are judged by tol × floor), in (0, 1).
    #[arg(long, default_value_t = 1e-6, value_parser = unit_interval)]
    pub(crate) tol: f64,
    /// f64 check: at most this many entries per tensor (largest gradients
    /// plus a seeded sample); 0 checks every entry.
    #[arg(long, default_value_t = 400)]
    pub(crate) max_entries: usize,
    /// f32 check: tolerance of each tensor's relative error
    /// ‖f32 − f64‖ / max(‖f64‖, floor) and of its largest entry error
    /// relative to max(largest entry, floor), in (0, 1); the floor is 1 for
    /// losses and logits, 1% of the whole gradient's norm for gradients
    /// (docs/MODEL.md#gradient-checks).
    #[arg(long, default_value_t = dien_model::gradcheck::F32_TOL, value_parser = unit_interval)]
    pub(crate) tol_f32: f64,
}

#[derive(Args)]
pub(crate) struct GradsArgs {
    /// Checkpoint.
    #[arg(long)]
    pub(crate) checkpoint: PathBuf,
    /// JSON batch file (format: docs/MODEL.md#batch-file); `--batch` is
    /// accepted as an alias.
    #[arg(long = "batch-file", visible_alias = "batch")]
    pub(crate) batch_file: PathBuf,
    /// Output safetensors file.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Evaluation mode: forward only, running statistics.
    #[arg(long)]
    pub(crate) eval: bool,
    /// Use the double-precision reference path.
    #[arg(long)]
    pub(crate) f64: bool,
}

#[derive(Args)]
pub(crate) struct BenchArgs {
    /// Model.
    #[arg(long, default_value = "dien", value_parser = model_values())]
    pub(crate) model: ModelKind,
    /// What to time.
    #[arg(long, value_enum, default_value_t = BenchMode::Train)]
    pub(crate) mode: BenchMode,
    /// Candidates per request (score mode).
    #[arg(long, default_value_t = 100, value_parser = positive())]
    pub(crate) candidates: usize,
    /// Batch size.
    #[arg(long, default_value_t = 128, value_parser = batch_value())]
    pub(crate) batch: usize,
    /// History length of every sample.
    #[arg(long, default_value_t = 100)]
    pub(crate) seqlen: usize,
    /// Compute threads (default: all cores).
    #[arg(long, value_parser = threads_value)]
    pub(crate) threads: Option<usize>,
    /// Timed steps (after warm-up).
    #[arg(long, default_value_t = 20, value_parser = positive())]
    pub(crate) steps: usize,
    #[command(flatten)]
    pub(crate) arch: ArchArgs,
}

impl ArchArgs {
    /// A checked model configuration of `kind` with these options and the
    /// given table sizes.
    pub(crate) fn model_config(
        &self,
        kind: ModelKind,
        n_uid: usize,
        n_mid: usize,
        n_cat: usize,
    ) -> Result<ModelConfig> {
        let mut c = ModelConfig::new(kind, n_uid, n_mid, n_cat);
        self.apply_to(&mut c);
        c.validate()?;
        Ok(c)
    }

    /// Sets the architecture fields of `c` (not checked). The auxiliary-loss
    /// weight applies to models that have the auxiliary loss; the others keep
    /// [`ModelConfig::new`]'s.
    pub(crate) fn apply_to(&self, c: &mut ModelConfig) {
        c.variant = self.variant;
        c.att = self.att;
        c.aux = self.aux;
        c.d = self.dim;
        c.hidden = self.hidden;
        if c.has_aux() {
            c.alpha_aux = self.alpha_aux;
        }
    }
}
