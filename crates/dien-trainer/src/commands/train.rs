//! `dien train`.

use anyhow::Result;
use dien_model::ModelConfig;
use dien_model::checkpoint;
use dien_trainer::optim::OptimConfig;
use dien_trainer::train::{TrainConfig, train};
use serde_json::json;

use super::{metrics_json, print_event};
use crate::cli::TrainArgs;

/// The training configuration the flags describe.
fn config(a: &TrainArgs) -> TrainConfig {
    let mut cfg = TrainConfig::new(&a.data, &a.out, a.model);
    let mc: &mut ModelConfig = &mut cfg.model;
    a.arch.apply_to(mc);
    mc.max_len = a.max_len;
    cfg.epochs = a.epochs;
    cfg.batch_size = a.batch;
    cfg.seed = a.seed;
    cfg.threads = a.threads;
    cfg.optim = OptimConfig {
        kind: a.optimizer,
        lr: a.lr,
        lazy_embeddings: !a.dense_embedding_updates,
        clip_norm: a.clip_norm,
        ..OptimConfig::default()
    };
    cfg.eval_every = a.eval_every;
    cfg.save_every = a.save_every;
    cfg.recalibrate = !a.no_recalibrate;
    cfg.recal_samples = a.recal_samples;
    cfg.skip_bad_lines = a.skip_bad_lines;
    cfg.max_steps = a.max_steps;
    cfg.resume = a.resume;
    cfg.progress = !a.quiet;
    cfg.metrics_log = Some(a.metrics_log.clone().unwrap_or_else(|| checkpoint::sidecar_path(&a.out, "metrics.jsonl")));
    cfg.plot = Some(a.plot.clone().unwrap_or_else(|| checkpoint::sidecar_path(&a.out, "curves.svg")));
    cfg
}

/// Trains; the last line is the final metrics with the run's summary.
pub(crate) fn run(a: &TrainArgs) -> Result<()> {
    let s = train(&config(a), &mut print_event)?;
    let mut out = metrics_json(&s.last);
    out["model"] = json!(s.model);
    out["steps"] = json!(s.steps);
    out["train_samples"] = json!(s.samples);
    out["best_auc"] = json!(s.best_auc);
    out["bad_lines"] = json!(s.bad_lines.count);
    out["bad_line_examples"] = json!(s.bad_lines.first);
    out["seconds"] = json!(s.seconds);
    out["checkpoint"] = json!(a.out.display().to_string());
    println!("{out}");
    Ok(())
}
