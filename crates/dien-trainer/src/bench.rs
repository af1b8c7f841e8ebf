//! Timing the engine on generated inputs: whole training or inference
//! steps of a batch, and scoring requests on the request path.

use std::time::{Duration, Instant};

use dien_model::cost::synthetic_batch;
use dien_model::fast::{Model, Stage};
use dien_model::serve::{Items, Precision, Predictor, Scratch};
use dien_model::{Mode, ModelConfig, ParamStore};

use crate::error::TrainError;
use crate::optim::{OptimConfig, Optimizer};

/// What [`time_steps`] measured.
#[derive(Clone, Debug)]
pub struct StepTimes {
    /// Seconds of each timed step.
    pub steps: Vec<f64>,
    /// With stage timing: total seconds per model stage over the timed
    /// steps, then the optimiser's (training only), in
    /// [`Stage::ALL`](dien_model::fast::Stage::ALL) order followed by
    /// `("optimizer", secs)`.
    pub stages: Option<Vec<(&'static str, f64)>>,
}

/// Times `steps` steps of `cfg` (after three warm-up steps) on one
/// generated batch of `batch` samples with histories of `seqlen`, on a pool
/// of `threads` threads: forward, backward, optimiser step and running
/// statistics when `train`, else a forward pass in evaluation mode on the
/// batch without negatives (as evaluation and prediction run it). With
/// `stages`, also where the time of the timed steps went.
pub fn time_steps(
    cfg: &ModelConfig,
    batch: usize,
    seqlen: usize,
    threads: usize,
    steps: usize,
    train: bool,
    stages: bool,
) -> Result<StepTimes, TrainError> {
    let mut b = synthetic_batch(cfg, batch, seqlen, 1);
    if !train {
        // Inference (evaluation, prediction) has no negatives: the
        // auxiliary head is a training loss only.
        (b.neg_mid, b.neg_cat) = (None, None);
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| TrainError::Config(format!("thread pool: {e}")))?;
    let mut model = Model::init(cfg.clone(), 1)?;
    let mut opt = Optimizer::new(OptimConfig::default(), model.params())?;
    // One step; returns the optimiser's seconds.
    let step = |model: &mut Model, opt: &mut Optimizer| -> Result<f64, TrainError> {
        if !train {
            model.forward(&b, Mode::Eval)?;
            return Ok(0.0);
        }
        model.forward_backward(&b)?;
        let t0 = Instant::now();
        let (p, g) = model.params_and_gradients();
        opt.step(p, g)?;
        model.update_running_stats();
        Ok(t0.elapsed().as_secs_f64())
    };
    pool.install(|| {
        for _ in 0..3 {
            step(&mut model, &mut opt)?;
        }
        // Only the timed steps count.
        model.time_stages(stages);
        let (mut t, mut opt_secs) = (Vec::with_capacity(steps), 0.0);
        for _ in 0..steps {
            let s = Instant::now();
            opt_secs += step(&mut model, &mut opt)?;
            t.push(s.elapsed().as_secs_f64());
        }
        let stages = model.stage_times().map(|st| {
            let mut v: Vec<_> = Stage::ALL.iter().map(|&s| (s.name(), st.secs(s))).collect();
            if train {
                v.push(("optimizer", opt_secs));
            }
            v
        });
        Ok(StepTimes { steps: t, stages })
    })
}

/// Times the request path ([`Predictor`], in `precision`) of `cfg` for one
/// user with a history of `seqlen` behaviours and `candidates` items: each
/// of `threads`
/// threads scores on its own [`Scratch`], three warm-up requests and then
/// at least `steps` timed ones for at least a second. Returns the seconds
/// of every timed request of every thread.
pub fn time_requests(
    cfg: &ModelConfig,
    candidates: usize,
    seqlen: usize,
    threads: usize,
    steps: usize,
    precision: Precision,
) -> Result<Vec<f64>, TrainError> {
    let pred = Predictor::new(cfg.clone(), ParamStore::init(cfg, 1))?.with_precision(precision)?;
    // One user's history (sample 0) and the targets of K samples as candidates.
    let b = synthetic_batch(cfg, candidates, seqlen, 1);
    let (uid, t) = (b.uid[0], seqlen);
    let hist = Items::new(&b.hist_mid[..t], &b.hist_cat[..t]);
    let cands = Items::new(&b.mid, &b.cat);
    let min_time = Duration::from_secs(1);
    std::thread::scope(|s| -> Result<Vec<f64>, TrainError> {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<Vec<f64>, TrainError> {
                    let mut sc = Scratch::new();
                    for _ in 0..3 {
                        pred.score(&mut sc, uid, hist, cands)?;
                    }
                    let (mut v, t0) = (Vec::with_capacity(steps), Instant::now());
                    while v.len() < steps || t0.elapsed() < min_time {
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
            all.extend(w.join().map_err(|_| TrainError::Loader("a scoring thread panicked".into()))??);
        }
        Ok(all)
    })
}
