//! The accuracy and speed of the request path in bf16 against `f32`
//! (`Predictor::with_precision`), on a checkpoint and a data file.
//!
//! ```sh
//! cargo run --release --example precision -- m.safetensors DATA [ROUNDS [REQUESTS]]
//! ```
//!
//! 1. Every sample of the data file (or of a data directory's test file)
//!    is scored through the request path in both precisions
//!    (`dien_trainer::predict::predict_file_requests`, one thread),
//!    alternately for `ROUNDS` rounds (default 3, the order swapped every
//!    round): the largest and mean |logit difference|, the largest
//!    |probability difference|, AUC and logloss of each precision, and the
//!    median seconds of each.
//! 2. `REQUESTS` (default 200) requests of the checkpoint's longest
//!    history (`max_len`) and 100 candidates, drawn from the (item,
//!    category) pairs of the file: the largest and mean |logit difference|
//!    and how often the two precisions rank the candidates differently
//!    (top candidate, pairs in the other order).
//!
//! Prints one JSON line. On a CPU without AVX512_BF16 it stops with the
//! predictor's error. `tests/examples.rs` runs [`run`] on a tiny model.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Instant;

use dien_model::serve::{Items, Precision, Predictor, Scratch};
use dien_trainer::data::DataSet;
use dien_trainer::data::line::{split_fields_with, strip_line_end};
use dien_trainer::metrics::{auc, logloss_from_logits};
use dien_trainer::predict::{RequestScores, predict_file_requests};
use dien_trainer::train::load_checkpoint;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The comparison of the two precisions on one file.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// Samples scored.
    pub samples: usize,
    /// Requests they formed.
    pub requests: usize,
    /// Largest |bf16 − f32| logit over the samples.
    pub max_abs_logit: f64,
    /// Mean |bf16 − f32| logit.
    pub mean_abs_logit: f64,
    /// Largest |bf16 − f32| probability.
    pub max_abs_prob: f64,
    /// AUC in `f32` and in bf16.
    pub auc: [f64; 2],
    /// Logloss in `f32` and in bf16.
    pub logloss: [f64; 2],
    /// Median seconds to score the file in `f32` and in bf16 (one thread).
    pub seconds: [f64; 2],
    /// Long requests scored (`max_len` history, 100 candidates).
    pub long_requests: usize,
    /// Largest |bf16 − f32| logit over their candidates.
    pub long_max_abs_logit: f64,
    /// Mean |bf16 − f32| logit over their candidates.
    pub long_mean_abs_logit: f64,
    /// Fraction of long requests whose top candidate differs.
    pub long_top1_changed: f64,
    /// Fraction of candidate pairs ordered differently.
    pub long_pairs_swapped: f64,
}

/// Compares the precisions on `checkpoint` and `data` (a data file or
/// directory) over `rounds` alternating rounds and `long` long requests.
pub fn run(checkpoint: &Path, data: &Path, rounds: usize, long: usize) -> Result<Report, Box<dyn Error>> {
    let (model, vocabs) = load_checkpoint(checkpoint).map_err(|e| format!("{}: {e}", checkpoint.display()))?;
    let f32p = Predictor::from_model(&model)?;
    let bf16p = f32p.clone().with_precision(Precision::Bf16)?;
    let file = if data.is_dir() { DataSet::test_file(data) } else { data.to_path_buf() };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let mut times = [Vec::new(), Vec::new()];
    let mut scores: [RequestScores; 2] = Default::default();
    for round in 0..rounds.max(1) {
        // The order swaps every round, so neither precision always runs first.
        for i in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
            let p = [&f32p, &bf16p][i];
            let t = Instant::now();
            scores[i] = pool.install(|| predict_file_requests(p, vocabs.clone(), &file, 256))?;
            times[i].push(t.elapsed().as_secs_f64());
        }
    }
    let [f, b] = &scores;
    let n = f.logits.len();
    let diffs: Vec<f64> = f.logits.iter().zip(&b.logits).map(|(&x, &y)| (x as f64 - y as f64).abs()).collect();
    let sigmoid = |z: f32| 1.0 / (1.0 + (-(z as f64)).exp());
    let max_abs_prob =
        f.logits.iter().zip(&b.logits).map(|(&x, &y)| (sigmoid(x) - sigmoid(y)).abs()).fold(0.0, f64::max);
    let metric = |v: Option<f64>| v.unwrap_or(f64::NAN);
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };

    // Long requests over the file's (item, category) pairs.
    let text = std::fs::read(&file)?;
    let mut pairs: Vec<(u32, u32)> = Vec::new();
    for line in text.split(|&c| c == b'\n').map(strip_line_end).filter(|l| !l.is_empty()) {
        let f = split_fields_with(line, true).map_err(|e| format!("{}: {}: {}", file.display(), e.field, e.msg))?;
        pairs.push((vocabs.mid(f.mid), vocabs.cat(f.cat)));
        pairs.extend(f.mid_tokens().zip(f.cat_tokens()).map(|(m, c)| (vocabs.mid(m), vocabs.cat(c))));
    }
    let (t, k) = (f32p.config().max_len, 100);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut draw = |len: usize| -> (Vec<u32>, Vec<u32>) {
        (0..len).map(|_| pairs[rng.random_range(0..pairs.len().max(1))]).unzip()
    };
    let mut sc = Scratch::new();
    let (mut zf, mut zb) = (vec![0.0f32; k], vec![0.0f32; k]);
    let (mut max_l, mut sum_l, mut top1, mut swapped) = (0.0f64, 0.0f64, 0usize, 0usize);
    let long = if pairs.is_empty() { 0 } else { long };
    for r in 0..long {
        let ((hm, hc), (cm, cc)) = (draw(t), draw(k));
        let uid = (r % f32p.config().n_uid) as u32;
        f32p.logits_into(&mut sc, uid, Items::new(&hm, &hc), Items::new(&cm, &cc), &mut zf)?;
        bf16p.logits_into(&mut sc, uid, Items::new(&hm, &hc), Items::new(&cm, &cc), &mut zb)?;
        for (&x, &y) in zf.iter().zip(&zb) {
            let d = (x as f64 - y as f64).abs();
            (max_l, sum_l) = (max_l.max(d), sum_l + d);
        }
        let best = |z: &[f32]| (0..k).max_by(|&i, &j| z[i].total_cmp(&z[j])).unwrap_or(0);
        top1 += usize::from(best(&zf) != best(&zb));
        for i in 0..k {
            for j in i + 1..k {
                swapped += usize::from((zf[i] < zf[j]) != (zb[i] < zb[j]));
            }
        }
    }
    let long_n = long.max(1) as f64;
    Ok(Report {
        samples: n,
        requests: f.requests,
        max_abs_logit: diffs.iter().copied().fold(0.0, f64::max),
        mean_abs_logit: diffs.iter().sum::<f64>() / n.max(1) as f64,
        max_abs_prob,
        auc: [metric(auc(&f.logits, &f.labels)), metric(auc(&b.logits, &b.labels))],
        logloss: [metric(logloss_from_logits(&f.logits, &f.labels)), metric(logloss_from_logits(&b.logits, &b.labels))],
        seconds: [median(&mut times[0]), median(&mut times[1])],
        long_requests: long,
        long_max_abs_logit: max_l,
        long_mean_abs_logit: sum_l / (long_n * k as f64),
        long_top1_changed: top1 as f64 / long_n,
        long_pairs_swapped: swapped as f64 / (long_n * (k * (k - 1) / 2) as f64),
    })
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !(2..=4).contains(&args.len()) {
        return Err("usage: precision CHECKPOINT DATA_FILE_OR_DIR [ROUNDS [REQUESTS]]".into());
    }
    let num = |i: usize, d: usize| args.get(i).map_or(Ok(d), |s| s.parse::<usize>());
    let r = run(&PathBuf::from(&args[0]), &PathBuf::from(&args[1]), num(2, 3)?, num(3, 200)?)?;
    println!(
        "{{\"samples\":{},\"requests\":{},\"max_abs_logit\":{:.6},\"mean_abs_logit\":{:.6},\"max_abs_prob\":{:.6},\
         \"auc_f32\":{:.6},\"auc_bf16\":{:.6},\"auc_change\":{:.6},\"logloss_f32\":{:.6},\"logloss_bf16\":{:.6},\
         \"seconds_f32\":{:.4},\"seconds_bf16\":{:.4},\"long_requests\":{},\"long_max_abs_logit\":{:.6},\
         \"long_mean_abs_logit\":{:.6},\"long_top1_changed\":{:.4},\"long_pairs_swapped\":{:.6}}}",
        r.samples,
        r.requests,
        r.max_abs_logit,
        r.mean_abs_logit,
        r.max_abs_prob,
        r.auc[0],
        r.auc[1],
        r.auc[1] - r.auc[0],
        r.logloss[0],
        r.logloss[1],
        r.seconds[0],
        r.seconds[1],
        r.long_requests,
        r.long_max_abs_logit,
        r.long_mean_abs_logit,
        r.long_top1_changed,
        r.long_pairs_swapped
    );
    Ok(())
}
