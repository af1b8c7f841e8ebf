//! Optimiser failures and invariants: non-finite gradients, buffers,
//! allocation-free steps, and (ignored) step timing.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use dien_model::cost::synthetic_batch;
use dien_model::fast::Model;
use dien_model::{ModelConfig, ModelKind, TensorKind};
use dien_trainer::TrainError;
use dien_trainer::optim::{OptimConfig, Optimizer};

use common::*;

// ---------------------------------------------------------------------------
// Allocation counting (this thread only, so parallel tests do not interfere).

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: the slot may be gone while a thread is being torn down.
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter is a const-initialised thread-local `Cell` without destructor, so
// touching it never allocates or re-enters the allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: `ptr` was allocated by `System` through this allocator with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` through this allocator with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_in(f: impl FnOnce()) -> usize {
    let before = ALLOCS.with(Cell::get);
    f();
    ALLOCS.with(Cell::get) - before
}
// ---------------------------------------------------------------------------
// Failure and invariants.

#[test]
fn non_finite_gradients_are_rejected_and_nothing_changes() {
    let mut model = tiny_model(12);
    let d = model.config().d;
    for cfg in [OptimConfig::adam(), OptimConfig { clip_norm: Some(1.0), ..OptimConfig::sgd(0.1) }] {
        let mut opt = Optimizer::new(cfg, model.params()).unwrap();
        let g = grads(&mut model, 70);
        opt.step(model.params_mut(), &g).unwrap();
        let (p, s) = (params_bits(model.params()), state_bits(&opt));

        // A NaN in a dense gradient.
        let mut bad = g.dense("gru2.w_hh").unwrap().to_vec();
        bad[17] = f32::NAN;
        let bad: &[f32] = &bad;
        let dense = || g.dense_iter().map(move |(n, v)| if n == "gru2.w_hh" { (n, bad) } else { (n, v) });
        let err = opt.step_with(model.params_mut(), dense, &g.emb).unwrap_err();
        match &err {
            TrainError::NonFiniteGradient { tensor, index, value, step } => {
                assert_eq!((tensor.as_str(), *index, *step), ("gru2.w_hh", 17, 2));
                assert!(value.is_nan());
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("gru2.w_hh"), "{err}");

        // An infinity in an embedding row: the index is in the full table.
        let mut emb = g.emb.clone();
        let r = emb[1].rows[2] as usize;
        emb[1].values[2 * d + 1] = f32::NEG_INFINITY;
        let err = opt.step_with(model.params_mut(), || g.dense_iter(), &emb).unwrap_err();
        match &err {
            TrainError::NonFiniteGradient { tensor, index, value, .. } => {
                assert_eq!((tensor.as_str(), *index, *value), ("emb.mid", r * d + 1, f32::NEG_INFINITY));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(params_bits(model.params()), p);
        assert_eq!(state_bits(&opt), s);
        assert_eq!(opt.steps(), 1);
        // The next good step still works and counts as step 2.
        opt.step(model.params_mut(), &g).unwrap();
        assert_eq!(opt.steps(), 2);
    }
}

#[test]
fn buffers_are_never_touched() {
    for cfg in
        [OptimConfig::adam(), OptimConfig { lazy_embeddings: false, ..OptimConfig::adam() }, OptimConfig::sgd(0.5)]
    {
        let mut model = tiny_model(13);
        // Give the buffers non-initial values first.
        model.forward_backward(&batch(80)).unwrap();
        model.update_running_stats();
        let buffers = |m: &Model| -> Vec<(String, Vec<u32>)> {
            m.params()
                .iter()
                .filter(|(s, _)| s.kind == TensorKind::Buffer)
                .map(|(s, v)| (s.name.clone(), bits(v)))
                .collect()
        };
        let before = buffers(&model);
        assert_eq!(before.len(), 6);
        let mut opt = Optimizer::new(cfg.clone(), model.params()).unwrap();
        for step in 0..3 {
            let g = grads(&mut model, 81 + step);
            opt.step(model.params_mut(), &g).unwrap();
        }
        assert_eq!(buffers(&model), before, "{cfg:?}");
    }
}

#[test]
#[should_panic(expected = "non-trainable tensor `head.bn.running_var`")]
fn gradient_for_a_buffer_panics() {
    let mut model = tiny_model(14);
    let mut opt = Optimizer::new(OptimConfig::adam(), model.params()).unwrap();
    let g = vec![0.0f32; model.params().get("head.bn.running_var").len()];
    let _ = opt.step_with(model.params_mut(), || [("head.bn.running_var", g.as_slice())].into_iter(), &no_rows(2));
}

#[test]
fn steps_do_not_allocate() {
    // On a pool's thread, as training runs it: from outside a pool, rayon
    // hands each parallel task to the pool through a shared queue that
    // allocates a block every few dozen tasks, whoever pushed the others
    // (here, the other tests of this process).
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    for cfg in [
        OptimConfig::adam(),
        OptimConfig { lazy_embeddings: false, clip_norm: Some(0.01), ..OptimConfig::adam() },
        OptimConfig { clip_norm: Some(0.01), ..OptimConfig::sgd(0.1) },
    ] {
        let mut model = tiny_model(15);
        let g = grads(&mut model, 90);
        let mut opt = Optimizer::new(cfg.clone(), model.params()).unwrap();
        let params = model.params_mut();
        let n = pool.install(|| {
            opt.step(params, &g).unwrap();
            allocations_in(|| {
                for _ in 0..3 {
                    opt.step(params, &g).unwrap();
                }
            })
        });
        assert_eq!(n, 0, "{cfg:?}");
    }
    // The counter does count (the check above is not vacuous).
    assert!(allocations_in(|| drop(std::hint::black_box(vec![1u8; 8]))) > 0);
}

// ---------------------------------------------------------------------------
// Timing at the default embedding width and a realistic vocabulary.

#[test]
#[ignore = "timing: prints step times at the default sizes; run with --release -- --ignored --nocapture"]
fn step_timing() {
    let mut cfg = ModelConfig::new(ModelKind::Dien, 50_000, 370_000, 1_600);
    cfg.d = 18;
    let mut model = Model::init(cfg.clone(), 1).unwrap();
    model.forward_backward(&synthetic_batch(&cfg, 128, 100, 1)).unwrap();
    let g = model.gradients().clone();
    let touched: usize = g.emb.iter().map(|e| e.rows.len()).sum();
    let dense: usize = g.dense_iter().map(|(_, v)| v.len()).sum();
    println!("dense gradient elements {dense}, touched embedding rows {touched}");
    for (what, cfg) in [
        ("adam lazy", OptimConfig::adam()),
        ("adam lazy + clip", OptimConfig { clip_norm: Some(1e-6), ..OptimConfig::adam() }),
        ("adam dense embeddings", OptimConfig { lazy_embeddings: false, ..OptimConfig::adam() }),
        ("sgd", OptimConfig::sgd(0.01)),
    ] {
        let mut opt = Optimizer::new(cfg, model.params()).unwrap();
        let params = model.params_mut();
        opt.step(params, &g).unwrap();
        let n = 20;
        let t0 = std::time::Instant::now();
        for _ in 0..n {
            opt.step(params, &g).unwrap();
        }
        println!("{what:>22}: {:8.3} ms/step", t0.elapsed().as_secs_f64() * 1e3 / f64::from(n));
    }
}
