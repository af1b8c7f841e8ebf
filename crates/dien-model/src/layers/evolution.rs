//! Interest-evolving layer (SPEC §6): the second GRU over the extractor
//! states, steered by the attention in one of two ways ([`Evolution`]).
//!
//! Which engine cell a variant runs and where its attention acts is read
//! from the variant table ([`crate::Variant::cell_kind`],
//! [`crate::Variant::evolution`]); the cells themselves are the engine's.
//! This file is the training path; the request path is in
//! [`crate::serve`], the reference in [`crate::reference`].

use dien_engine::cell::fast::Mode as CellMode;
use dien_engine::cell::{GruGrads, SeqInput};

use super::EvolvingLayers;
use super::attention::{attention_backward, attention_forward, weighted_sum, weighted_sum_backward};
use super::extractor::zero_gru;
use crate::config::Evolution;
use crate::fast::add_into;
use crate::fast::workspace::Workspace;

/// The interest `[B, H]` from the extractor states `h1`.
pub(crate) fn forward(
    ev: &EvolvingLayers,
    ws: &mut Workspace,
    lengths: &[usize],
    b: usize,
    t: usize,
    h: usize,
    e: usize,
    mode: CellMode,
) {
    match ev.evolution {
        Evolution::Pooled => {
            let input = SeqInput { x: &ws.h1, lengths, att: None, h0: None, batch: b, steps: t };
            ev.gru2.forward(&input, &mut ws.cell2, mode, &mut ws.h2, &mut ws.h2_last);
            attention_forward(&ev.att, &mut ws.att, &ws.h2, &ws.e_a, lengths, &mut ws.att_w, b, t, h, e);
            weighted_sum(&ws.att_w, &ws.h2, lengths, &mut ws.interest, b, t, h);
        }
        Evolution::Gated => {
            attention_forward(&ev.att, &mut ws.att, &ws.h1, &ws.e_a, lengths, &mut ws.att_w, b, t, h, e);
            let input = SeqInput { x: &ws.h1, lengths, att: Some(&ws.att_w), h0: None, batch: b, steps: t };
            ev.gru2.forward(&input, &mut ws.cell2, mode, &mut ws.h2, &mut ws.h2_last);
            ws.interest.copy_from_slice(&ws.h2_last);
        }
    }
}

/// Backward of [`forward`] from `d_int`: the evolving GRU's parameter
/// gradients into `g2` (zeroed first), `d_h1` and `d_e_a` accumulated;
/// the attention's parameter gradients stay in its chunks.
pub(crate) fn backward(
    ev: &EvolvingLayers,
    ws: &mut Workspace,
    g2: &mut GruGrads<f32>,
    lengths: &[usize],
    b: usize,
    t: usize,
    h: usize,
    e: usize,
) {
    zero_gru(g2);
    let dx = &mut ws.d_x[..b * t * h];
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
            let input = SeqInput { x: &ws.h1, lengths, att: None, h0: None, batch: b, steps: t };
            ev.gru2.backward(&input, &mut ws.cell2, Some(&ws.d_h2), None, g2, dx, None, None);
            add_into(&mut ws.d_h1, dx);
        }
        Evolution::Gated => {
            let input = SeqInput { x: &ws.h1, lengths, att: Some(&ws.att_w), h0: None, batch: b, steps: t };
            ev.gru2.backward(&input, &mut ws.cell2, None, Some(&ws.d_int), g2, dx, Some(&mut ws.d_att), None);
            add_into(&mut ws.d_h1, dx);
            attention_backward(
                &ev.att,
                &mut ws.att,
                &ws.h1,
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
