//! Scoring a data file with a trained model.

use std::path::Path;
use std::sync::Arc;

use dien_model::Mode;
use dien_model::fast::Model;
use dien_model::vocab::{TableSizes, Vocabs};

use crate::data::{Batcher, BatcherConfig, DataSet};
use crate::error::TrainError;

/// Scores every sample of `file` (the reference line format) with `model`
/// in evaluation mode, mapping string ids through `vocabs`: one
/// probability per sample, in file order. Batches of `batch_size` samples
/// run on the current thread pool.
pub fn predict_file(model: &mut Model, vocabs: Vocabs, file: &Path, batch_size: usize) -> Result<Vec<f32>, TrainError> {
    let c = model.config();
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
