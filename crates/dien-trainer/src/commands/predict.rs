//! `dien predict`.

use std::fmt::Write;

use anyhow::Result;
use dien_model::checkpoint::{VOCAB_SUFFIX, sidecar_path};
use dien_model::serve::{Precision, Predictor};
use dien_trainer::paths::{Role, check_outputs};
use dien_trainer::predict::{predict_file, predict_file_requests};
use dien_trainer::train::load_checkpoint;
use serde_json::json;

use super::{data_file, pool};
use crate::cli::PredictArgs;

/// Scores a data file and writes one probability per line, in input order:
/// in `f32` through the batch forward, in bf16 through the request path.
pub(crate) fn run(a: &PredictArgs) -> Result<()> {
    let data = data_file(&a.data);
    let inputs = [
        Role::new("the checkpoint", &a.checkpoint),
        Role::new("its vocabularies", sidecar_path(&a.checkpoint, VOCAB_SUFFIX)),
        Role::new("the data file", &data),
    ];
    check_outputs(&inputs, &[Role::new("--out", &a.out)])?;
    let (mut model, vocabs) = load_checkpoint(&a.checkpoint)?;
    let probs = match a.precision {
        Precision::F32 => pool(a.threads)?.install(|| predict_file(&mut model, vocabs, &data, a.batch))?,
        p => {
            let pred = Predictor::from_model(&model)?.with_precision(p)?;
            let s = pool(a.threads)?.install(|| predict_file_requests(&pred, vocabs, &data, a.batch))?;
            s.logits.iter().map(|&z| 1.0 / (1.0 + (-z).exp())).collect()
        }
    };
    // Written whole and renamed into place: never a half-written file.
    let mut text = String::with_capacity(probs.len() * 12);
    for p in &probs {
        writeln!(text, "{p}")?;
    }
    dien_model::checkpoint::write_atomic(&a.out, text.as_bytes())?;
    eprintln!("wrote {} probabilities to {}", probs.len(), a.out.display());
    println!(
        "{}",
        json!({"samples": probs.len(), "out": a.out.display().to_string(), "precision": a.precision.name()})
    );
    Ok(())
}
