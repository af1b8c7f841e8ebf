//! Attention: a score for every history step given the target
//! item, softmax-normalised over the valid steps.
//!
//! - `train`: the fast `f32` forward and backward over chunks of samples.
//! - `serve`: the request path, many candidates over one history.
//! - [`reference`](mod@self::reference): the `f64` reference.
//!
//! Below: what the fast and request paths share (the split of the MLP form's
//! first layer) and the batch-level drivers of the training path.
//!
//! # The first layer of the `mlp` form
//!
//! The first layer acts on `z_t = [q; k_t; q − k_t; q ∘ k_t]`; with its
//! weight cut into the four blocks `W1 = [Wq | Wk | Wd | Wp]` that act on
//! those parts,
//!
//! ```text
//! W1 z_t + b1 = (Wk − Wd)·k_t + Wp·(q ∘ k_t) + [(Wq + Wd)·q + b1]
//! ```
//!
//! so the bracket is computed once per query and the per-step product has
//! inner width `2A` (training) or `A` plus a per-history part (requests)
//! instead of `4A`. `split_first_layer` computes the three blocks.

// Index loops mirror the equations' subscripts.
#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

pub mod reference;
pub(crate) mod serve;
#[cfg(test)]
mod tests;
pub(crate) mod train;

use rayon::prelude::*;

use self::train::{AttChunk, AttPacked, AttScratch};
use crate::fast::per_thread::Chunks;
use crate::fast::{ch_len, chunk};
use dien_engine::simd::{axpy, dot};

/// Hidden widths of the attention MLP.
pub(crate) const F1: usize = 80;
pub(crate) const F2: usize = 40;

/// Splits the first-layer weight `w1 [F1, 4A]` of the `mlp` form into the
/// blocks of the identity in the [module documentation](self): `put(o, j,
/// (Wk − Wd)[o, j], Wp[o, j], (Wq + Wd)[o, j])` for every output `o` and
/// input `j < A`. Each caller stores the blocks in its own layout.
pub(crate) fn split_first_layer(w1: &[f32], a: usize, mut put: impl FnMut(usize, usize, f32, f32, f32)) {
    assert_eq!(w1.len(), F1 * 4 * a, "att.fc1.w shape");
    for o in 0..F1 {
        let row = &w1[o * 4 * a..(o + 1) * 4 * a];
        let (wq, rest) = row.split_at(a);
        let (wk, rest) = rest.split_at(a);
        let (wd, wp) = rest.split_at(a);
        for j in 0..a {
            put(o, j, wk[j] - wd[j], wp[j], wq[j] + wd[j]);
        }
    }
}

/// The attention's chunks of a batch and the scratch their threads lend them.
pub(crate) type AttChunks = Chunks<AttChunk, AttScratch>;

/// Attention weights `att_w [B, T]` of `keys [B, T, A]` for targets `e_a`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention_forward(
    pk: &AttPacked,
    chunks: &mut AttChunks,
    keys: &[f32],
    e_a: &[f32],
    lengths: &[usize],
    att_w: &mut [f32],
    b: usize,
    t: usize,
    a: usize,
    e: usize,
) {
    let k = chunk(t);
    let nc = b.div_ceil(k);
    // One task per chunk (here and below): a thread done with the work
    // beside this stage (the auxiliary loss) can then take any one.
    let AttChunks { chunks, scr } = chunks;
    let tasks = chunks[..nc].par_iter_mut().zip(att_w.par_chunks_mut(k * t.max(1))).with_max_len(1);
    tasks.enumerate().for_each(|(c, (ch, w))| {
        let (s0, bc) = (c * k, ch_len(b, c, k));
        scr.lend(ch, |ch| {
            ch.forward(pk, &keys[s0 * t * a..(s0 + bc) * t * a], &e_a[s0 * e..(s0 + bc) * e], &lengths[s0..s0 + bc])
        });
        w.copy_from_slice(&ch.weights[..bc * t]);
    });
}

/// Backward of [`attention_forward`]: accumulates `d_keys` and `d_e_a`;
/// parameter gradients stay in the chunks.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention_backward(
    pk: &AttPacked,
    chunks: &mut AttChunks,
    keys: &[f32],
    e_a: &[f32],
    lengths: &[usize],
    d_w: &[f32],
    d_keys: &mut [f32],
    d_e_a: &mut [f32],
    b: usize,
    t: usize,
    a: usize,
    e: usize,
) {
    let k = chunk(t);
    let nc = b.div_ceil(k);
    let AttChunks { chunks, scr } = chunks;
    chunks[..nc]
        .par_iter_mut()
        .zip(d_keys.par_chunks_mut(k * t.max(1) * a))
        .zip(d_e_a.par_chunks_mut(k * e))
        .with_max_len(1)
        .enumerate()
        .for_each(|(c, ((ch, dk), dea))| {
            let (s0, bc) = (c * k, ch_len(b, c, k));
            scr.lend(ch, |ch| {
                ch.backward(
                    pk,
                    &keys[s0 * t * a..(s0 + bc) * t * a],
                    &e_a[s0 * e..(s0 + bc) * e],
                    &lengths[s0..s0 + bc],
                    &d_w[s0 * t..(s0 + bc) * t],
                    dk,
                    dea,
                )
            });
        });
}

/// `out_b = Σ_{t<L} w_t v_t`.
pub(crate) fn weighted_sum(w: &[f32], v: &[f32], lengths: &[usize], out: &mut [f32], b: usize, t: usize, a: usize) {
    for s in 0..b {
        let o = &mut out[s * a..(s + 1) * a];
        o.fill(0.0);
        for tt in 0..lengths[s] {
            let i = s * t + tt;
            axpy(w[i], &v[i * a..(i + 1) * a], o);
        }
    }
}

/// Backward of [`weighted_sum`]: `d_w` overwritten, `d_v` accumulated.
#[allow(clippy::too_many_arguments)]
pub(crate) fn weighted_sum_backward(
    w: &[f32],
    v: &[f32],
    d_out: &[f32],
    lengths: &[usize],
    d_w: &mut [f32],
    d_v: &mut [f32],
    b: usize,
    t: usize,
    a: usize,
) {
    for s in 0..b {
        let g = &d_out[s * a..(s + 1) * a];
        for tt in 0..t {
            let i = s * t + tt;
            if tt < lengths[s] {
                d_w[i] = dot(&v[i * a..(i + 1) * a], g);
                axpy(w[i], g, &mut d_v[i * a..(i + 1) * a]);
            } else {
                d_w[i] = 0.0;
            }
        }
    }
}
