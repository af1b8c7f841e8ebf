//! Embedding layer: the user row `u`, the target item
//! `e_a = [mid; cat]`, the history rows `e_t` (zero at padded steps) and
//! their sum `s`, the negatives `ê_t`; and, backward, the gradient rows of
//! the three tables. Training path and `f64` reference here; the request
//! path reads the same rows in [`crate::serve`].

// Index loops mirror the equations' subscripts; stage functions take many slices.
#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

use dien_engine::simd::prefetch;
use rayon::prelude::*;

use crate::batch::Batch;
use crate::fast::SparseRows;
use crate::fast::workspace::Workspace;
use crate::params::ParamStore;
use crate::reference::layers::add_slice;

/// Steps ahead whose table rows a history gather asks the cache for: the
/// rows are scattered over tables larger than L2, so each copy would
/// otherwise wait for memory.
const PREFETCH_AHEAD: usize = 8;

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
    }
    if t == 0 {
        ws.s[..batch.batch * e].fill(0.0);
        return;
    }
    // The histories (and their negatives), one sample per task: each
    // sample's rows and sum are computed alone, so the result does not
    // depend on the threads.
    let n = batch.batch * t * e;
    // Sample s's rows of item ids `mid` and category ids `cat`, zero at
    // padded steps.
    let rows = |s: usize, out: &mut [f32], mid: &[u32], cat: &[u32]| {
        let l = batch.lengths[s];
        for (tt, x) in out.chunks_exact_mut(e).enumerate() {
            if tt < l {
                let i = s * t + tt;
                if tt + PREFETCH_AHEAD < l {
                    let j = i + PREFETCH_AHEAD;
                    prefetch(em, mid[j] as usize * d, d);
                    prefetch(ec, cat[j] as usize * d, d);
                }
                x[..d].copy_from_slice(&em[row(mid[i])]);
                x[d..].copy_from_slice(&ec[row(cat[i])]);
            } else {
                x.fill(0.0);
            }
        }
    };
    let hist_rows = |s: usize, hist: &mut [f32], sum: &mut [f32]| {
        rows(s, hist, &batch.hist_mid, &batch.hist_cat);
        sum.fill(0.0);
        for x in hist.chunks_exact(e).take(batch.lengths[s]) {
            for (a, &b) in sum.iter_mut().zip(x) {
                *a += b;
            }
        }
    };
    let hist = ws.e_hist[..n].par_chunks_mut(t * e).zip(ws.s[..batch.batch * e].par_chunks_mut(e)).enumerate();
    match (&batch.neg_mid, &batch.neg_cat) {
        (Some(nm), Some(nc)) if !ws.e_neg.is_empty() => {
            hist.zip(ws.e_neg[..n].par_chunks_mut(t * e)).for_each(|((s, (h, sum)), neg)| {
                hist_rows(s, h, sum);
                rows(s, neg, nm, nc);
            });
        }
        _ => hist.for_each(|(s, (h, sum))| hist_rows(s, h, sum)),
    }
}

/// The item and category rows of the target, the history (with the sum
/// pooling's `d_s`: every valid `e_t` is in the sum) and (with `with_neg`)
/// the negatives into the `mid` and `cat` tables; finishes all three tables
/// (the user rows were added by the head-input split). `d_e_hist` is read,
/// not completed.
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
    // The item and the category table in parallel, each in the one
    // sequential order that fixes its sums' bits: samples, then for each
    // the target, the history steps and their negatives. A history row's
    // gradient is its `d_e_hist` row plus the sum pooling's `d_s` (every
    // valid `e_t` is in the sum), added as the row is scattered.
    let [g_uid, gm, gc] = emb;
    let (d_e_a, d_e_hist, d_e_neg, d_s) = (&ws.d_e_a, &ws.d_e_hist, &ws.d_e_neg, &ws.d_s);
    let negs = match (&batch.neg_mid, &batch.neg_cat, with_neg) {
        (Some(nm), Some(nc), true) => Some((nm, nc)),
        _ => None,
    };
    let table =
        |g: &mut SparseRows, target: &[u32], hist: &[u32], neg: Option<&Vec<u32>>, cols: std::ops::Range<usize>| {
            for s in 0..b {
                g.add(target[s], &d_e_a[s * e + cols.start..s * e + cols.end]);
                let ds = &d_s[s * e + cols.start..s * e + cols.end];
                for tt in 0..lengths[s] {
                    let i = s * t + tt;
                    // The index entries of the rows a few positions ahead
                    // (a padded position's id is only a wasted hint).
                    if let Some(&r) = hist.get(i + PREFETCH_AHEAD) {
                        g.prefetch(r);
                        if let Some(&r) = neg.and_then(|n| n.get(i + PREFETCH_AHEAD)) {
                            g.prefetch(r);
                        }
                    }
                    g.add_sum(hist[i], &d_e_hist[i * e + cols.start..i * e + cols.end], ds);
                    if let Some(neg) = neg {
                        g.add(neg[i], &d_e_neg[i * e + cols.start..i * e + cols.end]);
                    }
                }
            }
            g.finish();
        };
    rayon::join(
        || table(gm, &batch.mid, &batch.hist_mid, negs.map(|n| n.0), 0..d),
        || table(gc, &batch.cat, &batch.hist_cat, negs.map(|n| n.1), d..e),
    );
    g_uid.finish();
}

/// The embedding layer's outputs in `f64` (reference path), zero at padded
/// steps.
pub(crate) struct RefEmbeddings {
    /// `u [B, d]`.
    pub u: Vec<f64>,
    /// `e_a [B, E]`.
    pub ea: Vec<f64>,
    /// `e [B, T, E]`.
    pub items: Vec<f64>,
    /// `ê [B, T, E]` when the batch has negatives.
    pub neg: Option<Vec<f64>>,
    /// `s [B, E]`.
    pub s: Vec<f64>,
}

/// Reference lookup; padded positions are never read.
pub(crate) fn reference_lookup(p: &ParamStore<f64>, batch: &Batch, d: usize) -> RefEmbeddings {
    let (bn, tn, e) = (batch.batch, batch.steps, 2 * d);
    let lengths = &batch.lengths;
    let (uid_t, mid_t, cat_t) = (p.get("emb.uid"), p.get("emb.mid"), p.get("emb.cat"));
    let row = |i: u32| i as usize * d..(i as usize + 1) * d;
    let item = |m: u32, c: u32, out: &mut [f64]| {
        out[..d].copy_from_slice(&mid_t[row(m)]);
        out[d..].copy_from_slice(&cat_t[row(c)]);
    };
    let mut u = vec![0.0; bn * d];
    let mut ea = vec![0.0; bn * e];
    let mut items = vec![0.0; bn * tn * e];
    let mut neg = batch.neg_mid.as_ref().map(|_| vec![0.0; bn * tn * e]);
    let mut s = vec![0.0; bn * e];
    for b in 0..bn {
        u[b * d..(b + 1) * d].copy_from_slice(&uid_t[row(batch.uid[b])]);
        item(batch.mid[b], batch.cat[b], &mut ea[b * e..(b + 1) * e]);
        for t in 0..lengths[b] {
            let (i, o) = (b * tn + t, (b * tn + t) * e);
            item(batch.hist_mid[i], batch.hist_cat[i], &mut items[o..o + e]);
            for k in 0..e {
                s[b * e + k] += items[o + k];
            }
            if let (Some(ng), Some(nm), Some(nc)) = (neg.as_mut(), &batch.neg_mid, &batch.neg_cat) {
                item(nm[i], nc[i], &mut ng[o..o + e]);
            }
        }
    }
    RefEmbeddings { u, ea, items, neg, s }
}

/// Gradients of the outputs of [`reference_lookup`].
pub(crate) struct RefEmbeddingGrads<'a> {
    pub du: &'a [f64],
    pub dea: &'a [f64],
    /// Completed here with the sum pooling's share.
    pub d_items: &'a mut [f64],
    pub d_neg: &'a [f64],
    pub ds: &'a [f64],
}

/// Reference backward: the sum pooling `s = Σ_{t<L} e_t`, then every row
/// into the dense gradients of the tables.
pub(crate) fn reference_scatter(batch: &Batch, d: usize, g: RefEmbeddingGrads<'_>, grads: &mut ParamStore<f64>) {
    let (bn, tn, e) = (batch.batch, batch.steps, 2 * d);
    let lengths = &batch.lengths;
    let RefEmbeddingGrads { du, dea, d_items, d_neg, ds } = g;
    for b in 0..bn {
        for t in 0..lengths[b] {
            let o = (b * tn + t) * e;
            add_slice(&mut d_items[o..o + e], &ds[b * e..(b + 1) * e]);
        }
    }
    let scatter = |grads: &mut ParamStore<f64>, table: &str, idx: u32, v: &[f64]| {
        let i = idx as usize;
        add_slice(&mut grads.get_mut(table)[i * d..(i + 1) * d], v);
    };
    for b in 0..bn {
        scatter(grads, "emb.uid", batch.uid[b], &du[b * d..(b + 1) * d]);
        scatter(grads, "emb.mid", batch.mid[b], &dea[b * e..b * e + d]);
        scatter(grads, "emb.cat", batch.cat[b], &dea[b * e + d..(b + 1) * e]);
        for t in 0..lengths[b] {
            let (i, o) = (b * tn + t, (b * tn + t) * e);
            scatter(grads, "emb.mid", batch.hist_mid[i], &d_items[o..o + d]);
            scatter(grads, "emb.cat", batch.hist_cat[i], &d_items[o + d..o + e]);
            if let (Some(nm), Some(nc)) = (&batch.neg_mid, &batch.neg_cat) {
                scatter(grads, "emb.mid", nm[i], &d_neg[o..o + d]);
                scatter(grads, "emb.cat", nc[i], &d_neg[o + d..o + e]);
            }
        }
    }
}

/// The fast lookup and gradient rows against the reference.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ModelConfig, ModelKind};
    use crate::cost::synthetic_batch;
    use crate::fast::Gradients;
    use crate::layers::testutil::{assert_close, uniform, wide};
    use crate::layers::{Layers, testutil};
    use crate::plan::Plan;

    #[test]
    fn fast_embedding_matches_the_reference() {
        let mut cfg = ModelConfig::new(ModelKind::Dien, 9, 17, 5);
        cfg.d = 3;
        let (d, e) = (cfg.d, cfg.e());
        let (b, t) = (6, 4);
        let mut batch = synthetic_batch(&cfg, b, t, 8);
        batch.lengths.copy_from_slice(&[4, 0, 1, 3, 4, 2]);
        let p = ParamStore::init(&cfg, 2);
        let p64 = p.map(f64::from);
        let layers = Layers::new(&cfg, &Plan::new(&cfg));
        let mut ws = Workspace::default();
        ws.prepare(&cfg, &layers, b, t, true);
        gather(&p, &batch, d, e, &mut ws);
        let r = reference_lookup(&p64, &batch, d);
        assert_close("u", &ws.u, &r.u, 0.0);
        assert_close("e_a", &ws.e_a, &r.ea, 0.0);
        assert_close("e_hist", &ws.e_hist, &r.items, 0.0);
        assert_close("e_neg", &ws.e_neg, r.neg.as_ref().unwrap(), 0.0);
        assert_close("s", &ws.s, &r.s, 1e-6);

        // Gradients of every output, then the rows of every table.
        let du = uniform(b * d, 1.0, 1);
        ws.d_e_a.copy_from_slice(&uniform(b * e, 1.0, 2));
        ws.d_e_hist.copy_from_slice(&uniform(b * t * e, 1.0, 3));
        ws.d_e_neg.copy_from_slice(&uniform(b * t * e, 1.0, 4));
        ws.d_s.copy_from_slice(&uniform(b * e, 1.0, 5));
        let (dea, mut d_items, d_neg, ds) = (wide(&ws.d_e_a), wide(&ws.d_e_hist), wide(&ws.d_e_neg), wide(&ws.d_s));
        let mut g = Gradients::new(&cfg);
        g.zero();
        for s in 0..b {
            g.emb[0].add(batch.uid[s], &du[s * d..(s + 1) * d]);
        }
        scatter(&batch, e, d, true, &mut ws, &mut g.emb);
        // Padded steps carry no gradient into the tables in either path.
        for (i, row) in d_items.chunks_exact_mut(e).enumerate() {
            if i % t >= batch.lengths[i / t] {
                row.fill(0.0);
            }
        }
        let mut want = ParamStore::<f64>::zeros(&cfg);
        let grads = RefEmbeddingGrads { du: &wide(&du), dea: &dea, d_items: &mut d_items, d_neg: &d_neg, ds: &ds };
        reference_scatter(&batch, d, grads, &mut want);
        let got = g.to_dense_store(&cfg);
        for table in crate::fast::EMB_TABLES {
            testutil::assert_close(table, got.get(table), want.get(table), 1e-5);
        }
    }
}
