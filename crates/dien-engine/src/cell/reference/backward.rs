//! The reference backward through time: gate values recomputed from the
//! stored states, parameter gradients accumulated, input gradients returned.

use num_traits::Float;

use super::forward::{cell_input, dot, gates, initial, score};
use super::{Gates, RefForward, RefInputGrads};
use crate::cell::{CellKind, GruGrads, GruParams, SeqInput};

/// Backward through time. `d_states [B, T, H]` (entries at padded steps are
/// ignored) and `d_last [B, H]` are the output gradients (either may be
/// `None` for zero). Parameter gradients are accumulated into `grads`.
pub fn backward<T: Float>(
    kind: CellKind,
    p: &GruParams<'_, T>,
    input: &SeqInput<'_, T>,
    fwd: &RefForward<T>,
    d_states: Option<&[T]>,
    d_last: Option<&[T]>,
    grads: &mut GruGrads<T>,
) -> RefInputGrads<T> {
    p.check();
    input.check(kind, p);
    let (h, n, steps, batch) = (p.hidden, p.input, input.steps, input.batch);
    assert_eq!(fwd.states.len(), batch * steps * h, "fwd.states must be [B, T, H]");
    assert_eq!(fwd.last.len(), batch * h, "fwd.last must be [B, H]");
    if let Some(ds) = d_states {
        assert_eq!(ds.len(), batch * steps * h, "d_states must be [B, T, H]");
    }
    if let Some(dl) = d_last {
        assert_eq!(dl.len(), batch * h, "d_last must be [B, H]");
    }
    assert_eq!(grads.w_ih.len(), p.w_ih.len(), "grads.w_ih shape");
    assert_eq!(grads.w_hh.len(), p.w_hh.len(), "grads.w_hh shape");
    assert_eq!(grads.b.len(), p.b.len(), "grads.b shape");

    let one = T::one();
    let zero = T::zero();
    let mut out =
        RefInputGrads { x: vec![zero; batch * steps * n], att: vec![zero; batch * steps], h0: vec![zero; batch * h] };

    for b in 0..batch {
        // dh: gradient w.r.t. the state leaving the current step.
        let mut dh = match d_last {
            Some(dl) => dl[b * h..(b + 1) * h].to_vec(),
            None => vec![zero; h],
        };
        for t in (0..input.lengths[b]).rev() {
            let bt = b * steps + t;
            if let Some(ds) = d_states {
                for (d, &g) in dh.iter_mut().zip(&ds[bt * h..(bt + 1) * h]) {
                    *d = *d + g;
                }
            }
            let h_prev = if t == 0 { initial(input, b, h) } else { fwd.states[(bt - 1) * h..bt * h].to_vec() };
            let a = score(kind, input, b, t);
            let x_t = &input.x[bt * n..(bt + 1) * n];
            let xe = cell_input(kind, x_t, a);
            let Gates { r, u, c } = gates(p, &xe, &h_prev);

            // Through the state update: dh → (dh_prev, du, dc, da).
            let mut dh_prev = vec![zero; h];
            let mut du = vec![zero; h];
            let mut dc = vec![zero; h];
            let mut da = zero;
            for i in 0..h {
                let (g, hp) = (dh[i], h_prev[i]);
                match kind {
                    CellKind::Gru | CellKind::Aigru => {
                        // h = (1 − u)·hp + u·c
                        dh_prev[i] = (one - u[i]) * g;
                        du[i] = g * (c[i] - hp);
                        dc[i] = g * u[i];
                    }
                    CellKind::Augru => {
                        // ũ = a·u, h = (1 − ũ)·hp + ũ·c
                        let ut = a * u[i];
                        let dut = g * (c[i] - hp);
                        dh_prev[i] = (one - ut) * g;
                        du[i] = a * dut;
                        da = da + u[i] * dut;
                        dc[i] = g * ut;
                    }
                    CellKind::AugruRef => {
                        // k = (1 − a)(1 − u), h = k·hp + (1 − k)·c
                        let k = (one - a) * (one - u[i]);
                        let dk = g * (hp - c[i]);
                        dh_prev[i] = k * g;
                        dc[i] = (one - k) * g;
                        du[i] = -(one - a) * dk;
                        da = da - (one - u[i]) * dk;
                    }
                    CellKind::Agru => {
                        // h = (1 − a)·hp + a·c; the update gate is unused.
                        dh_prev[i] = (one - a) * g;
                        dc[i] = a * g;
                        da = da + g * (c[i] - hp);
                    }
                }
            }

            // Through the activations: pre-activation gradients, blocks r, u, c.
            let mut dpre = vec![zero; 3 * h];
            for i in 0..h {
                dpre[h + i] = du[i] * u[i] * (one - u[i]);
                dpre[2 * h + i] = dc[i] * (one - c[i] * c[i]);
            }
            // Candidate: pre_c = W_c xe + U_c (r ∘ hp) + b_c.
            let rh: Vec<T> = r.iter().zip(&h_prev).map(|(&ri, &hi)| ri * hi).collect();
            let mut drh = vec![zero; h];
            for i in 0..h {
                let q = 2 * h + i;
                for j in 0..h {
                    drh[j] = drh[j] + p.w_hh[q * h + j] * dpre[q];
                    grads.w_hh[q * h + j] = grads.w_hh[q * h + j] + dpre[q] * rh[j];
                }
            }
            for j in 0..h {
                dh_prev[j] = dh_prev[j] + drh[j] * r[j];
                let dr = drh[j] * h_prev[j];
                dpre[j] = dr * r[j] * (one - r[j]);
            }
            // Reset and update gates: pre = W xe + U hp + b.
            for q in 0..2 * h {
                for j in 0..h {
                    dh_prev[j] = dh_prev[j] + p.w_hh[q * h + j] * dpre[q];
                    grads.w_hh[q * h + j] = grads.w_hh[q * h + j] + dpre[q] * h_prev[j];
                }
            }
            // Input side, all three blocks.
            let mut dxe = vec![zero; n];
            for q in 0..3 * h {
                grads.b[q] = grads.b[q] + dpre[q];
                for m in 0..n {
                    dxe[m] = dxe[m] + p.w_ih[q * n + m] * dpre[q];
                    grads.w_ih[q * n + m] = grads.w_ih[q * n + m] + dpre[q] * xe[m];
                }
            }
            let dx = &mut out.x[bt * n..(bt + 1) * n];
            match kind {
                CellKind::Aigru => {
                    // xe = a·x
                    for m in 0..n {
                        dx[m] = a * dxe[m];
                    }
                    da = dot(&dxe, x_t);
                }
                _ => dx.copy_from_slice(&dxe),
            }
            if kind.uses_attention() {
                out.att[bt] = da;
            }
            dh = dh_prev;
        }
        out.h0[b * h..(b + 1) * h].copy_from_slice(&dh);
    }
    out
}
