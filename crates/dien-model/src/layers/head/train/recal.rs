//! Recalibration of the head's running statistics
//! (docs/MODEL.md#recalibration): exact statistics of each normalised
//! layer's input over a sample of head inputs, in order.

use rayon::prelude::*;

use super::{H1, H2, HeadPacked, HeadWs, SyncScratch, column_stats};
use crate::error::ModelError;
use crate::fast::grow;
use crate::mode::Mode;
use crate::params::ParamStore;
use crate::sync::{NoSync, StatSync};

/// Exact mean and biased variance of each column (two passes, f64) over
/// the rows of every replica; also returns the number of those rows.
fn exact_stats(
    x: &[f32],
    rows: usize,
    cols: usize,
    sync: &mut dyn StatSync,
) -> Result<(Vec<f32>, Vec<f32>, usize), ModelError> {
    let (mut mean, mut var) = (vec![0.0; cols], vec![0.0; cols]);
    let n = column_stats(x, rows, cols, &mut mean, &mut var, &mut SyncScratch::default(), sync)?;
    Ok((mean, var, n))
}

/// What recalibration keeps from one call to the next: the layers' inputs
/// over the whole sample (tens of megabytes on real data) and a head
/// workspace per thread. A run recalibrates at every evaluation; fresh
/// buffers would make each one fault in all their pages again.
#[derive(Debug, Default)]
pub(crate) struct RecalScratch {
    z1: Vec<f32>,
    z2: Vec<f32>,
    parts: Vec<HeadWs>,
}

/// Recalibration (docs/MODEL.md#recalibration): sets the running statistics of BatchNorm, then
/// Dice 1, then Dice 2, to the exact mean and biased variance of each
/// layer's input over `x [n, D]` (head inputs of a sample of the training
/// set; with several replicas, this replica's part of the sample, the
/// statistics taken over every part through `sync`), the network in
/// evaluation mode so each layer sees the already recalibrated layers
/// before it.
pub(crate) fn recalibrate(
    pk: &HeadPacked,
    p: &mut ParamStore<f32>,
    x: &[f32],
    n: usize,
    sync: &mut dyn StatSync,
    scratch: &mut RecalScratch,
) -> Result<(), ModelError> {
    let d = pk.d;
    let RecalScratch { z1, z2, parts } = scratch;
    let (mean, var, _) = exact_stats(x, n, d, sync)?;
    p.get_mut("head.bn.running_mean").copy_from_slice(&mean);
    p.get_mut("head.bn.running_var").copy_from_slice(&var);
    // Dice 1's input, through the recalibrated BatchNorm. It does not
    // depend on the Dice statistics, so it is computed once and serves
    // Dice 2's input below. Evaluation mode: running statistics, nothing
    // to exchange.
    grow(z1, n * H1);
    let z1 = &mut z1[..n * H1];
    let q: &ParamStore<f32> = p;
    by_blocks(z1, H1, n, parts, |ws, r0, m| {
        ws.prepare(d, m);
        ws.x[..m * d].copy_from_slice(&x[r0 * d..(r0 + m) * d]);
        ws.forward_fc1(pk, q, Mode::Eval, &mut NoSync)?;
        Ok(&ws.z1[..m * H1])
    })?;
    set_running(p, "head.dice1", z1, n, H1, sync)?;
    // Dice 2's input, through the recalibrated Dice 1.
    grow(z2, n * H2);
    let z2 = &mut z2[..n * H2];
    let q: &ParamStore<f32> = p;
    by_blocks(z2, H2, n, parts, |ws, r0, m| {
        ws.prepare(d, m);
        ws.z1[..m * H1].copy_from_slice(&z1[r0 * H1..(r0 + m) * H1]);
        ws.forward_fc2(pk, q, Mode::Eval, &mut NoSync)?;
        Ok(&ws.z2[..m * H2])
    })?;
    set_running(p, "head.dice2", z2, n, H2, sync)
}

/// Fills `out [n, w]` by blocks of rows: `block(ws, r0, m)` computes rows
/// `r0..r0 + m` in `ws` and returns them. Each row's values depend neither
/// on the other rows nor on its block, so the rows are cut into one part
/// per thread (whole blocks), each part computed block after block with a
/// workspace of its own (of `parts`, grown to the number of parts); with
/// blocks of 256 rows, what a forward touches of the workspace (about
/// 1.3 MB with the default widths) stays in a core's cache.
fn by_blocks(
    out: &mut [f32],
    w: usize,
    n: usize,
    parts: &mut Vec<HeadWs>,
    block: impl Fn(&mut HeadWs, usize, usize) -> Result<&[f32], ModelError> + Sync,
) -> Result<(), ModelError> {
    const BLOCK: usize = 256;
    let part = n.div_ceil(rayon::current_num_threads()).div_ceil(BLOCK).max(1) * BLOCK;
    let count = n.div_ceil(part);
    if parts.len() < count {
        parts.resize_with(count, HeadWs::default);
    }
    out[..n * w].par_chunks_mut(part * w).zip(&mut parts[..count]).enumerate().try_for_each(|(k, (rows, ws))| {
        for (j, dst) in rows.chunks_mut(BLOCK * w).enumerate() {
            let m = dst.len() / w;
            dst.copy_from_slice(block(ws, k * part + j * BLOCK, m)?);
        }
        Ok(())
    })
}

/// Sets the running statistics of layer `name` to the exact ones of its
/// input `z [n, w]` (over every replica's rows).
fn set_running(
    p: &mut ParamStore<f32>,
    name: &str,
    z: &[f32],
    n: usize,
    w: usize,
    sync: &mut dyn StatSync,
) -> Result<(), ModelError> {
    let (mean, var, _) = exact_stats(z, n, w, sync)?;
    p.get_mut(&format!("{name}.running_mean")).copy_from_slice(&mean);
    p.get_mut(&format!("{name}.running_var")).copy_from_slice(&var);
    Ok(())
}
