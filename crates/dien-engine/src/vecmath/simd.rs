//! Register forms of the vector math, for use inside fused kernels.

use wide::f32x8;

/// `exp` on 8 lanes.
#[inline(always)]
pub fn exp8(x: f32x8) -> f32x8 {
    x.exp()
}
/// Logistic sigmoid on 8 lanes.
#[inline(always)]
pub fn sigmoid8(x: f32x8) -> f32x8 {
    f32x8::ONE / (f32x8::ONE + (-x).exp())
}
/// `tanh` on 8 lanes.
#[inline(always)]
pub fn tanh8(x: f32x8) -> f32x8 {
    x.tanh()
}
/// `softplus` on 8 lanes.
#[inline(always)]
pub fn softplus8(x: f32x8) -> f32x8 {
    x.max(f32x8::ZERO) + (f32x8::ONE + (-x.abs()).exp()).ln()
}
/// `log σ(x)` on 8 lanes.
#[inline(always)]
pub fn log_sigmoid8(x: f32x8) -> f32x8 {
    -softplus8(-x)
}
