//! After a warm-up request, scoring performs no heap allocation: proven
//! with a counting global allocator (its own test binary, so no other test
//! shares the allocator). Only allocations of the scoring thread count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use dien_model::serve::{Items, Precision, Predictor, Scratch, Vocabs};
use dien_model::{AttForm, ModelConfig, ModelKind, ParamStore, Variant};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // Const-initialised without a destructor: safe to touch inside the allocator.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    if COUNTING.with(Cell::get) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to the system allocator unchanged; the
// counter only reads a thread-local flag and bumps an atomic.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded contract.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: forwarded contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn count<R>(f: impl FnOnce() -> R) -> (usize, R) {
    let before = ALLOCS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (ALLOCS.load(Ordering::Relaxed) - before, r)
}

fn ids(prefix: &str, v: &[u32]) -> Vec<String> {
    v.iter().map(|i| format!("{prefix}{i}")).collect()
}

#[test]
fn scoring_allocates_nothing_after_warm_up() {
    // The counter itself works.
    let (n, v) = count(|| vec![1u8; 10]);
    assert_eq!(n, 1);
    drop(v);

    let (t, k) = (100usize, 64usize);
    let hm: Vec<u32> = (0..t as u32).map(|i| 1 + i * 7 % 290).collect();
    let hc: Vec<u32> = (0..t as u32).map(|i| i % 29).collect();
    let cm: Vec<u32> = (0..k as u32).map(|i| 3 + i * 11 % 290).collect();
    let cc: Vec<u32> = (0..k as u32).map(|i| (i * 5) % 29).collect();
    let map = |p: &str, n: u32| -> HashMap<String, u32> { (0..n).map(|i| (format!("{p}{i}"), i)).collect() };
    let (shm, shc, scm, scc) = (ids("m", &hm), ids("c", &hc), ids("m", &cm), ids("c", &cc));

    // Every model, and for the models with an evolving layer every variant,
    // in every precision this CPU has.
    let precisions: Vec<Precision> = Precision::ALL.into_iter().filter(|p| p.supported()).collect();
    let precisions = &precisions;
    let cases = ModelKind::ALL.iter().flat_map(move |&model| {
        let evolving = matches!(model, ModelKind::Dien | ModelKind::DienNoaux);
        let variants = if evolving { Variant::ALL } else { &[Variant::Augru][..] };
        variants.iter().flat_map(move |&v| precisions.iter().map(move |&p| (model, v, p)))
    });
    for (model, variant, precision) in cases {
        let mut cfg = ModelConfig::new(model, 20, 300, 30);
        cfg.variant = variant;
        cfg.att = AttForm::Mlp;
        let pred = Predictor::new(cfg.clone(), ParamStore::init(&cfg, 1))
            .unwrap()
            .with_vocabs(Vocabs::new(map("u", 20), map("m", 300), map("c", 30)))
            .unwrap()
            .with_precision(precision)
            .unwrap();
        let mut sc = Scratch::new();
        let mut out = vec![0.0f32; k];
        // Warm-up at the largest size.
        pred.score(&mut sc, 3, Items::new(&hm, &hc), Items::new(&cm, &cc)).unwrap();
        pred.score_ids(&mut sc, "u3", &shm, &shc, &scm, &scc).unwrap();

        let (n, sum) = count(|| {
            let mut sum = 0.0f32;
            // Same size, smaller K, shorter history, one candidate, no history.
            for (l, kk) in [(t, k), (t, 7), (37, k), (t, 1), (0, 5), (t, k)] {
                let p =
                    pred.score(&mut sc, 3, Items::new(&hm[..l], &hc[..l]), Items::new(&cm[..kk], &cc[..kk])).unwrap();
                sum += p.iter().sum::<f32>();
                pred.score_into(
                    &mut sc,
                    4,
                    Items::new(&hm[..l], &hc[..l]),
                    Items::new(&cm[..kk], &cc[..kk]),
                    &mut out[..kk],
                )
                .unwrap();
                sum += out[..kk].iter().sum::<f32>();
            }
            let p = pred.score_ids(&mut sc, "u3", &shm, &shc, &scm, &scc).unwrap();
            sum + p.iter().sum::<f32>()
        });
        assert!(sum.is_finite() && sum > 0.0);
        assert_eq!(n, 0, "{model} {variant} {precision}: {n} allocations after warm-up");
    }
}
