//! Request-path benchmarks on one thread: one user with a history of
//! T = 100 behaviours and K ∈ {1, 10, 100, 1000} candidates (DIEN, default
//! widths).
//!
//! - `shared`: `serve::Predictor::score` — the interest extractor and the
//!   history embedding run once per request, attention and the evolving
//!   GRU run for the K candidates as a batch; on the calling thread.
//! - `naive`: `fast::Model::forward` (evaluation mode) on a batch that
//!   repeats the user's history K times, in a one-thread rayon pool.
//!
//! Criterion reports the mean time per request and candidates/s; the
//! summary printed afterwards times single requests and gives p50 and p99
//! latency, candidates/s and the speed-up of the shared path.

use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use dien_model::fast::Model;
use dien_model::serve::{Items, Predictor, Scratch};
use dien_model::{Batch, Mode, ModelConfig, ModelKind, ParamStore};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const T: usize = 100;
const KS: [usize; 4] = [1, 10, 100, 1000];

struct Request {
    uid: u32,
    hist_mid: Vec<u32>,
    hist_cat: Vec<u32>,
    cand_mid: Vec<u32>,
    cand_cat: Vec<u32>,
}

fn config() -> ModelConfig {
    ModelConfig::new(ModelKind::Dien, 1000, 50_000, 800)
}

fn request(cfg: &ModelConfig, k: usize) -> Request {
    let mut rng = ChaCha8Rng::seed_from_u64(k as u64);
    let (nm, nc) = (cfg.n_mid as u32, cfg.n_cat as u32);
    Request {
        uid: rng.random_range(0..cfg.n_uid as u32),
        hist_mid: (0..T).map(|_| rng.random_range(0..nm)).collect(),
        hist_cat: (0..T).map(|_| rng.random_range(0..nc)).collect(),
        cand_mid: (0..k).map(|_| rng.random_range(0..nm)).collect(),
        cand_cat: (0..k).map(|_| rng.random_range(0..nc)).collect(),
    }
}

/// The naive equivalent: K samples sharing the user and the history.
fn naive_batch(r: &Request) -> Batch {
    let k = r.cand_mid.len();
    Batch::from_samples(
        vec![r.uid; k],
        r.cand_mid.clone(),
        r.cand_cat.clone(),
        &vec![r.hist_mid.clone(); k],
        &vec![r.hist_cat.clone(); k],
        None,
        None,
        vec![0.0; k],
    )
    .unwrap()
}

struct Setup {
    pred: Predictor,
    model: Model,
    pool: rayon::ThreadPool,
}

fn setup() -> Setup {
    let cfg = config();
    let params = ParamStore::init(&cfg, 1);
    Setup {
        pred: Predictor::new(cfg.clone(), params.clone()).unwrap(),
        model: Model::new(cfg, params).unwrap(),
        pool: rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap(),
    }
}

fn bench(c: &mut Criterion) {
    let Setup { pred, mut model, pool } = setup();
    let cfg = config();
    let mut sc = Scratch::new();
    let mut g = c.benchmark_group("score");
    g.sample_size(10);
    for k in KS {
        let r = request(&cfg, k);
        let (hist, cands) = (Items::new(&r.hist_mid, &r.hist_cat), Items::new(&r.cand_mid, &r.cand_cat));
        let batch = naive_batch(&r);
        g.throughput(Throughput::Elements(k as u64));
        g.bench_function(BenchmarkId::new("shared", format!("K{k}_T{T}")), |b| {
            b.iter(|| black_box(pred.score(&mut sc, r.uid, hist, cands).unwrap()[0]))
        });
        g.bench_function(BenchmarkId::new("naive", format!("K{k}_T{T}")), |b| {
            b.iter(|| pool.install(|| black_box(model.forward(&batch, Mode::Eval).unwrap())))
        });
    }
    g.finish();
}

/// Percentile `q` of sorted `v`.
fn pct(v: &[f64], q: f64) -> f64 {
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Single-request latencies: p50, p99, candidates/s (at p50), speed-up.
fn summary() {
    let Setup { pred, mut model, pool } = setup();
    let cfg = config();
    let mut sc = Scratch::new();
    eprintln!("\nrequest path, 1 thread, T = {T} ({})", dien_engine::simd_target());
    eprintln!(
        "{:>5} | {:>10} {:>10} {:>12} | {:>10} {:>10} {:>12} | {:>7}",
        "K", "shared p50", "p99 (µs)", "cand/s", "naive p50", "p99 (µs)", "cand/s", "speedup"
    );
    for k in KS {
        let r = request(&cfg, k);
        let (hist, cands) = (Items::new(&r.hist_mid, &r.hist_cat), Items::new(&r.cand_mid, &r.cand_cat));
        let batch = naive_batch(&r);
        // About one second of requests per path, at least 10.
        let n = (200_000 / k).clamp(10, 2000);
        let mut shared: Vec<f64> = (0..n + 3)
            .map(|_| {
                let t = Instant::now();
                black_box(pred.score(&mut sc, r.uid, hist, cands).unwrap()[0]);
                t.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        let mut naive: Vec<f64> = pool.install(|| {
            (0..(n / 4).max(10) + 3)
                .map(|_| {
                    let t = Instant::now();
                    black_box(model.forward(&batch, Mode::Eval).unwrap());
                    t.elapsed().as_secs_f64() * 1e6
                })
                .collect()
        });
        for v in [&mut shared, &mut naive] {
            v.drain(..3);
            v.sort_by(f64::total_cmp);
        }
        let (s50, n50) = (pct(&shared, 0.5), pct(&naive, 0.5));
        eprintln!(
            "{k:>5} | {s50:>10.1} {:>10.1} {:>12.0} | {n50:>10.1} {:>10.1} {:>12.0} | {:>6.2}x",
            pct(&shared, 0.99),
            k as f64 / s50 * 1e6,
            pct(&naive, 0.99),
            k as f64 / n50 * 1e6,
            n50 / s50
        );
    }
}

criterion_group!(benches, bench);

fn main() {
    benches();
    criterion::Criterion::default().configure_from_args().final_summary();
    summary();
}
