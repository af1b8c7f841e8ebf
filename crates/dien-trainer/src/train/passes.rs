//! Evaluation-mode passes over many batches, several batches at a time.
//!
//! The batches evaluation and recalibration score are small (128 samples
//! of a few behaviours each on the Amazon sets): one forward pass leaves a
//! second thread mostly waiting at the model's per-stage joins. With more
//! than one thread in the pool, [`forward_each`] runs up to that many
//! batches at once (at most [`MAX_WIDTH`]): the first on the model itself,
//! the others on replicas of it ([`Workers`], the same parameters), and
//! hands the results over in batch order. An evaluation-mode forward reads
//! the parameters and writes only its own model's workspace, and its
//! results do not depend on the thread that runs it, so every batch gets
//! exactly the values the model computes alone.

use std::borrow::Cow;

use dien_model::fast::Model;
use dien_model::{Batch, Mode};
use rayon::prelude::*;

use crate::data::LoadedBatch;
use crate::error::TrainError;

/// The most batches run at once: each replica holds a workspace (tens of
/// megabytes for batches of long histories), and one batch already keeps
/// several threads busy when the histories are long.
pub const MAX_WIDTH: usize = 4;

/// Replicas of a model for [`forward_each`], kept from one pass to the next
/// so that their workspaces are sized once.
#[derive(Default)]
pub(super) struct Workers {
    replicas: Vec<Model>,
    /// Recalibration's head inputs, kept between recalibrations (tens of
    /// megabytes on real data, which a fresh buffer faults in again).
    pub(super) head_inputs: Vec<f32>,
}

impl Workers {
    /// `n` replicas of `model`, with its current parameters.
    fn replicas(&mut self, model: &Model, n: usize) -> Result<&mut [Model], TrainError> {
        self.replicas.retain(|r| r.config() == model.config());
        while self.replicas.len() < n {
            self.replicas.push(Model::new(model.config().clone(), model.params().clone())?);
        }
        for r in &mut self.replicas[..n] {
            for ((_, dst), (_, src)) in r.params_mut().iter_mut().zip(model.params().iter()) {
                dst.copy_from_slice(src);
            }
        }
        Ok(&mut self.replicas[..n])
    }
}

/// What [`forward_each`] computes of each batch, in evaluation mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Pass {
    /// The whole forward: logits and head inputs.
    Logits,
    /// The head inputs only ([`Model::forward_head_input`]): recalibration.
    HeadInputs,
}

impl Pass {
    fn run(self, m: &mut Model, batch: &Batch) -> Result<(), TrainError> {
        match self {
            Pass::Logits => m.forward(batch, Mode::Eval).map(drop),
            Pass::HeadInputs => m.forward_head_input(batch),
        }
        .map_err(TrainError::from)
    }
}

/// Runs `model`'s evaluation-mode forward (as far as `pass` says) on every batch of `batches`,
/// then calls `each` with the model that ran it (its logits and head
/// inputs: `model` itself, or one of its replicas in `workers`) and the
/// batch, in batch order. The first error (of the batches, of a forward,
/// or of `each`, in batch order) ends the pass. Parameters are left as
/// they are.
pub(super) fn forward_each<'b>(
    model: &mut Model,
    workers: &mut Workers,
    pass: Pass,
    batches: impl Iterator<Item = Result<Cow<'b, LoadedBatch>, TrainError>>,
    mut each: impl FnMut(&Model, &LoadedBatch) -> Result<(), TrainError>,
) -> Result<(), TrainError> {
    let width = rayon::current_num_threads().min(MAX_WIDTH);
    let mut batches = batches.peekable();
    if width <= 1 || batches.peek().is_none() {
        for lb in batches {
            let lb = lb?;
            pass.run(model, &lb.batch)?;
            each(model, &lb)?;
        }
        return Ok(());
    }
    let replicas = workers.replicas(model, width - 1)?;
    let mut window: Vec<Cow<'b, LoadedBatch>> = Vec::with_capacity(width);
    let mut results: Vec<Result<(), TrainError>> = Vec::with_capacity(width - 1);
    let run = |m: &mut Model, lb: &LoadedBatch| pass.run(m, &lb.batch);
    loop {
        window.clear();
        let mut failed = None;
        while window.len() < width {
            match batches.next() {
                Some(Ok(lb)) => window.push(lb),
                Some(Err(e)) => {
                    failed = Some(e);
                    break;
                }
                None => break,
            }
        }
        let Some((head, rest)) = window.split_first() else {
            return failed.map_or(Ok(()), Err);
        };
        let (first, ()) = rayon::join(
            || run(model, head),
            || rest.par_iter().zip(replicas.par_iter_mut()).map(|(lb, m)| run(m, lb)).collect_into_vec(&mut results),
        );
        first?;
        each(model, head)?;
        for ((lb, r), m) in rest.iter().zip(results.drain(..)).zip(replicas.iter()) {
            r?;
            each(m, lb)?;
        }
        if let Some(e) = failed {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use dien_model::cost::synthetic_batch;
    use dien_model::{ModelConfig, ModelKind};

    use super::*;
    use crate::data::DataPosition;

    fn model() -> Model {
        let mut c = ModelConfig::new(ModelKind::Dien, 30, 60, 9);
        (c.d, c.hidden) = (4, 8);
        Model::init(c, 2).unwrap()
    }

    /// Batches of different sizes and lengths, without negatives.
    fn batches(model: &Model) -> Vec<LoadedBatch> {
        (0..7)
            .map(|k| {
                let mut batch = synthetic_batch(model.config(), 5 + k, 2 + k % 4, k as u64);
                (batch.neg_mid, batch.neg_cat) = (None, None);
                LoadedBatch {
                    global_batch: batch.batch,
                    lines: vec![k as u64; batch.batch],
                    raw_uid: Vec::new(),
                    batch,
                    next: DataPosition::default(),
                    lines_consumed: 0,
                    bytes_consumed: 0,
                }
            })
            .collect()
    }

    /// Logits and head inputs of each batch (as bits) handed out by
    /// [`forward_each`] on a pool of `threads`, or the error.
    fn run(threads: usize, fail_at: Option<usize>, bad_at: Option<usize>) -> Result<Vec<Vec<u32>>, String> {
        let mut m = model();
        let mut all = batches(&m);
        if let Some(k) = bad_at {
            all[k].batch.mid[0] = 1000; // beyond the item table
        }
        let before = m.params().clone();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let mut got = Vec::new();
        let stream = all.iter().enumerate().map(|(k, lb)| match fail_at {
            Some(f) if f == k => Err(TrainError::Loader(format!("batch {k} unreadable"))),
            _ => Ok(Cow::Borrowed(lb)),
        });
        let mut workers = Workers::default();
        let r = pool.install(|| {
            forward_each(&mut m, &mut workers, Pass::Logits, stream, |m, lb| {
                let bits = m.logits().iter().chain(m.head_input()).map(|x| x.to_bits()).collect();
                got.push((lb.lines[0], bits));
                Ok(())
            })
        });
        assert!(m.params() == &before, "the parameters are left as they are");
        r.map_err(|e| e.to_string())?;
        assert!(got.iter().enumerate().all(|(k, (line, _))| *line == k as u64), "in batch order");
        Ok(got.into_iter().map(|(_, b)| b).collect())
    }

    #[test]
    fn several_threads_give_each_batch_what_one_model_computes() {
        let one = run(1, None, None).unwrap();
        assert_eq!(one.len(), 7);
        for threads in [2, 3, 6] {
            assert_eq!(run(threads, None, None).unwrap(), one, "{threads} threads");
        }
    }

    #[test]
    fn the_head_input_pass_gives_the_forwards_head_inputs() {
        let all = batches(&model());
        let inputs = |pass: Pass, threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let (mut m, mut workers, mut out) = (model(), Workers::default(), Vec::new());
            let stream = all.iter().map(|lb| Ok(Cow::Borrowed(lb)));
            let keep = |m: &Model, _: &LoadedBatch| {
                out.push(m.head_input().iter().map(|x| x.to_bits()).collect::<Vec<_>>());
                Ok(())
            };
            pool.install(|| forward_each(&mut m, &mut workers, pass, stream, keep)).unwrap();
            out
        };
        let full = inputs(Pass::Logits, 1);
        assert_eq!(full.len(), all.len());
        assert!(full.iter().all(|x| !x.is_empty() && x.iter().any(|&b| b != 0)));
        for threads in [1, 2] {
            assert_eq!(inputs(Pass::HeadInputs, threads), full, "{threads} threads");
        }
    }

    #[test]
    fn replicas_take_the_models_current_parameters() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let all = batches(&model());
        let mut workers = Workers::default();
        let logits = |m: &mut Model, workers: &mut Workers| {
            let mut out = Vec::new();
            let stream = all.iter().map(|lb| Ok(Cow::Borrowed(lb)));
            let keep = |m: &Model, _: &LoadedBatch| {
                out.extend_from_slice(m.logits());
                Ok(())
            };
            pool.install(|| forward_each(m, workers, Pass::Logits, stream, keep)).unwrap();
            out
        };
        let mut m = model();
        let before = logits(&mut m, &mut workers);
        m.params_mut().get_mut("head.fc3.b")[0] += 1.0;
        let after = logits(&mut m, &mut workers);
        assert!(before.iter().zip(&after).all(|(b, a)| (a - b - 1.0).abs() < 1e-5), "every batch moved by 1");
    }

    #[test]
    fn the_first_error_in_batch_order_ends_the_pass() {
        for threads in [1, 2, 3] {
            let e = run(threads, Some(4), None).unwrap_err();
            assert!(e.contains("batch 4 unreadable"), "{threads} threads: {e}");
            // A batch the model refuses before an unreadable one.
            let e = run(threads, Some(4), Some(3)).unwrap_err();
            assert!(e.contains("mid") && !e.contains("unreadable"), "{threads} threads: {e}");
            let e = run(threads, Some(3), Some(4)).unwrap_err();
            assert!(e.contains("batch 3 unreadable"), "{threads} threads: {e}");
        }
    }
}
