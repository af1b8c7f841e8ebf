//! `dien.train`, `dien.evaluate` and `dien.generate`: the work of the
//! `dien` command's `train`, `eval` and `generate` (docs/MODEL.md#commands),
//! with the GIL released while they run.
//!
//! Training runs on a thread of its own. Each log record
//! (docs/MODEL.md#run-records) goes to the calling Python thread, which
//! calls `on_step` with it (holding the GIL) while training waits; between
//! records the caller waits with the GIL released and wakes every 100 ms to
//! let Python handle signals. An exception from `on_step`, or a
//! `KeyboardInterrupt`, stops training at the next record (checkpoints
//! already written stay) and is raised from `dien.train`.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{RecvTimeoutError, sync_channel};
use std::time::Duration;

use dien_trainer::TrainError;
use dien_trainer::data::DataSet;
use dien_trainer::generate::generate as generate_data;
use dien_trainer::metrics::EvalMetrics;
use dien_trainer::train::{
    Event, TrainSummary, best_path, evaluate as evaluate_file, load_checkpoint, train as train_run,
};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde_json::{Map, Value, json};

use crate::config::{MAX_BATCH, generate_config, threads, train_config};
use crate::convert::{dict, dict_of, from_py};
use crate::errors::{guarded, internal_error, train_error, value_error};

/// The payload that unwinds a training run stopped from Python (never
/// reported as a panic: `resume_unwind` does not call the panic hook).
struct Stopped;

/// How often the waiting caller lets Python handle signals.
const SIGNAL_POLL: Duration = Duration::from_millis(100);

/// The metrics as `dien train` and `dien eval` print them, in that order.
fn metrics_entries(m: &EvalMetrics) -> Vec<(&'static str, Value)> {
    vec![
        ("auc", json!(m.auc)),
        ("gauc", json!(m.gauc)),
        ("logloss", json!(m.logloss)),
        ("accuracy", json!(m.accuracy)),
        ("samples", json!(m.samples)),
    ]
}

/// The metrics as a JSON object (`None`: null).
fn metrics_value(m: Option<&EvalMetrics>) -> Value {
    m.map_or(Value::Null, |m| Value::Object(metrics_entries(m).into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
}

/// `settings` (a dict or `None`) with the named arguments added.
fn settings_map(
    settings: Option<&Bound<'_, PyDict>>,
    named: &[(&str, &Bound<'_, PyAny>)],
) -> PyResult<Map<String, Value>> {
    let mut m = Map::new();
    for (k, v) in named {
        m.insert((*k).to_string(), from_py(v, k)?);
    }
    if let Some(s) = settings {
        for (k, v) in s.iter() {
            let key: String = k.extract()?;
            let value = from_py(&v, &key)?;
            m.insert(key, value);
        }
    }
    Ok(m)
}

/// A checked batch size (1 to 65,536).
fn batch_size(b: usize) -> PyResult<usize> {
    if (1..=MAX_BATCH).contains(&b) {
        Ok(b)
    } else {
        Err(value_error(format!("batch = {b}: must be 1 to {MAX_BATCH}")))
    }
}

/// Trains a model as `dien train` does and returns the final metrics.
///
/// `data_dir` is a data directory (docs/MODEL.md#data-layout), `model` one
/// of `"dien"`, `"dien-noaux"`, `"din"`, `"base"`, `out` the checkpoint to
/// write (its vocabularies, optimiser state, best model, metrics log and
/// plot go beside it). `valid_frac` (0.1) is the fraction of the training
/// users held out for validation, `select` (`"valid"`, or `"test"` as the
/// reference code) what chooses the best model, `early_stop` the
/// evaluations in a row without a new best after which training stops
/// (never by default). Every other setting of `dien train` is a keyword
/// argument named like its flag with underscores (`batch=64`, `max_len=50`,
/// `lr=0.002`, `max_steps=10`, `eval_every=100`, `variant="agru"`, …; see
/// docs/PYTHON.md), plus `log_every` (iterations per training record, 50)
/// and `progress` (draw a progress bar, False). `metrics_log=False` or
/// `plot=False` writes none.
///
/// `on_step(record)` is called with each log record as a dict (`kind`
/// `"train"` every `log_every` iterations with the mean losses, `"eval"`
/// with the validation metrics under `valid` and, where the test file was
/// scored, the test metrics under `test`). Returns a dict: `auc`, `gauc`,
/// `logloss`, `accuracy`, `samples` (the final model's test metrics),
/// `valid` (its validation metrics), `select`, `best_auc`, `best` (the best
/// model: `step`, `epoch`, `valid_auc`, `test` metrics, `checkpoint`),
/// `split` (lines and users on each side), `stopped_early`, `model`,
/// `steps`, `train_samples`, `seconds`, `checkpoint`, `bad_lines` and
/// `messages` (what `dien train` prints on standard error).
#[pyfunction]
#[pyo3(signature = (
    data_dir, model="dien", *, out, epochs=None, seed=None, threads=None, valid_frac=None, select=None,
    early_stop=None, on_step=None, **settings
))]
#[allow(clippy::too_many_arguments)]
pub fn train<'py>(
    py: Python<'py>,
    data_dir: PathBuf,
    model: &str,
    out: PathBuf,
    epochs: Option<&Bound<'py, PyAny>>,
    seed: Option<&Bound<'py, PyAny>>,
    threads: Option<&Bound<'py, PyAny>>,
    valid_frac: Option<&Bound<'py, PyAny>>,
    select: Option<&Bound<'py, PyAny>>,
    early_stop: Option<&Bound<'py, PyAny>>,
    on_step: Option<Bound<'py, PyAny>>,
    settings: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyDict>> {
    let named: Vec<(&str, &Bound<'py, PyAny>)> = [
        ("epochs", epochs),
        ("seed", seed),
        ("threads", threads),
        ("valid_frac", valid_frac),
        ("select", select),
        ("early_stop", early_stop),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    let map = settings_map(settings, &named)?;
    let cfg = train_config(&data_dir, model, &out, &map).map_err(value_error)?;
    if let Some(f) = &on_step
        && !f.is_callable()
    {
        return Err(value_error("`on_step` must be callable"));
    }

    let stop = AtomicBool::new(false);
    let (record_tx, record_rx) = sync_channel::<Value>(0);
    let (ack_tx, ack_rx) = sync_channel::<bool>(0);
    let mut failure: Option<PyErr> = None;
    let outcome = std::thread::scope(|scope| {
        let (cfg, stop) = (&cfg, &stop);
        let worker = scope.spawn(move || {
            catch_unwind(AssertUnwindSafe(move || {
                let mut messages = Vec::new();
                let msgs = &mut messages;
                let mut on_event = move |e: Event<'_>| {
                    match e {
                        Event::Record(r) => {
                            let v = serde_json::to_value(r).unwrap_or(Value::Null);
                            // The caller answers `false` to stop.
                            if record_tx.send(v).is_err() || !ack_rx.recv().unwrap_or(false) {
                                resume_unwind(Box::new(Stopped));
                            }
                        }
                        Event::Info(s) => msgs.push(s),
                        Event::Saved(_) => {}
                    }
                    if stop.load(Ordering::Relaxed) {
                        resume_unwind(Box::new(Stopped));
                    }
                };
                let r = train_run(cfg, &mut on_event);
                drop(on_event);
                (r, messages)
            }))
        });
        // A receiver is not `Sync`: it goes into each wait and comes back.
        let mut rx = record_rx;
        loop {
            let (msg, back) = py.detach(move || (rx.recv_timeout(SIGNAL_POLL), rx));
            rx = back;
            match msg {
                Ok(record) => {
                    if failure.is_none()
                        && let Some(f) = &on_step
                    {
                        let call = crate::convert::to_py(py, &record).and_then(|r| f.call1((r,)));
                        if let Err(e) = call {
                            failure = Some(e);
                        }
                    }
                    if failure.is_none()
                        && let Err(e) = py.check_signals()
                    {
                        failure = Some(e);
                    }
                    let _ = ack_tx.send(failure.is_none());
                }
                Err(RecvTimeoutError::Timeout) => {
                    if failure.is_none()
                        && let Err(e) = py.check_signals()
                    {
                        failure = Some(e);
                        stop.store(true, Ordering::Relaxed);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        py.detach(|| worker.join())
    });
    let (result, messages): (Result<TrainSummary, TrainError>, Vec<String>) = match outcome {
        Ok(Ok(r)) => r,
        Ok(Err(payload)) if payload.is::<Stopped>() => {
            return Err(failure.unwrap_or_else(|| PyRuntimeError::new_err("training was stopped")));
        }
        Ok(Err(payload)) | Err(payload) => return Err(internal_error(payload.as_ref())),
    };
    if let Some(e) = failure {
        // Training finished before it could be stopped: still raise.
        return Err(e);
    }
    let s = result.map_err(train_error)?;
    let best = s.best.as_ref().map_or(Value::Null, |b| {
        json!({
            "step": b.step,
            "epoch": b.epoch,
            "valid_auc": b.valid_auc,
            "test": metrics_value(Some(&b.test)),
            "checkpoint": best_path(&out).display().to_string(),
        })
    });
    let mut entries = metrics_entries(&s.last);
    entries.extend([
        ("model", json!(s.model)),
        ("steps", json!(s.steps)),
        ("train_samples", json!(s.samples)),
        ("valid", metrics_value(s.valid.as_ref())),
        ("select", json!(cfg.select)),
        ("best_auc", json!(s.best_auc)),
        ("best", best),
        ("split", json!(s.split)),
        ("stopped_early", json!(s.stopped_early)),
        ("seconds", json!(s.seconds)),
        ("checkpoint", json!(out.display().to_string())),
        ("bad_lines", json!(s.bad_lines)),
        ("messages", json!(messages)),
    ]);
    dict_of(py, entries.iter().map(|(k, v)| (k, v)))
}

/// Evaluates a checkpoint (with its vocabulary sidecar) on a data file, or
/// on a data directory's test file, as `dien eval` does: returns a dict
/// with `auc`, `gauc`, `logloss`, `accuracy` and `samples`.
#[pyfunction]
#[pyo3(signature = (checkpoint, data, batch=256, threads=None, skip_bad_lines=false))]
pub fn evaluate<'py>(
    py: Python<'py>,
    checkpoint: PathBuf,
    data: PathBuf,
    batch: usize,
    threads: Option<i64>,
    skip_bad_lines: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let batch = batch_size(batch)?;
    let threads = self::threads(threads).map_err(value_error)?;
    let m = py.detach(|| {
        guarded(|| {
            let (mut model, vocabs) = load_checkpoint(&checkpoint).map_err(train_error)?;
            let set = Arc::new(DataSet { vocabs, sampler: None });
            let file = if data.is_dir() { DataSet::test_file(&data) } else { data.clone() };
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads.unwrap_or(0))
                .build()
                .map_err(|e| value_error(format!("thread pool: {e}")))?;
            pool.install(|| evaluate_file(&mut model, &set, &file, batch, skip_bad_lines)).map_err(train_error)
        })
    })?;
    dict_of(py, metrics_entries(&m).iter().map(|(k, v)| (k, v)))
}

/// Writes a synthetic data set in the reference layout
/// (docs/MODEL.md#data-layout, docs/DATA.md) to `out`, as `dien generate`
/// does, and returns its summary as a dict. Keyword arguments: `seed`
/// (2018), `users`, `items`, `categories`, `min_history`, `max_history`,
/// `test_fraction` (defaults: the `dien demo` data set, 150,000 users).
#[pyfunction]
#[pyo3(signature = (out, *, seed=None, **settings))]
pub fn generate<'py>(
    py: Python<'py>,
    out: PathBuf,
    seed: Option<&Bound<'py, PyAny>>,
    settings: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyDict>> {
    let named: Vec<(&str, &Bound<'py, PyAny>)> = seed.map(|s| ("seed", s)).into_iter().collect();
    let g = generate_config(&settings_map(settings, &named)?).map_err(value_error)?;
    let summary = py.detach(|| guarded(|| generate_data(&out, &g).map_err(train_error)))?;
    match serde_json::to_value(&summary) {
        Ok(Value::Object(m)) => dict(py, &m),
        _ => Err(PyRuntimeError::new_err("internal error: the summary is not a JSON object")),
    }
}
