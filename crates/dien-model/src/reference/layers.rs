//! Layers of the double-precision reference path (docs/MODEL.md#auxiliary-loss, #attention,
//! #prediction-head): dense
//! layers, the sigmoid MLP stacks of the attention and auxiliary heads,
//! PReLU, BatchNorm, Dice, the masked softmax and the losses.
//!
//! Every function works on plain `f64` slices, one sample or one batch at a
//! time, and is written for clarity. Backward functions *accumulate* into
//! the gradient slices they are given.

// Index loops mirror the subscripts of the equations; clarity is the point here.
#![allow(clippy::needless_range_loop)]

use crate::params::ParamStore;

/// BatchNorm variance epsilon (docs/MODEL.md#batchnorm).
pub const BN_EPS: f64 = 1e-3;

/// Dice variance epsilon (docs/MODEL.md#dice).
pub const DICE_EPS: f64 = 1e-8;

/// Logistic sigmoid, evaluated without overflow for any finite input.
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// `softplus(x) = max(x, 0) + log1p(exp(−|x|))`, exactly as docs/MODEL.md#notation writes it.
pub fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// `Σ a_i b_i` with four interleaved partial sums (fixed order, so results
/// are reproducible); a single running sum would make every dot product one
/// long dependency chain, several times slower.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "dot: lengths differ");
    let mut acc = [0.0; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..4 {
            acc[k] += x[k] * y[k];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// Dense layer `y = W x + b` with `W [out, in]` row-major; `out = y.len()`,
/// `in = x.len()`.
pub fn dense_forward(w: &[f64], b: &[f64], x: &[f64], y: &mut [f64]) {
    let (n_out, n_in) = (y.len(), x.len());
    assert_eq!(w.len(), n_out * n_in, "dense: W must be [out, in]");
    assert_eq!(b.len(), n_out, "dense: b must be [out]");
    for (o, yo) in y.iter_mut().enumerate() {
        let row = &w[o * n_in..(o + 1) * n_in];
        *yo = b[o] + dot(row, x);
    }
}

/// Backward of [`dense_forward`]: `dW += dy xᵀ`, `db += dy` and, when given,
/// `dx += Wᵀ dy`.
pub fn dense_backward(w: &[f64], x: &[f64], dy: &[f64], dw: &mut [f64], db: &mut [f64], dx: Option<&mut [f64]>) {
    let (n_out, n_in) = (dy.len(), x.len());
    assert_eq!(w.len(), n_out * n_in, "dense: W must be [out, in]");
    assert_eq!(dw.len(), w.len(), "dense: dW must match W");
    assert_eq!(db.len(), n_out, "dense: db must be [out]");
    for o in 0..n_out {
        db[o] += dy[o];
        for (dwi, xi) in dw[o * n_in..(o + 1) * n_in].iter_mut().zip(x) {
            *dwi += dy[o] * xi;
        }
    }
    if let Some(dx) = dx {
        assert_eq!(dx.len(), n_in, "dense: dx must be [in]");
        for (o, &g) in dy.iter().enumerate() {
            for (dxi, wi) in dx.iter_mut().zip(&w[o * n_in..(o + 1) * n_in]) {
                *dxi += wi * g;
            }
        }
    }
}

/// Borrowed parameters of a three-layer sigmoid MLP with a scalar output:
/// `fc1 → σ → fc2 → σ → fc3` (the attention scorer of docs/MODEL.md#attention and the
/// auxiliary head of docs/MODEL.md#auxiliary-loss).
#[derive(Clone, Copy, Debug)]
pub struct MlpParams<'a> {
    /// `fc1.w [n1, in]`.
    pub w1: &'a [f64],
    /// `fc1.b [n1]`.
    pub b1: &'a [f64],
    /// `fc2.w [n2, n1]`.
    pub w2: &'a [f64],
    /// `fc2.b [n2]`.
    pub b2: &'a [f64],
    /// `fc3.w [1, n2]`.
    pub w3: &'a [f64],
    /// `fc3.b [1]`.
    pub b3: &'a [f64],
}

/// Gradients of an [`MlpParams`], same layouts.
#[derive(Clone, Debug, PartialEq)]
pub struct MlpGrads {
    /// `∂L/∂fc1.w`.
    pub w1: Vec<f64>,
    /// `∂L/∂fc1.b`.
    pub b1: Vec<f64>,
    /// `∂L/∂fc2.w`.
    pub w2: Vec<f64>,
    /// `∂L/∂fc2.b`.
    pub b2: Vec<f64>,
    /// `∂L/∂fc3.w`.
    pub w3: Vec<f64>,
    /// `∂L/∂fc3.b`.
    pub b3: Vec<f64>,
}

impl MlpGrads {
    /// Zero gradients shaped like `p`.
    pub fn zeros_like(p: &MlpParams<'_>) -> Self {
        Self {
            w1: vec![0.0; p.w1.len()],
            b1: vec![0.0; p.b1.len()],
            w2: vec![0.0; p.w2.len()],
            b2: vec![0.0; p.b2.len()],
            w3: vec![0.0; p.w3.len()],
            b3: vec![0.0; p.b3.len()],
        }
    }
}

/// Activations of one [`mlp_forward`] call, consumed by [`mlp_backward`].
#[derive(Clone, Debug, Default)]
pub struct MlpCache {
    /// `σ(fc1 x)`.
    pub h1: Vec<f64>,
    /// `σ(fc2 h1)`.
    pub h2: Vec<f64>,
}

/// Scalar output of the sigmoid MLP for input `x`; fills `cache`.
pub fn mlp_forward(p: &MlpParams<'_>, x: &[f64], cache: &mut MlpCache) -> f64 {
    assert_eq!(p.b3.len(), 1, "mlp: scalar output");
    cache.h1.resize(p.b1.len(), 0.0);
    cache.h2.resize(p.b2.len(), 0.0);
    dense_forward(p.w1, p.b1, x, &mut cache.h1);
    cache.h1.iter_mut().for_each(|v| *v = sigmoid(*v));
    dense_forward(p.w2, p.b2, &cache.h1, &mut cache.h2);
    cache.h2.iter_mut().for_each(|v| *v = sigmoid(*v));
    let mut out = [0.0];
    dense_forward(p.w3, p.b3, &cache.h2, &mut out);
    out[0]
}

/// Backward of [`mlp_forward`] for output gradient `dout`: accumulates the
/// parameter gradients into `g` and `∂L/∂x` into `dx`.
pub fn mlp_backward(p: &MlpParams<'_>, x: &[f64], cache: &MlpCache, dout: f64, g: &mut MlpGrads, dx: &mut [f64]) {
    let mut dh2 = vec![0.0; cache.h2.len()];
    dense_backward(p.w3, &cache.h2, &[dout], &mut g.w3, &mut g.b3, Some(&mut dh2));
    for (d, h) in dh2.iter_mut().zip(&cache.h2) {
        *d *= h * (1.0 - h);
    }
    let mut dh1 = vec![0.0; cache.h1.len()];
    dense_backward(p.w2, &cache.h1, &dh2, &mut g.w2, &mut g.b2, Some(&mut dh1));
    for (d, h) in dh1.iter_mut().zip(&cache.h1) {
        *d *= h * (1.0 - h);
    }
    dense_backward(p.w1, x, &dh1, &mut g.w1, &mut g.b1, Some(dx));
}

/// PReLU: `y = x` for `x > 0`, `slope·x` otherwise (per unit).
pub fn prelu_forward(x: &[f64], slope: &[f64], y: &mut [f64]) {
    assert!(x.len() == slope.len() && y.len() == x.len(), "prelu: widths");
    for ((yi, &xi), &a) in y.iter_mut().zip(x).zip(slope) {
        *yi = if xi > 0.0 { xi } else { a * xi };
    }
}

/// Backward of [`prelu_forward`]: accumulates `∂L/∂slope` and `∂L/∂x`.
pub fn prelu_backward(x: &[f64], slope: &[f64], dy: &[f64], dslope: &mut [f64], dx: &mut [f64]) {
    for i in 0..x.len() {
        if x[i] > 0.0 {
            dx[i] += dy[i];
        } else {
            dx[i] += slope[i] * dy[i];
            dslope[i] += x[i] * dy[i];
        }
    }
}

/// Column means and biased column variances of `x [rows, cols]` (two-pass).
pub fn batch_mean_var(x: &[f64], rows: usize, cols: usize) -> (Vec<f64>, Vec<f64>) {
    assert_eq!(x.len(), rows * cols, "batch stats: x must be [rows, cols]");
    assert!(rows > 0, "batch stats of an empty batch");
    let n = rows as f64;
    let mut mean = vec![0.0; cols];
    for r in 0..rows {
        for (m, v) in mean.iter_mut().zip(&x[r * cols..(r + 1) * cols]) {
            *m += v;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n);
    let mut var = vec![0.0; cols];
    for r in 0..rows {
        for ((s, v), m) in var.iter_mut().zip(&x[r * cols..(r + 1) * cols]).zip(&mean) {
            *s += (v - m) * (v - m);
        }
    }
    var.iter_mut().for_each(|s| *s /= n);
    (mean, var)
}

/// What a normalising layer keeps for its backward pass.
#[derive(Clone, Debug)]
pub struct NormCache {
    /// Normalised input `x̂ [rows, cols]`.
    pub xhat: Vec<f64>,
    /// `1/sqrt(var + eps)` per column.
    pub inv_std: Vec<f64>,
}

fn normalise(x: &[f64], rows: usize, cols: usize, mean: &[f64], var: &[f64], eps: f64) -> NormCache {
    assert!(mean.len() == cols && var.len() == cols, "normalise: stats must be [cols]");
    let inv_std: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    let mut xhat = vec![0.0; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            xhat[r * cols + c] = (x[r * cols + c] - mean[c]) * inv_std[c];
        }
    }
    NormCache { xhat, inv_std }
}

/// `∂L/∂x` of `x̂ = (x − μ)·inv_std`, accumulated into `dx`. With
/// `batch_stats` the statistics are the batch's own (biased) ones and the
/// gradient flows through them; otherwise they are constants.
fn normalise_backward(cache: &NormCache, dxhat: &[f64], rows: usize, cols: usize, batch_stats: bool, dx: &mut [f64]) {
    let n = rows as f64;
    for c in 0..cols {
        let s = cache.inv_std[c];
        if batch_stats {
            let mut mean_g = 0.0;
            let mut mean_gx = 0.0;
            for r in 0..rows {
                mean_g += dxhat[r * cols + c];
                mean_gx += dxhat[r * cols + c] * cache.xhat[r * cols + c];
            }
            mean_g /= n;
            mean_gx /= n;
            for r in 0..rows {
                let i = r * cols + c;
                dx[i] += s * (dxhat[i] - mean_g - cache.xhat[i] * mean_gx);
            }
        } else {
            for r in 0..rows {
                dx[r * cols + c] += s * dxhat[r * cols + c];
            }
        }
    }
}

/// BatchNorm over `x [rows, cols]` with the given statistics (batch ones in
/// training, running ones in evaluation): `y = γ·(x − μ)/sqrt(σ² + 1e-3) + β`.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_forward(
    x: &[f64],
    rows: usize,
    cols: usize,
    gamma: &[f64],
    beta: &[f64],
    mean: &[f64],
    var: &[f64],
    y: &mut [f64],
) -> NormCache {
    assert!(x.len() == rows * cols && y.len() == rows * cols, "batch norm: x, y must be [rows, cols]");
    let cache = normalise(x, rows, cols, mean, var, BN_EPS);
    for r in 0..rows {
        for c in 0..cols {
            y[r * cols + c] = gamma[c] * cache.xhat[r * cols + c] + beta[c];
        }
    }
    cache
}

/// Backward of [`batch_norm_forward`]; `batch_stats` says whether the
/// statistics were the batch's own (training).
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward(
    cache: &NormCache,
    rows: usize,
    cols: usize,
    gamma: &[f64],
    dy: &[f64],
    batch_stats: bool,
    dgamma: &mut [f64],
    dbeta: &mut [f64],
    dx: &mut [f64],
) {
    let mut dxhat = vec![0.0; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            let i = r * cols + c;
            dgamma[c] += dy[i] * cache.xhat[i];
            dbeta[c] += dy[i];
            dxhat[i] = dy[i] * gamma[c];
        }
    }
    normalise_backward(cache, &dxhat, rows, cols, batch_stats, dx);
}

/// What [`dice_forward`] keeps for [`dice_backward`].
#[derive(Clone, Debug)]
pub struct DiceCache {
    /// Normalisation of the input.
    pub norm: NormCache,
    /// `ρ = σ(x̂) [rows, cols]`.
    pub rho: Vec<f64>,
}

/// Dice over `x [rows, cols]` (docs/MODEL.md#dice): `x̂ = (x − μ)/sqrt(σ² + 1e-8)`,
/// `ρ = σ(x̂)`, `y = ρ·x + (1 − ρ)·α·x`, with the given statistics.
pub fn dice_forward(
    x: &[f64],
    rows: usize,
    cols: usize,
    alpha: &[f64],
    mean: &[f64],
    var: &[f64],
    y: &mut [f64],
) -> DiceCache {
    assert!(x.len() == rows * cols && y.len() == rows * cols, "dice: x, y must be [rows, cols]");
    let norm = normalise(x, rows, cols, mean, var, DICE_EPS);
    let rho: Vec<f64> = norm.xhat.iter().map(|&v| sigmoid(v)).collect();
    for r in 0..rows {
        for c in 0..cols {
            let i = r * cols + c;
            y[i] = rho[i] * x[i] + (1.0 - rho[i]) * alpha[c] * x[i];
        }
    }
    DiceCache { norm, rho }
}

/// Backward of [`dice_forward`]; `batch_stats` says whether the statistics
/// were the batch's own (training), in which case the gradient flows
/// through them.
#[allow(clippy::too_many_arguments)]
pub fn dice_backward(
    cache: &DiceCache,
    x: &[f64],
    rows: usize,
    cols: usize,
    alpha: &[f64],
    dy: &[f64],
    batch_stats: bool,
    dalpha: &mut [f64],
    dx: &mut [f64],
) {
    let mut dxhat = vec![0.0; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            let i = r * cols + c;
            let (rho, g) = (cache.rho[i], dy[i]);
            dalpha[c] += g * x[i] * (1.0 - rho);
            // Direct path with ρ held fixed, then the path through ρ(x̂(x)).
            dx[i] += g * (alpha[c] + (1.0 - alpha[c]) * rho);
            dxhat[i] = g * x[i] * (1.0 - alpha[c]) * rho * (1.0 - rho);
        }
    }
    normalise_backward(&cache.norm, &dxhat, rows, cols, batch_stats, dx);
}

/// Softmax over `scores` (all entries valid; the caller passes only the
/// steps `t < L`), stabilised by subtracting the maximum. Empty in, empty out.
pub fn masked_softmax(scores: &[f64]) -> Vec<f64> {
    if scores.is_empty() {
        return Vec::new();
    }
    let m = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
    let z: f64 = e.iter().sum();
    e.iter().map(|v| v / z).collect()
}

/// Backward of [`masked_softmax`]: `∂L/∂s_t = a_t (∂L/∂a_t − Σ_j a_j ∂L/∂a_j)`.
pub fn softmax_backward(a: &[f64], da: &[f64]) -> Vec<f64> {
    let dot: f64 = a.iter().zip(da).map(|(x, y)| x * y).sum();
    a.iter().zip(da).map(|(ai, di)| ai * (di - dot)).collect()
}

/// Target loss of docs/MODEL.md#losses, `mean_b [y·softplus(−z) + (1 − y)·softplus(z)]`
/// (the document's two cases for labels 0 and 1), and its gradient
/// `∂L/∂z_b = (σ(z_b) − y_b)/B`.
pub fn target_loss(logits: &[f64], labels: &[f32]) -> (f64, Vec<f64>) {
    assert_eq!(logits.len(), labels.len(), "target loss: one label per logit");
    assert!(!logits.is_empty(), "target loss of an empty batch");
    let n = logits.len() as f64;
    let mut loss = 0.0;
    let mut dz = Vec::with_capacity(logits.len());
    for (&z, &y) in logits.iter().zip(labels) {
        let y = f64::from(y);
        loss += y * softplus(-z) + (1.0 - y) * softplus(z);
        dz.push((sigmoid(z) - y) / n);
    }
    (loss / n, dz)
}

/// Adds `v` into the gradient tensor `name`.
pub(crate) fn add(grads: &mut ParamStore<f64>, name: &str, v: &[f64]) {
    for (g, x) in grads.get_mut(name).iter_mut().zip(v) {
        *g += x;
    }
}

/// `acc += v` (equal lengths).
pub(crate) fn add_slice(acc: &mut [f64], v: &[f64]) {
    assert_eq!(acc.len(), v.len(), "gradient shapes");
    for (a, x) in acc.iter_mut().zip(v) {
        *a += x;
    }
}

#[cfg(test)]
mod tests {
    use dien_engine::gradcheck::{NamedTensor, check};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn rand_vec(rng: &mut ChaCha8Rng, n: usize, scale: f64) -> Vec<f64> {
        (0..n).map(|_| rng.random_range(-scale..scale)).collect()
    }

    #[test]
    fn sigmoid_and_softplus_at_extremes() {
        assert_eq!(sigmoid(-800.0), 0.0);
        assert_eq!(sigmoid(800.0), 1.0);
        assert!((sigmoid(0.3) - 1.0 / (1.0 + (-0.3f64).exp())).abs() < 1e-16);
        // No cut-off: far left of zero the value is log1p(exp(x)), not 0.
        assert_eq!(softplus(-40.0), (-40.0f64).exp().ln_1p());
        assert!(softplus(-40.0) > 0.0);
        assert_eq!(softplus(2.5), 2.5 + (-2.5f64).exp().ln_1p());
        assert!(softplus(-800.0) == 0.0 && softplus(800.0) == 800.0);
        assert!((softplus(0.0) - 2f64.ln()).abs() < 1e-16);
    }

    #[test]
    fn softmax_is_stable_and_normalised() {
        let a = masked_softmax(&[1000.0, 999.0, -5.0]);
        assert!(a.iter().all(|v| v.is_finite()));
        assert!((a.iter().sum::<f64>() - 1.0).abs() < 1e-15);
        assert!((a[0] / a[1] - 1f64.exp()).abs() < 1e-12);
        assert!(masked_softmax(&[]).is_empty());
    }

    /// Gradient check of a BatchNorm → Dice → MLP stack with softmax and the
    /// target loss, with batch statistics (training) and fixed statistics.
    #[test]
    fn layer_stack_gradients_match_finite_differences() {
        let (rows, cols, n1) = (5, 3, 4);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let labels = [1.0f32, 0.0, 1.0, 1.0, 0.0];
        for batch_stats in [true, false] {
            let names = ["x", "gamma", "beta", "alpha", "slope", "w1", "b1", "w2", "b2", "w3", "b3", "w4", "b4"];
            let sizes = [rows * cols, cols, cols, cols, cols, n1 * cols, n1, 3 * n1, 3, 3, 1, 2, 2];
            let mut t: Vec<NamedTensor> =
                names.iter().zip(sizes).map(|(n, s)| NamedTensor::new(*n, rand_vec(&mut rng, s, 1.0))).collect();
            let run_mean = rand_vec(&mut rng, cols, 0.5);
            let run_var: Vec<f64> = (0..cols).map(|_| rng.random_range(0.5..2.0)).collect();
            // loss(tensors) and its analytic gradient.
            let eval = |t: &[NamedTensor], want_grad: bool| -> (f64, Vec<Vec<f64>>) {
                let d = |i: usize| t[i].data.as_slice();
                let x = d(0);
                let (m, v) =
                    if batch_stats { batch_mean_var(x, rows, cols) } else { (run_mean.clone(), run_var.clone()) };
                let mut y1 = vec![0.0; rows * cols];
                let bn = batch_norm_forward(x, rows, cols, d(1), d(2), &m, &v, &mut y1);
                let (m2, v2) =
                    if batch_stats { batch_mean_var(&y1, rows, cols) } else { (run_mean.clone(), run_var.clone()) };
                let mut y2 = vec![0.0; rows * cols];
                let dc = dice_forward(&y1, rows, cols, d(3), &m2, &v2, &mut y2);
                let p = MlpParams { w1: d(5), b1: d(6), w2: d(7), b2: d(8), w3: d(9), b3: d(10) };
                let mut scores = Vec::new();
                let mut caches = Vec::new();
                let mut pre = Vec::new();
                for r in 0..rows {
                    let mut y3 = vec![0.0; cols];
                    prelu_forward(&y2[r * cols..(r + 1) * cols], d(4), &mut y3);
                    let mut c = MlpCache::default();
                    scores.push(mlp_forward(&p, &y3, &mut c));
                    caches.push(c);
                    pre.push(y3);
                }
                let a = masked_softmax(&scores);
                // logits_r = w4[0]·a_r·r + w4[1]·score_r + b4[r%2]
                let logits: Vec<f64> =
                    (0..rows).map(|r| d(11)[0] * a[r] * r as f64 + d(11)[1] * scores[r] + d(12)[r % 2]).collect();
                let (loss, dz) = target_loss(&logits, &labels);
                if !want_grad {
                    return (loss, Vec::new());
                }
                let mut g: Vec<Vec<f64>> = sizes.iter().map(|&s| vec![0.0; s]).collect();
                let mut da = vec![0.0; rows];
                let mut ds = vec![0.0; rows];
                for r in 0..rows {
                    g[11][0] += dz[r] * a[r] * r as f64;
                    g[11][1] += dz[r] * scores[r];
                    g[12][r % 2] += dz[r];
                    da[r] = dz[r] * d(11)[0] * r as f64;
                    ds[r] = dz[r] * d(11)[1];
                }
                let dsm = softmax_backward(&a, &da);
                let mut mg = MlpGrads::zeros_like(&p);
                let mut dy2 = vec![0.0; rows * cols];
                for r in 0..rows {
                    let mut dy3 = vec![0.0; cols];
                    mlp_backward(&p, &pre[r], &caches[r], ds[r] + dsm[r], &mut mg, &mut dy3);
                    let row = &y2[r * cols..(r + 1) * cols];
                    prelu_backward(row, d(4), &dy3, &mut g[4], &mut dy2[r * cols..(r + 1) * cols]);
                }
                (g[5], g[6], g[7], g[8], g[9], g[10]) = (mg.w1, mg.b1, mg.w2, mg.b2, mg.w3, mg.b3);
                let mut dy1 = vec![0.0; rows * cols];
                let mut dalpha = vec![0.0; cols];
                dice_backward(&dc, &y1, rows, cols, d(3), &dy2, batch_stats, &mut dalpha, &mut dy1);
                g[3] = dalpha;
                let (mut dgamma, mut dbeta, mut dx) = (vec![0.0; cols], vec![0.0; cols], vec![0.0; rows * cols]);
                batch_norm_backward(&bn, rows, cols, d(1), &dy1, batch_stats, &mut dgamma, &mut dbeta, &mut dx);
                (g[0], g[1], g[2]) = (dx, dgamma, dbeta);
                (loss, g)
            };
            let (_, analytic) = eval(&t, true);
            // Two-point differences with eps = 1e-5 resolve about 1e-11 absolute
            // here (rounding of the loss over 2·eps), so relative errors are
            // judged above 1e-5 and every entry must agree within 1e-10.
            let rep = check(&mut t, &analytic, 1e-5, 1e-5, |t| eval(t, false).0);
            assert!(rep.passes(1e-6, 1e-10), "batch_stats = {batch_stats}\n{rep}");
        }
    }
}
