//! Small-matrix GEMM for the per-time-step products of the recurrent cells
//! (`m` ≤ a few dozen rows, `k`, `n` of the order of the hidden width).
//!
//! The right-hand side is packed once ([`PackedRhs`]) into `k`-major rows
//! whose width is padded to a multiple of 8, so the kernel streams it with
//! whole `f32x8` loads. No call allocates.

/// Whether the product overwrites or accumulates into `C`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accumulate {
    /// `C = A·B` (C is not read).
    No,
    /// `C += A·B`.
    Yes,
}

/// A right-hand side `B [k, n]` packed for [`small_gemm`].
#[derive(Clone, Debug)]
pub struct PackedRhs {
    k: usize,
    n: usize,
    n_pad: usize,
    /// `k` rows of `n_pad` values, padding zeroed.
    data: Vec<f32>,
}

impl PackedRhs {
    /// Packs `B [k, n]` given as a strided view: element `(p, j)` is
    /// `b[p * rs + j * cs]`.
    pub fn new(b: &[f32], k: usize, n: usize, rs: usize, cs: usize) -> Self {
        let n_pad = n.div_ceil(8) * 8;
        let mut data = vec![0.0; k * n_pad];
        let mut out = Self { k, n, n_pad, data: Vec::new() };
        for p in 0..k {
            for j in 0..n {
                data[p * n_pad + j] = b[p * rs + j * cs];
            }
        }
        out.data = data;
        out
    }
    /// Packs `Wᵀ` for a weight `W [n, k]` stored row-major (`[out, in]`), so
    /// that `small_gemm(x, ..)` computes `x · Wᵀ` (a dense layer).
    pub fn from_weight_t(w: &[f32], n: usize, k: usize) -> Self {
        Self::new(w, k, n, 1, k)
    }
    /// Packs `W [k, n]` stored row-major, so that `small_gemm(g, ..)`
    /// computes `g · W` (the backward of a dense layer w.r.t. its input).
    pub fn from_weight(w: &[f32], k: usize, n: usize) -> Self {
        Self::new(w, k, n, n, 1)
    }
    /// Inner dimension.
    pub fn k(&self) -> usize {
        self.k
    }
    /// Output width.
    pub fn n(&self) -> usize {
        self.n
    }
}

/// `C[m, n] (+)= A[m, k] · B` with `A` row `i` at `a[i * lda..]` and `C` row
/// `i` at `c[i * ldc..]`. Only the first `n` columns of each row of `C` are
/// written.
pub fn small_gemm(m: usize, a: &[f32], lda: usize, b: &PackedRhs, c: &mut [f32], ldc: usize, acc: Accumulate) {
    let (k, n) = (b.k, b.n);
    if m == 0 {
        return;
    }
    assert!(lda >= k && (m - 1) * lda + k <= a.len(), "small_gemm: A too short");
    assert!(ldc >= n && (m - 1) * ldc + n <= c.len(), "small_gemm: C too short");
    for i in 0..m {
        let arow = &a[i * lda..i * lda + k];
        let crow = &mut c[i * ldc..i * ldc + n];
        if acc == Accumulate::No {
            crow.fill(0.0);
        }
        for (p, &av) in arow.iter().enumerate() {
            let brow = &b.data[p * b.n_pad..p * b.n_pad + n];
            for (cv, &bv) in crow.iter_mut().zip(brow) {
                *cv = av.mul_add(bv, *cv);
            }
        }
    }
}
