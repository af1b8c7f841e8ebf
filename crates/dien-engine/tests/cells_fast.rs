//! The fast fused cells against the f64 reference, plus the properties the
//! fast path promises on top: padding isolation, thread-count independence,
//! workspace reuse, and no allocation once the workspace has grown.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use dien_engine::cell::fast::{CHUNK, CellWorkspace, GruCell, Mode};
use dien_engine::cell::{CellKind, GruGrads, GruParams, SeqInput, reference};
use dien_engine::gemm::tile::Accumulate;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Counts allocations while `COUNTING` is set (see
/// `no_allocation_once_the_workspace_has_grown`).
struct CountingAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static ALLOC_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; the counters are
// plain atomics.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            ALLOC_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            ALLOC_BYTES.fetch_add(new_size, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Tests in this file run one at a time so the allocation count sees only
/// the test that measures it.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// One random problem: f32 data (the fast path's), compared in f64.
#[derive(Clone)]
struct Case {
    kind: CellKind,
    input: usize,
    hidden: usize,
    batch: usize,
    steps: usize,
    w_ih: Vec<f32>,
    w_hh: Vec<f32>,
    b: Vec<f32>,
    x: Vec<f32>,
    lengths: Vec<usize>,
    att: Option<Vec<f32>>,
    h0: Option<Vec<f32>>,
    d_states: Vec<f32>,
    d_last: Vec<f32>,
}

fn uniform(rng: &mut ChaCha8Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

fn to64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

impl Case {
    #[allow(clippy::too_many_arguments)]
    fn random(
        kind: CellKind,
        input: usize,
        hidden: usize,
        batch: usize,
        steps: usize,
        with_h0: bool,
        seed: u64,
    ) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let s = (1.0 / hidden as f32).sqrt();
        let h3 = 3 * hidden;
        // Lengths cover 0, 1 and T, then random.
        let lengths = (0..batch)
            .map(|i| match i % 7 {
                0 => steps,
                3 => 0,
                5 => 1.min(steps),
                _ => rng.random_range(0..=steps),
            })
            .collect();
        Self {
            kind,
            input,
            hidden,
            batch,
            steps,
            w_ih: uniform(&mut rng, h3 * input, -s, s),
            w_hh: uniform(&mut rng, h3 * hidden, -s, s),
            b: uniform(&mut rng, h3, -0.5, 1.0),
            x: uniform(&mut rng, batch * steps * input, -1.5, 1.5),
            lengths,
            att: kind.uses_attention().then(|| uniform(&mut rng, batch * steps, 0.0, 1.0)),
            h0: with_h0.then(|| uniform(&mut rng, batch * hidden, -0.8, 0.8)),
            d_states: uniform(&mut rng, batch * steps * hidden, -1.0, 1.0),
            d_last: uniform(&mut rng, batch * hidden, -1.0, 1.0),
        }
    }
    fn params(&self) -> GruParams<'_, f32> {
        GruParams { w_ih: &self.w_ih, w_hh: &self.w_hh, b: &self.b, input: self.input, hidden: self.hidden }
    }
    fn seq(&self) -> SeqInput<'_, f32> {
        SeqInput {
            x: &self.x,
            lengths: &self.lengths,
            att: self.att.as_deref(),
            h0: self.h0.as_deref(),
            batch: self.batch,
            steps: self.steps,
        }
    }
    fn cell(&self) -> GruCell {
        let mut c = GruCell::new(self.kind, self.input, self.hidden);
        c.set_params(&self.params());
        c
    }
    fn valid(&self, b: usize, t: usize) -> bool {
        t < self.lengths[b]
    }
}

/// Everything one forward + backward of the fast path produces.
#[derive(Clone, Debug, PartialEq)]
struct FastOut {
    states: Vec<f32>,
    last: Vec<f32>,
    grads: GruGrads<f32>,
    dx: Vec<f32>,
    d_att: Vec<f32>,
    dh0: Vec<f32>,
}

/// Non-zero starting gradients, to check accumulation.
fn start_grads(case: &Case) -> GruGrads<f32> {
    let mut g = GruGrads::zeros(case.input, case.hidden);
    for (i, v) in g.w_ih.iter_mut().chain(g.w_hh.iter_mut()).chain(g.b.iter_mut()).enumerate() {
        *v = ((i % 13) as f32 - 6.0) * 0.01;
    }
    g
}

fn run_fast(case: &Case, ws: &mut CellWorkspace) -> FastOut {
    let cell = case.cell();
    let (b, t, h) = (case.batch, case.steps, case.hidden);
    let seq = case.seq();
    // NaN-filled outputs: every entry must be written.
    let mut states = vec![f32::NAN; b * t * h];
    let mut last = vec![f32::NAN; b * h];
    cell.forward(&seq, ws, Mode::Train, &mut states, &mut last);
    let mut grads = start_grads(case);
    let mut dx = vec![f32::NAN; b * t * case.input];
    let mut d_att = vec![f32::NAN; b * t];
    let mut dh0 = vec![f32::NAN; b * h];
    cell.backward(
        &seq,
        ws,
        Some(&case.d_states),
        Some(&case.d_last),
        &mut grads,
        &mut dx,
        Some(&mut d_att),
        Some(&mut dh0),
    );
    FastOut { states, last, grads, dx, d_att, dh0 }
}

/// `max |got − want| ≤ tol · max(1, max |want|)`.
fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1.0f64, |m, w| m.max(w.abs()));
    let (mut worst, mut at) = (0.0f64, 0);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let e = (g as f64 - w).abs();
        if e.is_nan() || e > worst {
            (worst, at) = (if e.is_nan() { f64::INFINITY } else { e }, i);
        }
    }
    assert!(
        worst <= tol * scale,
        "{what}: max abs error {worst:.3e} at {at} (got {}, want {}), allowed {:.3e}",
        got[at],
        want[at],
        tol * scale
    );
}

fn check_against_reference(case: &Case) {
    let mut ws = CellWorkspace::new();
    let fast = run_fast(case, &mut ws);

    let (w_ih, w_hh, b) = (to64(&case.w_ih), to64(&case.w_hh), to64(&case.b));
    let p = GruParams { w_ih: &w_ih, w_hh: &w_hh, b: &b, input: case.input, hidden: case.hidden };
    let (x, att, h0) = (to64(&case.x), case.att.as_deref().map(to64), case.h0.as_deref().map(to64));
    let seq = SeqInput {
        x: &x,
        lengths: &case.lengths,
        att: att.as_deref(),
        h0: h0.as_deref(),
        batch: case.batch,
        steps: case.steps,
    };
    let rf = reference::forward(case.kind, &p, &seq);
    let mut rg = GruGrads {
        w_ih: to64(&start_grads(case).w_ih),
        w_hh: to64(&start_grads(case).w_hh),
        b: to64(&start_grads(case).b),
    };
    let (ds, dl) = (to64(&case.d_states), to64(&case.d_last));
    let ri = reference::backward(case.kind, &p, &seq, &rf, Some(&ds), Some(&dl), &mut rg);

    let name = |w: &str| {
        format!(
            "{} in={} H={} B={} T={} h0={}: {w}",
            case.kind.name(),
            case.input,
            case.hidden,
            case.batch,
            case.steps,
            case.h0.is_some()
        )
    };
    assert_close(&name("states"), &fast.states, &rf.states, 1e-5);
    assert_close(&name("last"), &fast.last, &rf.last, 1e-5);
    assert_close(&name("dx"), &fast.dx, &ri.x, 1e-4);
    assert_close(&name("d_att"), &fast.d_att, &ri.att, 1e-4);
    assert_close(&name("dh0"), &fast.dh0, &ri.h0, 1e-4);
    assert_close(&name("dw_ih"), &fast.grads.w_ih, &rg.w_ih, 1e-4);
    assert_close(&name("dw_hh"), &fast.grads.w_hh, &rg.w_hh, 1e-4);
    assert_close(&name("db"), &fast.grads.b, &rg.b, 1e-4);
    // Padded steps: zero states and zero gradients, exactly.
    for bi in 0..case.batch {
        for t in case.lengths[bi]..case.steps {
            let o = bi * case.steps + t;
            assert!(fast.states[o * case.hidden..(o + 1) * case.hidden].iter().all(|&v| v == 0.0));
            assert!(fast.dx[o * case.input..(o + 1) * case.input].iter().all(|&v| v == 0.0));
            assert_eq!(fast.d_att[o], 0.0);
        }
    }
}

#[test]
fn forward_and_backward_match_the_f64_reference_for_every_kind() {
    let _g = serial();
    for (k, &kind) in CellKind::ALL.iter().enumerate() {
        // The default widths (H = 36: not a multiple of 8) with B not a
        // multiple of the chunk, odd small widths, and a state narrower
        // than half a vector (its padded lanes span more than one step).
        for (j, &(input, hidden, batch, steps)) in
            [(36, 36, CHUNK + 5, 12), (7, 13, 9, 6), (9, 8, 3, 5), (4, 3, 9, 6)].iter().enumerate()
        {
            for with_h0 in [false, true] {
                let seed = (k * 10 + j * 2 + with_h0 as usize) as u64;
                check_against_reference(&Case::random(kind, input, hidden, batch, steps, with_h0, seed));
            }
        }
    }
}

#[test]
fn batch_of_one_and_single_step() {
    let _g = serial();
    for &kind in &CellKind::ALL {
        let mut c = Case::random(kind, 36, 36, 1, 7, true, 50);
        c.lengths[0] = 7;
        check_against_reference(&c);
        let mut c = Case::random(kind, 5, 11, 4, 1, false, 51);
        c.lengths = vec![1, 0, 1, 1];
        check_against_reference(&c);
    }
}

#[test]
fn padded_positions_change_nothing() {
    let _g = serial();
    for &kind in &CellKind::ALL {
        let clean = Case::random(kind, 12, 20, 19, 8, true, 60);
        let mut dirty = clean.clone();
        for bi in 0..clean.batch {
            for t in 0..clean.steps {
                if !clean.valid(bi, t) {
                    let o = bi * clean.steps + t;
                    dirty.x[o * clean.input..(o + 1) * clean.input].fill(f32::NAN);
                    dirty.d_states[o * clean.hidden..(o + 1) * clean.hidden].fill(1e30);
                    if let Some(a) = dirty.att.as_mut() {
                        a[o] = f32::NAN;
                    }
                }
            }
        }
        let a = run_fast(&clean, &mut CellWorkspace::new());
        let b = run_fast(&dirty, &mut CellWorkspace::new());
        assert_eq!(a, b, "{}: padded inputs leaked into outputs or gradients", kind.name());
    }
}

fn bits(o: &FastOut) -> Vec<u32> {
    let g = &o.grads;
    [&o.states, &o.last, &g.w_ih, &g.w_hh, &g.b, &o.dx, &o.d_att, &o.dh0]
        .iter()
        .flat_map(|v| v.iter().map(|x| x.to_bits()))
        .collect()
}

#[test]
fn results_are_bit_identical_for_1_2_and_7_threads() {
    let _g = serial();
    for &kind in &[CellKind::Augru, CellKind::Aigru] {
        let case = Case::random(kind, 36, 36, 3 * CHUNK - 5, 10, true, 70);
        let runs: Vec<Vec<u32>> = [1, 2, 7]
            .iter()
            .map(|&n| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap();
                pool.install(|| bits(&run_fast(&case, &mut CellWorkspace::new())))
            })
            .collect();
        assert!(runs[0] == runs[1], "{}: 1 vs 2 threads differ", kind.name());
        assert!(runs[0] == runs[2], "{}: 1 vs 7 threads differ", kind.name());
    }
}

#[test]
fn a_workspace_is_reused_across_smaller_and_larger_batches() {
    let _g = serial();
    let mut ws = CellWorkspace::new();
    for (i, &(batch, steps)) in [(2 * CHUNK + 3, 9), (5, 4), (3 * CHUNK, 11), (1, 9)].iter().enumerate() {
        let case = Case::random(CellKind::AugruRef, 10, 36, batch, steps, i % 2 == 0, 80 + i as u64);
        let reused = run_fast(&case, &mut ws);
        let fresh = run_fast(&case, &mut CellWorkspace::new());
        assert_eq!(bits(&reused), bits(&fresh), "batch {batch}, T {steps}: a reused workspace changed the results");
    }
}

#[test]
fn inference_mode_gives_the_training_forward() {
    let _g = serial();
    // T across several inference step blocks, widths whose gate rows need
    // padding (3·6 = 18, 3·36 = 108) and not (3·8 = 24).
    let shapes = [(36, 36, 10), (4, 6, 23), (10, 36, 17), (5, 8, 9)];
    for (&kind, (si, &(input, hidden, steps))) in CellKind::ALL
        .iter()
        .zip(shapes.iter().enumerate().cycle())
        .chain(shapes.iter().enumerate().map(|s| (&CellKind::Augru, s)))
    {
        let case = Case::random(kind, input, hidden, CHUNK + 9, steps, true, 90 + si as u64);
        let cell = case.cell();
        let n = case.batch * case.steps * case.hidden;
        let (mut s1, mut l1) = (vec![f32::NAN; n], vec![f32::NAN; case.batch * case.hidden]);
        let (mut s2, mut l2) = (s1.clone(), l1.clone());
        let mut ws = CellWorkspace::new();
        cell.forward(&case.seq(), &mut ws, Mode::Train, &mut s1, &mut l1);
        cell.forward(&case.seq(), &mut ws, Mode::Infer, &mut s2, &mut l2);
        assert!(s1.iter().zip(&s2).all(|(a, b)| a.to_bits() == b.to_bits()), "{}: states", kind.name());
        // Padded steps stay zero.
        for (b, &len) in case.lengths.iter().enumerate() {
            let row = &s2[(b * steps + len) * hidden..(b + 1) * steps * hidden];
            assert!(row.iter().all(|&v| v == 0.0), "{}: padded steps of sample {b}", kind.name());
        }
        assert!(l1.iter().zip(&l2).all(|(a, b)| a.to_bits() == b.to_bits()), "{}: last", kind.name());
        // Only the last states: the same bits, whatever the chunking.
        let mut l3 = vec![f32::NAN; case.batch * case.hidden];
        cell.forward_last(&case.seq(), &mut ws, &mut l3);
        assert!(l1.iter().zip(&l3).all(|(a, b)| a.to_bits() == b.to_bits()), "{}: forward_last", kind.name());
    }
}

#[test]
fn zero_steps_pass_h0_through() {
    let _g = serial();
    let case = Case::random(CellKind::Augru, 4, 6, 3, 0, true, 95);
    let cell = case.cell();
    let mut last = vec![f32::NAN; 3 * 6];
    let mut ws = CellWorkspace::new();
    cell.forward(&case.seq(), &mut ws, Mode::Train, &mut [], &mut last);
    assert_eq!(Some(&last), case.h0.as_ref());
    let mut grads = GruGrads::zeros(4, 6);
    let mut dh0 = vec![f32::NAN; 3 * 6];
    cell.backward(&case.seq(), &mut ws, None, Some(&case.d_last), &mut grads, &mut [], None, Some(&mut dh0));
    assert_eq!(dh0, case.d_last);
    assert_eq!(grads, GruGrads::zeros(4, 6));
}

#[test]
fn adding_the_input_gradient_gives_the_bits_of_writing_it_then_adding() {
    let _g = serial();
    for kind in [CellKind::Gru, CellKind::Aigru] {
        let case = Case::random(kind, 5, 6, CHUNK + 3, 7, false, 98);
        let (b, t, n) = (case.batch, case.steps, case.input);
        let written = run_fast(&case, &mut CellWorkspace::new()).dx;
        let base: Vec<f32> = (0..b * t * n).map(|i| ((i % 11) as f32 - 5.0) * 0.37).collect();
        let cell = case.cell();
        let mut ws = CellWorkspace::new();
        let (mut states, mut last) = (vec![0.0; b * t * case.hidden], vec![0.0; b * case.hidden]);
        cell.forward(&case.seq(), &mut ws, Mode::Train, &mut states, &mut last);
        let mut grads = start_grads(&case);
        let mut dx = base.clone();
        let d = (Some(&case.d_states[..]), Some(&case.d_last[..]));
        cell.backward_dx(&case.seq(), &mut ws, d.0, d.1, &mut grads, &mut dx, Accumulate::Yes, None, None);
        for (i, ((&got, &x), &w)) in dx.iter().zip(&base).zip(&written).enumerate() {
            // Padded steps keep what the buffer held (the written form has
            // zeros there).
            let want = if case.valid(i / (t * n), (i / n) % t) { x + w } else { x };
            assert_eq!(got.to_bits(), want.to_bits(), "{kind:?}: element {i}");
        }
    }
}

#[test]
fn backward_without_a_training_forward_panics() {
    let _g = serial();
    let case = Case::random(CellKind::Gru, 4, 6, 3, 5, false, 96);
    let cell = case.cell();
    let mut ws = CellWorkspace::new();
    let (mut s, mut l) = (vec![0.0; 3 * 5 * 6], vec![0.0; 3 * 6]);
    cell.forward(&case.seq(), &mut ws, Mode::Infer, &mut s, &mut l);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut grads = GruGrads::zeros(4, 6);
        let mut dx = vec![0.0; 3 * 5 * 4];
        cell.backward(&case.seq(), &mut ws, None, None, &mut grads, &mut dx, None, None);
    }));
    assert!(r.is_err(), "backward after an inference forward must panic");
}

#[test]
fn no_allocation_once_the_workspace_has_grown() {
    let _g = serial();
    let case = Case::random(CellKind::Augru, 36, 36, 2 * CHUNK + 7, 20, true, 97);
    let cell = case.cell();
    let (b, t, h) = (case.batch, case.steps, case.hidden);
    let mut ws = CellWorkspace::new();
    let mut states = vec![0.0; b * t * h];
    let mut last = vec![0.0; b * h];
    let mut grads = GruGrads::zeros(case.input, h);
    let mut dx = vec![0.0; b * t * case.input];
    let mut d_att = vec![0.0; b * t];
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let mut call = |ws: &mut CellWorkspace| {
        pool.install(|| {
            cell.forward(&case.seq(), ws, Mode::Train, &mut states, &mut last);
            cell.backward(&case.seq(), ws, Some(&case.d_states), None, &mut grads, &mut dx, Some(&mut d_att), None);
        })
    };
    call(&mut ws);
    call(&mut ws);
    ALLOCS.store(0, Ordering::SeqCst);
    ALLOC_BYTES.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    for _ in 0..10 {
        call(&mut ws);
    }
    COUNTING.store(false, Ordering::SeqCst);
    // The thread pool's own queues may allocate now and then (small
    // blocks); the cell's buffers are hundreds of kilobytes.
    let (n, bytes) = (ALLOCS.load(Ordering::SeqCst), ALLOC_BYTES.load(Ordering::SeqCst));
    assert!(n <= 3 && bytes <= 8 * 1024, "{n} allocations ({bytes} bytes) in 10 warm forward+backward calls");
}

#[test]
fn absent_output_gradients_and_all_zero_lengths() {
    let _g = serial();
    for (j, &kind) in CellKind::ALL.iter().enumerate() {
        let mut case = Case::random(kind, 9, 36, 2 * CHUNK + 1, 6, j % 2 == 0, 100 + j as u64);
        // One whole chunk of empty sequences.
        case.lengths[CHUNK..2 * CHUNK].fill(0);
        let cell = case.cell();
        let (b, t, h, n) = (case.batch, case.steps, case.hidden, case.input);
        let (w_ih, w_hh, bias) = (to64(&case.w_ih), to64(&case.w_hh), to64(&case.b));
        let p = GruParams { w_ih: &w_ih, w_hh: &w_hh, b: &bias, input: n, hidden: h };
        let (x, att, h0) = (to64(&case.x), case.att.as_deref().map(to64), case.h0.as_deref().map(to64));
        let seq64 =
            SeqInput { x: &x, lengths: &case.lengths, att: att.as_deref(), h0: h0.as_deref(), batch: b, steps: t };
        let rf = reference::forward(kind, &p, &seq64);
        let (ds, dl) = (to64(&case.d_states), to64(&case.d_last));
        for (use_ds, use_dl) in [(false, true), (true, false)] {
            let mut ws = CellWorkspace::new();
            let (mut states, mut last) = (vec![f32::NAN; b * t * h], vec![f32::NAN; b * h]);
            cell.forward(&case.seq(), &mut ws, Mode::Train, &mut states, &mut last);
            let mut grads = GruGrads::zeros(n, h);
            let mut dx = vec![f32::NAN; b * t * n];
            let d_states = use_ds.then_some(&case.d_states[..]);
            let d_last = use_dl.then_some(&case.d_last[..]);
            // d_att and dh0 not requested.
            cell.backward(&case.seq(), &mut ws, d_states, d_last, &mut grads, &mut dx, None, None);
            let mut rg = GruGrads::zeros(n, h);
            let ri = reference::backward(
                kind,
                &p,
                &seq64,
                &rf,
                use_ds.then_some(&ds[..]),
                use_dl.then_some(&dl[..]),
                &mut rg,
            );
            let what = |w: &str| format!("{} d_states {use_ds} d_last {use_dl}: {w}", kind.name());
            assert_close(&what("states"), &states, &rf.states, 1e-5);
            assert_close(&what("last"), &last, &rf.last, 1e-5);
            assert_close(&what("dx"), &dx, &ri.x, 1e-4);
            assert_close(&what("dw_ih"), &grads.w_ih, &rg.w_ih, 1e-4);
            assert_close(&what("dw_hh"), &grads.w_hh, &rg.w_hh, 1e-4);
            assert_close(&what("db"), &grads.b, &rg.b, 1e-4);
        }
    }
}
