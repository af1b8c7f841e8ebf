//! After warm-up, a training step — `forward_backward`, then
//! `update_running_stats`, then an optimiser step — performs no heap
//! allocation of its own, for every model, with Adam (lazy embedding rows)
//! and with SGD, on a 1-thread and on a 2-thread rayon pool.
//!
//! Counted: every allocation made on the pool's threads while the counted
//! steps run (the whole step runs inside one `install`, so the model's
//! parallel stages run on those threads; the calling thread only waits).
//! The `install` call itself is outside the counted part: rayon's global
//! job queue (crossbeam's injector) allocates a block of job slots every few
//! dozen injected jobs, which is the pool's business, not the step's; so is
//! a pool thread's registration with crossbeam's epoch collector, which is
//! done before anything is counted.
//!
//! Counted apart: allocations with a GEMM kernel's alignment (32 or 64
//! bytes on x86-64), the packing buffer `matrixmultiply` allocates on every
//! call. The step's products all run on the engine's own kernels, which
//! never allocate, so the test requires zero of those too (a product that
//! went back to `dien_engine::gemm::gemm` would show here), and zero other
//! allocations.

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
/// Every other allocation and reallocation.
static PLAIN: AtomicUsize = AtomicUsize::new(0);
/// Allocations with a GEMM kernel's alignment (the packing buffer).
static WIDE_ALLOC: AtomicUsize = AtomicUsize::new(0);
/// Frees with a GEMM kernel's alignment.
static WIDE_FREE: AtomicUsize = AtomicUsize::new(0);

/// Whether `layout` has the alignment `matrixmultiply`'s x86-64 kernels ask
/// for (32 bytes for AVX/FMA, 64 for AVX-512). Rust's own types on the step
/// path are at most 16-byte aligned; crossbeam's cache-padded nodes are 128.
fn gemm_aligned(layout: Layout) -> bool {
    matches!(layout.align(), 32 | 64)
}

thread_local! {
    // Const-initialised without a destructor: safe to touch inside the allocator.
    static IN_POOL: Cell<bool> = const { Cell::new(false) };
}

fn counted() -> bool {
    ON.load(Ordering::Relaxed) && IN_POOL.try_with(Cell::get).unwrap_or(false)
}

fn note_alloc(layout: Layout) {
    if counted() {
        if gemm_aligned(layout) {
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
        if counted() && gemm_aligned(layout) {
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
const WARM_UP: usize = 3;
const COUNTED: usize = 4;

fn config(model: ModelKind) -> ModelConfig {
    let mut c = ModelConfig::new(model, 40, 90, 12);
    c.d = 4;
    c.hidden = 8;
    c
}

/// A batch with mixed history lengths (padding present, some histories empty).
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

/// `(ordinary allocations, over-aligned allocations, over-aligned frees)`
/// made on the pool's threads by the counted steps.
fn count_steps(pool: &rayon::ThreadPool, model: ModelKind, optim: &OptimConfig) -> (usize, usize, usize) {
    let cfg = config(model);
    let batches: Vec<Batch> = (0..2).map(|s| batch(&cfg, s)).collect();
    let mut m = Model::init(cfg, 3).unwrap();
    let mut opt = Optimizer::new(optim.clone(), m.params()).unwrap();
    pool.install(|| {
        for i in 0..WARM_UP {
            step(&mut m, &mut opt, &batches[i % 2]);
        }
        let before =
            (PLAIN.load(Ordering::SeqCst), WIDE_ALLOC.load(Ordering::SeqCst), WIDE_FREE.load(Ordering::SeqCst));
        ON.store(true, Ordering::SeqCst);
        for i in 0..COUNTED {
            step(&mut m, &mut opt, &batches[i % 2]);
        }
        ON.store(false, Ordering::SeqCst);
        (
            PLAIN.load(Ordering::SeqCst) - before.0,
            WIDE_ALLOC.load(Ordering::SeqCst) - before.1,
            WIDE_FREE.load(Ordering::SeqCst) - before.2,
        )
    })
}

/// One test for everything: the allocator is process-wide, so no other
/// test may run beside the counted part. The pools live for the whole test:
/// a pool's exiting threads leave garbage in crossbeam's epoch collector,
/// which the next pin anywhere may collect (allocating a bag node, 128-byte
/// aligned), and that is thread teardown, not a training step.
#[test]
fn a_training_step_allocates_nothing_after_warm_up() {
    let pool = |threads| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .start_handler(|_| IN_POOL.with(|c| c.set(true)))
            .build()
            .unwrap()
    };
    let pools = [(1, pool(1)), (2, pool(2))];
    // A pool thread registers with crossbeam's epoch collector (one
    // 128-byte-aligned allocation) the first time it looks for work, which
    // a thread slow to start may do while another pool's steps are counted:
    // have every thread of both pools run a job first.
    for (_, p) in &pools {
        p.broadcast(|_| ());
    }
    assert!(OptimConfig::adam().lazy_embeddings);
    let optims = [("adam (lazy rows)", OptimConfig::adam()), ("sgd", OptimConfig::sgd(0.05))];
    let mut report = Vec::new();
    for &model in ModelKind::ALL {
        for (oname, optim) in &optims {
            for (threads, pool) in &pools {
                let (plain, wide, freed) = count_steps(pool, model, optim);
                report.push(format!(
                    "{model} {oname}, {threads} thread(s): {plain} allocations, \
                     {wide} GEMM packing buffers ({freed} freed) over {COUNTED} steps"
                ));
                assert_eq!(plain, 0, "{}", report.join("\n"));
                assert_eq!((wide, freed), (0, 0), "{}", report.join("\n"));
            }
        }
    }
    println!("{}", report.join("\n"));
}
