//! The Adam update rule: per-step constants ([`AdamStep`]) and the
//! embedding-row variants (lazy: touched rows only; dense: every row).

use dien_engine::simd::prefetch;
use dien_model::fast::SparseRows;
use rayon::prelude::*;

use super::OptimConfig;

/// Elements per parallel task when a whole embedding table is swept
/// (dense-embedding Adam): large enough that rayon's per-task cost vanishes.
const SWEEP_CHUNK: usize = 1 << 16;

/// Per-step constants of the Adam update.
#[derive(Clone, Copy)]
pub(super) struct AdamStep {
    b1: f32,
    c1: f32,
    b2: f32,
    c2: f32,
    /// `lr / (1 − β1^t)`.
    step_size: f32,
    /// `1 / sqrt(1 − β2^t)`.
    inv_sqrt_bc2: f32,
    eps: f32,
}

impl AdamStep {
    pub(super) fn new(cfg: &OptimConfig, lr: f32, t: u64) -> Self {
        // β^t in f64; beyond i32::MAX steps both powers are 0 anyway.
        let t = i32::try_from(t).unwrap_or(i32::MAX);
        let (b1, b2) = (f64::from(cfg.beta1), f64::from(cfg.beta2));
        let bc1 = 1.0 - b1.powi(t);
        let bc2 = 1.0 - b2.powi(t);
        Self {
            b1: cfg.beta1,
            c1: (1.0 - b1) as f32,
            b2: cfg.beta2,
            c2: (1.0 - b2) as f32,
            step_size: (f64::from(lr) / bc1) as f32,
            inv_sqrt_bc2: (1.0 / bc2.sqrt()) as f32,
            eps: cfg.eps,
        }
    }

    /// Adam on one element with gradient `g` (already scaled).
    #[inline(always)]
    fn elem(&self, p: &mut f32, m: &mut f32, v: &mut f32, g: f32) {
        let mm = self.b1 * *m + self.c1 * g;
        let vv = self.b2 * *v + self.c2 * (g * g);
        *m = mm;
        *v = vv;
        *p -= self.step_size * (mm / (vv.sqrt() * self.inv_sqrt_bc2 + self.eps));
    }

    /// Adam on equal-length slices with gradient `g · scale`.
    pub(super) fn update(&self, p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], scale: f32) {
        assert!(p.len() == m.len() && p.len() == v.len() && p.len() == g.len());
        // The head's first layer alone holds a third of the dense parameters.
        by_blocks(UPDATE_BLOCK, p, m, v, |at, p, m, v| {
            for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(&g[at..]) {
                self.elem(p, m, v, g * scale);
            }
        });
    }

    /// Adam with a zero gradient: the moments decay and `p` follows the old
    /// momentum. Bit-identical to [`AdamStep::update`] with `g = 0`.
    fn decay(&self, p: &mut [f32], m: &mut [f32], v: &mut [f32]) {
        assert!(p.len() == m.len() && p.len() == v.len());
        by_blocks(SWEEP_CHUNK, p, m, v, |_, p, m, v| {
            for ((p, m), v) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()) {
                self.elem(p, m, v, 0.0);
            }
        });
    }
}

/// `f(at, p, m, v)` over blocks of `block` values of the three slices (`at`
/// the block's first index), on all threads when there is more than one
/// block. The updates are element-wise, so any blocking gives the same
/// values.
fn by_blocks(
    block: usize,
    p: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
    f: impl Fn(usize, &mut [f32], &mut [f32], &mut [f32]) + Sync,
) {
    if p.len() <= block {
        f(0, p, m, v);
    } else {
        p.par_chunks_mut(block)
            .zip(m.par_chunks_mut(block))
            .zip(v.par_chunks_mut(block))
            .enumerate()
            .for_each(|(i, ((p, m), v))| f(i * block, p, m, v));
    }
}

/// Touched rows per parallel task of lazy Adam (a few microseconds each).
const ROWS_PER_TASK: usize = 256;

/// Values of a dense tensor [`AdamStep::update`] gives one task.
const UPDATE_BLOCK: usize = 4096;

/// How many touched rows ahead lazy Adam prefetches.
const PREFETCH_AHEAD: usize = 4;

/// Lazy Adam: only the rows of `rows` move. Elementwise, so splitting the
/// rows over threads cannot change any result.
pub(super) fn adam_rows_lazy(k: &AdamStep, p: &mut [f32], m: &mut [f32], v: &mut [f32], rows: &SparseRows, scale: f32) {
    let w = rows.width;
    if w == 0 {
        return;
    }
    lazy_part(k, (p, m, v), 0, &rows.rows, &rows.values, w, scale);
}

/// Lazy Adam on `rows` (ascending) with `values`, where `p`, `m` and `v`
/// start at table row `base`; halves of many rows run in parallel.
fn lazy_part(
    k: &AdamStep,
    (p, m, v): (&mut [f32], &mut [f32], &mut [f32]),
    base: usize,
    rows: &[u32],
    values: &[f32],
    w: usize,
    scale: f32,
) {
    if rows.len() > ROWS_PER_TASK {
        let mid = rows.len() / 2;
        // Rows ascend: everything left of row `rows[mid]` belongs to the
        // first half, so the tables split there.
        let at = (rows[mid] as usize - base) * w;
        let (pl, pr) = p.split_at_mut(at);
        let (ml, mr) = m.split_at_mut(at);
        let (vl, vr) = v.split_at_mut(at);
        let (gl, gr) = values.split_at(mid * w);
        rayon::join(
            || lazy_part(k, (pl, ml, vl), base, &rows[..mid], gl, w, scale),
            || lazy_part(k, (pr, mr, vr), rows[mid] as usize, &rows[mid..], gr, w, scale),
        );
        return;
    }
    for (i, (&r, g)) in rows.iter().zip(values.chunks_exact(w)).enumerate() {
        // The touched rows are scattered over the tables: ask for the rows
        // a few positions ahead while this one is updated.
        if let Some(&ahead) = rows.get(i + PREFETCH_AHEAD) {
            let off = (ahead as usize - base) * w;
            prefetch(p, off, w);
            prefetch(m, off, w);
            prefetch(v, off, w);
        }
        let span = (r as usize - base) * w..(r as usize - base + 1) * w;
        k.update(&mut p[span.clone()], &mut m[span.clone()], &mut v[span], g, scale);
    }
}

/// Dense-embedding Adam: touched rows take their gradient, every other row
/// the zero-gradient update, swept as contiguous runs.
pub(super) fn adam_rows_dense(
    k: &AdamStep,
    p: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
    rows: &SparseRows,
    scale: f32,
) {
    let w = rows.width;
    let mut done = 0; // elements already updated
    if w > 0 {
        for (&r, g) in rows.rows.iter().zip(rows.values.chunks_exact(w)) {
            let start = r as usize * w;
            k.decay(&mut p[done..start], &mut m[done..start], &mut v[done..start]);
            let span = start..start + w;
            k.update(&mut p[span.clone()], &mut m[span.clone()], &mut v[span], g, scale);
            done = start + w;
        }
    }
    k.decay(&mut p[done..], &mut m[done..], &mut v[done..]);
}
