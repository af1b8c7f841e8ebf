//! After warm-up, a training step — `forward_backward`, then
//! `update_running_stats`, then an optimiser step — performs no heap
//! allocation of its own, for every model, with Adam (lazy embedding rows)
//! and with SGD, on a 1-thread and on a 2-thread rayon pool.
//!
//! Counted: every allocation made on the pool's threads while the counted
//! steps run (the whole step runs inside one `install`, so the model's
//! parallel stages run on those threads). The calling thread only waits.
//! The `install` call itself is outside the counted part: rayon's global
//! job queue (crossbeam's injector) allocates a block of job slots every few
//! dozen injected jobs, which is the pool's business, not the step's.
//!
//! One allocation source is known and left to its owner: the weight-gradient
//! GEMMs go through `dien_engine::gemm::gemm`, i.e. `matrixmultiply`, which
//! allocates its packing buffer on every call and frees it before returning
//! (documented in `dien_engine::gemm`). That buffer is requested with the
//! GEMM kernel's alignment (32 or 64 bytes on x86-64), which nothing else on
//! the step path asks for, so the allocator below counts over-aligned
//! requests apart: the test requires zero ordinary allocations and as many
//! over-aligned frees as over-aligned allocations (no buffer outlives a
//! step).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use dien_model::cost::synthetic_batch;
use dien_model::fast::Model;
use dien_model::{Batch, ModelConfig, ModelKind};
use dien_trainer::optim::{OptimConfig, Optimizer};

struct Counting;

/// Whether allocations are being counted.
static ON: AtomicBool = AtomicBool::new(false);
/// Ordinary allocations (alignment below [`GEMM_ALIGN`]).
static PLAIN: AtomicUsize = AtomicUsize::new(0);
/// Over-aligned allocations and frees (the GEMM packing buffer).
static WIDE_ALLOC: AtomicUsize = AtomicUsize::new(0);
static WIDE_FREE: AtomicUsize = AtomicUsize::new(0);

/// The smallest alignment `matrixmultiply` asks for with its x86-64 kernels.
const GEMM_ALIGN: usize = 32;

thread_local! {
    // Const-initialised without a destructor: safe to touch inside the allocator.
    static IN_POOL: Cell<bool> = const { Cell::new(false) };
}

fn counted() -> bool {
    ON.load(Ordering::Relaxed) && IN_POOL.try_with(Cell::get).unwrap_or(false)
}

fn note_alloc(layout: Layout) {
    if counted() {
        if layout.align() >= GEMM_ALIGN {
            WIDE_ALLOC.fetch_add(1, Ordering::Relaxed);
        } else {
            PLAIN.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// bookkeeping reads a const-initialised thread-local `Cell` and bumps
// atomics, which never allocates or re-enters the allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counted() {
            // A growing buffer is an allocation whatever its alignment.
            PLAIN.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: `ptr` was allocated by `System` through this allocator with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if counted() && layout.align() >= GEMM_ALIGN {
            WIDE_FREE.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: `ptr` was allocated by `System` through this allocator with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const B: usize = 20;
const T: usize = 6;
const WARM_UP: u64 = 3;
const COUNTED: u64 = 4;

fn config(model: ModelKind) -> ModelConfig {
    let mut c = ModelConfig::new(model, 40, 90, 12);
    c.d = 4;
    c.hidden = 8;
    c
}

/// Batches with mixed history lengths (padding present, one empty history).
fn batch(cfg: &ModelConfig, seed: u64) -> Batch {
    let mut b = synthetic_batch(cfg, B, T, seed);
    for (s, len) in b.lengths.iter_mut().enumerate() {
        *len = (s + seed as usize) % (T + 1);
    }
    b
}

/// One full training step.
fn step(model: &mut Model, opt: &mut Optimizer, batch: &Batch) {
    let losses = model.forward_backward(batch).unwrap();
    assert!(losses.loss.is_finite());
    model.update_running_stats();
    let (params, grads) = model.params_and_gradients();
    opt.step(params, grads).unwrap();
}

/// `(ordinary, over-aligned allocations, over-aligned frees)` made on the
/// pool's threads by the counted steps.
fn count_steps(threads: usize, model: ModelKind, optim: &OptimConfig) -> (usize, usize, usize) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .start_handler(|_| IN_POOL.with(|c| c.set(true)))
        .build()
        .unwrap();
    let cfg = config(model);
    let batches: Vec<Batch> = (0..2).map(|s| batch(&cfg, s)).collect();
    let mut m = Model::init(cfg, 3).unwrap();
    let mut opt = Optimizer::new(optim.clone(), m.params()).unwrap();
    pool.install(|| {
        for i in 0..WARM_UP {
            step(&mut m, &mut opt, &batches[i as usize % 2]);
        }
        let before = (
            PLAIN.load(Ordering::SeqCst),
            WIDE_ALLOC.load(Ordering::SeqCst),
            WIDE_FREE.load(Ordering::SeqCst),
        );
        ON.store(true, Ordering::SeqCst);
        for i in 0..COUNTED {
            step(&mut m, &mut opt, &batches[i as usize % 2]);
        }
        ON.store(false, Ordering::SeqCst);
        (
            PLAIN.load(Ordering::SeqCst) - before.0,
            WIDE_ALLOC.load(Ordering::SeqCst) - before.1,
            WIDE_FREE.load(Ordering::SeqCst) - before.2,
        )
    })
}

#[test]
fn a_training_step_allocates_nothing_after_warm_up() {
    let optims = [("adam (lazy rows)", OptimConfig::adam()), ("sgd", OptimConfig::sgd(0.05))];
    assert!(OptimConfig::adam().lazy_embeddings);
    let mut report = Vec::new();
    for &model in ModelKind::ALL {
        for (oname, optim) in &optims {
            for threads in [1, 2] {
                let (plain, wide, freed) = count_steps(threads, model, optim);
                report.push(format!(
                    "{model} {oname} {threads} thread(s): {plain} allocations, \
                     {wide} GEMM packing buffers ({freed} freed) over {COUNTED} steps"
                ));
                assert_eq!(plain, 0, "{}", report.last().unwrap());
                assert_eq!(wide, freed, "{}", report.last().unwrap());
            }
        }
    }
    println!("{}", report.join("\n"));
}
