//! Evaluation on a data file and recalibration of the normalisation
//! statistics before it.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use dien_model::fast::Model;
use dien_model::vocab::TableSizes;
use dien_model::{Mode, ModelConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use dien_model::StatSync;

use super::passes::{Pass, Workers, forward_each};
use crate::data::{Batcher, BatcherConfig, DataSet, LineReader, LoadedBatch, Shard, UserFilter};
use crate::dist::{Replicas, ScoreShare};
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
    evaluate_with(model, data, file, batch_size, skip_bad_lines, None, None)
}

/// [`evaluate`] on the lines of `file` that `users` keeps (`None`: every
/// line): with the validation side of a run's split and its training file,
/// the run's validation metrics.
pub fn evaluate_users(
    model: &mut Model,
    data: &Arc<DataSet>,
    file: &Path,
    batch_size: usize,
    skip_bad_lines: bool,
    users: Option<UserFilter>,
) -> Result<EvalMetrics, TrainError> {
    evaluate_with(model, data, file, batch_size, skip_bad_lines, users, None)
}

/// [`evaluate`] as one rank of a data-parallel run: every rank scores its
/// share of every batch, and the (logit, label, user) triples of all ranks
/// are gathered so that every rank computes the metrics of the whole file,
/// with the samples in the order one process would see them.
pub fn evaluate_shared(
    model: &mut Model,
    data: &Arc<DataSet>,
    file: &Path,
    batch_size: usize,
    skip_bad_lines: bool,
    dist: &mut Replicas<'_>,
) -> Result<EvalMetrics, TrainError> {
    evaluate_with(model, data, file, batch_size, skip_bad_lines, None, Some(dist))
}

/// [`evaluate_users`], shared by the ranks of `dist` when given
/// ([`evaluate_shared`]).
pub(super) fn evaluate_with(
    model: &mut Model,
    data: &Arc<DataSet>,
    file: &Path,
    batch_size: usize,
    skip_bad_lines: bool,
    users: Option<UserFilter>,
    dist: Option<&mut Replicas<'_>>,
) -> Result<EvalMetrics, TrainError> {
    let shard = dist.as_ref().map(|d| Shard { rank: d.rank(), ranks: d.size() });
    let bcfg = evaluation_batcher(model.config(), batch_size, skip_bad_lines, shard, users);
    let stream = Batcher::open(file, data.clone(), bcfg, 0)?.spawn(4);
    score(model, &mut Workers::default(), stream.map(|lb| lb.map(Cow::Owned)), dist)
}

/// The metrics of `model` on `batches` (made by [`evaluation_batcher`]),
/// in evaluation mode (`workers` run batches beside `model`); with `dist`,
/// each rank holds its share of every batch and the scores of all ranks
/// are gathered in batch order.
pub(super) fn score<'b>(
    model: &mut Model,
    workers: &mut Workers,
    batches: impl Iterator<Item = Result<Cow<'b, LoadedBatch>, TrainError>>,
    dist: Option<&mut Replicas<'_>>,
) -> Result<EvalMetrics, TrainError> {
    let mut acc = MetricsAccumulator::new();
    let Some(dist) = dist else {
        forward_each(model, workers, Pass::Logits, batches, |m, lb| {
            acc.push_batch(&lb.raw_uid, m.logits(), &lb.batch.label);
            Ok(())
        })?;
        return Ok(acc.finish());
    };
    let mut shares = Vec::new();
    for lb in batches {
        let lb = lb?;
        let logits = if lb.batch.batch > 0 {
            model.forward(&lb.batch, Mode::Eval)?;
            model.logits().to_vec()
        } else {
            Vec::new()
        };
        let lb = lb.into_owned();
        shares.push(ScoreShare { users: lb.raw_uid, logits, labels: lb.batch.label });
    }
    for b in dist.gather_scores(&shares)? {
        acc.push_batch(&b.users, &b.logits, &b.labels);
    }
    Ok(acc.finish())
}

/// How evaluation batches a data file: in the training batches' order (sorted
/// groups), without negatives, keeping each sample's raw uid for GAUC; only
/// the lines of `users` (every line when `None`).
pub(crate) fn evaluation_batcher(
    cfg: &ModelConfig,
    batch_size: usize,
    skip_bad_lines: bool,
    shard: Option<Shard>,
    users: Option<UserFilter>,
) -> BatcherConfig {
    BatcherConfig {
        batch_size,
        max_len: cfg.max_len,
        negatives: false,
        keep_raw_uid: true,
        skip_bad_lines,
        tables: Some(TableSizes::of_config(cfg)),
        shard,
        users,
        ..BatcherConfig::default()
    }
}

/// The training batches recalibration reads from `src` (without
/// negatives): each batch of the file is kept with a probability chosen so
/// that about `src.samples` samples are kept (every batch when the lines
/// drawn from hold no more), drawn from a generator seeded by `src.seed`;
/// empty batches (shares of a short batch, or groups without a kept user)
/// are left out. The batcher runs on a background thread.
pub(crate) fn recalibration_batches(
    cfg: &ModelConfig,
    data: &Arc<DataSet>,
    src: &RecalSource<'_>,
    shard: Option<Shard>,
) -> Result<impl Iterator<Item = Result<LoadedBatch, TrainError>> + use<>, TrainError> {
    let stream = Batcher::open(src.train_file, data.clone(), recalibration_batcher(cfg, src, shard), 0)?.spawn(4);
    Ok(recalibration_draw(stream, src))
}

/// How recalibration batches the training file: as training does, without
/// negatives, only the lines of `src.users`.
pub(crate) fn recalibration_batcher(cfg: &ModelConfig, src: &RecalSource<'_>, shard: Option<Shard>) -> BatcherConfig {
    BatcherConfig {
        batch_size: src.batch_size,
        max_len: cfg.max_len,
        negatives: false,
        skip_bad_lines: src.skip_bad_lines,
        tables: Some(TableSizes::of_config(cfg)),
        shard,
        users: src.users,
        ..BatcherConfig::default()
    }
}

/// The batches of `batches` (made by [`recalibration_batcher`]) that
/// recalibration keeps: see [`recalibration_batches`].
pub(crate) fn recalibration_draw<I>(
    batches: I,
    src: &RecalSource<'_>,
) -> impl Iterator<Item = Result<LoadedBatch, TrainError>> + use<I>
where
    I: Iterator<Item = Result<LoadedBatch, TrainError>>,
{
    let (total, samples) = (src.lines, src.samples);
    // Batches are drawn independently with probability p; 10% headroom so the
    // sample is at least `samples` large in all but rare draws.
    let p = if total as f64 <= samples as f64 { 1.0 } else { (1.1 * samples as f64 / total as f64).min(1.0) };
    let mut rng = ChaCha8Rng::seed_from_u64(src.seed ^ 0x7eca_11b7);
    // The draw comes before the emptiness test, so that every rank draws
    // for every batch and all keep the same ones.
    batches.filter(move |lb| match lb {
        Ok(lb) => !(p < 1.0 && rng.random::<f64>() >= p) && lb.batch.batch > 0,
        Err(_) => true,
    })
}

/// Number of lines of `path` (a last line without a line break counts).
pub fn count_lines(path: &Path) -> Result<u64, TrainError> {
    let mut r = LineReader::open(path)?;
    while r.next_line()?.is_some() {}
    Ok(r.lines_consumed())
}

/// Where recalibration draws its samples from: whole batches of a training
/// file, each kept with the same seeded probability.
#[derive(Clone, Copy, Debug)]
pub struct RecalSource<'a> {
    /// The training file.
    pub train_file: &'a Path,
    /// Its sample lines that `users` keeps (all of them without a filter),
    /// as [`count_lines`] or [`crate::data::count_split`] gives them, so
    /// that a run evaluating many times reads the file for it once.
    pub lines: u64,
    /// The lines drawn from (`None`: every line); a run with a validation
    /// split recalibrates on its training users only.
    pub users: Option<UserFilter>,
    /// About how many samples to use (all of them when there are not more).
    pub samples: usize,
    /// Seed of the draw.
    pub seed: u64,
    /// Samples per batch.
    pub batch_size: usize,
    /// Skip malformed lines instead of failing on them.
    pub skip_bad_lines: bool,
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
    let lines = count_lines(train_file)?;
    let src = RecalSource { train_file, lines, users: None, samples, seed, batch_size, skip_bad_lines: false };
    recalibrate_sampled(model, data, &src)
}

/// [`recalibrate`] from `src`.
pub fn recalibrate_sampled(model: &mut Model, data: &Arc<DataSet>, src: &RecalSource<'_>) -> Result<usize, TrainError> {
    recalibrate_with(model, data, src, None)
}

/// [`recalibrate_sampled`] as one rank of a data-parallel run: every rank
/// draws the same batches and collects the head inputs of its share of
/// each; the statistics are those of all shares together (exchanged), so
/// every rank ends with the statistics one process computes. Returns the
/// number of samples of all ranks.
pub fn recalibrate_shared(
    model: &mut Model,
    data: &Arc<DataSet>,
    src: &RecalSource<'_>,
    dist: &mut Replicas<'_>,
) -> Result<usize, TrainError> {
    recalibrate_with(model, data, src, Some(dist))
}

fn recalibrate_with(
    model: &mut Model,
    data: &Arc<DataSet>,
    src: &RecalSource<'_>,
    dist: Option<&mut Replicas<'_>>,
) -> Result<usize, TrainError> {
    let shard = dist.as_ref().map(|d| Shard { rank: d.rank(), ranks: d.size() });
    let cfg = model.config().clone();
    let batches = recalibration_batches(&cfg, data, src, shard)?;
    recalibrate_on(model, &mut Workers::default(), batches.map(|lb| lb.map(Cow::Owned)), 0, dist)
}

/// Recalibrates `model` on `batches` (made by [`recalibration_batches`]),
/// which hold `samples` samples when known (0: unknown), so that the head
/// inputs are collected without growing their buffer; `workers` run
/// batches beside `model`. Returns the number of samples of all ranks.
pub(super) fn recalibrate_on<'b>(
    model: &mut Model,
    workers: &mut Workers,
    batches: impl Iterator<Item = Result<Cow<'b, LoadedBatch>, TrainError>>,
    samples: usize,
    dist: Option<&mut Replicas<'_>>,
) -> Result<usize, TrainError> {
    let mut xs = std::mem::take(&mut workers.head_inputs);
    xs.clear();
    xs.reserve(samples * model.config().head_in());
    let mut n = 0;
    let mut collect = |m: &Model, lb: &LoadedBatch| {
        xs.extend_from_slice(m.head_input());
        n += lb.batch.batch;
        Ok(())
    };
    match dist {
        // The ranks' forwards are their own: only the statistics are shared.
        Some(_) => {
            for lb in batches {
                let lb = lb?;
                model.forward_head_input(&lb.batch)?;
                collect(model, &lb)?;
            }
        }
        None => forward_each(model, workers, Pass::HeadInputs, batches, collect)?,
    }
    let all = match dist {
        None => {
            if n > 0 {
                model.recalibrate(&xs)?;
            }
            n
        }
        Some(dist) => {
            let mut all = [n as f64];
            dist.sum(&mut all)?;
            if all[0] > 0.0 {
                model.recalibrate_synced(&xs, dist)?;
            }
            all[0] as usize
        }
    };
    workers.head_inputs = xs;
    Ok(all)
}
