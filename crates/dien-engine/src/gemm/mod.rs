//! GEMM: `C = alpha·op(A)·op(B) + beta·C` with transposes expressed by strides.
//!
//! [`gemm`] is a thin, safe wrapper over `matrixmultiply::{sgemm, dgemm}`
//! that checks every index it will touch lies inside the given slices.
//! Weight gradients accumulate in place (`beta = 1`) without temporaries.
//! Note: `matrixmultiply` allocates a packing buffer on every call, so hot
//! per-time-step products use the register-tiled kernel in [`tile`] instead.
//!
//! # Which kernel to use
//!
//! Measured (docs/PERFORMANCE.md, "GEMM"; `k ∈ {36, 72}`, `n ∈ {36, 72,
//! 108}`, x86-64-v3 build, `matrixmultiply` picking its AVX-512 kernel at
//! run time):
//!
//! - **Inside the time loop** (`m` = batch rows ≤ 32 per step, weight
//!   re-packed once per training step with [`tile::Packed::fill_t`]):
//!   [`tile::gemm_ep`], with an epilogue fused into the product, or
//!   [`tile::gemm_packed`] to store or accumulate the product. It never
//!   allocates, and it is 2–10× faster for `m ≤ 8` (where
//!   `matrixmultiply`'s per-call setup dominates), 1.0–1.4× at `m = 16`,
//!   and equal or faster at `m = 32` for `n ≤ 72`.
//! - **One-off large products** (`m ≥ 64`, e.g. the hoisted input projection
//!   `[B·T, 36]·[36, 108]`): [`gemm`]. With `n ≥ 72` its AVX-512 kernel is
//!   5–50% faster than the AVX2 small kernel (more as `m` and `n` grow);
//!   with `n = 36` they are within about 15%, and [`gemm`] needs no packed
//!   copy of `B`. (The cells still use [`tile`] there: it does not
//!   allocate.)
//! - **Transposed left-hand side** (weight gradients `dGᵀ·X` over all `B·T`
//!   rows): [`gemm`] with a [`MatRef::t`] view, [`tile::gemm_long_k`]
//!   (strided `A`, blocked over the long inner dimension), or
//!   [`tile::gemm_one_pass`] (one chain per element, so zero rows of
//!   padded steps change no bit; what the model's weight gradients use).
//!
//! On a machine without AVX-512, `matrixmultiply` falls back to an AVX2
//! kernel and the crossover moves to larger `m` (not measured here).
//!
//! [`bf16`] is the opt-in product with bf16 weights and `f32` accumulation
//! (AVX512_BF16 only, detected at run time) for inference; it rounds both
//! operands to 8 significant bits, so it is not used in training.

pub mod bf16;
pub mod tile;

/// An immutable strided matrix view over a slice.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

/// A mutable strided matrix view over a slice.
#[derive(Debug)]
pub struct MatMut<'a, T> {
    data: &'a mut [T],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

/// Largest offset a `rows × cols` view with strides `rs`, `cs` touches, plus one.
fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 { 0 } else { (rows - 1) * rs + (cols - 1) * cs + 1 }
}

impl<'a, T> MatRef<'a, T> {
    /// A view with explicit strides (in elements). Panics if the view reaches
    /// past the end of `data`.
    pub fn new(data: &'a [T], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        assert!(
            extent(rows, cols, rs, cs) <= data.len(),
            "MatRef {rows}x{cols} (strides {rs},{cs}) exceeds slice of {}",
            data.len()
        );
        Self { data, rows, cols, rs, cs }
    }
    /// A dense row-major `rows × cols` view of the first `rows·cols` elements.
    pub fn row_major(data: &'a [T], rows: usize, cols: usize) -> Self {
        Self::new(data, rows, cols, cols, 1)
    }
    /// The transposed view (no data is moved).
    pub fn t(self) -> Self {
        Self { data: self.data, rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs }
    }
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }
}

impl<'a, T> MatMut<'a, T> {
    /// A mutable view with explicit strides. Panics if the view reaches past
    /// the end of `data`, or if distinct indices could alias (a zero stride
    /// on a dimension longer than one).
    pub fn new(data: &'a mut [T], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        assert!(
            extent(rows, cols, rs, cs) <= data.len(),
            "MatMut {rows}x{cols} (strides {rs},{cs}) exceeds slice of {}",
            data.len()
        );
        assert!((rows <= 1 || rs > 0) && (cols <= 1 || cs > 0), "MatMut strides must not alias");
        Self { data, rows, cols, rs, cs }
    }
    /// A dense row-major `rows × cols` mutable view.
    pub fn row_major(data: &'a mut [T], rows: usize, cols: usize) -> Self {
        Self::new(data, rows, cols, cols, 1)
    }
    /// The transposed view.
    pub fn t(self) -> Self {
        Self { data: self.data, rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs }
    }
}

/// Element types [`gemm`] supports (`f32` → `sgemm`, `f64` → `dgemm`).
pub trait GemmScalar: Copy + Send + Sync + 'static {
    /// Calls the matching `matrixmultiply` routine.
    ///
    /// # Safety
    /// The pointers with their strides must describe valid, non-overlapping
    /// (for `c`) matrices of the given shapes.
    #[allow(clippy::too_many_arguments)]
    unsafe fn raw_gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );
}

impl GemmScalar for f32 {
    unsafe fn raw_gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: f32,
        a: *const f32,
        rsa: isize,
        csa: isize,
        b: *const f32,
        rsb: isize,
        csb: isize,
        beta: f32,
        c: *mut f32,
        rsc: isize,
        csc: isize,
    ) {
        // SAFETY: forwarded contract of `GemmScalar::raw_gemm`.
        unsafe { matrixmultiply::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc) }
    }
}

impl GemmScalar for f64 {
    unsafe fn raw_gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: f64,
        a: *const f64,
        rsa: isize,
        csa: isize,
        b: *const f64,
        rsb: isize,
        csb: isize,
        beta: f64,
        c: *mut f64,
        rsc: isize,
        csc: isize,
    ) {
        // SAFETY: forwarded contract of `GemmScalar::raw_gemm`.
        unsafe { matrixmultiply::dgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc) }
    }
}

/// `C = alpha·A·B + beta·C`. Transposes are views ([`MatRef::t`]).
/// When `beta` is zero, `C` is not read (NaNs in it are overwritten).
///
/// Panics on mismatched shapes.
pub fn gemm<T: GemmScalar>(alpha: T, a: MatRef<'_, T>, b: MatRef<'_, T>, beta: T, c: MatMut<'_, T>) {
    assert_eq!(a.cols, b.rows, "gemm: inner dimensions differ ({}x{} · {}x{})", a.rows, a.cols, b.rows, b.cols);
    assert_eq!(c.rows, a.rows, "gemm: C has {} rows, A has {}", c.rows, a.rows);
    assert_eq!(c.cols, b.cols, "gemm: C has {} cols, B has {}", c.cols, b.cols);
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the constructors checked that every index of each view lies in
    // its slice, `c` is uniquely borrowed and its strides do not alias, and
    // the shapes agree (asserted above). matrixmultiply handles k == 0 by
    // scaling C by beta.
    unsafe {
        T::raw_gemm(
            m,
            k,
            n,
            alpha,
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            beta,
            c.data.as_mut_ptr(),
            c.rs as isize,
            c.cs as isize,
        )
    }
}

/// Throughput of a large square `sgemm` (`n × n × n`, `matrixmultiply`,
/// on the calling thread) in GFLOP/s: the median of `runs` timed calls after
/// one warm-up. Benchmarks report their rates relative to this yardstick of
/// what one core delivers on a large compute-bound GEMM.
pub fn sgemm_yardstick_gflops(n: usize, runs: usize) -> f64 {
    let a: Vec<f32> = (0..n * n).map(|i| ((i % 251) as f32 - 125.0) / 125.0).collect();
    let b: Vec<f32> = (0..n * n).map(|i| ((i % 241) as f32 - 120.0) / 120.0).collect();
    let mut c = vec![0.0f32; n * n];
    let mut once = || {
        let t = std::time::Instant::now();
        gemm(1.0, MatRef::row_major(&a, n, n), MatRef::row_major(&b, n, n), 0.0, MatMut::row_major(&mut c, n, n));
        t.elapsed().as_secs_f64()
    };
    once();
    let mut times: Vec<f64> = (0..runs.max(1)).map(|_| once()).collect();
    times.sort_by(f64::total_cmp);
    2.0 * (n as f64).powi(3) / times[times.len() / 2] / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn transposed_views_and_beta_zero_ignores_nan() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.91).cos()).collect();
        let want = naive(&a, &b, m, k, n);
        // A stored transposed ([k, m]) and used through a view.
        let mut at = vec![0.0; k * m];
        for i in 0..m {
            for p in 0..k {
                at[p * m + i] = a[i * k + p];
            }
        }
        let mut c = vec![f64::NAN; m * n];
        gemm(1.0, MatRef::row_major(&at, k, m).t(), MatRef::row_major(&b, k, n), 0.0, MatMut::row_major(&mut c, m, n));
        for (x, y) in c.iter().zip(&want) {
            assert!((x - y).abs() < 1e-12);
        }
        // beta = 1 accumulates.
        gemm(1.0, MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n), 1.0, MatMut::row_major(&mut c, m, n));
        for (x, y) in c.iter().zip(&want) {
            assert!((x - 2.0 * y).abs() < 1e-12);
        }
    }

    #[test]
    #[should_panic(expected = "exceeds slice")]
    fn view_past_end_panics() {
        let v = [0.0f32; 5];
        let _ = MatRef::row_major(&v, 2, 3);
    }
}
