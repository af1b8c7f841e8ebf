//! One step of the fast model: the stages of the [`Plan`](crate::Plan) in
//! order, forward then (for training) backward. Each stage is a layer's
//! function in [`crate::layers`]; this file only wires them.

use dien_engine::cell::fast::Mode as CellMode;

use super::model::Model;
use super::timing::{Laps, Stage};
use super::workspace::Workspace;
use super::{Losses, add_into, chunk, par_add_into};
use crate::batch::Batch;
use crate::error::ModelError;
use crate::layers::attention::{attention_backward, attention_forward, weighted_sum, weighted_sum_backward};
use crate::layers::extractor::AuxIo;
use crate::layers::{InterestLayers, embedding, evolution, extractor, head};
use crate::mode::Mode;
use crate::sync::StatSync;

/// How far a step goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Depth {
    /// Up to the head inputs (what recalibration collects); no losses.
    HeadInput,
    /// The whole forward and the losses.
    Forward,
    /// Forward and the whole backward.
    Backward,
}

impl Model {
    /// Forward in `mode` to `depth`, and the backward for [`Depth::Backward`]. In training
    /// mode the quantities that couple the samples are summed over the
    /// replicas through `sync` (see [`crate::sync`]); a replica's share may
    /// then be empty, as long as the global batch is not.
    pub(super) fn run(
        &mut self,
        batch: &Batch,
        mode: Mode,
        depth: Depth,
        sync: &mut dyn StatSync,
    ) -> Result<Losses, ModelError> {
        let grad = depth == Depth::Backward;
        batch.validate(self.cfg.n_uid, self.cfg.n_mid, self.cfg.n_cat)?;
        if batch.batch == 0 && (mode == Mode::Eval || sync.replicas() < 2) {
            return Err(ModelError::Batch("empty batch".into()));
        }
        let mut clock = Laps::start(self.timing.is_some());
        self.repack();
        let cfg = &self.cfg;
        let (b, t) = (batch.batch, batch.steps);
        let (d, e, h, iw, dh) = (cfg.d, cfg.e(), cfg.hidden, cfg.interest_width(), cfg.head_in());
        // Head inputs alone need no auxiliary loss.
        let with_neg = depth != Depth::HeadInput && self.layers.interest.aux().is_some() && batch.has_negatives();
        self.ws.prepare(cfg, &self.layers, b, t, with_neg);
        embedding::gather(&self.params, batch, d, e, &mut self.ws);
        let lengths = &batch.lengths[..];
        let cell_mode = if grad { CellMode::Train } else { CellMode::Infer };
        let aux_weight = self.plan.aux_weight;
        let ws = &mut self.ws;
        let layers = &self.layers;
        if grad {
            // Sums start from zero (`d_h1` is written by its first
            // contribution; `d_h2` is empty unless the evolution pools).
            // The auxiliary loss, when it runs, writes its gradients
            // (`d_e_neg`, `d_h1_aux`: empty otherwise) and the history rows'
            // first contribution.
            let d_e_hist: &mut [f32] = if with_neg { &mut [] } else { &mut ws.d_e_hist };
            super::par_zero_all(&mut [d_e_hist, &mut ws.d_e_a, &mut ws.d_h2]);
        }
        clock.lap(Stage::Input);

        // Interest.
        let mut aux_terms = None;
        match &layers.interest {
            InterestLayers::SumPool => ws.interest.copy_from_slice(&ws.s),
            InterestLayers::AttentionPool(att) => {
                attention_forward(att, &mut ws.att, &ws.e_hist, &ws.e_a, lengths, &mut ws.att_w, b, t, e, e);
                weighted_sum(&ws.att_w, &ws.e_hist, lengths, &mut ws.interest, b, t, e);
            }
            InterestLayers::Evolving(ev) => {
                extractor::forward(&ev.gru1, ws, lengths, b, t, cell_mode);
                clock.lap(Stage::Extractor);
                if ev.aux.is_some() && with_neg {
                    let train_sync = (mode == Mode::Train).then_some(&mut *sync);
                    aux_terms = Some(extractor::aux_terms(lengths, train_sync)?);
                }
            }
        }
        // The extractor states, read by both sides of the join below.
        let h1 = std::mem::take(&mut ws.h1);
        // The evolution (DIEN) and the head's input: at once without an
        // auxiliary loss, else beside it.
        let evolve = |ws: &mut Workspace, clock: &mut Laps| {
            if let InterestLayers::Evolving(ev) = &layers.interest {
                evolution::forward(ev, ws, &h1, lengths, b, t, h, e, cell_mode);
            }
            clock.lap(Stage::Interest);
            head::assemble_input(ws, b, d, e, iw, dh);
        };
        if aux_terms.is_none() {
            evolve(ws, &mut clock);
            if depth == Depth::HeadInput {
                ws.h1 = h1;
                clock.finish(&mut self.timing);
                return Ok(Losses::default());
            }
        }

        // Evolution, head and interest backward (for training), with the
        // auxiliary loss beside them: the loss is a leaf (its backward runs
        // with its forward) that only reads what they read and writes its
        // own gradient buffers, so the two run at once and each fills the
        // other's idle threads.
        let mut aux_io = aux_terms.map(|_| ws.lend_aux());
        let (params, grads, ids) = (&self.params, &mut self.grads, &self.ids);
        let nc = b.div_ceil(chunk(t));
        let mut main_part = || -> Result<f64, ModelError> {
            if aux_terms.is_some() {
                evolve(ws, &mut clock);
            }
            ws.head.forward(&layers.head, params, mode, sync)?;
            let loss_target = ws.head.target_loss(&batch.label);
            clock.lap(Stage::Head);
            if !grad {
                return Ok(loss_target);
            }
            grads.zero();
            ws.head.backward(&layers.head, params, mode, &batch.label, &mut ws.g_head, sync)?;
            grads.add_parts(&ids.head, ws.g_head.parts());
            head::split_input_grad(ws, batch, &mut grads.emb[0], d, e, iw, dh);
            clock.lap(Stage::HeadBackward);
            match &layers.interest {
                InterestLayers::SumPool => add_into(&mut ws.d_s, &ws.d_int),
                InterestLayers::AttentionPool(att) => {
                    weighted_sum_backward(
                        &ws.att_w,
                        &ws.e_hist,
                        &ws.d_int,
                        lengths,
                        &mut ws.d_att,
                        &mut ws.d_e_hist,
                        b,
                        t,
                        e,
                    );
                    attention_backward(
                        att,
                        &mut ws.att,
                        &ws.e_hist,
                        &ws.e_a,
                        lengths,
                        &ws.d_att,
                        &mut ws.d_e_hist,
                        &mut ws.d_e_a,
                        b,
                        t,
                        e,
                        e,
                    );
                }
                InterestLayers::Evolving(ev) => {
                    // Taken out for the duration (the stage borrows the
                    // whole workspace); `prepare` created them, so nothing
                    // allocates.
                    let (g1, mut g2) = ws.g_gru.take().expect("created by prepare");
                    evolution::backward(ev, ws, &h1, &mut g2, lengths, b, t, h, e);
                    grads.add_parts(&ids.gru2, [&g2.w_ih, &g2.w_hh, &g2.b]);
                    ws.g_gru = Some((g1, g2));
                }
            }
            if layers.interest.attention().is_some() {
                let att = &ws.att;
                grads.add_chunks(&ids.att, nc, |c| att[c].grads.parts());
            }
            clock.lap(Stage::InterestBackward);
            Ok(loss_target)
        };
        let aux_part = |n_terms: usize, io: &mut AuxIo| {
            let pk = layers.interest.aux().expect("an auxiliary head");
            extractor::aux_loss(pk, io, &h1, lengths, b, t, h, e, n_terms, grad.then_some(aux_weight))
        };
        // Side by side only on a thread of a pool: the main part then runs
        // on this thread, which makes the replicas' exchanges as before.
        // Called from elsewhere, the join would move the main part,
        // exchanges included, onto a pool thread, where replicas sharing
        // one pool could wait on each other while holding its threads.
        let (main_result, aux_result) = match aux_terms.zip(aux_io.as_mut()) {
            Some((n, io)) if rayon::current_thread_index().is_some() => {
                let (mr, ar) = rayon::join(main_part, || aux_part(n, io));
                (mr, Some(ar))
            }
            Some((n, io)) => (main_part(), Some(aux_part(n, io))),
            None => (main_part(), None),
        };
        ws.h1 = h1;
        if let Some(io) = aux_io {
            ws.take_back(io);
        }
        // What the step waited for the auxiliary loss once the rest was done.
        clock.lap(Stage::AuxLoss);
        let mut loss_target = main_result?;
        let mut loss_aux = aux_result.unwrap_or(0.0);
        self.has_stats = mode == Mode::Train;
        if mode == Mode::Train {
            // Each replica holds its part of both means: the losses of the
            // global batch are their sums.
            let mut parts = [loss_target, loss_aux];
            sync.sum(&mut parts)?;
            (loss_target, loss_aux) = (parts[0], parts[1]);
        }
        let losses = Losses { loss: loss_target + aux_weight as f64 * loss_aux, loss_target, loss_aux };
        if !losses.loss.is_finite() {
            return Err(ModelError::NonFinite(format!(
                "loss {} (target {}, aux {})",
                losses.loss, losses.loss_target, losses.loss_aux
            )));
        }
        if !grad {
            clock.finish(&mut self.timing);
            return Ok(losses);
        }

        // ---- Backward of the extractor (the rest is done) ----
        let (grads, ids) = (&mut self.grads, &self.ids);
        if let InterestLayers::Evolving(ev) = &layers.interest {
            if ev.aux.is_some() && with_neg {
                let aux = &ws.aux;
                grads.add_chunks(&ids.aux, nc, |c| aux[c].grads.parts());
                par_add_into(&mut ws.d_h1, &ws.d_h1_aux);
            }
            // Taken out for the duration (the stage borrows the whole
            // workspace); `prepare` created it, so nothing allocates.
            let (mut g1, g2) = ws.g_gru.take().expect("created by prepare");
            extractor::backward(&ev.gru1, ws, &mut g1, lengths, b, t, e);
            grads.add_parts(&ids.gru1, [&g1.w_ih, &g1.w_hh, &g1.b]);
            ws.g_gru = Some((g1, g2));
        }
        clock.lap(Stage::ExtractorBackward);
        embedding::scatter(batch, e, d, with_neg, ws, &mut grads.emb);
        grads.complete();
        clock.lap(Stage::Scatter);
        clock.finish(&mut self.timing);
        Ok(losses)
    }
}
