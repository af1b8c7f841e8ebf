//! Dense layers over blocks of rows, on the engine's small-matrix kernel.
//!
//! Weights are packed once per parameter update ([`Dense::set`]): `Wᵀ` for
//! the forward product and `W` for the input gradient, so neither product
//! transposes anything on the fly and no call allocates.

use dien_engine::gemm::tile::{Accumulate, Packed, gemm_packed};
use dien_engine::gemm::{MatMut, MatRef, gemm};
use dien_engine::simd::{LANES, V};
use dien_engine::vecmath::simd::sigmoid_v;

/// A packed `[out, inp]` weight.
#[derive(Clone, Debug)]
pub(crate) struct Dense {
    pub out: usize,
    pub inp: usize,
    fwd: Packed,
    bwd: Packed,
}

impl Dense {
    /// A layer of the given shape (weights zero until [`Dense::set`]).
    pub fn new(out: usize, inp: usize) -> Self {
        let zeros = vec![0.0; out * inp];
        Self { out, inp, fwd: Packed::from_weight_t(&zeros, out, inp), bwd: Packed::from_weight(&zeros, out, inp) }
    }

    /// Repacks the weight `w [out, inp]` (no allocation).
    pub fn set(&mut self, w: &[f32]) {
        assert_eq!(w.len(), self.out * self.inp, "Dense::set: weight shape");
        self.fwd.fill_t(w, self.out, self.inp);
        self.bwd.fill_n(w, self.out, self.inp);
    }

    /// `y[m, out] = x[m, inp]·Wᵀ + bias` (`bias` may be empty for none).
    pub fn forward(&self, m: usize, x: &[f32], ldx: usize, bias: &[f32], y: &mut [f32], ldy: usize) {
        if bias.is_empty() {
            gemm_packed(m, x, ldx, &self.fwd, y, ldy, Accumulate::No);
        } else {
            for r in 0..m {
                y[r * ldy..r * ldy + self.out].copy_from_slice(bias);
            }
            gemm_packed(m, x, ldx, &self.fwd, y, ldy, Accumulate::Yes);
        }
    }

    /// The packed `Wᵀ [inp, out]` of the forward product, for callers that
    /// fuse their own epilogue ([`dien_engine::gemm::tile::gemm_ep`]).
    pub fn packed_t(&self) -> &Packed {
        &self.fwd
    }

    /// `y[m, out] (+)= x[m, inp]·Wᵀ` without bias.
    pub fn forward_acc(&self, m: usize, x: &[f32], ldx: usize, y: &mut [f32], ldy: usize, acc: Accumulate) {
        gemm_packed(m, x, ldx, &self.fwd, y, ldy, acc);
    }

    /// `dx[m, inp] (+)= dy[m, out]·W`.
    pub fn backward_input(&self, m: usize, dy: &[f32], lddy: usize, dx: &mut [f32], lddx: usize, acc: Accumulate) {
        gemm_packed(m, dy, lddy, &self.bwd, dx, lddx, acc);
    }
}

/// `dw[out, inp] += dy[m, out]ᵀ · x[m, inp]` and `db[out] += Σ_rows dy`
/// (`db` may be empty). Rows whose `dy` is zero contribute nothing, which is
/// how padded rows are excluded.
#[allow(clippy::too_many_arguments)]
pub(crate) fn weight_grad(
    m: usize,
    dy: &[f32],
    lddy: usize,
    out: usize,
    x: &[f32],
    ldx: usize,
    inp: usize,
    dw: &mut [f32],
    db: &mut [f32],
) {
    if m == 0 {
        return;
    }
    gemm(
        1.0,
        MatRef::new(dy, m, out, lddy, 1).t(),
        MatRef::new(x, m, inp, ldx, 1),
        1.0,
        MatMut::row_major(dw, out, inp),
    );
    if !db.is_empty() {
        for r in 0..m {
            for (d, &g) in db.iter_mut().zip(&dy[r * lddy..r * lddy + out]) {
                *d += g;
            }
        }
    }
}

/// In place `v = σ(v)` over a slice (one vector at a time, tail zero-padded).
pub(crate) fn sigmoid_inplace(v: &mut [f32]) {
    let mut chunks = v.chunks_exact_mut(LANES);
    for c in &mut chunks {
        let x = V::from(<[f32; LANES]>::try_from(&*c).expect("one vector"));
        c.copy_from_slice(&sigmoid_v(x).to_array());
    }
    let rem = chunks.into_remainder();
    if !rem.is_empty() {
        let mut buf = [0.0f32; LANES];
        buf[..rem.len()].copy_from_slice(rem);
        let r = sigmoid_v(V::from(buf)).to_array();
        let n = rem.len();
        rem.copy_from_slice(&r[..n]);
    }
}

/// `g = g ∘ y ∘ (1 − y)`: the backward of a sigmoid whose output is `y`.
pub(crate) fn sigmoid_backward_inplace(g: &mut [f32], y: &[f32]) {
    assert_eq!(g.len(), y.len());
    for (gi, &yi) in g.iter_mut().zip(y) {
        *gi *= yi * (1.0 - yi);
    }
}

/// Stable `softplus(x) = max(x, 0) + log1p(exp(−|x|))`.
#[inline]
pub(crate) fn softplus(x: f32) -> f32 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}
