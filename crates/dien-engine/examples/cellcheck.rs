//! Gradient check of every recurrent cell against central finite
//! differences (f64 reference), then a short benchmark of the fast f32
//! cells at DIEN's default sizes, relative to a large-SGEMM yardstick.
//!
//! `cargo run --release -p dien-engine --example cellcheck`

use std::time::Instant;

use dien_engine::cell::fast::{CellWorkspace, GruCell, Mode};
use dien_engine::cell::{CellKind, GruGrads, GruParams, SeqInput, reference};
use dien_engine::gemm::sgemm_yardstick_gflops;
use dien_engine::gradcheck::{NamedTensor, check};

/// A small deterministic generator (the example needs no dependencies).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize, scale: f64) -> Vec<f64> {
        (0..n).map(|_| scale * self.next()).collect()
    }
}

fn gradient_check(kind: CellKind) -> bool {
    let (b, t, n, h) = (4, 5, 4, 3);
    let mut rng = Lcg(kind as u64 + 1);
    let lengths = [0usize, 1, 5, 3];
    let mut tensors = vec![
        NamedTensor::new("w_ih", rng.vec(3 * h * n, 0.6)),
        NamedTensor::new("w_hh", rng.vec(3 * h * h, 0.6)),
        NamedTensor::new("b", rng.vec(3 * h, 0.3)),
        NamedTensor::new("x", rng.vec(b * t * n, 1.0)),
        NamedTensor::new("att", rng.vec(b * t, 0.5).iter().map(|v| v + 0.5).collect()),
        NamedTensor::new("h0", rng.vec(b * h, 0.5)),
    ];
    // Loss: a fixed random linear functional of all valid states and of `last`.
    let w_states = rng.vec(b * t * h, 1.0);
    let w_last = rng.vec(b * h, 1.0);
    fn views<'a>(
        ts: &'a [NamedTensor],
        lengths: &'a [usize],
        n: usize,
        h: usize,
    ) -> (GruParams<'a, f64>, SeqInput<'a, f64>) {
        let p = GruParams { w_ih: &ts[0].data, w_hh: &ts[1].data, b: &ts[2].data, input: n, hidden: h };
        let input = SeqInput {
            x: &ts[3].data,
            lengths,
            att: Some(&ts[4].data),
            h0: Some(&ts[5].data),
            batch: lengths.len(),
            steps: ts[3].data.len() / (lengths.len() * n),
        };
        (p, input)
    }
    let loss = |ts: &[NamedTensor]| {
        let (p, input) = views(ts, &lengths, n, h);
        let f = reference::forward(kind, &p, &input);
        f.states.iter().zip(&w_states).map(|(a, b)| a * b).sum::<f64>()
            + f.last.iter().zip(&w_last).map(|(a, b)| a * b).sum::<f64>()
    };
    let mut g = GruGrads::zeros(n, h);
    let gi = {
        let (p, input) = views(&tensors, &lengths, n, h);
        let fwd = reference::forward(kind, &p, &input);
        reference::backward(kind, &p, &input, &fwd, Some(&w_states), Some(&w_last), &mut g)
    };
    let analytic = vec![g.w_ih, g.w_hh, g.b, gi.x, gi.att, gi.h0];
    let report = check(&mut tensors, &analytic, 1e-5, 1e-4, loss);
    let ok = report.passes(1e-6, 1e-9);
    println!("{} — {}\n{report}\n", kind.name(), if ok { "PASS" } else { "FAIL" });
    ok
}

fn bench(kind: CellKind, b: usize, t: usize, yard: f64) {
    let (n, h) = (36, 36);
    let mut rng = Lcg(7);
    let f = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
    let (w_ih, w_hh, bias) = (f(rng.vec(3 * h * n, 0.16)), f(rng.vec(3 * h * h, 0.16)), f(rng.vec(3 * h, 0.1)));
    let x = f(rng.vec(b * t * n, 1.0));
    let att: Vec<f32> = f(rng.vec(b * t, 0.5)).iter().map(|v| v + 0.5).collect();
    let lengths = vec![t; b];
    let mut cell = GruCell::new(kind, n, h);
    cell.set_params(&GruParams { w_ih: &w_ih, w_hh: &w_hh, b: &bias, input: n, hidden: h });
    let input = SeqInput { x: &x, lengths: &lengths, att: Some(&att), h0: None, batch: b, steps: t };
    let mut ws = CellWorkspace::new();
    let (mut states, mut last) = (vec![0.0; b * t * h], vec![0.0; b * h]);
    let d_last = vec![1.0; b * h];
    let mut grads = GruGrads::zeros(n, h);
    let (mut dx, mut datt) = (vec![0.0; b * t * n], vec![0.0; b * t]);
    let mut step = || {
        cell.forward(&input, &mut ws, Mode::Train, &mut states, &mut last);
        cell.backward(&input, &mut ws, None, Some(&d_last), &mut grads, &mut dx, Some(&mut datt), None);
    };
    step();
    let mut times: Vec<f64> = (0..15)
        .map(|_| {
            let s = Instant::now();
            step();
            s.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let med = times[times.len() / 2];
    let flops = 3.0 * 2.0 * (b * t) as f64 * (3 * h * n + 3 * h * h) as f64;
    let gf = flops / med / 1e9;
    println!(
        "{:<6} forward+backward B={b:<4} T={t:<4} {:>8.3} ms  {:>6.1} GFLOP/s  {:>5.1}% of yardstick",
        kind.name(),
        med * 1e3,
        gf,
        100.0 * gf / yard
    );
}

fn main() {
    println!("dien-engine cell check ({})\n", dien_engine::simd_target());
    let mut ok = true;
    for kind in CellKind::ALL {
        ok &= gradient_check(kind);
    }
    let threads = rayon::current_num_threads();
    let yard = sgemm_yardstick_gflops(1024, 3);
    println!("benchmark: one thread; large-SGEMM yardstick {yard:.1} GFLOP/s (pool has {threads} threads, using 1)");
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("thread pool");
    pool.install(|| {
        for kind in [CellKind::Gru, CellKind::Augru] {
            for (b, t) in [(32, 20), (128, 100)] {
                bench(kind, b, t, yard);
            }
        }
    });
    if !ok {
        eprintln!("gradient check FAILED");
        std::process::exit(1);
    }
}
