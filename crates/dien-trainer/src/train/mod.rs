//! The training loop (docs/MODEL.md#training): batches from the data layer, the fast
//! model's forward/backward, the optimiser, periodic evaluation with
//! recalibrated normalisation statistics, checkpoints with everything needed
//! to resume, a JSON-lines metrics log and a plot of the curves.
//!
//! One loop serves a single process and every rank of a data-parallel run
//! ([`train_distributed`], docs/DISTRIBUTED.md): with several ranks each
//! trains on its share of every batch, the model exchanges its batch
//! statistics, the gradients are summed over the ranks before the (same)
//! optimiser step, evaluation gathers the scores, and rank 0 alone writes
//! files.
//!
//! - `config`: what a run needs ([`TrainConfig`]) and its checks.
//! - `eval`: evaluation and recalibration.
//! - `selection`: the evaluations of a run, the best model they choose
//!   (by validation AUC unless told otherwise) and early stopping.
//! - `log`: the metrics log.
//! - `state`: the checkpoint's sidecars (optimiser state, progress,
//!   vocabularies) and the best model.
//! - `run`: the record of the run's configuration.
//! - `export`: the replayable record of a run (`export_batches`).
//! - `evalsets`: the batches evaluations read, prepared once per run;
//!   `passes`: evaluation-mode forwards over them, several batches at once.
//! - `timing`: the wall time of each stage of a run.

mod config;
mod eval;
mod evalsets;
mod export;
mod log;
mod passes;
mod recipe;
mod resume;
mod run;
mod selection;
mod state;
mod timing;

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use dien_model::ModelError;
use dien_model::fast::Model;
use dien_model::params::ParamStore;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

pub use self::config::{Select, TrainConfig};
pub use self::eval::{
    RecalSource, count_lines, evaluate, evaluate_shared, evaluate_users, recalibrate, recalibrate_sampled,
    recalibrate_shared,
};
use self::log::MetricsLog;
pub use self::recipe::Recipe;
pub use self::resume::fill_legacy_settings;
pub use self::run::{CODE_VERSION, RUN_METADATA_KEY};
pub use self::selection::BestSummary;
use self::selection::{Outcome, Selection, Sources};
use self::state::{Progress, Resumed, RunMeta, load_best, load_for_resume, save_all};
pub use self::state::{best_path, load_checkpoint};
use self::timing::Stage;
pub use self::timing::StageTimes;
use crate::data::{BadLines, Batcher, DataPosition, DataSet, DataSetReport, Shard, SplitCounts, count_split};
use crate::dist::{Collective, CommCounters, DistSummary, Fault, Replicas, injected_fault};
use crate::error::TrainError;
use crate::metrics::EvalMetrics;
use crate::optim::Optimizer;
use crate::paths::{self, check_outputs};
use crate::record::LogRecord;

/// What a run did.
#[derive(Clone, Debug, Serialize)]
pub struct TrainSummary {
    /// Model name.
    pub model: String,
    /// Test metrics of the final model.
    pub last: EvalMetrics,
    /// Validation metrics of the final model (`None` without a validation
    /// split).
    pub valid: Option<EvalMetrics>,
    /// The AUC that chose the best model: its validation AUC, or its test
    /// AUC with [`Select::Test`].
    pub best_auc: Option<f64>,
    /// The best model (`<out>.best.safetensors`): when it was chosen, by
    /// what, and its test metrics (`None` when no evaluation had an AUC).
    pub best: Option<BestSummary>,
    /// The validation split of the training file.
    pub split: SplitCounts,
    /// Early stopping ended the run.
    pub stopped_early: bool,
    /// Iterations done in total.
    pub steps: u64,
    /// Training samples seen in total.
    pub samples: u64,
    /// Wall time of this run (without the part before a resume).
    pub seconds: f64,
    /// Malformed lines of the training file skipped (`skip_bad_lines`),
    /// each line once (the most that one pass over the file skipped), with
    /// the first messages naming file, line and field. Those met while
    /// reading the data set's other files are reported as an [`Event::Info`].
    pub bad_lines: BadLines,
    /// Every log record of this run.
    #[serde(skip)]
    pub history: Vec<LogRecord>,
    /// The communication of a distributed run (`None` for one process).
    pub distributed: Option<DistSummary>,
    /// Where this run's wall time went.
    pub stages: StageTimes,
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
    pool(cfg)?.install(|| train_in_pool(cfg, None, on_event))
}

/// Trains as one rank of a data-parallel group (docs/DISTRIBUTED.md):
/// every rank of `comm` calls this with the same `cfg`. The global batch of
/// `cfg.batch_size` samples is cut into `comm.size()` equal parts in its
/// sample order (a batch size that the number of ranks does not divide is
/// refused), rank `r` trains on part `r`, and the ranks together compute
/// the model one process computes with the same batch size. Rank 0 alone
/// writes the checkpoints, the metrics log and the plot, and alone reports
/// events to `on_event`; every rank returns the same summary.
///
/// An error on one rank leaves the others waiting in their next exchange:
/// the caller ends the job (with MPI, `dist::mpi::Mpi::abort`). Errors of
/// kind [`TrainError::Replicas`] are reached by every rank at the same
/// point and need no abort.
pub fn train_distributed(
    cfg: &TrainConfig,
    comm: &mut dyn Collective,
    on_event: &mut (dyn FnMut(Event<'_>) + Send),
) -> Result<TrainSummary, TrainError> {
    let ranks = comm.size();
    if ranks == 0 || !cfg.batch_size.is_multiple_of(ranks) {
        return Err(TrainError::Replicas(format!(
            "--batch {} cannot be cut into {ranks} equal parts: the global batch is shared equally by the ranks, so \
             the batch size must be a multiple of the number of ranks (e.g. --batch {})",
            cfg.batch_size,
            cfg.batch_size.div_ceil(ranks.max(1)) * ranks.max(1)
        )));
    }
    let rank = comm.rank();
    let mut quiet = |_: Event<'_>| {};
    let on_event: &mut (dyn FnMut(Event<'_>) + Send) = if rank == 0 { on_event } else { &mut quiet };
    let mut dist = Replicas::new(comm);
    pool(cfg)?.install(|| train_in_pool(cfg, Some(&mut dist), on_event))
}

/// The compute pool of a run.
fn pool(cfg: &TrainConfig) -> Result<rayon::ThreadPool, TrainError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads.unwrap_or(0))
        .build()
        .map_err(|e| TrainError::Config(format!("thread pool: {e}")))
}

/// What a run starts from: the model, its optimiser, the data set (and
/// what reading it found), the progress and the best model's parameters
/// so far (a resumed run carries the last two over).
type Opened = (Model, Optimizer, DataSet, DataSetReport, Progress, Option<ParamStore<f32>>);

/// Opens the data set and builds (or, resuming, loads) the model and the
/// optimiser.
fn open_run(cfg: &TrainConfig, on_event: &mut (dyn FnMut(Event<'_>) + Send)) -> Result<Opened, TrainError> {
    Ok(if cfg.resume {
        let resumed = load_for_resume(&cfg.out)?;
        let plan = resume::reconcile(cfg, &resumed)?;
        let Resumed { model, vocabs, state: (meta, tensors), progress: prog, .. } = resumed;
        let mut opt = Optimizer::new(cfg.optim.clone(), model.params())?;
        opt.load_state(&meta, tensors)?;
        if let Some(lr) = plan.lr {
            opt.set_lr(lr)?;
        }
        on_event(Event::Info(format!(
            "resuming {} at step {} (epoch {}, line {})",
            cfg.out.display(),
            prog.step,
            prog.epoch,
            prog.pos.line
        )));
        for change in &plan.changes {
            on_event(Event::Info(format!("resume changes {change}")));
        }
        let best_params = match prog.best {
            Some(b) => Some(load_best(&cfg.out, &model, b.step, &mut |m| on_event(Event::Info(m)))?),
            None => None,
        };
        let (data, report) = DataSet::open(&cfg.data_dir, Some(vocabs), cfg.skip_bad_lines)?;
        (model, opt, data, report, prog, best_params)
    } else {
        let (data, report) = DataSet::open(&cfg.data_dir, None, cfg.skip_bad_lines)?;
        if let Some(src) = &report.vocab_sources {
            on_event(Event::Info(format!("vocabularies: uid {}; mid {}; cat {}", src[0], src[1], src[2])));
        }
        let mc = cfg.model_config(&data.vocabs)?;
        let model = Model::init(mc, cfg.seed)?;
        let opt = Optimizer::new(cfg.optim.clone(), model.params())?;
        (model, opt, data, report, Progress::default(), None)
    })
}

fn train_in_pool(
    cfg: &TrainConfig,
    mut dist: Option<&mut Replicas<'_>>,
    on_event: &mut (dyn FnMut(Event<'_>) + Send),
) -> Result<TrainSummary, TrainError> {
    let start = Instant::now();
    let mut with_recipe = cfg.clone();
    cfg.recipe.apply(&mut with_recipe)?;
    let cfg = &with_recipe;
    cfg.check()?;
    let (rank, ranks) = dist.as_ref().map_or((0, 1), |d| (d.rank(), d.size()));
    // Rank 0 writes every file.
    let lead = rank == 0;
    let shard = dist.as_ref().map(|d| Shard { rank: d.rank(), ranks: d.size() });
    check_outputs(&paths::data_dir_inputs(&cfg.data_dir), &cfg.outputs())?;
    let mut record = cfg.run_record();
    if ranks > 1 {
        record["ranks"] = serde_json::json!(ranks);
    }
    let run_meta: RunMeta = [(RUN_METADATA_KEY.to_string(), record.to_string())].into();
    let train_file = DataSet::train_file(&cfg.data_dir);
    let test_file = DataSet::test_file(&cfg.data_dir);
    // The data set (vocabularies, item-info, reviews-info) is read once: a
    // fresh run builds the model on its vocabularies, a resumed one reads
    // them from the checkpoint's sidecar. The split's line count reads the
    // training file on its own, beside them.
    let (opened, split) =
        rayon::join(|| open_run(cfg, on_event), || count_split(&train_file, &cfg.split()?, cfg.skip_bad_lines));
    let (mut model, mut opt, data, report, mut prog, best_params) = opened?;
    if report.bad_lines.count > 0 {
        on_event(Event::Info(format!("reading the data set: {}", report.bad_lines)));
    }
    let has_aux = model.config().has_aux();
    if has_aux && data.sampler.is_none() {
        return Err(TrainError::Config(format!(
            "model `{}` needs negatives, but the data set has no sampler ({})",
            cfg.model.model,
            report.no_sampler.unwrap_or_default()
        )));
    }
    let split = split?;
    split.check(&train_file)?;
    if split.valid_frac > 0.0 {
        on_event(Event::Info(format!("validation split: {split}")));
    }
    let data = Arc::new(data);
    let export = cfg.export_batches.as_deref().map(|d| export::Exporter::create(d, cfg, &model, ranks)).transpose()?;
    // Every rank starts from the same parameters (the same seed, or the
    // same checkpoint).
    if let Some(d) = dist.as_deref_mut() {
        d.check_replicas(model.params(), prog.step)?;
    }
    for p in [Some(&cfg.out), cfg.metrics_log.as_ref(), cfg.plot.as_ref()].into_iter().flatten() {
        if let Some(dir) = p.parent().filter(|d| lead && !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        }
    }
    // The log starts (or, on resume, goes on) with the run record and the
    // split.
    let mut log = MetricsLog::open(cfg, lead, &record)?;
    log.line(&serde_json::json!({
        "kind": "split",
        "seed": cfg.seed,
        "valid_frac": split.valid_frac,
        "train_lines": split.train_lines,
        "train_users": split.train_users,
        "valid_lines": split.valid_lines,
        "valid_users": split.valid_users,
    }))?;

    // The bar counts bytes of the training file: its size is known without
    // reading it.
    let progress = cfg.progress && lead;
    let file_bytes =
        if progress { fs::metadata(&train_file).map_err(|e| TrainError::io(&train_file, e))?.len() } else { 0 };
    let bar = if progress {
        let b = ProgressBar::new(file_bytes * cfg.epochs as u64);
        b.set_style(
            ProgressStyle::with_template(
                "{prefix} [{elapsed_precise}] {wide_bar} {percent:>3}%  {binary_bytes_per_sec}  loss {msg}",
            )
            .expect("template"),
        );
        b.set_prefix(cfg.model.model.to_string());
        b.set_position(prog.epoch * file_bytes);
        b
    } else {
        ProgressBar::hidden()
    };

    // The best model and the early-stopping count are carried over by a
    // resumed run, so that the best checkpoint is only ever replaced by a
    // better model.
    let sources = Sources {
        cfg,
        data: &data,
        train_file: &train_file,
        test_file: &test_file,
        split: &split,
        run_meta: &run_meta,
        lead,
        start,
        samples_at_start: prog.samples,
        export: export.as_ref(),
    };
    let mut sel = Selection::new(sources, &prog, best_params, model.config(), shard)?;
    let mut window = (0.0f64, 0.0f64, 0.0f64, 0u64);
    let samples_at_start = prog.samples;
    // Communication of the training steps (distributed runs): counters,
    // bytes by part, wall time of the steps, steps.
    let mut step_comm = CommCounters::default();
    let mut step_parts = [0u64; 3];
    let mut step_seconds = 0.0f64;
    let steps_at_start = prog.step;
    // Malformed training lines skipped: the largest count of one pass.
    let mut bad = BadLines::default();
    // The step of the latest evaluation and what it measured: a run that
    // stops right after one is not evaluated again.
    let mut evaluated: Option<(u64, Outcome)> = None;
    let mut stopped_early = sel.stopped();
    if stopped_early {
        on_event(Event::Info(format!(
            "the run stopped early at step {} ({} evaluations without a new best); raise --early-stop to go on",
            prog.step, sel.since_best
        )));
    }
    let mut times = StageTimes { setup: start.elapsed().as_secs_f64(), ..StageTimes::default() };
    'epochs: while (prog.epoch as usize) < cfg.epochs && !stopped_early {
        let bcfg = cfg.batcher(has_aux, shard, sel.train_users());
        let mut stream = times.time(Stage::BatchWait, || {
            Batcher::open_at(&train_file, data.clone(), bcfg, prog.epoch, prog.pos).map(|b| b.spawn(4))
        })?;
        let mut stop = false;
        // Peeking tells the last batch of the epoch, whose step ends it.
        let mut batches = stream.by_ref().peekable();
        while let Some(lb) = times.time(Stage::BatchWait, || batches.next()) {
            let lb = lb?;
            let b = lb.global_batch as u64;
            let fault = injected_fault(rank, prog.step + 1);
            match fault {
                Some(Fault::Error) => {
                    return Err(TrainError::Config(format!(
                        "an error injected by DIEN_RANK_FAULT before step {}",
                        prog.step + 1
                    )));
                }
                Some(Fault::Abort) => std::process::abort(),
                _ => {}
            }
            let step_start = Instant::now();
            let (comm_before, parts_before) = match dist.as_deref() {
                Some(d) => (d.counters(), d.part_bytes()),
                None => (CommCounters::default(), [0; 3]),
            };
            // Timed per model stage for the summary; off again for the
            // evaluation passes that share the model.
            model.time_stages(true);
            let result = times.time(Stage::ForwardBackward, || match dist.as_deref_mut() {
                Some(d) => model.forward_backward_synced(&lb.batch, d),
                None => model.forward_backward(&lb.batch),
            });
            if let Some(st) = model.stage_times() {
                times.add_model_stages(st);
            }
            model.time_stages(false);
            let losses = result.map_err(|e| match e {
                ModelError::NonFinite(m) => TrainError::Diverged {
                    step: prog.step + 1,
                    msg: format!(
                        "{m}; nothing of this step was applied. Checkpoints saved before it are kept, but a model \
                         close to divergence may already score poorly: lower --lr or set --clip-norm"
                    ),
                },
                other => other.into(),
            })?;
            if let Some(d) = dist.as_deref_mut() {
                d.all_reduce_gradients(model.gradients_mut())?;
            }
            times.time(Stage::Optimiser, || -> Result<(), TrainError> {
                let (params, grads) = model.params_and_gradients();
                opt.step(params, grads)?;
                model.update_running_stats();
                Ok(())
            })?;
            if let Some(d) = dist.as_deref() {
                step_seconds += step_start.elapsed().as_secs_f64();
                step_comm.add(&d.counters().since(&comm_before));
                for (acc, (now, before)) in step_parts.iter_mut().zip(d.part_bytes().into_iter().zip(parts_before)) {
                    *acc += now - before;
                }
            }
            if fault == Some(Fault::Perturb) {
                let p = model.params_mut().get_mut("head.fc3.b");
                p[0] += 1e-3;
            }
            prog.step += 1;
            prog.samples += b;
            prog.pos = lb.next;
            if let Some(x) = &export {
                x.step(prog.step, prog.epoch, opt.lr(), &lb.batch, &losses)?;
            }
            if let Some(d) = dist.as_deref_mut()
                && cfg.replica_check_every > 0
                && prog.step.is_multiple_of(cfg.replica_check_every)
            {
                d.check_replicas(model.params(), prog.step)?;
            }
            window.0 += losses.loss;
            window.1 += losses.loss_target;
            window.2 += losses.loss_aux;
            window.3 += 1;
            bar.set_position(prog.epoch * file_bytes + lb.bytes_consumed.min(file_bytes));
            if prog.step.is_multiple_of(cfg.log_every.max(1)) {
                let n = window.3 as f64;
                bar.set_message(format!("{:.4}", window.0 / n));
                let el = start.elapsed().as_secs_f64();
                log.emit(
                    LogRecord {
                        kind: "train",
                        step: prog.step,
                        epoch: prog.epoch,
                        samples: prog.samples,
                        train_loss: Some(window.0 / n),
                        train_loss_target: Some(window.1 / n),
                        train_loss_aux: Some(window.2 / n),
                        valid: None,
                        test: None,
                        lr: opt.lr(),
                        elapsed_s: el,
                        samples_per_s: (prog.samples - samples_at_start) as f64 / el.max(1e-9),
                    },
                    on_event,
                )?;
                window = (0.0, 0.0, 0.0, 0);
            }
            let at_limit = cfg.max_steps.is_some_and(|m| prog.step >= m);
            let epoch_end = times.time(Stage::BatchWait, || batches.peek().is_none());
            let last = at_limit || (epoch_end && prog.epoch + 1 >= cfg.epochs as u64);
            if cfg.eval_every.is_some_and(|k| prog.step.is_multiple_of(k)) || (epoch_end && cfg.eval_each_epoch) || last
            {
                let o =
                    sel.evaluate(&mut model, &prog, opt.lr(), dist.as_deref_mut(), last, true, &mut log, on_event)?;
                stopped_early = o.stop;
                evaluated = Some((prog.step, o));
            }
            if cfg.save_every.is_some_and(|k| k > 0 && prog.step.is_multiple_of(k)) {
                (prog.best, prog.since_best) = (sel.best, sel.since_best);
                if lead {
                    times.time(Stage::Saving, || save_all(&cfg.out, &model, &opt, &data.vocabs, prog, &run_meta))?;
                    on_event(Event::Saved(&cfg.out));
                }
            }
            if at_limit || stopped_early {
                stop = true;
                break;
            }
        }
        drop(batches);
        let skipped = times.time(Stage::BatchWait, || stream.finish())?;
        if skipped.count > bad.count {
            bad = skipped;
        }
        if prog.step == 0 {
            return Err(TrainError::NoSamples { path: train_file.clone() });
        }
        if let Some(x) = &export {
            x.epoch_end(&model, prog.step, prog.epoch, !stop)?;
        }
        if stop {
            break 'epochs;
        }
        prog.epoch += 1;
        prog.pos = DataPosition::default();
        opt.halve_lr();
    }
    bar.finish_and_clear();
    if bad.count > 0 {
        on_event(Event::Info(format!("training file: {bad}")));
    }
    let last = match evaluated {
        Some((step, o)) if step == prog.step && o.test.is_some() => o,
        // A resumed run that trained nothing re-evaluates the model it
        // loaded: that is no new evaluation for early stopping.
        _ => {
            let counted = prog.step != steps_at_start;
            sel.evaluate(&mut model, &prog, opt.lr(), dist.as_deref_mut(), true, counted, &mut log, on_event)?
        }
    };
    let last_test = last.test.clone().ok_or_else(|| {
        TrainError::Config(format!("the final evaluation (step {}) did not score the test file", prog.step))
    })?;
    let best = sel.finish(&model, prog.step, &last, dist.as_deref_mut(), &mut log, on_event)?;
    (prog.best, prog.since_best) = (sel.best, sel.since_best);
    // The replicas are checked once more before the model is saved.
    let distributed = match dist {
        Some(d) => {
            d.check_replicas(model.params(), prog.step)?;
            Some(d.summary(prog.step - steps_at_start, &step_comm, step_parts, step_seconds)?)
        }
        None => None,
    };
    let history = std::mem::take(&mut log.history);
    if lead {
        times.time(Stage::Saving, || save_all(&cfg.out, &model, &opt, &data.vocabs, prog, &run_meta))?;
        on_event(Event::Saved(&cfg.out));
        if let Some(p) = &cfg.plot {
            times.time(Stage::Saving, || {
                crate::plot::write_curves(p, &[(cfg.model.model.to_string(), history.as_slice())])
            })?;
        }
    }
    times.recalibration += sel.times.recalibration;
    times.evaluation += sel.times.evaluation;
    times.saving += sel.times.saving;
    let seconds = start.elapsed().as_secs_f64();
    times.close(seconds);
    Ok(TrainSummary {
        model: cfg.model.model.to_string(),
        last: last_test,
        valid: last.valid,
        best_auc: prog.best.map(|b| b.auc),
        best,
        split,
        stopped_early,
        steps: prog.step,
        samples: prog.samples,
        seconds,
        bad_lines: bad,
        history,
        distributed,
        stages: times,
    })
}
