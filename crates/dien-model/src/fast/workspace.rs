//! The reused buffers of a [`Model`](super::Model): sized for a batch by
//! [`Workspace::prepare`], grown only, so a step after the first of a given
//! size allocates nothing.

use dien_engine::cell::GruGrads;
use dien_engine::cell::fast::CellWorkspace;

use super::CHUNK;
use crate::config::ModelConfig;
use crate::layers::attention::train::AttChunk;
use crate::layers::extractor::aux_train::AuxChunk;
use crate::layers::head::train::{HeadGrads, HeadWs};
use crate::layers::{InterestLayers, Layers};

/// Reused buffers of one model; activations `[B, …]` row-major.
#[derive(Default)]
pub(crate) struct Workspace {
    pub b: usize,
    pub t: usize,
    pub e_hist: Vec<f32>,
    pub e_neg: Vec<f32>,
    pub e_a: Vec<f32>,
    pub u: Vec<f32>,
    pub s: Vec<f32>,
    pub h1: Vec<f32>,
    pub h1_last: Vec<f32>,
    pub h2: Vec<f32>,
    pub h2_last: Vec<f32>,
    pub att_w: Vec<f32>,
    pub interest: Vec<f32>,
    pub cell1: CellWorkspace,
    pub cell2: CellWorkspace,
    pub att: Vec<AttChunk>,
    pub aux: Vec<AuxChunk>,
    pub aux_loss: Vec<f64>,
    pub head: HeadWs,
    // Gradients of the activations.
    pub d_e_hist: Vec<f32>,
    pub d_e_neg: Vec<f32>,
    pub d_e_a: Vec<f32>,
    pub d_s: Vec<f32>,
    pub d_h1: Vec<f32>,
    pub d_h2: Vec<f32>,
    pub d_att: Vec<f32>,
    pub d_int: Vec<f32>,
    pub d_x: Vec<f32>,
    /// Parameter gradients of the two GRUs (created on the first DIEN step).
    pub g_gru: Option<(GruGrads<f32>, GruGrads<f32>)>,
    pub g_head: HeadGrads,
}

/// Sets `v` to exactly `n` elements.
pub(crate) fn fit(v: &mut Vec<f32>, n: usize) {
    if v.len() != n {
        v.resize(n, 0.0);
    }
}

impl Workspace {
    /// Sizes every buffer for a batch of `b` samples of `t` steps.
    pub fn prepare(&mut self, cfg: &ModelConfig, layers: &Layers, b: usize, t: usize, with_neg: bool) {
        let (d, e, h) = (cfg.d, cfg.e(), cfg.hidden);
        let gru = matches!(layers.interest, InterestLayers::Evolving(_));
        self.b = b;
        self.t = t;
        fit(&mut self.e_hist, b * t * e);
        fit(&mut self.e_neg, if with_neg { b * t * e } else { 0 });
        fit(&mut self.e_a, b * e);
        fit(&mut self.u, b * d);
        fit(&mut self.s, b * e);
        let hb = if gru { b * t * h } else { 0 };
        fit(&mut self.h1, hb);
        fit(&mut self.h1_last, if gru { b * h } else { 0 });
        fit(&mut self.h2, hb);
        fit(&mut self.h2_last, if gru { b * h } else { 0 });
        fit(&mut self.att_w, b * t);
        fit(&mut self.interest, b * cfg.interest_width());
        fit(&mut self.d_e_hist, b * t * e);
        fit(&mut self.d_e_neg, if with_neg { b * t * e } else { 0 });
        fit(&mut self.d_e_a, b * e);
        fit(&mut self.d_s, b * e);
        fit(&mut self.d_h1, hb);
        fit(&mut self.d_h2, hb);
        fit(&mut self.d_att, b * t);
        fit(&mut self.d_int, b * cfg.interest_width());
        fit(&mut self.d_x, b * t * e.max(h));
        let nc = b.div_ceil(CHUNK);
        if let Some(pk) = layers.interest.attention() {
            if self.att.len() < nc {
                self.att.resize_with(nc, AttChunk::default);
            }
            for (c, ch) in self.att[..nc].iter_mut().enumerate() {
                ch.prepare(pk, CHUNK.min(b - c * CHUNK), t);
            }
        }
        if let Some(pk) = layers.interest.aux() {
            if self.aux.len() < nc {
                self.aux.resize_with(nc, AuxChunk::default);
            }
            for (c, ch) in self.aux[..nc].iter_mut().enumerate() {
                ch.prepare(pk, CHUNK.min(b - c * CHUNK), t);
            }
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
