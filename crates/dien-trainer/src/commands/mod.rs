//! One module per command of `dien`; each turns its arguments into calls of
//! the library and prints the results.

mod bench;
mod demo;
mod eval;
mod generate;
mod gradcheck;
mod grads;
mod predict;
mod prepare;
pub(crate) mod sweep;
mod train;

use anyhow::Result;
use dien_trainer::metrics::EvalMetrics;
use dien_trainer::train::Event;
use serde_json::json;

use crate::cli::Cmd;

/// Runs the command.
pub(crate) fn run(cmd: &Cmd) -> Result<()> {
    match cmd {
        Cmd::Demo(a) => demo::run(a),
        Cmd::Generate(a) => generate::run(a),
        Cmd::Prepare(a) => prepare::run(a),
        Cmd::Train(a) => train::run(a),
        Cmd::Eval(a) => eval::run(a),
        Cmd::Predict(a) => predict::run(a),
        Cmd::Gradcheck(a) => gradcheck::run(a),
        Cmd::Grads(a) => grads::run(a),
        Cmd::Bench(a) => bench::run(a),
        Cmd::Sweep(a) => sweep::run(a),
    }
}

/// The data file `--data` names: the path itself, or a data directory's
/// test file.
fn data_file(data: &std::path::Path) -> std::path::PathBuf {
    if data.is_dir() { dien_trainer::data::DataSet::test_file(data) } else { data.to_path_buf() }
}

/// A compute pool of `threads` threads (`None`: all cores).
fn pool(threads: Option<usize>) -> Result<rayon::ThreadPool> {
    Ok(rayon::ThreadPoolBuilder::new().num_threads(threads.unwrap_or(0)).build()?)
}

/// The metrics as printed on the last line of `train` and `eval`.
fn metrics_json(m: &EvalMetrics) -> serde_json::Value {
    json!({"auc": m.auc, "gauc": m.gauc, "logloss": m.logloss, "accuracy": m.accuracy, "samples": m.samples})
}

/// Prints evaluations and messages of a training run on standard error.
fn print_event(e: Event<'_>) {
    match e {
        Event::Record(r) if r.kind == "eval" => {
            let show = |name: &str, m: &EvalMetrics| {
                format!(
                    "  {name} auc {:.4}  gauc {:.4}  logloss {:.4}",
                    m.auc.unwrap_or(f64::NAN),
                    m.gauc.unwrap_or(f64::NAN),
                    m.logloss.unwrap_or(f64::NAN)
                )
            };
            let valid = r.valid.as_ref().map(|m| show("valid", m)).unwrap_or_default();
            let test = r.test.as_ref().map(|m| show("test", m)).unwrap_or_default();
            eprintln!("step {:>6}  epoch {}{valid}{test}  ({:.0} samples/s)", r.step, r.epoch, r.samples_per_s);
        }
        Event::Info(s) => eprintln!("{s}"),
        _ => {}
    }
}
