//! Trains DIEN through the library API of `dien-trainer` – the calls the
//! `dien train` command makes – on a generated data set, and prints the
//! final test metrics.
//!
//! ```sh
//! cargo run --release --example train             # 20,000 users, one epoch, in a temporary directory
//! cargo run --release --example train -- DIR      # the data and the checkpoint in DIR
//! ```
//!
//! The run writes `DIR/data/` (the synthetic data set, docs/DATA.md) and
//! `DIR/m.safetensors` with its sidecars, among them the best model
//! `DIR/m.best.safetensors`; `cargo run --release --example score --
//! DIR/m.safetensors DIR/data` then scores a user with it.
//!
//! `tests/examples.rs` runs [`run`] with tiny sizes.

use std::error::Error;
use std::path::{Path, PathBuf};

use dien_model::ModelKind;
use dien_trainer::generate::{GenerateConfig, generate};
use dien_trainer::train::{Event, TrainConfig, TrainSummary, train};

/// The sizes of a run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Users of the generated data set (10 % of them go to the test file;
    /// each user gives two samples).
    pub users: usize,
    /// Stop after this many training steps (`None`: one full epoch).
    pub max_steps: Option<u64>,
    /// Embedding width `d` (`None`: the model's default, 18).
    pub dim: Option<usize>,
    /// GRU hidden width `H` (`None`: the model's default, 36).
    pub hidden: Option<usize>,
    /// Threads of the compute pool (`None`: all cores).
    pub threads: Option<usize>,
    /// Seed of the data set and of the training run.
    pub seed: u64,
}

impl Default for Options {
    /// 20,000 users, one epoch, default widths, all cores.
    fn default() -> Self {
        Self { users: 20_000, max_steps: None, dim: None, hidden: None, threads: None, seed: 7 }
    }
}

/// Generates a data set in `dir/data`, trains DIEN on it into
/// `dir/m.safetensors` (evaluating on the test file at the end) and
/// prints the final metrics; returns the run's summary.
pub fn run(dir: &Path, opts: &Options) -> Result<TrainSummary, Box<dyn Error>> {
    let data = dir.join("data");
    let g = GenerateConfig { users: opts.users, seed: opts.seed, ..GenerateConfig::default() };
    let gs = generate(&data, &g)?;
    println!(
        "data: {} training and {} test samples, {} items, in {}",
        gs.train_samples,
        gs.test_samples,
        gs.items,
        data.display()
    );

    let mut cfg = TrainConfig::new(&data, dir.join("m.safetensors"), ModelKind::Dien);
    cfg.seed = opts.seed;
    cfg.threads = opts.threads;
    cfg.max_steps = opts.max_steps;
    if let Some(d) = opts.dim {
        cfg.model.d = d;
    }
    if let Some(h) = opts.hidden {
        cfg.model.hidden = h;
    }
    // Events report evaluations, saved checkpoints and notes on the data.
    let summary = train(&cfg, &mut |e| {
        if let Event::Info(msg) = e {
            eprintln!("{msg}");
        }
    })?;

    let m = &summary.last;
    let show = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.4}"));
    println!("{}: {} steps, {} samples, {:.1} s", summary.model, summary.steps, summary.samples, summary.seconds);
    println!(
        "test: AUC {}  GAUC {}  logloss {}  accuracy {}  ({} samples)",
        show(m.auc),
        show(m.gauc),
        show(m.logloss),
        show(m.accuracy),
        m.samples
    );
    // The best model is chosen on the training users held out for
    // validation; its test AUC is measured once, at the end.
    if let Some(b) = &summary.best {
        println!("best model (step {}, validation AUC {}): test AUC {}", b.step, show(b.valid_auc), show(b.test.auc));
    }
    println!("checkpoint: {}", cfg.out.display());
    Ok(summary)
}

fn main() -> Result<(), Box<dyn Error>> {
    let dir = match std::env::args_os().nth(1) {
        Some(d) => PathBuf::from(d),
        None => std::env::temp_dir().join(format!("dien-example-train-{}", std::process::id())),
    };
    run(&dir, &Options::default())?;
    Ok(())
}
