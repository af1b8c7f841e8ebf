//! The training loop (SPEC §11): batches from the data layer, the fast
//! model's forward/backward, the optimiser, periodic evaluation with
//! recalibrated normalisation statistics, checkpoints with everything needed
//! to resume, a JSON-lines metrics log and a plot of the curves.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use dien_model::checkpoint::{self, OPTIM_SUFFIX, VOCAB_SUFFIX, sidecar_path};
use dien_model::fast::Model;
use dien_model::{AttForm, AuxForm, Mode, ModelConfig, ModelError, ModelKind, Variant};
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::data::{Batcher, BatcherConfig, DataPosition, DataSet, LineReader, Vocabs};
use crate::error::TrainError;
use crate::metrics::{EvalMetrics, MetricsAccumulator};
use crate::optim::{OptimConfig, Optimizer};

/// Everything a training run needs.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    /// Data directory in the layout of SPEC §12.
    pub data_dir: PathBuf,
    /// Checkpoint to write (sidecars go beside it).
    pub out: PathBuf,
    /// Which model (SPEC §9).
    pub model: ModelKind,
    /// Interest-evolving variant (SPEC §6).
    pub variant: Variant,
    /// Attention form (SPEC §5).
    pub att: AttForm,
    /// Auxiliary head form (SPEC §4).
    pub aux: AuxForm,
    /// Embedding width `d` (18).
    pub d: usize,
    /// GRU hidden width `H` (36).
    pub hidden: usize,
    /// Longest kept history (100).
    pub max_len: usize,
    /// Weight of the auxiliary loss (1.0; forced to 0 for `dien-noaux`).
    pub alpha_aux: f32,
    /// Epochs (the learning rate halves after each).
    pub epochs: usize,
    /// Samples per batch (128).
    pub batch_size: usize,
    /// Seed of initialisation, negative sampling and recalibration samples.
    pub seed: u64,
    /// Threads of the compute pool (`None`: all cores).
    pub threads: Option<usize>,
    /// Optimiser settings.
    pub optim: OptimConfig,
    /// Evaluate on the test file every this many iterations (and at the end).
    pub eval_every: Option<u64>,
    /// Save a checkpoint every this many iterations (and at the end).
    pub save_every: Option<u64>,
    /// Recalibrate BatchNorm/Dice statistics before every evaluation and at
    /// the end (SPEC §11); false keeps the moving averages, for comparison.
    pub recalibrate: bool,
    /// Training samples used for recalibration (at least 20,000 by SPEC §11
    /// when the set is larger; all of them when it is smaller).
    pub recal_samples: usize,
    /// Skip malformed lines instead of failing.
    pub skip_bad_lines: bool,
    /// Stop after this many iterations in total (for tests and quick runs).
    pub max_steps: Option<u64>,
    /// Continue from the checkpoint at `out` and its sidecars.
    pub resume: bool,
    /// Draw a progress bar on standard error.
    pub progress: bool,
    /// Write one JSON object per evaluation and per logging interval here.
    pub metrics_log: Option<PathBuf>,
    /// Write an SVG plot of the training and test curves here.
    pub plot: Option<PathBuf>,
    /// Iterations between training-loss records in the metrics log.
    pub log_every: u64,
}

impl TrainConfig {
    /// SPEC §11 defaults for `model` on `data_dir`, writing `out`.
    pub fn new(data_dir: impl Into<PathBuf>, out: impl Into<PathBuf>, model: ModelKind) -> Self {
        Self {
            data_dir: data_dir.into(),
            out: out.into(),
            model,
            variant: Variant::Augru,
            att: AttForm::Mlp,
            aux: AuxForm::Mlp,
            d: 18,
            hidden: 36,
            max_len: 100,
            alpha_aux: 1.0,
            epochs: 1,
            batch_size: 128,
            seed: 2018,
            threads: None,
            optim: OptimConfig::default(),
            eval_every: None,
            save_every: None,
            recalibrate: true,
            recal_samples: 20_000,
            skip_bad_lines: false,
            max_steps: None,
            resume: false,
            progress: false,
            metrics_log: None,
            plot: None,
            log_every: 50,
        }
    }

    fn model_config(&self, vocabs: &Vocabs) -> Result<ModelConfig, TrainError> {
        let sizes = vocabs.sizes();
        let mut c = ModelConfig::new(self.model, sizes.uid, sizes.mid, sizes.cat);
        c.variant = self.variant;
        c.att = self.att;
        c.aux = self.aux;
        c.d = self.d;
        c.hidden = self.hidden;
        c.max_len = self.max_len;
        c.alpha_aux = if self.model == ModelKind::DienNoaux { 0.0 } else { self.alpha_aux };
        c.validate()?;
        Ok(c)
    }

    fn batcher(&self, negatives: bool) -> BatcherConfig {
        BatcherConfig {
            batch_size: self.batch_size,
            max_len: self.max_len,
            negatives,
            seed: self.seed,
            skip_bad_lines: self.skip_bad_lines,
            ..BatcherConfig::default()
        }
    }
}

/// One line of the metrics log.
#[derive(Clone, Debug, Serialize)]
pub struct LogRecord {
    /// `"train"` (running loss) or `"eval"` (test metrics).
    pub kind: &'static str,
    /// Iterations done.
    pub step: u64,
    /// Epoch (0-based) of the last iteration.
    pub epoch: u64,
    /// Training samples seen.
    pub samples: u64,
    /// Mean training loss since the previous `train` record.
    pub train_loss: Option<f64>,
    /// Mean target loss since the previous `train` record.
    pub train_loss_target: Option<f64>,
    /// Mean auxiliary loss since the previous `train` record.
    pub train_loss_aux: Option<f64>,
    /// Test metrics (eval records).
    pub test: Option<EvalMetrics>,
    /// Learning rate.
    pub lr: f32,
    /// Seconds since the run (or its resumption) started.
    pub elapsed_s: f64,
    /// Training samples per second over the run.
    pub samples_per_s: f64,
}

/// What a run did.
#[derive(Clone, Debug, Serialize)]
pub struct TrainSummary {
    /// Model name.
    pub model: String,
    /// Test metrics after the last iteration.
    pub last: EvalMetrics,
    /// Best test AUC seen at an evaluation.
    pub best_auc: Option<f64>,
    /// Iterations done in total.
    pub steps: u64,
    /// Training samples seen in total.
    pub samples: u64,
    /// Wall time of this run (without the part before a resume).
    pub seconds: f64,
    /// Malformed lines skipped.
    pub bad_lines: u64,
    /// Every log record of this run.
    #[serde(skip)]
    pub history: Vec<LogRecord>,
}

/// Training progress stored beside a checkpoint so that a run can resume.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Progress {
    epoch: u64,
    pos: DataPosition,
    step: u64,
    samples: u64,
}

impl Progress {
    fn to_meta(self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert("train.epoch".into(), self.epoch.to_string());
        m.insert("train.line".into(), self.pos.line.to_string());
        m.insert("train.batch".into(), self.pos.batch.to_string());
        m.insert("train.step".into(), self.step.to_string());
        m.insert("train.samples".into(), self.samples.to_string());
        m
    }
    fn from_meta(m: &BTreeMap<String, String>, path: &Path) -> Result<Self, TrainError> {
        let get = |k: &str| -> Result<u64, TrainError> {
            m.get(k).and_then(|v| v.parse().ok()).ok_or_else(|| {
                TrainError::Config(format!("{}: missing or invalid metadata `{k}` (cannot resume)", path.display()))
            })
        };
        Ok(Self {
            epoch: get("train.epoch")?,
            pos: DataPosition { line: get("train.line")?, batch: get("train.batch")? },
            step: get("train.step")?,
            samples: get("train.samples")?,
        })
    }
}

/// The best-model checkpoint kept beside `out` (SPEC §11).
pub fn best_path(out: &Path) -> PathBuf {
    sidecar_path(out, "best.safetensors")
}

fn save_all(out: &Path, model: &Model, opt: &Optimizer, vocabs: &Vocabs, p: Progress) -> Result<(), TrainError> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    }
    checkpoint::save(out, model.config(), model.params())?;
    let state = opt.state_tensors();
    let refs: Vec<(&str, &[usize], &[f32])> =
        state.iter().map(|(n, s, v)| (n.as_str(), s.as_slice(), v.as_slice())).collect();
    let mut meta = opt.state_metadata();
    meta.extend(p.to_meta());
    checkpoint::save_tensors(&sidecar_path(out, OPTIM_SUFFIX), &refs, &meta)?;
    vocabs.save_json(&sidecar_path(out, VOCAB_SUFFIX))?;
    Ok(())
}

/// Loads a checkpoint and its vocabulary sidecar.
pub fn load_checkpoint(path: &Path) -> Result<(Model, Vocabs), TrainError> {
    let (cfg, params) = checkpoint::load(path)?;
    let vocabs = Vocabs::load_json(&sidecar_path(path, VOCAB_SUFFIX))?;
    let sizes = vocabs.sizes();
    if (sizes.uid, sizes.mid, sizes.cat) != (cfg.n_uid, cfg.n_mid, cfg.n_cat) {
        return Err(TrainError::Config(format!(
            "{}: vocabularies ({}, {}, {}) do not match the checkpoint's tables ({}, {}, {})",
            sidecar_path(path, VOCAB_SUFFIX).display(),
            sizes.uid,
            sizes.mid,
            sizes.cat,
            cfg.n_uid,
            cfg.n_mid,
            cfg.n_cat
        )));
    }
    Ok((Model::new(cfg, params)?, vocabs))
}

/// Scores `file` (SPEC §12 lines) in evaluation mode: AUC, GAUC (users by raw
/// id), logloss, accuracy.
pub fn evaluate(
    model: &mut Model,
    data: &Arc<DataSet>,
    file: &Path,
    batch_size: usize,
    skip_bad_lines: bool,
) -> Result<EvalMetrics, TrainError> {
    let bcfg = BatcherConfig {
        batch_size,
        max_len: model.config().max_len,
        negatives: false,
        keep_raw_uid: true,
        skip_bad_lines,
        tables: Some(table_sizes(model.config())),
        ..BatcherConfig::default()
    };
    let mut acc = MetricsAccumulator::new();
    for lb in Batcher::open(file, data.clone(), bcfg, 0)?.spawn(4) {
        let lb = lb?;
        model.forward(&lb.batch, Mode::Eval)?;
        acc.push_batch(&lb.raw_uid, model.logits(), &lb.batch.label);
    }
    Ok(acc.finish())
}

fn table_sizes(c: &ModelConfig) -> crate::data::TableSizes {
    crate::data::TableSizes { uid: c.n_uid, mid: c.n_mid, cat: c.n_cat }
}

fn count_lines(path: &Path) -> Result<u64, TrainError> {
    let mut r = LineReader::open(path)?;
    while r.next_line()?.is_some() {}
    Ok(r.lines_consumed())
}

/// Recalibrates BatchNorm and Dice statistics (SPEC §11) on a seeded random
/// sample of whole training batches holding about `samples` samples (all of
/// the training set when it is not larger), in evaluation mode. Returns the
/// number of samples used.
pub fn recalibrate(
    model: &mut Model,
    data: &Arc<DataSet>,
    train_file: &Path,
    samples: usize,
    seed: u64,
    batch_size: usize,
) -> Result<usize, TrainError> {
    let total = count_lines(train_file)?;
    // Batches are drawn independently with probability p; 10% headroom so the
    // sample is at least `samples` large in all but rare draws.
    let p = if total as f64 <= samples as f64 { 1.0 } else { (1.1 * samples as f64 / total as f64).min(1.0) };
    let bcfg = BatcherConfig {
        batch_size,
        max_len: model.config().max_len,
        negatives: false,
        tables: Some(table_sizes(model.config())),
        ..BatcherConfig::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7eca_11b7);
    let mut xs = Vec::new();
    let mut n = 0;
    for lb in Batcher::open(train_file, data.clone(), bcfg, 0)?.spawn(4) {
        let lb = lb?;
        if p < 1.0 && rng.random::<f64>() >= p {
            continue;
        }
        model.forward(&lb.batch, Mode::Eval)?;
        xs.extend_from_slice(model.head_input());
        n += lb.batch.batch;
    }
    if n > 0 {
        model.recalibrate(&xs)?;
    }
    Ok(n)
}

/// Events reported while training (for a caller's display).
#[derive(Clone, Debug)]
pub enum Event<'a> {
    /// A metrics-log record was produced.
    Record(&'a LogRecord),
    /// A checkpoint was written.
    Saved(&'a Path),
    /// Something worth telling (data sources, skipped lines, ...).
    Info(String),
}

/// Trains a model as `cfg` says; see the module docs.
pub fn train(cfg: &TrainConfig, on_event: &mut (dyn FnMut(Event<'_>) + Send)) -> Result<TrainSummary, TrainError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads.unwrap_or(0))
        .build()
        .map_err(|e| TrainError::Config(format!("thread pool: {e}")))?;
    pool.install(|| train_in_pool(cfg, on_event))
}

// The evaluation closure spells out the event-callback types in full.
#[allow(clippy::type_complexity)]
fn train_in_pool(cfg: &TrainConfig, on_event: &mut (dyn FnMut(Event<'_>) + Send)) -> Result<TrainSummary, TrainError> {
    let start = Instant::now();
    let train_file = DataSet::train_file(&cfg.data_dir);
    let test_file = DataSet::test_file(&cfg.data_dir);
    let (mut model, mut opt, vocabs, mut prog) = if cfg.resume {
        let (model, vocabs) = load_checkpoint(&cfg.out)?;
        let side = sidecar_path(&cfg.out, OPTIM_SUFFIX);
        let (meta, tensors) = checkpoint::load_tensors(&side)?;
        let prog = Progress::from_meta(&meta, &side)?;
        let mut opt = Optimizer::new(cfg.optim.clone(), model.params())?;
        opt.load_state(&meta, tensors)?;
        on_event(Event::Info(format!(
            "resuming {} at step {} (epoch {}, line {})",
            cfg.out.display(),
            prog.step,
            prog.epoch,
            prog.pos.line
        )));
        (model, opt, vocabs, prog)
    } else {
        let (data, report) = DataSet::open(&cfg.data_dir, None, cfg.skip_bad_lines)?;
        if let Some(src) = &report.vocab_sources {
            on_event(Event::Info(format!("vocabularies: {src:?}")));
        }
        let mc = cfg.model_config(&data.vocabs)?;
        let model = Model::init(mc, cfg.seed)?;
        let opt = Optimizer::new(cfg.optim.clone(), model.params())?;
        (model, opt, data.vocabs, Progress::default())
    };
    if model.config().model != cfg.model {
        return Err(TrainError::Config(format!(
            "checkpoint {} holds a `{}` model, not `{}`",
            cfg.out.display(),
            model.config().model,
            cfg.model
        )));
    }
    let (data, report) = DataSet::open(&cfg.data_dir, Some(vocabs.clone()), cfg.skip_bad_lines)?;
    let has_aux = model.config().has_aux();
    if has_aux && data.sampler.is_none() {
        return Err(TrainError::Config(format!(
            "model `{}` needs negatives, but the data set has no sampler ({})",
            cfg.model,
            report.no_sampler.unwrap_or_default()
        )));
    }
    let data = Arc::new(data);
    for p in [Some(&cfg.out), cfg.metrics_log.as_ref(), cfg.plot.as_ref()].into_iter().flatten() {
        if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        }
    }
    let mut log_file = match &cfg.metrics_log {
        Some(p) => Some(
            fs::OpenOptions::new()
                .create(true)
                .append(cfg.resume)
                .write(true)
                .truncate(!cfg.resume)
                .open(p)
                .map_err(|e| TrainError::io(p, e))?,
        ),
        None => None,
    };
    let mut history = Vec::new();
    let mut emit = |rec: LogRecord, on_event: &mut (dyn FnMut(Event<'_>) + Send)| -> Result<(), TrainError> {
        if let (Some(f), Some(p)) = (&mut log_file, &cfg.metrics_log) {
            let line = serde_json::to_string(&rec).expect("records serialise");
            writeln!(f, "{line}").map_err(|e| TrainError::io(p, e))?;
        }
        on_event(Event::Record(&rec));
        history.push(rec);
        Ok(())
    };

    let total_lines = count_lines(&train_file)?;
    let bar = if cfg.progress {
        let b = ProgressBar::new(total_lines * cfg.epochs as u64);
        b.set_style(
            ProgressStyle::with_template(
                "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} samples  {per_sec}  loss {msg}",
            )
            .expect("template"),
        );
        b.set_prefix(cfg.model.to_string());
        b.set_position(prog.epoch * total_lines + prog.pos.line);
        b
    } else {
        ProgressBar::hidden()
    };

    let mut best_auc: Option<f64> = None;
    let mut window = (0.0f64, 0.0f64, 0.0f64, 0u64);
    let samples_at_start = prog.samples;
    let eval_and_log =
        |model: &mut Model,
         prog: Progress,
         opt: &Optimizer,
         best_auc: &mut Option<f64>,
         emit: &mut dyn FnMut(LogRecord, &mut (dyn FnMut(Event<'_>) + Send)) -> Result<(), TrainError>,
         on_event: &mut (dyn FnMut(Event<'_>) + Send)|
         -> Result<EvalMetrics, TrainError> {
            if cfg.recalibrate {
                recalibrate(model, &data, &train_file, cfg.recal_samples, cfg.seed, cfg.batch_size)?;
            }
            let m = evaluate(model, &data, &test_file, cfg.batch_size, cfg.skip_bad_lines)?;
            if let Some(auc) = m.auc
                && best_auc.is_none_or(|b| auc > b)
            {
                *best_auc = Some(auc);
                checkpoint::save(&best_path(&cfg.out), model.config(), model.params())?;
            }
            let el = start.elapsed().as_secs_f64();
            emit(
                LogRecord {
                    kind: "eval",
                    step: prog.step,
                    epoch: prog.epoch,
                    samples: prog.samples,
                    train_loss: None,
                    train_loss_target: None,
                    train_loss_aux: None,
                    test: Some(m.clone()),
                    lr: opt.lr(),
                    elapsed_s: el,
                    samples_per_s: (prog.samples - samples_at_start) as f64 / el.max(1e-9),
                },
                on_event,
            )?;
            Ok(m)
        };

    'epochs: while (prog.epoch as usize) < cfg.epochs {
        let stream = Batcher::open_at(&train_file, data.clone(), cfg.batcher(has_aux), prog.epoch, prog.pos)?.spawn(4);
        for lb in stream {
            let lb = lb?;
            let b = lb.batch.batch as u64;
            let losses = model.forward_backward(&lb.batch).map_err(|e| match e {
                ModelError::NonFinite(m) => TrainError::Config(format!(
                    "step {}: non-finite value ({m}); the last good checkpoint is kept",
                    prog.step + 1
                )),
                other => other.into(),
            })?;
            let (params, grads) = model.params_and_gradients();
            opt.step(params, grads)?;
            model.update_running_stats();
            prog.step += 1;
            prog.samples += b;
            prog.pos = lb.next;
            window.0 += losses.loss;
            window.1 += losses.loss_target;
            window.2 += losses.loss_aux;
            window.3 += 1;
            bar.set_position(prog.epoch * total_lines + lb.lines_consumed.min(total_lines));
            if prog.step.is_multiple_of(cfg.log_every.max(1)) {
                let n = window.3 as f64;
                bar.set_message(format!("{:.4}", window.0 / n));
                let el = start.elapsed().as_secs_f64();
                emit(
                    LogRecord {
                        kind: "train",
                        step: prog.step,
                        epoch: prog.epoch,
                        samples: prog.samples,
                        train_loss: Some(window.0 / n),
                        train_loss_target: Some(window.1 / n),
                        train_loss_aux: Some(window.2 / n),
                        test: None,
                        lr: opt.lr(),
                        elapsed_s: el,
                        samples_per_s: (prog.samples - samples_at_start) as f64 / el.max(1e-9),
                    },
                    on_event,
                )?;
                window = (0.0, 0.0, 0.0, 0);
            }
            if cfg.eval_every.is_some_and(|k| k > 0 && prog.step.is_multiple_of(k)) {
                eval_and_log(&mut model, prog, &opt, &mut best_auc, &mut emit, on_event)?;
            }
            if cfg.save_every.is_some_and(|k| k > 0 && prog.step.is_multiple_of(k)) {
                save_all(&cfg.out, &model, &opt, &vocabs, prog)?;
                on_event(Event::Saved(&cfg.out));
            }
            if cfg.max_steps.is_some_and(|m| prog.step >= m) {
                break 'epochs;
            }
        }
        prog.epoch += 1;
        prog.pos = DataPosition::default();
        opt.halve_lr();
    }
    bar.finish_and_clear();
    let last = eval_and_log(&mut model, prog, &opt, &mut best_auc, &mut emit, on_event)?;
    save_all(&cfg.out, &model, &opt, &vocabs, prog)?;
    on_event(Event::Saved(&cfg.out));
    if let Some(p) = &cfg.plot {
        crate::plot::write_curves(p, &[(cfg.model.to_string(), history.as_slice())])?;
    }
    Ok(TrainSummary {
        model: cfg.model.to_string(),
        last,
        best_auc,
        steps: prog.step,
        samples: prog.samples,
        seconds: start.elapsed().as_secs_f64(),
        bad_lines: 0,
        history,
    })
}
