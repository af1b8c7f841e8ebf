//! The fast `f32` path of every model: forward (training and evaluation)
//! and whole-model backward, batch-parallel and bit-identical for any
//! number of threads.
//!
//! Stages run one after another; inside a stage the batch is cut into fixed
//! chunks ([`CHUNK`] samples here, `dien_engine::cell::fast::CHUNK` inside
//! the recurrent cells) that run on `rayon`, and per-chunk parameter
//! gradients are summed in chunk order. BatchNorm and Dice couple the
//! samples, so the head runs on the whole batch.
//!
//! Buffers live in the model and are reused: after the first batch of a
//! given size, a step allocates nothing (every product runs on the
//! engine's own kernels, which never allocate);
//! `dien-trainer/tests/train_alloc.rs` counts.
//!
//! The layers themselves live in [`crate::layers`]; this module assembles
//! them: [`Model`] (`model.rs`) holds parameters, packed layers
//! (`crate::layers::Layers`, built from the [`Plan`](crate::Plan)), the
//! workspace (`workspace.rs`) and the [`Gradients`] (`gradients.rs`);
//! `stages.rs` runs the plan's stages.

// Stage functions take many slices.
#![allow(clippy::too_many_arguments)]

pub(crate) mod dense;
mod gradients;
mod model;
pub(crate) mod per_thread;
mod stages;
mod timing;
pub(crate) mod workspace;

pub use self::gradients::{EMB_TABLES, Gradients, SparseRows};
pub use self::model::Model;
pub use self::timing::{Stage, StageTimes};

/// Samples per chunk in the attention and auxiliary stages for histories of
/// more than [`SHORT`] steps: the unit of parallel work and of the fixed
/// gradient-reduction order.
pub const CHUNK: usize = 8;

/// Histories of at most this many steps are cut into chunks of twice
/// [`CHUNK`] samples ([`chunk`]).
pub const SHORT: usize = 16;

/// Samples per chunk for a batch of `t` steps: [`CHUNK`], or twice that for
/// short histories, whose chunks would otherwise hold few rows (small
/// products) while each still sums and hands over a whole set of parameter
/// gradients. It depends on the batch alone, so results stay those of any
/// number of threads.
pub fn chunk(t: usize) -> usize {
    if t <= SHORT { 2 * CHUNK } else { CHUNK }
}

/// The three parts of the loss of one batch (docs/MODEL.md#auxiliary-loss, #losses).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Losses {
    /// `L_target + α_aux · L_aux`: the training objective.
    pub loss: f64,
    /// Mean target log loss.
    pub loss_target: f64,
    /// Auxiliary loss (0 without negatives or without an auxiliary head).
    pub loss_aux: f64,
}

/// Samples in chunk `c` (of `k` samples each) of a batch of `b`.
pub(crate) fn ch_len(b: usize, c: usize, k: usize) -> usize {
    k.min(b - c * k)
}

pub(crate) use dien_engine::simd::grow;

/// Where vector `v` of row `i` of a row-major `[_, n]` matrix starts, and
/// how many of its lanes are columns (the rest are not stored): what a
/// fused epilogue of a product with `n` outputs reads and writes.
#[inline(always)]
pub(crate) fn vec_at(i: usize, v: usize, n: usize) -> (usize, usize) {
    use dien_engine::simd::LANES;
    (i * n + v * LANES, (n - v * LANES).min(LANES))
}

/// `dst += src`, elementwise.
pub(crate) fn add_into(dst: &mut [f32], src: &[f32]) {
    for (x, &y) in dst.iter_mut().zip(src) {
        *x += y;
    }
}

/// `dst += src`, elementwise, over several threads for large buffers.
pub(crate) fn par_add_into(dst: &mut [f32], src: &[f32]) {
    use rayon::prelude::*;
    const BLOCK: usize = 1 << 14;
    if dst.len() <= BLOCK {
        add_into(dst, src);
    } else {
        dst.par_chunks_mut(BLOCK).zip(src.par_chunks(BLOCK)).for_each(|(d, s)| add_into(d, s));
    }
}

/// Every buffer of `bufs` set to 0, in one parallel pass over blocks of all
/// of them (a training step clears megabytes of gradient buffers; one
/// thread would leave the others idle, and a pass per buffer would wait for
/// its last block each time).
pub(crate) fn par_zero_all(bufs: &mut [&mut [f32]]) {
    use rayon::prelude::*;
    const BLOCK: usize = 1 << 13;
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    if total <= 2 * BLOCK {
        bufs.iter_mut().for_each(|b| b.fill(0.0));
    } else {
        bufs.par_iter_mut().for_each(|b| b.par_chunks_mut(BLOCK).for_each(|c| c.fill(0.0)));
    }
}
