//! The reused buffers of a [`Model`](super::Model): sized for a batch by
//! [`Workspace::prepare`], grown only, so a step after the first of a given
//! size allocates nothing.

use dien_engine::cell::GruGrads;
use dien_engine::cell::fast::CellWorkspace;

use std::ops::{Deref, DerefMut};

use super::{ch_len, chunk, grow};
use crate::config::{Evolution, ModelConfig};
use crate::layers::attention::AttChunks;
use crate::layers::attention::train::AttChunk;
use crate::layers::extractor::aux_train::AuxChunk;
use crate::layers::extractor::{AuxChunks, AuxIo};
use crate::layers::head::train::{HeadGrads, HeadWs, RecalScratch};
use crate::layers::{InterestLayers, Layers};

/// Reused buffers of one model; activations `[B, …]` row-major.
#[derive(Default)]
pub(crate) struct Workspace {
    pub b: usize,
    pub t: usize,
    pub e_hist: Buf,
    pub e_neg: Buf,
    pub e_a: Buf,
    pub u: Buf,
    pub s: Buf,
    pub h1: Buf,
    pub h1_last: Buf,
    pub h2: Buf,
    pub h2_last: Buf,
    pub att_w: Buf,
    pub interest: Buf,
    pub cell1: CellWorkspace,
    pub cell2: CellWorkspace,
    pub att: AttChunks,
    pub aux: AuxChunks,
    pub aux_loss: Vec<f64>,
    pub head: HeadWs,
    // Gradients of the activations.
    pub d_e_hist: Buf,
    pub d_e_neg: Buf,
    pub d_e_a: Buf,
    pub d_s: Buf,
    pub d_h1: Buf,
    /// The auxiliary loss's part of `d_h1`, added to it after the interest backward.
    pub d_h1_aux: Buf,
    pub d_h2: Buf,
    pub d_att: Buf,
    pub d_int: Buf,
    pub d_x: Buf,
    /// Parameter gradients of the two GRUs (created on the first DIEN step).
    pub g_gru: Option<(GruGrads<f32>, GruGrads<f32>)>,
    pub g_head: HeadGrads,
    /// Kept between recalibrations.
    pub recal: RecalScratch,
}

/// A buffer whose length is that of the current batch, over storage that
/// only grows: batches of alternating lengths then neither reallocate nor
/// clear memory (resizing a `Vec` up zero-fills every time, which on short
/// histories cost as much as gathering the embeddings). What the slice
/// holds beyond what a step writes is left from earlier steps; every stage
/// writes what it reads.
#[derive(Clone, Debug, Default)]
pub(crate) struct Buf {
    data: Vec<f32>,
    len: usize,
}

impl Buf {
    /// Sets the length to `n`, growing the storage when it is shorter.
    pub fn fit(&mut self, n: usize) {
        grow(&mut self.data, n);
        self.len = n;
    }
}

impl Deref for Buf {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.data[..self.len]
    }
}

impl DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.data[..self.len]
    }
}

impl Workspace {
    /// Lends what the auxiliary loss reads and writes, so that it can run
    /// beside stages that borrow the rest of the workspace; nothing is
    /// copied. [`Workspace::take_back`] returns it.
    pub fn lend_aux(&mut self) -> AuxIo {
        use std::mem::take;
        AuxIo {
            chunks: take(&mut self.aux),
            loss: take(&mut self.aux_loss),
            e_hist: take(&mut self.e_hist),
            e_neg: take(&mut self.e_neg),
            d_h1: take(&mut self.d_h1_aux),
            d_e_hist: take(&mut self.d_e_hist),
            d_e_neg: take(&mut self.d_e_neg),
        }
    }

    /// Takes back what [`Workspace::lend_aux`] lent.
    pub fn take_back(&mut self, io: AuxIo) {
        let AuxIo { chunks, loss, e_hist, e_neg, d_h1, d_e_hist, d_e_neg } = io;
        (self.aux, self.aux_loss, self.e_hist, self.e_neg) = (chunks, loss, e_hist, e_neg);
        (self.d_h1_aux, self.d_e_hist, self.d_e_neg) = (d_h1, d_e_hist, d_e_neg);
    }

    /// Sizes every buffer for a batch of `b` samples of `t` steps.
    pub fn prepare(&mut self, cfg: &ModelConfig, layers: &Layers, b: usize, t: usize, with_neg: bool) {
        let (d, e, h) = (cfg.d, cfg.e(), cfg.hidden);
        let gru = matches!(layers.interest, InterestLayers::Evolving(_));
        self.b = b;
        self.t = t;
        self.e_hist.fit(b * t * e);
        self.e_neg.fit(if with_neg { b * t * e } else { 0 });
        self.e_a.fit(b * e);
        self.u.fit(b * d);
        self.s.fit(b * e);
        let hb = if gru { b * t * h } else { 0 };
        self.h1.fit(hb);
        self.h1_last.fit(if gru { b * h } else { 0 });
        self.h2.fit(hb);
        self.h2_last.fit(if gru { b * h } else { 0 });
        self.att_w.fit(b * t);
        self.interest.fit(b * cfg.interest_width());
        self.d_e_hist.fit(b * t * e);
        self.d_e_neg.fit(if with_neg { b * t * e } else { 0 });
        self.d_e_a.fit(b * e);
        self.d_s.fit(b * e);
        self.d_h1.fit(hb);
        self.d_h1_aux.fit(if with_neg { hb } else { 0 });
        // Only the pooled evolution sums gradients of the evolving states.
        let pooled = matches!(&layers.interest, InterestLayers::Evolving(ev) if ev.evolution == Evolution::Pooled);
        self.d_h2.fit(if pooled { hb } else { 0 });
        self.d_att.fit(b * t);
        self.d_int.fit(b * cfg.interest_width());
        self.d_x.fit(b * d);
        let k = chunk(t);
        let nc = b.div_ceil(k);
        if let Some(pk) = layers.interest.attention() {
            if self.att.len() < nc {
                self.att.resize_with(nc, AttChunk::default);
            }
            for (c, ch) in self.att[..nc].iter_mut().enumerate() {
                ch.prepare(pk, ch_len(b, c, k), t);
            }
            self.att.scr.fit(|s| s.fit(pk.a, k, k * t));
        }
        if let Some(pk) = layers.interest.aux() {
            if self.aux.len() < nc {
                self.aux.resize_with(nc, AuxChunk::default);
            }
            for (c, ch) in self.aux[..nc].iter_mut().enumerate() {
                ch.prepare(pk, ch_len(b, c, k), t);
            }
            self.aux.scr.fit(|s| s.fit(pk, t));
            self.aux_loss.resize(nc, 0.0);
        }
        self.head.prepare(cfg.head_in(), b);
        if gru && self.g_gru.is_none() {
            self.g_gru = Some((GruGrads::zeros(e, h), GruGrads::zeros(h, h)));
        }
        if self.g_head.gamma.len() != cfg.head_in() {
            self.g_head = HeadGrads::new(cfg.head_in());
        }
    }
}
