//! Evaluation on a data file and recalibration of the normalisation
//! statistics before it.

use std::path::Path;
use std::sync::Arc;

use dien_model::Mode;
use dien_model::fast::Model;
use dien_model::vocab::TableSizes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data::{Batcher, BatcherConfig, DataSet, LineReader};
use crate::error::TrainError;
use crate::metrics::{EvalMetrics, MetricsAccumulator};

/// Scores `file` (lines of the reference data layout) in evaluation mode: AUC, GAUC (users by raw
/// id), logloss, accuracy.
pub fn evaluate(
    model: &mut Model,
    data: &Arc<DataSet>,
    file: &Path,
    batch_size: usize,
    skip_bad_lines: bool,
) -> Result<EvalMetrics, TrainError> {
    let bcfg = BatcherConfig {
        batch_size,
        max_len: model.config().max_len,
        negatives: false,
        keep_raw_uid: true,
        skip_bad_lines,
        tables: Some(TableSizes::of_config(model.config())),
        ..BatcherConfig::default()
    };
    let mut acc = MetricsAccumulator::new();
    for lb in Batcher::open(file, data.clone(), bcfg, 0)?.spawn(4) {
        let lb = lb?;
        model.forward(&lb.batch, Mode::Eval)?;
        acc.push_batch(&lb.raw_uid, model.logits(), &lb.batch.label);
    }
    Ok(acc.finish())
}

/// Number of lines of `path` (a last line without a line break counts).
pub fn count_lines(path: &Path) -> Result<u64, TrainError> {
    let mut r = LineReader::open(path)?;
    while r.next_line()?.is_some() {}
    Ok(r.lines_consumed())
}

/// Recalibrates BatchNorm and Dice statistics on a seeded random
/// sample of whole training batches holding about `samples` samples (all of
/// the training set when it is not larger), in evaluation mode. Returns the
/// number of samples used.
pub fn recalibrate(
    model: &mut Model,
    data: &Arc<DataSet>,
    train_file: &Path,
    samples: usize,
    seed: u64,
    batch_size: usize,
) -> Result<usize, TrainError> {
    let total = count_lines(train_file)?;
    recalibrate_sampled(model, data, train_file, total, samples, seed, batch_size, false)
}

/// [`recalibrate`] with the number of lines of `train_file` already known
/// (`train_lines`, as [`count_lines`] gives it), so that a run evaluating
/// many times reads the file for it once; malformed lines are skipped when
/// `skip_bad_lines`, else they are errors.
#[allow(clippy::too_many_arguments)]
pub fn recalibrate_sampled(
    model: &mut Model,
    data: &Arc<DataSet>,
    train_file: &Path,
    train_lines: u64,
    samples: usize,
    seed: u64,
    batch_size: usize,
    skip_bad_lines: bool,
) -> Result<usize, TrainError> {
    let total = train_lines;
    // Batches are drawn independently with probability p; 10% headroom so the
    // sample is at least `samples` large in all but rare draws.
    let p = if total as f64 <= samples as f64 { 1.0 } else { (1.1 * samples as f64 / total as f64).min(1.0) };
    let bcfg = BatcherConfig {
        batch_size,
        max_len: model.config().max_len,
        negatives: false,
        skip_bad_lines,
        tables: Some(TableSizes::of_config(model.config())),
        ..BatcherConfig::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7eca_11b7);
    let mut xs = Vec::new();
    let mut n = 0;
    for lb in Batcher::open(train_file, data.clone(), bcfg, 0)?.spawn(4) {
        let lb = lb?;
        if p < 1.0 && rng.random::<f64>() >= p {
            continue;
        }
        model.forward(&lb.batch, Mode::Eval)?;
        xs.extend_from_slice(model.head_input());
        n += lb.batch.batch;
    }
    if n > 0 {
        model.recalibrate(&xs)?;
    }
    Ok(n)
}
