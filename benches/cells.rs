//! Cell benches: the fast fused cells (`cell::fast`), forward (inference
//! mode) and forward + backward (training), GRU and AUGRU, at H = 36,
//! input 36, B ∈ {1, 32, 128}, T ∈ {20, 100}, on one thread and on all
//! threads; plus the unfused cells (`common/unfused.rs`) at B = 128, T = 100.
//!
//! Throughput is in FLOP (criterion's "elem/s"): forward counts
//! `2·(3H·in + 3H·H)` per sample per step, backward twice that, so a
//! training step is 3× forward. Every sample has length T. The single-thread
//! 1024³ `sgemm` rate (matrixmultiply) is measured at the start and the end
//! of the run as the yardstick, and a summary table (GFLOP/s and % of the
//! yardstick, medians) goes to stderr at the end.
//!
//! Run: `cargo bench --bench cells -- --warm-up-time 1 --measurement-time 3`
//! (add a filter such as `augru/fwd+bwd/B128` to run a subset).

mod common;
// Not every item is used here (its test runs from tests/unfused.rs).
#[allow(dead_code)]
#[path = "common/unfused.rs"]
mod unfused;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use dien_engine::cell::fast::{CellWorkspace, GruCell, Mode};
use dien_engine::cell::{CellKind, GruGrads, GruParams, SeqInput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const H: usize = 36;
const IN: usize = 36;

/// What the summary keeps per bench id: FLOP per iteration, the
/// per-iteration times criterion saw, and the process CPU time and wall time
/// of those timed loops.
#[derive(Default)]
struct Seen {
    flops: f64,
    per_iter: Vec<f64>,
    cpu: f64,
    wall: f64,
}

static TIMES: Mutex<BTreeMap<String, Seen>> = Mutex::new(BTreeMap::new());

/// CPU time of all threads of this process so far (Linux: the run times in
/// `/proc/self/task/*/schedstat`), `None` elsewhere. The ratio of CPU time
/// to wall time over a timed loop tells how many cores it really had: on a
/// machine shared with other jobs, a two-thread run may get less than two.
fn process_cpu_seconds() -> Option<f64> {
    let mut ns = 0u64;
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(entry.ok()?.path().join("schedstat")).ok()?;
        ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(ns as f64 * 1e-9)
}

/// Times `iters` runs of `f` (criterion's `iter_custom` body) and records
/// them under `id`.
fn timed(id: &str, flops: f64, iters: u64, mut f: impl FnMut()) -> Duration {
    let c0 = process_cpu_seconds();
    let t0 = Instant::now();
    for _ in 0..iters {
        f();
    }
    let d = t0.elapsed();
    let c1 = process_cpu_seconds();
    let mut t = TIMES.lock().unwrap();
    let e = t.entry(id.to_string()).or_default();
    e.flops = flops;
    e.per_iter.push(d.as_secs_f64() / iters as f64);
    if let (Some(c0), Some(c1)) = (c0, c1) {
        e.cpu += c1 - c0;
        e.wall += d.as_secs_f64();
    }
    d
}

struct Problem {
    w_ih: Vec<f32>,
    w_hh: Vec<f32>,
    b: Vec<f32>,
    x: Vec<f32>,
    att: Vec<f32>,
    lengths: Vec<usize>,
    d_states: Vec<f32>,
    batch: usize,
    steps: usize,
}

impl Problem {
    fn new(batch: usize, steps: usize) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut v = |n: usize, s: f32| (0..n).map(|_| rng.random_range(-s..s)).collect::<Vec<f32>>();
        let s = (1.0 / H as f32).sqrt();
        Self {
            w_ih: v(3 * H * IN, s),
            w_hh: v(3 * H * H, s),
            b: v(3 * H, 0.5),
            x: v(batch * steps * IN, 1.0),
            att: v(batch * steps, 0.5).iter().map(|a| a + 0.5).collect(),
            lengths: vec![steps; batch],
            d_states: v(batch * steps * H, 1.0),
            batch,
            steps,
        }
    }
    fn params(&self) -> GruParams<'_, f32> {
        GruParams { w_ih: &self.w_ih, w_hh: &self.w_hh, b: &self.b, input: IN, hidden: H }
    }
    fn seq(&self, kind: CellKind) -> SeqInput<'_, f32> {
        SeqInput {
            x: &self.x,
            lengths: &self.lengths,
            att: kind.uses_attention().then_some(&self.att[..]),
            h0: None,
            batch: self.batch,
            steps: self.steps,
        }
    }
    /// Forward multiply-adds × 2.
    fn fwd_flops(&self) -> f64 {
        2.0 * (self.batch * self.steps * (3 * H * IN + 3 * H * H)) as f64
    }
}

/// Reusable outputs of one fast forward + backward.
struct Buffers {
    ws: CellWorkspace,
    states: Vec<f32>,
    last: Vec<f32>,
    grads: GruGrads<f32>,
    dx: Vec<f32>,
    d_att: Vec<f32>,
}

impl Buffers {
    fn new(p: &Problem) -> Self {
        let (b, t) = (p.batch, p.steps);
        Self {
            ws: CellWorkspace::new(),
            states: vec![0.0; b * t * H],
            last: vec![0.0; b * H],
            grads: GruGrads::zeros(IN, H),
            dx: vec![0.0; b * t * IN],
            d_att: vec![0.0; b * t],
        }
    }
    fn forward(&mut self, cell: &GruCell, seq: &SeqInput<'_, f32>, mode: Mode) {
        cell.forward(seq, &mut self.ws, mode, &mut self.states, &mut self.last);
    }
    fn train_step(&mut self, cell: &GruCell, seq: &SeqInput<'_, f32>, d_states: &[f32]) {
        self.forward(cell, seq, Mode::Train);
        let d_att = cell.kind().uses_attention().then_some(&mut self.d_att[..]);
        cell.backward(seq, &mut self.ws, Some(d_states), None, &mut self.grads, &mut self.dx, d_att, None);
    }
}

fn bench_fast(c: &mut Criterion, pools: &[(String, rayon::ThreadPool)]) {
    for kind in [CellKind::Gru, CellKind::Augru] {
        for batch in [1, 32, 128] {
            for steps in [20, 100] {
                let p = Problem::new(batch, steps);
                let mut cell = GruCell::new(kind, IN, H);
                cell.set_params(&p.params());
                let seq = p.seq(kind);
                for (tname, pool) in pools {
                    let mut g = c.benchmark_group(format!("{}/fwd/B{batch}/T{steps}", kind.name()));
                    g.throughput(Throughput::Elements(p.fwd_flops() as u64));
                    let mut buf = Buffers::new(&p);
                    let id = format!("{}/fwd/B{batch}/T{steps}/{tname}", kind.name());
                    g.bench_function(tname.as_str(), |bn| {
                        bn.iter_custom(|iters| {
                            pool.install(|| {
                                timed(&id, p.fwd_flops(), iters, || buf.forward(&cell, black_box(&seq), Mode::Infer))
                            })
                        })
                    });
                    g.finish();

                    let mut g = c.benchmark_group(format!("{}/fwd+bwd/B{batch}/T{steps}", kind.name()));
                    g.throughput(Throughput::Elements(3 * p.fwd_flops() as u64));
                    let id = format!("{}/fwd+bwd/B{batch}/T{steps}/{tname}", kind.name());
                    g.bench_function(tname.as_str(), |bn| {
                        bn.iter_custom(|iters| {
                            pool.install(|| {
                                timed(&id, 3.0 * p.fwd_flops(), iters, || {
                                    buf.train_step(&cell, black_box(&seq), &p.d_states)
                                })
                            })
                        })
                    });
                    g.finish();
                }
            }
        }
    }
}

/// The unfused cells (one op per pass, fresh vectors) at B = 128, T = 100,
/// on one thread.
fn bench_unfused(c: &mut Criterion, one: &rayon::ThreadPool) {
    let (batch, steps) = (128, 100);
    let p = Problem::new(batch, steps);
    for kind in [CellKind::Gru, CellKind::Augru] {
        let seq = p.seq(kind);
        let params = p.params();
        let mut g = c.benchmark_group(format!("{}/unfused/B{batch}/T{steps}", kind.name()));
        g.throughput(Throughput::Elements(p.fwd_flops() as u64));
        let id = format!("{}/unfused-fwd/B{batch}/T{steps}/t1", kind.name());
        g.bench_function("fwd/t1", |bn| {
            bn.iter_custom(|iters| {
                one.install(|| {
                    timed(&id, p.fwd_flops(), iters, || {
                        black_box(unfused::forward(kind, &params, black_box(&seq)));
                    })
                })
            })
        });
        g.throughput(Throughput::Elements(3 * p.fwd_flops() as u64));
        let id = format!("{}/unfused-fwd+bwd/B{batch}/T{steps}/t1", kind.name());
        let mut grads = GruGrads::zeros(IN, H);
        g.bench_function("fwd+bwd/t1", |bn| {
            bn.iter_custom(|iters| {
                one.install(|| {
                    timed(&id, 3.0 * p.fwd_flops(), iters, || {
                        let cache = unfused::forward_train(kind, &params, black_box(&seq));
                        black_box(unfused::backward(kind, &params, &seq, &cache, Some(&p.d_states), None, &mut grads));
                    })
                })
            })
        });
        g.finish();
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let yard0 = common::sgemm_yardstick_gflops();
    let mut pools = vec![("t1".to_string(), rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap())];
    if threads > 1 {
        pools.push((format!("t{threads}"), rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap()));
    }

    let mut c = Criterion::default().configure_from_args();
    bench_fast(&mut c, &pools);
    bench_unfused(&mut c, &pools[0].1);
    c.final_summary();

    let yard1 = common::sgemm_yardstick_gflops();
    let yard = yard0.max(yard1);
    let mut times = TIMES.lock().unwrap();
    if times.is_empty() {
        return;
    }
    eprintln!();
    eprintln!("cells summary ({}; {threads} threads available; H = {H}, input = {IN})", dien_engine::simd_target());
    eprintln!("sgemm 1024³ yardstick, 1 thread: {yard0:.1} GFLOP/s at start, {yard1:.1} at end; % below of {yard:.1}");
    eprintln!("{:<34} {:>11} {:>9} {:>8} {:>5}", "bench", "median", "GFLOP/s", "% sgemm", "CPUs");
    for (id, e) in times.iter_mut() {
        let t = median(&mut e.per_iter);
        let gf = e.flops / t / 1e9;
        let cpus = if e.wall > 0.0 { format!("{:.2}", e.cpu / e.wall) } else { "-".into() };
        eprintln!("{id:<34} {:>9.3}ms {gf:>9.2} {:>7.1}% {cpus:>5}", t * 1e3, 100.0 * gf / yard);
    }
    // Thread scaling of the headline configuration.
    let one = times.get_mut("augru/fwd+bwd/B128/T100/t1").map(|e| median(&mut e.per_iter));
    let all = times.get_mut(&format!("augru/fwd+bwd/B128/T100/t{threads}")).map(|e| median(&mut e.per_iter));
    if let (Some(a), Some(b)) = (one, all) {
        eprintln!("augru fwd+bwd B128 T100: {threads} threads are {:.2}× one thread", a / b);
    }
    eprintln!("(CPUs: process CPU time / wall time of the timed loops; below the thread count, other jobs held cores)");
}
