//! Tests of the register-tiled product ([`super`]) against plain loops.

use crate::simd::{LANES, V, pad_lanes};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

/// A NaN with a distinctive payload: a gap cell still holding exactly these
/// bits was neither written nor replaced by an arithmetic NaN.
const SENTINEL: f32 = f32::from_bits(0x7fc0_1234);

fn rand_vec(rng: &mut ChaCha8Rng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// Plain scalar `A · B` in f64 for strided views.
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

#[test]
fn gemm_ep_matches_naive_on_odd_shapes_and_visits_each_vector_once() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for &(m, k, n) in
        &[(1, 1, 1), (3, 5, 7), (5, 36, 36), (7, 36, 108), (13, 72, 36), (32, 36, 72), (9, 0, 9), (6, 3, 17)]
    {
        // A transposed through strides (rsa = 1), B packed from a row-major
        // weight.
        let at = rand_vec(&mut rng, k * m + 1);
        let w = rand_vec(&mut rng, k * n);
        let bp = Packed::from_weight(&w, k, n);
        let want = naive(m, k, n, &at, 1, m, &w, n);
        let mut got = vec![f32::NAN; m * n];
        let mut seen = vec![0u32; m * bp.nvec()];
        let mut epi = |i: usize, v: usize, acc: V| {
            seen[i * bp.nvec() + v] += 1;
            let w = (n - v * LANES).min(LANES);
            store_n(&mut got, i * n + v * LANES, w, acc);
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
fn long_k_accumulates_or_overwrites_and_leaves_columns_past_n_untouched() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    // k = 200 spans several blocks of 64 (only the first may overwrite);
    // k = 0 is the empty sum.
    for (k, acc, start) in [(200, Accumulate::Yes, 0.5f32), (200, Accumulate::No, 0.5), (0, Accumulate::No, 0.5)] {
        let (m, n) = (36, 108);
        // A = Xᵀ of X [k, m]; B = a workspace-like matrix [k, n] with slack.
        let x = rand_vec(&mut rng, k * m);
        let mut b = rand_vec(&mut rng, k * n);
        b.extend([0.0; LANES]);
        let ldc = n + 3;
        let mut c = vec![start; m * ldc];
        gemm_long_k(m, k, n, &x, 1, m, &b, n, &mut c, ldc, acc);
        let want = naive(m, k, n, &x, 1, m, &b, n);
        let base = if acc == Accumulate::Yes { start as f64 } else { 0.0 };
        for i in 0..m {
            for j in 0..ldc {
                let got = c[i * ldc + j] as f64;
                if j < n {
                    let w = base + want[i * n + j];
                    assert!((got - w).abs() <= 1e-4 * (1.0 + w.abs()), "k {k} {acc:?} ({i},{j}) {got} vs {w}");
                } else {
                    assert_eq!(got, start as f64, "column {j} past n was written");
                }
            }
        }
    }
}

#[test]
fn overwriting_equals_adding_to_zeros_bit_for_bit() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    for (m, k, n) in [(9, 150, 24), (36, 200, 108), (5, 1, 13), (80, 64, 36)] {
        let x = rand_vec(&mut rng, k * m);
        let mut b = rand_vec(&mut rng, k * n);
        b.extend([0.0; LANES]);
        let mut added = vec![0.0f32; m * n];
        let mut stored = vec![f32::NAN; m * n];
        gemm_one_pass(m, k, n, &x, 1, m, &b, n, &mut added, n, Accumulate::Yes);
        gemm_one_pass(m, k, n, &x, 1, m, &b, n, &mut stored, n, Accumulate::No);
        assert_eq!(added, stored, "one pass {m}x{k}x{n}");
        let mut added = vec![0.0f32; m * n];
        let mut stored = vec![f32::NAN; m * n];
        gemm_long_k(m, k, n, &x, 1, m, &b, n, &mut added, n, Accumulate::Yes);
        gemm_long_k(m, k, n, &x, 1, m, &b, n, &mut stored, n, Accumulate::No);
        assert_eq!(added, stored, "long k {m}x{k}x{n}");
    }
}

/// Every row count up to past two of the tallest tiles (so every
/// remainder of the taller tiles): the bits of one-accumulator tiles.
#[test]
fn one_pass_gives_the_bits_of_single_tiles_for_every_row_count() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for m in 1..=14 {
        let (k, n) = (37, 3 * LANES + 5);
        let x = rand_vec(&mut rng, k * m);
        let mut b = rand_vec(&mut rng, k * n);
        b.extend([0.0; LANES]);
        let mut got = vec![f32::NAN; m * n];
        gemm_one_pass(m, k, n, &x, 1, m, &b, n, &mut got, n, Accumulate::No);
        let mut want = vec![f32::NAN; m * n];
        let mut epi = Store { c: &mut want, ldc: n, n, acc: Accumulate::No };
        gemm_ep::<1, 1, _>(m, k, n.div_ceil(LANES), &x, 1, m, &b, n, &mut epi);
        assert_eq!(
            got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "m = {m}"
        );
    }
}

/// A long `k` runs in blocks whose accumulators are carried on: the bits
/// of one unbroken chain per element (a one-accumulator tile over all of
/// `k`), for `k` at and past the blocked threshold with and without a
/// short last block, row counts across the carried groups (and their
/// remainders), column counts of 3, 2 and 1 vectors and partial vectors,
/// with `C` overwritten or added to.
#[test]
fn long_one_pass_gives_the_bits_of_one_unbroken_chain() {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let ks = [2 * CHAIN_KB, 2 * CHAIN_KB + 1, 3 * CHAIN_KB, 5 * CHAIN_KB + 17];
    let ms = [1, 5, TALL_MR, TALL_MR + 1, 95, 96, 97, 200];
    let ns = [7, LANES, 2 * LANES + 3, 3 * LANES, 5 * LANES + 4];
    for (case, ((&k, &m), &n)) in ks.iter().cycle().zip(ms.iter().cycle()).zip(ns.iter().cycle()).take(40).enumerate() {
        // A read through a transposed view, as weight gradients do.
        let lda = m + case % 3;
        let x = rand_vec(&mut rng, k * lda);
        let ldb = n + case % 2;
        let mut b = rand_vec(&mut rng, k * ldb);
        b.extend([0.0; LANES]);
        for acc in [Accumulate::No, Accumulate::Yes] {
            let start = rand_vec(&mut rng, m * n);
            let mut got = start.clone();
            gemm_one_pass(m, k, n, &x, 1, lda, &b, ldb, &mut got, n, acc);
            let mut want = start.clone();
            let mut epi = Store { c: &mut want, ldc: n, n, acc };
            gemm_ep::<1, 1, _>(m, k, n.div_ceil(LANES), &x, 1, lda, &b, ldb, &mut epi);
            assert_eq!(
                got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "m {m} k {k} n {n} {acc:?}"
            );
        }
    }
}

#[test]
fn one_pass_matches_the_sum_and_ignores_inserted_zero_rows_bit_for_bit() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (m, k, n) = (9, 150, 24);
    let x = rand_vec(&mut rng, k * m);
    // One vector of slack: 24 columns are not whole vectors of 16 lanes.
    let mut b = rand_vec(&mut rng, k * n);
    b.extend([0.0; LANES]);
    let mut c = vec![0.25f32; m * n];
    gemm_one_pass(m, k, n, &x, 1, m, &b, n, &mut c, n, Accumulate::Yes);
    let want = naive(m, k, n, &x, 1, m, &b, n);
    for (i, (&g, &w)) in c.iter().zip(&want).enumerate() {
        assert!((g as f64 - 0.25 - w).abs() <= 1e-4 * (1.0 + w.abs()), "{i}: {g} vs {w}");
    }
    // The same product with zero rows of Aᵀ (and junk rows of B) inserted
    // every 7 rows: the same bits.
    let (mut x2, mut b2) = (Vec::new(), Vec::new());
    for p in 0..k {
        if p % 7 == 3 {
            x2.extend(std::iter::repeat_n(0.0f32, m));
            b2.extend(rand_vec(&mut rng, n));
        }
        x2.extend_from_slice(&x[p * m..(p + 1) * m]);
        b2.extend_from_slice(&b[p * n..(p + 1) * n]);
    }
    let k2 = x2.len() / m;
    b2.extend([0.0; LANES]);
    let mut c2 = vec![0.25f32; m * n];
    gemm_one_pass(m, k2, n, &x2, 1, m, &b2, n, &mut c2, n, Accumulate::Yes);
    assert_eq!(c, c2);
}

#[test]
#[should_panic(expected = "B too short")]
fn gemm_ep_rejects_short_b() {
    let a = [1.0f32; 4];
    let b = [1.0f32; 12];
    gemm_ep::<4, 3, _>(2, 2, 1, &a, 2, 1, &b, 6, &mut |_, _, _| {});
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

/// The f32 error bound of a length-`k` dot product with margin for any
/// summation order, fused or not.
fn tol(k: usize, scale: f64) -> f64 {
    (k as f64 + 2.0) * f32::EPSILON as f64 * scale + 1e-30
}

/// One random case of [`gemm_packed`]: strided A and C with NaN gaps, a
/// strided source of B. Checks the f64 product within the rounding bound,
/// the gaps untouched, and agreement with [`gemm_packed_ref`] (the same
/// bits on a build with hardware FMA, where both chains are fused).
fn check_case(rng: &mut ChaCha8Rng, m: usize, k: usize, n: usize, acc: Accumulate) {
    let lda = k + rng.random_range(0..3usize);
    let ldc = n + rng.random_range(0..4usize);
    let ldb = n + rng.random_range(0..3usize);
    let a = strided(rng, m, k, lda);
    let bsrc = strided(rng, k, n, ldb);
    let mut b = Packed::new();
    b.fill(&bsrc, k, n, ldb, 1);
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
    let mut c_ref = c.clone();
    gemm_packed(m, &a, lda, &b, &mut c, ldc, acc);
    gemm_packed_ref(m, &a, lda, &b, &mut c_ref, ldc, acc);
    let (want, scale) = reference(m, k, n, &a, lda, &bsrc, ldb);
    let fused = cfg!(target_feature = "fma");
    for i in 0..m {
        for j in 0..ldc {
            let (got, r) = (c[i * ldc + j], c_ref[i * ldc + j]);
            if j >= n {
                assert_eq!(got.to_bits(), SENTINEL.to_bits(), "gap C[{i},{j}] written (m{m} k{k} n{n} ldc{ldc})");
                assert_eq!(r.to_bits(), SENTINEL.to_bits(), "reference wrote gap C[{i},{j}]");
                continue;
            }
            let base = c0.as_ref().map_or(0.0, |c0| c0[i * n + j] as f64);
            let (w, s) = (want[i * n + j] + base, scale[i * n + j] + base.abs());
            let what = format!("C[{i},{j}] (m{m} k{k} n{n} lda{lda} ldc{ldc} {acc:?})");
            assert!((got as f64 - w).abs() <= tol(k, s), "{what} = {got}, want {w}");
            assert!((r as f64 - w).abs() <= tol(k, s), "reference {what} = {r}, want {w}");
            if fused {
                assert_eq!(got.to_bits(), r.to_bits(), "{what}: kernel {got} vs reference {r}");
            }
        }
    }
    for (idx, &x) in c[m * ldc..].iter().enumerate() {
        assert_eq!(x.to_bits(), SENTINEL.to_bits(), "C written past the last row (+{idx})");
    }
}

#[test]
fn packed_product_matches_references_on_random_shapes() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for _ in 0..300 {
        let m = rng.random_range(0..=37);
        let k = rng.random_range(1..=80);
        let n = rng.random_range(1..=120);
        let acc = if rng.random::<bool>() { Accumulate::Yes } else { Accumulate::No };
        check_case(&mut rng, m, k, n, acc);
    }
}

#[test]
fn packed_product_covers_every_row_and_column_tail() {
    // Every m mod 4, every n mod LANES and every count of vectors up to 15
    // (all column-block splits), both modes.
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for m in 0..=9 {
        for n in 1..=15 * LANES {
            let k = 1 + (m * 7 + n) % 40;
            check_case(&mut rng, m, k, n, Accumulate::No);
            check_case(&mut rng, m, k, n, Accumulate::Yes);
        }
    }
}

#[test]
fn packed_product_on_model_shapes() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for &(m, k, n) in &[(16, 36, 72), (32, 36, 72), (16, 36, 36), (32, 72, 36), (128, 36, 108), (1, 36, 108)] {
        for acc in [Accumulate::No, Accumulate::Yes] {
            check_case(&mut rng, m, k, n, acc);
        }
    }
}

#[test]
fn accumulate_no_ignores_nan_in_c_and_yes_accumulates() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let (m, k, n) = (7, 36, 37);
    let a = rand_vec(&mut rng, m * k);
    let w = rand_vec(&mut rng, n * k);
    let b = Packed::from_weight_t(&w, n, k);
    let mut once = vec![f32::NAN; m * n];
    gemm_packed(m, &a, k, &b, &mut once, n, Accumulate::No);
    assert!(once.iter().all(|x| x.is_finite()));
    let mut twice = once.clone();
    gemm_packed(m, &a, k, &b, &mut twice, n, Accumulate::Yes);
    for (t, o) in twice.iter().zip(&once) {
        // x + x is exact in binary floating point.
        assert_eq!(*t, 2.0 * o);
    }
}

#[test]
fn zero_k_writes_zeros_or_leaves_c() {
    let mut b = Packed::new();
    b.fill(&[], 0, 13, 13, 1);
    let a: [f32; 0] = [];
    let mut c = vec![f32::NAN; 3 * 13];
    gemm_packed(3, &a, 0, &b, &mut c, 13, Accumulate::No);
    assert!(c.iter().all(|&x| x == 0.0));
    c.fill(1.5);
    gemm_packed(3, &a, 0, &b, &mut c, 13, Accumulate::Yes);
    assert!(c.iter().all(|&x| x == 1.5));
}

#[test]
fn weight_layouts_pack_the_right_transpose() {
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let (out, inp) = (11, 6);
    let w = rand_vec(&mut rng, out * inp); // W [out, in]
    let t = Packed::from_weight_t(&w, out, inp);
    assert_eq!((t.k(), t.n(), t.ld(), t.nvec()), (inp, out, pad_lanes(out), pad_lanes(out) / LANES));
    let nt = Packed::from_weight(&w, out, inp);
    assert_eq!((nt.k(), nt.n(), nt.ld()), (out, inp, LANES));
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
fn refill_equals_fresh_pack_without_reallocating() {
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let (n, k) = (37, 36);
    let w0 = rand_vec(&mut rng, n * k);
    let w1 = rand_vec(&mut rng, n * k);
    let mut p = Packed::from_weight_t(&w0, n, k);
    let ptr = p.data().as_ptr();
    p.fill_t(&w1, n, k);
    assert_eq!(p.data().as_ptr(), ptr, "refilling must reuse the buffer");
    let bits = |q: &Packed| q.data().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&p), bits(&Packed::from_weight_t(&w1, n, k)));
    // A strided view with NaN gaps: the gaps must not be read.
    let ld = n + 2;
    let mut src = vec![SENTINEL; k * ld];
    for r in 0..k {
        src[r * ld..r * ld + n].copy_from_slice(&w1[r * n..(r + 1) * n]);
    }
    let mut q = Packed::from_weight(&w0, k, n);
    q.fill(&src, k, n, ld, 1);
    assert_eq!(bits(&q), bits(&Packed::from_weight(&w1, k, n)));
}

#[test]
fn packed_rows_are_32_byte_aligned_after_fill_refill_and_clone() {
    let mut rng = ChaCha8Rng::seed_from_u64(19);
    let aligned = |q: &Packed| q.data().as_ptr().addr().is_multiple_of(32);
    let bits = |q: &Packed| q.data().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let mut p = Packed::new();
    // Growing shapes reallocate; every buffer must place the rows aligned.
    for (n, k) in [(3, 2), (37, 36), (108, 36), (300, 200)] {
        let w = rand_vec(&mut rng, n * k);
        p.fill_t(&w, n, k);
        assert!(aligned(&p), "fill ({n}, {k})");
        assert_eq!(bits(&p), bits(&Packed::from_weight_t(&w, n, k)));
        let c = p.clone();
        assert!(aligned(&c), "clone ({n}, {k})");
        assert_eq!((c.k(), c.n(), c.ld()), (p.k(), p.n(), p.ld()));
        assert_eq!(bits(&c), bits(&p));
    }
    // Shrinking reuses the buffer and stays aligned.
    let w = rand_vec(&mut rng, 9 * 5);
    p.fill_t(&w, 9, 5);
    assert!(aligned(&p));
    assert_eq!(bits(&p), bits(&Packed::from_weight_t(&w, 9, 5)));
    assert_eq!(Packed::new().data().len(), 0);
    assert!(Packed::new().clone().data().is_empty());
}

#[test]
#[should_panic(expected = "gemm_packed: C")]
fn short_c_panics() {
    let b = Packed::from_weight(&[1.0; 4], 2, 2);
    let mut c = [0.0; 3];
    gemm_packed(2, &[1.0; 4], 2, &b, &mut c, 2, Accumulate::No);
}

#[test]
#[should_panic(expected = "gemm_packed: A")]
fn short_a_panics() {
    let b = Packed::from_weight(&[1.0; 4], 2, 2);
    let mut c = [0.0; 4];
    gemm_packed(2, &[1.0; 3], 2, &b, &mut c, 2, Accumulate::No);
}

#[test]
fn gate_blocks_start_at_multiples_of_the_padded_width() {
    let (blocks, h, k) = (3, 5, 4);
    let w: Vec<f32> = (0..blocks * h * k).map(|i| i as f32 + 1.0).collect();
    let mut p = Packed::new();
    p.fill_t_blocks(&w, blocks, h, k);
    assert_eq!((p.k(), p.n(), p.ld()), (k, blocks * LANES, blocks * LANES));
    for q in 0..k {
        for j in 0..p.ld() {
            let (g, c) = (j / LANES, j % LANES);
            let want = if c < h { w[(g * h + c) * k + q] } else { 0.0 };
            assert_eq!(p.get(q, j), want, "({q}, {j})");
        }
    }
}

/// The tiled transposes ([`Packed::fill_t`], [`Packed::fill_t_blocks`])
/// give the plain strided packing's bits, for shapes with and without
/// partial tiles, into buffers that held another (larger) weight before.
#[test]
fn tiled_transposes_equal_the_strided_packing() {
    let mut rng = ChaCha8Rng::seed_from_u64(23);
    let bits = |q: &Packed| q.data().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let (mut p, mut blocks_p) = (Packed::new(), Packed::new());
    for (n, k) in [(1, 1), (8, 8), (16, 24), (7, 9), (9, 7), (200, 162), (108, 36), (37, 36), (3, 17), (17, 3)] {
        p.fill_t(&vec![SENTINEL; 300 * 300], 300, 300);
        let w = rand_vec(&mut rng, n * k);
        p.fill_t(&w, n, k);
        let mut strided = Packed::new();
        strided.fill(&w, k, n, 1, k);
        assert_eq!(bits(&p), bits(&strided), "fill_t [{n}, {k}]");
        for blocks in [1, 2, 3] {
            let (h, w) = (n, rand_vec(&mut rng, blocks * n * k));
            blocks_p.fill_t_blocks(&vec![SENTINEL; 3 * 300 * 300], 3, 300, 300);
            blocks_p.fill_t_blocks(&w, blocks, h, k);
            let hp = blocks_p.ld() / blocks;
            for q in 0..k {
                for j in 0..blocks_p.ld() {
                    let (g, c) = (j / hp, j % hp);
                    let want = if c < h { w[(g * h + c) * k + q] } else { 0.0 };
                    assert_eq!(
                        blocks_p.get(q, j).to_bits(),
                        want.to_bits(),
                        "blocks {blocks} [{h}, {k}] at ({q}, {j})"
                    );
                }
            }
        }
    }
}
