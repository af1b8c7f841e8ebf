//! Products over a long inner dimension `k` (weight gradients, `k` = the
//! rows of a chunk or a batch) on the register tiles of [`super`]: blocked
//! over `k` with the blocks' sums added ([`gemm_long_k`]), or with each
//! tile's chains carried from block to block ([`gemm_one_pass`]: the bits
//! of one unbroken chain per element).

use super::{Accumulate, Epilogue, Geom, Store, TALL_MR, gemm_ep_tall, micro};
use crate::simd::{LANES, V};

/// `C[m, n] (+)= A[m, k] · B[k, n]` for a long inner dimension (weight
/// gradients, `k` = all rows of a batch), blocked over `k` so each block of
/// `A` and `B` stays in L1 while the accumulators are in registers. `A` as
/// in [`gemm_ep`](super::gemm_ep); `B` row `p` starts at `b[p·ldb]` (whole vectors are read:
/// 8 elements of slack past the last row's `n`-th value); `C` row `i`
/// starts at `c[i·ldc]` and only its first `n` columns are written. With
/// [`Accumulate::No`] the first block overwrites `C` (all of it, zeros
/// when `k = 0`), so callers need not clear `C` first.
#[allow(clippy::too_many_arguments)]
pub fn gemm_long_k(
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
    acc: Accumulate,
) {
    const KB: usize = 64;
    // The first block (empty when `k = 0`) stores or adds as asked; the
    // others add to it.
    let (mut k0, mut acc) = (0, acc);
    loop {
        let kb = KB.min(k - k0);
        gemm_one_pass(m, kb, n, &a[k0 * csa..], rsa, csa, &b[k0 * ldb..], ldb, c, ldc, acc);
        (k0, acc) = (k0 + kb, Accumulate::Yes);
        if k0 >= k {
            break;
        }
    }
}

/// [`gemm_long_k`] without blocking over `k`: every element of `C` gets
/// one chain of fused multiply-adds over `p = 0 .. k` in order, from zero,
/// then added to `C` (or, with [`Accumulate::No`], stored: the same bits
/// as adding to a cleared `C`). So rows of `A`'s transpose that are zero
/// (padded steps) change no bit of the result wherever they are inserted:
/// for products whose rows include padding.
#[allow(clippy::too_many_arguments)]
///
/// A long `k` (more than [`CHAIN_KB`] rows twice) runs in blocks of
/// [`CHAIN_KB`] rows of `B` that every register tile reads from L1, the
/// tiles' accumulators carried from block to block on the stack (the
/// chains go on unbroken, so the bits are the same): one tile at a time
/// over all of `k` would stream `A` and `B` from L2 once per tile, which
/// bounds weight gradients over a chunk's rows well below the multipliers'
/// rate.
pub fn gemm_one_pass(
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
    acc: Accumulate,
) {
    let nvec = n.div_ceil(LANES);
    let mut epi = Store { c, ldc, n, acc };
    if k <= 2 * CHAIN_KB || m == 0 || nvec == 0 {
        return gemm_ep_tall(m, k, nvec, a, rsa, csa, b, ldb, &mut epi);
    }
    assert!((m - 1) * rsa + (k - 1) * csa < a.len(), "gemm_one_pass: A too short");
    assert!((k - 1) * ldb + nvec * LANES <= b.len(), "gemm_one_pass: B too short");
    let g = Geom { k, a, rsa, csa, b, ldb };
    let mut i0 = 0;
    while i0 < m {
        let mb = CHAIN_MB.min(m - i0);
        let mut v0 = 0;
        while v0 < nvec {
            let nv = (nvec - v0).min(3);
            match nv {
                3 => chained::<3>(g, i0, mb, v0, &mut epi),
                2 => chained::<2>(g, i0, mb, v0, &mut epi),
                _ => chained::<1>(g, i0, mb, v0, &mut epi),
            }
            v0 += nv;
        }
        i0 += mb;
    }
}

/// Rows of `B` per block of a long [`gemm_one_pass`]: a block of `B` (3
/// vectors a row) and of `A` (the 96 rows of `C` whose accumulators are
/// carried) stay in L1.
pub const CHAIN_KB: usize = 64;

/// Rows of `C` whose accumulators a long [`gemm_one_pass`] carries between
/// blocks (a multiple of [`TALL_MR`]; 18 KiB of stack at 16 lanes).
const CHAIN_MB: usize = 96;

/// Rows `i0 .. i0 + mb` (at most [`CHAIN_MB`]) and vectors `v0 .. v0 + NV`
/// of a long [`gemm_one_pass`], in blocks of [`CHAIN_KB`] rows of `B`.
#[inline(always)]
fn chained<const NV: usize>(g: Geom<'_>, i0: usize, mb: usize, v0: usize, epi: &mut Store<'_>) {
    let mut part = [[V::ZERO; NV]; CHAIN_MB];
    let mut p0 = 0;
    while p0 < g.k {
        let kb = CHAIN_KB.min(g.k - p0);
        // SAFETY: `gemm_one_pass` asserted that rows `< m`, columns `< k`
        // of A and rows `< k`, vectors `< nvec` of B lie inside their
        // slices; here `i0 + mb ≤ m`, `p0 + kb ≤ k`, `v0 + NV ≤ nvec`.
        let (a, b) = unsafe { (g.a.as_ptr().add(i0 * g.rsa + p0 * g.csa), g.b.as_ptr().add(p0 * g.ldb + v0 * LANES)) };
        let mut i = 0;
        while i + TALL_MR <= mb {
            let init: [[V; NV]; TALL_MR] = std::array::from_fn(|r| part[i + r]);
            // SAFETY: as above, rows `i .. i + TALL_MR ≤ mb`.
            let acc = unsafe { micro::<TALL_MR, NV>(kb, a.add(i * g.rsa), g.rsa, g.csa, b, g.ldb, init) };
            part[i..i + TALL_MR].copy_from_slice(&acc);
            i += TALL_MR;
        }
        while i < mb {
            // SAFETY: as above, row `i < mb`.
            let acc = unsafe { micro::<1, NV>(kb, a.add(i * g.rsa), g.rsa, g.csa, b, g.ldb, [part[i]]) };
            part[i] = acc[0];
            i += 1;
        }
        p0 += kb;
    }
    for (i, row) in part[..mb].iter().enumerate() {
        for (v, &x) in row.iter().enumerate() {
            epi.vec(i0 + i, v0 + v, x);
        }
    }
}
