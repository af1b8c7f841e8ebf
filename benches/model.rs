//! Whole-model benchmarks: a DIEN training step (forward + backward, no
//! optimiser) and inference at B = 128, T = 100 with the model's defaults, on one
//! thread and on all threads. Rates are in samples/s and as a fraction of
//! the large-SGEMM yardstick measured in the same run (FLOPs counted as
//! docs/MODEL.md#cost counts them).

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group};
use dien_engine::gemm::sgemm_yardstick_gflops;
use dien_model::cost::{flops_per_sample, synthetic_batch};
use dien_model::fast::Model;
use dien_model::{Mode, ModelConfig, ModelKind};

const B: usize = 128;
const T: usize = 100;

fn config() -> ModelConfig {
    ModelConfig::new(ModelKind::Dien, 1000, 50_000, 800)
}

fn pools() -> Vec<(usize, rayon::ThreadPool)> {
    let all = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut n = vec![1];
    if all > 1 {
        n.push(all);
    }
    n.into_iter().map(|k| (k, rayon::ThreadPoolBuilder::new().num_threads(k).build().unwrap())).collect()
}

fn bench(c: &mut Criterion) {
    let cfg = config();
    let batch = synthetic_batch(&cfg, B, T, 1);
    let mut g = c.benchmark_group("model");
    g.sample_size(10);
    g.throughput(Throughput::Elements(B as u64));
    for (k, pool) in pools() {
        let mut model = Model::init(cfg.clone(), 1).unwrap();
        // `install` per iteration: its cost is microseconds against a step of tens of ms.
        g.bench_function(format!("dien_train_B{B}_T{T}_threads{k}"), |bch| {
            bch.iter(|| pool.install(|| black_box(model.forward_backward(&batch).unwrap())))
        });
        g.bench_function(format!("dien_infer_B{B}_T{T}_threads{k}"), |bch| {
            bch.iter(|| pool.install(|| black_box(model.forward(&batch, Mode::Eval).unwrap())))
        });
    }
    g.finish();
}

/// A plain median-of-runs summary printed after the criterion groups, with
/// the yardstick measured in the same process.
fn summary() {
    let cfg = config();
    let batch = synthetic_batch(&cfg, B, T, 1);
    let yard = sgemm_yardstick_gflops(1024, 5);
    eprintln!("\n{} | large-SGEMM yardstick (1 thread): {yard:.1} GFLOP/s", dien_engine::simd_target());
    eprintln!(
        "{:<8} {:>7} {:>12} {:>10} {:>9} {:>14}",
        "mode", "threads", "samples/s", "ms/step", "GFLOP/s", "% of yardstick"
    );
    for (k, pool) in pools() {
        let mut model = Model::init(cfg.clone(), 1).unwrap();
        for train in [true, false] {
            let mut times: Vec<f64> = pool.install(|| {
                (0..12)
                    .map(|_| {
                        let t = Instant::now();
                        if train {
                            black_box(model.forward_backward(&batch).unwrap());
                        } else {
                            black_box(model.forward(&batch, Mode::Eval).unwrap());
                        }
                        t.elapsed().as_secs_f64()
                    })
                    .collect()
            });
            times.drain(..2);
            times.sort_by(f64::total_cmp);
            let med = times[times.len() / 2];
            let gflops = flops_per_sample(&cfg, T, train) * B as f64 / med / 1e9;
            eprintln!(
                "{:<8} {:>7} {:>12.0} {:>10.2} {:>9.1} {:>13.1}%",
                if train { "train" } else { "infer" },
                k,
                B as f64 / med,
                med * 1e3,
                gflops,
                100.0 * gflops / (yard * k as f64)
            );
        }
    }
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary();
}
