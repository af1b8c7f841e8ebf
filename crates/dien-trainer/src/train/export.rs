//! `dien train --export-batches DIR`: everything needed to replay a run in
//! another framework and compare it step by step (docs/MODEL.md#exported-runs).
//!
//! The directory (new or empty; the run refuses any other) holds
//!
//! - `manifest.json`: the layout version, the run record, the model and
//!   optimiser settings;
//! - `init.safetensors`: the parameters before step 1 (a checkpoint);
//! - `steps.jsonl`: one line per training step, a batch in the batch-file
//!   format (docs/MODEL.md#batch-file) with its `lengths`, plus `step`
//!   (1-based), `epoch` (0-based), the learning rate `lr` of the step and
//!   the losses computed (`loss`, `loss_target`, `loss_aux`);
//! - `events.jsonl`: what happened between steps, in order, each line with
//!   the `step` it followed: `"kind": "epoch_end"` for a finished (or
//!   stopped) epoch, naming `params-<step>.safetensors`, the model after it;
//!   `"kind": "evaluation"` for an evaluation, naming the files of
//!   `eval-<step>/`: `recal.jsonl` (the training batches recalibration used,
//!   in order), `test.jsonl` (the test batches, each with the raw user ids
//!   of its samples as `users`) and `model.safetensors` (the model
//!   evaluated, recalibrated statistics included), with the metrics
//!   computed. Recalibration replaces the running statistics: training goes
//!   on from the recalibrated ones.
//!
//! Every line of `steps.jsonl`, `recal.jsonl` and `test.jsonl` is itself a
//! batch file: `dien grads --batch-file` reads one as it is.

use std::cell::RefCell;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dien_model::checkpoint;
use dien_model::fast::{Losses, Model};
use dien_model::{Batch, ModelConfig};
use serde_json::{Map, Value, json};

use super::TrainConfig;
use super::eval::{RecalSource, evaluation_batcher, recalibration_batches};
use super::run::RUN_METADATA_KEY;
use crate::data::{Batcher, DataSet, UserFilter};
use crate::error::TrainError;
use crate::metrics::EvalMetrics;
use crate::paths::{Role, check_outputs, data_dir_inputs};

/// Version of the directory layout, in `manifest.json`.
pub const EXPORT_FORMAT_VERSION: u32 = 1;

/// The files of an export with fixed names.
const FIXED: [(&str, &str); 4] = [
    ("manifest.json", "the export manifest"),
    ("init.safetensors", "the exported initial parameters"),
    ("steps.jsonl", "the exported steps"),
    ("events.jsonl", "the exported events"),
];

/// Writes an export while a run trains (see the module docs). Its methods
/// take `&self` so that the evaluation closure of the loop and the loop
/// itself can both hold it.
pub(crate) struct Exporter {
    dir: PathBuf,
    cfg: TrainConfig,
    run: String,
    steps: RefCell<Appender>,
    events: RefCell<Appender>,
}

/// A JSON-lines file being appended to.
struct Appender {
    path: PathBuf,
    out: BufWriter<File>,
}

impl Appender {
    fn create(path: PathBuf) -> Result<Self, TrainError> {
        let f = File::create(&path).map_err(|e| TrainError::io(&path, e))?;
        Ok(Self { out: BufWriter::new(f), path })
    }
    fn line(&mut self, v: &Value) -> Result<(), TrainError> {
        writeln!(self.out, "{v}").map_err(|e| TrainError::io(&self.path, e))
    }
    fn flush(&mut self) -> Result<(), TrainError> {
        self.out.flush().map_err(|e| TrainError::io(&self.path, e))
    }
}

/// `batch` as a JSON object of the batch-file format with its `lengths`.
fn batch_object(batch: &Batch) -> Result<Map<String, Value>, TrainError> {
    let text = batch.to_json_string()?;
    let Value::Object(mut m) = serde_json::from_str(&text).expect("a batch serialises to a JSON object") else {
        unreachable!("a batch serialises to a JSON object")
    };
    m.insert("lengths".into(), json!(batch.lengths));
    Ok(m)
}

/// The model settings a replay needs.
fn model_json(c: &ModelConfig) -> Value {
    json!({
        "model": c.model.name(), "variant": c.variant.name(), "att": c.att.name(), "aux": c.aux.name(),
        "d": c.d, "hidden": c.hidden, "max_len": c.max_len, "alpha_aux": c.alpha_aux,
        "n_uid": c.n_uid, "n_mid": c.n_mid, "n_cat": c.n_cat,
    })
}

impl Exporter {
    /// Starts an export into `dir` for the run `cfg` of `model` (before its
    /// first step): checks the directory, writes the manifest and the
    /// initial parameters. Refused for a resumed run (the replay starts from
    /// the initial parameters with a fresh optimiser) and for a run of
    /// several ranks (each sees only its share of a batch).
    pub(crate) fn create(dir: &Path, cfg: &TrainConfig, model: &Model, ranks: usize) -> Result<Self, TrainError> {
        let refuse = |why: &str| Err(TrainError::Config(format!("--export-batches {}: {why}", dir.display())));
        if cfg.resume {
            return refuse("a resumed run cannot be exported (a replay starts from the initial parameters)");
        }
        if ranks > 1 {
            return refuse("a data-parallel run cannot be exported; train in one process");
        }
        if dir.exists() {
            if !dir.is_dir() {
                return refuse("exists and is not a directory");
            }
            let mut entries = fs::read_dir(dir).map_err(|e| TrainError::io(dir, e))?;
            if entries.next().is_some() {
                return refuse("is not empty; an export goes into a new or empty directory");
            }
        }
        let mut outputs = cfg.outputs();
        outputs.extend(FIXED.iter().map(|(name, what)| Role::new(*what, dir.join(name))));
        check_outputs(&data_dir_inputs(&cfg.data_dir), &outputs)?;
        fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;

        let o = &cfg.optim;
        let manifest = json!({
            "format": "dien-export",
            "version": EXPORT_FORMAT_VERSION,
            "run": cfg.run_record(),
            "model": model_json(model.config()),
            "optimizer": {
                "kind": o.kind.name(), "lr": o.lr, "beta1": o.beta1, "beta2": o.beta2, "eps": o.eps,
                "lazy_embeddings": o.lazy_embeddings, "clip_norm": o.clip_norm,
                "lr_schedule": "halved after each epoch",
            },
            "batch": cfg.batch_size,
            "epochs": cfg.epochs,
            "seed": cfg.seed,
            "recalibrate": cfg.recalibrate,
            "recal_samples": cfg.recal_samples,
        });
        let path = dir.join("manifest.json");
        let text = serde_json::to_string_pretty(&manifest).expect("JSON values serialise");
        fs::write(&path, text + "\n").map_err(|e| TrainError::io(&path, e))?;
        let run = cfg.run_record().to_string();
        let this = Self {
            dir: dir.to_path_buf(),
            cfg: cfg.clone(),
            steps: RefCell::new(Appender::create(dir.join("steps.jsonl"))?),
            events: RefCell::new(Appender::create(dir.join("events.jsonl"))?),
            run,
        };
        this.save(model, &dir.join("init.safetensors"))?;
        Ok(this)
    }

    /// Writes `model` as a checkpoint carrying the run record.
    fn save(&self, model: &Model, path: &Path) -> Result<(), TrainError> {
        let meta = [(RUN_METADATA_KEY.to_string(), self.run.clone())].into();
        checkpoint::save_with(path, model.config(), model.params(), &meta)?;
        Ok(())
    }

    /// Records training step `step` (1-based) of epoch `epoch`: its batch,
    /// the learning rate it used and the losses it computed.
    pub(crate) fn step(&self, step: u64, epoch: u64, lr: f32, batch: &Batch, l: &Losses) -> Result<(), TrainError> {
        let mut m = batch_object(batch)?;
        for (k, v) in [
            ("step", json!(step)),
            ("epoch", json!(epoch)),
            ("lr", json!(lr)),
            ("loss", json!(l.loss)),
            ("loss_target", json!(l.loss_target)),
            ("loss_aux", json!(l.loss_aux)),
        ] {
            m.insert(k.into(), v);
        }
        self.steps.borrow_mut().line(&Value::Object(m))
    }

    /// Records the end of epoch `epoch` after `step` steps (`complete`:
    /// the whole file was read; false when the run stopped inside it) with
    /// the model's parameters.
    pub(crate) fn epoch_end(&self, model: &Model, step: u64, epoch: u64, complete: bool) -> Result<(), TrainError> {
        self.steps.borrow_mut().flush()?;
        let name = format!("params-{step:06}.safetensors");
        self.save(model, &self.dir.join(&name))?;
        let mut e = self.events.borrow_mut();
        e.line(&json!({"kind": "epoch_end", "step": step, "epoch": epoch, "complete": complete, "params": name}))?;
        e.flush()
    }

    /// Records the evaluation after `step` steps (in epoch `epoch`), `model`
    /// being the model evaluated (after recalibration): the batches
    /// recalibration read from `recal` (`None` without recalibration) and
    /// the batches of the set whose metrics are `metrics` — the test file
    /// when the evaluation scored it, else the validation split (`set`
    /// names which) — drawn again exactly as the evaluation drew them.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn evaluation(
        &self,
        model: &Model,
        data: &Arc<DataSet>,
        step: u64,
        epoch: u64,
        recal: Option<&RecalSource<'_>>,
        scored: Scored<'_>,
        metrics: &EvalMetrics,
    ) -> Result<(), TrainError> {
        let cfg = &self.cfg;
        let sub = format!("eval-{step:06}");
        let dir = self.dir.join(&sub);
        fs::create_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
        let mc = model.config();
        let mut recal_file = Value::Null;
        let mut recal_count = 0usize;
        if let Some(src) = recal {
            let mut out = Appender::create(dir.join("recal.jsonl"))?;
            for lb in recalibration_batches(mc, data, src, None)? {
                let lb = lb?;
                recal_count += lb.batch.batch;
                out.line(&Value::Object(batch_object(&lb.batch)?))?;
            }
            out.flush()?;
            recal_file = json!(format!("{sub}/recal.jsonl"));
        }
        let bcfg = evaluation_batcher(mc, cfg.batch_size, cfg.skip_bad_lines, None, scored.users);
        let name = format!("{}.jsonl", scored.set);
        let mut out = Appender::create(dir.join(&name))?;
        for lb in Batcher::open(scored.file, data.clone(), bcfg, 0)?.spawn(4) {
            let lb = lb?;
            let mut m = batch_object(&lb.batch)?;
            m.insert("users".into(), json!(lb.raw_uid));
            out.line(&Value::Object(m))?;
        }
        out.flush()?;
        self.save(model, &dir.join("model.safetensors"))?;
        self.steps.borrow_mut().flush()?;
        let mut e = self.events.borrow_mut();
        e.line(&json!({
            "kind": "evaluation",
            "step": step,
            "epoch": epoch,
            "recal": recal_file,
            "recal_samples": recal_count,
            "set": scored.set,
            "test": format!("{sub}/{name}"),
            "params": format!("{sub}/model.safetensors"),
            "metrics": metrics,
        }))?;
        e.flush()
    }
}

/// The samples an evaluation scored, for [`Exporter::evaluation`].
#[derive(Clone, Copy)]
pub(crate) struct Scored<'a> {
    /// `"test"` or `"valid"`.
    pub(crate) set: &'static str,
    /// The file read.
    pub(crate) file: &'a Path,
    /// Its lines scored (`None`: every line).
    pub(crate) users: Option<UserFilter>,
}
