//! The register-tiled product kernel of the fast cells, the weight packing it
//! reads, and the 8-lane load/store helpers used by the fused passes.
//!
//! [`gemm_ep`] computes `A[m, k] · B[k, n]` one `MR × (NV·8)` register tile
//! at a time and hands every finished 8-lane accumulator to an *epilogue*
//! closure `epi(row, vec, acc)`. The epilogue is where the cells fuse their
//! element-wise work (bias, gate activations, state update, gradient
//! accumulation) into the product, so gate pre-activations never make a
//! round trip through memory. `A` is read by broadcasts through arbitrary
//! strides (so `Xᵀ` or a column block of a row-major matrix cost nothing);
//! `B` is read as whole 8-lane vectors from rows `ldb` apart, either a
//! [`Packed`] weight (rows zero-padded to a multiple of 8) or a workspace
//! matrix with at least 8 elements of slack at its end.
//!
//! Lanes of the last vector past `n` hold products with whatever `B` holds
//! there (zeros for packed weights); epilogues store only the first `n`
//! columns ([`store_n`]) or mask them ([`lane_masks`]).

use wide::f32x8;

/// Column padding: rows of packed weights and padded workspace rows are
/// multiples of this many lanes.
pub(crate) const LANES: usize = 8;

/// `n` rounded up to a multiple of [`LANES`].
#[inline]
pub(crate) fn pad8(n: usize) -> usize {
    n.div_ceil(LANES) * LANES
}

/// Loads `s[off..off + 8]`.
#[inline(always)]
pub(crate) fn load(s: &[f32], off: usize) -> f32x8 {
    f32x8::from(<[f32; 8]>::try_from(&s[off..off + 8]).expect("8 lanes"))
}

/// `TAIL_MASK[8 − n..16 − n]` enables the low `n` lanes.
#[cfg(all(target_arch = "x86_64", target_feature = "avx"))]
static TAIL_MASK: [i32; 16] = [-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0];

/// Loads `n ≤ 8` values from `s[off..]` into the low lanes, zeroing the rest.
#[inline(always)]
pub(crate) fn load_n(s: &[f32], off: usize, n: usize) -> f32x8 {
    if n >= LANES {
        return load(s, off);
    }
    assert!(off + n <= s.len(), "load_n: out of bounds");
    #[cfg(all(target_arch = "x86_64", target_feature = "avx"))]
    {
        use std::arch::x86_64::{__m256i, _mm256_loadu_si256, _mm256_maskload_ps};
        // SAFETY: AVX is enabled at compile time (cfg); `TAIL_MASK[8 − n..]`
        // has 8 elements since n < 8; the masked load reads only the `n`
        // enabled lanes, `s[off..off + n]`, checked above. A `__m256` and a
        // `[f32; 8]` are the same 32 bytes, any bit pattern valid.
        unsafe {
            let m = _mm256_loadu_si256(TAIL_MASK.as_ptr().add(LANES - n).cast::<__m256i>());
            let v = _mm256_maskload_ps(s.as_ptr().add(off), m);
            f32x8::from(std::mem::transmute::<std::arch::x86_64::__m256, [f32; 8]>(v))
        }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "avx")))]
    {
        let mut t = [0.0f32; 8];
        t[..n].copy_from_slice(&s[off..off + n]);
        f32x8::from(t)
    }
}

/// Stores all 8 lanes of `v` at `s[off..]`.
#[inline(always)]
pub(crate) fn store(s: &mut [f32], off: usize, v: f32x8) {
    s[off..off + 8].copy_from_slice(&v.to_array());
}

/// Stores the low `n ≤ 8` lanes of `v` at `s[off..]` (a masked store: the
/// values past `off + n` are left untouched).
#[inline(always)]
pub(crate) fn store_n(s: &mut [f32], off: usize, n: usize, v: f32x8) {
    if n >= LANES {
        return store(s, off, v);
    }
    assert!(off + n <= s.len(), "store_n: out of bounds");
    #[cfg(all(target_arch = "x86_64", target_feature = "avx"))]
    {
        use std::arch::x86_64::{__m256, __m256i, _mm256_loadu_si256, _mm256_maskstore_ps};
        // SAFETY: AVX is enabled at compile time (cfg); the mask slice has 8
        // elements since n < 8; the masked store writes only the `n` enabled
        // lanes, `s[off..off + n]`, checked above and uniquely borrowed.
        unsafe {
            let m = _mm256_loadu_si256(TAIL_MASK.as_ptr().add(LANES - n).cast::<__m256i>());
            _mm256_maskstore_ps(s.as_mut_ptr().add(off), m, std::mem::transmute::<[f32; 8], __m256>(v.to_array()));
        }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "avx")))]
    s[off..off + n].copy_from_slice(&v.to_array()[..n]);
}

/// Asks the cache to fetch `s[off..off + len]` (clamped to `s`): a hint for
/// rows of the caller's `[B, T, ·]` arrays, which the time loops visit one
/// step of each sample at a time, too scattered for the hardware
/// prefetchers.
#[inline(always)]
pub(crate) fn prefetch(s: &[f32], off: usize, len: usize) {
    let end = (off + len).min(s.len());
    if off >= end {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let mut o = off;
        while o < end {
            // SAFETY: a prefetch never faults and has no visible effect; the
            // address is inside `s` (o < end ≤ s.len()).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(s.as_ptr().add(o).cast::<i8>()) };
            o += 16;
        }
        // SAFETY: as above; `end − 1` is inside `s`.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(s.as_ptr().add(end - 1).cast::<i8>()) };
    }
}

/// Lane masks for a width-`n` row split in 8-lane vectors: vector `v` keeps
/// the lanes of columns `< n` (all bits set) and zeroes the others.
pub(crate) fn lane_masks(n: usize) -> Vec<f32x8> {
    (0..n.div_ceil(LANES))
        .map(|v| {
            let mut m = [0.0f32; 8];
            for (l, x) in m.iter_mut().enumerate() {
                if v * LANES + l < n {
                    *x = f32::from_bits(u32::MAX);
                }
            }
            f32x8::from(m)
        })
        .collect()
}

/// A right-hand side `B [k, n]` stored row-major with rows padded to
/// `ld = pad8(n)` (padding zero), the layout [`gemm_ep`] streams.
#[derive(Clone, Debug, Default)]
pub(crate) struct Packed {
    k: usize,
    n: usize,
    ld: usize,
    data: Vec<f32>,
}

impl Packed {
    /// Refills with `B[p, j] = src[p * rs + j * cs]` for `p < k`, `j < n`.
    /// Allocates only when the packed size grows.
    pub(crate) fn fill(&mut self, src: &[f32], k: usize, n: usize, rs: usize, cs: usize) {
        let ld = pad8(n);
        if self.data.len() < k * ld {
            self.data.resize(k * ld, 0.0);
        }
        (self.k, self.n, self.ld) = (k, n, ld);
        for p in 0..k {
            let row = &mut self.data[p * ld..(p + 1) * ld];
            for (j, x) in row.iter_mut().enumerate() {
                *x = if j < n { src[p * rs + j * cs] } else { 0.0 };
            }
        }
    }
    /// Packs `Wᵀ` of a row-major weight `W [n, k]` (`x · Wᵀ`).
    pub(crate) fn fill_t(&mut self, w: &[f32], n: usize, k: usize) {
        self.fill(w, k, n, 1, k);
    }
    /// Packs a row-major `W [k, n]` as is (`g · W`).
    pub(crate) fn fill_n(&mut self, w: &[f32], k: usize, n: usize) {
        self.fill(w, k, n, n, 1);
    }
    /// The packed rows (`k · ld` values).
    pub(crate) fn data(&self) -> &[f32] {
        &self.data[..self.k * self.ld]
    }
    /// Row stride.
    pub(crate) fn ld(&self) -> usize {
        self.ld
    }
    /// Number of 8-lane vectors per row.
    pub(crate) fn nvec(&self) -> usize {
        self.ld / LANES
    }
}

/// What a product does with each finished 8-lane accumulator.
///
/// Closures implement it; the large fused epilogues of the cells are
/// structs whose `vec` is `#[inline(always)]`, so they are inlined into
/// every tile shape instead of becoming a call per vector (a call would
/// also spill the tile's other accumulators).
pub(crate) trait Epilogue {
    /// Handles the accumulator of row `row`, columns `8·v .. 8·v + 8`.
    fn vec(&mut self, row: usize, v: usize, acc: f32x8);
}

impl<F: FnMut(usize, usize, f32x8)> Epilogue for F {
    #[inline(always)]
    fn vec(&mut self, row: usize, v: usize, acc: f32x8) {
        self(row, v, acc)
    }
}

/// One register tile: `acc[i][v] = Σ_p A(i, p) · B(p, v·8 .. v·8 + 8)`.
///
/// # Safety
/// For all `i < MR`, `p < k`: `a + i·rsa + p·csa` lies inside the `A`
/// allocation, and `b + p·ldb + NV·8 − 1` inside the `B` allocation.
#[inline(always)]
unsafe fn micro<const MR: usize, const NV: usize>(
    k: usize,
    a: *const f32,
    rsa: usize,
    csa: usize,
    b: *const f32,
    ldb: usize,
) -> [[f32x8; NV]; MR] {
    let mut acc = [[f32x8::ZERO; NV]; MR];
    for p in 0..k {
        // SAFETY: in bounds by the function's contract; `[f32; 8]` only
        // needs the 4-byte alignment every `f32` pointer has.
        let bv: [f32x8; NV] =
            std::array::from_fn(|v| f32x8::from(unsafe { b.add(p * ldb + v * LANES).cast::<[f32; 8]>().read() }));
        for (i, row) in acc.iter_mut().enumerate() {
            // SAFETY: in bounds by the function's contract.
            let av = f32x8::splat(unsafe { *a.add(i * rsa + p * csa) });
            for (c, &bb) in row.iter_mut().zip(&bv) {
                *c = av.mul_add(bb, *c);
            }
        }
    }
    acc
}

/// Geometry of one product, shared by the tile loops.
#[derive(Clone, Copy)]
struct Geom<'a> {
    k: usize,
    a: &'a [f32],
    rsa: usize,
    csa: usize,
    b: &'a [f32],
    ldb: usize,
}

#[inline(always)]
fn tile<const MR: usize, const NV: usize, E: Epilogue>(g: Geom<'_>, i0: usize, v0: usize, epi: &mut E) {
    // SAFETY: `gemm_ep` asserted that rows `< m`, columns `< k` of A and
    // rows `< k`, vectors `< nvec` of B are inside their slices; the tile
    // loops only pass `i0 + MR ≤ m` and `v0 + NV ≤ nvec`.
    let acc = unsafe {
        micro::<MR, NV>(g.k, g.a.as_ptr().add(i0 * g.rsa), g.rsa, g.csa, g.b.as_ptr().add(v0 * LANES), g.ldb)
    };
    for (i, row) in acc.iter().enumerate() {
        for (v, &x) in row.iter().enumerate() {
            epi.vec(i0 + i, v0 + v, x);
        }
    }
}

#[inline(always)]
fn col_block<const MR: usize, const NV: usize, E: Epilogue>(g: Geom<'_>, m: usize, v0: usize, epi: &mut E) {
    let mut i = 0;
    while i + MR <= m {
        tile::<MR, NV, E>(g, i, v0, epi);
        i += MR;
    }
    // Row tail one row at a time: a tile per tail width would multiply the
    // kernels instantiated per call site (and the compile time) by MR.
    while i < m {
        tile::<1, NV, E>(g, i, v0, epi);
        i += 1;
    }
}

/// `A[m, k] · B[k, nvec·8]`, each 8-lane result handed to `epi(row, vec,
/// acc)` exactly once. `A(i, p) = a[i·rsa + p·csa]`; row `p` of `B` starts at
/// `b[p·ldb]` and is read as `nvec` whole vectors. `MR ≤ 6`, `NV ≤ 6`.
///
/// Panics if a read would leave `a` or `b`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_ep<const MR: usize, const NV: usize, E: Epilogue>(
    m: usize,
    k: usize,
    nvec: usize,
    a: &[f32],
    rsa: usize,
    csa: usize,
    b: &[f32],
    ldb: usize,
    epi: &mut E,
) {
    const { assert!(MR >= 1 && MR <= 6 && NV >= 1 && NV <= 6) };
    if m == 0 || nvec == 0 {
        return;
    }
    if k > 0 {
        assert!((m - 1) * rsa + (k - 1) * csa < a.len(), "gemm_ep: A too short");
        assert!((k - 1) * ldb + nvec * LANES <= b.len(), "gemm_ep: B too short");
    }
    let g = Geom { k, a, rsa, csa, b, ldb };
    let mut v0 = 0;
    while v0 + NV <= nvec {
        col_block::<MR, NV, E>(g, m, v0, epi);
        v0 += NV;
    }
    // Vector tail: two vectors together (H = 36 pads to 5 vectors = 3 + 2),
    // otherwise one at a time, to bound the instantiated kernels.
    if nvec - v0 == 2 && NV > 2 {
        col_block::<MR, 2, E>(g, m, v0, epi);
        v0 += 2;
    }
    while v0 < nvec {
        col_block::<MR, 1, E>(g, m, v0, epi);
        v0 += 1;
    }
}

/// `C[m, n] += A[m, k] · B[k, n]` for a long inner dimension (the weight
/// gradients, `k` = all time steps of a chunk), blocked over `k` so each
/// block of `A` and `B` stays in L1 while the accumulators are in registers.
/// `C` row `i` starts at `c[i·ldc]`; only its first `n` columns are written.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_acc_long_k(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    rsa: usize,
    csa: usize,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
) {
    const KB: usize = 64;
    let nvec = n.div_ceil(LANES);
    let mut k0 = 0;
    while k0 < k {
        let kb = KB.min(k - k0);
        let mut epi = |i: usize, v: usize, acc: f32x8| {
            let off = i * ldc + v * LANES;
            let w = (n - v * LANES).min(LANES);
            let cur = load_n(c, off, w);
            store_n(c, off, w, cur + acc);
        };
        gemm_ep::<4, 3, _>(m, kb, nvec, &a[k0 * csa..], rsa, csa, &b[k0 * ldb..], ldb, &mut epi);
        k0 += kb;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Plain scalar `A · B` in f64 for the same strided views.
    #[allow(clippy::too_many_arguments)]
    fn naive(m: usize, k: usize, n: usize, a: &[f32], rsa: usize, csa: usize, b: &[f32], ldb: usize) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * rsa + p * csa] as f64 * b[p * ldb + j] as f64).sum();
            }
        }
        c
    }

    fn rand_vec(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    #[test]
    fn gemm_ep_matches_naive_on_odd_shapes_and_visits_each_vector_once() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for &(m, k, n) in &[(1, 1, 1), (3, 5, 7), (5, 36, 36), (7, 36, 108), (13, 72, 36), (32, 36, 72), (9, 0, 9)] {
            // A transposed through strides (rsa = 1), B packed from a
            // row-major weight.
            let at = rand_vec(&mut rng, k * m + 1);
            let w = rand_vec(&mut rng, k * n);
            let mut bp = Packed::default();
            bp.fill_n(&w, k, n);
            let want = naive(m, k, n, &at, 1, m, &w, n);
            let mut got = vec![f32::NAN; m * n];
            let mut seen = vec![0u32; m * bp.nvec()];
            let mut epi = |i: usize, v: usize, acc: f32x8| {
                seen[i * bp.nvec() + v] += 1;
                let w = (n - v * 8).min(8);
                store_n(&mut got, i * n + v * 8, w, acc);
            };
            match (m + n) % 3 {
                0 => gemm_ep::<4, 3, _>(m, k, bp.nvec(), &at, 1, m, bp.data(), bp.ld(), &mut epi),
                1 => gemm_ep::<2, 5, _>(m, k, bp.nvec(), &at, 1, m, bp.data(), bp.ld(), &mut epi),
                _ => gemm_ep::<6, 2, _>(m, k, bp.nvec(), &at, 1, m, bp.data(), bp.ld(), &mut epi),
            }
            assert!(seen.iter().all(|&s| s == 1), "{m}x{k}x{n}: every vector exactly once");
            for (g, w) in got.iter().zip(&want) {
                assert!((*g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()), "{m}x{k}x{n}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn long_k_accumulates_and_leaves_columns_past_n_untouched() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let (m, k, n) = (36, 200, 108);
        // A = Xᵀ of X [k, m]; B = a workspace-like matrix [k, n] with slack.
        let x = rand_vec(&mut rng, k * m);
        let mut b = rand_vec(&mut rng, k * n);
        b.extend([0.0; 8]);
        let ldc = n + 3;
        let mut c = vec![0.5f32; m * ldc];
        gemm_acc_long_k(m, k, n, &x, 1, m, &b, n, &mut c, ldc);
        let want = naive(m, k, n, &x, 1, m, &b, n);
        for i in 0..m {
            for j in 0..ldc {
                let got = c[i * ldc + j] as f64;
                if j < n {
                    let w = 0.5 + want[i * n + j];
                    assert!((got - w).abs() <= 1e-4 * (1.0 + w.abs()), "({i},{j}) {got} vs {w}");
                } else {
                    assert_eq!(got, 0.5, "column {j} past n was written");
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "B too short")]
    fn gemm_ep_rejects_short_b() {
        let a = [1.0f32; 4];
        let b = [1.0f32; 12];
        gemm_ep::<4, 3, _>(2, 2, 1, &a, 2, 1, &b, 6, &mut |_, _, _| {});
    }

    #[test]
    fn partial_loads_and_stores_touch_exactly_n_lanes() {
        let s: Vec<f32> = (0..20).map(|i| i as f32 + 1.0).collect();
        for n in 0..=8 {
            for off in [0, 3, 20 - n] {
                let v = load_n(&s, off, n).to_array();
                for (l, &x) in v.iter().enumerate() {
                    assert_eq!(x, if l < n { s[off + l] } else { 0.0 }, "load_n(off {off}, n {n}) lane {l}");
                }
                let mut d = vec![-7.0f32; 20];
                store_n(&mut d, off, n, f32x8::splat(5.0));
                for (j, &x) in d.iter().enumerate() {
                    assert_eq!(x, if (off..off + n).contains(&j) { 5.0 } else { -7.0 }, "store_n(off {off}, n {n})");
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn partial_store_past_the_end_panics() {
        store_n(&mut [0.0f32; 6], 3, 4, f32x8::ZERO);
    }

    #[test]
    fn partial_load_store_and_masks() {
        let s: Vec<f32> = (0..12).map(|i| i as f32).collect();
        assert_eq!(load_n(&s, 9, 3).to_array(), [9.0, 10.0, 11.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        let mut d = vec![-1.0f32; 12];
        store_n(&mut d, 2, 5, load(&s, 0));
        assert_eq!(&d[..8], &[-1.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0, -1.0]);
        let m = lane_masks(11);
        assert_eq!(m.len(), 2);
        let ones = f32x8::splat(3.0);
        assert_eq!((ones & m[0]).to_array(), [3.0; 8]);
        assert_eq!((ones & m[1]).to_array(), [3.0, 3.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    }
}
