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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{NamedTensor, check};
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Owned data of one random cell problem.
    #[derive(Clone, Debug)]
    struct Case {
        kind: CellKind,
        input: usize,
        hidden: usize,
        batch: usize,
        steps: usize,
        w_ih: Vec<f64>,
        w_hh: Vec<f64>,
        b: Vec<f64>,
        x: Vec<f64>,
        att: Vec<f64>,
        h0: Option<Vec<f64>>,
        lengths: Vec<usize>,
    }

    fn uniform(rng: &mut ChaCha8Rng, n: usize, lo: f64, hi: f64) -> Vec<f64> {
        (0..n).map(|_| rng.random_range(lo..hi)).collect()
    }

    impl Case {
        /// Tiny random problem; lengths always include 0, 1 and `steps`.
        fn random(kind: CellKind, batch: usize, with_h0: bool, seed: u64) -> Self {
            assert!(batch >= 3);
            let (input, hidden, steps) = (4, 3, 5);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut lengths = vec![0, 1, steps];
            lengths.extend((3..batch).map(|_| rng.random_range(0..=steps)));
            lengths.shuffle(&mut rng);
            let h3 = 3 * hidden;
            Case {
                kind,
                input,
                hidden,
                batch,
                steps,
                w_ih: uniform(&mut rng, h3 * input, -0.8, 0.8),
                w_hh: uniform(&mut rng, h3 * hidden, -0.8, 0.8),
                b: uniform(&mut rng, h3, -0.5, 0.5),
                x: uniform(&mut rng, batch * steps * input, -1.0, 1.0),
                // Scores strictly inside (0, 1), like softmax weights.
                att: uniform(&mut rng, batch * steps, 0.05, 0.95),
                h0: with_h0.then(|| uniform(&mut rng, batch * hidden, -0.7, 0.7)),
                lengths,
            }
        }

        fn params(&self) -> GruParams<'_, f64> {
            GruParams { w_ih: &self.w_ih, w_hh: &self.w_hh, b: &self.b, input: self.input, hidden: self.hidden }
        }

        fn seq(&self) -> SeqInput<'_, f64> {
            SeqInput {
                x: &self.x,
                lengths: &self.lengths,
                att: Some(&self.att),
                h0: self.h0.as_deref(),
                batch: self.batch,
                steps: self.steps,
            }
        }

        fn forward(&self) -> RefForward<f64> {
            forward(self.kind, &self.params(), &self.seq())
        }

        fn backward(&self, fwd: &RefForward<f64>, ds: &[f64], dl: &[f64]) -> (GruGrads<f64>, RefInputGrads<f64>) {
            let mut g = GruGrads::zeros(self.input, self.hidden);
            let gi = backward(self.kind, &self.params(), &self.seq(), fwd, Some(ds), Some(dl), &mut g);
            (g, gi)
        }

        /// Whether step `t` of sample `b` is a real step.
        fn valid(&self, b: usize, t: usize) -> bool {
            t < self.lengths[b]
        }

        /// `Σ ws·states` over valid positions plus `Σ wl·last`.
        fn linear_loss(&self, fwd: &RefForward<f64>, ws: &[f64], wl: &[f64]) -> f64 {
            let h = self.hidden;
            let mut s = 0.0;
            for b in 0..self.batch {
                for t in 0..self.lengths[b] {
                    let o = (b * self.steps + t) * h;
                    s += dot(&ws[o..o + h], &fwd.states[o..o + h]);
                }
            }
            s + dot(wl, &fwd.last)
        }
    }

    /// Finite-difference step. The central difference carries a truncation
    /// error ~eps²·f‴ and a rounding error ~1e-16·|loss|/eps; with losses of
    /// order 1 the latter is ~3e-10 at eps = 1e-6 and ~5e-11 at 1e-5, where
    /// the two balance best.
    const EPS: f64 = 1e-5;
    /// Entries smaller than this are judged by absolute error only: below it
    /// the rounding noise alone can exceed `REL_TOL`.
    const ABS_FLOOR: f64 = 1e-4;
    /// Relative tolerance for entries at or above the floor.
    const REL_TOL: f64 = 1e-6;
    /// Absolute tolerance for every entry.
    const ABS_TOL: f64 = 1e-9;

    fn gradcheck_case(case: &Case) {
        let mut rng = ChaCha8Rng::seed_from_u64(0xD1E4 ^ case.lengths.iter().sum::<usize>() as u64);
        let h = case.hidden;
        // Output weights are random everywhere, padded positions included:
        // the backward must ignore the latter.
        let ws = uniform(&mut rng, case.batch * case.steps * h, -1.0, 1.0);
        let wl = uniform(&mut rng, case.batch * h, -1.0, 1.0);
        let fwd = case.forward();
        let (g, gi) = case.backward(&fwd, &ws, &wl);

        let mut tensors = vec![
            NamedTensor::new("w_ih", case.w_ih.clone()),
            NamedTensor::new("w_hh", case.w_hh.clone()),
            NamedTensor::new("b", case.b.clone()),
            NamedTensor::new("x", case.x.clone()),
            NamedTensor::new("att", case.att.clone()),
        ];
        let mut analytic = vec![g.w_ih, g.w_hh, g.b, gi.x.clone(), gi.att.clone()];
        if let Some(h0) = &case.h0 {
            tensors.push(NamedTensor::new("h0", h0.clone()));
            analytic.push(gi.h0.clone());
        }
        let mut probe = case.clone();
        let report = check(&mut tensors, &analytic, EPS, ABS_FLOOR, |t: &[NamedTensor]| {
            probe.w_ih.copy_from_slice(&t[0].data);
            probe.w_hh.copy_from_slice(&t[1].data);
            probe.b.copy_from_slice(&t[2].data);
            probe.x.copy_from_slice(&t[3].data);
            probe.att.copy_from_slice(&t[4].data);
            if let Some(h0) = probe.h0.as_mut() {
                h0.copy_from_slice(&t[5].data);
            }
            probe.linear_loss(&probe.forward(), &ws, &wl)
        });
        assert!(
            report.passes(REL_TOL, ABS_TOL),
            "{} lengths {:?} h0 {}:\n{report}",
            case.kind.name(),
            case.lengths,
            case.h0.is_some()
        );

        // Exact zeros where the output cannot depend on the input.
        let (n, steps) = (case.input, case.steps);
        for b in 0..case.batch {
            for t in 0..steps {
                let bt = b * steps + t;
                if !case.valid(b, t) {
                    assert!(gi.x[bt * n..(bt + 1) * n].iter().all(|&v| v == 0.0), "padded dx nonzero");
                    assert_eq!(gi.att[bt], 0.0, "padded d_att nonzero");
                }
                if case.kind == CellKind::Gru {
                    assert_eq!(gi.att[bt], 0.0, "Gru has no attention gradient");
                }
            }
        }
        if case.kind == CellKind::Agru {
            // The update gate is unused: its rows get exactly zero gradient.
            let (wi, wh) = (case.input, case.hidden);
            assert!(analytic[0][h * wi..2 * h * wi].iter().all(|&v| v == 0.0));
            assert!(analytic[1][h * wh..2 * h * wh].iter().all(|&v| v == 0.0));
            assert!(analytic[2][h..2 * h].iter().all(|&v| v == 0.0));
        }
    }

    #[test]
    fn backward_matches_finite_differences_for_every_kind() {
        for (k, kind) in CellKind::ALL.into_iter().enumerate() {
            for (seed, (batch, with_h0)) in [(4, true), (4, false), (3, true)].into_iter().enumerate() {
                gradcheck_case(&Case::random(kind, batch, with_h0, 100 * k as u64 + seed as u64));
            }
        }
    }

    /// Forward and full backward with random output gradients (fixed seed),
    /// padded positions of `d_states` included.
    fn run(case: &Case, att: Option<&[f64]>) -> (RefForward<f64>, GruGrads<f64>, RefInputGrads<f64>) {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let ds = uniform(&mut rng, case.batch * case.steps * case.hidden, -1.0, 1.0);
        let dl = uniform(&mut rng, case.batch * case.hidden, -1.0, 1.0);
        let seq = SeqInput { att, ..case.seq() };
        let fwd = forward(case.kind, &case.params(), &seq);
        let mut g = GruGrads::zeros(case.input, case.hidden);
        let gi = backward(case.kind, &case.params(), &seq, &fwd, Some(&ds), Some(&dl), &mut g);
        (fwd, g, gi)
    }

    fn assert_close(what: &str, a: &[f64], b: &[f64], tol: f64) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol, "{what}[{i}]: {x} vs {y}");
        }
    }

    #[test]
    fn padded_steps_do_not_influence_outputs_and_get_zero_gradient() {
        for (k, kind) in CellKind::ALL.into_iter().enumerate() {
            let case = Case::random(kind, 4, k % 2 == 0, 40 + k as u64);
            let (fwd, g, gi) = run(&case, Some(&case.att));
            // Garbage (NaN, huge values) at every padded step.
            let mut dirty = case.clone();
            for b in 0..case.batch {
                for t in case.lengths[b]..case.steps {
                    let bt = b * case.steps + t;
                    dirty.att[bt] = if t % 2 == 0 { f64::NAN } else { 1e30 };
                    for v in &mut dirty.x[bt * case.input..(bt + 1) * case.input] {
                        *v = if t % 2 == 0 { 1e30 } else { f64::NAN };
                    }
                }
            }
            let (fwd2, g2, gi2) = run(&dirty, Some(&dirty.att));
            assert_eq!(fwd.states, fwd2.states, "{}: states", kind.name());
            assert_eq!(fwd.last, fwd2.last, "{}: last", kind.name());
            assert_eq!(g, g2, "{}: parameter gradients", kind.name());
            assert_eq!(gi.h0, gi2.h0, "{}: d_h0", kind.name());
            for b in 0..case.batch {
                for t in 0..case.steps {
                    let bt = b * case.steps + t;
                    let (h, n) = (case.hidden, case.input);
                    if case.valid(b, t) {
                        assert_eq!(gi.x[bt * n..(bt + 1) * n], gi2.x[bt * n..(bt + 1) * n]);
                        assert_eq!(gi.att[bt], gi2.att[bt]);
                    } else {
                        assert!(fwd2.states[bt * h..(bt + 1) * h].iter().all(|&v| v == 0.0), "padded state");
                        assert!(gi2.x[bt * n..(bt + 1) * n].iter().all(|&v| v == 0.0), "padded dx");
                        assert_eq!(gi2.att[bt], 0.0, "padded d_att");
                    }
                }
            }
        }
    }

    #[test]
    fn zero_length_gives_h0_and_passes_d_last_to_h0() {
        for kind in CellKind::ALL {
            for with_h0 in [true, false] {
                let mut case = Case::random(kind, 3, with_h0, 9);
                case.lengths = vec![0, 0, 0];
                let h = case.hidden;
                let mut rng = ChaCha8Rng::seed_from_u64(7);
                let ds = uniform(&mut rng, case.batch * case.steps * h, -1.0, 1.0);
                let dl = uniform(&mut rng, case.batch * h, -1.0, 1.0);
                let fwd = case.forward();
                assert!(fwd.states.iter().all(|&v| v == 0.0), "{}: states all zero", kind.name());
                match &case.h0 {
                    Some(h0) => assert_eq!(&fwd.last, h0, "{}: last = h0", kind.name()),
                    None => assert!(fwd.last.iter().all(|&v| v == 0.0), "{}: last = 0", kind.name()),
                }
                let mut g = GruGrads::zeros(case.input, h);
                let gi = backward(kind, &case.params(), &case.seq(), &fwd, Some(&ds), Some(&dl), &mut g);
                assert_eq!(gi.h0, dl, "{}: d_h0 = d_last", kind.name());
                assert_eq!(g, GruGrads::zeros(case.input, h), "{}: no parameter gradient", kind.name());
                assert!(gi.x.iter().chain(&gi.att).all(|&v| v == 0.0));
            }
        }
    }

    #[test]
    fn gru_ignores_attention() {
        let case = Case::random(CellKind::Gru, 4, true, 11);
        let other: Vec<f64> = case.att.iter().map(|a| 1.0 - a).collect();
        let (f1, g1, i1) = run(&case, Some(&case.att));
        let (f2, g2, i2) = run(&case, Some(&other));
        let (f3, g3, i3) = run(&case, None);
        for (f, g, i) in [(&f2, &g2, &i2), (&f3, &g3, &i3)] {
            assert_eq!(f1.states, f.states);
            assert_eq!(f1.last, f.last);
            assert_eq!(&g1, g);
            assert_eq!(i1.x, i.x);
            assert_eq!(i1.h0, i.h0);
            assert!(i.att.iter().all(|&v| v == 0.0));
        }
    }

    /// `case` with every attention score set to `a`, run as `kind`.
    fn with_constant_attention(case: &Case, kind: CellKind, a: f64) -> Case {
        Case { kind, att: vec![a; case.att.len()], ..case.clone() }
    }

    #[test]
    fn aigru_with_unit_attention_is_gru() {
        let gru = Case::random(CellKind::Gru, 4, true, 12);
        let aigru = with_constant_attention(&gru, CellKind::Aigru, 1.0);
        let (f1, g1, i1) = run(&gru, None);
        let (f2, g2, i2) = run(&aigru, Some(&aigru.att));
        // x·1 is exact, so the two agree bit for bit.
        assert_eq!(f1.states, f2.states);
        assert_eq!(f1.last, f2.last);
        assert_eq!(g1, g2);
        assert_eq!(i1.x, i2.x);
        assert_eq!(i1.h0, i2.h0);
    }

    #[test]
    fn augru_with_unit_attention_is_gru_and_with_zero_keeps_the_state() {
        let gru = Case::random(CellKind::Gru, 4, true, 13);
        let ones = with_constant_attention(&gru, CellKind::Augru, 1.0);
        let (f1, g1, i1) = run(&gru, None);
        let (f2, g2, i2) = run(&ones, Some(&ones.att));
        assert_eq!(f1.states, f2.states);
        assert_eq!(f1.last, f2.last);
        assert_eq!(g1, g2);
        assert_eq!(i1.x, i2.x);
        let zeros = with_constant_attention(&gru, CellKind::Augru, 0.0);
        assert_state_kept(&zeros);
    }

    #[test]
    fn augru_ref_with_zero_attention_is_a_plain_gru_step() {
        let gru = Case::random(CellKind::Gru, 4, true, 14);
        let zeros = with_constant_attention(&gru, CellKind::AugruRef, 0.0);
        let (f1, g1, i1) = run(&gru, None);
        let (f2, g2, i2) = run(&zeros, Some(&zeros.att));
        // 1 − (1 − u) differs from u by rounding only.
        assert_close("states", &f1.states, &f2.states, 1e-14);
        assert_close("last", &f1.last, &f2.last, 1e-14);
        assert_close("w_ih", &g1.w_ih, &g2.w_ih, 1e-13);
        assert_close("w_hh", &g1.w_hh, &g2.w_hh, 1e-13);
        assert_close("b", &g1.b, &g2.b, 1e-13);
        assert_close("x", &i1.x, &i2.x, 1e-13);
        assert_close("h0", &i1.h0, &i2.h0, 1e-13);
        // And it is not a skipped step: the state moves.
        assert!(f2.last != gru.h0.clone().unwrap());
    }

    /// With `a = 0` the state never moves: every valid state equals `h0`.
    fn assert_state_kept(case: &Case) {
        let fwd = case.forward();
        let h0 = case.h0.as_ref().expect("case with h0");
        let h = case.hidden;
        assert_eq!(&fwd.last, h0, "{}: last", case.kind.name());
        for b in 0..case.batch {
            for t in 0..case.lengths[b] {
                let o = (b * case.steps + t) * h;
                assert_eq!(fwd.states[o..o + h], h0[b * h..(b + 1) * h], "{}: state at {b},{t}", case.kind.name());
            }
        }
    }

    #[test]
    fn agru_with_zero_attention_keeps_the_state() {
        let case = with_constant_attention(&Case::random(CellKind::Agru, 4, true, 15), CellKind::Agru, 0.0);
        assert_state_kept(&case);
    }

    #[test]
    fn backward_accumulates_into_grads() {
        for kind in CellKind::ALL {
            let case = Case::random(kind, 4, true, 16);
            let (fwd, fresh, _) = run(&case, Some(&case.att));
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            let ds = uniform(&mut rng, case.batch * case.steps * case.hidden, -1.0, 1.0);
            let dl = uniform(&mut rng, case.batch * case.hidden, -1.0, 1.0);
            let mut g = GruGrads::zeros(case.input, case.hidden);
            g.w_ih.iter_mut().for_each(|v| *v = 0.5);
            g.w_hh.iter_mut().for_each(|v| *v = -0.25);
            g.b.iter_mut().for_each(|v| *v = 2.0);
            backward(kind, &case.params(), &case.seq(), &fwd, Some(&ds), Some(&dl), &mut g);
            let shifted = |v: &[f64], c: f64| v.iter().map(|x| x + c).collect::<Vec<_>>();
            assert_close("w_ih", &g.w_ih, &shifted(&fresh.w_ih, 0.5), 1e-15);
            assert_close("w_hh", &g.w_hh, &shifted(&fresh.w_hh, -0.25), 1e-15);
            assert_close("b", &g.b, &shifted(&fresh.b, 2.0), 1e-15);
        }
    }
}
