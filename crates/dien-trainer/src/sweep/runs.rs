//! The record of one finished run (a line of `runs.jsonl`) and what it is
//! made from: the run's summary and the evaluations in its metrics log.

use std::fs;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::TrainError;
use crate::metrics::EvalMetrics;

/// Evaluation metrics as recorded (a metric undefined on the data is
/// `null`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// AUC.
    pub auc: Option<f64>,
    /// Impression-weighted per-user AUC.
    pub gauc: Option<f64>,
    /// Mean cross-entropy.
    pub logloss: Option<f64>,
    /// Fraction correct at p > 0.5.
    pub accuracy: Option<f64>,
    /// Samples evaluated.
    #[serde(default)]
    pub samples: u64,
}

impl From<&EvalMetrics> for Metrics {
    fn from(m: &EvalMetrics) -> Self {
        Self { auc: m.auc, gauc: m.gauc, logloss: m.logloss, accuracy: m.accuracy, samples: m.samples as u64 }
    }
}

/// One evaluation of a run, read from its metrics log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Iterations done.
    pub step: u64,
    /// The `epoch` the metrics log records for the evaluation
    /// ([`crate::record::LogRecord::epoch`]).
    pub epoch: u64,
    /// Metrics on the test file.
    pub test: Option<Metrics>,
    /// Metrics on the validation split, for runs that hold one out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid: Option<Metrics>,
}

impl Evaluation {
    /// The metrics that choose the best model and that the curves follow:
    /// the validation split's when the run held one out, the test file's
    /// otherwise (runs without a validation split select on the test file,
    /// as `dien train` does for its best checkpoint).
    pub fn selection(&self) -> Option<&Metrics> {
        self.valid.as_ref().or(self.test.as_ref())
    }
}

/// The evaluations in the metrics log at `path` (its `eval` records), in
/// log order.
pub fn evaluations(path: &Path) -> Result<Vec<Evaluation>, TrainError> {
    let text = fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .map_err(|e| TrainError::Config(format!("{}:{}: not a JSON record: {e}", path.display(), i + 1)))?;
        if v.get("kind").and_then(Value::as_str) == Some("eval") {
            out.push(serde_json::from_value(v).map_err(|e| {
                TrainError::Config(format!("{}:{}: not an evaluation record: {e}", path.display(), i + 1))
            })?);
        }
    }
    Ok(out)
}

/// The best evaluation: the first with the highest selection AUC
/// ([`Evaluation::selection`]), the rule by which `dien train` keeps its
/// best checkpoint.
pub fn best(evals: &[Evaluation]) -> Option<&Evaluation> {
    let mut best: Option<(&Evaluation, f64)> = None;
    for e in evals {
        if let Some(auc) = e.selection().and_then(|m| m.auc)
            && best.is_none_or(|(_, b)| auc > b)
        {
            best = Some((e, auc));
        }
    }
    best.map(|(e, _)| e)
}

/// One finished run: a line of `runs.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The cell's folder name.
    pub cell: String,
    /// The model.
    pub model: String,
    /// The seed.
    pub seed: u64,
    /// The swept settings of the cell, by key (numbers and booleans as
    /// such, other values as strings).
    pub set: Map<String, Value>,
    /// Test metrics of the final model.
    pub test: Metrics,
    /// The best evaluation (the best checkpoint): its step, epoch and
    /// metrics.
    pub best: Option<Evaluation>,
    /// Wall time of the run.
    pub seconds: f64,
    /// Iterations.
    pub steps: u64,
    /// Training samples seen.
    pub samples: u64,
    /// The run's folder, relative to the sweep's.
    pub dir: String,
    /// Every setting of the run, as its metrics log records them: a rerun
    /// skips the run only when these match.
    pub config: Map<String, Value>,
}

/// A swept value as recorded: a number or boolean when it reads as one.
pub fn typed(value: &str) -> Value {
    match serde_json::from_str::<Value>(value) {
        Ok(v @ (Value::Number(_) | Value::Bool(_))) => v,
        _ => Value::String(value.to_string()),
    }
}

/// The records of `runs.jsonl` at `path` (none when it does not exist).
pub fn read_runs(path: &Path) -> Result<Vec<RunRecord>, TrainError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| TrainError::Config(format!("{}:{}: not a run record: {e}", path.display(), i + 1)))
        })
        .collect()
}

/// Appends `record` to `runs.jsonl` at `path` as one line, flushed to disk
/// so that a sweep stopped later still knows this run finished.
pub fn append_run(path: &Path, record: &RunRecord) -> Result<(), TrainError> {
    let mut f = fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| TrainError::io(path, e))?;
    let line = serde_json::to_string(record).expect("run records serialise");
    writeln!(f, "{line}").and_then(|_| f.sync_data()).map_err(|e| TrainError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(step: u64, test_auc: f64, valid_auc: Option<f64>) -> Evaluation {
        let m = |auc| Metrics { auc: Some(auc), ..Metrics::default() };
        Evaluation { step, epoch: 0, test: Some(m(test_auc)), valid: valid_auc.map(m) }
    }

    #[test]
    fn the_best_follows_validation_when_there_is_one() {
        let test_only = [eval(1, 0.6, None), eval(2, 0.7, None), eval(3, 0.7, None)];
        assert_eq!(best(&test_only).unwrap().step, 2);
        let with_valid = [eval(1, 0.6, Some(0.8)), eval(2, 0.7, Some(0.75))];
        assert_eq!(best(&with_valid).unwrap().step, 1);
        assert!(best(&[]).is_none());
    }

    #[test]
    fn values_keep_their_type() {
        assert_eq!(typed("0.001"), serde_json::json!(0.001));
        assert_eq!(typed("true"), serde_json::json!(true));
        assert_eq!(typed("augru"), serde_json::json!("augru"));
    }
}
