//! Optimisers: Adam and SGD against hand computations, lazy versus dense
//! embedding updates, clipping, the learning-rate schedule, state round
//! trips, non-finite gradients, buffers, and allocation-free steps.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::PathBuf;

use dien_model::checkpoint;
use dien_model::cost::synthetic_batch;
use dien_model::fast::{EMB_TABLES, Gradients, Model, SparseRows};
use dien_model::{Batch, ModelConfig, ModelKind, ParamStore, TensorKind};
use dien_trainer::TrainError;
use dien_trainer::optim::{OptimConfig, OptimKind, Optimizer, sidecar_path};

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
// Helpers.

const B: usize = 4;
const T: usize = 5;

/// A tiny DIEN: `d = 2`, `H = 4`; vocabularies large enough that a batch
/// leaves most embedding rows untouched.
fn tiny_cfg() -> ModelConfig {
    let mut c = ModelConfig::new(ModelKind::Dien, 30, 80, 25);
    c.d = 2;
    c.hidden = 4;
    c
}

fn tiny_model(seed: u64) -> Model {
    Model::init(tiny_cfg(), seed).unwrap()
}

/// A synthetic batch whose histories have lengths 1..=T, so padded
/// positions exist.
fn batch(seed: u64) -> Batch {
    let mut b = synthetic_batch(&tiny_cfg(), B, T, seed);
    for (s, len) in b.lengths.iter_mut().enumerate() {
        *len = 1 + (s + seed as usize) % T;
    }
    b
}

/// Gradients of `model` on `batch(seed)`, owned (the optimiser needs the
/// parameters mutably at the same time).
fn grads(model: &mut Model, seed: u64) -> Gradients {
    model.forward_backward(&batch(seed)).unwrap();
    model.gradients().clone()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn params_bits(p: &ParamStore<f32>) -> Vec<(String, Vec<u32>)> {
    p.iter().map(|(s, v)| (s.name.clone(), bits(v))).collect()
}

fn state_bits(o: &Optimizer) -> Vec<(String, Vec<usize>, Vec<u32>)> {
    o.state_tensors().into_iter().map(|(n, s, v)| (n, s, bits(&v))).collect()
}

fn state_of<'a>(state: &'a [(String, Vec<usize>, Vec<f32>)], name: &str) -> &'a [f32] {
    &state.iter().find(|(n, _, _)| n == name).unwrap_or_else(|| panic!("no state {name}")).2
}

/// Three empty embedding gradients of width `d`.
fn no_rows(d: usize) -> [SparseRows; 3] {
    std::array::from_fn(|_| {
        let mut s = SparseRows::default();
        s.width = d;
        s
    })
}

fn rows(d: usize, rows: Vec<u32>, values: Vec<f32>) -> SparseRows {
    let mut s = SparseRows::default();
    s.width = d;
    s.rows = rows;
    s.values = values;
    s
}

/// Standard Adam (Kingma & Ba, Algorithm 1) on one element in f64.
struct RefAdam {
    m: f64,
    v: f64,
}

impl RefAdam {
    fn step(&mut self, p: f64, g: f64, lr: f64, t: i32) -> f64 {
        let (b1, b2, eps) = (0.9f32 as f64, 0.999f32 as f64, 1e-8f32 as f64);
        self.m = b1 * self.m + (1.0 - b1) * g;
        self.v = b2 * self.v + (1.0 - b2) * g * g;
        let m_hat = self.m / (1.0 - b1.powi(t));
        let v_hat = self.v / (1.0 - b2.powi(t));
        p - lr * m_hat / (v_hat.sqrt() + eps)
    }
}

fn assert_close(got: f32, want: f64, what: &str) {
    let tol = 2e-7 + 2e-6 * want.abs();
    assert!((f64::from(got) - want).abs() <= tol, "{what}: got {got}, want {want}");
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dien-optim-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---------------------------------------------------------------------------
// Update rules.

#[test]
fn adam_first_steps_match_hand_computation() {
    let mut model = tiny_model(1);
    let d = model.config().d;
    let before = model.params().clone();
    let mut opt = Optimizer::new(OptimConfig::adam(), model.params()).unwrap();
    let name = "head.fc3.b";
    assert_eq!(before.get(name).len(), 1);

    // Step 1 by hand: m = 0.1·g, v = 0.001·g², m̂ = g, v̂ = g², so the move is
    // lr·g / (|g| + eps): the learning rate, against the gradient's sign.
    let p0 = f64::from(before.get(name)[0]);
    opt.step_with(model.params_mut(), || [(name, &[0.5f32][..])].into_iter(), &no_rows(d)).unwrap();
    let p1 = model.params().get(name)[0];
    assert_close(p1, p0 - 0.001 * 0.5 / (0.5 + 1e-8), "step 1");
    assert_close(p1, p0 - 0.001, "step 1 moves by lr");

    // Then known gradients of changing size and sign against Algorithm 1.
    let mut r = RefAdam { m: 0.0, v: 0.0 };
    let mut p = r.step(p0, 0.5, 0.001, 1);
    for (t, g) in [(2, -0.25f32), (3, 2.0), (4, 1e-3), (5, -3.0)] {
        let g = [g];
        opt.step_with(model.params_mut(), || [(name, &g[..])].into_iter(), &no_rows(d)).unwrap();
        let g = g[0];
        p = r.step(p, f64::from(g), 0.001, t);
        assert_close(model.params().get(name)[0], p, &format!("step {t}"));
        assert_close(state_of(&opt.state_tensors(), "adam.m.head.fc3.b")[0], r.m, "m");
        assert_close(state_of(&opt.state_tensors(), "adam.v.head.fc3.b")[0], r.v, "v");
    }
    assert_eq!(opt.steps(), 5);

    // Tensors without a gradient did not move.
    for (spec, v) in model.params().iter().filter(|(s, _)| s.name != name) {
        assert_eq!(bits(v), bits(before.get(&spec.name)), "{}", spec.name);
    }
}

#[test]
fn adam_on_model_gradients_matches_reference() {
    let mut model = tiny_model(2);
    let d = model.config().d;
    let mut opt = Optimizer::new(OptimConfig::adam(), model.params()).unwrap();
    // f64 reference: parameters, moments, and the set of rows ever touched.
    let mut p_ref: Vec<Vec<f64>> = model.params().iter().map(|(_, v)| v.iter().map(|&x| x.into()).collect()).collect();
    let mut m_ref: Vec<Vec<f64>> = p_ref.iter().map(|v| vec![0.0; v.len()]).collect();
    let mut v_ref = m_ref.clone();
    for t in 1..=3 {
        let g = grads(&mut model, 10 + t as u64);
        let dense = g.to_dense_store(model.config());
        // Lazy: only touched embedding rows (or any dense parameter) update.
        let touched = |name: &str, i: usize| match EMB_TABLES.iter().position(|&e| e == name) {
            Some(k) => g.emb[k].row((i / d) as u32).is_some(),
            None => true,
        };
        for (k, (spec, gv)) in dense.iter().enumerate() {
            if spec.kind != TensorKind::Param {
                continue;
            }
            for (i, &gi) in gv.iter().enumerate() {
                if touched(&spec.name, i) {
                    let mut r = RefAdam { m: m_ref[k][i], v: v_ref[k][i] };
                    p_ref[k][i] = r.step(p_ref[k][i], gi.into(), 0.001, t);
                    (m_ref[k][i], v_ref[k][i]) = (r.m, r.v);
                }
            }
        }
        opt.step(model.params_mut(), &g).unwrap();
        for (k, (spec, v)) in model.params().iter().enumerate() {
            for (i, &x) in v.iter().enumerate() {
                assert_close(x, p_ref[k][i], &format!("step {t} {}[{i}]", spec.name));
            }
        }
    }
}

#[test]
fn sgd_is_exact() {
    let mut model = tiny_model(3);
    let lr = 0.05f32;
    let mut opt = Optimizer::new(OptimConfig::sgd(lr), model.params()).unwrap();
    assert!(opt.state_tensors().is_empty());
    let g = grads(&mut model, 7);
    let before = model.params().clone();
    opt.step(model.params_mut(), &g).unwrap();
    let d = model.config().d;
    for (spec, after) in model.params().iter() {
        let p0 = before.get(&spec.name);
        let want: Vec<f32> = if let Some(gd) = g.dense(&spec.name) {
            p0.iter().zip(gd).map(|(&p, &g)| p - lr * g).collect()
        } else if let Some(sr) = g.embedding(&spec.name) {
            assert!(!sr.rows.is_empty());
            (0..p0.len()).map(|i| sr.row((i / d) as u32).map_or(p0[i], |r| p0[i] - lr * r[i % d])).collect()
        } else {
            p0.to_vec() // a buffer
        };
        assert_eq!(bits(after), bits(&want), "{}", spec.name);
    }
}

/// Rows of table `k` touched by `a` but not by `b`, and rows touched by neither.
fn split_rows(a: &Gradients, b: &Gradients, k: usize, n: usize) -> (Vec<u32>, Vec<u32>) {
    let only_a = a.emb[k].rows.iter().copied().filter(|&r| b.emb[k].row(r).is_none()).collect();
    let never = (0..n as u32).filter(|&r| a.emb[k].row(r).is_none() && b.emb[k].row(r).is_none()).collect();
    (only_a, never)
}

#[test]
fn lazy_adam_leaves_untouched_rows_alone_dense_option_moves_them() {
    let run = |lazy: bool| {
        let mut model = tiny_model(4);
        let cfg = OptimConfig { lazy_embeddings: lazy, ..OptimConfig::adam() };
        let mut opt = Optimizer::new(cfg, model.params()).unwrap();
        let init = model.params().clone();
        let ga = grads(&mut model, 21);
        opt.step(model.params_mut(), &ga).unwrap();
        let (p1, s1) = (model.params().clone(), opt.state_tensors());
        let gb = grads(&mut model, 22);
        opt.step(model.params_mut(), &gb).unwrap();
        (init, ga, gb, p1, s1, model.into_params(), opt.state_tensors())
    };
    let (init, ga, gb, lazy_p1, lazy_s1, lazy_p2, lazy_s2) = run(true);
    let (_, _, _, dense_p1, dense_s1, dense_p2, dense_s2) = run(false);
    let d = tiny_cfg().d;

    // After one step no row has history, so both forms agree everywhere.
    assert_eq!(params_bits(&lazy_p1), params_bits(&dense_p1));
    assert_eq!(lazy_s1, dense_s1);

    // Hand-made: a row listed with a zero gradient still takes the lazy
    // update (its moments decay); an unlisted row does not.
    let mut model = tiny_model(4);
    let mut opt = Optimizer::new(OptimConfig::adam(), model.params()).unwrap();
    let mut emb = no_rows(d);
    emb[2] = rows(d, vec![3, 5], vec![1.0, -2.0, 0.5, 0.25]);
    opt.step_with(model.params_mut(), std::iter::empty, &emb).unwrap();
    let (p1, s1) = (model.params().clone(), opt.state_tensors());
    emb[2] = rows(d, vec![3], vec![0.0, 0.0]);
    opt.step_with(model.params_mut(), std::iter::empty, &emb).unwrap();
    let s2 = opt.state_tensors();
    let (m1, m2) = (state_of(&s1, "adam.m.emb.cat"), state_of(&s2, "adam.m.emb.cat"));
    let (v1, v2) = (state_of(&s1, "adam.v.emb.cat"), state_of(&s2, "adam.v.emb.cat"));
    for i in 3 * d..4 * d {
        assert_eq!((m2[i], v2[i]), (0.9 * m1[i], 0.999 * v1[i]), "row 3");
        assert_ne!(model.params().get("emb.cat")[i], p1.get("emb.cat")[i], "row 3");
    }
    for i in 5 * d..6 * d {
        assert_eq!((m2[i], v2[i]), (m1[i], v1[i]), "row 5");
        assert_eq!(model.params().get("emb.cat")[i], p1.get("emb.cat")[i], "row 5");
    }

    let mut checked = 0;
    for (k, table) in EMB_TABLES.iter().enumerate() {
        let n = init.get(table).len() / d;
        let (only_a, never) = split_rows(&ga, &gb, k, n);
        let row = |v: &[f32], r: u32| bits(&v[r as usize * d..(r as usize + 1) * d]);
        let (m, v) = (format!("adam.m.{table}"), format!("adam.v.{table}"));
        for &r in &only_a {
            // Lazy: value and moments exactly as after step 1.
            assert_eq!(row(lazy_p2.get(table), r), row(lazy_p1.get(table), r), "{table} row {r}");
            assert_eq!(row(state_of(&lazy_s2, &m), r), row(state_of(&lazy_s1, &m), r), "{table} m row {r}");
            assert_eq!(row(state_of(&lazy_s2, &v), r), row(state_of(&lazy_s1, &v), r), "{table} v row {r}");
            // Dense: the moments decay and the value follows the old
            // momentum (when there is one: see the zero gradients above).
            let m1 = &state_of(&dense_s1, &m)[r as usize * d..(r as usize + 1) * d];
            if m1.iter().any(|&x| x != 0.0) {
                assert_ne!(row(dense_p2.get(table), r), row(dense_p1.get(table), r), "{table} row {r}");
                checked += 1;
            }
            let v1 = &state_of(&dense_s1, &v)[r as usize * d..(r as usize + 1) * d];
            let m_want: Vec<f32> = m1.iter().map(|&x| 0.9 * x).collect();
            let v_want: Vec<f32> = v1.iter().map(|&x| 0.999 * x).collect();
            assert_eq!(row(state_of(&dense_s2, &m), r), bits(&m_want), "{table} m row {r}");
            assert_eq!(row(state_of(&dense_s2, &v), r), bits(&v_want), "{table} v row {r}");
        }
        for &r in &never {
            // Never touched: initial value and zero moments in both forms
            // (the dense form moves such a row by 0 / (0 + eps) = 0).
            for (p, s) in [(&lazy_p2, &lazy_s2), (&dense_p2, &dense_s2)] {
                assert_eq!(row(p.get(table), r), row(init.get(table), r), "{table} row {r}");
                assert!(row(state_of(s, &m), r).iter().chain(&row(state_of(s, &v), r)).all(|&x| x == 0));
            }
        }
        // Rows with a non-zero gradient in step 2 moved. (A looked-up row
        // can have a zero gradient, e.g. the negative at position 0, which
        // no auxiliary term uses.)
        for (&r, gr) in gb.emb[k].rows.iter().zip(gb.emb[k].values.chunks(d)) {
            if gr.iter().any(|&x| x != 0.0) {
                assert_ne!(row(lazy_p2.get(table), r), row(lazy_p1.get(table), r), "{table} row {r}");
            }
        }
    }
    assert!(checked >= 10, "too few rows touched only by the first batch: {checked}");
    // Dense parameters are the same in both forms.
    for (spec, x) in lazy_p2.iter().filter(|(s, _)| !EMB_TABLES.contains(&s.name.as_str())) {
        assert_eq!(bits(x), bits(dense_p2.get(&spec.name)), "{}", spec.name);
    }
}

#[test]
fn clipping_scales_every_gradient_exactly() {
    let lr = 0.25f32;
    // By hand: dense gradients 3 and 4 and one embedding row (0, 12): the
    // global norm is sqrt(9 + 16 + 144) = 13; a limit of 6.5 halves them.
    let mut model = tiny_model(5);
    let d = model.config().d;
    let before = model.params().clone();
    let cfg = OptimConfig { clip_norm: Some(6.5), ..OptimConfig::sgd(lr) };
    let mut opt = Optimizer::new(cfg, model.params()).unwrap();
    let mut emb = no_rows(d);
    emb[1] = rows(d, vec![7], vec![0.0, 12.0]);
    let dense = || [("head.fc3.b", &[3.0f32][..]), ("att.fc3.b", &[4.0f32][..])].into_iter();
    opt.step_with(model.params_mut(), dense, &emb).unwrap();
    assert_eq!(opt.last_grad_norm(), 13.0);
    let p = model.params();
    assert_eq!(p.get("head.fc3.b")[0], before.get("head.fc3.b")[0] - lr * 1.5);
    assert_eq!(p.get("att.fc3.b")[0], before.get("att.fc3.b")[0] - lr * 2.0);
    assert_eq!(p.get("emb.mid")[7 * d], before.get("emb.mid")[7 * d]);
    assert_eq!(p.get("emb.mid")[7 * d + 1], before.get("emb.mid")[7 * d + 1] - lr * 6.0);

    // Real gradients: the norm in f64 over the dense gradients (in
    // `dense_iter` order) then the sparse rows, scale = (c / norm) as f32.
    for clip_ratio in [0.3, 2.0] {
        let mut model = tiny_model(6);
        let g = grads(&mut model, 31);
        let mut sum = 0.0f64;
        for v in g.dense_iter().map(|(_, v)| v).chain(g.emb.iter().map(|e| e.values.as_slice())) {
            for &x in v {
                sum += f64::from(x) * f64::from(x);
            }
        }
        let norm = sum.sqrt();
        let clip = (norm * clip_ratio) as f32;
        let scale = if norm > f64::from(clip) { (f64::from(clip) / norm) as f32 } else { 1.0 };
        assert_eq!(scale == 1.0, clip_ratio > 1.0);
        let before = model.params().clone();
        let cfg = OptimConfig { clip_norm: Some(clip), ..OptimConfig::sgd(lr) };
        let mut opt = Optimizer::new(cfg, model.params()).unwrap();
        opt.step(model.params_mut(), &g).unwrap();
        assert_eq!(opt.last_grad_norm(), norm);
        for (name, gv) in g.dense_iter() {
            let want: Vec<f32> = before.get(name).iter().zip(gv).map(|(&p, &g)| p - lr * (g * scale)).collect();
            assert_eq!(bits(model.params().get(name)), bits(&want), "{name}");
        }
        for (k, table) in EMB_TABLES.iter().enumerate() {
            for (&r, gr) in g.emb[k].rows.iter().zip(g.emb[k].values.chunks(d)) {
                let span = r as usize * d..(r as usize + 1) * d;
                let want: Vec<f32> =
                    before.get(table)[span.clone()].iter().zip(gr).map(|(&p, &g)| p - lr * (g * scale)).collect();
                assert_eq!(bits(&model.params().get(table)[span]), bits(&want), "{table} row {r}");
            }
        }
    }

    // Adam with a clipped step equals Adam fed the scaled gradients.
    let mut a = tiny_model(7);
    let mut b = tiny_model(7);
    let cfg = OptimConfig { clip_norm: Some(6.5), ..OptimConfig::adam() };
    let mut oa = Optimizer::new(cfg, a.params()).unwrap();
    let mut ob = Optimizer::new(OptimConfig::adam(), b.params()).unwrap();
    for _ in 0..3 {
        oa.step_with(a.params_mut(), dense, &emb).unwrap();
        let half = || [("head.fc3.b", &[1.5f32][..]), ("att.fc3.b", &[2.0f32][..])].into_iter();
        let mut emb_half = no_rows(d);
        emb_half[1] = rows(d, vec![7], vec![0.0, 6.0]);
        ob.step_with(b.params_mut(), half, &emb_half).unwrap();
    }
    assert_eq!(params_bits(a.params()), params_bits(b.params()));
    assert_eq!(state_bits(&oa), state_bits(&ob));
}

#[test]
fn learning_rate_schedule() {
    let mut model = tiny_model(8);
    let mut opt = Optimizer::new(OptimConfig::sgd(0.1), model.params()).unwrap();
    assert_eq!(opt.lr(), 0.1);
    assert_eq!(opt.halve_lr(), 0.05);
    assert_eq!(opt.lr(), 0.05);
    opt.halve_lr();
    assert_eq!(opt.lr(), 0.025);
    // The current rate is the one applied.
    let d = model.config().d;
    let p0 = model.params().get("head.fc3.b")[0];
    opt.step_with(model.params_mut(), || [("head.fc3.b", &[2.0f32][..])].into_iter(), &no_rows(d)).unwrap();
    assert_eq!(model.params().get("head.fc3.b")[0], p0 - 0.025 * 2.0);
    opt.set_lr(0.5).unwrap();
    assert_eq!(opt.lr(), 0.5);
    for bad in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        assert!(matches!(opt.set_lr(bad), Err(TrainError::Config(_))), "{bad}");
        assert_eq!(opt.lr(), 0.5);
    }
    assert_eq!(Optimizer::new(OptimConfig::adam(), model.params()).unwrap().lr(), 0.001);
}

#[test]
fn config_defaults_and_validation() {
    let c = OptimConfig::default();
    assert_eq!((c.kind, c.lr, c.beta1, c.beta2, c.eps), (OptimKind::Adam, 0.001, 0.9, 0.999, 1e-8));
    assert!(c.lazy_embeddings && c.clip_norm.is_none());
    assert_eq!("sgd".parse::<OptimKind>().unwrap(), OptimKind::Sgd);
    assert_eq!(OptimKind::Adam.to_string(), "adam");
    assert!("adagrad".parse::<OptimKind>().is_err());
    let bad = [
        ("lr", OptimConfig { lr: 0.0, ..c.clone() }),
        ("lr", OptimConfig { lr: f32::NAN, ..c.clone() }),
        ("beta1", OptimConfig { beta1: 1.0, ..c.clone() }),
        ("beta2", OptimConfig { beta2: -0.1, ..c.clone() }),
        ("eps", OptimConfig { eps: 0.0, ..c.clone() }),
        ("clip_norm", OptimConfig { clip_norm: Some(0.0), ..c.clone() }),
        ("clip_norm", OptimConfig { clip_norm: Some(f32::INFINITY), ..c.clone() }),
    ];
    let params = ParamStore::<f32>::zeros(&tiny_cfg());
    for (field, cfg) in bad {
        match Optimizer::new(cfg, &params) {
            Err(TrainError::Config(msg)) => assert!(msg.contains(field), "{msg}"),
            other => panic!("{field}: {other:?}"),
        }
    }
    // SGD ignores Adam's settings.
    assert!(OptimConfig { beta1: 2.0, ..OptimConfig::sgd(0.1) }.validate().is_ok());
}

// ---------------------------------------------------------------------------
// State.

/// `n` steps of `cfg` on model `seed`, halving the rate after step 2; with
/// `resume_at = Some(k)`, the model and the optimiser go through checkpoint
/// files after `k` steps and a fresh model and optimiser continue.
fn run_steps(cfg: &OptimConfig, n: u64, resume_at: Option<u64>, dir: &std::path::Path) -> (Model, Optimizer) {
    let mut model = tiny_model(9);
    let mut opt = Optimizer::new(cfg.clone(), model.params()).unwrap();
    for step in 0..n {
        if Some(step) == resume_at {
            let ckpt = dir.join("model.safetensors");
            checkpoint::save(&ckpt, model.config(), model.params()).unwrap();
            opt.save(&sidecar_path(&ckpt)).unwrap();
            assert!(dir.join("model.optim.safetensors").is_file());
            let (mc, params) = checkpoint::load(&ckpt).unwrap();
            model = Model::new(mc, params).unwrap();
            opt = Optimizer::new(cfg.clone(), model.params()).unwrap();
            opt.load(&sidecar_path(&ckpt)).unwrap();
        }
        let g = grads(&mut model, 40 + step);
        opt.step(model.params_mut(), &g).unwrap();
        if step == 1 {
            opt.halve_lr();
        }
    }
    (model, opt)
}

#[test]
fn state_round_trip_continues_bit_identically() {
    let dir = temp_dir("resume");
    let configs = [
        OptimConfig::adam(),
        OptimConfig { lazy_embeddings: false, clip_norm: Some(0.05), ..OptimConfig::adam() },
        OptimConfig::sgd(0.1),
    ];
    for cfg in &configs {
        let (a, oa) = run_steps(cfg, 5, None, &dir);
        let (b, ob) = run_steps(cfg, 5, Some(3), &dir);
        assert_eq!(params_bits(a.params()), params_bits(b.params()), "{cfg:?}");
        assert_eq!(state_bits(&oa), state_bits(&ob), "{cfg:?}");
        assert_eq!((oa.steps(), oa.lr().to_bits()), (ob.steps(), ob.lr().to_bits()));
        assert_eq!((ob.steps(), ob.lr()), (5, cfg.lr / 2.0));
        // A step that did not go through the files differs (the test is not vacuous).
        let (c, _) = run_steps(cfg, 4, None, &dir);
        assert_ne!(params_bits(a.params()), params_bits(c.params()));
    }
    std::fs::remove_dir_all(&dir).unwrap();

    // In memory: bytes and `state_tensors` + `state_metadata` restore the same.
    let (model, opt) = run_steps(&OptimConfig::adam(), 2, None, &dir);
    let mut from_bytes = Optimizer::new(OptimConfig::adam(), model.params()).unwrap();
    from_bytes.load_bytes(&opt.state_to_bytes().unwrap()).unwrap();
    let mut from_parts = Optimizer::new(OptimConfig::adam(), model.params()).unwrap();
    let mut meta = opt.state_metadata();
    meta.insert("train.epoch".into(), "3".into()); // keys of other owners are ignored
    from_parts.load_state(&meta, opt.state_tensors()).unwrap();
    for o in [&from_bytes, &from_parts] {
        assert_eq!(state_bits(o), state_bits(&opt));
        assert_eq!((o.steps(), o.lr()), (2, 0.0005));
    }
}

#[test]
fn state_holds_full_tables_and_no_buffers() {
    let mut model = tiny_model(10);
    let mut opt = Optimizer::new(OptimConfig::adam(), model.params()).unwrap();
    let g = grads(&mut model, 50);
    opt.step(model.params_mut(), &g).unwrap();
    let state = opt.state_tensors();
    let trainable: Vec<_> = model.params().specs().iter().filter(|s| s.kind == TensorKind::Param).collect();
    assert_eq!(state.len(), 2 * trainable.len());
    for s in &trainable {
        for prefix in ["adam.m.", "adam.v."] {
            let (_, shape, v) = state.iter().find(|(n, _, _)| *n == format!("{prefix}{}", s.name)).unwrap();
            assert_eq!(shape, &s.shape);
            assert_eq!(v.len(), s.numel());
        }
    }
    assert!(state.iter().all(|(n, _, _)| !n.contains("running")));
    let d = model.config().d;
    let m = state_of(&state, "adam.m.emb.mid");
    for r in 0..tiny_cfg().n_mid as u32 {
        let row = &m[r as usize * d..(r as usize + 1) * d];
        // Full table: m = 0.1·g on rows with a non-zero gradient, zero elsewhere.
        let nonzero_grad = g.emb[1].row(r).is_some_and(|gr| gr.iter().any(|&x| x != 0.0));
        assert_eq!(nonzero_grad, row.iter().any(|&x| x != 0.0), "row {r}");
    }
    let meta = opt.state_metadata();
    assert_eq!(meta["optim.step"], "1");
    assert_eq!(meta["optim.kind"], "adam");
    assert_eq!(meta["optim.lr"].parse::<f32>().unwrap(), 0.001);
}

#[test]
fn load_state_rejects_bad_files_and_changes_nothing() {
    let mut model = tiny_model(11);
    let mut good = Optimizer::new(OptimConfig::adam(), model.params()).unwrap();
    let g = grads(&mut model, 60);
    good.step(model.params_mut(), &g).unwrap();
    let (meta, tensors) = (good.state_metadata(), good.state_tensors());

    type Meta = BTreeMap<String, String>;
    type Tensors = Vec<(String, Vec<usize>, Vec<f32>)>;
    type Edit = Box<dyn Fn(&mut Meta, &mut Tensors)>;
    fn edit(f: impl Fn(&mut Meta, &mut Tensors) + 'static) -> Edit {
        Box::new(f)
    }
    fn on(t: &mut Tensors, name: &str, f: impl Fn(&mut (String, Vec<usize>, Vec<f32>))) {
        t.iter_mut().filter(|x| x.0 == name).for_each(f);
    }
    let cases: Vec<(&str, Edit)> = vec![
        ("optim.kind", edit(|m, _| _ = m.insert("optim.kind".into(), "sgd".into()))),
        ("optim.step", edit(|m, _| _ = m.remove("optim.step"))),
        ("optim.lr", edit(|m, _| _ = m.insert("optim.lr".into(), "-1".into()))),
        ("optim.beta2", edit(|m, _| _ = m.insert("optim.beta2".into(), "0.99".into()))),
        ("optim.format_version", edit(|m, _| _ = m.insert("optim.format_version".into(), "2".into()))),
        ("adam.v.gru1.b", edit(|_, t| t.retain(|(n, _, _)| n != "adam.v.gru1.b"))),
        ("adam.m.head.fc1.w", edit(|_, t| on(t, "adam.m.head.fc1.w", |x| x.1.reverse()))),
        ("adam.m.emb.uid", edit(|_, t| on(t, "adam.m.emb.uid", |x| x.2[3] = f32::NAN))),
        ("adam.v.att.fc1.b", edit(|_, t| on(t, "adam.v.att.fc1.b", |x| x.2[0] = -1.0))),
        (
            "adam.m.head.bn.running_mean",
            edit(|_, t| t.push(("adam.m.head.bn.running_mean".into(), vec![1], vec![0.0]))),
        ),
    ];
    for (what, edit) in cases {
        let mut fresh = Optimizer::new(OptimConfig::adam(), model.params()).unwrap();
        let before = state_bits(&fresh);
        let (mut m, mut t) = (meta.clone(), tensors.clone());
        edit(&mut m, &mut t);
        match fresh.load_state(&m, t) {
            Err(e) => assert!(e.to_string().contains(what), "{what}: {e}"),
            Ok(()) => panic!("{what}: accepted"),
        }
        assert_eq!(state_bits(&fresh), before, "{what}");
        assert_eq!((fresh.steps(), fresh.lr()), (0, 0.001), "{what}");
    }
    // A corrupted file fails its checksum.
    let mut bytes = good.state_to_bytes().unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    let err = Optimizer::new(OptimConfig::adam(), model.params()).unwrap().load_bytes(&bytes).unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");
    // SGD state has no tensors and refuses Adam's.
    let mut sgd = Optimizer::new(OptimConfig::sgd(0.1), model.params()).unwrap();
    assert!(sgd.load_state(&meta, tensors).is_err());
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
    for cfg in [
        OptimConfig::adam(),
        OptimConfig { lazy_embeddings: false, clip_norm: Some(0.01), ..OptimConfig::adam() },
        OptimConfig { clip_norm: Some(0.01), ..OptimConfig::sgd(0.1) },
    ] {
        let mut model = tiny_model(15);
        let g = grads(&mut model, 90);
        let mut opt = Optimizer::new(cfg.clone(), model.params()).unwrap();
        let params = model.params_mut();
        opt.step(params, &g).unwrap();
        let n = allocations_in(|| {
            for _ in 0..3 {
                opt.step(params, &g).unwrap();
            }
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
