//! The records of the metrics log (one JSON object per line), shared by the
//! training loop that writes them and the plots drawn from them.
//!
//! Besides these records the log holds lines of other kinds, told apart by
//! their `kind`: the run record (`run`) at the start of each sitting, the
//! validation split (`split`) after it, and the best model's test metrics
//! (`best`) at its end (docs/MODEL.md#run-records).

use serde::Serialize;

use crate::metrics::EvalMetrics;

/// One line of the metrics log.
#[derive(Clone, Debug, Serialize)]
pub struct LogRecord {
    /// `"train"` (running loss) or `"eval"` (validation and test metrics).
    pub kind: &'static str,
    /// Iterations done.
    pub step: u64,
    /// Epoch (0-based) of the last iteration.
    pub epoch: u64,
    /// Training samples seen.
    pub samples: u64,
    /// Mean training loss since the previous `train` record.
    pub train_loss: Option<f64>,
    /// Mean target loss since the previous `train` record.
    pub train_loss_target: Option<f64>,
    /// Mean auxiliary loss since the previous `train` record.
    pub train_loss_aux: Option<f64>,
    /// Metrics on the validation split (eval records of a run that has
    /// one).
    pub valid: Option<EvalMetrics>,
    /// Metrics on the test file (eval records where it was scored: every
    /// evaluation when the best model is chosen by test AUC, else the final
    /// one).
    pub test: Option<EvalMetrics>,
    /// Learning rate.
    pub lr: f32,
    /// Seconds since the run (or its resumption) started.
    pub elapsed_s: f64,
    /// Training samples per second over the run.
    pub samples_per_s: f64,
}
