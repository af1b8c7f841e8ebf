//! Explicit-SIMD vector math over `f32` slices, 8 lanes at a time.
//!
//! Every function has three forms: a slice form (`exp(&x, &mut out)`, plus an
//! in-place `exp_inplace(&mut x)`), a register form in [`simd`] used inside
//! fused kernels, and a plain scalar reference in [`scalar`]. Tails (lengths
//! not a multiple of 8) go through the same SIMD code on a zero-padded
//! register.
//!
//! The kernels are written with `wide::V` only: range reduction plus a
//! polynomial, with `mul_add` (a fused multiply-add on the x86-64-v3 build,
//! an unfused multiply and add on a baseline build; the bounds below hold on
//! both, and the range reductions are exact either way).
//!
//! | function      | method                                               | max error (vs f64) |
//! |---------------|------------------------------------------------------|--------------------|
//! | `exp`         | Cody–Waite reduction, degree-7 polynomial            | 1.1 ulp            |
//! | `sigmoid`     | `1/(1+e)` or `e/(1+e)` with `e = exp(−abs(x))`       | 2.5 ulp            |
//! | `tanh`        | odd polynomial below 0.625, else via `exp(−2 abs(x))` | 2 ulp              |
//! | `softplus`    | `max(x, 0) + log1p(exp(−abs(x)))`                    | 3 ulp              |
//! | `log_sigmoid` | `−softplus(−x)`                                      | 3 ulp              |
//!
//! Errors are in ulps of the `f32` result, counting a subnormal result's ulp
//! as the smallest subnormal; `n` ulp is a relative error of at most
//! `n · 2⁻²³` (3 ulp: 3.6e−7) wherever the result is a normal float. The
//! tests in each file sweep dense grids, random values, random bit patterns
//! (every exponent, subnormals, infinities, NaN) and all tail lengths against
//! `f64` references, print the worst input found (`--nocapture`) and assert
//! these bounds, plus exact special values (`±0`, `±inf`, NaN, saturation).

mod exp;
mod log1p;
pub mod scalar;
mod sigmoid;
pub mod simd;
mod softplus;
mod tanh;
#[cfg(test)]
mod testing;

use crate::simd::{LANES, V};

/// Applies `f` to `x` one vector ([`LANES`] values) at a time, writing `out`. The tail is copied
/// into a zero-padded register so it runs through the same code.
#[inline(always)]
fn map_v(x: &[f32], out: &mut [f32], f: impl Fn(V) -> V) {
    assert_eq!(x.len(), out.len(), "vecmath: input and output lengths differ");
    let mut xc = x.chunks_exact(LANES);
    let mut oc = out.chunks_exact_mut(LANES);
    for (xi, oi) in (&mut xc).zip(&mut oc) {
        let v = V::from(<[f32; LANES]>::try_from(xi).expect("one vector"));
        oi.copy_from_slice(&f(v).to_array());
    }
    let (xr, or) = (xc.remainder(), oc.into_remainder());
    if !xr.is_empty() {
        let mut buf = [0.0f32; LANES];
        buf[..xr.len()].copy_from_slice(xr);
        let r = f(V::from(buf)).to_array();
        or.copy_from_slice(&r[..xr.len()]);
    }
}

/// In-place [`map_v`]: `x[i] = f(x[i])`, tail zero-padded the same way.
#[inline(always)]
fn map_v_inplace(x: &mut [f32], f: impl Fn(V) -> V) {
    let mut xc = x.chunks_exact_mut(LANES);
    for xi in &mut xc {
        let v = V::from(<[f32; LANES]>::try_from(&*xi).expect("one vector"));
        xi.copy_from_slice(&f(v).to_array());
    }
    let xr = xc.into_remainder();
    if !xr.is_empty() {
        let mut buf = [0.0f32; LANES];
        buf[..xr.len()].copy_from_slice(xr);
        let r = f(V::from(buf)).to_array();
        xr.copy_from_slice(&r[..xr.len()]);
    }
}

/// `out[i] = exp(x[i])`, error ≤ 1.1 ulp. Panics if the lengths differ.
pub fn exp(x: &[f32], out: &mut [f32]) {
    map_v(x, out, simd::exp_v)
}
/// `out[i] = σ(x[i]) = 1 / (1 + exp(−x[i]))`, error ≤ 2.5 ulp. Panics if the
/// lengths differ.
pub fn sigmoid(x: &[f32], out: &mut [f32]) {
    map_v(x, out, simd::sigmoid_v)
}
/// `out[i] = tanh(x[i])`, error ≤ 2 ulp. Panics if the lengths differ.
pub fn tanh(x: &[f32], out: &mut [f32]) {
    map_v(x, out, simd::tanh_v)
}
/// `out[i] = softplus(x[i]) = max(x, 0) + log1p(exp(−|x|))`, error ≤ 3 ulp.
/// Panics if the lengths differ.
pub fn softplus(x: &[f32], out: &mut [f32]) {
    map_v(x, out, simd::softplus_v)
}
/// `out[i] = log σ(x[i]) = −softplus(−x[i])`, error ≤ 3 ulp. Panics if the
/// lengths differ.
pub fn log_sigmoid(x: &[f32], out: &mut [f32]) {
    map_v(x, out, simd::log_sigmoid_v)
}

/// `x[i] = exp(x[i])`, in place.
pub fn exp_inplace(x: &mut [f32]) {
    map_v_inplace(x, simd::exp_v)
}
/// `x[i] = σ(x[i])`, in place.
pub fn sigmoid_inplace(x: &mut [f32]) {
    map_v_inplace(x, simd::sigmoid_v)
}
/// `x[i] = tanh(x[i])`, in place.
pub fn tanh_inplace(x: &mut [f32]) {
    map_v_inplace(x, simd::tanh_v)
}
/// `x[i] = softplus(x[i])`, in place.
pub fn softplus_inplace(x: &mut [f32]) {
    map_v_inplace(x, simd::softplus_v)
}
/// `x[i] = log σ(x[i])`, in place.
pub fn log_sigmoid_inplace(x: &mut [f32]) {
    map_v_inplace(x, simd::log_sigmoid_v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    type SliceFn = fn(&[f32], &mut [f32]);
    type InplaceFn = fn(&mut [f32]);
    type RegFn = fn(V) -> V;

    const ALL: [(&str, SliceFn, InplaceFn, RegFn); 5] = [
        ("exp", exp, exp_inplace, simd::exp_v),
        ("sigmoid", sigmoid, sigmoid_inplace, simd::sigmoid_v),
        ("tanh", tanh, tanh_inplace, simd::tanh_v),
        ("softplus", softplus, softplus_inplace, simd::softplus_v),
        ("log_sigmoid", log_sigmoid, log_sigmoid_inplace, simd::log_sigmoid_v),
    ];

    fn same(a: f32, b: f32) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    /// Inputs mixing ordinary values with specials, so lanes of one register
    /// hold very different cases.
    fn mixed_inputs(len: usize, seed: u64) -> Vec<f32> {
        let specials = [0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, f32::from_bits(1), 1e30, -1e30];
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..len)
            .map(|_| {
                if rng.random_range(0..4) == 0 {
                    specials[rng.random_range(0..specials.len())]
                } else {
                    rng.random_range(-30.0..30.0)
                }
            })
            .collect()
    }

    #[test]
    fn slice_form_equals_register_form_lane_by_lane() {
        for (name, slice, _, reg) in ALL {
            for len in [0usize, 1, 7, 8, 9, 15, 16, 17, 63, 64, 67, 1000] {
                let x = mixed_inputs(len, len as u64);
                let mut out = vec![f32::NAN; len];
                slice(&x, &mut out);
                // The same register form on each vector (zero-padded tail).
                for (c, (xc, oc)) in x.chunks(LANES).zip(out.chunks(LANES)).enumerate() {
                    let mut buf = [0.0f32; LANES];
                    buf[..xc.len()].copy_from_slice(xc);
                    let r = reg(V::from(buf)).to_array();
                    for (lane, (&o, &rv)) in oc.iter().zip(&r).enumerate() {
                        assert!(
                            same(o, rv),
                            "{name}: len {len}, chunk {c}, lane {lane}: slice {o:e} != register {rv:e}"
                        );
                    }
                }
                // Lane independence: each element alone in a splatted register.
                for (&xi, &o) in x.iter().zip(&out) {
                    let r = reg(V::splat(xi)).to_array();
                    assert!(r.iter().all(|&v| same(v, o)), "{name}({xi:e}): {o:e} in a slice, {r:?} splatted");
                }
            }
        }
    }

    #[test]
    fn inplace_form_equals_slice_form() {
        for (name, slice, inplace, _) in ALL {
            for len in 0..=67usize {
                let x = mixed_inputs(len, 100 + len as u64);
                let mut out = vec![0.0f32; len];
                slice(&x, &mut out);
                let mut y = x.clone();
                inplace(&mut y);
                for ((&xi, &a), &b) in x.iter().zip(&out).zip(&y) {
                    assert!(same(a, b), "{name}({xi:e}): slice {a:e}, in place {b:e}");
                }
            }
        }
    }

    #[test]
    fn non_nan_inputs_never_give_nan() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let x: Vec<f32> = (0..50_000).map(|_| f32::from_bits(rng.random::<u32>())).filter(|v| !v.is_nan()).collect();
        let mut out = vec![0.0f32; x.len()];
        for (name, slice, _, _) in ALL {
            slice(&x, &mut out);
            for (&xi, &o) in x.iter().zip(&out) {
                assert!(!o.is_nan(), "{name}({xi:e}) is NaN");
            }
        }
    }

    #[test]
    #[should_panic(expected = "lengths differ")]
    fn mismatched_lengths_panic() {
        let mut out = [0.0f32; 3];
        exp(&[1.0, 2.0], &mut out);
    }
}
