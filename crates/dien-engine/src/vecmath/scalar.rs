//! Plain scalar references, written for clarity.

/// `exp(x)`.
pub fn exp(x: f32) -> f32 {
    x.exp()
}
/// `1 / (1 + exp(−x))`, evaluated without overflow for large |x|.
#[inline]
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}
/// `tanh(x)`.
pub fn tanh(x: f32) -> f32 {
    x.tanh()
}
/// `max(x, 0) + log1p(exp(−|x|))`.
pub fn softplus(x: f32) -> f32 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}
/// `log σ(x) = −softplus(−x)`.
pub fn log_sigmoid(x: f32) -> f32 {
    -softplus(-x)
}
