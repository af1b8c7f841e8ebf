//! `tanh` on 8 lanes.
//!
//! For `|x| < 0.625` an odd polynomial, `tanh(x) = x + x·z·P(z)` with
//! `z = x²` (Cephes `tanhf` coefficients): relative accuracy is kept down to
//! the smallest subnormal, where `tanh(x) = x`. Otherwise, with
//! `e = exp(−2|x|) ≤ 0.29`, `tanh(|x|) = (1 − e) / (1 + e)` and the sign of `x`
//! is copied back; `e` never overflows, so large `|x|` saturates to exactly
//! `±1` and `tanh(±inf) = ±1`.
//!
//! Error (measured against `f64::tanh` by the tests in this file): ≤ 2 ulp
//! (worst found: 1.51 ulp, exhaustively over `1/256 ≤ |x| < 128`),
//! i.e. relative error ≤ 2.4e−7 wherever the result is a normal float.

use super::exp::exp_v;
use crate::simd::V;

/// Below this `|x|` the polynomial is used.
const SMALL: f32 = 0.625;
/// Cephes `tanhf` polynomial `P(z)`, highest degree first.
const P: [f32; 5] = [-5.704_988_7e-3, 2.063_909e-2, -5.373_971_6e-2, 1.333_144_2e-1, -3.333_328e-1];

/// `tanh(x)` on 8 lanes.
///
/// `tanh(±0) = ±0`, `tanh(±inf) = ±1`, NaN in gives NaN out. Error ≤ 2 ulp.
#[inline(always)]
pub fn tanh_v(x: V) -> V {
    let a = x.abs();

    let z = x * x;
    let mut p = V::splat(P[0]);
    for &c in &P[1..] {
        p = p.mul_add(z, V::splat(c));
    }
    let small = (p * z).mul_add(x, x);

    let e = exp_v(a * V::splat(-2.0));
    let large = (V::ONE - e) / (V::ONE + e);

    // NaN fails the comparison and takes the `large` branch, which is NaN.
    // The sign is copied for both branches: the polynomial alone would turn
    // −0 into +0 (`(−0)·(−0) + (−0) = +0`).
    a.simd_lt(V::splat(SMALL)).select(small, large).copysign(x)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{UnaryOpTester, check_special};
    use super::super::{scalar, tanh};

    fn tester() -> UnaryOpTester {
        UnaryOpTester {
            name: "tanh",
            reference: f64::tanh,
            op: tanh,
            range: (-20.0, 20.0),
            max_ulp: 2.0,
            max_rel: Some((1e-6, 1e-30)),
        }
    }

    #[test]
    fn tanh_dense_grid_and_branch_boundary() {
        let t = tester();
        t.check_grid(400_000);
        // Every float around the switch between polynomial and exp branch.
        let xs: Vec<f32> = (-2000i32..2000).map(|i| f32::from_bits((0.625f32.to_bits() as i32 + i) as u32)).collect();
        t.check(&xs, "branch switch");
        UnaryOpTester { range: (-100.0, 100.0), ..t }.check_grid(50_000);
    }

    #[test]
    fn tanh_small_magnitudes_random_and_lengths() {
        let t = tester();
        t.check_log_grid();
        t.check_random(100_000, 31);
        t.check_random_bits(100_000, 32);
        t.check_lengths(33);
    }

    #[test]
    #[ignore = "exhaustive: every f32 with 1/256 <= |x| < 128 (2.5e8 inputs, tens of seconds); run with --ignored"]
    fn tanh_every_float_in_useful_range() {
        tester().check_all_floats(1.0 / 256.0, 128.0);
    }

    #[test]
    fn tanh_special_values() {
        let sub = f32::from_bits(1);
        check_special(
            "tanh",
            tanh,
            &[
                (0.0, 0.0),
                (-0.0, -0.0),
                (sub, sub),
                (-sub, -sub),
                (1e-20, 1e-20),
                (-1e-20, -1e-20),
                (f32::INFINITY, 1.0),
                (f32::NEG_INFINITY, -1.0),
                (f32::NAN, f32::NAN),
                (20.0, 1.0),
                (-20.0, -1.0),
                (f32::MAX, 1.0),
                (f32::MIN, -1.0),
            ],
            true,
        );
    }

    #[test]
    fn tanh_is_odd() {
        let xs: Vec<f32> = (0..10_000).map(|i| i as f32 * 1e-3 - 5.0).collect();
        let neg: Vec<f32> = xs.iter().map(|x| -x).collect();
        let (mut a, mut b) = (vec![0.0; xs.len()], vec![0.0; xs.len()]);
        tanh(&xs, &mut a);
        tanh(&neg, &mut b);
        for ((x, a), b) in xs.iter().zip(&a).zip(&b) {
            assert_eq!(a.to_bits(), (-b).to_bits(), "tanh({x}) = {a} but tanh(-x) = {b}");
        }
    }

    #[test]
    fn tanh_scalar_reference_against_f64() {
        let t = UnaryOpTester { op: |x, out| x.iter().zip(out).for_each(|(x, o)| *o = scalar::tanh(*x)), ..tester() };
        t.check_grid(100_000);
        t.check_random_bits(20_000, 34);
    }
}
