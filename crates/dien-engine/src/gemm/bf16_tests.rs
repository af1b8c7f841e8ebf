//! Tests of the bf16 product ([`super`]): the rounding against its
//! definition, the packing, the scalar reference against exact arithmetic,
//! and the AVX512_BF16 kernels against the scalar statements (skipped,
//! with a printed reason, on CPUs without AVX512_BF16).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

/// A NaN with a distinctive payload: a cell still holding these bits was
/// not written.
const SENTINEL: f32 = f32::from_bits(0x7fc0_1234);

/// The token, or `None` after printing why the kernel tests are skipped.
fn cpu() -> Option<Bf16Cpu> {
    let c = Bf16Cpu::detect();
    if c.is_none() {
        println!("skipped: this CPU lacks AVX512_BF16 (the scalar reference is still tested)");
    }
    c
}

fn rand_vec(rng: &mut ChaCha8Rng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// Values whose rounding exercises every branch: exact, halfway (ties to
/// even both ways), just off halfway, zeros, subnormals, the largest
/// finite values, infinities and NaNs.
fn special_values() -> Vec<f32> {
    let mut v = vec![
        0.0,
        -0.0,
        1.0,
        -1.0,
        f32::from_bits(0x3f80_8000), // 1 + 2⁻⁸: halfway, rounds down to even 1.0
        f32::from_bits(0x3f81_8000), // halfway above an odd bf16: rounds up
        f32::from_bits(0x3f80_8001), // just past halfway: up
        f32::from_bits(0x3f80_7fff), // just below halfway: down
        f32::MIN_POSITIVE,
        -f32::MIN_POSITIVE,
        f32::from_bits(1),           // smallest subnormal
        -f32::from_bits(0x7f_ffff),  // largest subnormal
        f32::MAX,                    // rounds past the largest bf16: infinity
        f32::from_bits(0x7f7f_0000), // the largest bf16
        -f32::MAX,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::from_bits(0xff80_0001), // a signalling NaN: quieted
        1e-30,
        -2.71,
        65504.0,
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    v.extend((0..200).map(|_| f32::from_bits(rng.random::<u32>())));
    v
}

#[test]
fn rounding_is_to_nearest_even_with_zeros_for_subnormals() {
    assert_eq!(to_bf16(1.0), 0x3f80);
    assert_eq!(to_bf16(f32::from_bits(0x3f80_8000)), 0x3f80, "tie to even (down)");
    assert_eq!(to_bf16(f32::from_bits(0x3f81_8000)), 0x3f82, "tie to even (up)");
    assert_eq!(to_bf16(f32::from_bits(0x3f80_8001)), 0x3f81);
    assert_eq!(to_bf16(f32::from_bits(0x3f80_7fff)), 0x3f80);
    assert_eq!(to_bf16(f32::from_bits(1)), 0x0000);
    assert_eq!(to_bf16(-f32::from_bits(0x7f_ffff)), 0x8000);
    assert_eq!(to_bf16(f32::MAX), 0x7f80, "past the largest bf16: infinity");
    assert_eq!(to_bf16(f32::NEG_INFINITY), 0xff80);
    assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
    assert_eq!(to_bf16(f32::from_bits(0xff80_0001)), 0xffc0, "signalling NaN quieted");
    // Random normal values: the nearest bf16 (8 significant bits), within
    // half a unit in the last place: 2⁻⁸ relative.
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for _ in 0..10_000 {
        let x = f32::from_bits(rng.random::<u32>());
        if !x.is_normal() || round_bf16(x).is_infinite() {
            continue;
        }
        let r = round_bf16(x);
        assert!(((r - x) / x).abs() <= 1.0 / 256.0, "{x} -> {r}");
        // No bf16 neighbour is nearer.
        let h = to_bf16(x);
        for nb in [h.wrapping_sub(1), h.wrapping_add(1)] {
            let y = from_bf16(nb);
            if y.is_finite() && y.signum() == x.signum() {
                assert!((y as f64 - x as f64).abs() >= (r as f64 - x as f64).abs(), "{x}: {y} nearer than {r}");
            }
        }
    }
}

#[test]
fn packing_interleaves_pairs_of_k_and_pads_with_zeros() {
    for (n, k) in [(1, 1), (3, 5), (17, 4), (40, 80), (16, 37)] {
        let w: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let p = PackedBf16::from_weight_t(&w, n, k);
        assert_eq!((p.k(), p.n(), p.ld()), (k, n, n.div_ceil(16) * 16));
        assert_eq!(p.data().as_ptr().addr() % 64, 0, "rows start on a cache line");
        for q in 0..k.div_ceil(2) {
            for j in 0..p.ld() {
                let word = p.data()[q * p.ld() + j];
                let at = |pp: usize| if pp < k && j < n { to_bf16(w[j * k + pp]) } else { 0 };
                assert_eq!(word as u16, at(2 * q), "low half: B[{}, {j}]", 2 * q);
                assert_eq!((word >> 16) as u16, at(2 * q + 1), "high half: B[{}, {j}]", 2 * q + 1);
            }
        }
        // A refill of another shape into the same buffer and a clone.
        let mut r = p.clone();
        r.fill(&w, n, k, 1, n);
        assert_eq!(r.get(0, 0), round_bf16(w[0]));
        assert_eq!(r.clone().data(), r.data());
    }
}

/// The exact product of the bf16-rounded operands (f64).
fn exact(m: usize, a: &[f32], lda: usize, b: &PackedBf16) -> Vec<f64> {
    let (k, n) = (b.k(), b.n());
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|p| round_bf16(a[i * lda + p]) as f64 * b.get(p, j) as f64).sum();
        }
    }
    c
}

#[test]
fn reference_is_the_exact_product_of_the_rounded_operands_up_to_f32_sums() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for (m, k, n) in [(3, 1, 5), (4, 7, 17), (2, 36, 80), (5, 81, 40)] {
        let a = rand_vec(&mut rng, m * k);
        let w = rand_vec(&mut rng, n * k);
        let b = PackedBf16::from_weight_t(&w, n, k);
        let mut c = vec![0.0; m * n];
        gemm_bf16_ref(m, &a, k, &b, &mut c, n, Accumulate::No);
        for (g, e) in c.iter().zip(exact(m, &a, k, &b)) {
            assert!((*g as f64 - e).abs() <= 1e-6 * k as f64, "{m}x{k}x{n}: {g} vs {e}");
        }
        // Against f32 operands: within the bf16 rounding of both (2·2⁻⁸ of
        // Σ|a·b|).
        for i in 0..m {
            for j in 0..n {
                let (s, mag): (f64, f64) = (0..k)
                    .map(|p| (a[i * k + p] as f64 * w[j * k + p] as f64, (a[i * k + p] * w[j * k + p]).abs() as f64))
                    .fold((0.0, 0.0), |(s, g), (x, y)| (s + x, g + y));
                assert!((c[i * n + j] as f64 - s).abs() <= mag / 128.0 + 1e-6, "{m}x{k}x{n} ({i},{j})");
            }
        }
    }
}

#[test]
fn kernel_conversion_matches_the_scalar_rounding_bit_for_bit() {
    let Some(cpu) = cpu() else { return };
    let v = special_values();
    let mut rows = Bf16Rows::new();
    for k in [0, 1, 2, 15, 16, 17, 31, 33, v.len()] {
        let lda = k + 3;
        let m = 3;
        let mut a = vec![7.0f32; m * lda];
        for i in 0..m {
            for p in 0..k {
                a[i * lda + p] = v[(i * 7 + p) % v.len()];
            }
        }
        cpu.convert(m, &a, lda, k, &mut rows);
        assert_eq!((rows.rows(), rows.k()), (m, k));
        for i in 0..m {
            for p in 0..k.div_ceil(16) * 16 {
                let want = if p < k { to_bf16(a[i * lda + p]) } else { 0 };
                let got = rows.get(i, p).to_bits() >> 16;
                assert_eq!(got, want as u32, "k {k}: element ({i}, {p})");
            }
        }
    }
}

/// One kernel product against the reference: columns past `n` and rows'
/// gaps (`ldc > n`) untouched, values within a few `f32` roundings of the
/// reference's (they agree bit for bit when the hardware adds the two
/// products of a pair in the documented order; the test does not demand
/// it); returns whether every element was bitwise equal.
fn check_kernel(cpu: Bf16Cpu, rng: &mut ChaCha8Rng, m: usize, k: usize, n: usize, acc: Accumulate) -> bool {
    let (lda, ldc) = (k + 2, n + 3);
    let a = rand_vec(rng, m * lda);
    let w = rand_vec(rng, n * k);
    let b = PackedBf16::from_weight_t(&w, n, k);
    let c0: Vec<f32> = (0..m * ldc).map(|i| if i % ldc < n { (i as f32 * 0.1).cos() } else { SENTINEL }).collect();
    let (mut got, mut want) = (c0.clone(), c0.clone());
    if acc == Accumulate::No {
        for (i, x) in got.iter_mut().enumerate() {
            if i % ldc < n {
                *x = f32::NAN; // never read
            }
        }
    }
    let mut ws = Bf16Rows::new();
    cpu.gemm_f32(m, &a, lda, &b, &mut got, ldc, acc, &mut ws);
    gemm_bf16_ref(m, &a, lda, &b, &mut want, ldc, acc);
    let mut bitwise = true;
    for i in 0..m {
        for j in 0..ldc {
            let (g, e) = (got[i * ldc + j], want[i * ldc + j]);
            if j >= n {
                assert_eq!(g.to_bits(), SENTINEL.to_bits(), "{m}x{k}x{n}: gap ({i}, {j}) written");
                continue;
            }
            let mag: f32 = (0..k).map(|p| (a[i * lda + p] * w[j * k + p]).abs()).sum::<f32>() + 1.0;
            assert!((g - e).abs() <= 4.0 * f32::EPSILON * mag, "{m}x{k}x{n} {acc:?} ({i},{j}): {g} vs {e}");
            bitwise &= g.to_bits() == e.to_bits();
        }
    }
    bitwise
}

#[test]
fn kernel_matches_reference_on_row_column_and_odd_k_tails() {
    let Some(cpu) = cpu() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut all_bitwise = true;
    for m in [1, 2, 3, 4, 5, 7, 9] {
        for k in [1, 2, 3, 16, 17, 36, 37] {
            for n in [1, 15, 16, 17, 40, 80, 97] {
                for acc in [Accumulate::No, Accumulate::Yes] {
                    all_bitwise &= check_kernel(cpu, &mut rng, m, k, n, acc);
                }
            }
        }
    }
    println!("kernel bit-identical to the reference on every tail shape: {all_bitwise}");
}

#[test]
fn kernel_matches_reference_on_model_shapes() {
    let Some(cpu) = cpu() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    // Attention (rows × 36 → 80, 80 → 40, 18 → 36 queries), head (162 → 200
    // → 80), GRU input projections (36 → 108).
    for (m, k, n) in [(256, 36, 80), (256, 80, 40), (32, 36, 36), (32, 162, 200), (32, 200, 80), (100, 36, 108)] {
        check_kernel(cpu, &mut rng, m, k, n, Accumulate::Yes);
    }
}

#[test]
fn zero_rows_columns_or_k_are_handled() {
    let mut c = vec![1.5f32; 6];
    let b = PackedBf16::from_weight_t(&[], 3, 0);
    gemm_bf16_ref(2, &[], 0, &b, &mut c, 3, Accumulate::Yes);
    assert_eq!(c, [1.5; 6]);
    gemm_bf16_ref(2, &[], 0, &b, &mut c, 3, Accumulate::No);
    assert_eq!(c, [0.0; 6]);
    let Some(cpu) = cpu() else { return };
    let mut ws = Bf16Rows::new();
    let mut c = vec![1.5f32; 6];
    cpu.gemm_f32(2, &[], 0, &b, &mut c, 3, Accumulate::Yes, &mut ws);
    assert_eq!(c, [1.5; 6]);
    cpu.gemm_f32(2, &[], 0, &b, &mut c, 3, Accumulate::No, &mut ws);
    assert_eq!(c, [0.0; 6]);
    cpu.gemm_f32(0, &[], 5, &PackedBf16::from_weight_t(&[1.0; 15], 3, 5), &mut [], 3, Accumulate::No, &mut ws);
}

#[test]
#[should_panic(expected = "exceeds")]
fn short_c_panics() {
    let b = PackedBf16::from_weight_t(&[1.0; 6], 3, 2);
    gemm_bf16_ref(2, &[1.0; 4], 2, &b, &mut [0.0; 5], 3, Accumulate::No);
}

#[test]
fn detect_agrees_with_the_cpu_features() {
    #[cfg(target_arch = "x86_64")]
    assert_eq!(
        Bf16Cpu::detect().is_some(),
        std::arch::is_x86_feature_detected!("avx512bf16") && std::arch::is_x86_feature_detected!("avx512f")
    );
    #[cfg(not(target_arch = "x86_64"))]
    assert!(Bf16Cpu::detect().is_none());
}
