//! The shared-input inference mode of [`GruCell`]: `K` rows (for example
//! the candidates of one scoring request) run over **one** input sequence,
//! each with its own attention weights, from the zero state.
//!
//! Because every row sees the same inputs `x_t`, the input projection
//! `W_ih·x_t + b` is computed once ([`GruCell::project_shared`], `[L, 3H]`)
//! and shared; only the two recurrent products per step (`K` rows each) and
//! their gate epilogues are per row. AIGRU's input is `a_t·x_t`, and
//! `W_ih·(a·x) = a·(W_ih·x)`, so for AIGRU the projection is kept without
//! bias and each row takes `a[row, t]·p_t + b` (rounded differently from
//! the training forward, which scales `x` first).
//!
//! Per step, as in the training forward ([`super`]): product 1,
//! `h_{t−1}·U_ruᵀ`, whose epilogue adds the shared gate input and applies σ
//! (storing `r | u` and `r ∘ h_{t−1}`); product 2, `(r ∘ h_{t−1})·U_cᵀ`,
//! whose epilogue adds the gate input, applies tanh and the kind's state
//! update (the same function as training), and writes the new state in
//! place. States are padded to `Hp = pad_lanes(H)` with zero padding lanes.
//! Below 4 rows (latency-bound) the products use 1 × 5 register tiles and
//! product 1 reads a gate-padded `U_ruᵀ` (blocks at `0` and `Hp`), so `r`
//! and `u` are stored aligned with the state.

use crate::simd::V;

use super::GruCell;
use super::step::update;
use crate::cell::CellKind;
use crate::gemm::tile::{Epilogue, gemm_ep};
use crate::simd::{LANES, grow, load, load_n, store, store_n};
use crate::vecmath::simd::{sigmoid_v, tanh_v};

/// Per-row buffers of [`GruCell::forward_shared`]. They grow to the largest
/// `K` seen and are reused: runs with no more rows never allocate.
#[derive(Clone, Debug, Default)]
pub struct SharedWorkspace {
    /// States `[K, Hp]`; after a run, the final state of each row.
    hprev: Vec<f32>,
    /// `r | u` of the current step: below 4 rows gate-padded, `[K, 2Hp]`
    /// with `r` at `[0, Hp)` and `u` at `[Hp, 2Hp)` of each row; otherwise
    /// `[K, 2H]`. Plus 8 values of slack.
    ru: Vec<f32>,
    /// `r ∘ h_{t−1}`, `[K, Hp]`.
    rh: Vec<f32>,
    /// Where the rows of `hprev`, `ru`, `rh` start (32-byte aligned, so no
    /// vector load or store crosses a cache line).
    off: [usize; 3],
    /// Widths and rows of the last run.
    h: usize,
    hp: usize,
    rows: usize,
}

impl SharedWorkspace {
    /// An empty workspace (it grows on first use).
    pub fn new() -> Self {
        Self::default()
    }

    /// The final state (`H` values) of row `row` of the last
    /// [`GruCell::forward_shared`] (zero after a run of zero steps).
    /// Panics if that run had no such row.
    pub fn state(&self, row: usize) -> &[f32] {
        assert!(row < self.rows, "SharedWorkspace::state: row {row} of {}", self.rows);
        let s = self.off[0] + row * self.hp;
        &self.hprev[s..s + self.h]
    }
}

/// Grows `v` to hold `n` values from a 32-byte boundary; returns where
/// that boundary is.
fn grow_aligned(v: &mut Vec<f32>, n: usize) -> usize {
    grow(v, n + LANES - 1);
    (v.as_ptr().addr().wrapping_neg() % (LANES * 4)) / 4
}

/// Attention weight of row `i` at step `t` (0 without attention).
#[inline(always)]
fn weight(att: Option<(&[f32], usize)>, i: usize, t: usize) -> f32 {
    att.map_or(0.0, |(w, ld)| w[i * ld + t])
}

/// The gate input of columns `o .. o + w` (of `3H`) at the current step:
/// the shared projection, or for AIGRU `a·p + b`.
#[inline(always)]
fn gate_input(kind: CellKind, p: &[f32], b: &[f32], a: f32, o: usize, w: usize) -> V {
    if kind == CellKind::Aigru { V::splat(a).mul_add(load_n(p, o, w), load_n(b, o, w)) } else { load_n(p, o, w) }
}

/// Epilogue of product 1 (`h_{t−1}·U_ruᵀ`): `[r | u] = σ(acc + gate
/// input)`, and `r ∘ h_{t−1}`.
struct RuEpi<'a> {
    kind: CellKind,
    /// Projection row of step `t` (`3H` values).
    p: &'a [f32],
    b: &'a [f32],
    att: Option<(&'a [f32], usize)>,
    t: usize,
    ru: &'a mut [f32],
    rh: &'a mut [f32],
    hprev: &'a [f32],
    /// Whether `ru` has the gate-padded layout (else `[K, 2H]`).
    padded: bool,
    h: usize,
    hp: usize,
}

impl Epilogue for RuEpi<'_> {
    #[inline(always)]
    fn vec(&mut self, i: usize, v: usize, acc: V) {
        let (h, hp, o) = (self.h, self.hp, v * LANES);
        let a = weight(self.att, i, self.t);
        if self.padded {
            // Column `o` of gate block `g` (`r` or `u`), at `g·H + c` in
            // the projection.
            let (g, c) = if o < hp { (0, o) } else { (1, o - hp) };
            let w = (h - c).min(LANES);
            let s = sigmoid_v(acc + gate_input(self.kind, self.p, self.b, a, g * h + c, w));
            store(self.ru, i * 2 * hp + o, s);
            if g == 0 {
                // Lanes past H multiply r by the zero padding of h.
                store(self.rh, i * hp + o, s * load(self.hprev, i * hp + o));
            }
        } else {
            let w = (2 * h - o).min(LANES);
            let s = sigmoid_v(acc + gate_input(self.kind, self.p, self.b, a, o, w));
            store_n(self.ru, i * 2 * h + o, w, s);
            if o < h {
                // Lanes past H multiply u by the zero padding of h.
                store(self.rh, i * hp + o, s * load(self.hprev, i * hp + o));
            }
        }
    }
}

/// Epilogue of product 2 (`(r ∘ h_{t−1})·U_cᵀ`): `c = tanh(acc + gate
/// input)` and the state update, in place.
struct CEpi<'a> {
    kind: CellKind,
    p: &'a [f32],
    b: &'a [f32],
    att: Option<(&'a [f32], usize)>,
    t: usize,
    ru: &'a [f32],
    hprev: &'a mut [f32],
    masks: &'a [V],
    /// Start of `u` in a row of `ru` (`Hp` padded, `H` not).
    uo: usize,
    h: usize,
    hp: usize,
}

impl Epilogue for CEpi<'_> {
    #[inline(always)]
    fn vec(&mut self, i: usize, v: usize, acc: V) {
        let (h, hp, o) = (self.h, self.hp, v * LANES);
        let w = (h - o).min(LANES);
        let a = weight(self.att, i, self.t);
        let c = tanh_v(acc + gate_input(self.kind, self.p, self.b, a, 2 * h + o, w));
        // `u` of row `i` at `[uo, uo + H)` of a row of `2·uo` values.
        let u = load(self.ru, 2 * i * self.uo + self.uo + o);
        let s = i * hp + o;
        let hn = update(self.kind, load(self.hprev, s), u, c, V::splat(a)) & self.masks[v];
        store(self.hprev, s, hn);
    }
}

impl GruCell {
    /// The shared input projection of a sequence of `steps` inputs, row `t`
    /// of `x` at `x[t·ldx..]`: `proj [steps, 3H] = x·W_ihᵀ + b`, or without
    /// the bias for [`CellKind::Aigru`] (whose rows scale it by their
    /// attention weight and add the bias themselves). Gate blocks `r, u, c`
    /// as in the parameters. Never allocates. Panics if `x` or `proj` is too
    /// short or `ldx` is below the input width.
    pub fn project_shared(&self, steps: usize, x: &[f32], ldx: usize, proj: &mut [f32]) {
        assert!(self.has_params, "GruCell: set_params was never called");
        let (n, h3) = (self.input, 3 * self.hidden);
        assert!(ldx >= n, "project_shared: row stride {ldx} below the input width {n}");
        assert!(proj.len() >= steps * h3, "project_shared: proj must hold [steps, 3H]");
        if steps == 0 {
            return;
        }
        assert!(x.len() >= (steps - 1) * ldx + n, "project_shared: x must hold `steps` rows");
        let bias = self.kind != CellKind::Aigru;
        let b = &self.b;
        let mut epi = |i: usize, v: usize, acc: V| {
            let w = (h3 - v * LANES).min(LANES);
            let val = if bias { acc + load(b, v * LANES) } else { acc };
            store_n(proj, i * h3 + v * LANES, w, val);
        };
        gemm_ep::<4, 3, _>(steps, n, self.wih_t.nvec(), x, ldx, 1, self.wih_t.data(), self.wih_t.ld(), &mut epi);
    }

    /// Runs `rows` rows over the same `steps` inputs, given by their shared
    /// projection `proj` ([`GruCell::project_shared`]), from the zero
    /// state. `att = (w, ld)`: row `i`'s attention weight at step `t` is
    /// `w[i·ld + t]`; required iff the kind uses attention. Afterwards
    /// [`SharedWorkspace::state`] gives each row's final state; with
    /// `states [rows, steps, H]`, every step's state is written too.
    ///
    /// Inference only (nothing is cached for a backward). Allocates only
    /// when the workspace grows. Panics on inconsistent shapes.
    pub fn forward_shared(
        &self,
        rows: usize,
        steps: usize,
        proj: &[f32],
        att: Option<(&[f32], usize)>,
        ws: &mut SharedWorkspace,
        states: Option<&mut [f32]>,
    ) {
        assert!(self.has_params, "GruCell: set_params was never called");
        let h = self.hidden;
        assert!(proj.len() >= steps * 3 * h, "forward_shared: proj must hold [steps, 3H]");
        assert_eq!(self.kind.uses_attention(), att.is_some(), "forward_shared: attention iff the kind uses it");
        if let Some((w, ld)) = att
            && rows > 0
            && steps > 0
        {
            assert!(ld >= steps && w.len() >= (rows - 1) * ld + steps, "forward_shared: attention weights too short");
        }
        if let Some(st) = &states {
            assert_eq!(st.len(), rows * steps * h, "forward_shared: states must be [rows, steps, H]");
        }
        // One copy of the loop per kind, so the update is resolved at
        // compile time inside the epilogues.
        match self.kind {
            CellKind::Gru => self.shared_kind(CellKind::Gru, rows, steps, proj, att, ws, states),
            CellKind::Augru => self.shared_kind(CellKind::Augru, rows, steps, proj, att, ws, states),
            CellKind::AugruRef => self.shared_kind(CellKind::AugruRef, rows, steps, proj, att, ws, states),
            CellKind::Agru => self.shared_kind(CellKind::Agru, rows, steps, proj, att, ws, states),
            CellKind::Aigru => self.shared_kind(CellKind::Aigru, rows, steps, proj, att, ws, states),
        }
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn shared_kind(
        &self,
        kind: CellKind,
        rows: usize,
        steps: usize,
        proj: &[f32],
        att: Option<(&[f32], usize)>,
        ws: &mut SharedWorkspace,
        mut states: Option<&mut [f32]>,
    ) {
        let (h, hp) = (self.hidden, self.hp);
        let h3 = 3 * h;
        ws.off = [
            grow_aligned(&mut ws.hprev, rows * hp),
            grow_aligned(&mut ws.ru, rows * 2 * hp + LANES),
            grow_aligned(&mut ws.rh, rows * hp),
        ];
        (ws.h, ws.hp, ws.rows) = (h, hp, rows);
        let [oh, ou, or] = ws.off;
        let hprev = &mut ws.hprev[oh..oh + rows * hp];
        let ru = &mut ws.ru[ou..ou + rows * 2 * hp + LANES];
        let rh = &mut ws.rh[or..or + rows * hp];
        hprev.fill(0.0);
        if rows == 0 {
            return;
        }
        let b = &self.b[..h3];
        // Below 4 rows the recurrence is latency-bound: every register tile
        // is a chain of `H` dependent multiply-adds, so fewer, wider tiles
        // (one row × 5 vectors) beat the 4 × 3 tiles; product 1 then reads
        // the gate-padded `U_ruᵀ` (`[r | u]` of H = 36: 2 tiles of 5, where
        // the 9 vectors of the unpadded one would take 5 + 4 × 1), and `ru`
        // is gate-padded too (`r`, `u` aligned with the state). With more
        // rows the products are throughput-bound and the unpadded `[K, 2H]`
        // layout's fewer vectors (9 against 10 at H = 36) pay.
        let few = rows < 4;
        for t in 0..steps {
            let p = &proj[t * h3..(t + 1) * h3];
            let (ru, rh, hp_in) = (&mut ru[..], &mut rh[..], &hprev[..]);
            let mut epi = RuEpi { kind, p, b, att, t, ru, rh, hprev: hp_in, padded: few, h, hp };
            let u = if few { &self.uru_sh } else { &self.uru_t };
            let nv = u.nvec();
            if few {
                gemm_ep::<1, 5, _>(rows, h, nv, hprev, hp, 1, u.data(), u.ld(), &mut epi);
            } else {
                gemm_ep::<4, 3, _>(rows, h, nv, hprev, hp, 1, u.data(), u.ld(), &mut epi);
            }
            let uo = if few { hp } else { h };
            let mut epi =
                CEpi { kind, p, b, att, t, ru: &ru[..], hprev: &mut hprev[..], masks: &self.masks, uo, h, hp };
            let (u, nv) = (&self.uc_t, hp / LANES);
            if few {
                gemm_ep::<1, 5, _>(rows, h, nv, rh, hp, 1, u.data(), u.ld(), &mut epi);
            } else {
                gemm_ep::<4, 3, _>(rows, h, nv, rh, hp, 1, u.data(), u.ld(), &mut epi);
            }
            if let Some(st) = states.as_deref_mut() {
                for i in 0..rows {
                    st[(i * steps + t) * h..(i * steps + t + 1) * h].copy_from_slice(&hprev[i * hp..i * hp + h]);
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "shared_tests.rs"]
mod tests;
