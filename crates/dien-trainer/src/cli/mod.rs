//! The `dien` command line: every command's flags and their defaults.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use dien_model::serve::Precision;
use dien_model::{AttForm, AuxForm, ModelConfig, ModelKind, Variant};
use dien_trainer::optim::OptimKind;
use dien_trainer::prepare::{BehaviorFilter, DEFAULT_CHUNK_EVENTS, DEFAULT_TEST_FRAC, EventFormat};
use dien_trainer::train::{Recipe, Select};

mod check;
mod train;

pub(crate) use check::{BenchArgs, BenchMode, GradcheckArgs, GradsArgs};
pub(crate) use train::{SweepArgs, TrainArgs};

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
    precision_values => Precision,
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
    /// Arithmetic of the large products: f32 (the batch forward), or bf16
    /// weights with f32 accumulation through the request path (needs a CPU
    /// with AVX512_BF16; docs/EMBEDDING.md#precision).
    #[arg(long, default_value = "f32", value_parser = precision_values())]
    pub(crate) precision: Precision,
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
