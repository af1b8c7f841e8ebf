//! The per-step pieces of the fast cells: the state update of each kind
//! and its gradient (training, inference and the shared-input mode use the
//! same statement), and the epilogues of the forward's two recurrent
//! products.

use crate::cell::CellKind;
use crate::gemm::tile::Epilogue;
use crate::simd::{LANES, V, load, store, store_n};
use crate::vecmath::simd::{sigmoid_v, tanh_v};

/// Row stride of the gate matrix: `3H` in training (the cache layout the
/// backward reads), padded to whole vectors in inference.
pub(super) fn gate_stride(h: usize, train: bool) -> usize {
    if train { 3 * h } else { (3 * h).div_ceil(LANES) * LANES }
}

/// `h_t` from `h_{t−1}`, the gates and the attention score (docs/MODEL.md#interest-evolving-layer): the
/// one statement of each kind's state update, used by training, inference
/// and the shared-input mode.
#[inline(always)]
pub(super) fn update(kind: CellKind, hp: V, u: V, c: V, a: V) -> V {
    match kind {
        CellKind::Gru | CellKind::Aigru => u.mul_add(c - hp, hp),
        CellKind::Augru => (a * u).mul_add(c - hp, hp),
        CellKind::AugruRef => {
            let k = (V::ONE - a) * (V::ONE - u);
            k.mul_add(hp - c, c)
        }
        CellKind::Agru => a.mul_add(c - hp, hp),
    }
}

/// Gradients of the state update: given `dh = ∂L/∂h_t`, returns
/// `(∂L/∂h_{t−1} through the update, ∂L/∂u, ∂L/∂c, lane terms of ∂L/∂a)`.
#[inline(always)]
pub(super) fn update_grad(kind: CellKind, dh: V, hp: V, u: V, c: V, a: V) -> [V; 4] {
    let one = V::ONE;
    match kind {
        CellKind::Gru | CellKind::Aigru => {
            let dc = dh * u;
            [dh - dc, dh * (c - hp), dc, V::ZERO]
        }
        CellKind::Augru => {
            let ua = a * u;
            let dd = dh * (c - hp);
            let dc = dh * ua;
            [dh - dc, dd * a, dc, dd * u]
        }
        CellKind::AugruRef => {
            let k = (one - a) * (one - u);
            let dk = dh * (hp - c);
            [dh * k, -(dk * (one - a)), dh - dh * k, -(dk * (one - u))]
        }
        CellKind::Agru => {
            let dc = dh * a;
            [dh - dc, V::ZERO, dc, dh * (c - hp)]
        }
    }
}

/// Epilogue of forward product 1 (`h_{t−1} · U_ruᵀ`): adds the input
/// projection, applies σ, stores `r | u` over it and `r ∘ h_{t−1}`.
pub(super) struct RuEpi<'a> {
    pub(super) g: &'a mut [f32],
    pub(super) rh: &'a mut [f32],
    pub(super) hprev: &'a [f32],
    pub(super) h: usize,
    pub(super) hp: usize,
    /// Row stride of `g`.
    pub(super) gs: usize,
    pub(super) row0: usize,
    pub(super) hp_off: usize,
    pub(super) rh_off: usize,
}

impl Epilogue for RuEpi<'_> {
    #[inline(always)]
    fn vec(&mut self, i: usize, v: usize, acc: V) {
        let (h, hp) = (self.h, self.hp);
        let o = (self.row0 + i) * self.gs + v * LANES;
        let s = sigmoid_v(acc + load(self.g, o));
        store_n(self.g, o, (2 * h - v * LANES).min(LANES), s);
        if v * LANES < h {
            // Lanes past H multiply u by the zero padding of h.
            let hv = load(self.hprev, (self.hp_off + i) * hp + v * LANES);
            store(self.rh, (self.rh_off + i) * hp + v * LANES, s * hv);
        }
    }
}

/// Epilogue of forward product 2 (`(r ∘ h_{t−1}) · U_cᵀ`): adds the input
/// projection, applies tanh and the state update; stores `c`, the new state
/// (cache and output).
pub(super) struct CEpi<'a> {
    pub(super) kind: CellKind,
    pub(super) g: &'a mut [f32],
    pub(super) hprev: &'a mut [f32],
    pub(super) states: &'a mut [f32],
    pub(super) att: &'a [f32],
    pub(super) perm: &'a [usize],
    pub(super) masks: &'a [V],
    pub(super) h: usize,
    pub(super) hp: usize,
    /// Row stride of `g`.
    pub(super) gs: usize,
    /// Whether `c` is kept in `g` (training).
    pub(super) keep_c: bool,
    pub(super) row0: usize,
    pub(super) hp_off: usize,
    pub(super) hn_off: usize,
    pub(super) steps: usize,
    pub(super) t: usize,
}

impl Epilogue for CEpi<'_> {
    #[inline(always)]
    fn vec(&mut self, i: usize, v: usize, acc: V) {
        let (h, hp) = (self.h, self.hp);
        let row = self.row0 + i;
        let w = (h - v * LANES).min(LANES);
        let ou = row * self.gs + h + v * LANES;
        let oc = ou + h;
        let c = tanh_v(acc + load(self.g, oc));
        let u = load(self.g, ou);
        let hv = load(self.hprev, (self.hp_off + i) * hp + v * LANES);
        let hn = update(self.kind, hv, u, c, V::splat(self.att[row])) & self.masks[v];
        if self.keep_c {
            store_n(self.g, oc, w, c);
        }
        store(self.hprev, (self.hn_off + i) * hp + v * LANES, hn);
        if !self.states.is_empty() {
            let o = (self.perm[i] * self.steps + self.t) * h + v * LANES;
            if o + LANES <= (self.perm[i] + 1) * self.steps * h {
                // The lanes past H are zero and land on the sample's later
                // steps, written later (or padding, zero): a whole store
                // instead of a masked one (slow on some CPUs). Only when
                // they stay inside the sample's rows: with H under half a
                // vector they outnumber a step's H values and reach past
                // the next step.
                store(self.states, o, hn);
            } else {
                store_n(self.states, o, w, hn);
            }
        }
    }
}
