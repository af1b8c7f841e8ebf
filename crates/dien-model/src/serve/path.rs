//! The request path of [`Predictor`]: the layers of the [`Plan`] packed
//! for requests ([`pack`], in `f32`; [`InterestServe::to_bf16`] for
//! [`Precision::Bf16`](super::Precision)) and the computation of one
//! request ([`Predictor::run`], described in the [module
//! documentation](super)).

// Index loops mirror the equations' subscripts.
#![allow(clippy::needless_range_loop)]

use dien_engine::cell::fast::GruCell;
use dien_engine::cell::{CellKind, GruParams};
use dien_engine::gemm::bf16::{Bf16Cpu, Bf16Rows};
use dien_engine::gemm::tile::Accumulate;
use dien_engine::simd::{axpy, grow, sigmoid};

use super::linear::Linear;
use super::{BLOCK, Items, Predictor, Scratch, ServeError};
use crate::config::{Evolution, ModelConfig};
use crate::layers::attention::serve::AttServe;
use crate::layers::head::serve::HeadServe;
use crate::params::ParamStore;
use crate::plan::{Interest, Plan};

/// The interest stage of the [`Plan`], packed for requests: exactly the
/// layers the model has.
// One per predictor, built once: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub(super) enum InterestServe {
    SumPool,
    AttentionPool(AttServe),
    Evolving {
        gru1: GruCell,
        gru2: GruCell,
        att: AttServe,
        evolution: Evolution,
        /// The two GRUs' input projections in bf16 (`None` in `f32`, where
        /// the cells' own `project_shared` runs).
        proj: Option<Box<[InputProj; 2]>>,
    },
}

/// A GRU's input projection `x·W_ihᵀ + b` outside the cell (bf16).
#[derive(Clone, Debug)]
pub(super) struct InputProj {
    /// `W_ihᵀ`: `[input → 3H]`.
    w: Linear,
    /// `b` (`3H`), or `None` for AIGRU, whose projection has no bias
    /// (`GruCell::project_shared`).
    b: Option<Vec<f32>>,
}

impl InputProj {
    /// The bf16 projection of the GRU `prefix` (`gru1`, `gru2`) of `kind`.
    fn bf16(p: &ParamStore<f32>, prefix: &str, kind: CellKind, input: usize, h: usize, cpu: Bf16Cpu) -> Self {
        let w = Linear::new(p.get(&format!("{prefix}.w_ih")), 3 * h, input).to_bf16(cpu);
        let b = (kind != CellKind::Aigru).then(|| p.get(&format!("{prefix}.b")).to_vec());
        Self { w, b }
    }
}

/// `proj [steps, 3H]` of `steps` inputs (row `t` at `x[t·ldx..]`): the
/// cell's own `f32` projection, or the bf16 one when given.
#[allow(clippy::too_many_arguments)]
fn project(
    cell: &GruCell,
    bf16: Option<&InputProj>,
    steps: usize,
    x: &[f32],
    ldx: usize,
    proj: &mut [f32],
    ws: &mut Bf16Rows,
) {
    let Some(ip) = bf16 else {
        return cell.project_shared(steps, x, ldx, proj);
    };
    let h3 = 3 * cell.hidden();
    let out = &mut proj[..steps * h3];
    match &ip.b {
        Some(b) => out.chunks_exact_mut(h3).for_each(|r| r.copy_from_slice(b)),
        None => out.fill(0.0),
    }
    ip.w.gemm(steps, x, ldx, out, h3, Accumulate::Yes, ws);
}

/// The interest stage and head of `cfg` from `params` (already checked
/// against `cfg`), every product in `f32`.
pub(super) fn pack(cfg: &ModelConfig, params: &ParamStore<f32>) -> (InterestServe, HeadServe) {
    let (e, h) = (cfg.e(), cfg.hidden);
    let p = params;
    let gru = |prefix: &str, kind: CellKind, input: usize| {
        let mut cell = GruCell::new(kind, input, h);
        cell.set_params(&GruParams {
            w_ih: p.get(&format!("{prefix}.w_ih")),
            w_hh: p.get(&format!("{prefix}.w_hh")),
            b: p.get(&format!("{prefix}.b")),
            input,
            hidden: h,
        });
        cell
    };
    let interest = match Plan::new(cfg).interest {
        Interest::SumPool => InterestServe::SumPool,
        Interest::AttentionPool { att } => InterestServe::AttentionPool(AttServe::new(att, cfg.att_width(), e, p)),
        Interest::Evolving(ev) => InterestServe::Evolving {
            gru1: gru("gru1", CellKind::Gru, e),
            gru2: gru("gru2", ev.cell, h),
            att: AttServe::new(ev.att, cfg.att_width(), e, p),
            evolution: ev.evolution,
            proj: None,
        },
    };
    (interest, HeadServe::new(cfg.head_in(), p))
}

impl InterestServe {
    /// The same stage with the attention's products and the GRUs' input
    /// projections in bf16 (the recurrences stay `f32`).
    pub(super) fn to_bf16(&self, cfg: &ModelConfig, p: &ParamStore<f32>, cpu: Bf16Cpu) -> Self {
        match self {
            InterestServe::SumPool => InterestServe::SumPool,
            InterestServe::AttentionPool(a) => InterestServe::AttentionPool(a.to_bf16(cpu)),
            InterestServe::Evolving { gru1, gru2, att, evolution, .. } => InterestServe::Evolving {
                gru1: gru1.clone(),
                gru2: gru2.clone(),
                att: att.to_bf16(cpu),
                evolution: *evolution,
                proj: Some(Box::new([
                    InputProj::bf16(p, "gru1", gru1.kind(), cfg.e(), cfg.hidden, cpu),
                    InputProj::bf16(p, "gru2", gru2.kind(), cfg.hidden, cfg.hidden, cpu),
                ])),
            },
        }
    }
}

impl Predictor {
    /// Embedding row `i` of table `t` (0 uid, 1 mid, 2 cat); `i` was checked.
    #[inline]
    fn row(&self, t: usize, i: u32) -> &[f32] {
        let d = self.cfg.d;
        &self.params.data(self.emb[t])[i as usize * d..(i as usize + 1) * d]
    }

    /// The request path: logits (or probabilities) of the candidates into `out`.
    pub(super) fn run(
        &self,
        sc: &mut Scratch,
        uid: u32,
        hist: Items<'_>,
        cands: Items<'_>,
        out: &mut [f32],
        probs: bool,
    ) -> Result<(), ServeError> {
        let start = self.validate(uid, hist, cands, out.len())?;
        let cfg = &self.cfg;
        let (d, e, h, iw, dh) = (cfg.d, cfg.e(), cfg.hidden, cfg.interest_width(), cfg.head_in());
        let (hm, hc) = (&hist.mid[start..], &hist.cat[start..]);
        let (l, k) = (hm.len(), cands.len());
        let Scratch { u, e_hist, s, g1, h1, g2, h2, e_a, w, interest, x, gru, att, head, bf, .. } = sc;

        // Per request: user row, history rows and their sum.
        grow(u, d);
        u[..d].copy_from_slice(self.row(0, uid));
        grow(e_hist, l * e);
        grow(s, e);
        let s = &mut s[..e];
        s.fill(0.0);
        for t in 0..l {
            let x = &mut e_hist[t * e..(t + 1) * e];
            x[..d].copy_from_slice(self.row(1, hm[t]));
            x[d..].copy_from_slice(self.row(2, hc[t]));
            for (a, &b) in s.iter_mut().zip(x.iter()) {
                *a += b;
            }
        }
        let e_hist = &e_hist[..l * e];

        // Per request: extractor GRU, shared projections, attention keys.
        let mut keys: &[f32] = &[];
        if l > 0 {
            match &self.interest {
                InterestServe::Evolving { gru1: c1, gru2: c2, att: a, evolution, proj } => {
                    let n3 = 3 * h;
                    grow(g1, l * n3);
                    grow(h1, l * h);
                    grow(g2, l * n3);
                    project(c1, proj.as_ref().map(|p| &p[0]), l, e_hist, e, g1, bf);
                    c1.forward_shared(1, l, g1, None, gru, Some(&mut h1[..l * h]));
                    let h1 = &h1[..l * h];
                    project(c2, proj.as_ref().map(|p| &p[1]), l, h1, h, g2, bf);
                    keys = h1;
                    if *evolution == Evolution::Pooled {
                        grow(h2, l * h);
                        c2.forward_shared(1, l, g2, None, gru, Some(&mut h2[..l * h]));
                        keys = &h2[..l * h];
                    }
                    a.prepare_keys(keys, l, att);
                }
                InterestServe::AttentionPool(a) => {
                    keys = e_hist;
                    a.prepare_keys(keys, l, att);
                }
                InterestServe::SumPool => {}
            }
        }

        // Per block of candidates: interest, head input, head.
        let b = BLOCK.min(k);
        grow(e_a, b * e);
        grow(w, b * l);
        grow(interest, b * iw);
        grow(x, b * dh);
        let mut c0 = 0;
        while c0 < k {
            let nb = BLOCK.min(k - c0);
            for j in 0..nb {
                let ea = &mut e_a[j * e..(j + 1) * e];
                ea[..d].copy_from_slice(self.row(1, cands.mid[c0 + j]));
                ea[d..].copy_from_slice(self.row(2, cands.cat[c0 + j]));
            }
            let it = &mut interest[..nb * iw];
            // The attention and, for a steered evolving cell, that cell.
            let (a, gated) = match &self.interest {
                InterestServe::SumPool => (None, None),
                InterestServe::AttentionPool(a) => (Some(a), None),
                InterestServe::Evolving { att: a, gru2, evolution, .. } => {
                    (Some(a), (*evolution == Evolution::Gated).then_some(gru2))
                }
            };
            match a {
                None => {
                    for row in it.chunks_exact_mut(iw) {
                        row.copy_from_slice(s);
                    }
                }
                Some(_) if l == 0 => it.fill(0.0),
                Some(a) => {
                    a.weights(keys, l, e_a, nb, att, w);
                    if let Some(c2) = gated {
                        c2.forward_shared(nb, l, g2, Some((&w[..], l)), gru, None);
                        for (j, row) in it.chunks_exact_mut(iw).enumerate() {
                            row.copy_from_slice(gru.state(j));
                        }
                    } else {
                        // Interest = Σ_t a_t k_t.
                        for (j, row) in it.chunks_exact_mut(iw).enumerate() {
                            row.fill(0.0);
                            for t in 0..l {
                                axpy(w[j * l + t], &keys[t * iw..(t + 1) * iw], row);
                            }
                        }
                    }
                }
            }
            // Head input [u; e_a; s; e_a ∘ s; interest].
            for j in 0..nb {
                let xr = &mut x[j * dh..(j + 1) * dh];
                let ea = &e_a[j * e..(j + 1) * e];
                xr[..d].copy_from_slice(&u[..d]);
                xr[d..d + e].copy_from_slice(ea);
                xr[d + e..d + 2 * e].copy_from_slice(s);
                for ((p, &a), &b) in xr[d + 2 * e..d + 3 * e].iter_mut().zip(ea).zip(s.iter()) {
                    *p = a * b;
                }
                xr[d + 3 * e..].copy_from_slice(&interest[j * iw..(j + 1) * iw]);
            }
            let o = &mut out[c0..c0 + nb];
            self.head.logits(x, nb, head, o);
            if probs {
                for v in o.iter_mut() {
                    *v = sigmoid(*v);
                }
            }
            c0 += nb;
        }
        Ok(())
    }
}
