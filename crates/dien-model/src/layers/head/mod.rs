//! Prediction head: the input `x = [u; e_a; s; e_a ∘ s; interest]`,
//! BatchNorm → fc1 → Dice → fc2 → Dice → fc3, and the target loss.
//!
//! - here: the head input and the split of its gradient (training path);
//! - `train`: the fast head over the whole batch, forward and backward;
//! - `serve`: the request path, blocks of candidates;
//! - [`reference`](mod@self::reference): the `f64` reference.

// Index loops mirror the equations' subscripts; stage functions take many slices.
#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

pub mod reference;
pub(crate) mod serve;
#[cfg(test)]
mod tests;
pub(crate) mod train;

use crate::batch::Batch;
use crate::fast::SparseRows;
use crate::fast::workspace::Workspace;

/// Writes the head input rows `[u; e_a; s; e_a ∘ s; interest]` of the batch.
pub(crate) fn assemble_input(ws: &mut Workspace, b: usize, d: usize, e: usize, iw: usize, dh: usize) {
    for s in 0..b {
        let x = &mut ws.head.x[s * dh..(s + 1) * dh];
        let (ea, sm) = (&ws.e_a[s * e..(s + 1) * e], &ws.s[s * e..(s + 1) * e]);
        x[..d].copy_from_slice(&ws.u[s * d..(s + 1) * d]);
        x[d..d + e].copy_from_slice(ea);
        x[d + e..d + 2 * e].copy_from_slice(sm);
        for j in 0..e {
            x[d + 2 * e + j] = ea[j] * sm[j];
        }
        x[d + 3 * e..].copy_from_slice(&ws.interest[s * iw..(s + 1) * iw]);
    }
}

/// Splits the head-input gradient into its slots: `d_e_a` accumulated,
/// `d_s` and `d_int` overwritten, the user rows added to `uid_rows`.
pub(crate) fn split_input_grad(
    ws: &mut Workspace,
    batch: &Batch,
    uid_rows: &mut SparseRows,
    d: usize,
    e: usize,
    iw: usize,
    dh: usize,
) {
    let b = batch.batch;
    // The user rows' gradients go through the input-gradient scratch.
    ws.d_x.fit(ws.d_x.len().max(b * d));
    let d_u_rows = &mut ws.d_x;
    for s in 0..b {
        let dx = &ws.head.dx[s * dh..(s + 1) * dh];
        d_u_rows[s * d..(s + 1) * d].copy_from_slice(&dx[..d]);
        let (ea, sm) = (&ws.e_a[s * e..(s + 1) * e], &ws.s[s * e..(s + 1) * e]);
        let dea = &mut ws.d_e_a[s * e..(s + 1) * e];
        let ds = &mut ws.d_s[s * e..(s + 1) * e];
        for j in 0..e {
            let dp = dx[d + 2 * e + j];
            dea[j] += dx[d + j] + dp * sm[j];
            ds[j] = dx[d + e + j] + dp * ea[j];
        }
        ws.d_int[s * iw..(s + 1) * iw].copy_from_slice(&dx[d + 3 * e..]);
    }
    // The user's embedding rows (the other tables are scattered at the end).
    for s in 0..b {
        uid_rows.add(batch.uid[s], &d_u_rows[s * d..(s + 1) * d]);
    }
}
