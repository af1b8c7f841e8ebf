//! `dien grads`.

use anyhow::Result;
use dien_model::{Batch, checkpoint};
use dien_trainer::grads::{compute_grads, save_grads};
use dien_trainer::paths::{Role, check_outputs};
use serde_json::json;

use crate::cli::GradsArgs;

/// Writes the logits, losses and gradients of a checkpoint on a JSON batch.
pub(crate) fn run(a: &GradsArgs) -> Result<()> {
    let inputs = [Role::new("the checkpoint", &a.checkpoint), Role::new("the batch file", &a.batch_file)];
    check_outputs(&inputs, &[Role::new("--out", &a.out)])?;
    let (cfg, params) = checkpoint::load(&a.checkpoint)?;
    let mut batch = Batch::from_json_file(&a.batch_file)?;
    // Histories longer than the model keeps are cut as the data loader cuts them.
    batch.keep_recent(cfg.max_len);
    let out = compute_grads(&cfg, params, &batch, a.eval, a.f64)?;
    save_grads(&a.out, &cfg, &out, a.eval, a.f64)?;
    println!(
        "{}",
        json!({"out": a.out.display().to_string(), "loss": out.loss, "loss_target": out.loss_target,
               "loss_aux": out.loss_aux, "batch": batch.batch})
    );
    Ok(())
}
