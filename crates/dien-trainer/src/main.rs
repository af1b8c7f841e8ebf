//! `dien`: generate data, train, evaluate, score, check gradients and
//! benchmark the DIEN engine from the command line (SPEC §14).

use std::fs;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use dien_model::cost::{flops_per_sample, synthetic_batch};
use dien_model::fast::Model;
use dien_model::{AttForm, AuxForm, Batch, Mode, ModelConfig, ModelKind, Variant, checkpoint, reference};
use dien_trainer::data::{Batcher, BatcherConfig, DataSet, TableSizes};
use dien_trainer::generate::{GenerateConfig, generate};
use dien_trainer::optim::{OptimConfig, OptimKind, Optimizer};
use dien_trainer::train::{Event, TrainConfig, TrainSummary, evaluate, load_checkpoint, train};
use serde_json::json;

#[derive(Parser)]
#[command(name = "dien", version, about = "A hand-written CPU engine for DIEN (Deep Interest Evolution Network)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate the default synthetic data set, train `base`, `din` and
    /// `dien` on it, evaluate them and print a comparison table (and a plot).
    Demo(DemoArgs),
    /// Write a synthetic data set in the reference layout (docs/DATA.md).
    Generate(GenerateArgs),
    /// Train a model on DIR/local_train_splitByUser, evaluating on
    /// DIR/local_test_splitByUser; the last line is a JSON object.
    Train(TrainArgs),
    /// Evaluate a checkpoint on DIR/local_test_splitByUser; the last line is
    /// a JSON object with auc, gauc, logloss, accuracy and samples.
    Eval(EvalArgs),
    /// Score a data file (reference line format), one probability per line,
    /// in input order.
    Predict(PredictArgs),
    /// Check the analytic gradients of the f64 reference path against finite
    /// differences for every parameter tensor of a tiny model; prints the
    /// per-tensor report and fails if any tensor disagrees.
    Gradcheck(GradcheckArgs),
    /// Run one forward (and backward) pass of a checkpoint on a JSON batch and
    /// write logits, losses and every parameter gradient to a safetensors file.
    Grads(GradsArgs),
    /// Time full steps on generated inputs; the last line is a JSON object.
    Bench(BenchArgs),
}

/// Model architecture options.
#[derive(Args, Clone)]
struct ArchArgs {
    /// Interest-evolving variant: augru, augru-ref, agru, aigru, gru_att.
    #[arg(long, default_value = "augru")]
    variant: Variant,
    /// Attention form: mlp or bilinear.
    #[arg(long, default_value = "mlp")]
    att: AttForm,
    /// Auxiliary head: mlp or dot (dot needs H = 2d).
    #[arg(long, default_value = "mlp")]
    aux: AuxForm,
    /// Embedding width d.
    #[arg(long, default_value_t = 18)]
    dim: usize,
    /// GRU hidden width H.
    #[arg(long, default_value_t = 36)]
    hidden: usize,
    /// Weight of the auxiliary loss.
    #[arg(long, default_value_t = 1.0)]
    alpha_aux: f32,
}

#[derive(Args)]
struct DemoArgs {
    /// Where to write the data set, checkpoints, logs and the plot (default:
    /// a fresh folder under the system's temporary directory).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Seed of data generation and training.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Epochs per model. One by default: test users are new, and a second
    /// pass lets the user embeddings memorise the training pairs.
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    /// Compute threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Users of the generated set, each giving a positive and a negative
    /// (default: the generator's 150,000).
    #[arg(long)]
    users: Option<usize>,
    /// Hide progress bars.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct GenerateArgs {
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Users (each gives one positive and one negative line).
    #[arg(long)]
    users: Option<usize>,
    /// Items in the catalogue.
    #[arg(long)]
    items: Option<usize>,
    /// Categories.
    #[arg(long)]
    categories: Option<usize>,
    /// Shortest history.
    #[arg(long)]
    min_len: Option<usize>,
    /// Longest history.
    #[arg(long)]
    max_len: Option<usize>,
}

#[derive(Args)]
struct TrainArgs {
    /// Data directory (SPEC §12 layout).
    #[arg(long)]
    data: PathBuf,
    /// Model: dien, dien-noaux, din, base.
    #[arg(long, default_value = "dien")]
    model: ModelKind,
    /// Checkpoint to write; the vocabularies, optimiser state and best model
    /// go beside it.
    #[arg(long)]
    out: PathBuf,
    /// Epochs (the learning rate halves after each).
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    /// Seed.
    #[arg(long, default_value_t = 2018)]
    seed: u64,
    /// Compute threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    arch: ArchArgs,
    /// Batch size.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Longest kept history.
    #[arg(long, default_value_t = 100)]
    max_len: usize,
    /// Optimiser: adam or sgd.
    #[arg(long, default_value = "adam")]
    optimizer: OptimKind,
    /// Learning rate.
    #[arg(long, default_value_t = 0.001)]
    lr: f32,
    /// Move every embedding row every step (TensorFlow Adam) instead of lazily.
    #[arg(long)]
    dense_embedding_updates: bool,
    /// Clip the global gradient norm to this value.
    #[arg(long)]
    clip_norm: Option<f32>,
    /// Evaluate every N iterations (and at the end).
    #[arg(long)]
    eval_every: Option<u64>,
    /// Save a checkpoint every N iterations (and at the end).
    #[arg(long)]
    save_every: Option<u64>,
    /// Keep the moving-average BatchNorm/Dice statistics instead of
    /// recalibrating them before each evaluation.
    #[arg(long)]
    no_recalibrate: bool,
    /// Training samples used for recalibration.
    #[arg(long, default_value_t = 20_000)]
    recal_samples: usize,
    /// Skip malformed lines (counted and reported) instead of failing.
    #[arg(long)]
    skip_bad_lines: bool,
    /// Stop after N iterations.
    #[arg(long)]
    max_steps: Option<u64>,
    /// Continue from the checkpoint at --out.
    #[arg(long)]
    resume: bool,
    /// Metrics log (JSON lines); default: beside the checkpoint.
    #[arg(long)]
    metrics_log: Option<PathBuf>,
    /// Plot of the curves (SVG); default: beside the checkpoint.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct EvalArgs {
    /// Checkpoint (with its vocabulary sidecar).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Data directory (its test file is scored).
    #[arg(long)]
    data: PathBuf,
    /// Batch size.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Compute threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Skip malformed lines instead of failing.
    #[arg(long)]
    skip_bad_lines: bool,
}

#[derive(Args)]
struct PredictArgs {
    /// Checkpoint (with its vocabulary sidecar).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Data file in the reference line format.
    #[arg(long)]
    data: PathBuf,
    /// Output file: one probability per input line.
    #[arg(long)]
    out: PathBuf,
    /// Batch size.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Compute threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Args)]
struct GradcheckArgs {
    /// Model: dien, dien-noaux, din, base.
    #[arg(long, default_value = "dien")]
    model: ModelKind,
    /// Interest-evolving variant: augru, augru-ref, agru, aigru, gru_att.
    #[arg(long, default_value = "augru")]
    variant: Variant,
    /// Attention form: mlp or bilinear.
    #[arg(long, default_value = "mlp")]
    att: AttForm,
    /// Auxiliary head: mlp or dot (dot needs H = 2d).
    #[arg(long, default_value = "mlp")]
    aux: AuxForm,
    /// Embedding width d (tiny by default: every entry is probed four times).
    #[arg(long, default_value_t = 2)]
    dim: usize,
    /// GRU hidden width H.
    #[arg(long, default_value_t = 4)]
    hidden: usize,
    /// Seed of the parameters and the batch.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Finite-difference step (fourth-order central differences).
    #[arg(long, default_value_t = dien_model::gradcheck::DEFAULT_EPS)]
    eps: f64,
    /// Relative tolerance (entries below the absolute floor are judged by
    /// tol × floor).
    #[arg(long, default_value_t = 1e-6)]
    tol: f64,
    /// Check at most this many entries per tensor (largest gradients plus a
    /// seeded sample); 0 checks every entry.
    #[arg(long, default_value_t = 400)]
    max_entries: usize,
}

#[derive(Args)]
struct GradsArgs {
    /// Checkpoint.
    #[arg(long)]
    checkpoint: PathBuf,
    /// JSON batch file (SPEC §14).
    #[arg(long)]
    batch: PathBuf,
    /// Output safetensors file.
    #[arg(long)]
    out: PathBuf,
    /// Evaluation mode: forward only, running statistics.
    #[arg(long)]
    eval: bool,
    /// Use the double-precision reference path.
    #[arg(long)]
    f64: bool,
}

#[derive(Args)]
struct BenchArgs {
    /// Model: dien, dien-noaux, din, base.
    #[arg(long, default_value = "dien")]
    model: ModelKind,
    /// train (forward + backward + optimiser step), infer (forward, evaluation
    /// mode) or score (the request path: one user, --candidates items).
    #[arg(long, default_value = "train")]
    mode: String,
    /// Candidates per request (score mode).
    #[arg(long, default_value_t = 100)]
    candidates: usize,
    /// Batch size.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// History length of every sample.
    #[arg(long, default_value_t = 100)]
    seqlen: usize,
    /// Compute threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Timed steps (after warm-up).
    #[arg(long, default_value_t = 20)]
    steps: usize,
    #[command(flatten)]
    arch: ArchArgs,
}

fn model_config(kind: ModelKind, a: &ArchArgs, n_uid: usize, n_mid: usize, n_cat: usize) -> Result<ModelConfig> {
    let mut c = ModelConfig::new(kind, n_uid, n_mid, n_cat);
    c.variant = a.variant;
    c.att = a.att;
    c.aux = a.aux;
    c.d = a.dim;
    c.hidden = a.hidden;
    c.alpha_aux = if kind == ModelKind::DienNoaux { 0.0 } else { a.alpha_aux };
    c.validate()?;
    Ok(c)
}

fn pool(threads: Option<usize>) -> Result<rayon::ThreadPool> {
    Ok(rayon::ThreadPoolBuilder::new().num_threads(threads.unwrap_or(0)).build()?)
}

fn metrics_json(m: &dien_trainer::metrics::EvalMetrics) -> serde_json::Value {
    json!({"auc": m.auc, "gauc": m.gauc, "logloss": m.logloss, "accuracy": m.accuracy, "samples": m.samples})
}

fn print_event(e: Event<'_>) {
    match e {
        Event::Record(r) if r.kind == "eval" => {
            if let Some(t) = &r.test {
                eprintln!(
                    "step {:>6}  epoch {}  test auc {:.4}  gauc {:.4}  logloss {:.4}  ({:.0} samples/s)",
                    r.step,
                    r.epoch,
                    t.auc.unwrap_or(f64::NAN),
                    t.gauc.unwrap_or(f64::NAN),
                    t.logloss.unwrap_or(f64::NAN),
                    r.samples_per_s
                );
            }
        }
        Event::Info(s) => eprintln!("{s}"),
        _ => {}
    }
}

fn cmd_train(a: &TrainArgs) -> Result<()> {
    let mut cfg = TrainConfig::new(&a.data, &a.out, a.model);
    cfg.variant = a.arch.variant;
    cfg.att = a.arch.att;
    cfg.aux = a.arch.aux;
    cfg.d = a.arch.dim;
    cfg.hidden = a.arch.hidden;
    cfg.alpha_aux = a.arch.alpha_aux;
    cfg.max_len = a.max_len;
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
    let s = train(&cfg, &mut print_event)?;
    let mut out = metrics_json(&s.last);
    out["model"] = json!(s.model);
    out["steps"] = json!(s.steps);
    out["train_samples"] = json!(s.samples);
    out["best_auc"] = json!(s.best_auc);
    out["seconds"] = json!(s.seconds);
    out["checkpoint"] = json!(a.out.display().to_string());
    println!("{out}");
    Ok(())
}

fn cmd_eval(a: &EvalArgs) -> Result<()> {
    let (mut model, vocabs) = load_checkpoint(&a.checkpoint)?;
    let data = Arc::new(DataSet { vocabs, sampler: None });
    let m = pool(a.threads)?
        .install(|| evaluate(&mut model, &data, &DataSet::test_file(&a.data), a.batch, a.skip_bad_lines))?;
    println!("{}", metrics_json(&m));
    Ok(())
}

fn cmd_predict(a: &PredictArgs) -> Result<()> {
    let (mut model, vocabs) = load_checkpoint(&a.checkpoint)?;
    let c = model.config().clone();
    let data = Arc::new(DataSet { vocabs, sampler: None });
    let bcfg = BatcherConfig {
        batch_size: a.batch,
        max_len: c.max_len,
        negatives: false,
        sort_by_length: false,
        tables: Some(TableSizes { uid: c.n_uid, mid: c.n_mid, cat: c.n_cat }),
        ..BatcherConfig::default()
    };
    let mut scored: Vec<(u64, f32)> = Vec::new();
    pool(a.threads)?.install(|| -> Result<()> {
        for lb in Batcher::open(&a.data, data.clone(), bcfg, 0)?.spawn(4) {
            let lb = lb?;
            model.forward(&lb.batch, Mode::Eval)?;
            for (&line, &z) in lb.lines.iter().zip(model.logits()) {
                scored.push((line, 1.0 / (1.0 + (-z).exp())));
            }
        }
        Ok(())
    })?;
    scored.sort_by_key(|&(l, _)| l);
    let f = fs::File::create(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let mut w = BufWriter::new(f);
    for (_, p) in &scored {
        writeln!(w, "{p}")?;
    }
    w.flush()?;
    eprintln!("wrote {} probabilities to {}", scored.len(), a.out.display());
    println!("{}", json!({"samples": scored.len(), "out": a.out.display().to_string()}));
    Ok(())
}

fn cmd_gradcheck(a: &GradcheckArgs) -> Result<()> {
    let arch = ArchArgs { variant: a.variant, att: a.att, aux: a.aux, dim: a.dim, hidden: a.hidden, alpha_aux: 1.0 };
    let cfg = model_config(a.model, &arch, 6, 10, 5)?;
    let p = dien_model::gradcheck::probe_params(&cfg, a.seed);
    let batch = dien_model::gradcheck::probe_batch(&cfg, a.seed + 1);
    println!(
        "gradient check: model {} variant {} att {} aux {} (d = {}, H = {}, B = {}, T = {}, lengths {:?}), training mode",
        cfg.model, cfg.variant, cfg.att, cfg.aux, cfg.d, cfg.hidden, batch.batch, batch.steps, batch.lengths
    );
    let rep = if a.max_entries == 0 {
        dien_model::gradcheck::check_model(&cfg, &p, &batch, a.eps)?
    } else {
        dien_model::gradcheck::check_model_sampled(&cfg, &p, &batch, a.eps, a.max_entries, a.seed)?
    };
    println!("{rep}");
    let ok = rep.passes(a.tol);
    println!(
        "{}",
        json!({"model": cfg.model.to_string(), "passed": ok, "max_rel": rep.report.max_rel(), "tol": a.tol})
    );
    if !ok {
        bail!("gradient check failed for {:?}", rep.failures(a.tol).iter().map(|t| &t.name).collect::<Vec<_>>());
    }
    Ok(())
}

fn cmd_grads(a: &GradsArgs) -> Result<()> {
    let (cfg, params) = checkpoint::load(&a.checkpoint)?;
    let batch = Batch::from_json_file(&a.batch)?;
    let mode = if a.eval { Mode::Eval } else { Mode::Train };
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let (logits, loss, lt, la): (Vec<f32>, f64, f64, f64);
    if a.f64 {
        let p64 = params.map(|x| x as f64);
        if a.eval {
            let o = reference::forward(&cfg, &p64, &batch, mode)?;
            (logits, loss, lt, la) = (o.logits.iter().map(|&x| x as f32).collect(), o.loss, o.loss_target, o.loss_aux);
        } else {
            let (o, g) = reference::forward_backward(&cfg, &p64, &batch)?;
            (logits, loss, lt, la) = (o.logits.iter().map(|&x| x as f32).collect(), o.loss, o.loss_target, o.loss_aux);
            for (spec, v) in g.iter() {
                if spec.kind == dien_model::TensorKind::Param {
                    tensors.push((
                        format!("grad.{}", spec.name),
                        spec.shape.clone(),
                        v.iter().map(|&x| x as f32).collect(),
                    ));
                }
            }
        }
    } else {
        let mut model = Model::new(cfg.clone(), params)?;
        let l = if a.eval { model.forward(&batch, mode)? } else { model.forward_backward(&batch)? };
        (logits, loss, lt, la) = (model.logits().to_vec(), l.loss, l.loss_target, l.loss_aux);
        if !a.eval {
            let g = model.gradients().to_dense_store(&cfg);
            for (spec, v) in g.iter() {
                if spec.kind == dien_model::TensorKind::Param {
                    tensors.push((format!("grad.{}", spec.name), spec.shape.clone(), v.to_vec()));
                }
            }
        }
    }
    tensors.push(("logits".into(), vec![logits.len()], logits));
    tensors.push(("loss".into(), vec![1], vec![loss as f32]));
    tensors.push(("loss_target".into(), vec![1], vec![lt as f32]));
    tensors.push(("loss_aux".into(), vec![1], vec![la as f32]));
    let refs: Vec<(&str, &[usize], &[f32])> =
        tensors.iter().map(|(n, s, v)| (n.as_str(), s.as_slice(), v.as_slice())).collect();
    let mut meta = cfg.metadata();
    meta.insert("mode".into(), if a.eval { "eval" } else { "train" }.into());
    meta.insert("precision".into(), if a.f64 { "f64" } else { "f32" }.into());
    checkpoint::save_tensors(&a.out, &refs, &meta)?;
    println!(
        "{}",
        json!({"out": a.out.display().to_string(), "loss": loss, "loss_target": lt, "loss_aux": la, "batch": batch.batch})
    );
    Ok(())
}

fn cmd_bench(a: &BenchArgs) -> Result<()> {
    let train_mode = match a.mode.as_str() {
        "train" => true,
        "infer" => false,
        "score" => return cmd_bench_score(a),
        other => bail!("--mode must be train, infer or score, not `{other}`"),
    };
    if a.batch == 0 || a.steps == 0 {
        bail!("--batch and --steps must be at least 1");
    }
    let mut cfg = model_config(a.model, &a.arch, 1000, 50_000, 800)?;
    cfg.max_len = a.seqlen.max(1);
    let batch = synthetic_batch(&cfg, a.batch, a.seqlen, 1);
    let pool = pool(Some(a.threads))?;
    let mut model = Model::init(cfg.clone(), 1)?;
    let mut opt = Optimizer::new(OptimConfig::default(), model.params())?;
    let mut step = || -> Result<()> {
        if train_mode {
            model.forward_backward(&batch)?;
            let (p, g) = model.params_and_gradients();
            opt.step(p, g)?;
            model.update_running_stats();
        } else {
            model.forward(&batch, Mode::Eval)?;
        }
        Ok(())
    };
    let times = pool.install(|| -> Result<Vec<f64>> {
        for _ in 0..3 {
            step()?;
        }
        let mut t = Vec::with_capacity(a.steps);
        for _ in 0..a.steps {
            let s = Instant::now();
            step()?;
            t.push(s.elapsed().as_secs_f64());
        }
        Ok(t)
    })?;
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let med = sorted[sorted.len() / 2];
    let sps = a.batch as f64 / med;
    let yard = dien_engine::gemm::sgemm_yardstick_gflops(1024, 3);
    let gflops = flops_per_sample(&cfg, a.seqlen, train_mode) * sps / 1e9;
    eprintln!(
        "{} {} B={} T={} threads={}: median {:.2} ms/step, {:.0} samples/s, {:.1} GFLOP/s ({:.1}% of {} x {:.1} GFLOP/s single-thread SGEMM) [{}]",
        a.model,
        a.mode,
        a.batch,
        a.seqlen,
        a.threads,
        med * 1e3,
        sps,
        gflops,
        100.0 * gflops / (yard * a.threads as f64),
        a.threads,
        yard,
        dien_engine::simd_target()
    );
    println!(
        "{}",
        json!({"impl": "dien-rs", "mode": a.mode, "model": a.model.to_string(), "batch": a.batch, "T": a.seqlen,
               "threads": a.threads, "samples_per_s": sps, "ms_per_step": med * 1e3, "gflops": gflops,
               "sgemm_gflops_1thread": yard})
    );
    Ok(())
}

/// `dien bench --mode score`: times the request path (`serve::Predictor`)
/// for one user with a history of `--seqlen` behaviours and `--candidates`
/// items, each of `--threads` threads scoring on its own scratch. Prints the
/// SPEC §14 line (`batch` = candidates per request, `samples_per_s` =
/// candidates scored per second over all threads, `ms_per_step` = median
/// request latency) with `p50_us` and `p99_us` added.
fn cmd_bench_score(a: &BenchArgs) -> Result<()> {
    use dien_model::serve::{Items, Predictor, Scratch};
    if a.candidates == 0 || a.steps == 0 || a.threads == 0 {
        bail!("--candidates, --steps and --threads must be at least 1");
    }
    let mut cfg = model_config(a.model, &a.arch, 1000, 50_000, 800)?;
    cfg.max_len = a.seqlen.max(1);
    let pred = Predictor::new(cfg.clone(), dien_model::ParamStore::init(&cfg, 1))?;
    // One user's history (sample 0) and the targets of K samples as candidates.
    let b = synthetic_batch(&cfg, a.candidates, a.seqlen, 1);
    let (uid, t) = (b.uid[0], a.seqlen);
    let hist = Items::new(&b.hist_mid[..t], &b.hist_cat[..t]);
    let cands = Items::new(&b.mid, &b.cat);
    let min_time = std::time::Duration::from_secs(1);
    let mut times: Vec<f64> = std::thread::scope(|s| -> Result<Vec<f64>> {
        let workers: Vec<_> = (0..a.threads)
            .map(|_| {
                s.spawn(|| -> Result<Vec<f64>> {
                    let mut sc = Scratch::new();
                    for _ in 0..3 {
                        pred.score(&mut sc, uid, hist, cands)?;
                    }
                    let (mut v, t0) = (Vec::with_capacity(a.steps), Instant::now());
                    while v.len() < a.steps || t0.elapsed() < min_time {
                        let s = Instant::now();
                        std::hint::black_box(pred.score(&mut sc, uid, hist, cands)?);
                        v.push(s.elapsed().as_secs_f64());
                    }
                    Ok(v)
                })
            })
            .collect();
        let mut all = Vec::new();
        for w in workers {
            all.extend(w.join().map_err(|_| anyhow::anyhow!("a scoring thread panicked"))??);
        }
        Ok(all)
    })?;
    times.sort_by(f64::total_cmp);
    let pct = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    let (p50, p99) = (pct(0.5), pct(0.99));
    // Throughput of the timed requests (warm-up excluded): the threads run
    // side by side, so their busy time divided by their number is the span.
    let span = times.iter().sum::<f64>() / a.threads as f64;
    let cps = (times.len() * a.candidates) as f64 / span;
    eprintln!(
        "{} score K={} T={} threads={}: p50 {:.1} µs, p99 {:.1} µs, {:.0} candidates/s over {} requests [{}]",
        a.model,
        a.candidates,
        a.seqlen,
        a.threads,
        p50 * 1e6,
        p99 * 1e6,
        cps,
        times.len(),
        dien_engine::simd_target()
    );
    println!(
        "{}",
        json!({"impl": "dien-rs", "mode": "score", "model": a.model.to_string(), "batch": a.candidates,
               "T": a.seqlen, "threads": a.threads, "samples_per_s": cps, "ms_per_step": p50 * 1e3,
               "p50_us": p50 * 1e6, "p99_us": p99 * 1e6, "candidates": a.candidates})
    );
    Ok(())
}

fn cmd_generate(a: &GenerateArgs) -> Result<()> {
    let mut g = GenerateConfig { seed: a.seed, ..GenerateConfig::default() };
    if let Some(v) = a.users {
        g.users = v;
    }
    if let Some(v) = a.items {
        g.items = v;
    }
    if let Some(v) = a.categories {
        g.categories = v;
    }
    if let Some(v) = a.min_len {
        g.min_len = v;
    }
    if let Some(v) = a.max_len {
        g.max_len = v;
    }
    let s = generate(&a.out, &g)?;
    eprintln!("wrote {}", a.out.display());
    println!("{}", serde_json::to_string(&s)?);
    Ok(())
}

fn cmd_demo(a: &DemoArgs) -> Result<()> {
    let dir = match &a.out {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("dien-demo-{}", std::process::id())),
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
        eprintln!("{model}: test auc {:.4} in {:.1} s", s.last.auc.unwrap_or(f64::NAN), s.seconds);
        results.push(s);
    }
    let plot = dir.join("demo.svg");
    let runs: Vec<(String, &[dien_trainer::train::LogRecord])> =
        results.iter().map(|s| (s.model.clone(), s.history.as_slice())).collect();
    dien_trainer::plot::write_curves(&plot, &runs)?;
    println!();
    println!(
        "{:<6} {:>8} {:>8} {:>9} {:>9} {:>8} {:>9}",
        "model", "AUC", "GAUC", "logloss", "accuracy", "seconds", "samples/s"
    );
    for s in &results {
        let m = &s.last;
        println!(
            "{:<6} {:>8.4} {:>8.4} {:>9.4} {:>9.4} {:>8.1} {:>9.0}",
            s.model,
            m.auc.unwrap_or(f64::NAN),
            m.gauc.unwrap_or(f64::NAN),
            m.logloss.unwrap_or(f64::NAN),
            m.accuracy.unwrap_or(f64::NAN),
            s.seconds,
            s.samples as f64 / s.seconds
        );
    }
    let total = start.elapsed().as_secs_f64();
    println!("\ntotal {total:.0} s   plot: {}   checkpoints and logs: {}", plot.display(), dir.display());
    let table: Vec<_> = results
        .iter()
        .map(|s| json!({"model": s.model, "auc": s.last.auc, "gauc": s.last.gauc, "logloss": s.last.logloss, "accuracy": s.last.accuracy, "seconds": s.seconds}))
        .collect();
    println!("{}", json!({"demo": table, "seconds": total, "dir": dir.display().to_string()}));
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    match &cli.cmd {
        Cmd::Demo(a) => cmd_demo(a),
        Cmd::Generate(a) => cmd_generate(a),
        Cmd::Train(a) => cmd_train(a),
        Cmd::Eval(a) => cmd_eval(a),
        Cmd::Predict(a) => cmd_predict(a),
        Cmd::Gradcheck(a) => cmd_gradcheck(a),
        Cmd::Grads(a) => cmd_grads(a),
        Cmd::Bench(a) => cmd_bench(a),
    }
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        // Sources already quoted by their wrapper's message are not repeated.
        let mut msg = e.to_string();
        for cause in e.chain().skip(1) {
            let c = cause.to_string();
            if !msg.contains(&c) {
                msg = format!("{msg}: {c}");
            }
        }
        eprintln!("error: {msg}");
        std::process::exit(1);
    }
}
