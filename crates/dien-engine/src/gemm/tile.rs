//! The register-tiled small-matrix product of this crate, with an epilogue
//! hook, and the weight packing it reads.
//!
//! [`gemm_ep`] computes `A[m, k] · B[k, n]` one `MR × (NV·8)` register tile
//! at a time and hands every finished 8-lane accumulator to an *epilogue*
//! ([`Epilogue`], or any closure `epi(row, vec, acc)`). The epilogue is where
//! callers fuse their element-wise work (bias, activations, a recurrent
//! cell's state update, gradient accumulation) into the product, so results
//! never make a round trip through memory. `A` is read by broadcasts
//! through arbitrary strides (so `Xᵀ` or a column block of a row-major
//! matrix cost nothing); `B` is read as whole 8-lane vectors from rows `ldb`
//! apart, either a [`Packed`] weight (rows zero-padded to a multiple of 8)
//! or a workspace matrix with at least 8 elements of slack at its end.
//!
//! Every accumulator is a chain of fused multiply-adds over `p = 0..k` in
//! order, starting from zero, whatever the tile shape; so each output
//! element is the same bits for any `MR`, `NV` and any row of the tile.
//!
//! Lanes of the last vector past `n` hold products with whatever `B` holds
//! there (zeros for packed weights); epilogues store only the first `n`
//! columns ([`crate::simd::store_n`]) or mask them
//! ([`crate::simd::lane_masks`]).
//!
//! The plain store/accumulate use (`C = A·B` or `C += A·B`) is
//! [`gemm_packed`], an epilogue ([`Store`]) over [`gemm_ep`];
//! [`gemm_packed_ref`] is its plain scalar statement.

use crate::simd::V;

use crate::simd::{LANES, load_n, pad_lanes, store_n};

/// A right-hand side `B [k, n]` stored row-major with rows padded to
/// `ld = pad_lanes(n)` (padding zero), the layout [`gemm_ep`] streams.
///
/// Refilling ([`Packed::fill`] and its weight forms) reuses the buffer, so
/// repacking weights after every parameter update allocates only when the
/// packed size grows.
///
/// The packed rows start on a 32-byte boundary (the buffer holds `LANES − 1`
/// values of slack and the rows begin at the first aligned one), so with
/// `ld` a multiple of 8 every vector [`gemm_ep`] reads lies inside one cache
/// line: an allocator's 16-byte alignment would split every other load in
/// two, and with one row of `A` (every load of `B` feeds a single
/// accumulator) the product is bound by those loads.
#[derive(Debug, Default)]
pub struct Packed {
    k: usize,
    n: usize,
    ld: usize,
    /// Index in `data` of the packed rows' first value (32-byte aligned).
    off: usize,
    data: Vec<f32>,
}

impl Clone for Packed {
    /// A copy whose rows are aligned in its own buffer.
    fn clone(&self) -> Self {
        let mut p = Self::new();
        p.reserve(self.k, self.n);
        p.rows_mut().copy_from_slice(self.data());
        p
    }
}

impl Packed {
    /// An empty pack (`k = n = 0`); fill it before use.
    pub fn new() -> Self {
        Self::default()
    }
    /// Packs `Wᵀ` of a row-major weight `W [n, k]`, so that the product
    /// computes `x · Wᵀ` (a dense layer `[out = n, in = k]`).
    pub fn from_weight_t(w: &[f32], n: usize, k: usize) -> Self {
        let mut p = Self::new();
        p.fill_t(w, n, k);
        p
    }
    /// Packs a row-major `W [k, n]` as is, so that the product computes
    /// `g · W` (the input gradient of a dense layer `[out = k, in = n]`).
    pub fn from_weight(w: &[f32], k: usize, n: usize) -> Self {
        let mut p = Self::new();
        p.fill_n(w, k, n);
        p
    }
    /// Refills with `B[p, j] = src[p * rs + j * cs]` for `p < k`, `j < n`.
    /// Allocates only when the packed size grows. Panics if a read leaves
    /// `src`.
    pub fn fill(&mut self, src: &[f32], k: usize, n: usize, rs: usize, cs: usize) {
        self.reserve(k, n);
        let ld = self.ld;
        let rows = self.rows_mut();
        for p in 0..k {
            let row = &mut rows[p * ld..(p + 1) * ld];
            if cs == 1 {
                row[..n].copy_from_slice(&src[p * rs..p * rs + n]);
            } else {
                for (j, x) in row[..n].iter_mut().enumerate() {
                    *x = src[p * rs + j * cs];
                }
            }
            row[n..].fill(0.0);
        }
    }
    /// Sets the shape to `[k, n]` and places the rows on a 32-byte
    /// boundary of the buffer, growing it (to `k·pad_lanes(n) + LANES − 1`
    /// values) only when it is too short; the contents are then unspecified.
    fn reserve(&mut self, k: usize, n: usize) {
        let ld = pad_lanes(n);
        if self.data.len() < k * ld + LANES - 1 {
            self.data.resize(k * ld + LANES - 1, 0.0);
        }
        (self.k, self.n, self.ld) = (k, n, ld);
        // Values to skip to the next 32-byte boundary (`f32` addresses are
        // multiples of 4, so this is below LANES).
        let addr = self.data.as_ptr().addr();
        self.off = (addr.wrapping_neg() % (LANES * 4)) / 4;
    }
    /// The packed rows, mutable.
    fn rows_mut(&mut self) -> &mut [f32] {
        &mut self.data[self.off..self.off + self.k * self.ld]
    }
    /// Packs `Wᵀ` of a row-major weight `W [n, k]` (`x · Wᵀ`): the values of
    /// `fill(w, k, n, 1, k)`, transposed by tiles ([`transpose_into`]):
    /// weights are repacked after every update, and the strided form reads
    /// one value per cache line.
    pub fn fill_t(&mut self, w: &[f32], n: usize, k: usize) {
        assert!(w.len() >= n * k, "Packed::fill_t: {} values for a [{n}, {k}] weight", w.len());
        self.reserve(k, n);
        let ld = self.ld;
        pack_t_block(w, n, k, self.rows_mut(), ld, ld);
    }
    /// Packs `Wᵀ` of a row-major weight `W [blocks·h, k]` made of `blocks`
    /// gate blocks of `h` rows, each block's columns starting at a multiple
    /// of `pad_lanes(h)`: `B [k, blocks·pad_lanes(h)]`, padding zero. An epilogue
    /// then reads every gate block with aligned whole vectors.
    pub fn fill_t_blocks(&mut self, w: &[f32], blocks: usize, h: usize, k: usize) {
        assert!(w.len() >= blocks * h * k, "Packed::fill_t_blocks: {} values for {blocks} × [{h}, {k}]", w.len());
        let hp = pad_lanes(h);
        self.reserve(k, blocks * hp);
        let ld = self.ld;
        let rows = self.rows_mut();
        for g in 0..blocks {
            pack_t_block(&w[g * h * k..], h, k, &mut rows[g * hp..], ld, hp);
        }
    }
    /// Packs a row-major `W [k, n]` as is (`g · W`).
    pub fn fill_n(&mut self, w: &[f32], k: usize, n: usize) {
        self.fill(w, k, n, n, 1);
    }
    /// The packed rows (`k · ld` values).
    pub fn data(&self) -> &[f32] {
        &self.data[self.off..self.off + self.k * self.ld]
    }
    /// Row stride (`pad_lanes(n)`).
    pub fn ld(&self) -> usize {
        self.ld
    }
    /// Number of 8-lane vectors per row.
    pub fn nvec(&self) -> usize {
        self.ld / LANES
    }
    /// Inner dimension `k` (rows of `B`).
    pub fn k(&self) -> usize {
        self.k
    }
    /// Output width `n` (columns of `B` before padding).
    pub fn n(&self) -> usize {
        self.n
    }
    /// Element `(p, j)` of the packed `B` (`j < ld`; padding reads 0).
    pub fn get(&self, p: usize, j: usize) -> f32 {
        assert!(p < self.k && j < self.ld, "Packed::get({p}, {j}) out of {}x{}", self.k, self.ld);
        self.data()[p * self.ld + j]
    }
}

/// `Wᵀ` of a row-major `W [h, k]` into the first `width ≥ h` columns of
/// the `k` rows of `dst` (`ld` apart), the columns past `h` zero.
fn pack_t_block(w: &[f32], h: usize, k: usize, dst: &mut [f32], ld: usize, width: usize) {
    transpose_into(w, h, k, k, dst, ld);
    for p in 0..k {
        dst[p * ld + h..p * ld + width].fill(0.0);
    }
}

/// `dst[c · ldd + r] = src[r · lds + c]` for `r < rows`, `c < cols`: whole
/// 8 × 8 tiles through registers (eight row loads, a register transpose,
/// eight row stores), the edges one value at a time. [`Packed::fill`] with
/// a column stride is the plain statement; the tests compare the two.
pub(crate) fn transpose_into(src: &[f32], rows: usize, cols: usize, lds: usize, dst: &mut [f32], ldd: usize) {
    use wide::f32x8;
    const T: usize = 8;
    let (r8, c8) = (rows / T * T, cols / T * T);
    for r0 in (0..r8).step_by(T) {
        for c0 in (0..c8).step_by(T) {
            let tile: [f32x8; T] = std::array::from_fn(|i| {
                let row: [f32; T] = src[(r0 + i) * lds + c0..][..T].try_into().expect("a whole tile row");
                f32x8::from(row)
            });
            for (j, v) in f32x8::transpose(tile).iter().enumerate() {
                dst[(c0 + j) * ldd + r0..][..T].copy_from_slice(v.as_array());
            }
        }
        for r in r0..r0 + T {
            for c in c8..cols {
                dst[c * ldd + r] = src[r * lds + c];
            }
        }
    }
    for r in r8..rows {
        for c in 0..cols {
            dst[c * ldd + r] = src[r * lds + c];
        }
    }
}

/// What a product does with each finished 8-lane accumulator.
///
/// Closures `FnMut(row, vec, acc)` implement it; large fused epilogues are
/// best written as structs whose `vec` is `#[inline(always)]`, so they are
/// inlined into every tile shape instead of becoming a call per vector (a
/// call would also spill the tile's other accumulators).
pub trait Epilogue {
    /// Handles the accumulator of row `row`, columns `8·v .. 8·v + 8`.
    fn vec(&mut self, row: usize, v: usize, acc: V);
}

impl<F: FnMut(usize, usize, V)> Epilogue for F {
    #[inline(always)]
    fn vec(&mut self, row: usize, v: usize, acc: V) {
        self(row, v, acc)
    }
}

/// One register tile: `acc[i][v] += Σ_p A(i, p) · B(p, v·8 .. v·8 + 8)`,
/// each accumulator a chain of fused multiply-adds over `p = 0..k` in
/// order that goes on from `acc` (zeros for a product; carried
/// accumulators for the next block of `p`, which gives the bits of one
/// unbroken chain).
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
    mut acc: [[V; NV]; MR],
) -> [[V; NV]; MR] {
    for p in 0..k {
        // SAFETY: in bounds by the function's contract; `[f32; LANES]` only
        // needs the 4-byte alignment every `f32` pointer has.
        let bv: [V; NV] =
            std::array::from_fn(|v| V::from(unsafe { b.add(p * ldb + v * LANES).cast::<[f32; LANES]>().read() }));
        for (i, row) in acc.iter_mut().enumerate() {
            // SAFETY: in bounds by the function's contract.
            let av = V::splat(unsafe { *a.add(i * rsa + p * csa) });
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
    // SAFETY: `gemm_ep` asserted (for k > 0, the only case that reaches
    // here) that rows `< m`, columns `< k` of A and rows `< k`, vectors
    // `< nvec` of B are inside their slices; the tile loops only pass
    // `i0 + MR ≤ m` and `v0 + NV ≤ nvec`.
    let acc = unsafe {
        let (a, b) = (g.a.as_ptr().add(i0 * g.rsa), g.b.as_ptr().add(v0 * LANES));
        micro::<MR, NV>(g.k, a, g.rsa, g.csa, b, g.ldb, [[V::ZERO; NV]; MR])
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
/// `b[p·ldb]` and is read as `nvec` whole vectors. Register tiles are `MR`
/// rows × `NV` vectors (`1 ≤ MR, NV ≤ 6`; the crate mostly uses 4 × 3: 12
/// accumulators, 3 vectors of `B` and a broadcast fill the 16 AVX
/// registers; [`gemm_ep_tall`] uses 6 × 3 where AVX-512 has 32). With
/// `k = 0` every accumulator is zero.
///
/// Never allocates. Panics if a read would leave `a` or `b`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn gemm_ep<const MR: usize, const NV: usize, E: Epilogue>(
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
    if k == 0 {
        for i in 0..m {
            for v in 0..nvec {
                epi.vec(i, v, V::ZERO);
            }
        }
        return;
    }
    assert!((m - 1) * rsa + (k - 1) * csa < a.len(), "gemm_ep: A too short");
    assert!((k - 1) * ldb + nvec * LANES <= b.len(), "gemm_ep: B too short");
    let g = Geom { k, a, rsa, csa, b, ldb };
    // Whole blocks of NV vectors, except that a tail of one vector after at
    // least one block becomes two blocks of two (13 = 3+3+3+2+2, 7 = 3+2+2):
    // a one-vector tile loads more than it multiplies. Every element is
    // the same chain of fused multiply-adds whatever tile computes it.
    let mut full = nvec / NV * NV;
    if NV > 2 && nvec % NV == 1 && full >= NV {
        full -= NV;
    }
    let mut v0 = 0;
    while v0 < full {
        col_block::<MR, NV, E>(g, m, v0, epi);
        v0 += NV;
    }
    // Vector tail: two vectors together (H = 36 pads to 5 vectors = 3 + 2),
    // otherwise one at a time, to bound the instantiated kernels.
    while nvec - v0 >= 2 && NV > 2 {
        col_block::<MR, 2, E>(g, m, v0, epi);
        v0 += 2;
    }
    while v0 < nvec {
        col_block::<MR, 1, E>(g, m, v0, epi);
        v0 += 1;
    }
}

/// [`gemm_ep`] in register tiles of [`TALL_MR`] rows × 3 vectors, the rows
/// past the last whole tile in one shorter tile. Each tile streams its rows
/// of `A` and all of `B`'s `k` rows of its columns, so taller tiles read `B`
/// fewer times: the form for products of many rows (weight gradients over
/// a batch, dense layers over blocks of rows). The bits are those of any
/// other tiling.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn gemm_ep_tall<E: Epilogue>(
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
    let full = m / TALL_MR * TALL_MR;
    gemm_ep::<TALL_MR, 3, _>(full, k, nvec, a, rsa, csa, b, ldb, epi);
    let rest = m - full;
    if rest == 0 {
        return;
    }
    let a = &a[full * rsa..];
    let mut epi = RowOffset { epi, row0: full };
    match rest {
        1 => gemm_ep::<1, 3, _>(rest, k, nvec, a, rsa, csa, b, ldb, &mut epi),
        2 => gemm_ep::<2, 3, _>(rest, k, nvec, a, rsa, csa, b, ldb, &mut epi),
        3 => gemm_ep::<3, 3, _>(rest, k, nvec, a, rsa, csa, b, ldb, &mut epi),
        4 => gemm_ep::<4, 3, _>(rest, k, nvec, a, rsa, csa, b, ldb, &mut epi),
        _ => gemm_ep::<5, 3, _>(rest, k, nvec, a, rsa, csa, b, ldb, &mut epi),
    }
}

/// Rows of the register tiles of [`gemm_ep_tall`]: 6 × 3 vectors (18
/// accumulators) where AVX-512 has 32 vector registers, 4 × 3 (12) within
/// AVX2's 16.
pub const TALL_MR: usize = if LANES == 16 { 6 } else { 4 };

/// An epilogue seen from a product over later rows: row `i` of the
/// product is row `row0 + i` of the epilogue.
struct RowOffset<'a, E> {
    epi: &'a mut E,
    row0: usize,
}

impl<E: Epilogue> Epilogue for RowOffset<'_, E> {
    #[inline(always)]
    fn vec(&mut self, row: usize, v: usize, acc: V) {
        self.epi.vec(self.row0 + row, v, acc);
    }
}

/// Whether [`gemm_packed`] overwrites or accumulates into `C`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accumulate {
    /// `C = A·B` (C is not read).
    No,
    /// `C += A·B` (the product is computed first, then added to `C`).
    Yes,
}

/// The store/accumulate epilogue: writes (or adds) each accumulator into a
/// row-major `C` with row stride `ldc`, only its first `n` columns.
#[derive(Debug)]
pub struct Store<'a> {
    /// The output; row `i` starts at `c[i·ldc]`.
    pub c: &'a mut [f32],
    /// Row stride of `c`.
    pub ldc: usize,
    /// Columns of `C` to write.
    pub n: usize,
    /// Overwrite or accumulate.
    pub acc: Accumulate,
}

impl Epilogue for Store<'_> {
    #[inline(always)]
    fn vec(&mut self, i: usize, v: usize, acc: V) {
        let off = i * self.ldc + v * LANES;
        let w = (self.n - v * LANES).min(LANES);
        let out = match self.acc {
            Accumulate::No => acc,
            Accumulate::Yes => acc + load_n(self.c, off, w),
        };
        store_n(self.c, off, w, out);
    }
}

/// Checks the shapes of a [`gemm_packed`] call (shared with the reference).
fn check_packed_args(m: usize, a: &[f32], lda: usize, b: &Packed, c: &[f32], ldc: usize) {
    let (k, n) = (b.k, b.n);
    if m == 0 {
        return;
    }
    assert!(lda >= k && (m - 1) * lda + k <= a.len(), "gemm_packed: A [{m}x{k}, lda {lda}] exceeds {}", a.len());
    assert!(ldc >= n && (m - 1) * ldc + n <= c.len(), "gemm_packed: C [{m}x{n}, ldc {ldc}] exceeds {}", c.len());
}

/// `C[m, n] (+)= A[m, k] · B` for a packed `B [k, n]`, with `A` row `i` at
/// `a[i·lda..]` and `C` row `i` at `c[i·ldc..]`: [`gemm_ep`] (4 × 3 tiles)
/// with the [`Store`] epilogue. Only the first `n` columns of each row of
/// `C` are written; with [`Accumulate::No`] `C` is not read. Never
/// allocates. Panics if `A` or `C` is too short, `lda < k` or `ldc < n`.
pub fn gemm_packed(m: usize, a: &[f32], lda: usize, b: &Packed, c: &mut [f32], ldc: usize, acc: Accumulate) {
    check_packed_args(m, a, lda, b, c, ldc);
    let n = b.n;
    if m == 0 || n == 0 {
        return;
    }
    let mut epi = Store { c, ldc, n, acc };
    gemm_ep::<4, 3, _>(m, b.k, b.nvec(), a, lda, 1, b.data(), b.ld, &mut epi);
}

/// Plain scalar statement of [`gemm_packed`] (same contract): each element
/// is a chain of fused multiply-adds over `p` in order from zero, then
/// added to `C` when accumulating. Used by tests and as the readable
/// statement of what the kernel computes.
pub fn gemm_packed_ref(m: usize, a: &[f32], lda: usize, b: &Packed, c: &mut [f32], ldc: usize, acc: Accumulate) {
    check_packed_args(m, a, lda, b, c, ldc);
    let (k, n) = (b.k, b.n);
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f32;
            for p in 0..k {
                s = a[i * lda + p].mul_add(b.get(p, j), s);
            }
            let dst = &mut c[i * ldc + j];
            *dst = match acc {
                Accumulate::No => s,
                Accumulate::Yes => s + *dst,
            };
        }
    }
}

#[path = "tile_long_k.rs"]
mod long_k;
pub use long_k::{CHAIN_KB, gemm_long_k, gemm_one_pass};

#[cfg(test)]
#[path = "tile_tests.rs"]
mod tests;
