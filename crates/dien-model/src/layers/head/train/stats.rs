//! The batch statistics of the head's normalised layers (BatchNorm and the
//! two Dice layers), their backward, and the column sums of the parameter
//! gradients of its element-wise layers.
//!
//! Every per-column quantity is a sum over the rows in row order. On
//! several threads the columns are cut into blocks ([`par_cols`]), each
//! block summed over all rows by one thread: every element is then the
//! same chain of additions whoever computes it, so the bits do not depend
//! on the number of threads.

use rayon::prelude::*;

use crate::error::ModelError;
use crate::mode::Mode;
use crate::sync::StatSync;

/// Scratch of the synchronised statistics (f64 sums and means), kept
/// between steps so that a step allocates nothing.
#[derive(Clone, Debug, Default)]
pub(crate) struct SyncScratch {
    sums: Vec<f64>,
    means: Vec<f64>,
}

/// Fewest columns a thread sums: below this, handing a block to another
/// thread costs more than the block.
const MIN_COLS: usize = 16;

/// Fewest elements (rows × columns) summed on several threads: smaller
/// sums take a few microseconds, about what a hand-off costs.
const MIN_PAR: usize = 1 << 15;

/// The columns per block for sums over `rows` rows of `cols` columns.
fn col_block(rows: usize, cols: usize) -> usize {
    if rows * cols < MIN_PAR {
        return cols.max(1);
    }
    cols.div_ceil(rayon::current_num_threads()).max(MIN_COLS)
}

/// Runs `f(j0, a, b)` on all threads over blocks of columns of a sum over
/// `rows` rows: `a` and `b` are the parts of `a_all` and `b_all` (one
/// element per column, same length) that start at column `j0`.
pub(super) fn par_cols2<A: Send, B: Send>(
    rows: usize,
    a_all: &mut [A],
    b_all: &mut [B],
    f: impl Fn(usize, &mut [A], &mut [B]) + Sync,
) {
    debug_assert_eq!(a_all.len(), b_all.len());
    let block = col_block(rows, a_all.len());
    a_all.par_chunks_mut(block).zip(b_all.par_chunks_mut(block)).enumerate().for_each(|(k, (a, b))| f(k * block, a, b));
}

/// [`par_cols2`] over one array.
pub(super) fn par_cols<A: Send>(rows: usize, a_all: &mut [A], f: impl Fn(usize, &mut [A]) + Sync) {
    let block = col_block(rows, a_all.len());
    a_all.par_chunks_mut(block).enumerate().for_each(|(k, a)| f(k * block, a));
}

/// `sums[j] += x[r, j]` over the rows of `x [rows, cols]` in order, on all
/// threads.
pub(super) fn add_column_sums(sums: &mut [f32], x: &[f32], rows: usize, cols: usize) {
    par_cols(rows, &mut sums[..cols], |j0, part| {
        for r in 0..rows {
            let xr = &x[r * cols + j0..r * cols + j0 + part.len()];
            for (s, &v) in part.iter_mut().zip(xr) {
                *s += v;
            }
        }
    });
}

/// Mean and biased variance of each column of `x [rows, cols]`, in f64,
/// over the rows of every replica: the column sums and this replica's row
/// count are summed over the replicas, then the sums of squared deviations
/// from the global mean (two passes, so that the variance has no
/// cancellation). Each column is summed in row order, as a single pass over
/// the rows would. Returns the number of rows of all replicas together.
pub(super) fn column_stats(
    x: &[f32],
    rows: usize,
    cols: usize,
    mean: &mut [f32],
    var: &mut [f32],
    sc: &mut SyncScratch,
    sync: &mut dyn StatSync,
) -> Result<usize, ModelError> {
    let SyncScratch { sums, means } = sc;
    sums.clear();
    sums.resize(cols + 1, 0.0);
    par_cols(rows, &mut sums[..cols], |j0, part| {
        for r in 0..rows {
            for (s, &v) in part.iter_mut().zip(&x[r * cols + j0..]) {
                *s += v as f64;
            }
        }
    });
    sums[cols] = rows as f64;
    sync.sum(sums)?;
    let n = sums[cols];
    if n < 1.0 {
        return Err(ModelError::Batch("no rows to compute batch statistics over (empty batch)".into()));
    }
    means.clear();
    means.extend(sums[..cols].iter().map(|&s| s / n));
    sums[..cols].fill(0.0);
    let means = &*means;
    par_cols(rows, &mut sums[..cols], |j0, part| {
        for r in 0..rows {
            for ((s, &v), &m) in part.iter_mut().zip(&x[r * cols + j0..]).zip(&means[j0..]) {
                let d = v as f64 - m;
                *s += d * d;
            }
        }
    });
    sync.sum(&mut sums[..cols])?;
    for j in 0..cols {
        mean[j] = means[j] as f32;
        var[j] = (sums[j] / n) as f32;
    }
    Ok(n as usize)
}

/// Normalisation statistics used by one forward pass.
#[derive(Clone, Debug, Default)]
pub(crate) struct NormStats {
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    /// `1 / sqrt(var + eps)`.
    pub inv_std: Vec<f32>,
}

impl NormStats {
    pub(super) fn new(n: usize) -> Self {
        Self { mean: vec![0.0; n], var: vec![0.0; n], inv_std: vec![0.0; n] }
    }

    /// The batch statistics of `x` (training, over every replica's rows;
    /// returns their number) or the running ones (evaluation; returns
    /// `rows`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn compute(
        &mut self,
        mode: Mode,
        x: &[f32],
        rows: usize,
        run_mean: &[f32],
        run_var: &[f32],
        eps: f32,
        sc: &mut SyncScratch,
        sync: &mut dyn StatSync,
    ) -> Result<usize, ModelError> {
        let cols = self.mean.len();
        let n = match mode {
            Mode::Train => column_stats(x, rows, cols, &mut self.mean, &mut self.var, sc, sync)?,
            Mode::Eval => {
                self.mean.copy_from_slice(run_mean);
                self.var.copy_from_slice(run_var);
                rows
            }
        };
        for (s, &v) in self.inv_std.iter_mut().zip(&self.var) {
            *s = 1.0 / (v + eps).sqrt();
        }
        Ok(n)
    }
}

/// Backward of `x̂ = (x − μ)·s` where μ, σ² are the batch statistics:
/// `dx += s·(dx̂ − mean(dx̂) − x̂·mean(dx̂ ∘ x̂))` per column (training, the
/// means over the `total` rows of every replica, their sums exchanged); in
/// evaluation the statistics are constants and `dx += s·dx̂`.
#[allow(clippy::too_many_arguments)]
pub(super) fn norm_backward_acc(
    mode: Mode,
    xhat: &[f32],
    dxhat: &[f32],
    inv_std: &[f32],
    rows: usize,
    total: usize,
    dx: &mut [f32],
    sc: &mut SyncScratch,
    sync: &mut dyn StatSync,
) -> Result<(), ModelError> {
    let cols = inv_std.len();
    match mode {
        Mode::Eval => {
            par_rows(&mut dx[..rows * cols], cols, |r, dxr| {
                for j in 0..cols {
                    dxr[j] += inv_std[j] * dxhat[r * cols + j];
                }
            });
        }
        Mode::Train => {
            // [Σ dx̂ | Σ dx̂ ∘ x̂] per column, each summed in row order.
            let sums = &mut sc.sums;
            sums.clear();
            sums.resize(2 * cols, 0.0);
            let (sg, sgx) = sums.split_at_mut(cols);
            par_cols2(rows, sg, sgx, |j0, sg, sgx| {
                for r in 0..rows {
                    let (g, xh) = (&dxhat[r * cols + j0..], &xhat[r * cols + j0..]);
                    for j in 0..sg.len() {
                        let gj = g[j] as f64;
                        sg[j] += gj;
                        sgx[j] += gj * xh[j] as f64;
                    }
                }
            });
            sync.sum(sums)?;
            // The two means, once per column.
            let n = total as f64;
            for s in sums.iter_mut() {
                *s /= n;
            }
            let sums = &*sums;
            par_rows(&mut dx[..rows * cols], cols, |r, dxr| {
                for j in 0..cols {
                    let (mg, mgx) = (sums[j] as f32, sums[cols + j] as f32);
                    let i = r * cols + j;
                    dxr[j] += inv_std[j] * (dxhat[i] - mg - xhat[i] * mgx);
                }
            });
        }
    }
    Ok(())
}

/// Runs `f(r, row)` over the rows (`cols` values each) of `v` on all
/// threads.
pub(super) fn par_rows(v: &mut [f32], cols: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    v.par_chunks_mut(cols).with_min_len(16).enumerate().for_each(|(r, row)| f(r, row));
}
