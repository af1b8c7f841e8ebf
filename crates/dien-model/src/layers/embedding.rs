//! Embedding layer: the user row `u`, the target item
//! `e_a = [mid; cat]`, the history rows `e_t` (zero at padded steps) and
//! their sum `s`, the negatives `ê_t`; and, backward, the gradient rows of
//! the three tables. The request path reads the same rows in
//! [`crate::serve`]; the reference lives in [`crate::reference`].

// Index loops mirror the equations' subscripts; stage functions take many slices.
#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

use crate::batch::Batch;
use crate::fast::SparseRows;
use crate::fast::workspace::Workspace;
use crate::params::ParamStore;

/// Looks up every row of `batch` into the workspace (training path).
pub(crate) fn gather(p: &ParamStore<f32>, batch: &Batch, d: usize, e: usize, ws: &mut Workspace) {
    let t = batch.steps;
    let (eu, em, ec) = (p.get("emb.uid"), p.get("emb.mid"), p.get("emb.cat"));
    let row = |i: u32| i as usize * d..(i as usize + 1) * d;
    for s in 0..batch.batch {
        ws.u[s * d..(s + 1) * d].copy_from_slice(&eu[row(batch.uid[s])]);
        let ea = &mut ws.e_a[s * e..(s + 1) * e];
        ea[..d].copy_from_slice(&em[row(batch.mid[s])]);
        ea[d..].copy_from_slice(&ec[row(batch.cat[s])]);
        let l = batch.lengths[s];
        let sum = &mut ws.s[s * e..(s + 1) * e];
        sum.fill(0.0);
        for tt in 0..t {
            let i = s * t + tt;
            let x = &mut ws.e_hist[i * e..(i + 1) * e];
            if tt < l {
                x[..d].copy_from_slice(&em[row(batch.hist_mid[i])]);
                x[d..].copy_from_slice(&ec[row(batch.hist_cat[i])]);
                for (a, &b) in sum.iter_mut().zip(x.iter()) {
                    *a += b;
                }
            } else {
                x.fill(0.0);
            }
            if let (Some(nm), Some(nc)) = (&batch.neg_mid, &batch.neg_cat)
                && !ws.e_neg.is_empty()
            {
                let x = &mut ws.e_neg[i * e..(i + 1) * e];
                if tt < l {
                    x[..d].copy_from_slice(&em[row(nm[i])]);
                    x[d..].copy_from_slice(&ec[row(nc[i])]);
                } else {
                    x.fill(0.0);
                }
            }
        }
    }
}

/// Backward of the sum pooling (every valid `e_t` receives `d_s`), then the
/// item and category rows of the target, the history and (with `with_neg`)
/// the negatives into the `mid` and `cat` tables; finishes all three tables
/// (the user rows were added by the head-input split).
pub(crate) fn scatter(
    batch: &Batch,
    e: usize,
    d: usize,
    with_neg: bool,
    ws: &mut Workspace,
    emb: &mut [SparseRows; 3],
) {
    let (b, t) = (batch.batch, batch.steps);
    let lengths = &batch.lengths;
    for s in 0..b {
        let ds = &ws.d_s[s * e..(s + 1) * e];
        for tt in 0..lengths[s] {
            let i = s * t + tt;
            crate::fast::add_into(&mut ws.d_e_hist[i * e..(i + 1) * e], ds);
        }
    }
    let (emb_mid, rest) = emb.split_at_mut(2);
    let (gm, gc) = (&mut emb_mid[1], &mut rest[0]);
    for s in 0..b {
        let dea = &ws.d_e_a[s * e..(s + 1) * e];
        gm.add(batch.mid[s], &dea[..d]);
        gc.add(batch.cat[s], &dea[d..]);
        for tt in 0..lengths[s] {
            let i = s * t + tt;
            let g = &ws.d_e_hist[i * e..(i + 1) * e];
            gm.add(batch.hist_mid[i], &g[..d]);
            gc.add(batch.hist_cat[i], &g[d..]);
            if let (Some(nm), Some(nc), true) = (&batch.neg_mid, &batch.neg_cat, with_neg) {
                let g = &ws.d_e_neg[i * e..(i + 1) * e];
                gm.add(nm[i], &g[..d]);
                gc.add(nc[i], &g[d..]);
            }
        }
    }
    for table in emb {
        table.finish();
    }
}
