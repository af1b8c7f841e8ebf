//! The records of the metrics log (one JSON object per line), shared by the
//! training loop that writes them and the plots drawn from them.

use serde::Serialize;

use crate::metrics::EvalMetrics;

/// One line of the metrics log.
#[derive(Clone, Debug, Serialize)]
pub struct LogRecord {
    /// `"train"` (running loss) or `"eval"` (test metrics).
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
    /// Test metrics (eval records).
    pub test: Option<EvalMetrics>,
    /// Learning rate.
    pub lr: f32,
    /// Seconds since the run (or its resumption) started.
    pub elapsed_s: f64,
    /// Training samples per second over the run.
    pub samples_per_s: f64,
}
