//! Scoring a data file with a trained model: through the batch forward
//! ([`predict_file`]) or through the request path in a chosen precision
//! ([`predict_file_requests`]).

use std::path::Path;
use std::sync::Arc;

use dien_model::fast::Model;
use dien_model::serve::{Items, Predictor, Scratch};
use dien_model::vocab::{TableSizes, Vocabs};
use dien_model::{Mode, ModelConfig};
use rayon::prelude::*;

use crate::data::{Batcher, BatcherConfig, DataSet};
use crate::error::TrainError;

/// Scores every sample of `file` (the reference line format) with `model`
/// in evaluation mode, mapping string ids through `vocabs`: one
/// probability per sample, in file order. Batches of `batch_size` samples
/// run on the current thread pool.
pub fn predict_file(model: &mut Model, vocabs: Vocabs, file: &Path, batch_size: usize) -> Result<Vec<f32>, TrainError> {
    let c = model.config();
    let (data, bcfg) = scoring_input(c, vocabs, batch_size);
    let mut scored: Vec<(u64, f32)> = Vec::new();
    for lb in Batcher::open(file, data, bcfg, 0)?.spawn(4) {
        let lb = lb?;
        model.forward(&lb.batch, Mode::Eval)?;
        for (&line, &z) in lb.lines.iter().zip(model.logits()) {
            scored.push((line, 1.0 / (1.0 + (-z).exp())));
        }
    }
    scored.sort_by_key(|&(l, _)| l);
    Ok(scored.into_iter().map(|(_, p)| p).collect())
}

/// Logits of every sample of a data file scored through the request path,
/// in file order, with each sample's user index and label (0 for a line
/// without one).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestScores {
    /// Logit of each sample.
    pub logits: Vec<f32>,
    /// Label of each sample.
    pub labels: Vec<f32>,
    /// User index of each sample.
    pub users: Vec<u32>,
    /// Requests scored: runs of consecutive samples of one user with the
    /// same history are one request, their targets its candidates.
    pub requests: usize,
}

/// Scores every sample of `file` (the reference line format) through the
/// request path, [`Predictor`] in whatever precision it was given, mapping
/// string ids through `vocabs`. Within each batch of `batch_size` samples,
/// consecutive samples of one user with the same history form one request
/// (a data set's positive and negative lines share their history); the
/// requests run on the current thread pool, each thread with its own
/// [`Scratch`]. Scores equal the batch path's ([`predict_file`]) up to
/// floating-point rounding in `f32`.
pub fn predict_file_requests(
    pred: &Predictor,
    vocabs: Vocabs,
    file: &Path,
    batch_size: usize,
) -> Result<RequestScores, TrainError> {
    let c = pred.config();
    let (data, bcfg) = scoring_input(c, vocabs, batch_size);
    let mut scored: Vec<(u64, f32, f32, u32)> = Vec::new();
    let mut requests = 0;
    for lb in Batcher::open(file, data, bcfg, 0)?.spawn(4) {
        let lb = lb?;
        let b = &lb.batch;
        let t = b.steps;
        let hist = |i: usize| {
            let r = i * t..i * t + b.lengths[i];
            Items::new(&b.hist_mid[r.clone()], &b.hist_cat[r])
        };
        // Runs of samples sharing user and history, and the output of each.
        let mut z = vec![0.0f32; b.batch];
        let mut runs: Vec<(usize, &mut [f32])> = Vec::new();
        let (mut rest, mut s0) = (&mut z[..], 0);
        while s0 < b.batch {
            let h0 = hist(s0);
            let same = |i: usize| b.uid[i] == b.uid[s0] && hist(i).mid == h0.mid && hist(i).cat == h0.cat;
            let n = (s0 + 1..b.batch).take_while(|&i| same(i)).count() + 1;
            let (out, tail) = std::mem::take(&mut rest).split_at_mut(n);
            runs.push((s0, out));
            (rest, s0) = (tail, s0 + n);
        }
        requests += runs.len();
        runs.into_par_iter().try_for_each_init(Scratch::new, |sc, (s0, out)| {
            let n = out.len();
            let cands = Items::new(&b.mid[s0..s0 + n], &b.cat[s0..s0 + n]);
            pred.logits_into(sc, b.uid[s0], hist(s0), cands, out)
        })?;
        for (i, &line) in lb.lines.iter().enumerate() {
            scored.push((line, z[i], b.label[i], b.uid[i]));
        }
    }
    scored.sort_by_key(|s| s.0);
    Ok(RequestScores {
        logits: scored.iter().map(|s| s.1).collect(),
        labels: scored.iter().map(|s| s.2).collect(),
        users: scored.iter().map(|s| s.3).collect(),
        requests,
    })
}

/// The data set and batcher settings of scoring a file: no negatives, file
/// order, labels optional, ids checked against the model's tables.
fn scoring_input(c: &ModelConfig, vocabs: Vocabs, batch_size: usize) -> (Arc<DataSet>, BatcherConfig) {
    let data = Arc::new(DataSet { vocabs, sampler: None });
    let bcfg = BatcherConfig {
        batch_size,
        max_len: c.max_len,
        negatives: false,
        sort_by_length: false,
        tables: Some(TableSizes::of_config(c)),
        label_optional: true,
        ..BatcherConfig::default()
    };
    (data, bcfg)
}
