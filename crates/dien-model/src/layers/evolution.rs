//! Interest-evolving layer: the second GRU over the extractor
//! states, steered by the attention in one of two ways ([`Evolution`]).
//!
//! Which engine cell a variant runs and where its attention acts is read
//! from the variant table ([`crate::Variant::cell_kind`],
//! [`crate::Variant::evolution`]); the cells themselves are the engine's.
//! This file is the training path; the request path is in
//! [`crate::serve`], the reference in [`crate::reference`].

// Index loops mirror the equations' subscripts; stage functions take many slices.
#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

use dien_engine::cell::fast::Mode as CellMode;
use dien_engine::cell::{GruGrads, SeqInput};

use super::EvolvingLayers;
use super::attention::{attention_backward, attention_forward, weighted_sum, weighted_sum_backward};
use super::extractor::zero_gru;
use crate::config::Evolution;
use crate::fast::workspace::Workspace;

/// The interest `[B, H]` from the extractor states `h1`.
pub(crate) fn forward(
    ev: &EvolvingLayers,
    ws: &mut Workspace,
    h1: &[f32],
    lengths: &[usize],
    b: usize,
    t: usize,
    h: usize,
    e: usize,
    mode: CellMode,
) {
    match ev.evolution {
        Evolution::Pooled => {
            let input = SeqInput { x: h1, lengths, att: None, h0: None, batch: b, steps: t };
            ev.gru2.forward(&input, &mut ws.cell2, mode, &mut ws.h2, &mut ws.h2_last);
            attention_forward(&ev.att, &mut ws.att, &ws.h2, &ws.e_a, lengths, &mut ws.att_w, b, t, h, e);
            weighted_sum(&ws.att_w, &ws.h2, lengths, &mut ws.interest, b, t, h);
        }
        Evolution::Gated => {
            attention_forward(&ev.att, &mut ws.att, h1, &ws.e_a, lengths, &mut ws.att_w, b, t, h, e);
            let input = SeqInput { x: h1, lengths, att: Some(&ws.att_w), h0: None, batch: b, steps: t };
            match mode {
                // The interest is the last state: the per-step states are
                // needed only by backward.
                CellMode::Infer => ev.gru2.forward_last(&input, &mut ws.cell2, &mut ws.h2_last),
                CellMode::Train => ev.gru2.forward(&input, &mut ws.cell2, mode, &mut ws.h2, &mut ws.h2_last),
            }
            ws.interest.copy_from_slice(&ws.h2_last);
        }
    }
}

/// Backward of [`forward`] (extractor states `h1`, given apart from the
/// workspace so that others may read them meanwhile) from `d_int`: the
/// evolving GRU's parameter gradients into `g2` (zeroed first), `d_h1`
/// written (its first contribution: the evolving GRU's input gradient),
/// `d_e_a` accumulated; the attention's parameter gradients stay in its
/// chunks.
pub(crate) fn backward(
    ev: &EvolvingLayers,
    ws: &mut Workspace,
    h1: &[f32],
    g2: &mut GruGrads<f32>,
    lengths: &[usize],
    b: usize,
    t: usize,
    h: usize,
    e: usize,
) {
    zero_gru(g2);
    let d_h1 = &mut ws.d_h1[..b * t * h];
    match ev.evolution {
        Evolution::Pooled => {
            weighted_sum_backward(&ws.att_w, &ws.h2, &ws.d_int, lengths, &mut ws.d_att, &mut ws.d_h2, b, t, h);
            attention_backward(
                &ev.att,
                &mut ws.att,
                &ws.h2,
                &ws.e_a,
                lengths,
                &ws.d_att,
                &mut ws.d_h2,
                &mut ws.d_e_a,
                b,
                t,
                h,
                e,
            );
            let input = SeqInput { x: h1, lengths, att: None, h0: None, batch: b, steps: t };
            ev.gru2.backward(&input, &mut ws.cell2, Some(&ws.d_h2), None, g2, d_h1, None, None);
        }
        Evolution::Gated => {
            let input = SeqInput { x: h1, lengths, att: Some(&ws.att_w), h0: None, batch: b, steps: t };
            ev.gru2.backward(&input, &mut ws.cell2, None, Some(&ws.d_int), g2, d_h1, Some(&mut ws.d_att), None);
            attention_backward(
                &ev.att,
                &mut ws.att,
                h1,
                &ws.e_a,
                lengths,
                &ws.d_att,
                &mut ws.d_h1,
                &mut ws.d_e_a,
                b,
                t,
                h,
                e,
            );
        }
    }
}

/// The fast evolving stage against the `f64` reference, for every variant:
/// the interest, and from an interest gradient the gradients of the
/// extractor states, of the target item and of the evolving GRU.
#[cfg(test)]
mod tests {
    use dien_engine::cell::reference as cell;
    use dien_engine::cell::{GruGrads, GruParams, SeqInput};

    use super::*;
    use crate::config::{ModelConfig, ModelKind, Variant};
    use crate::layers::attention::reference::{AttGrads, att_params, attention_backward, attention_forward};
    use crate::layers::testutil::{assert_close, uniform, wide};
    use crate::layers::{InterestLayers, Layers};
    use crate::params::ParamStore;
    use crate::plan::Plan;

    #[test]
    fn fast_evolution_matches_the_reference_for_every_variant() {
        let (b, t) = (11, 5);
        let lengths = [5, 1, 0, 3, 5, 2, 4, 5, 1, 0, 3];
        for &variant in Variant::ALL {
            let mut cfg = ModelConfig::new(ModelKind::DienNoaux, 10, 10, 10);
            (cfg.variant, cfg.d, cfg.hidden) = (variant, 3, 7);
            let (e, h) = (cfg.e(), cfg.hidden);
            let p = ParamStore::init(&cfg, 21);
            let p64 = p.map(f64::from);
            let plan = Plan::new(&cfg);
            let mut layers = Layers::new(&cfg, &plan);
            layers.set(&cfg, &p);
            let InterestLayers::Evolving(ev) = &layers.interest else { panic!("a DIEN stage") };
            let mut ws = Workspace::default();
            ws.prepare(&cfg, &layers, b, t, false);
            let mut h1 = uniform(b * t * h, 0.9, 1);
            for (i, row) in h1.chunks_exact_mut(h).enumerate() {
                if i % t >= lengths[i / t] {
                    row.fill(0.0);
                }
            }
            ws.h1.copy_from_slice(&h1);
            ws.e_a.copy_from_slice(&uniform(b * e, 0.5, 2));
            let d_int = uniform(b * h, 1.0, 3);
            forward(ev, &mut ws, &h1, &lengths, b, t, h, e, CellMode::Train);
            ws.d_int.copy_from_slice(&d_int);
            // d_h1 is overwritten: what an earlier step left must not count.
            ws.d_h1.fill(f32::NAN);
            ws.d_h2.fill(0.0);
            ws.d_e_a.fill(0.0);
            let mut g2 = GruGrads::zeros(h, h);
            backward(ev, &mut ws, &h1, &mut g2, &lengths, b, t, h, e);

            // The reference: attention per sample over the attended states.
            let (h1_64, e_a64, d_int64) = (wide(&h1), wide(&ws.e_a), wide(&d_int));
            let ap = att_params(&cfg, &p64);
            let gp = GruParams {
                w_ih: p64.get("gru2.w_ih"),
                w_hh: p64.get("gru2.w_hh"),
                b: p64.get("gru2.b"),
                input: h,
                hidden: h,
            };
            let seq = |att| SeqInput { x: &h1_64[..], lengths: &lengths[..], att, h0: None, batch: b, steps: t };
            let attend = |keys: &[f64]| {
                let caches: Vec<_> = (0..b)
                    .map(|s| {
                        attention_forward(
                            &ap,
                            h,
                            &e_a64[s * e..(s + 1) * e],
                            &keys[s * t * h..(s * t + lengths[s]) * h],
                        )
                    })
                    .collect();
                let mut w = vec![0.0; b * t];
                for (s, c) in caches.iter().enumerate() {
                    w[s * t..s * t + lengths[s]].copy_from_slice(&c.weights);
                }
                (caches, w)
            };
            let mut interest = vec![0.0; b * h];
            let mut d_h1 = vec![0.0; b * t * h];
            let mut d_e_a = vec![0.0; b * e];
            let mut g_ref = GruGrads::zeros(h, h);
            let mut g_att = AttGrads::zeros_like(&ap);
            // Attention backward of every sample over `keys`.
            let mut attend_back = |keys: &[f64], caches: &[_], d_w: &[f64], d_keys: &mut [f64]| {
                for s in 0..b {
                    let (k0, n) = (s * t * h, lengths[s] * h);
                    attention_backward(
                        &ap,
                        h,
                        &e_a64[s * e..(s + 1) * e],
                        &keys[k0..k0 + n],
                        &caches[s],
                        &d_w[s * t..s * t + lengths[s]],
                        &mut g_att,
                        &mut d_keys[k0..k0 + n],
                        &mut d_e_a[s * e..(s + 1) * e],
                    );
                }
            };
            match ev.evolution {
                Evolution::Gated => {
                    let (caches, w) = attend(&h1_64);
                    let f = cell::forward(ev.gru2.kind(), &gp, &seq(Some(&w[..])));
                    interest.copy_from_slice(&f.last);
                    let ig =
                        cell::backward(ev.gru2.kind(), &gp, &seq(Some(&w[..])), &f, None, Some(&d_int64), &mut g_ref);
                    d_h1.copy_from_slice(&ig.x);
                    attend_back(&h1_64, &caches, &ig.att, &mut d_h1);
                }
                Evolution::Pooled => {
                    let f = cell::forward(ev.gru2.kind(), &gp, &seq(None));
                    let (caches, w) = attend(&f.states);
                    let mut d_states = vec![0.0; b * t * h];
                    let mut d_w = vec![0.0; b * t];
                    for s in 0..b {
                        for tt in 0..lengths[s] {
                            let (i, o) = (s * t + tt, (s * t + tt) * h);
                            for j in 0..h {
                                interest[s * h + j] += w[i] * f.states[o + j];
                                d_w[i] += f.states[o + j] * d_int64[s * h + j];
                                d_states[o + j] += w[i] * d_int64[s * h + j];
                            }
                        }
                    }
                    attend_back(&f.states, &caches, &d_w, &mut d_states);
                    let ig = cell::backward(ev.gru2.kind(), &gp, &seq(None), &f, Some(&d_states), None, &mut g_ref);
                    d_h1.copy_from_slice(&ig.x);
                }
            }
            assert_close(&format!("{variant}: interest"), &ws.interest, &interest, 1e-4);
            assert_close(&format!("{variant}: d_h1"), &ws.d_h1, &d_h1, 1e-4);
            assert_close(&format!("{variant}: d_e_a"), &ws.d_e_a, &d_e_a, 1e-4);
            assert_close(&format!("{variant}: gru2.w_ih"), &g2.w_ih, &g_ref.w_ih, 1e-4);
            assert_close(&format!("{variant}: gru2.w_hh"), &g2.w_hh, &g_ref.w_hh, 1e-4);
            assert_close(&format!("{variant}: gru2.b"), &g2.b, &g_ref.b, 1e-4);
        }
    }
}
