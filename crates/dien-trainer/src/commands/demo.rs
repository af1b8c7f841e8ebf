//! `dien demo`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use dien_model::ModelKind;
use dien_trainer::generate::{GenerateConfig, generate};
use dien_trainer::plot::write_curves;
use dien_trainer::record::LogRecord;
use dien_trainer::train::{TrainConfig, TrainSummary, train};
use serde_json::json;

use super::print_event;
use crate::cli::DemoArgs;

/// A folder of the demo's own, removed with everything in it when dropped
/// (also when the demo fails): the demo leaves nothing behind unless `--out`
/// names a folder to keep.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            eprintln!("could not remove {}: {e}", self.0.display());
        }
    }
}

/// Generates the default data set, trains `base`, `din` and `dien` on it
/// and prints a comparison table, a plot and a JSON summary.
pub(crate) fn run(a: &DemoArgs) -> Result<()> {
    let (dir, scratch) = match &a.out {
        Some(d) => (d.clone(), None),
        None => {
            let d = std::env::temp_dir().join(format!("dien-demo-{}", std::process::id()));
            if d.exists() {
                bail!("{} exists already; pass --out DIR", d.display());
            }
            (d.clone(), Some(Scratch(d)))
        }
    };
    let data = dir.join("data");
    let mut g = GenerateConfig { seed: a.seed, ..GenerateConfig::default() };
    if let Some(u) = a.users {
        g.users = u;
    }
    let start = Instant::now();
    let gs = generate(&data, &g)?;
    eprintln!("generated {} ({:.1} s): {}", data.display(), start.elapsed().as_secs_f64(), serde_json::to_string(&gs)?);
    let mut results: Vec<TrainSummary> = Vec::new();
    for model in [ModelKind::Base, ModelKind::Din, ModelKind::Dien] {
        let mut cfg = TrainConfig::new(&data, dir.join(format!("{model}.safetensors")), model);
        cfg.epochs = a.epochs;
        cfg.seed = a.seed;
        cfg.threads = a.threads;
        cfg.progress = !a.quiet;
        cfg.eval_every = Some(200);
        cfg.metrics_log = Some(dir.join(format!("{model}.metrics.jsonl")));
        let s = train(&cfg, &mut print_event)?;
        eprintln!(
            "{model}: test auc {:.4} (final), {:.4} (best by validation) in {:.1} s",
            s.last.auc.unwrap_or(f64::NAN),
            best_test_auc(&s).unwrap_or(f64::NAN),
            s.seconds
        );
        results.push(s);
    }
    let plot = dir.join("demo.svg");
    let runs: Vec<(String, &[LogRecord])> = results.iter().map(|s| (s.model.clone(), s.history.as_slice())).collect();
    write_curves(&plot, &runs)?;
    println!();
    println!("test metrics of the final model; best AUC: test AUC of the model chosen by validation AUC");
    println!(
        "{:<6} {:>8} {:>8} {:>8} {:>9} {:>9} {:>8} {:>9}",
        "model", "AUC", "best AUC", "GAUC", "logloss", "accuracy", "seconds", "samples/s"
    );
    for s in &results {
        let m = &s.last;
        println!(
            "{:<6} {:>8.4} {:>8.4} {:>8.4} {:>9.4} {:>9.4} {:>8.1} {:>9.0}",
            s.model,
            m.auc.unwrap_or(f64::NAN),
            best_test_auc(s).unwrap_or(f64::NAN),
            m.gauc.unwrap_or(f64::NAN),
            m.logloss.unwrap_or(f64::NAN),
            m.accuracy.unwrap_or(f64::NAN),
            s.seconds,
            s.samples as f64 / s.seconds
        );
    }
    let total = start.elapsed().as_secs_f64();
    if scratch.is_some() {
        println!("\ntotal {total:.0} s   (pass --out DIR to keep the data, checkpoints, logs and plot)");
    } else {
        println!("\ntotal {total:.0} s   plot: {}   checkpoints and logs: {}", plot.display(), dir.display());
    }
    let table: Vec<_> = results
        .iter()
        .map(|s| json!({"model": s.model, "auc": s.last.auc, "best_auc": best_test_auc(s), "gauc": s.last.gauc, "logloss": s.last.logloss, "accuracy": s.last.accuracy, "seconds": s.seconds}))
        .collect();
    let kept = if scratch.is_some() { None } else { Some(dir.display().to_string()) };
    println!("{}", json!({"demo": table, "seconds": total, "dir": kept}));
    drop(scratch);
    Ok(())
}

/// The test AUC of the run's best model (chosen by validation AUC).
fn best_test_auc(s: &TrainSummary) -> Option<f64> {
    s.best.as_ref().and_then(|b| b.test.auc)
}
