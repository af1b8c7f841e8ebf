//! `exp` on 8 lanes: Cody–Waite range reduction and a degree-7 polynomial.
//!
//! `x = n·ln 2 + r` with `n = round(x / ln 2)` and `|r| ≤ ln 2 / 2`; then
//! `exp(x) = 2^n · exp(r)`. `ln 2` is split into a 9-bit head and a tail, so
//! `n · LN2_HI` is exact and the reduction stays exact without FMA too.
//! `exp(r) ≈ 1 + r + r²·P(r)` uses the Cephes `expf` coefficients.
//!
//! `2^n` is applied as two factors `2^(n/2)` and `2^(n − n/2)`: each is a
//! normal float for every `n` in range, so results that overflow become
//! `+inf` and results in the subnormal range are rounded once, instead of
//! being flushed or wrapped by a single out-of-range exponent.
//!
//! Error (measured against `f64::exp` by the tests in this file): **≤ 1.1 ulp**
//! over the whole `f32` line, FMA and non-FMA builds alike, subnormal results
//! included (measured in units of the smallest subnormal). The worst case
//! found by the exhaustive sweep over every float with `1/256 ≤ |x| < 128`
//! is 1.01 ulp: the final rounding (0.5 ulp) plus the polynomial's and the
//! reduction's own small errors.

use crate::simd::{V, VI};

/// `log2(e)`.
const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// Head of `ln 2`: 355/512, nine significant bits, so `n · LN2_HI` is exact
/// for `|n| < 2^15`.
const LN2_HI: f32 = 0.693_359_4;
const _: () = assert!(LN2_HI == 355.0 / 512.0);
/// Tail of `ln 2`: `ln 2 − LN2_HI`.
const LN2_LO: f32 = -2.121_944_4e-4;
/// `1.5 · 2^23`: adding it rounds a float of magnitude `< 2^22` to an integer
/// held in the low mantissa bits.
const ROUND_MAGIC: f32 = 12_582_912.0;
/// Below this `exp` is less than half the smallest subnormal: result `+0`.
const MIN_X: f32 = -104.0;
/// Above this `exp` exceeds `f32::MAX`: result `+inf`.
const MAX_X: f32 = 89.0;

/// Cephes `expf` polynomial, highest degree first.
const P: [f32; 6] = [1.987_569_2e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5];

/// `2^k` for `k` in the normal exponent range `[-126, 127]`.
#[cfg_attr(all(target_arch = "x86_64", target_feature = "avx512f"), allow(dead_code))] // the tests' reference there
#[inline(always)]
fn pow2i(k: VI) -> V {
    V::from_bits(((k + VI::splat(127)) << 23u32).cast_unsigned())
}

/// `exp(x)` on 8 lanes.
///
/// `exp(±0) = 1`; `+inf` exactly where the true value overflows `f32`;
/// subnormal or `+0` results for large negative `x`; `exp(−inf) = 0`,
/// `exp(+inf) = +inf`, NaN in gives NaN out. Error ≤ 1.1 ulp (see the module
/// documentation).
#[inline(always)]
pub fn exp_v(x: V) -> V {
    // Operand order matters: x86 `max`/`min` return their second operand when
    // either is NaN, so NaN lanes stay NaN and flow through to the result.
    let x = V::splat(MAX_X).fast_min(V::splat(MIN_X).fast_max(x));
    let magic = V::splat(ROUND_MAGIC);
    let t = x.mul_add(V::splat(LOG2_E), magic);
    let n = t - magic;
    // The integer `n` sits in the low mantissa bits of `t`.
    let ni = t.to_bits().cast_signed() - magic.to_bits().cast_signed();

    let r = n.mul_add(V::splat(-LN2_HI), x);
    let r = n.mul_add(V::splat(-LN2_LO), r);

    let mut p = V::splat(P[0]);
    for &c in &P[1..] {
        p = p.mul_add(r, V::splat(c));
    }
    let y = p.mul_add(r * r, r) + V::ONE;

    scale_pow2(y, n, ni)
}

/// `y · 2^n` rounded once, for the integral `n` (`|n| ≤ 151`, also given as
/// the integer `ni`), as two exact factors `2^(n/2)` and `2^(n − n/2)`: both
/// are normal exponents, so only the last product rounds (to a subnormal,
/// or to `+inf` on overflow).
#[cfg(not(all(target_arch = "x86_64", target_feature = "avx512f")))]
#[inline(always)]
fn scale_pow2(y: V, _n: V, ni: VI) -> V {
    scale_pow2_two_factors(y, ni)
}

/// `y · 2^n` rounded once: AVX-512's `vscalefps` does in one instruction
/// what [`scale_pow2_two_factors`] does in eight, with the same single
/// rounding of the exact product, hence the same bits (the tests compare
/// the two on every exponent and on subnormal and overflowing results).
#[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
#[inline(always)]
fn scale_pow2(y: V, n: V, _ni: VI) -> V {
    use std::arch::x86_64::{__m512, _mm512_scalef_ps};
    // SAFETY: `V` is `wide::f32x16`, on this target one `__m512` register
    // (16 `f32`s, 64 bytes, no padding), so both transmutes only rename the
    // same bits; the build enables AVX-512F, which `vscalefps` needs.
    unsafe {
        let r = _mm512_scalef_ps(std::mem::transmute::<V, __m512>(y), std::mem::transmute::<V, __m512>(n));
        std::mem::transmute::<__m512, V>(r)
    }
}

/// The portable form of [`scale_pow2`] (see there).
#[cfg_attr(all(target_arch = "x86_64", target_feature = "avx512f"), allow(dead_code))] // the tests' reference there
#[inline(always)]
fn scale_pow2_two_factors(y: V, ni: VI) -> V {
    let n1 = ni >> 1u32;
    let n2 = ni - n1;
    y * pow2i(n1) * pow2i(n2)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{UnaryOpTester, check_special};
    use super::super::{exp, scalar};

    /// Bound asserted for the SIMD form (the module documentation states it).
    const MAX_ULP: f64 = 1.1;

    fn tester() -> UnaryOpTester {
        UnaryOpTester {
            name: "exp",
            reference: f64::exp,
            op: exp,
            range: (-87.3, 88.7),
            max_ulp: MAX_ULP,
            max_rel: None,
        }
    }

    #[test]
    fn exp_dense_grid_over_normal_range() {
        tester().check_grid(400_000);
    }

    #[test]
    fn exp_subnormal_and_overflow_edges() {
        // Results in the subnormal range and across the overflow threshold.
        let t = UnaryOpTester { range: (-104.5, -87.0), ..tester() };
        t.check_grid(50_000);
        let t = UnaryOpTester { range: (88.0, 89.5), ..tester() };
        t.check_grid(50_000);
    }

    #[test]
    fn exp_small_magnitudes_random_and_tails() {
        let t = tester();
        t.check_log_grid();
        t.check_random(100_000, 1);
        t.check_random_bits(100_000, 2);
        t.check_lengths(3);
    }

    #[test]
    #[ignore = "exhaustive: every f32 with 1/256 <= |x| < 128 (2.5e8 inputs, tens of seconds); run with --ignored"]
    fn exp_every_float_in_useful_range() {
        tester().check_all_floats(1.0 / 256.0, 128.0);
    }

    #[test]
    fn exp_special_values() {
        let sub = f32::from_bits(1);
        check_special(
            "exp",
            exp,
            &[
                (0.0, 1.0),
                (-0.0, 1.0),
                (sub, 1.0),
                (-sub, 1.0),
                (f32::INFINITY, f32::INFINITY),
                (f32::NEG_INFINITY, 0.0),
                (f32::NAN, f32::NAN),
                (-f32::NAN, f32::NAN),
                (89.0, f32::INFINITY),
                (f32::MAX, f32::INFINITY),
                (-105.0, 0.0),
                (f32::MIN, 0.0),
            ],
            false,
        );
        // Just below the overflow threshold the result is finite.
        let mut y = [0.0f32];
        exp(&[88.72], &mut y);
        assert!(y[0].is_finite() && y[0] > 3.3e38, "exp(88.72) = {}", y[0]);
        // exp(−100) ≈ 3.7e−44 is subnormal, not flushed to zero.
        exp(&[-100.0], &mut y);
        assert!(y[0] > 0.0 && y[0] < f32::MIN_POSITIVE, "exp(-100) = {:e}", y[0]);
    }

    /// The build's `y · 2^n` (one instruction on AVX-512) gives the bits of
    /// the portable two-factor form for every exponent the reduction can
    /// produce, mantissas across `[1/√2, √2]`, so subnormal, normal and
    /// overflowing results.
    #[test]
    fn scaling_by_a_power_of_two_matches_the_portable_form() {
        use super::{V, VI, scale_pow2, scale_pow2_two_factors};
        use crate::simd::LANES;
        for n in -151..=129 {
            for j in 0..64 {
                let ys: [f32; LANES] =
                    std::array::from_fn(|l| 0.70 + 0.72 * ((j * LANES + l) as f32 / (64 * LANES) as f32));
                let (y, ni) = (V::from(ys), VI::splat(n));
                let (a, b) = (scale_pow2(y, V::splat(n as f32), ni), scale_pow2_two_factors(y, ni));
                for (x, z) in a.to_array().iter().zip(b.to_array()) {
                    assert_eq!(x.to_bits(), z.to_bits(), "n = {n}: {x:e} vs {z:e}");
                }
            }
        }
    }

    #[test]
    fn exp_scalar_reference_against_f64() {
        let t = UnaryOpTester { op: |x, out| x.iter().zip(out).for_each(|(x, o)| *o = scalar::exp(*x)), ..tester() };
        t.check_grid(100_000);
        t.check_random_bits(20_000, 4);
    }
}
