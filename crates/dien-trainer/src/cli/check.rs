//! The flags of the commands that check and measure the engine: `dien
//! gradcheck`, `dien grads` and `dien bench`.

use std::path::PathBuf;

use clap::Args;

use super::*;

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
    /// Also print where the time of a step goes, per stage (train and
    /// infer modes): milliseconds per step and share.
    #[arg(long)]
    pub(crate) stages: bool,
    /// Precision of the request path's large products (score mode): f32,
    /// or bf16 weights with f32 accumulation (needs AVX512_BF16).
    #[arg(long, default_value = "f32", value_parser = precision_values())]
    pub(crate) precision: Precision,
    #[command(flatten)]
    pub(crate) arch: ArchArgs,
}
