//! `dien train`.

use anyhow::Result;
use dien_model::ModelConfig;
use dien_model::checkpoint;
use dien_trainer::optim::OptimConfig;
use dien_trainer::train::{TrainConfig, TrainSummary, best_path, train};
use serde_json::json;

use super::{metrics_json, print_event};
use crate::cli::TrainArgs;

/// The training configuration the flags describe.
pub(super) fn config(a: &TrainArgs) -> TrainConfig {
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
        aux_lr_scale: a.aux_lr_scale,
        ..OptimConfig::default()
    };
    cfg.eval_every = a.eval_every;
    cfg.eval_each_epoch = !a.no_epoch_eval;
    cfg.valid_frac = a.valid_frac;
    cfg.select = a.select;
    cfg.early_stop = a.early_stop;
    cfg.save_every = a.save_every;
    cfg.recalibrate = !a.no_recalibrate;
    cfg.recal_samples = a.recal_samples;
    cfg.skip_bad_lines = a.skip_bad_lines;
    cfg.max_steps = a.max_steps;
    cfg.resume = a.resume;
    cfg.progress = !a.quiet;
    cfg.metrics_log = Some(a.metrics_log.clone().unwrap_or_else(|| checkpoint::sidecar_path(&a.out, "metrics.jsonl")));
    cfg.plot = Some(a.plot.clone().unwrap_or_else(|| checkpoint::sidecar_path(&a.out, "curves.svg")));
    cfg.log_every = a.log_every;
    cfg.replica_check_every = a.replica_check_every;
    cfg.recipe = a.recipe;
    cfg.export_batches = a.export_batches.clone();
    cfg
}

/// Trains; the last line is the final metrics with the run's summary.
pub(crate) fn run(a: &TrainArgs) -> Result<()> {
    if a.distributed {
        return distributed(a);
    }
    let s = train(&config(a), &mut print_event)?;
    print_summary(a, &s);
    Ok(())
}

/// The last line of `dien train`: the final model's test metrics at the
/// top level, as `dien eval` prints them, then the run.
fn print_summary(a: &TrainArgs, s: &TrainSummary) {
    let mut out = metrics_json(&s.last);
    out["model"] = json!(s.model);
    out["steps"] = json!(s.steps);
    out["train_samples"] = json!(s.samples);
    out["valid"] = json!(s.valid.as_ref().map(metrics_json));
    out["select"] = json!(a.select);
    out["best_auc"] = json!(s.best_auc);
    out["best"] = json!(s.best.as_ref().map(|b| {
        let mut m = json!({"step": b.step, "epoch": b.epoch, "valid_auc": b.valid_auc, "test": metrics_json(&b.test)});
        m["checkpoint"] = json!(best_path(&a.out).display().to_string());
        m
    }));
    out["split"] = json!(s.split);
    out["stopped_early"] = json!(s.stopped_early);
    out["bad_lines"] = json!(s.bad_lines.count);
    out["bad_line_examples"] = json!(s.bad_lines.first);
    out["seconds"] = json!(s.seconds);
    out["stages"] = json!(s.stages);
    out["checkpoint"] = json!(a.out.display().to_string());
    if let Some(d) = &s.distributed {
        out["distributed"] = json!(d);
    }
    println!("{out}");
}

/// An error with its sources, each once (as `main` prints them).
#[cfg(feature = "mpi")]
fn message(e: &dien_trainer::TrainError) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg = format!("{msg}: {c}");
        }
        source = cause.source();
    }
    msg
}

/// `train --distributed`: one rank of an MPI job (docs/DISTRIBUTED.md).
/// Rank 0 prints the events and the summary. An error on one rank is
/// printed with the rank and ends the whole job (`MPI_Abort`), so that no
/// rank waits for it; an error every rank reaches together (a batch size
/// the ranks cannot share, diverged replicas) is printed once, by rank 0,
/// and every rank exits with status 1.
#[cfg(feature = "mpi")]
fn distributed(a: &TrainArgs) -> Result<()> {
    use std::panic::{AssertUnwindSafe, catch_unwind};

    use dien_trainer::TrainError;
    use dien_trainer::dist::mpi::Mpi;
    use dien_trainer::train::train_distributed;

    let mpi = Mpi::init().map_err(|e| anyhow::anyhow!("--distributed: {e}"))?;
    let (rank, size) = (mpi.rank(), mpi.size());
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        eprintln!("dien: rank {rank} of {size} panicked:");
        hook(info);
    }));
    let cfg = config(a);
    let mut comm = mpi.comm();
    let result = catch_unwind(AssertUnwindSafe(|| train_distributed(&cfg, &mut comm, &mut print_event)));
    drop(comm);
    match result {
        Ok(Ok(s)) => {
            if rank == 0 {
                print_summary(a, &s);
            }
            Ok(())
        }
        Ok(Err(e @ TrainError::Replicas(_))) => {
            if rank == 0 {
                eprintln!("error: {}", message(&e));
            }
            // Every rank is here: MPI is finalised (dropped) before exiting.
            drop(mpi);
            std::process::exit(1);
        }
        Ok(Err(e)) => {
            eprintln!("error: rank {rank} of {size}: {}; ending the job", message(&e));
            mpi.abort(1)
        }
        Err(_) => {
            eprintln!("error: rank {rank} of {size} panicked (see above); ending the job");
            mpi.abort(1)
        }
    }
}

/// `train --distributed` in a build without MPI.
#[cfg(not(feature = "mpi"))]
fn distributed(_: &TrainArgs) -> Result<()> {
    anyhow::bail!(
        "--distributed: this dien was built without MPI; build it with \
         `cargo build --release -p dien-trainer --features mpi` (needs Open MPI and libclang; docs/DISTRIBUTED.md)"
    )
}
