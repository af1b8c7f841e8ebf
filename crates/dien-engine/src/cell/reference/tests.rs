//! Tests of the reference cells: finite-difference gradient checks for
//! every kind, padding, zero lengths, and the relations between the kinds
//! at constant attention.

use super::forward::dot;
use super::*;
use crate::cell::{CellKind, GruGrads, GruParams, SeqInput};
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
