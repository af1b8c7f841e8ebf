//! Plain scalar reference of every cell, generic over `f32`/`f64`, written
//! for clarity rather than speed. The fast path and the finite-difference
//! checks are measured against it.
//!
//! One sample at a time, one step at a time, plain loops; the equations of
//! SPEC §3 and §6 appear as written. The backward pass recomputes the gate
//! values of each step from the stored states instead of caching them, so
//! [`RefForward`] holds only what the cell outputs.

// Index loops mirror the subscripts of the equations; clarity is the point here.
#![allow(clippy::needless_range_loop)]

use num_traits::Float;

use super::{CellKind, GruGrads, GruParams, SeqInput};

/// What the reference forward returns (and its backward consumes).
#[derive(Clone, Debug)]
pub struct RefForward<T> {
    /// All states `[B, T, H]`, zero at padded steps.
    pub states: Vec<T>,
    /// Final states `[B, H]` (state at `L−1`, or `h0` when `L = 0`).
    pub last: Vec<T>,
}

/// Gradients w.r.t. the inputs of a sequence batch.
#[derive(Clone, Debug)]
pub struct RefInputGrads<T> {
    /// `∂L/∂x [B, T, input]` (zero at padded steps).
    pub x: Vec<T>,
    /// `∂L/∂att [B, T]` (zero at padded steps; all zero for `Gru`).
    pub att: Vec<T>,
    /// `∂L/∂h0 [B, H]` (the gradient w.r.t. the zero initial state when
    /// `h0` is absent).
    pub h0: Vec<T>,
}

/// Gate activations of one step of one sample (each of width `H`).
#[derive(Clone, Debug, PartialEq)]
pub struct Gates<T> {
    /// Reset gate `r = σ(W_r x + U_r h_prev + b_r)`.
    pub r: Vec<T>,
    /// Update gate `u = σ(W_u x + U_u h_prev + b_u)` (computed but unused by `Agru`).
    pub u: Vec<T>,
    /// Candidate `c = tanh(W_c x + U_c (r ∘ h_prev) + b_c)`.
    pub c: Vec<T>,
}

/// The logistic sigmoid `1 / (1 + e^{−v})`.
pub fn sigmoid<T: Float>(v: T) -> T {
    T::one() / (T::one() + (-v).exp())
}

fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    debug_assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(T::zero(), |s, (&x, &y)| s + x * y)
}

/// The input the GRU equations see: `a·x` for `Aigru`, `x` otherwise.
pub fn cell_input<T: Float>(kind: CellKind, x_t: &[T], a: T) -> Vec<T> {
    match kind {
        CellKind::Aigru => x_t.iter().map(|&v| a * v).collect(),
        _ => x_t.to_vec(),
    }
}

/// The gates of one step (SPEC §3), from the cell input `xe [input]` and the
/// previous state `h_prev [H]`.
pub fn gates<T: Float>(p: &GruParams<'_, T>, xe: &[T], h_prev: &[T]) -> Gates<T> {
    let (h, n) = (p.hidden, p.input);
    assert_eq!(xe.len(), n, "gates: input width");
    assert_eq!(h_prev.len(), h, "gates: state width");
    // Row `q` of the stacked `[3H, ·]` matrices; blocks r = 0, u = 1, c = 2.
    let w_row = |q: usize| &p.w_ih[q * n..(q + 1) * n];
    let u_row = |q: usize| &p.w_hh[q * h..(q + 1) * h];

    let mut r = vec![T::zero(); h];
    let mut u = vec![T::zero(); h];
    for i in 0..h {
        let (qr, qu) = (i, h + i);
        r[i] = sigmoid(dot(w_row(qr), xe) + dot(u_row(qr), h_prev) + p.b[qr]);
        u[i] = sigmoid(dot(w_row(qu), xe) + dot(u_row(qu), h_prev) + p.b[qu]);
    }
    // Reset before the recurrent product.
    let rh: Vec<T> = r.iter().zip(h_prev).map(|(&ri, &hi)| ri * hi).collect();
    let mut c = vec![T::zero(); h];
    for i in 0..h {
        let qc = 2 * h + i;
        c[i] = (dot(w_row(qc), xe) + dot(u_row(qc), &rh) + p.b[qc]).tanh();
    }
    Gates { r, u, c }
}

/// The state update of one step (SPEC §6) given the gates, the attention
/// score `a` (ignored by `Gru` and `Aigru`, whose input already carries it)
/// and the previous state.
pub fn update<T: Float>(kind: CellKind, g: &Gates<T>, a: T, h_prev: &[T]) -> Vec<T> {
    let one = T::one();
    (0..h_prev.len())
        .map(|i| {
            let (u, c, hp) = (g.u[i], g.c[i], h_prev[i]);
            match kind {
                CellKind::Gru | CellKind::Aigru => (one - u) * hp + u * c,
                CellKind::Augru => {
                    let ut = a * u;
                    (one - ut) * hp + ut * c
                }
                CellKind::AugruRef => {
                    let k = (one - a) * (one - u);
                    k * hp + (one - k) * c
                }
                CellKind::Agru => (one - a) * hp + a * c,
            }
        })
        .collect()
}

/// Attention score of sample `b` at step `t`; `1` for `Gru` (which has none).
fn score<T: Float>(kind: CellKind, input: &SeqInput<'_, T>, b: usize, t: usize) -> T {
    match (kind.uses_attention(), input.att) {
        (true, Some(att)) => att[b * input.steps + t],
        _ => T::one(),
    }
}

/// Initial state of sample `b` (zeros when `h0` is absent).
fn initial<T: Float>(input: &SeqInput<'_, T>, b: usize, h: usize) -> Vec<T> {
    match input.h0 {
        Some(h0) => h0[b * h..(b + 1) * h].to_vec(),
        None => vec![T::zero(); h],
    }
}

/// Runs the cell over the batch.
pub fn forward<T: Float>(kind: CellKind, p: &GruParams<'_, T>, input: &SeqInput<'_, T>) -> RefForward<T> {
    p.check();
    input.check(kind, p);
    let (h, n, steps) = (p.hidden, p.input, input.steps);
    let mut states = vec![T::zero(); input.batch * steps * h];
    let mut last = vec![T::zero(); input.batch * h];
    for b in 0..input.batch {
        let mut state = initial(input, b, h);
        for t in 0..input.lengths[b] {
            let bt = b * steps + t;
            let a = score(kind, input, b, t);
            let xe = cell_input(kind, &input.x[bt * n..(bt + 1) * n], a);
            let g = gates(p, &xe, &state);
            state = update(kind, &g, a, &state);
            states[bt * h..(bt + 1) * h].copy_from_slice(&state);
        }
        last[b * h..(b + 1) * h].copy_from_slice(&state);
    }
    RefForward { states, last }
}

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
