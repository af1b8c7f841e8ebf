//! Small-matrix GEMM for the per-time-step products of the recurrent cells
//! (`m` ≤ a few dozen rows, `k`, `n` of the order of the hidden width).
//!
//! The right-hand side is packed once ([`PackedRhs`]) into `k` rows of
//! `n_pad = 8·⌈n/8⌉` values (padding zeroed), stored as 32-byte aligned
//! `f32x8` vectors, so the kernel streams it with whole aligned loads. When
//! the weights change (every training step), [`PackedRhs::repack`] refills the
//! same buffer. No call of [`small_gemm`] allocates.
//!
//! The kernel is register-blocked: a tile of [`MR`] rows × up to [`NV`]
//! vectors of 8 columns keeps its `MR·NV` accumulators in registers for the
//! whole `k` loop (12 accumulators + 3 `B` vectors + 1 broadcast = the 16
//! AVX registers). Row tails use the same kernel with fewer rows; column
//! tails use fewer vectors, and the last, partial vector of a row (`n` not a
//! multiple of 8) is computed in a register of which only the valid lanes
//! are stored. [`small_gemm_ref`] is the plain scalar reference.

use wide::f32x8;

/// Rows of `C` per register tile.
pub const MR: usize = 4;
/// Vectors of 8 columns of `C` per register tile.
pub const NV: usize = 3;

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
    /// `k` rows of `n_pad / 8` vectors, padding lanes zeroed.
    data: Vec<f32x8>,
}

/// Largest offset a `rows × cols` strided view touches, plus one.
fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 { 0 } else { (rows - 1) * rs + (cols - 1) * cs + 1 }
}

impl PackedRhs {
    /// Packs `B [k, n]` given as a strided view: element `(p, j)` is
    /// `b[p * rs + j * cs]`. Panics if the view reaches past the end of `b`.
    pub fn new(b: &[f32], k: usize, n: usize, rs: usize, cs: usize) -> Self {
        let n_pad = n.div_ceil(8) * 8;
        let mut out = Self { k, n, n_pad, data: vec![f32x8::ZERO; k * (n_pad / 8)] };
        out.repack(b, rs, cs);
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
    /// Refills this pack (same `k`, `n`) from a new strided view of `B`,
    /// without allocating: element `(p, j)` is `b[p * rs + j * cs]`.
    /// Panics if the view reaches past the end of `b`.
    pub fn repack(&mut self, b: &[f32], rs: usize, cs: usize) {
        let (k, n) = (self.k, self.n);
        assert!(
            extent(k, n, rs, cs) <= b.len(),
            "PackedRhs: {k}x{n} view (strides {rs},{cs}) exceeds slice of {}",
            b.len()
        );
        // Only the valid lanes are written: the padding lanes were zeroed by
        // `new` and stay zero.
        let nvec = self.n_pad / 8;
        if k == 0 || n == 0 {
            return;
        }
        if cs == 1 {
            // Rows of B are contiguous: copy them 8 at a time.
            for (p, row) in self.data.chunks_exact_mut(nvec).enumerate() {
                for (dst, src) in row.iter_mut().zip(b[p * rs..p * rs + n].chunks(8)) {
                    dst.as_mut_array()[..src.len()].copy_from_slice(src);
                }
            }
        } else if rs == 1 {
            // Columns of B are contiguous (`x·Wᵀ` with `W [n, k]` row-major):
            // gather 8 of them into each packed vector.
            for v in 0..nvec {
                let lanes = (n - 8 * v).min(8);
                let cols: [&[f32]; 8] = core::array::from_fn(|l| {
                    let j = 8 * v + l.min(lanes - 1);
                    &b[j * cs..j * cs + k]
                });
                for (p, row) in self.data.chunks_exact_mut(nvec).enumerate() {
                    for (x, col) in row[v].as_mut_array().iter_mut().zip(&cols).take(lanes) {
                        *x = col[p];
                    }
                }
            }
        } else {
            for p in 0..k {
                for j in 0..n {
                    self.data[p * nvec + j / 8].as_mut_array()[j % 8] = b[p * rs + j * cs];
                }
            }
        }
    }
    /// [`repack`](Self::repack) from a weight `W [n, k]` stored row-major
    /// (the layout of [`from_weight_t`](Self::from_weight_t)).
    pub fn repack_weight_t(&mut self, w: &[f32]) {
        self.repack(w, 1, self.k);
    }
    /// [`repack`](Self::repack) from a weight `W [k, n]` stored row-major
    /// (the layout of [`from_weight`](Self::from_weight)).
    pub fn repack_weight(&mut self, w: &[f32]) {
        self.repack(w, self.n, 1);
    }
    /// Inner dimension.
    pub fn k(&self) -> usize {
        self.k
    }
    /// Output width.
    pub fn n(&self) -> usize {
        self.n
    }
    /// Padded output width (`n` rounded up to a multiple of 8).
    pub fn n_pad(&self) -> usize {
        self.n_pad
    }
    /// Element `(p, j)` of the packed `B` (`j < n_pad`; padding reads 0).
    pub fn get(&self, p: usize, j: usize) -> f32 {
        assert!(p < self.k && j < self.n_pad, "PackedRhs::get({p}, {j}) out of {}x{}", self.k, self.n_pad);
        self.data[p * (self.n_pad / 8) + j / 8].as_array()[j % 8]
    }
}

/// Checks the shapes of a [`small_gemm`] call (shared with the reference).
fn check_args(m: usize, a: &[f32], lda: usize, b: &PackedRhs, c: &[f32], ldc: usize) {
    let (k, n) = (b.k, b.n);
    if m == 0 {
        return;
    }
    assert!(lda >= k && (m - 1) * lda + k <= a.len(), "small_gemm: A [{m}x{k}, lda {lda}] exceeds {}", a.len());
    assert!(ldc >= n && (m - 1) * ldc + n <= c.len(), "small_gemm: C [{m}x{n}, ldc {ldc}] exceeds {}", c.len());
}

/// `C[m, n] (+)= A[m, k] · B` with `A` row `i` at `a[i * lda..]` and `C` row
/// `i` at `c[i * ldc..]`. Only the first `n` columns of each row of `C` are
/// written; with [`Accumulate::No`] `C` is not read. Panics if `A` or `C` is
/// too short or `lda < k`, `ldc < n`.
pub fn small_gemm(m: usize, a: &[f32], lda: usize, b: &PackedRhs, c: &mut [f32], ldc: usize, acc: Accumulate) {
    check_args(m, a, lda, b, c, ldc);
    if m == 0 || b.n == 0 {
        return;
    }
    let nvec = b.n_pad / 8;
    debug_assert_eq!(b.data.len(), b.k * nvec);
    let (ap, bp, cp) = (a.as_ptr(), b.data.as_ptr(), c.as_mut_ptr());
    let t = Tile { k: b.k, lda, nvec, ldc, n: b.n, acc };
    // Column blocks of at most NV vectors, as even as possible (5 → 3+2,
    // 4 → 2+2), so no block is needlessly narrow.
    let nblocks = nvec.div_ceil(NV);
    let mut i = 0;
    // SAFETY (all calls below): `check_args` asserted that rows `i < m` of A
    // hold `k` readable values at `i·lda` and rows of C hold `n` writable
    // values at `i·ldc`; each tile reads rows `i..i+R ≤ m` of A, vectors
    // `v0..v0+V ≤ nvec` of each of the `k` packed rows of B (`data.len() ==
    // k·nvec`), and writes only columns `< n` of rows `i..i+R` of C.
    while i < m {
        let rows = (m - i).min(MR);
        let mut v0 = 0;
        for blk in 0..nblocks {
            let width = (nvec - v0).div_ceil(nblocks - blk);
            unsafe {
                let (a_i, c_i) = (ap.add(i * lda), cp.add(i * ldc));
                match rows {
                    1 => t.cols::<1>(a_i, bp, c_i, v0, width),
                    2 => t.cols::<2>(a_i, bp, c_i, v0, width),
                    3 => t.cols::<3>(a_i, bp, c_i, v0, width),
                    4 => t.cols::<4>(a_i, bp, c_i, v0, width),
                    _ => unreachable!("{rows} rows exceed MR = {MR}"),
                }
            }
            v0 += width;
        }
        i += rows;
    }
}

/// The loop-invariant parameters of one [`small_gemm`] call.
struct Tile {
    k: usize,
    lda: usize,
    /// Vectors per packed row of B.
    nvec: usize,
    ldc: usize,
    /// Valid columns of C.
    n: usize,
    acc: Accumulate,
}

impl Tile {
    /// Dispatches a tile of `R` rows and `width ≤ NV` vectors.
    ///
    /// # Safety
    /// As [`Tile::run`] with `V = width`.
    #[inline(always)]
    unsafe fn cols<const R: usize>(&self, a: *const f32, b: *const f32x8, c: *mut f32, v0: usize, width: usize) {
        // SAFETY: forwarded contract.
        unsafe {
            match width {
                1 => self.run::<R, 1>(a, b, c, v0),
                2 => self.run::<R, 2>(a, b, c, v0),
                3 => self.run::<R, 3>(a, b, c, v0),
                _ => unreachable!("{width} vectors exceed NV = {NV}"),
            }
        }
    }

    /// `C[0..R, 8·v0 .. 8·(v0+V)] (+)= A[0..R, :] · B[:, same columns]`,
    /// storing only columns `< n`.
    ///
    /// # Safety
    /// `a` must point at `R` rows (stride `lda`) of `k` readable values, `b`
    /// at `k·nvec` vectors with `v0 + V ≤ nvec`, and `c` at `R` rows (stride
    /// `ldc`) of `n` writable values not aliasing `a` or `b`.
    #[inline(always)]
    unsafe fn run<const R: usize, const V: usize>(&self, a: *const f32, b: *const f32x8, c: *mut f32, v0: usize) {
        let mut s = [[f32x8::ZERO; V]; R];
        // Wrapping: with `k == 0` the pack is empty and nothing is read.
        let mut bp = b.wrapping_add(v0);
        for p in 0..self.k {
            // SAFETY: `p < k` and `v0 + v < nvec`: inside the pack; rows
            // `r < R` of A hold `k` values.
            let bv: [f32x8; V] = core::array::from_fn(|v| unsafe { *bp.add(v) });
            for (r, sr) in s.iter_mut().enumerate() {
                let ar = f32x8::splat(unsafe { *a.add(r * self.lda + p) });
                for (sv, &bv) in sr.iter_mut().zip(&bv) {
                    *sv = ar.mul_add(bv, *sv);
                }
            }
            bp = bp.wrapping_add(self.nvec);
        }
        let col0 = v0 * 8;
        for (r, sr) in s.iter().enumerate() {
            // SAFETY: row `r < R` of C holds `n` writable values; column
            // `col0 + 8v + l` is written only when `< n`.
            let crow = unsafe { c.add(r * self.ldc) };
            for (v, &sv) in sr.iter().enumerate() {
                let j = col0 + 8 * v;
                let valid = self.n.saturating_sub(j).min(8);
                unsafe {
                    let cv = crow.add(j);
                    if valid == 8 {
                        let out = match self.acc {
                            Accumulate::No => sv,
                            Accumulate::Yes => sv + f32x8::new(cv.cast::<[f32; 8]>().read_unaligned()),
                        };
                        cv.cast::<[f32; 8]>().write_unaligned(out.to_array());
                    } else {
                        let lanes = sv.to_array();
                        for (l, &x) in lanes.iter().enumerate().take(valid) {
                            let dst = cv.add(l);
                            *dst = match self.acc {
                                Accumulate::No => x,
                                Accumulate::Yes => x + *dst,
                            };
                        }
                    }
                }
            }
        }
    }
}

/// Plain scalar reference of [`small_gemm`] (same contract), used by tests
/// and as the readable statement of what the kernel computes.
pub fn small_gemm_ref(m: usize, a: &[f32], lda: usize, b: &PackedRhs, c: &mut [f32], ldc: usize, acc: Accumulate) {
    check_args(m, a, lda, b, c, ldc);
    let (k, n) = (b.k, b.n);
    for i in 0..m {
        let arow = &a[i * lda..i * lda + k];
        let crow = &mut c[i * ldc..i * ldc + n];
        if acc == Accumulate::No {
            crow.fill(0.0);
        }
        for (p, &av) in arow.iter().enumerate() {
            for (j, cv) in crow.iter_mut().enumerate() {
                *cv = av.mul_add(b.get(p, j), *cv);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A NaN with a distinctive payload: a gap cell still holding exactly
    /// these bits was neither written nor replaced by an arithmetic NaN.
    const SENTINEL: f32 = f32::from_bits(0x7fc0_1234);

    fn rand_vec(rng: &mut ChaCha8Rng, len: usize) -> Vec<f32> {
        (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    /// `m × cols` values at stride `ld ≥ cols`, the gaps (and a tail) NaN.
    fn strided(rng: &mut ChaCha8Rng, m: usize, cols: usize, ld: usize) -> Vec<f32> {
        let mut v = vec![SENTINEL; m * ld + 3];
        for i in 0..m {
            for j in 0..cols {
                v[i * ld + j] = rng.random_range(-1.0f32..1.0);
            }
        }
        v
    }

    /// `A·B` in f64 and the error scale `Σ_p |a_ip||b_pj|` per element.
    fn reference(m: usize, k: usize, n: usize, a: &[f32], lda: usize, b: &[f32], ldb: usize) -> (Vec<f64>, Vec<f64>) {
        let (mut c, mut scale) = (vec![0.0; m * n], vec![0.0; m * n]);
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    let (x, y) = (a[i * lda + p] as f64, b[p * ldb + j] as f64);
                    c[i * n + j] += x * y;
                    scale[i * n + j] += (x * y).abs();
                }
            }
        }
        (c, scale)
    }

    /// Tolerance: the f32 error bound of a length-`k` dot product,
    /// `|ĉ − c| ≤ (k + 2)·ε·(Σ|a||b| + |c₀|)` with `ε = f32::EPSILON` (twice
    /// the unit round-off, so the bound holds with margin for any summation
    /// order, fused or not).
    fn tol(k: usize, scale: f64) -> f64 {
        (k as f64 + 2.0) * f32::EPSILON as f64 * scale + 1e-30
    }

    type Kernel = fn(usize, &[f32], usize, &PackedRhs, &mut [f32], usize, Accumulate);

    /// One random case: strided A and C with NaN gaps, strided B source.
    fn check_case(rng: &mut ChaCha8Rng, kernel: Kernel, m: usize, k: usize, n: usize, acc: Accumulate) {
        let lda = k + rng.random_range(0..3usize);
        let ldc = n + rng.random_range(0..4usize);
        let ldb = n + rng.random_range(0..3usize);
        let a = strided(rng, m, k, lda);
        let bsrc = strided(rng, k, n, ldb);
        let b = PackedRhs::new(&bsrc, k, n, ldb, 1);
        let mut c = vec![SENTINEL; m * ldc + 5];
        let c0 = match acc {
            Accumulate::No => None,
            Accumulate::Yes => {
                let c0 = rand_vec(rng, m * n);
                for i in 0..m {
                    c[i * ldc..i * ldc + n].copy_from_slice(&c0[i * n..(i + 1) * n]);
                }
                Some(c0)
            }
        };
        kernel(m, &a, lda, &b, &mut c, ldc, acc);
        let (want, scale) = reference(m, k, n, &a, lda, &bsrc, ldb);
        for i in 0..m {
            for j in 0..ldc {
                let got = c[i * ldc + j];
                if j >= n {
                    assert_eq!(got.to_bits(), SENTINEL.to_bits(), "gap C[{i},{j}] written (m{m} k{k} n{n} ldc{ldc})");
                    continue;
                }
                let base = c0.as_ref().map_or(0.0, |c0| c0[i * n + j] as f64);
                let (w, s) = (want[i * n + j] + base, scale[i * n + j] + base.abs());
                assert!(
                    (got as f64 - w).abs() <= tol(k, s),
                    "C[{i},{j}] = {got}, want {w} (m{m} k{k} n{n} lda{lda} ldc{ldc} {acc:?})"
                );
            }
        }
        for (idx, &x) in c[m * ldc..].iter().enumerate() {
            assert_eq!(x.to_bits(), SENTINEL.to_bits(), "C written past the last row (+{idx})");
        }
    }

    #[test]
    fn matches_f64_reference_on_random_shapes() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..400 {
            let m = rng.random_range(0..=37);
            let k = rng.random_range(1..=80);
            let n = rng.random_range(1..=120);
            let acc = if rng.random::<bool>() { Accumulate::Yes } else { Accumulate::No };
            check_case(&mut rng, small_gemm, m, k, n, acc);
        }
    }

    #[test]
    fn covers_every_row_and_column_tail() {
        // Every m mod MR, every n mod 8 and every count of vectors up to
        // 15 (all column-block splits), both modes.
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for m in 0..=9 {
            for n in 1..=120 {
                let k = 1 + (m * 7 + n) % 40;
                check_case(&mut rng, small_gemm, m, k, n, Accumulate::No);
                check_case(&mut rng, small_gemm, m, k, n, Accumulate::Yes);
            }
        }
    }

    #[test]
    fn model_shapes_match_reference() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for &(m, k, n) in &[(16, 36, 72), (32, 36, 72), (16, 36, 36), (32, 72, 36), (128, 36, 108), (1, 36, 108)] {
            for acc in [Accumulate::No, Accumulate::Yes] {
                check_case(&mut rng, small_gemm, m, k, n, acc);
            }
        }
    }

    #[test]
    fn scalar_reference_matches_f64_reference() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for _ in 0..60 {
            let (m, k, n) = (rng.random_range(0..=12), rng.random_range(1..=40), rng.random_range(1..=40));
            let acc = if rng.random::<bool>() { Accumulate::Yes } else { Accumulate::No };
            check_case(&mut rng, small_gemm_ref, m, k, n, acc);
        }
    }

    #[test]
    fn accumulate_no_ignores_nan_in_c_and_yes_accumulates() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let (m, k, n) = (7, 36, 37);
        let a = rand_vec(&mut rng, m * k);
        let w = rand_vec(&mut rng, n * k);
        let b = PackedRhs::from_weight_t(&w, n, k);
        let mut once = vec![f32::NAN; m * n];
        small_gemm(m, &a, k, &b, &mut once, n, Accumulate::No);
        assert!(once.iter().all(|x| x.is_finite()));
        let mut twice = once.clone();
        small_gemm(m, &a, k, &b, &mut twice, n, Accumulate::Yes);
        for (t, o) in twice.iter().zip(&once) {
            // x + x is exact in binary floating point.
            assert_eq!(*t, 2.0 * o);
        }
    }

    #[test]
    fn zero_k_writes_zeros_or_leaves_c() {
        let b = PackedRhs::new(&[], 0, 13, 13, 1);
        let a = [SENTINEL; 3];
        let mut c = vec![f32::NAN; 3 * 13];
        small_gemm(3, &a, 0, &b, &mut c, 13, Accumulate::No);
        assert!(c.iter().all(|&x| x == 0.0));
        c.fill(1.5);
        small_gemm(3, &a, 0, &b, &mut c, 13, Accumulate::Yes);
        assert!(c.iter().all(|&x| x == 1.5));
    }

    #[test]
    fn weight_layouts_pack_the_right_transpose() {
        let mut rng = ChaCha8Rng::seed_from_u64(13);
        let (out, inp) = (11, 6);
        let w = rand_vec(&mut rng, out * inp); // W [out, in]
        let t = PackedRhs::from_weight_t(&w, out, inp);
        assert_eq!((t.k(), t.n(), t.n_pad()), (inp, out, 16));
        let nt = PackedRhs::from_weight(&w, out, inp);
        assert_eq!((nt.k(), nt.n(), nt.n_pad()), (out, inp, 8));
        for o in 0..out {
            for i in 0..inp {
                assert_eq!(t.get(i, o), w[o * inp + i]);
                assert_eq!(nt.get(o, i), w[o * inp + i]);
            }
        }
        for p in 0..inp {
            for j in out..16 {
                assert_eq!(t.get(p, j), 0.0, "padding must be zero");
            }
        }
    }

    #[test]
    fn repack_equals_fresh_pack_without_reallocating() {
        let mut rng = ChaCha8Rng::seed_from_u64(17);
        let (n, k) = (37, 36);
        let w0 = rand_vec(&mut rng, n * k);
        let w1 = rand_vec(&mut rng, n * k);
        let mut p = PackedRhs::from_weight_t(&w0, n, k);
        let ptr = p.data.as_ptr();
        p.repack_weight_t(&w1);
        assert_eq!(p.data.as_ptr(), ptr, "repack must reuse the buffer");
        let fresh = PackedRhs::from_weight_t(&w1, n, k);
        let bits = |q: &PackedRhs| q.data.iter().flat_map(|v| v.to_array()).map(f32::to_bits).collect::<Vec<_>>();
        assert_eq!(bits(&p), bits(&fresh));
        let mut q = PackedRhs::from_weight(&w0, k, n);
        q.repack_weight(&w1);
        assert_eq!(bits(&q), bits(&PackedRhs::from_weight(&w1, k, n)));
        // A strided view with NaN gaps: the gaps must not be read.
        let ld = n + 2;
        let mut src = vec![SENTINEL; k * ld];
        for r in 0..k {
            src[r * ld..r * ld + n].copy_from_slice(&w1[r * n..(r + 1) * n]);
        }
        q.repack(&src, ld, 1);
        assert_eq!(bits(&q), bits(&PackedRhs::from_weight(&w1, k, n)));
    }

    #[test]
    fn packing_any_strides_matches_the_view() {
        // Row-contiguous, column-contiguous and general strides, with NaN in
        // every element outside the view.
        let mut rng = ChaCha8Rng::seed_from_u64(19);
        for _ in 0..60 {
            let (k, n) = (rng.random_range(1..=20), rng.random_range(1..=30));
            let (rs, cs) = match rng.random_range(0..3) {
                0 => (n + rng.random_range(0..3), 1),
                1 => (1, k + rng.random_range(0..3)),
                _ => (2 * n + 1, 2),
            };
            let mut b = vec![SENTINEL; (k - 1) * rs + (n - 1) * cs + 1];
            for p in 0..k {
                for j in 0..n {
                    b[p * rs + j * cs] = rng.random_range(-1.0f32..1.0);
                }
            }
            let packed = PackedRhs::new(&b, k, n, rs, cs);
            for p in 0..k {
                for j in 0..packed.n_pad() {
                    let want = if j < n { b[p * rs + j * cs] } else { 0.0 };
                    assert_eq!(packed.get(p, j).to_bits(), want.to_bits(), "({p},{j}) k{k} n{n} rs{rs} cs{cs}");
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "exceeds slice")]
    fn pack_view_past_end_panics() {
        let _ = PackedRhs::new(&[0.0; 10], 3, 4, 4, 1);
    }

    #[test]
    #[should_panic(expected = "small_gemm: C")]
    fn short_c_panics() {
        let b = PackedRhs::new(&[1.0; 4], 2, 2, 2, 1);
        let mut c = [0.0; 3];
        small_gemm(2, &[1.0; 4], 2, &b, &mut c, 2, Accumulate::No);
    }

    #[test]
    #[should_panic(expected = "small_gemm: A")]
    fn short_a_panics() {
        let b = PackedRhs::new(&[1.0; 4], 2, 2, 2, 1);
        let mut c = [0.0; 4];
        small_gemm(2, &[1.0; 3], 2, &b, &mut c, 2, Accumulate::No);
    }
}
