//! Products with bf16 weights and `f32` accumulation (AVX512_BF16's
//! `vdpbf16ps`), an opt-in for inference.
//!
//! # Numbers
//!
//! A bf16 value is the upper half of an `f32`: sign, the same 8-bit
//! exponent, 7 stored mantissa bits. [`to_bf16`] rounds an `f32` to the
//! nearest bf16, ties to even (a relative error of at most 2⁻⁸ ≈ 0.4 %),
//! exactly as the hardware conversion `vcvtneps2bf16` does: zeros and
//! subnormal inputs give a zero of the same sign, a NaN stays a (quiet)
//! NaN, and values that round past the largest finite bf16 give infinity.
//!
//! # The product
//!
//! `C[m, n] (+)= A[m, k] · B[k, n]` with both `A` and `B` rounded to bf16
//! and every product accumulated in `f32`. `vdpbf16ps` multiplies pairs
//! of bf16 values: each 32-bit lane of its two sources holds two of them,
//! and lane `j` of the accumulator gains `a₁·b₁` and then `a₀·b₀` (the
//! product of two bf16 values is exact in `f32`, so each addition rounds
//! once). Hence the layouts:
//!
//! - [`PackedBf16`] holds `B` with *pairs of k interleaved*: 32-bit element
//!   `(q, j)` holds `B[2q, j]` in its low half and `B[2q + 1, j]` in its
//!   high half, for `q < ⌈k/2⌉`; rows of pairs are padded to a multiple of
//!   16 columns with zeros, and for odd `k` the high half of the last pair
//!   is zero.
//! - [`Bf16Rows`] holds `A` converted to bf16, each row a plain bf16 array
//!   (so its 32-bit words are the pairs `A[i, 2q], A[i, 2q + 1]`), zero
//!   padded to a multiple of 16 values.
//!
//! The kernel broadcasts one pair of `A` to all 16 lanes and multiplies it
//! with 16 pairs of `B` (16 output columns, 32 multiply-adds per
//! instruction), in register tiles of up to 4 rows × 5 vectors.
//!
//! The instructions exist only on CPUs with AVX512_BF16 (Intel Cooper
//! Lake, Sapphire Rapids and later; AMD Zen 4 and later). The kernel is
//! compiled into every build with `#[target_feature]` and runs only behind
//! a [`Bf16Cpu`], a token that [`Bf16Cpu::detect`] hands out when the
//! running CPU has the feature; on other CPUs, and on other architectures,
//! there is no token and nothing here runs but the scalar reference.
//!
//! [`gemm_bf16_ref`] is the plain scalar statement of the product: the
//! same rounding of both operands and the same pairwise `f32` accumulation
//! order, with subnormal results flushed to zero as the instruction does.
//! The tests compare the two on shapes with row, column and odd-`k` tails.

use super::tile::Accumulate;

/// Output columns per vector of the kernel (one 512-bit register of `f32`).
pub const COLS: usize = 16;

/// Rounds `x` to the nearest bf16 (ties to even), returned as its 16 bits.
/// Zeros and subnormals give a zero of the same sign, NaN a quiet NaN,
/// values beyond the largest finite bf16 after rounding an infinity: the
/// results of the hardware conversion (`vcvtneps2bf16`).
#[inline]
pub fn to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x0040) as u16;
    }
    if b & 0x7f80_0000 == 0 {
        // Zero or subnormal: the sign alone.
        return ((b >> 16) & 0x8000) as u16;
    }
    let round = 0x7fff + ((b >> 16) & 1);
    ((b + round) >> 16) as u16
}

/// The `f32` value of the bf16 bits `h` (exact).
#[inline]
pub fn from_bf16(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// `x` rounded to bf16 and back ([`to_bf16`] then [`from_bf16`]).
#[inline]
pub fn round_bf16(x: f32) -> f32 {
    from_bf16(to_bf16(x))
}

/// The two bf16 values `lo`, `hi` in one 32-bit pair (`lo` in the low half).
#[inline]
fn pair(lo: f32, hi: f32) -> u32 {
    to_bf16(lo) as u32 | (to_bf16(hi) as u32) << 16
}

/// Elements of a `u32` buffer to skip to its next 64-byte boundary.
fn align64(v: &[u32]) -> usize {
    (v.as_ptr().addr().wrapping_neg() % 64) / 4
}

/// A right-hand side `B [k, n]` in bf16, pairs of `k` interleaved (see the
/// [module documentation](self)); rows of pairs are `ld` = `n` rounded up
/// to 16 words apart and start on a 64-byte boundary (one cache line per
/// vector load).
///
/// Refilling reuses the buffer: it allocates only when the packed size
/// grows.
#[derive(Debug, Default)]
pub struct PackedBf16 {
    k: usize,
    n: usize,
    ld: usize,
    off: usize,
    data: Vec<u32>,
}

impl Clone for PackedBf16 {
    /// A copy whose rows are aligned in its own buffer.
    fn clone(&self) -> Self {
        let mut p = Self::new();
        p.reserve(self.k, self.n);
        p.rows_mut().copy_from_slice(self.data());
        p
    }
}

impl PackedBf16 {
    /// An empty pack (`k = n = 0`).
    pub fn new() -> Self {
        Self::default()
    }
    /// Packs `Wᵀ` of a row-major weight `W [n, k]` (a dense layer
    /// `[out = n, in = k]`), so that the product computes `x · Wᵀ`.
    pub fn from_weight_t(w: &[f32], n: usize, k: usize) -> Self {
        let mut p = Self::new();
        p.fill(w, k, n, 1, k);
        p
    }
    /// Refills with `B[p, j] = src[p·rs + j·cs]` (`p < k`, `j < n`), rounded
    /// to bf16. Panics if a read leaves `src`.
    pub fn fill(&mut self, src: &[f32], k: usize, n: usize, rs: usize, cs: usize) {
        self.reserve(k, n);
        let ld = self.ld;
        let rows = self.rows_mut();
        for q in 0..k.div_ceil(2) {
            for (j, x) in rows[q * ld..(q + 1) * ld].iter_mut().enumerate() {
                *x = if j >= n {
                    0
                } else {
                    let lo = src[2 * q * rs + j * cs];
                    let hi = if 2 * q + 1 < k { src[(2 * q + 1) * rs + j * cs] } else { 0.0 };
                    pair(lo, hi)
                };
            }
        }
    }
    /// Sets the shape and aligns the rows, growing the buffer only when it
    /// is too short; the contents are then unspecified.
    fn reserve(&mut self, k: usize, n: usize) {
        let ld = n.div_ceil(COLS) * COLS;
        let len = k.div_ceil(2) * ld + COLS - 1;
        if self.data.len() < len {
            self.data.resize(len, 0);
        }
        (self.k, self.n, self.ld) = (k, n, ld);
        self.off = align64(&self.data);
    }
    fn rows_mut(&mut self) -> &mut [u32] {
        let len = self.k.div_ceil(2) * self.ld;
        &mut self.data[self.off..self.off + len]
    }
    /// The packed rows of pairs (`⌈k/2⌉ · ld` words).
    pub fn data(&self) -> &[u32] {
        &self.data[self.off..self.off + self.k.div_ceil(2) * self.ld]
    }
    /// Inner dimension `k`.
    pub fn k(&self) -> usize {
        self.k
    }
    /// Output width `n`.
    pub fn n(&self) -> usize {
        self.n
    }
    /// Words per row of pairs (`n` rounded up to a multiple of 16).
    pub fn ld(&self) -> usize {
        self.ld
    }
    /// `B[p, j]` as stored (rounded to bf16; zero in the padding, `p < k`
    /// or the zero partner of an odd `k`, `j < ld`).
    pub fn get(&self, p: usize, j: usize) -> f32 {
        assert!(p < self.k.div_ceil(2) * 2 && j < self.ld, "PackedBf16::get({p}, {j}) out of {}x{}", self.k, self.ld);
        let w = self.data()[p / 2 * self.ld + j];
        from_bf16(if p.is_multiple_of(2) { w as u16 } else { (w >> 16) as u16 })
    }
}

/// A left-hand side `A [m, k]` converted to bf16 ([`Bf16Cpu::convert`]):
/// row `i` at word `i·ld`, each row a bf16 array zero-padded to a multiple
/// of 16 values (`ld` = that / 2 words). A workspace: it grows to the
/// largest size seen and is reused.
#[derive(Clone, Debug, Default)]
pub struct Bf16Rows {
    m: usize,
    k: usize,
    ld: usize,
    data: Vec<u32>,
}

impl Bf16Rows {
    /// An empty workspace.
    pub fn new() -> Self {
        Self::default()
    }
    /// Rows held.
    pub fn rows(&self) -> usize {
        self.m
    }
    /// Values per row before padding.
    pub fn k(&self) -> usize {
        self.k
    }
    /// Element `(i, p)` as converted (`p` may reach into the zero padding).
    pub fn get(&self, i: usize, p: usize) -> f32 {
        assert!(i < self.m && p < 2 * self.ld, "Bf16Rows::get({i}, {p}) out of {}x{}", self.m, 2 * self.ld);
        let w = self.data[i * self.ld + p / 2];
        from_bf16(if p.is_multiple_of(2) { w as u16 } else { (w >> 16) as u16 })
    }
    /// Sets the shape `[m, k]`, growing the buffer when too short.
    fn reserve(&mut self, m: usize, k: usize) {
        let ld = k.div_ceil(COLS) * COLS / 2;
        if self.data.len() < m * ld {
            self.data.resize(m * ld, 0);
        }
        (self.m, self.k, self.ld) = (m, k, ld);
    }
}

/// Checks the shapes of a product call (shared by kernel and reference).
fn check_args(m: usize, k: usize, b: &PackedBf16, c: &[f32], ldc: usize) {
    assert_eq!(k, b.k, "gemm_bf16: A has {k} columns, B has {} rows", b.k);
    if m > 0 {
        let n = b.n;
        assert!(ldc >= n && (m - 1) * ldc + n <= c.len(), "gemm_bf16: C [{m}x{n}, ldc {ldc}] exceeds {}", c.len());
    }
}

/// Checks an `f32` left-hand side `A [m, k]` with row stride `lda`.
fn check_a(m: usize, k: usize, a: &[f32], lda: usize) {
    if m > 0 {
        assert!(lda >= k && (m - 1) * lda + k <= a.len(), "gemm_bf16: A [{m}x{k}, lda {lda}] exceeds {}", a.len());
    }
}

/// Plain scalar statement of the bf16 product ([`Bf16Cpu::gemm_f32`]):
/// `C[m, n] (+)= A · B` with `A(i, p) = a[i·lda + p]` rounded to bf16
/// ([`round_bf16`]) and `B` as packed. Each element starts from zero and,
/// for every pair `q`, adds `A(i, 2q+1)·B(2q+1, j)` then `A(i, 2q)·B(2q, j)`
/// in `f32` (each product is exact, so each addition is one rounding: a
/// fused multiply-add), flushing subnormal sums to zero; then it is stored
/// or added to `C`. Only the first `n` columns of each row of `C` are
/// written. Panics on inconsistent shapes.
pub fn gemm_bf16_ref(m: usize, a: &[f32], lda: usize, b: &PackedBf16, c: &mut [f32], ldc: usize, acc: Accumulate) {
    let k = b.k;
    check_a(m, k, a, lda);
    check_args(m, k, b, c, ldc);
    let ftz = |x: f32| if x.abs() < f32::MIN_POSITIVE { 0.0f32.copysign(x) } else { x };
    for i in 0..m {
        let av = |p: usize| if p < k { round_bf16(a[i * lda + p]) } else { 0.0 };
        for j in 0..b.n {
            let mut s = 0.0f32;
            for q in 0..k.div_ceil(2) {
                s = ftz(av(2 * q + 1).mul_add(b.get(2 * q + 1, j), s));
                s = ftz(av(2 * q).mul_add(b.get(2 * q, j), s));
            }
            let dst = &mut c[i * ldc + j];
            *dst = match acc {
                Accumulate::No => s,
                Accumulate::Yes => s + *dst,
            };
        }
    }
}

/// Proof that the running CPU has AVX512_BF16 (and AVX-512F): the only way
/// to reach the kernels. Obtained from [`Bf16Cpu::detect`]; `Copy`, free
/// to pass around.
#[derive(Clone, Copy, Debug)]
pub struct Bf16Cpu(());

impl Bf16Cpu {
    /// The token when this CPU has AVX512_BF16 and AVX-512F (checked at run
    /// time, whatever the build's target), else `None`.
    pub fn detect() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512bf16") && std::arch::is_x86_feature_detected!("avx512f") {
            return Some(Self(()));
        }
        None
    }

    /// Converts `A [m, k]` (row `i` at `a[i·lda..]`) to bf16 into `out`
    /// (rounding as [`to_bf16`]). Allocates only when `out` grows. Panics
    /// if `A` is too short or `lda < k`.
    pub fn convert(self, m: usize, a: &[f32], lda: usize, k: usize, out: &mut Bf16Rows) {
        check_a(m, k, a, lda);
        out.reserve(m, k);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token exists only when the CPU has AVX512_BF16 and
        // AVX-512F (`detect`); `A` holds rows `< m` of `k` values at stride
        // `lda` (checked above) and `out` holds `m` rows of `ld` words
        // (`reserve`), `ld ≥ ⌈k/16⌉·8`.
        unsafe {
            kernel::convert(m, k, a.as_ptr(), lda, out.data.as_mut_ptr(), out.ld)
        }
    }

    /// `C[m, n] (+)= A · B` for `A` already converted ([`Bf16Cpu::convert`],
    /// its first `m` rows) and packed `B [k, n]`; `C` row `i` at `c[i·ldc..]`,
    /// only its first `n` columns written, not read with
    /// [`Accumulate::No`]. Never allocates. Panics if `A` has fewer rows or
    /// other `k`, or `C` is too short.
    pub fn gemm(self, m: usize, a: &Bf16Rows, b: &PackedBf16, c: &mut [f32], ldc: usize, acc: Accumulate) {
        assert!(m <= a.m, "gemm_bf16: {m} rows asked, A holds {}", a.m);
        check_args(m, a.k, b, c, ldc);
        if m == 0 || b.n == 0 {
            return;
        }
        if b.k == 0 {
            for i in 0..m {
                for x in &mut c[i * ldc..i * ldc + b.n] {
                    *x = if acc == Accumulate::No { 0.0 } else { *x };
                }
            }
            return;
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token proves the CPU features (`detect`). `A` holds
        // `m` rows of `ld ≥ ⌈k/2⌉` words, `B` `⌈k/2⌉` rows of `ld` words
        // (whole vectors: `ld` is a multiple of 16), and `C` rows `< m` of
        // `n` values at stride `ldc` (checked above); the kernel writes
        // only those columns (masked stores) and reads `C` only there.
        unsafe {
            kernel::gemm(
                m,
                b.k.div_ceil(2),
                b.n,
                a.data.as_ptr(),
                a.ld,
                b.data().as_ptr(),
                b.ld,
                c.as_mut_ptr(),
                ldc,
                acc,
            )
        }
    }

    /// [`Bf16Cpu::convert`] then [`Bf16Cpu::gemm`]: the product of an `f32`
    /// `A [m, k]` (row `i` at `a[i·lda..]`), the workspace `ws` holding its
    /// conversion. [`gemm_bf16_ref`] is its scalar statement.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm_f32(
        self,
        m: usize,
        a: &[f32],
        lda: usize,
        b: &PackedBf16,
        c: &mut [f32],
        ldc: usize,
        acc: Accumulate,
        ws: &mut Bf16Rows,
    ) {
        self.convert(m, a, lda, b.k, ws);
        self.gemm(m, ws, b, c, ldc, acc);
    }
}

#[cfg(target_arch = "x86_64")]
#[path = "bf16_kernel.rs"]
mod kernel;

#[cfg(test)]
#[path = "bf16_tests.rs"]
mod tests;
