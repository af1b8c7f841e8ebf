//! The reference forward: the gates and state update of one step (docs/MODEL.md#gru,
//! #interest-evolving-layer) and the run of a cell over a batch of sequences.

use num_traits::Float;

use super::{Gates, RefForward};
use crate::cell::{CellKind, GruParams, SeqInput};

/// The logistic sigmoid `1 / (1 + e^{−v})`.
pub fn sigmoid<T: Float>(v: T) -> T {
    T::one() / (T::one() + (-v).exp())
}

pub(super) fn dot<T: Float>(a: &[T], b: &[T]) -> T {
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

/// The gates of one step (docs/MODEL.md#gru), from the cell input `xe [input]` and the
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

/// The state update of one step (docs/MODEL.md#interest-evolving-layer) given the gates, the attention
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
pub(super) fn score<T: Float>(kind: CellKind, input: &SeqInput<'_, T>, b: usize, t: usize) -> T {
    match (kind.uses_attention(), input.att) {
        (true, Some(att)) => att[b * input.steps + t],
        _ => T::one(),
    }
}

/// Initial state of sample `b` (zeros when `h0` is absent).
pub(super) fn initial<T: Float>(input: &SeqInput<'_, T>, b: usize, h: usize) -> Vec<T> {
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
