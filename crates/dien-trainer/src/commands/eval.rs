//! `dien eval`.

use std::sync::Arc;

use anyhow::Result;
use dien_trainer::data::DataSet;
use dien_trainer::train::{evaluate, load_checkpoint};

use super::{data_file, metrics_json, pool};
use crate::cli::EvalArgs;

/// Evaluates a checkpoint on a data file, or on a data directory's test file.
pub(crate) fn run(a: &EvalArgs) -> Result<()> {
    let (mut model, vocabs) = load_checkpoint(&a.checkpoint)?;
    let data = Arc::new(DataSet { vocabs, sampler: None });
    let file = data_file(&a.data);
    let m = pool(a.threads)?.install(|| evaluate(&mut model, &data, &file, a.batch, a.skip_bad_lines))?;
    println!("{}", metrics_json(&m));
    Ok(())
}
