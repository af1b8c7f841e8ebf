//! The recurrent layers of the request path (SPEC §3, §6) in inference
//! form: many rows that share one input sequence.
//!
//! A request has one history, so the interest extractor runs on one row,
//! and the evolving layer runs the `K` candidates over the *same* inputs
//! `h_t` with per-candidate attention. The input projection `W_ih·h_t + b`
//! is therefore computed once per request (`[L, 3H]`) and shared by every
//! row; only the recurrent products (`K` rows per step) and the gate
//! epilogues are per candidate. AIGRU scales its input by `a_t`, and
//! `W_ih·(a·h) = a·(W_ih·h)`, so it shares the bias-free projection and
//! scales it per row.
//!
//! Rows are padded to `Hp = pad8(H)` with zero weights, so every gate block
//! starts on a vector boundary and the padding lanes of the state stay zero
//! (`r = σ(0)`, `c = tanh(0) = 0`, and every update maps `(h, c) = (0, 0)` to 0).

use dien_engine::cell::CellKind;
use dien_engine::gemm::tile::{Accumulate, Packed, gemm_packed};
use dien_engine::vecmath::simd::{sigmoid8, tanh8};
use wide::f32x8;

use super::simd::{LANES, grow, load, pad8, store};

/// A GRU-family cell packed for the request path.
#[derive(Clone, Debug)]
pub(crate) struct GruServe {
    kind: CellKind,
    input: usize,
    h: usize,
    hp: usize,
    /// `W_ihᵀ` with gate blocks at `0, Hp, 2Hp`: `[input → 3Hp]`.
    wih_t: Packed,
    /// `[U_r; U_u]ᵀ` with blocks at `0, Hp`: `[H → 2Hp]`.
    uru_t: Packed,
    /// `U_cᵀ`: `[H → Hp]`.
    uc_t: Packed,
    /// Bias `[3Hp]`, same block layout, padding zero.
    b: Vec<f32>,
}

/// Where the gate inputs of step `t` come from.
#[derive(Clone, Copy, Debug)]
pub(crate) enum GateInput<'a> {
    /// `g [L, 3Hp] = x·W_ihᵀ + b`, the same for every row.
    Shared(&'a [f32]),
    /// `p [L, 3Hp] = x·W_ihᵀ` without bias; row `i` takes `a[i, t]·p_t + b`
    /// (AIGRU, whose input is `a_t·x_t`).
    Scaled(&'a [f32]),
}

/// Per-step buffers of [`GruServe::run`] (grow only).
#[derive(Clone, Debug, Default)]
pub(crate) struct GruWs {
    /// States `[n, Hp]`; after `run`, the final state of each row.
    pub hprev: Vec<f32>,
    /// `[r | u]` pre-activations, then `u`: `[n, 2Hp]`.
    ru: Vec<f32>,
    /// `r ∘ h_{t−1}`: `[n, Hp]`.
    rh: Vec<f32>,
    /// `U_c·(r ∘ h_{t−1})`: `[n, Hp]`.
    cpre: Vec<f32>,
}

/// `h_t` from `h_{t−1}`, the gates and the attention weight (SPEC §6); the
/// same forms as the training cells.
#[inline(always)]
fn update(kind: CellKind, hp: f32x8, u: f32x8, c: f32x8, a: f32x8) -> f32x8 {
    match kind {
        CellKind::Gru | CellKind::Aigru => u.mul_add(c - hp, hp),
        CellKind::Augru => (a * u).mul_add(c - hp, hp),
        CellKind::AugruRef => {
            let k = (f32x8::ONE - a) * (f32x8::ONE - u);
            k.mul_add(hp - c, c)
        }
        CellKind::Agru => a.mul_add(c - hp, hp),
    }
}

impl GruServe {
    /// Packs `w_ih [3H, input]`, `w_hh [3H, H]`, `b [3H]` (SPEC layouts).
    pub fn new(kind: CellKind, w_ih: &[f32], w_hh: &[f32], b: &[f32], input: usize, h: usize) -> Self {
        assert_eq!(w_ih.len(), 3 * h * input, "w_ih must be [3H, input]");
        assert_eq!(w_hh.len(), 3 * h * h, "w_hh must be [3H, H]");
        assert_eq!(b.len(), 3 * h, "b must be [3H]");
        let hp = pad8(h);
        let mut wih = vec![0.0; 3 * hp * input];
        let mut uru = vec![0.0; 2 * hp * h];
        let mut uc = vec![0.0; hp * h];
        let mut bp = vec![0.0; 3 * hp];
        for g in 0..3 {
            for j in 0..h {
                let (src, dst) = (g * h + j, g * hp + j);
                wih[dst * input..(dst + 1) * input].copy_from_slice(&w_ih[src * input..(src + 1) * input]);
                let row = &w_hh[src * h..(src + 1) * h];
                if g < 2 {
                    uru[dst * h..(dst + 1) * h].copy_from_slice(row);
                } else {
                    uc[j * h..(j + 1) * h].copy_from_slice(row);
                }
                bp[dst] = b[src];
            }
        }
        Self {
            kind,
            input,
            h,
            hp,
            wih_t: Packed::from_weight_t(&wih, 3 * hp, input),
            uru_t: Packed::from_weight_t(&uru, 2 * hp, h),
            uc_t: Packed::from_weight_t(&uc, hp, h),
            b: bp,
        }
    }

    /// Padded hidden width `Hp`.
    pub fn hp(&self) -> usize {
        self.hp
    }

    /// `out [rows, 3Hp] = x [rows, input]·W_ihᵀ (+ b)`, `x` rows `ldx` apart.
    pub fn project(&self, rows: usize, x: &[f32], ldx: usize, bias: bool, out: &mut [f32]) {
        let n3 = 3 * self.hp;
        assert!(ldx >= self.input, "project: row stride below the input width");
        assert!(out.len() >= rows * n3, "project: output too short");
        if bias {
            for r in 0..rows {
                out[r * n3..(r + 1) * n3].copy_from_slice(&self.b);
            }
            gemm_packed(rows, x, ldx, &self.wih_t, out, n3, Accumulate::Yes);
        } else {
            gemm_packed(rows, x, ldx, &self.wih_t, out, n3, Accumulate::No);
        }
    }

    /// Runs `n` rows over `l` steps from the zero state, all on the same
    /// projected inputs. `att = (w, ld)`: row `i`'s weight at step `t` is
    /// `w[i·ld + t]` (required by the kinds that use attention). Afterwards
    /// `ws.hprev[i·Hp..i·Hp + H]` is row `i`'s final state; with `states`
    /// (only for `n = 1`), step `t`'s state is also written to
    /// `states[t·H..(t + 1)·H]`.
    pub fn run(
        &self,
        n: usize,
        l: usize,
        input: GateInput<'_>,
        att: Option<(&[f32], usize)>,
        ws: &mut GruWs,
        states: Option<&mut [f32]>,
    ) {
        assert!(states.is_none() || n == 1, "GruServe::run: states only for one row");
        assert_eq!(self.kind.uses_attention(), att.is_some(), "GruServe::run: attention iff the kind uses it");
        assert_eq!(
            matches!(input, GateInput::Scaled(_)),
            self.kind == CellKind::Aigru,
            "GruServe::run: scaled inputs iff AIGRU"
        );
        let src = match input {
            GateInput::Shared(g) | GateInput::Scaled(g) => g,
        };
        assert!(src.len() >= l * 3 * self.hp, "GruServe::run: gate inputs too short");
        if let Some((w, ld)) = att
            && n > 0
            && l > 0
        {
            assert!(ld >= l && w.len() >= (n - 1) * ld + l, "GruServe::run: attention weights too short");
        }
        // One monomorphic loop per kind, so the update is resolved at compile time.
        match self.kind {
            CellKind::Gru => self.run_kind(CellKind::Gru, n, l, input, att, ws, states),
            CellKind::Augru => self.run_kind(CellKind::Augru, n, l, input, att, ws, states),
            CellKind::AugruRef => self.run_kind(CellKind::AugruRef, n, l, input, att, ws, states),
            CellKind::Agru => self.run_kind(CellKind::Agru, n, l, input, att, ws, states),
            CellKind::Aigru => self.run_kind(CellKind::Aigru, n, l, input, att, ws, states),
        }
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn run_kind(
        &self,
        kind: CellKind,
        n: usize,
        l: usize,
        input: GateInput<'_>,
        att: Option<(&[f32], usize)>,
        ws: &mut GruWs,
        mut states: Option<&mut [f32]>,
    ) {
        let (h, hp) = (self.h, self.hp);
        let (h2p, h3p) = (2 * hp, 3 * hp);
        let nv = hp / LANES;
        grow(&mut ws.hprev, n * hp);
        grow(&mut ws.ru, n * h2p);
        grow(&mut ws.rh, n * hp);
        grow(&mut ws.cpre, n * hp);
        let GruWs { hprev, ru, rh, cpre } = ws;
        hprev[..n * hp].fill(0.0);
        let (src, scaled) = match input {
            GateInput::Shared(g) => (g, false),
            GateInput::Scaled(p) => (p, true),
        };
        let b = &self.b;
        for t in 0..l {
            let g = &src[t * h3p..(t + 1) * h3p];
            let weight = |i: usize| att.map_or(0.0, |(w, ld)| w[i * ld + t]);
            // Gate input of block `o` (column offset in `[0, 3Hp)`).
            let gate = |a: f32x8, o: usize| if scaled { a.mul_add(load(g, o), load(b, o)) } else { load(g, o) };

            // [r | u] = σ(G_ru + h_{t−1}·U_ruᵀ); then r ∘ h_{t−1}.
            gemm_packed(n, hprev, hp, &self.uru_t, ru, h2p, Accumulate::No);
            for i in 0..n {
                let a = f32x8::splat(weight(i));
                for v in 0..nv {
                    let o = v * LANES;
                    let r = sigmoid8(load(ru, i * h2p + o) + gate(a, o));
                    let u = sigmoid8(load(ru, i * h2p + hp + o) + gate(a, hp + o));
                    store(ru, i * h2p + hp + o, u);
                    store(rh, i * hp + o, r * load(hprev, i * hp + o));
                }
            }
            // c = tanh(G_c + (r ∘ h_{t−1})·U_cᵀ); state update.
            gemm_packed(n, rh, hp, &self.uc_t, cpre, hp, Accumulate::No);
            for i in 0..n {
                let a = f32x8::splat(weight(i));
                for v in 0..nv {
                    let o = v * LANES;
                    let c = tanh8(load(cpre, i * hp + o) + gate(a, 2 * hp + o));
                    let u = load(ru, i * h2p + hp + o);
                    let s = i * hp + o;
                    let hn = update(kind, load(hprev, s), u, c, a);
                    store(hprev, s, hn);
                }
            }
            if let Some(st) = states.as_deref_mut() {
                st[t * h..(t + 1) * h].copy_from_slice(&hprev[..h]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use dien_engine::cell::fast::{CellWorkspace, GruCell, Mode};
    use dien_engine::cell::{GruParams, SeqInput};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn rand_vec(rng: &mut ChaCha8Rng, n: usize, s: f32) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-s..s)).collect()
    }

    /// Every kind, `n` rows over one shared input sequence, against the
    /// engine's training cell run on `n` copies of the sequence.
    #[test]
    fn shared_input_rows_match_the_engine_cell() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for (input, h) in [(12, 9), (36, 36), (8, 16)] {
            for kind in CellKind::ALL {
                let (w_ih, w_hh, b) = (
                    rand_vec(&mut rng, 3 * h * input, 0.5),
                    rand_vec(&mut rng, 3 * h * h, 0.5),
                    rand_vec(&mut rng, 3 * h, 0.5),
                );
                let (n, l) = (5, 7);
                let x = rand_vec(&mut rng, l * input, 1.0);
                let att: Vec<f32> = (0..n * l).map(|_| rng.random_range(0.0..1.0)).collect();
                let g = GruServe::new(kind, &w_ih, &w_hh, &b, input, h);
                let mut proj = vec![f32::NAN; l * 3 * g.hp()];
                g.project(l, &x, input, kind != CellKind::Aigru, &mut proj);
                let gi = if kind == CellKind::Aigru { GateInput::Scaled(&proj) } else { GateInput::Shared(&proj) };
                let mut ws = GruWs::default();
                g.run(n, l, gi, kind.uses_attention().then_some((&att[..], l)), &mut ws, None);

                let mut cell = GruCell::new(kind, input, h);
                cell.set_params(&GruParams { w_ih: &w_ih, w_hh: &w_hh, b: &b, input, hidden: h });
                let xs: Vec<f32> = (0..n).flat_map(|_| x.iter().copied()).collect();
                let lengths = vec![l; n];
                let si = SeqInput {
                    x: &xs,
                    lengths: &lengths,
                    att: kind.uses_attention().then_some(&att[..]),
                    h0: None,
                    batch: n,
                    steps: l,
                };
                let (mut states, mut last) = (vec![0.0; n * l * h], vec![0.0; n * h]);
                cell.forward(&si, &mut CellWorkspace::new(), Mode::Infer, &mut states, &mut last);
                for i in 0..n {
                    for j in 0..g.hp() {
                        let got = ws.hprev[i * g.hp() + j];
                        if j < h {
                            let want = last[i * h + j];
                            assert!(
                                (got - want).abs() < 2e-5,
                                "{kind:?} in {input} h {h}: row {i} unit {j}: {got} vs {want}"
                            );
                        } else {
                            assert_eq!(got, 0.0, "{kind:?}: padding lane {j} of row {i} must stay zero");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn one_row_writes_every_state_and_zero_steps_leave_zero() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let (input, h, l) = (10, 11, 6);
        let (w_ih, w_hh, b) = (
            rand_vec(&mut rng, 3 * h * input, 0.5),
            rand_vec(&mut rng, 3 * h * h, 0.5),
            rand_vec(&mut rng, 3 * h, 0.5),
        );
        let g = GruServe::new(CellKind::Gru, &w_ih, &w_hh, &b, input, h);
        let x = rand_vec(&mut rng, l * input, 1.0);
        let mut proj = vec![0.0; l * 3 * g.hp()];
        g.project(l, &x, input, true, &mut proj);
        let mut ws = GruWs::default();
        let mut states = vec![f32::NAN; l * h];
        g.run(1, l, GateInput::Shared(&proj), None, &mut ws, Some(&mut states));
        let mut cell = GruCell::new(CellKind::Gru, input, h);
        cell.set_params(&GruParams { w_ih: &w_ih, w_hh: &w_hh, b: &b, input, hidden: h });
        let si = SeqInput { x: &x, lengths: &[l], att: None, h0: None, batch: 1, steps: l };
        let (mut want, mut last) = (vec![0.0; l * h], vec![0.0; h]);
        cell.forward(&si, &mut CellWorkspace::new(), Mode::Infer, &mut want, &mut last);
        for (i, (a, b)) in states.iter().zip(&want).enumerate() {
            assert!((a - b).abs() < 2e-5, "state {i}: {a} vs {b}");
        }
        g.run(1, 0, GateInput::Shared(&proj), None, &mut ws, None);
        assert!(ws.hprev[..g.hp()].iter().all(|&v| v == 0.0));
    }
}
