//! Dense layers over blocks of rows, on the engine's small-matrix kernel.
//!
//! Weights are packed once per parameter update ([`Dense::set`]): `Wᵀ` for
//! the forward product and `W` for the input gradient, so neither product
//! transposes anything on the fly and no call allocates.

use dien_engine::gemm::tile::{Accumulate, Epilogue, Packed, gemm_ep_tall, gemm_one_pass, gemm_packed};
use dien_engine::simd::{LANES, V, load_n};
use rayon::prelude::*;

use super::add_into;

/// Rows per task of the row-parallel products ([`Dense::par_forward`],
/// [`Dense::par_backward_input`]).
const PAR_ROWS: usize = 32;

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

    /// `x[m, inp]·Wᵀ`, each finished vector of the product handed to `epi`
    /// (row, vector of `out`, value): for callers that fuse bias and
    /// activation into the product instead of passing over `y` again.
    pub fn forward_ep(&self, m: usize, x: &[f32], ldx: usize, epi: &mut impl Epilogue) {
        gemm_ep_tall(m, self.inp, self.fwd.nvec(), x, ldx, 1, self.fwd.data(), self.fwd.ld(), epi);
    }

    /// `dy[m, out]·W`, each finished vector (row, vector of `inp`, value)
    /// handed to `epi`, as [`Dense::forward_ep`].
    pub fn backward_input_ep(&self, m: usize, dy: &[f32], lddy: usize, epi: &mut impl Epilogue) {
        gemm_ep_tall(m, self.out, self.bwd.nvec(), dy, lddy, 1, self.bwd.data(), self.bwd.ld(), epi);
    }

    /// `dx[m, inp] (+)= dy[m, out]·W`.
    pub fn backward_input(&self, m: usize, dy: &[f32], lddy: usize, dx: &mut [f32], lddx: usize, acc: Accumulate) {
        gemm_packed(m, dy, lddy, &self.bwd, dx, lddx, acc);
    }

    /// [`Dense::forward`] on all threads, blocks of rows per task. Every row
    /// is computed as it would be alone, so the bits do not depend on the
    /// split. `y` holds at least `m` whole rows of `ldy`.
    pub fn par_forward(&self, m: usize, x: &[f32], ldx: usize, bias: &[f32], y: &mut [f32], ldy: usize) {
        y[..m * ldy].par_chunks_mut(PAR_ROWS * ldy).enumerate().for_each(|(k, yk)| {
            self.forward(yk.len() / ldy, &x[k * PAR_ROWS * ldx..], ldx, bias, yk, ldy);
        });
    }

    /// [`Dense::backward_input`] on all threads, as [`Dense::par_forward`].
    pub fn par_backward_input(&self, m: usize, dy: &[f32], lddy: usize, dx: &mut [f32], lddx: usize, acc: Accumulate) {
        dx[..m * lddx].par_chunks_mut(PAR_ROWS * lddx).enumerate().for_each(|(k, dk)| {
            self.backward_input(dk.len() / lddx, &dy[k * PAR_ROWS * lddy..], lddy, dk, lddx, acc);
        });
    }
}

/// [`weight_grad`] on all threads, the outputs cut into one block per
/// thread (whole vectors). Every element is one chain over the rows
/// whichever block computes it, so the bits are those of [`weight_grad`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn par_weight_grad(
    m: usize,
    dy: &[f32],
    lddy: usize,
    out: usize,
    x: &[f32],
    ldx: usize,
    inp: usize,
    dw: &mut [f32],
    db: &mut [f32],
    acc: Accumulate,
) {
    if m == 0 || out == 0 {
        return weight_grad(m, dy, lddy, out, x, ldx, inp, dw, db, acc);
    }
    let block = out.div_ceil(rayon::current_num_threads()).div_ceil(LANES) * LANES;
    let run = |k: usize, dwk: &mut [f32], dbk: &mut [f32]| {
        weight_grad(m, &dy[k * block..], lddy, dwk.len() / inp, x, ldx, inp, dwk, dbk, acc);
    };
    let dw = dw[..out * inp].par_chunks_mut(block * inp).enumerate();
    if db.is_empty() {
        dw.for_each(|(k, dwk)| run(k, dwk, &mut []));
    } else {
        dw.zip(db[..out].par_chunks_mut(block)).for_each(|((k, dwk), dbk)| run(k, dwk, dbk));
    }
}

/// `dw[out, inp] += dy[m, out]ᵀ · x[m, inp]` and `db[out] += Σ_rows dy`
/// (`db` may be empty), or with [`Accumulate::No`] `=` (zeros when
/// `m = 0`): the same bits as adding to cleared gradients, so callers that
/// start a sum need not clear them. Rows whose `dy` is zero contribute
/// nothing, which is how padded rows are excluded: every element is one
/// chain of fused multiply-adds over the rows in order (then added to
/// `dw`), so where zero rows sit changes no bit.
///
/// The columns that fill whole vectors go through the engine's kernel (it
/// reads rows of `x` as whole vectors); the last `inp mod LANES` columns,
/// vectorised over `out` instead. Nothing is packed or allocated.
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
    acc: Accumulate,
) {
    if m == 0 {
        if acc == Accumulate::No {
            dw[..out * inp].fill(0.0);
            db.fill(0.0);
        }
        return;
    }
    assert!(
        dy.len() >= (m - 1) * lddy + out && x.len() >= (m - 1) * ldx + inp && dw.len() >= out * inp,
        "weight_grad: shapes"
    );
    let full = inp / LANES * LANES;
    if full > 0 {
        gemm_one_pass(out, m, full, dy, 1, lddy, x, ldx, dw, inp, acc);
    }
    if full < inp {
        tail_columns(m, dy, lddy, out, x, ldx, full, inp, dw, acc);
    }
    if !db.is_empty() {
        let (db, first) = (&mut db[..out], &dy[..out]);
        match acc {
            Accumulate::No => db.copy_from_slice(first),
            Accumulate::Yes => add_into(db, first),
        }
        for r in 1..m {
            add_into(db, &dy[r * lddy..r * lddy + out]);
        }
    }
}

/// Columns `j0..inp` (fewer than a vector) of [`weight_grad`], vectorised
/// over `out`: tiles of up to 4 columns × 2 vectors of outputs keep eight
/// independent chains in flight (one chain would wait on each fused
/// multiply-add's latency). Each element is still one chain over the rows.
#[allow(clippy::too_many_arguments)]
fn tail_columns(
    m: usize,
    dy: &[f32],
    lddy: usize,
    out: usize,
    x: &[f32],
    ldx: usize,
    j0: usize,
    inp: usize,
    dw: &mut [f32],
    how: Accumulate,
) {
    const NC: usize = 4;
    for jc in (j0..inp).step_by(NC) {
        let nc = (inp - jc).min(NC);
        for i0 in (0..out).step_by(2 * LANES) {
            let w0 = (out - i0).min(LANES);
            let w1 = (out - i0).saturating_sub(LANES).min(LANES);
            let mut acc = [[V::ZERO; 2]; NC];
            for p in 0..m {
                let d0 = load_n(dy, p * lddy + i0, w0);
                let d1 = if w1 > 0 { load_n(dy, p * lddy + i0 + LANES, w1) } else { V::ZERO };
                for (c, a) in acc.iter_mut().enumerate().take(nc) {
                    let xs = V::splat(x[p * ldx + jc + c]);
                    a[0] = xs.mul_add(d0, a[0]);
                    a[1] = xs.mul_add(d1, a[1]);
                }
            }
            for (c, a) in acc.iter().enumerate().take(nc) {
                let lanes = a[0].to_array().into_iter().take(w0).chain(a[1].to_array().into_iter().take(w1));
                for (l, v) in lanes.enumerate() {
                    let d = &mut dw[(i0 + l) * inp + jc + c];
                    *d = if how == Accumulate::Yes { *d + v } else { v };
                }
            }
        }
    }
}

/// Stable `softplus(x) = max(x, 0) + log1p(exp(−|x|))`.
#[inline]
pub(crate) fn softplus(x: f32) -> f32 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

#[cfg(test)]
mod tests {
    use super::{Accumulate, Dense, par_weight_grad, weight_grad};

    fn val(i: usize, s: usize) -> f32 {
        ((i * 2654435761 + s) % 1000) as f32 / 500.0 - 1.0
    }

    /// The parallel forms give the serial forms' bits on 1, 2 and 3
    /// threads, for row counts below, at and above a block, no rows, and
    /// output widths that do not split evenly.
    #[test]
    fn parallel_products_give_the_serial_bits() {
        for (m, out, inp) in [(0, 40, 9), (1, 3, 5), (31, 80, 200), (70, 200, 162), (129, 17, 19)] {
            let x: Vec<f32> = (0..m * inp).map(|i| val(i, 1)).collect();
            let dy: Vec<f32> = (0..m * out).map(|i| val(i, 2)).collect();
            let w: Vec<f32> = (0..out * inp).map(|i| val(i, 3)).collect();
            let bias: Vec<f32> = (0..out).map(|i| val(i, 4)).collect();
            let mut layer = Dense::new(out, inp);
            layer.set(&w);
            let (mut y, mut dx) = (vec![0.0; m * out], vec![0.25; m * inp]);
            layer.forward(m, &x, inp, &bias, &mut y, out);
            layer.backward_input(m, &dy, out, &mut dx, inp, Accumulate::Yes);
            let yes = Accumulate::Yes;
            let (mut dw, mut db) = (w.clone(), bias.clone());
            weight_grad(m, &dy, out, out, &x, inp, inp, &mut dw, &mut db, yes);
            let mut dw_nb = w.clone();
            weight_grad(m, &dy, out, out, &x, inp, inp, &mut dw_nb, &mut [], yes);
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                pool.install(|| {
                    let (mut py, mut pdx) = (vec![0.0; m * out], vec![0.25; m * inp]);
                    layer.par_forward(m, &x, inp, &bias, &mut py, out);
                    layer.par_backward_input(m, &dy, out, &mut pdx, inp, Accumulate::Yes);
                    let (mut pdw, mut pdb, mut pdw_nb) = (w.clone(), bias.clone(), w.clone());
                    par_weight_grad(m, &dy, out, out, &x, inp, inp, &mut pdw, &mut pdb, yes);
                    par_weight_grad(m, &dy, out, out, &x, inp, inp, &mut pdw_nb, &mut [], yes);
                    // Overwriting: the bits of adding to cleared gradients.
                    let (mut zdw, mut zdb) = (vec![0.0; out * inp], vec![0.0; out]);
                    weight_grad(m, &dy, out, out, &x, inp, inp, &mut zdw, &mut zdb, yes);
                    let (mut odw, mut odb) = (vec![f32::NAN; out * inp], vec![f32::NAN; out]);
                    par_weight_grad(m, &dy, out, out, &x, inp, inp, &mut odw, &mut odb, Accumulate::No);
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    let case = format!("m {m} out {out} inp {inp} threads {threads}");
                    assert_eq!(bits(&py), bits(&y), "forward, {case}");
                    assert_eq!(bits(&pdx), bits(&dx), "input gradient, {case}");
                    assert_eq!(bits(&pdw), bits(&dw), "weight gradient, {case}");
                    assert_eq!(bits(&pdb), bits(&db), "bias gradient, {case}");
                    assert_eq!(bits(&pdw_nb), bits(&dw_nb), "weight gradient without bias, {case}");
                    assert_eq!(bits(&odw), bits(&zdw), "overwritten weight gradient, {case}");
                    assert_eq!(bits(&odb), bits(&zdb), "overwritten bias gradient, {case}");
                });
            }
        }
    }

    /// Against the plain sum over rows, for widths below, at and above a
    /// vector (so both the kernel's columns and the tail columns), row
    /// strides with and without padding, one row and many, and `x` ending
    /// right after its last row.
    #[test]
    fn weight_grad_matches_the_plain_sum() {
        for (m, out, inp, pad) in
            [(1, 3, 5, 0), (7, 4, 2, 0), (33, 9, 8, 3), (130, 100, 36, 0), (65, 50, 100, 4), (3, 17, 19, 1)]
        {
            let (lddy, ldx) = (out + pad, inp + pad);
            let dy: Vec<f32> = (0..(m - 1) * lddy + out).map(|i| val(i, 1)).collect();
            let x: Vec<f32> = (0..(m - 1) * ldx + inp).map(|i| val(i, 2)).collect();
            let dw0: Vec<f32> = (0..out * inp).map(|i| val(i, 3)).collect();
            let mut want: Vec<f64> = dw0.iter().map(|&v| f64::from(v)).collect();
            let mut want_b = vec![0.5f64; out];
            for p in 0..m {
                for i in 0..out {
                    let g = f64::from(dy[p * lddy + i]);
                    want_b[i] += g;
                    for j in 0..inp {
                        want[i * inp + j] += g * f64::from(x[p * ldx + j]);
                    }
                }
            }
            let (mut dw, mut db) = (dw0.clone(), vec![0.5f32; out]);
            weight_grad(m, &dy, lddy, out, &x, ldx, inp, &mut dw, &mut db, Accumulate::Yes);
            // Overwritten: the sums alone.
            let (mut odw, mut odb) = (vec![f32::NAN; out * inp], vec![f32::NAN; out]);
            weight_grad(m, &dy, lddy, out, &x, ldx, inp, &mut odw, &mut odb, Accumulate::No);
            for (k, (&got, &w)) in dw.iter().zip(&want).enumerate() {
                let tol = 1e-5 * (1.0 + m as f64);
                assert!((f64::from(got) - w).abs() <= tol, "m {m} out {out} inp {inp}: dw[{k}] {got} vs {w}");
                let w0 = w - f64::from(dw0[k]);
                assert!((f64::from(odw[k]) - w0).abs() <= tol, "overwritten dw[{k}] {} vs {w0}", odw[k]);
            }
            for (k, (&got, &w)) in db.iter().zip(&want_b).enumerate() {
                assert!((f64::from(got) - w).abs() <= 1e-5 * (1.0 + m as f64), "db[{k}] {got} vs {w}");
                assert!((f64::from(odb[k]) - (w - 0.5)).abs() <= 1e-5 * (1.0 + m as f64), "overwritten db[{k}]");
            }
        }
    }
}
