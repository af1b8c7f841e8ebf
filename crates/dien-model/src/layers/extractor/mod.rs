//! Interest extractor and its auxiliary loss.
//!
//! The extractor is a plain GRU over the history rows; its states `h_t` are
//! what the attention and the evolving layer read. The auxiliary head
//! scores `h_t` against the next real behaviour and a sampled negative.
//!
//! - here: the training-path stage drivers (the GRU is the engine's cell);
//! - `aux_train`: the fast auxiliary head, forward and backward fused;
//! - [`aux_reference`]: the `f64` auxiliary loss.
//!
//! The request path runs the extractor with the engine-shaped request GRU
//! in [`crate::serve`] and has no auxiliary head.

// Index loops mirror the equations' subscripts; stage functions take many slices.
#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

pub mod aux_reference;
pub(crate) mod aux_train;
#[cfg(test)]
mod tests;

use dien_engine::cell::fast::{GruCell, Mode as CellMode};
use dien_engine::cell::{GruGrads, SeqInput};
use dien_engine::gemm::tile::Accumulate;
use rayon::prelude::*;

use self::aux_train::{AuxChunk, AuxPacked, AuxScratch};
use crate::error::ModelError;
use crate::fast::per_thread::Chunks;
use crate::fast::workspace::{Buf, Workspace};
use crate::fast::{ch_len, chunk};
use crate::sync::StatSync;

/// Extractor states `h1 [B, T, H]` and last states of the history rows.
pub(crate) fn forward(c: &GruCell, ws: &mut Workspace, lengths: &[usize], b: usize, t: usize, mode: CellMode) {
    let input = SeqInput { x: &ws.e_hist, lengths, att: None, h0: None, batch: b, steps: t };
    c.forward(&input, &mut ws.cell1, mode, &mut ws.h1, &mut ws.h1_last);
}

/// Backward of [`forward`] from `d_h1`: parameter gradients into `g`
/// (zeroed first), the input gradient added to `d_e_hist`.
pub(crate) fn backward(
    c: &GruCell,
    ws: &mut Workspace,
    g: &mut GruGrads<f32>,
    lengths: &[usize],
    b: usize,
    t: usize,
    e: usize,
) {
    zero_gru(g);
    let input = SeqInput { x: &ws.e_hist, lengths, att: None, h0: None, batch: b, steps: t };
    let dx = &mut ws.d_e_hist[..b * t * e];
    c.backward_dx(&input, &mut ws.cell1, Some(&ws.d_h1), None, g, dx, Accumulate::Yes, None, None);
}

/// Zeroes a GRU's parameter gradients.
pub(crate) fn zero_gru(g: &mut GruGrads<f32>) {
    g.w_ih.fill(0.0);
    g.w_hh.fill(0.0);
    g.b.fill(0.0);
}

/// The number of auxiliary terms `N` of the batch (one per step followed
/// by another real step): with `sync` (training mode), of every replica's
/// samples, summed through it.
pub(crate) fn aux_terms(lengths: &[usize], sync: Option<&mut (dyn StatSync + '_)>) -> Result<usize, ModelError> {
    let local: usize = lengths.iter().map(|&l| l.saturating_sub(1)).sum();
    Ok(match sync {
        Some(sync) => {
            let mut n = [local as f64];
            sync.sum(&mut n)?;
            n[0] as usize
        }
        None => local,
    })
}

/// The auxiliary loss's chunks of a batch and the scratch their threads
/// lend them.
pub(crate) type AuxChunks = Chunks<AuxChunk, AuxScratch>;

/// What the auxiliary loss reads and writes of a batch's workspace (but
/// the extractor states, which others read at the same time), lent out of
/// it so that the loss can run beside the stages that own the rest
/// ([`crate::fast::workspace::Workspace::lend_aux`]). `d_h1` is the loss's
/// own part of the state gradients.
#[derive(Default)]
pub(crate) struct AuxIo {
    pub chunks: AuxChunks,
    pub loss: Vec<f64>,
    pub e_hist: Buf,
    pub e_neg: Buf,
    pub d_h1: Buf,
    pub d_e_hist: Buf,
    pub d_e_neg: Buf,
}

/// The auxiliary loss `L_aux` of the batch (extractor states `h1`) over
/// `n_terms` terms ([`aux_terms`]), backpropagated at once when `scale_by`
/// is given (it is a leaf): the gradient of `scale_by · L_aux` is written
/// to `io`'s `d_h1`, `d_e_hist` and `d_e_neg` (their first contribution;
/// zeros where the loss has no term), parameter gradients stay in the chunks. 0
/// when no sample has two valid steps. In training mode the result is this
/// replica's part of the loss (the whole loss for one process).
pub(crate) fn aux_loss(
    pk: &AuxPacked,
    io: &mut AuxIo,
    h1: &[f32],
    lengths: &[usize],
    b: usize,
    t: usize,
    h: usize,
    e: usize,
    n_terms: usize,
    scale_by: Option<f32>,
) -> f64 {
    let k = chunk(t);
    let nc = b.div_ceil(k);
    let local: usize = lengths.iter().map(|&l| l.saturating_sub(1)).sum();
    if local == 0 || n_terms == 0 || t == 0 {
        // No term here: the chunks' parameter gradients, which the caller
        // adds up, and the input gradients are zero (not those of an
        // earlier batch).
        if scale_by.is_some() {
            io.chunks[..nc].iter_mut().for_each(|ch| ch.grads.zero());
            crate::fast::par_zero_all(&mut [&mut io.d_h1[..], &mut io.d_e_hist[..], &mut io.d_e_neg[..]]);
        }
        return 0.0;
    }
    let scale = scale_by.map(|w| w / n_terms as f32);
    let (e_hist, e_neg) = (&io.e_hist, &io.e_neg);
    let Chunks { chunks, scr } = &mut io.chunks;
    chunks[..nc]
        .par_iter_mut()
        .zip(io.loss[..nc].par_iter_mut())
        .zip(io.d_h1.par_chunks_mut(k * t * h))
        .zip(io.d_e_hist.par_chunks_mut(k * t * e))
        .zip(io.d_e_neg.par_chunks_mut(k * t * e))
        // One task per chunk, so the thread of the stages beside the loss
        // can take any one when it is done.
        .with_max_len(1)
        .enumerate()
        .for_each(|(c, ((((ch, lo), dh), dp), dn))| {
            let s0 = c * k;
            let bc = ch_len(b, c, k);
            *lo = scr.lend(ch, |ch| {
                ch.run(
                    pk,
                    &h1[s0 * t * h..(s0 + bc) * t * h],
                    &e_hist[s0 * t * e..(s0 + bc) * t * e],
                    &e_neg[s0 * t * e..(s0 + bc) * t * e],
                    &lengths[s0..s0 + bc],
                    scale,
                    dh,
                    dp,
                    dn,
                )
            });
        });
    io.loss[..nc].iter().sum::<f64>() / n_terms as f64
}
