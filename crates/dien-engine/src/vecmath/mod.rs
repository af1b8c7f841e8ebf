//! Explicit-SIMD vector math over `f32` slices, 8 lanes at a time.
//!
//! Every function has three forms: a slice form (`exp(&x, &mut out)`), a
//! register form in [`simd`] used inside fused kernels, and a plain scalar
//! reference in [`scalar`]. Tails (lengths not a multiple of 8) go through
//! the same SIMD code on a zero-padded register.

pub mod scalar;
pub mod simd;

use wide::f32x8;

/// Applies `f` to `x` 8 lanes at a time, writing `out`. The tail is copied
/// into a zero-padded register so it runs through the same code.
#[inline(always)]
fn map8(x: &[f32], out: &mut [f32], f: impl Fn(f32x8) -> f32x8) {
    assert_eq!(x.len(), out.len(), "vecmath: input and output lengths differ");
    let mut xc = x.chunks_exact(8);
    let mut oc = out.chunks_exact_mut(8);
    for (xi, oi) in (&mut xc).zip(&mut oc) {
        let v = f32x8::from(<[f32; 8]>::try_from(xi).expect("chunk of 8"));
        oi.copy_from_slice(&f(v).to_array());
    }
    let (xr, or) = (xc.remainder(), oc.into_remainder());
    if !xr.is_empty() {
        let mut buf = [0.0f32; 8];
        buf[..xr.len()].copy_from_slice(xr);
        let r = f(f32x8::from(buf)).to_array();
        or.copy_from_slice(&r[..xr.len()]);
    }
}

/// `out[i] = exp(x[i])`.
pub fn exp(x: &[f32], out: &mut [f32]) {
    map8(x, out, simd::exp8)
}
/// `out[i] = σ(x[i]) = 1 / (1 + exp(−x[i]))`.
pub fn sigmoid(x: &[f32], out: &mut [f32]) {
    map8(x, out, simd::sigmoid8)
}
/// `out[i] = tanh(x[i])`.
pub fn tanh(x: &[f32], out: &mut [f32]) {
    map8(x, out, simd::tanh8)
}
/// `out[i] = softplus(x[i]) = max(x, 0) + log1p(exp(−|x|))`.
pub fn softplus(x: &[f32], out: &mut [f32]) {
    map8(x, out, simd::softplus8)
}
/// `out[i] = log σ(x[i]) = −softplus(−x[i])`.
pub fn log_sigmoid(x: &[f32], out: &mut [f32]) {
    map8(x, out, simd::log_sigmoid8)
}
