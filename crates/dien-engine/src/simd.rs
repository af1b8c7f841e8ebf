//! Small `f32x8` helpers shared by the fused kernels of this crate and by
//! the crates built on it: 8-lane loads and stores (with partial, masked
//! forms for row tails), the row padding they assume, a grow-only buffer,
//! and scalar `dot`, `axpy` and logistic `sigmoid` whose exact arithmetic
//! the model's training path relies on.
//!
//! Rows of packed weights and padded workspace rows are multiples of
//! [`LANES`] values ([`pad8`]); [`load`]/[`store`] move whole vectors and
//! panic if the 8 values are not all inside the slice; [`load_n`] and
//! [`store_n`] touch only the first `n ≤ 8` of them.

use wide::f32x8;

/// Lanes per vector: rows of packed weights and padded workspace rows are
/// multiples of this many values.
pub const LANES: usize = 8;

/// `n` rounded up to a multiple of [`LANES`].
#[inline]
pub fn pad8(n: usize) -> usize {
    n.div_ceil(LANES) * LANES
}

/// Loads `s[off..off + 8]`. Panics if that range leaves `s`.
#[inline(always)]
pub fn load(s: &[f32], off: usize) -> f32x8 {
    f32x8::from(<[f32; 8]>::try_from(&s[off..off + 8]).expect("8 lanes"))
}

/// `TAIL_MASK[8 − n..16 − n]` enables the low `n` lanes.
#[cfg(all(target_arch = "x86_64", target_feature = "avx"))]
static TAIL_MASK: [i32; 16] = [-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0];

/// Loads `n ≤ 8` values from `s[off..]` into the low lanes, zeroing the
/// rest (`n ≥ 8` loads all 8). Panics if `s[off..off + min(n, 8)]` leaves
/// `s`; nothing past it is read.
#[inline(always)]
pub fn load_n(s: &[f32], off: usize, n: usize) -> f32x8 {
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

/// Stores all 8 lanes of `v` at `s[off..]`. Panics if they do not fit.
#[inline(always)]
pub fn store(s: &mut [f32], off: usize, v: f32x8) {
    s[off..off + 8].copy_from_slice(&v.to_array());
}

/// Stores the low `n ≤ 8` lanes of `v` at `s[off..]` (a masked store: the
/// values past `off + n` are left untouched; `n ≥ 8` stores all 8). Panics
/// if the written range leaves `s`.
#[inline(always)]
pub fn store_n(s: &mut [f32], off: usize, n: usize, v: f32x8) {
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
/// rows visited in an order too scattered for the hardware prefetchers
/// (the cells' time loops read one step of each sample at a time). Has no
/// visible effect.
#[inline(always)]
pub fn prefetch(s: &[f32], off: usize, len: usize) {
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
/// the lanes of columns `< n` (all bits set) and zeroes the others (`&`).
pub fn lane_masks(n: usize) -> Vec<f32x8> {
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

/// Grows `v` to at least `n` values (new ones zero). Never shrinks, so a
/// workspace that has seen a size never allocates for it again.
#[inline]
pub fn grow(v: &mut Vec<f32>, n: usize) {
    if v.len() < n {
        v.resize(n, 0.0);
    }
}

/// Dot product of two slices (over the shorter length): 8-lane fused
/// multiply-adds over the whole vectors, a horizontal sum, then the tail
/// added one product at a time. This order is part of the contract:
/// training results depend on it bit for bit.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = f32x8::ZERO;
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        let x = f32x8::from(<[f32; 8]>::try_from(x).expect("8 lanes"));
        let y = f32x8::from(<[f32; 8]>::try_from(y).expect("8 lanes"));
        acc = x.mul_add(y, acc);
    }
    let mut s = acc.reduce_add();
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        s += x * y;
    }
    s
}

/// `y += alpha·x` (over the shorter length), one fused multiply-add per
/// element.
#[inline]
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi = alpha.mul_add(xi, *yi);
    }
}

/// Scalar logistic sigmoid `1 / (1 + e^{−x})` without overflow (for
/// `x < 0` it is evaluated as `e^x / (1 + e^x)`), with the standard
/// library's `exp`, unlike the 8-lane [`crate::vecmath::simd::sigmoid8`].
/// The same function as the scalar reference of the vector math.
pub use crate::vecmath::scalar::sigmoid;

#[cfg(test)]
mod tests {
    use super::*;

    const LENS: [usize; 12] = [0, 1, 2, 7, 8, 9, 15, 16, 17, 36, 41, 100];

    fn seq(n: usize, f: f32) -> Vec<f32> {
        (0..n).map(|i| (i as f32 * f).sin()).collect()
    }

    #[test]
    fn dot_matches_its_scalar_statement_bit_for_bit() {
        for n in LENS {
            let (a, b) = (seq(n, 0.37), seq(n, 0.11));
            // The documented order: lane-wise FMA chains, lane sum, tail.
            let body = n / 8 * 8;
            let mut lanes = f32x8::ZERO;
            for c in 0..n / 8 {
                lanes = load(&a, c * 8).mul_add(load(&b, c * 8), lanes);
            }
            let mut want = lanes.reduce_add();
            for i in body..n {
                want += a[i] * b[i];
            }
            assert_eq!(dot(&a, &b).to_bits(), want.to_bits(), "n = {n}");
            let f64dot: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
            assert!((dot(&a, &b) as f64 - f64dot).abs() < 1e-5, "n = {n}");
        }
    }

    #[test]
    fn axpy_matches_a_scalar_loop() {
        for n in LENS {
            let (x, y0) = (seq(n, 0.37), seq(n, 0.11));
            let mut y = y0.clone();
            axpy(0.5, &x, &mut y);
            for i in 0..n {
                assert_eq!(y[i].to_bits(), 0.5f32.mul_add(x[i], y0[i]).to_bits(), "n = {n}, i = {i}");
            }
        }
    }

    #[test]
    fn sigmoid_is_accurate_and_stable_at_extremes() {
        assert_eq!(sigmoid(-200.0), 0.0);
        assert_eq!(sigmoid(200.0), 1.0);
        assert_eq!(sigmoid(0.0), 0.5);
        for x in [-30.0f32, -3.5, -0.3, 0.3, 3.5, 30.0] {
            let want = 1.0 / (1.0 + (-(x as f64)).exp());
            assert!((sigmoid(x) as f64 - want).abs() < 1e-7 * want.max(1e-30) + 1e-7, "x = {x}");
        }
    }

    #[test]
    fn pad8_and_grow() {
        assert_eq!([0, 1, 7, 8, 9, 36].map(pad8), [0, 8, 8, 8, 16, 40]);
        let mut v = vec![1.0f32; 3];
        grow(&mut v, 2);
        assert_eq!(v, [1.0; 3], "never shrinks");
        grow(&mut v, 5);
        assert_eq!(v, [1.0, 1.0, 1.0, 0.0, 0.0]);
        let p = v.as_ptr();
        grow(&mut v, 5);
        assert_eq!(v.as_ptr(), p, "no reallocation for a size already seen");
    }

    #[test]
    fn whole_and_partial_loads_and_stores_touch_exactly_their_lanes() {
        let s: Vec<f32> = (0..20).map(|i| i as f32 + 1.0).collect();
        for n in 0..=9 {
            let w = n.min(8);
            for off in [0, 3, 20 - w] {
                let v = load_n(&s, off, n).to_array();
                for (l, &x) in v.iter().enumerate() {
                    assert_eq!(x, if l < w { s[off + l] } else { 0.0 }, "load_n(off {off}, n {n}) lane {l}");
                }
                let mut d = vec![-7.0f32; 20];
                store_n(&mut d, off, n, f32x8::splat(5.0));
                for (j, &x) in d.iter().enumerate() {
                    assert_eq!(x, if (off..off + w).contains(&j) { 5.0 } else { -7.0 }, "store_n(off {off}, n {n})");
                }
            }
        }
        assert_eq!(load(&s, 12).to_array(), [13.0, 14.0, 15.0, 16.0, 17.0, 18.0, 19.0, 20.0]);
        let mut d = vec![0.0f32; 9];
        store(&mut d, 1, load(&s, 0));
        assert_eq!(&d[1..], &s[..8]);
        // Prefetch has no visible effect, also at the ends of the slice.
        prefetch(&s, 0, 100);
        prefetch(&s, 19, 1);
        prefetch(&s, 25, 4);
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

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn partial_store_past_the_end_panics() {
        store_n(&mut [0.0f32; 6], 3, 4, f32x8::ZERO);
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn partial_load_past_the_end_panics() {
        let _ = load_n(&[0.0f32; 6], 3, 4);
    }
}
