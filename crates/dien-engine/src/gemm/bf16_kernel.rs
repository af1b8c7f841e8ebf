//! The AVX512_BF16 kernels of [`super`] (x86-64 only): the conversion of
//! `f32` rows to bf16 and the register-tiled product. Every function here
//! is `#[target_feature]` and reached only through a `Bf16Cpu` token; the
//! scalar statement of both is in [`super`] (`to_bf16`, `gemm_bf16_ref`).

use std::arch::x86_64::{
    __m256bh, __m256i, __m512, __m512bh, __m512i, __mmask16, _mm256_storeu_si256, _mm512_add_ps, _mm512_cvtneps_pbh,
    _mm512_dpbf16_ps, _mm512_loadu_si512, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps, _mm512_set1_epi32,
    _mm512_setzero_ps,
};
use std::mem::transmute;

use super::COLS;
use crate::gemm::tile::Accumulate;

/// Most vectors (of 16 columns) per register tile: 4 rows × 5 vectors are
/// 20 accumulators, plus 5 vectors of `B` and one broadcast of `A`, inside
/// the 32 registers of AVX-512.
const NV_MAX: usize = 5;
/// Most rows per register tile.
const MR_MAX: usize = 4;

/// The mask enabling the low `w ≤ 16` lanes.
#[inline(always)]
fn lanes(w: usize) -> __mmask16 {
    if w >= COLS { 0xffff } else { (1u16 << w) - 1 }
}

/// Converts `m` rows of `k` values (row `i` at `a + i·lda`) to bf16, each
/// row written as `⌈k/16⌉` blocks of 16 values (8 words) at `out + i·ldo`,
/// values past `k` zero.
///
/// # Safety
/// The CPU has AVX512_BF16 and AVX-512F; `a + i·lda + p` is readable for
/// `i < m`, `p < k`, and `out + i·ldo + w` writable for `w < ⌈k/16⌉·8`.
#[target_feature(enable = "avx512bf16,avx512f")]
pub(super) unsafe fn convert(m: usize, k: usize, a: *const f32, lda: usize, out: *mut u32, ldo: usize) {
    for i in 0..m {
        let mut c = 0;
        while c < k {
            // SAFETY: the masked load reads only `a[i·lda + c .. + w]`, `w =
            // min(16, k − c)` values inside row `i` (function contract;
            // masked-off lanes never fault); the store writes the 8 words
            // `c/2 .. c/2 + 8` of row `i` of `out`, below `⌈k/16⌉·8`. A
            // `__m256bh` and a `__m256i` are the same 32 bytes.
            unsafe {
                let v = _mm512_maskz_loadu_ps(lanes(k - c), a.add(i * lda + c));
                let h: __m256bh = _mm512_cvtneps_pbh(v);
                _mm256_storeu_si256(out.add(i * ldo + c / 2).cast::<__m256i>(), transmute::<__m256bh, __m256i>(h));
            }
            c += COLS;
        }
    }
}

/// Geometry of one product: `A` as rows of bf16 pairs, `B` as packed pairs,
/// `C` as `f32` rows.
#[derive(Clone, Copy)]
struct Geom {
    /// Pairs of `k` (`⌈k/2⌉`).
    kp: usize,
    /// Columns of `C` to write.
    n: usize,
    a: *const u32,
    lda: usize,
    b: *const u32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    mode: Accumulate,
}

/// `C (+)= A·B` over `m` rows and `n` columns.
///
/// # Safety
/// The CPU has AVX512_BF16 and AVX-512F; `a + i·lda + q` is readable for
/// `i < m`, `q < kp`; `b + q·ldb + w` for `q < kp`, `w < ⌈n/16⌉·16`;
/// `c + i·ldc + j` is readable and writable for `i < m`, `j < n`.
#[target_feature(enable = "avx512bf16,avx512f")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn gemm(
    m: usize,
    kp: usize,
    n: usize,
    a: *const u32,
    lda: usize,
    b: *const u32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    mode: Accumulate,
) {
    let g = Geom { kp, n, a, lda, b, ldb, c, ldc, mode };
    let nvec = n.div_ceil(COLS);
    let mut v0 = 0;
    while v0 < nvec {
        let nv = (nvec - v0).min(NV_MAX);
        // SAFETY: vectors `v0 .. v0 + nv ≤ ⌈n/16⌉` and rows `< m`: inside
        // the function's contract.
        unsafe {
            match nv {
                5 => rows::<5>(g, m, v0),
                4 => rows::<4>(g, m, v0),
                3 => rows::<3>(g, m, v0),
                2 => rows::<2>(g, m, v0),
                _ => rows::<1>(g, m, v0),
            }
        }
        v0 += nv;
    }
}

/// Every row of the column block of vectors `v0 .. v0 + NV`.
///
/// # Safety
/// As [`gemm`], with `v0 + NV ≤ ⌈n/16⌉`.
#[target_feature(enable = "avx512bf16,avx512f")]
#[inline]
unsafe fn rows<const NV: usize>(g: Geom, m: usize, v0: usize) {
    let mut i = 0;
    // SAFETY (all four calls): rows `i .. i + MR ≤ m`, vectors inside the
    // block: the contract of `gemm`.
    while i + MR_MAX <= m {
        unsafe { tile::<MR_MAX, NV>(g, i, v0) };
        i += MR_MAX;
    }
    match m - i {
        3 => unsafe { tile::<3, NV>(g, i, v0) },
        2 => unsafe { tile::<2, NV>(g, i, v0) },
        1 => unsafe { tile::<1, NV>(g, i, v0) },
        _ => {}
    }
}

/// One register tile: rows `i0 .. i0 + MR`, vectors `v0 .. v0 + NV`;
/// `acc[i][v] = Σ_q dpbf16(A pair (i, q), B pairs (q, v))`, then stored
/// (or added) into `C` with the lanes past `n` masked off.
///
/// # Safety
/// As [`gemm`], with `i0 + MR ≤ m` and `v0 + NV ≤ ⌈n/16⌉`.
#[target_feature(enable = "avx512bf16,avx512f")]
#[inline]
unsafe fn tile<const MR: usize, const NV: usize>(g: Geom, i0: usize, v0: usize) {
    let mut acc: [[__m512; NV]; MR] = [[_mm512_setzero_ps(); NV]; MR];
    // SAFETY: a `__m512` and a `__m512bh` are the same 64 bytes.
    let mut bv: [__m512bh; NV] = [unsafe { transmute::<__m512, __m512bh>(_mm512_setzero_ps()) }; NV];
    for q in 0..g.kp {
        for (v, x) in bv.iter_mut().enumerate() {
            // SAFETY: row `q < kp` of `B`, words `(v0 + v)·16 .. + 16`
            // inside `⌈n/16⌉·16` (contract); a `__m512i` and a `__m512bh`
            // are the same 64 bytes, any bits valid.
            *x = unsafe {
                transmute::<__m512i, __m512bh>(_mm512_loadu_si512(g.b.add(q * g.ldb + (v0 + v) * COLS).cast()))
            };
        }
        for (i, row) in acc.iter_mut().enumerate() {
            // SAFETY: word `q < kp` of row `i0 + i < m` of `A` (contract);
            // the broadcast is reinterpreted as 32 bf16 values.
            let av = unsafe {
                transmute::<__m512i, __m512bh>(_mm512_set1_epi32(g.a.add((i0 + i) * g.lda + q).read() as i32))
            };
            for (s, &b) in row.iter_mut().zip(&bv) {
                *s = _mm512_dpbf16_ps(*s, av, b);
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        for (v, &s) in row.iter().enumerate() {
            let j = (v0 + v) * COLS;
            let mask = lanes(g.n - j);
            // SAFETY: the masked load and store touch only columns
            // `j .. min(j + 16, n)` of row `i0 + i < m` of `C` (contract);
            // masked-off lanes never fault.
            unsafe {
                let p = g.c.add((i0 + i) * g.ldc + j);
                let out = match g.mode {
                    Accumulate::No => s,
                    Accumulate::Yes => _mm512_add_ps(s, _mm512_maskz_loadu_ps(mask, p)),
                };
                _mm512_mask_storeu_ps(p, mask, out);
            }
        }
    }
}
